"""Run a sweep's trials as Ray tasks: one trial = one Trainer run in its own run directory.

    spec = load_spec("benchmarks/sweeps/eps_sensitivity.toml")
    result = run_sweep(spec, num_cpus=2, retries=2)     # local Ray; address="auto" for a cluster

- Each trial is a Ray task with ``num_cpus=1`` (torch uses one thread) and ``max_retries``: a
  worker that dies (killed, out of memory) is restarted and the trial resumes from its
  checkpoint. An exception inside a trial is not retried (it would fail again): the trial is
  reported as failed, with its traceback in ``RUN_DIR/error.json``, and the others go on.
- Resumable: a trial whose run directory has ``done.json`` with enough env steps is skipped;
  a run directory with a checkpoint resumes from it (``Trainer.resume``); a run killed before its
  first checkpoint starts over. ``RUN_DIR/trial.json`` records the trial; a directory that holds a
  different trial (the sweep file changed) is reported as failed rather than mixed up.
- At most as many trials are in flight as the cluster has CPUs, so "running" is exact.
- ``OUT/sweep.json`` holds the status of every trial (rewritten as trials finish).

With a cluster (``address``), every node needs kl_alloc installed and the output directory on
a shared filesystem (run directories are written by the workers).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.experiments.spec import SweepSpec, Trial, trial_differences
from kl_alloc.rundir import provenance

logger = logging.getLogger(__name__)

RAY_HINT = 'the sweep runner needs Ray: pip install "kl_alloc[ray]"'

#: files of a run directory that a fresh start removes (trial.json is rewritten)
_RUN_FILES = ("config.json", "progress.jsonl", "eval.jsonl", "done.json", "error.json")


class RayMissingError(RuntimeError):
    """Ray is not installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissingError(RAY_HINT) from None
    return ray


# -- one trial (runs inside a Ray worker, or in-process) -----------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def trial_state(trial: Trial) -> str:
    """``done`` (finished with enough steps), ``resume`` (has a checkpoint), ``conflict``
    (holds another trial) or ``new``."""
    run_dir = trial.run_dir
    recorded = _read_json(run_dir / "trial.json")
    if recorded is not None and trial_differences(recorded, trial.to_json()):
        return "conflict"
    done = _read_json(run_dir / "done.json")
    if done is not None and int(done.get("env_steps", 0)) >= trial.steps:
        return "done"
    if (run_dir / "checkpoint.pt").exists():
        return "resume"
    return "new"


def make_trial_allocator(trial: Trial, config: Any):
    """The trial's allocator: the method's own, wrapped in noise if ``utility_noise > 0``."""
    from kl_alloc.rl.allocators import make_allocator

    allocator = make_allocator(trial.algo, config)
    if trial.utility_noise > 0:
        from kl_alloc.experiments.noise import NoisyUtilityAllocator

        allocator = NoisyUtilityAllocator(allocator, trial.utility_noise)
    return allocator


def run_trial(data: dict[str, Any]) -> dict[str, Any]:
    """Train one trial (``Trial.to_json()``) to its step budget; never raises for a failure in
    the trial itself: returns ``{"status": "done" | "skipped" | "failed", ...}``."""
    trial = Trial.from_json(data)
    run_dir = trial.run_dir
    start = time.perf_counter()
    handler: logging.Handler | None = None
    resumed = False
    try:
        state = trial_state(trial)
        if state == "done":
            return {"status": "skipped", "run_dir": str(run_dir)}
        if state == "conflict":
            raise RuntimeError(
                f"{run_dir} holds another trial (differs in "
                f"{trial_differences(_read_json(run_dir / 'trial.json') or {}, trial.to_json())}): "
                "use another sweep.out or delete the directory"
            )
        import torch

        torch.set_num_threads(1)
        from kl_alloc.rl import Trainer

        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "trial.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("kl_alloc")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        config = trial.config()
        allocator = make_trial_allocator(trial, config)
        if state == "resume":
            resumed = True
            trainer = Trainer.resume(run_dir, allocator=allocator)
        else:
            for name in _RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
            _write_json(run_dir / "trial.json", {**trial.to_json(), "code": provenance()})
            trainer = Trainer(
                trial.env,
                algo=trial.algo,
                config=config,
                seed=trial.seed,
                out_dir=run_dir,
                allocator=allocator,
            )
        (run_dir / "error.json").unlink(missing_ok=True)
        trainer.learn(trial.steps, progress=False)
        trainer.close()
        summary = _read_json(run_dir / "done.json") or {}
        return {
            "status": "done",
            "run_dir": str(run_dir),
            "resumed": resumed,
            "seconds": time.perf_counter() - start,
            "final_expected_reward": summary.get("final_expected_reward"),
        }
    except Exception as exc:  # a failed trial must not stop the sweep
        error = {
            "status": "failed",
            "run_dir": str(run_dir),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - start,
        }
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / "error.json", error)
        except OSError:
            pass
        return error
    finally:
        if handler is not None:
            logging.getLogger("kl_alloc").removeHandler(handler)
            handler.close()


# -- the driver ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What happened to every trial (``status[run_dir]``: skipped/done/failed)."""

    spec: SweepSpec
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s["status"] == status)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.status.values() if s["status"] == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.spec.summary(),
            "seconds": self.seconds,
            "counts": {k: self.count(k) for k in ("done", "skipped", "failed", "pending")},
            "trials": [
                {**self.status.get(str(t.run_dir), {"status": "pending"}), "trial": t.to_json()}
                for t in self.spec.trials
            ],
        }


def init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a quiet local Ray; returns True if this call started it
    (and so should shut it down). An already initialised Ray is reused as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or min(2, os.cpu_count() or 1), **kwargs)
    return True


class _Status:
    """A tqdm bar over the trials to run, with done / running / failed counts."""

    def __init__(self, total: int, skipped: int, enabled: bool, name: str) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(
            total=total,
            desc=name,
            unit="trial",
            disable=not enabled,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=1.0,
        )
        self.skipped = skipped
        self.done = self.failed = self.running = 0
        self.total = total
        self._last_log = 0.0
        self._unlogged = False
        self._start = time.monotonic()

    def note(self, message: str) -> None:
        """A line above the bar (or a log warning without one)."""
        if self.enabled:
            self.bar.write(message, file=sys.stderr)
        else:
            logger.warning(message)

    def update(self, finished: int = 0) -> None:
        self.bar.set_postfix(
            done=self.done,
            running=self.running,
            failed=self.failed,
            skipped=self.skipped,
            refresh=False,
        )
        if finished:
            self.bar.update(finished)
            self._unlogged = True
            return
        # without a bar: a log line at most every 10 s, after the freed slots were refilled
        if not self.enabled and self._unlogged and time.monotonic() - self._last_log > 10:
            self._last_log = time.monotonic()
            self._unlogged = False
            finished_all = self.done + self.failed
            elapsed = time.monotonic() - self._start
            eta = elapsed / finished_all * (self.total - finished_all) if finished_all else 0.0
            logger.info(
                "trials: %d/%d finished (%d failed), %d running, ETA %s",
                finished_all,
                self.total,
                self.failed,
                self.running,
                time.strftime("%H:%M:%S", time.gmtime(eta)),
            )

    def close(self) -> None:
        self.bar.close()


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    num_cpus: int | None = None,
    retries: int = 2,
    progress: bool = True,
    timeout: float | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every unfinished trial of ``spec`` on Ray (see the module docstring).

    ``timeout`` (seconds, default ``spec.timeout``): a trial still running after it is
    cancelled (its worker is killed) and reported as failed; the others go on.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    timeout = spec.timeout if timeout is None else timeout
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    result = SweepResult(spec)
    todo: list[Trial] = []
    for trial in spec.trials:
        state = trial_state(trial)
        if state == "done":
            result.status[str(trial.run_dir)] = {"status": "skipped", "run_dir": str(trial.run_dir)}
        else:
            todo.append(trial)
    spec.out.mkdir(parents=True, exist_ok=True)
    status_path = spec.out / "sweep.json"
    t0 = time.perf_counter()

    def write_status() -> None:
        result.seconds = time.perf_counter() - t0
        _write_json(status_path, result.to_json())

    if not todo:
        write_status()
        return result

    ray = import_ray()
    started = init_ray(address, num_cpus)
    status = _Status(len(todo), result.count("skipped"), progress, spec.name)
    previous_term = _raise_on_sigterm()
    try:
        remote = ray.remote(num_cpus=1, max_retries=int(retries))(run_trial)
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        queue = list(reversed(todo))
        inflight: dict[Any, tuple[Trial, float]] = {}
        while queue or inflight:
            while queue and len(inflight) < capacity:
                trial = queue.pop()
                inflight[remote.remote(trial.to_json())] = (trial, time.monotonic())
            status.running = len(inflight)
            status.update()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            finished: list[tuple[Trial, dict[str, Any]]] = []
            for ref in ready:
                trial, _ = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker died more often than max_retries
                    outcome = {
                        "status": "failed",
                        "run_dir": str(trial.run_dir),
                        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                    }
                finished.append((trial, outcome))
            if timeout is not None:
                now = time.monotonic()
                for ref, (trial, begun) in list(inflight.items()):
                    if now - begun > timeout:
                        ray.cancel(ref, force=True)
                        del inflight[ref]
                        outcome = {
                            "status": "failed",
                            "run_dir": str(trial.run_dir),
                            "error": f"timed out after {timeout:g} s (worker killed)",
                        }
                        _write_json(trial.run_dir / "error.json", outcome)
                        finished.append((trial, outcome))
            for trial, outcome in finished:
                result.status[str(trial.run_dir)] = outcome
                if outcome["status"] == "failed":
                    status.failed += 1
                    status.note(f"trial failed: {trial.run_dir}: {outcome['error']}")
                else:
                    status.done += 1
                status.running = len(inflight)
                status.update(finished=1)
                write_status()
                if on_result is not None:
                    on_result(outcome)
    finally:
        status.close()
        write_status()
        if started:
            ray.shutdown()
        _restore_sigterm(previous_term)
    return result


def _raise_on_sigterm() -> Any:
    """Turn SIGTERM into KeyboardInterrupt while the sweep runs (so Ray is shut down and the
    status file written); a no-op outside the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    import signal
    import threading

    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "RAY_HINT",
    "RayMissingError",
    "SweepResult",
    "import_ray",
    "init_ray",
    "make_trial_allocator",
    "run_sweep",
    "run_trial",
    "trial_state",
]
