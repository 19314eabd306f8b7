"""The one run orchestrator: a list of runs (a :class:`~kl_alloc.lifecycle.RunSpec` in its run
directory) through the run lifecycle, on an executor. ``kl-alloc sweep`` and the benchmark
scripts both use it.

    jobs = [Job(RunSpec("matrix", "hatrpo-w", seed=s, steps=200_000), Path(f"runs/w-{s}"))
            for s in range(10)]
    result = run_jobs(jobs, executor="local", workers=2, retries=2)   # re-run: it resumes
    result = run_sweep(load_spec("benchmarks/sweeps/eps_sensitivity.toml"))

Executors:

- ``inline``: one run after another in this process (debugging, tests).
- ``local`` (the default on one machine): every run in its own worker process
  (``python -m kl_alloc.experiments.runner``), one torch / OpenMP thread each, at most
  ``workers`` at once. The workers die with the driver: Ctrl-C / SIGTERM terminate them, and each
  worker asks the kernel to SIGKILL it when the driver dies (``PR_SET_PDEATHSIG``), so even a
  SIGKILLed driver leaves no process behind.
- ``ray``: every run a Ray task (``address`` joins a cluster; without it a local Ray is started).
  A ``module:attr`` env or method is resolved inside the worker by importing it, so user code
  needs no registration, but the module must be importable on every worker (installed, or on
  the workers' ``PYTHONPATH``), and the run directories must be on a shared filesystem. On one
  machine prefer ``local``: if a driver that started its own Ray is SIGKILLed, Ray's own
  agents (dashboard / runtime-env agent) may outlive it (Ctrl-C and SIGTERM shut Ray down).

The rules, the same for every executor:

- What to do with a run directory is :func:`kl_alloc.lifecycle.plan`: a finished run (enough
  env steps) is skipped, a killed one resumes from its checkpoint (or restarts from its own
  ``spec.json`` if it had none yet); a directory holding a different run is a conflict,
  reported as failed with the differences, never mixed up. So a sweep is continued by running
  the same command again.
- A worker that dies (killed, out of memory) is retried up to ``retries`` times (the run
  resumes, bit-for-bit what it would have been); an exception inside a run is not retried (it
  would fail again): the run is reported failed, its traceback in ``RUN_DIR/error.json``.
  ``timeout``: a run still running after it is killed and reported failed.
- Every outcome records ``retries`` (how many times its worker was restarted).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.lifecycle import (
    SPEC_FILE,
    RunError,
    RunSpec,
    inspect_run,
    plan,
    write_json_atomic,
)
from kl_alloc.rundir import provenance

logger = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "ray")
RAY_HINT = 'the ray executor needs Ray: pip install "kl_alloc[ray]" (or use --executor local)'
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
_PARENT_VAR = "KL_ALLOC_DRIVER_PID"
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the kl_alloc package


class RayMissingError(RuntimeError):
    """Ray is not installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissingError(RAY_HINT) from None
    return ray


# -- a job: one run --------------------------------------------------------------------------------


@dataclass
class Job:
    """One run: ``spec`` in ``out``. ``meta`` (a sweep trial's task / method / swept values) is
    written to ``out/trial.json`` with the code's provenance; ``name`` names its log file."""

    spec: RunSpec
    out: Path
    meta: dict[str, Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "out": str(self.out),
            "meta": self.meta,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(RunSpec.from_json(data["spec"]), Path(data["out"]), data.get("meta"),
                   data.get("name"))  # fmt: skip


_COMPARED = ("env", "algo", "seed", "preset", "utility_noise", "overrides")


def job_state(job: Job) -> tuple[str, str]:
    """``(state, detail)``: ``new`` | ``resume`` | ``restart`` | ``done`` | ``conflict`` (the
    directory holds another run or cannot be used; ``detail`` says how)."""
    try:
        state = inspect_run(job.out)
        if state.kind == "run":
            stored = state.spec
            if stored is None:
                return "conflict", f"{job.out}: neither spec.json nor config.json is there"
            if (job.out / SPEC_FILE).exists():
                diffs = stored.differences(job.spec, _COMPARED)
            else:  # a run made before spec.json: compare what it stored
                diffs = _legacy_differences(stored, job.spec)
            if diffs:
                return "conflict", (
                    f"{job.out} holds another run (differs in {'; '.join(diffs)}): delete it or "
                    "choose another output directory; results are never mixed"
                )
        p = plan(job.out, job.spec, resume=True, steps=job.spec.steps)
    except RunError as exc:
        return "conflict", str(exc)
    return ("done" if p.action == "finished" else p.action), ""


def _legacy_differences(stored: RunSpec, asked: RunSpec) -> list[str]:
    from kl_alloc.rl.config import TrainerConfig

    out = [f"{k}: {getattr(stored, k)!r} -> {getattr(asked, k)!r}"
           for k in ("algo", "seed") if getattr(stored, k) != getattr(asked, k)]  # fmt: skip
    have = TrainerConfig.stored_as(json.loads(json.dumps(stored.overrides, default=list)))
    want = TrainerConfig.stored_as(json.loads(json.dumps(asked.config().to_dict(), default=list)))
    out += [f"{k}: {have.get(k)!r} -> {want.get(k)!r}"
            for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]  # fmt: skip
    return out


def run_job(data: dict[str, Any]) -> dict[str, Any]:
    """Run one job (``Job.to_json()``) in this process to its target steps. Never raises for a
    failure of the run itself: returns ``{"status": "done" | "skipped" | "failed", ...}``."""
    job = Job.from_json(data)
    out = job.out
    start = time.perf_counter()
    try:
        state, detail = job_state(job)
        if state == "done":
            return {"status": "skipped", "run_dir": str(out)}
        if state == "conflict":
            raise RunError(detail, out)
        import torch

        torch.set_num_threads(1)
        from kl_alloc.lifecycle import open_trainer

        p = plan(out, job.spec, resume=True, steps=job.spec.steps)
        code = provenance()
        trainer = open_trainer(p, code)
        (out / "error.json").unlink(missing_ok=True)
        if job.meta is not None and (p.action != "resume" or not (out / "trial.json").exists()):
            write_json_atomic(out / "trial.json", {**job.meta, "code": code})
        try:
            trainer.learn(p.steps, progress=False)
        finally:
            trainer.close()
        done = json.loads((out / "done.json").read_text())
        return {
            "status": "done",
            "run_dir": str(out),
            "action": p.action,
            "seconds": time.perf_counter() - start,
            "env_steps": done.get("env_steps"),
            "final_expected_reward": done.get("final_expected_reward"),
        }
    except Exception as exc:  # a failed run must not stop the others
        error = {
            "status": "failed",
            "run_dir": str(out),
            "error": str(exc) if isinstance(exc, RunError) else f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - start,
        }
        _record_error(out, error)
        return error


def _record_error(out: Path, error: dict[str, Any]) -> None:
    """``out/error.json``, only in a directory that holds this run (never in another's)."""
    if (out / SPEC_FILE).exists() and "holds another run" not in error.get("error", ""):
        try:
            write_json_atomic(out / "error.json", error)
        except RunError:
            pass


# -- executors -------------------------------------------------------------------------------------


@dataclass
class _Slot:
    job: Job
    attempt: int
    started: float
    handle: Any = None
    outcome: dict[str, Any] | None = None


class InlineExecutor:
    """Runs each job in this process, when it is submitted."""

    capacity = 1

    def submit(self, slot: _Slot) -> None:
        slot.outcome = run_job(slot.job.to_json())

    def wait(self, slots: Sequence[_Slot], timeout: float) -> list[_Slot]:
        return [s for s in slots if s.outcome is not None]

    def cancel(self, slot: _Slot) -> None:
        pass

    def close(self) -> None:
        pass


def _log_name(job: Job, log_dir: Path) -> Path:
    name = job.name or str(job.out).strip("/").replace("/", "__")
    return log_dir / name


class LocalExecutor:
    """One worker process per job (``python -m kl_alloc.experiments.runner JOB RESULT``)."""

    def __init__(self, workers: int, log_dir: Path) -> None:
        self.capacity = max(1, int(workers))
        self.log_dir = Path(log_dir)
        self.env = dict(os.environ)
        for var in THREAD_VARS:
            self.env[var] = "1"
        path = [str(_ROOT), os.getcwd(), self.env.get("PYTHONPATH", "")]
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        self.env[_PARENT_VAR] = str(os.getpid())
        self.running: list[subprocess.Popen] = []

    def submit(self, slot: _Slot) -> None:
        base = _log_name(slot.job, self.log_dir)
        base.parent.mkdir(parents=True, exist_ok=True)
        job_file = base.with_name(base.name + ".job.json")
        result = base.with_name(base.name + ".result.json")
        result.unlink(missing_ok=True)
        write_json_atomic(job_file, slot.job.to_json())
        argv = [sys.executable, "-m", "kl_alloc.experiments.runner", str(job_file), str(result)]
        with open(base.with_name(base.name + ".log"), "a") as log:
            log.write(f"# attempt {slot.attempt + 1}: {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        self.running.append(proc)
        slot.handle = (proc, result, job_file)

    def wait(self, slots: Sequence[_Slot], timeout: float) -> list[_Slot]:
        deadline = time.monotonic() + timeout
        while True:
            ready = [s for s in slots if s.handle[0].poll() is not None]
            if ready or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for s in ready:
            proc, result, job_file = s.handle
            self.running.remove(proc)
            try:
                s.outcome = json.loads(result.read_text()) if proc.returncode == 0 else None
            except (OSError, ValueError):
                s.outcome = None
            if s.outcome is None:
                rc = proc.returncode
                how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
                s.outcome = {"status": "died", "run_dir": str(s.job.out),
                             "error": f"the worker process {how}"}  # fmt: skip
            result.unlink(missing_ok=True)
            job_file.unlink(missing_ok=True)
        return ready

    def cancel(self, slot: _Slot) -> None:
        proc = slot.handle[0]
        proc.kill()
        proc.wait()
        self.running.remove(proc)

    def close(self) -> None:
        """Terminate every worker still running (SIGTERM, then SIGKILL after 5 s)."""
        for proc in self.running:
            proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running = []


class RayExecutor:
    """One Ray task per job (``num_cpus=1``); retries are the driver's, like the others'."""

    def __init__(self, address: str | None, workers: int | None) -> None:
        self.ray = import_ray()
        self.started = init_ray(address, workers)
        self.remote = self.ray.remote(num_cpus=1, max_retries=0)(run_job)
        self.capacity = max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def submit(self, slot: _Slot) -> None:
        slot.handle = self.remote.remote(slot.job.to_json())

    def wait(self, slots: Sequence[_Slot], timeout: float) -> list[_Slot]:
        by_ref = {s.handle: s for s in slots}
        ready, _ = self.ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        for ref in ready:
            s = by_ref[ref]
            try:
                s.outcome = self.ray.get(ref)
            except Exception as exc:  # the worker died
                first = str(exc).splitlines()[0][:300] if str(exc) else ""
                s.outcome = {"status": "died", "run_dir": str(s.job.out),
                             "error": f"{type(exc).__name__}: {first}"}  # fmt: skip
        return [by_ref[r] for r in ready]

    def cancel(self, slot: _Slot) -> None:
        self.ray.cancel(slot.handle, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a quiet local Ray; returns True if this call started it
    (and so should shut it down). An already initialised Ray is reused as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    for var in THREAD_VARS[:2]:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    if address:
        ray.init(address=address, **kwargs)
    else:
        # local workers import kl_alloc and module:attr user code from here
        path = os.pathsep.join(p for p in (str(_ROOT), os.getcwd(), os.environ.get("PYTHONPATH"))
                               if p)  # fmt: skip
        os.environ["PYTHONPATH"] = path
        ray.init(num_cpus=num_cpus or min(2, os.cpu_count() or 1), **kwargs)
    return True


# -- the driver ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What happened to every job (``status[out]``: skipped / done / failed)."""

    jobs: list[Job]
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s["status"] == status)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.status.values() if s["status"] == "failed"]

    def to_json(self) -> dict[str, Any]:
        pending = {"status": "pending"}
        return {
            "sweep": self.summary,
            "seconds": self.seconds,
            "counts": {k: self.count(k) for k in ("done", "skipped", "failed")}
            | {"pending": sum(str(j.out) not in self.status for j in self.jobs)},
            "trials": [
                {
                    **{
                        k: v
                        for k, v in self.status.get(str(j.out), pending).items()
                        if k != "traceback"
                    },
                    **({"trial": j.meta} if j.meta else {}),
                }
                for j in self.jobs
            ],  # fmt: skip
        }


#: kept for callers of the Ray-only runner
SweepResult = RunResult


class _Status:
    """A tqdm bar over the runs to do (its ETA), with done / running / failed counts; without
    a bar, a log line whenever a run ends, else at most every ``LOG_EVERY`` seconds."""

    LOG_EVERY = 600.0

    def __init__(self, total: int, skipped: int, enabled: bool, name: str) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, desc=name, unit="run", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr, mininterval=1.0)  # fmt: skip
        self.skipped, self.total = skipped, total
        self.done = self.failed = self.running = 0
        self._last_log = 0.0
        self._start = time.monotonic()

    def note(self, message: str) -> None:
        if self.enabled:
            self.bar.write(message, file=sys.stderr)
        else:
            logger.warning(message)

    def update(self, finished: int = 0) -> None:
        self.bar.set_postfix(done=self.done, running=self.running, failed=self.failed,
                             skipped=self.skipped, refresh=False)  # fmt: skip
        if finished:
            self.bar.update(finished)
        if self.enabled or not finished and time.monotonic() - self._last_log < self.LOG_EVERY:
            return
        self._last_log = time.monotonic()
        n = self.done + self.failed
        eta = (time.monotonic() - self._start) / n * (self.total - n) if n else float("nan")
        logger.info("runs: %d/%d finished (%d failed), %d running, ETA %s", n, self.total,
                    self.failed, self.running,
                    "?" if eta != eta else time.strftime("%H:%M:%S", time.gmtime(eta)))  # fmt: skip

    def close(self) -> None:
        self.bar.close()


def _make_executor(executor: str, workers: int | None, address: str | None, log_dir: Path):
    if executor == "inline":
        return InlineExecutor()
    if executor == "local":
        return LocalExecutor(workers or min(2, os.cpu_count() or 1), log_dir)
    if executor == "ray":
        return RayExecutor(address, workers)
    raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")


def run_jobs(
    jobs: Sequence[Job],
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 2,
    timeout: float | None = None,
    progress: bool = True,
    log_dir: str | os.PathLike | None = None,
    status_path: str | os.PathLike | None = None,
    name: str = "runs",
    summary: dict[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run every unfinished job (see the module docstring); returns what happened to each.

    ``workers``: runs at once (local executor: default min(2, cores); ray: the local Ray's CPUs).
    ``log_dir``: the local workers' output (``NAME.log``; default ``./logs``). ``status_path``:
    a JSON status file rewritten as runs finish. Ctrl-C / SIGTERM stop every worker and raise
    ``KeyboardInterrupt``: running the same jobs again continues them.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    result = RunResult(list(jobs), summary=dict(summary or {}))
    todo: deque[Job] = deque()
    for job in jobs:
        if job_state(job)[0] == "done":
            result.status[str(job.out)] = {"status": "skipped", "run_dir": str(job.out)}
        else:
            todo.append(job)
    t0 = time.perf_counter()

    def write_status() -> None:
        result.seconds = time.perf_counter() - t0
        if status_path is not None:
            write_json_atomic(Path(status_path), result.to_json())

    if not todo:
        write_status()
        return result
    status = _Status(len(todo), result.count("skipped"), progress, name)
    previous = _raise_on_sigterm()
    ex = None
    try:
        ex = _make_executor(executor, workers, address, Path(log_dir or "logs"))
        inflight: list[_Slot] = []
        attempts: dict[str, int] = {}
        while todo or inflight:
            while todo and len(inflight) < ex.capacity:
                job = todo.popleft()
                slot = _Slot(job, attempts.get(str(job.out), 0), time.monotonic())
                inflight.append(slot)
                ex.submit(slot)
            status.running = len(inflight)
            status.update()
            finished = ex.wait(inflight, timeout=1.0)
            if timeout is not None:
                now = time.monotonic()
                for s in inflight:
                    if s not in finished and now - s.started > timeout:
                        ex.cancel(s)
                        s.outcome = {
                            "status": "failed",
                            "run_dir": str(s.job.out),
                            "error": f"timed out after {timeout:g} s (worker killed)",
                        }
                        _record_error(s.job.out, s.outcome)  # fmt: skip
                        finished.append(s)
            for s in finished:
                inflight.remove(s)
                outcome = dict(s.outcome or {})
                key = str(s.job.out)
                if outcome["status"] == "died":
                    if s.attempt < retries:
                        attempts[key] = s.attempt + 1
                        status.note(f"{key}: {outcome['error']}: retrying "
                                    f"({s.attempt + 1} of {retries})")  # fmt: skip
                        todo.appendleft(s.job)
                        continue
                    outcome["status"] = "failed"
                    outcome["error"] += f" (after {s.attempt} retries)"
                    _record_error(s.job.out, outcome)
                outcome["retries"] = s.attempt
                result.status[key] = outcome
                if outcome["status"] == "failed":
                    status.failed += 1
                    status.note(f"run failed: {key}: {outcome['error']}")
                else:
                    status.done += 1
                status.running = len(inflight)
                status.update(finished=1)
                write_status()
                if on_result is not None:
                    on_result(outcome)
    finally:
        if ex is not None:
            ex.close()
        status.close()
        write_status()
        _restore_sigterm(previous)
    return result


def run_sweep(
    spec: Any,
    *,
    executor: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
    timeout: float | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run a :class:`~kl_alloc.experiments.spec.SweepSpec`'s trials: ``executor`` defaults to
    ``ray`` with an ``address``, else ``local``. Status: ``OUT/sweep.json``; worker logs:
    ``OUT/logs/``. ``timeout`` defaults to the sweep file's."""
    executor = executor or ("ray" if address else "local")
    jobs = [
        Job(t.spec, t.run_dir, meta=t.meta(), name=str(t.run_dir.relative_to(spec.out)))
        for t in spec.trials
    ]
    spec.out.mkdir(parents=True, exist_ok=True)
    return run_jobs(
        jobs,
        executor=executor,
        workers=workers,
        address=address,
        retries=retries,
        timeout=spec.timeout if timeout is None else timeout,
        progress=progress,
        log_dir=spec.out / "logs",
        status_path=spec.out / "sweep.json",
        name=spec.name,
        summary=spec.summary(),
        on_result=on_result,
    )


def _raise_on_sigterm() -> Any:
    """Turn SIGTERM into KeyboardInterrupt while runs are in flight (so the workers are stopped
    and the status written); a no-op outside the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    import threading

    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


# -- the worker process of the local executor -----------------------------------------------------


def _die_with_driver() -> None:
    """Ask Linux to SIGKILL this process when its parent (the driver) dies, and exit if the
    driver is already gone (it died before the request was made)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the driver's own cleanup has to do
        pass
    driver = os.environ.get(_PARENT_VAR)
    if driver and os.getppid() != int(driver):
        os._exit(1)


def worker_main(argv: Sequence[str]) -> int:
    _die_with_driver()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us (Ctrl-C reaches it too)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("numba").setLevel(logging.WARNING)
    job_file, result = argv
    outcome = run_job(json.loads(Path(job_file).read_text()))
    write_json_atomic(Path(result), outcome)
    return 0


__all__ = [
    "EXECUTORS",
    "RAY_HINT",
    "InlineExecutor",
    "Job",
    "LocalExecutor",
    "RayExecutor",
    "RayMissingError",
    "RunResult",
    "SweepResult",
    "import_ray",
    "init_ray",
    "job_state",
    "run_job",
    "run_jobs",
    "run_sweep",
]

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
