"""Shared machinery of the paper-experiment scripts, on top of the one run orchestrator.

- Every run is a :class:`~kl_alloc.lifecycle.RunSpec` in its run directory, run by
  :func:`kl_alloc.experiments.runner.run_jobs` with the local executor: its own worker process,
  one torch / OpenMP / numba thread, at most ``jobs`` at once (default 2: one per core), killed
  with the script (Ctrl-C, SIGTERM, even SIGKILL).
- Resumable, by the run lifecycle's rules (the same as ``kl-alloc train --resume`` and
  ``kl-alloc sweep``): a run whose directory is finished for at least the requested steps is
  skipped; a killed run continues from its checkpoint. A run directory that holds a run with
  other settings (a preset changed, other overrides) is an error, never silently mixed into the
  results. Re-running the same command continues.
- :func:`provenance` records the exact command, the git commit and the library versions in the
  results JSON (:func:`kl_alloc.rundir.provenance`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python benchmarks/x.py` from a checkout

from kl_alloc.experiments import executors  # noqa: E402
from kl_alloc.experiments import runner as orchestrator  # noqa: E402
from kl_alloc.lifecycle import RunSpec  # noqa: E402
from kl_alloc.methods import builtin_methods  # noqa: E402
from kl_alloc.rundir import command_line, provenance  # noqa: E402,F401  (used by the scripts)

logger = logging.getLogger("benchmarks")

ALGOS = tuple(builtin_methods())
THREAD_VARS = executors.THREAD_VARS


def format_value(value: Any) -> str:
    """A config value as ``--set`` text (the CLI parses it back to the same value); also the
    value's part of a run directory name."""
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
    """One training run: ENV / ALGO / SEED to STEPS env steps in ``run_dir``."""

    env: str
    algo: str
    seed: int
    steps: int
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    log_name: str | None = None
    """file name (without .log) of the worker's output; default: the run directory's name"""

    @property
    def name(self) -> str:
        return str(self.run_dir)

    def spec(self) -> RunSpec:
        return RunSpec(self.env, self.algo, self.seed, self.steps, overrides=dict(self.overrides))

    def job(self) -> orchestrator.Job:
        return orchestrator.Job(self.spec(), self.run_dir, name=self.log_name or self.run_dir.name)

    def status(self) -> str:
        """``"done"`` (finished with these settings), ``"todo"``; raises on a stale run."""
        state, detail = orchestrator.job_state(self.job())
        if state == "conflict":
            raise RuntimeError(f"{detail} (it was made with other settings)")
        return "done" if state == "done" else "todo"


def run_jobs(
    jobs: Sequence[Job],
    log_dir: Path,
    max_parallel: int = 2,
    runs_per_process: int = 1,
    *,
    status_path: Path | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, float]:
    """Run the unfinished jobs in worker processes, at most ``max_parallel`` at once (output in
    ``log_dir/<name>.log``); returns wall seconds per run that ran. ``status_path``: a JSON
    status file rewritten as runs finish; ``on_result(outcome)``: called after each run.

    ``runs_per_process`` is accepted for compatibility and ignored: every run has a worker
    process of its own (a run's numbers never depended on it). Raises ``RuntimeError`` naming
    the failed runs and their logs if any failed, before anything runs if a run directory holds
    a run with other settings; on Ctrl-C / SIGTERM the workers are stopped (rerun to resume).
    """
    del runs_per_process
    for job in jobs:
        job.status()  # a stale run directory stops everything before anything runs
    max_parallel = max(1, min(int(max_parallel), os.cpu_count() or 1))
    try:
        result = orchestrator.run_jobs(
            [j.job() for j in jobs],
            executor="local",
            workers=max_parallel,
            retries=1,
            progress=False,
            log_dir=log_dir,
            status_path=status_path,
            on_result=on_result,
        )
    except KeyboardInterrupt:
        logger.error("interrupted: rerun the same command to resume")
        raise
    skipped = result.count("skipped")
    if skipped:
        logger.info("%d of %d runs already finished: skipped", skipped, len(jobs))
    by_dir = {str(j.run_dir): j for j in jobs}
    failed = [(by_dir[k], s) for k, s in result.status.items() if s["status"] == "failed"]
    if failed:
        names = ", ".join(
            f"{j.name} ({Path(log_dir) / ((j.log_name or j.run_dir.name) + '.log')}: {s['error']})"
            for j, s in failed
        )
        raise RuntimeError(f"{len(failed)} run(s) failed: {names}")
    return {k: s["seconds"] for k, s in result.status.items() if s["status"] == "done"}


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
