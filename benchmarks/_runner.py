"""Shared machinery of the paper-experiment scripts: one ``kl-alloc train`` process per run.

- Every run is its own process (``python -m kl_alloc train ... --resume``), at most ``jobs`` at
  once (default 2: one per core), each with one torch / OpenMP / numba thread.
- Resumable: a run whose directory has ``done.json`` for at least the requested steps is skipped;
  a killed run continues from its checkpoint (``--resume``). A finished run whose stored config
  differs from what the script would use now (a preset changed, other ``--set`` values) is an
  error, never silently mixed into the results.
- The scripts record :func:`kl_alloc.rundir.provenance` (the exact command, the git commit and
  the library versions) in the results JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python benchmarks/x.py` from a checkout

from kl_alloc.rl.config import TrainerConfig  # noqa: E402

logger = logging.getLogger("benchmarks")

ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def format_value(value: Any) -> str:
    """A config value as ``--set`` text (the CLI parses it back to the same value)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


@dataclass
class Job:
    """One training run: ``kl-alloc train --env ENV --algo ALGO --seed SEED --steps STEPS``."""

    env: str
    algo: str
    seed: int
    steps: int
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    log_name: str | None = None
    """file name (without .log) of the child's output; default: the run directory's name"""

    @property
    def name(self) -> str:
        return str(self.run_dir)

    def argv(self) -> list[str]:
        """The child process's command line."""
        return [sys.executable, "-m", "kl_alloc", *self.cli_args()]

    def cli_args(self) -> list[str]:
        """The ``kl-alloc`` arguments of this run."""
        args = [
            "-q", "train",
            "--env", self.env, "--algo", self.algo, "--seed", str(self.seed),
            "--steps", str(self.steps), "--out", str(self.run_dir), "--resume", "--no-progress",
        ]  # fmt: skip
        for key, value in self.overrides.items():
            args += ["--set", f"{key}={format_value(value)}"]
        return args

    def expected_config(self) -> dict[str, Any]:
        cfg = TrainerConfig.for_env(self.env, **self.overrides)
        return json.loads(json.dumps(cfg.to_dict()))

    def status(self) -> str:
        """``"done"`` (finished with these settings), ``"todo"``; raises on a stale run."""
        done = self.run_dir / "done.json"
        config = self.run_dir / "config.json"
        if not config.exists():
            return "todo"
        stored = json.loads(config.read_text())
        want = TrainerConfig.stored_as(self.expected_config())
        have = TrainerConfig.stored_as(stored["config"])
        differ = sorted(k for k in set(want) | set(have) if have.get(k) != want.get(k))
        if differ or stored["algo"] != self.algo or stored["seed"] != self.seed:
            raise RuntimeError(
                f"{self.run_dir} holds a run made with other settings ({differ or 'algo/seed'}): "
                "delete it or pick another --runs-dir; results are never mixed"
            )
        if done.exists() and json.loads(done.read_text()).get("env_steps", 0) >= self.steps:
            return "done"
        return "todo"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = "1"
    env.setdefault("KL_ALLOC_QUIET", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_jobs(
    jobs: Sequence[Job], log_dir: Path, max_parallel: int = 2, runs_per_process: int = 1
) -> dict[str, float]:
    """Run the unfinished jobs in child processes, at most ``max_parallel`` at once.

    With ``runs_per_process=1`` (the default, what the paper-experiment scripts use) every run
    is its own ``python -m kl_alloc train`` process. A larger value runs that many runs one
    after another in one worker process (``python benchmarks/_runner.py --worker``), which
    saves the ~2-4 s of imports per run on short runs; a run's numbers do not depend on it
    (each Trainer seeds its own generators). Output goes to ``log_dir/<name>.log``.

    Returns wall seconds per process. Raises ``RuntimeError`` naming the failed runs and their
    logs if any failed; on Ctrl-C / SIGTERM the children are terminated (rerun to resume).
    """
    max_parallel = max(1, min(int(max_parallel), os.cpu_count() or 1))
    per = max(1, int(runs_per_process))
    todo = [j for j in jobs if j.status() != "done"]
    skipped = len(jobs) - len(todo)
    if skipped:
        logger.info("%d of %d runs already finished: skipped", skipped, len(jobs))
    log_dir.mkdir(parents=True, exist_ok=True)
    queue = [todo[k : k + per] for k in range(0, len(todo), per)]
    running: list[tuple[list[Job], subprocess.Popen, float, Any]] = []
    failed: list[tuple[Job, Path]] = []
    seconds: dict[str, float] = {}
    finished = 0
    env = child_env()

    def start(batch: list[Job]) -> None:
        for job in batch:
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        name = batch[0].log_name or batch[0].run_dir.name
        if len(batch) == 1:
            argv = batch[0].argv()
        else:
            name += f"+{len(batch) - 1}"
            spec = log_dir / f"{name}.json"
            spec.write_text(json.dumps([j.cli_args() for j in batch]))
            argv = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)]
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed when the child ends
        log.write(shlex.join(argv) + "\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        running.append((batch, proc, time.perf_counter(), log))

    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while queue or running:
            while queue and len(running) < max_parallel:
                start(queue.pop(0))
            time.sleep(0.05)
            still = []
            for batch, proc, t0, log in running:
                if proc.poll() is None:
                    still.append((batch, proc, t0, log))
                    continue
                log.close()
                seconds[log.name] = elapsed = time.perf_counter() - t0
                for job in batch:
                    finished += 1
                    ok = proc.returncode == 0 if len(batch) == 1 else job.status() == "done"
                    if not ok:
                        failed.append((job, Path(log.name)))
                        logger.error("[%d/%d] %s FAILED (see %s)", finished, len(todo), job.name,
                                     log.name)  # fmt: skip
                    else:
                        logger.info("[%d/%d] %s done (%s: %.1f s)", finished, len(todo), job.name,
                                    Path(log.name).stem, elapsed)  # fmt: skip
            running = still
    except KeyboardInterrupt:
        for _, proc, _, _ in running:
            proc.terminate()
        for _, proc, _, log in running:
            proc.wait()
            log.close()
        logger.error("interrupted: rerun the same command to resume")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        names = ", ".join(f"{j.name} ({p})" for j, p in failed)
        raise RuntimeError(f"{len(failed)} run(s) failed: {names}")
    return seconds


def _worker(spec_path: str) -> int:
    """Run the ``kl-alloc`` argument lists in ``spec_path`` one after another in this process."""
    import traceback

    from kl_alloc.cli import main

    failures = 0
    for args in json.loads(Path(spec_path).read_text()):
        print("$ kl-alloc " + shlex.join(args), flush=True)
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # report it, go on with the next run
            traceback.print_exc()
            code = 1
        failures += code != 0
        sys.stdout.flush()
    return 1 if failures else 0


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    logger.info("wrote %s", path)


def add_common_args(parser: Any, seeds: int, steps: int, name: str) -> None:
    parser.add_argument("--seeds", type=int, default=seeds, help="seeds per method (0..N-1)")
    parser.add_argument("--steps", type=int, default=steps, help="env steps per run")
    parser.add_argument(
        "--runs-dir", type=Path, default=ROOT / "runs" / "bench" / name,
        help="where the run directories go (finished runs there are reused)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=ROOT / "benchmarks" / "results",
        help="where the JSON and PNG results go",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument(
        "--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="methods to run"
    )
    parser.add_argument(
        "--analyse-only", action="store_true", help="do not train; analyse the runs that exist"
    )
    parser.add_argument(
        "--timing-iterations", type=int, default=60,
        help="iterations per method for the round-robin timing (0: skip it)",
    )  # fmt: skip


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


def clean_json(x: Any) -> Any:
    """Strict-JSON copy: NaN / inf -> None, numpy scalars and arrays -> Python, tuples -> lists."""
    import math

    import numpy as np

    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean_json(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def interleaved_timing(
    env: str, algos: Sequence[str], iterations: int = 60, warmup: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Seconds per iteration of each method, measured in THIS process with one torch thread,
    one iteration of each method in turn (round robin), so a change in machine load hits every
    method alike. The first ``warmup`` iterations (JIT, allocator warm-up) are not counted.

    Returns per method: median and mean seconds per iteration, the median of each component
    (rollout, critic, actor, solver, other) and the solver's share of the total time.
    """
    import numpy as np
    import torch

    from kl_alloc.rl import Trainer

    torch.set_num_threads(1)
    logging.getLogger("kl_alloc.rl.trainer").setLevel(logging.WARNING)  # one line per learn()
    trainers = {a: Trainer(env, algo=a, seed=seed) for a in algos}
    records: dict[str, list[dict[str, Any]]] = {a: [] for a in algos}
    for k in range(warmup + iterations):
        for algo, trainer in trainers.items():
            per_iter = trainer.steps_per_iteration
            trainer.learn(trainer.env_steps + per_iter, progress=False)
            if k >= warmup:
                records[algo].append(trainer.history[-1])
    out: dict[str, Any] = {}
    for algo, recs in records.items():
        spi = np.array([r["seconds_per_iter"] for r in recs])
        parts = {p: np.array([r["time"][p] for r in recs]) for p in recs[0]["time"]}
        out[algo] = {
            "iterations": len(recs),
            "seconds_per_iter_median": float(np.median(spi)),
            "seconds_per_iter_mean": float(spi.mean()),
            "component_median_seconds": {p: float(np.median(v)) for p, v in parts.items()},
            "share": {p: float(v.sum() / spi.sum()) for p, v in parts.items()},
        }
    base = out.get("hatrpo", {}).get("seconds_per_iter_median")
    for m in out.values():
        m["ratio_vs_hatrpo"] = m["seconds_per_iter_median"] / base if base else None
    return out


def timing_table(timing: dict[str, Any]) -> str:
    from kl_alloc.analysis import format_table
    from kl_alloc.methods import method_label

    rows = []
    for algo, m in timing.items():
        c = m["component_median_seconds"]
        rows.append([
            method_label(algo),
            f"{m['seconds_per_iter_median'] * 1e3:.2f}",
            "-" if m["ratio_vs_hatrpo"] is None else f"{m['ratio_vs_hatrpo']:.2f}x",
            f"{c['rollout'] * 1e3:.2f}",
            f"{c['critic'] * 1e3:.2f}",
            f"{c['actor'] * 1e3:.2f}",
            f"{c['solver'] * 1e6:.0f} us",
            f"{m['share']['solver'] * 100:.2f}%",
        ])  # fmt: skip
    return format_table(
        ["method", "ms/iter (median)", "vs HATRPO", "rollout ms", "critic ms", "actor ms",
         "solver", "solver share"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    sys.exit("usage: python benchmarks/_runner.py --worker SPEC.json  (used by run_jobs)")
