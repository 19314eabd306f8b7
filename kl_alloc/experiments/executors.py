"""The executors of the run orchestrator (see :mod:`kl_alloc.experiments.runner`): ``inline``
(this process), ``local`` (a worker process per run, ``python -m kl_alloc.experiments.executors``,
killed with the driver) and ``ray``; and the local worker process itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kl_alloc.experiments.jobs import Job, run_job
from kl_alloc.lifecycle import (
    write_json_atomic,
)

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


# -- executors -------------------------------------------------------------------------------------


@dataclass
class Slot:
    job: Job
    attempt: int
    started: float
    handle: Any = None
    outcome: dict[str, Any] | None = None


class InlineExecutor:
    """Runs each job in this process, when it is submitted."""

    capacity = 1

    def submit(self, slot: Slot) -> None:
        slot.outcome = run_job(slot.job.to_json())

    def wait(self, slots: Sequence[Slot], timeout: float) -> list[Slot]:
        return [s for s in slots if s.outcome is not None]

    def cancel(self, slot: Slot) -> None:
        pass

    def close(self) -> None:
        pass


def _log_name(job: Job, log_dir: Path) -> Path:
    name = job.name or str(job.out).strip("/").replace("/", "__")
    return log_dir / name


class LocalExecutor:
    """One worker process per job (``python -m kl_alloc.experiments.executors JOB RESULT``)."""

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

    def submit(self, slot: Slot) -> None:
        base = _log_name(slot.job, self.log_dir)
        base.parent.mkdir(parents=True, exist_ok=True)
        job_file = base.with_name(base.name + ".job.json")
        result = base.with_name(base.name + ".result.json")
        result.unlink(missing_ok=True)
        write_json_atomic(job_file, slot.job.to_json())
        argv = [sys.executable, "-m", "kl_alloc.experiments.executors", str(job_file), str(result)]
        with open(base.with_name(base.name + ".log"), "a") as log:
            log.write(f"# attempt {slot.attempt + 1}: {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        self.running.append(proc)
        slot.handle = (proc, result, job_file)

    def wait(self, slots: Sequence[Slot], timeout: float) -> list[Slot]:
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

    def cancel(self, slot: Slot) -> None:
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

    def submit(self, slot: Slot) -> None:
        slot.handle = self.remote.remote(slot.job.to_json())

    def wait(self, slots: Sequence[Slot], timeout: float) -> list[Slot]:
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

    def cancel(self, slot: Slot) -> None:
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


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
