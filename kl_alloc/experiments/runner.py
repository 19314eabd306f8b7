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
  (``python -m kl_alloc.experiments.executors``), one torch / OpenMP thread each, at most
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

import heapq
import json
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.experiments.executors import (
    EXECUTORS,
    RAY_HINT,
    InlineExecutor,
    LocalExecutor,
    RayExecutor,
    RayMissingError,
    Slot,
    import_ray,
    init_ray,
)
from kl_alloc.experiments.jobs import Job, job_state, record_error, run_job
from kl_alloc.lifecycle import (
    write_json_atomic,
)

logger = logging.getLogger(__name__)

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


def _si(steps: float) -> str:
    """1234567 -> '1.23M' (env-step counts in progress lines)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(steps) >= scale:
            return f"{steps / scale:.3g}{unit}"
    return f"{steps:.0f}"


class _StepMeter:
    """Env steps over the runs to do: each run's target (its spec's steps, else its env's
    default) and what it has reached now (the tail of its ``progress.jsonl``). ``None`` from
    :meth:`reached` when a target cannot be known.

    :meth:`eta` prices each run's steps left at its own group's cost: the seconds per env
    step (the last record's ``wall_time`` / ``env_steps``: training time summed over a
    resumed run's sessions) of the runs of the same task, method and swept values, else of
    the same task's runs; the runs already finished (``sources``) count as well. The runs
    priced are laid out in queue order on ``workers`` slots (each to the first free one)
    and the ETA is when the last one ends, so one long run at the end is not split across
    idle workers. A run of a task none of whose runs has a record yet is not priced (steps
    of different tasks cost several times apart): it is counted apart. Per-run start-up and
    final evaluations are not in ``wall_time``: many short runs make the ETA low."""

    def __init__(
        self, jobs: list[Job], workers: int | None = None, sources: Sequence[Job] = ()
    ) -> None:
        from kl_alloc.rundir import last_record

        self._record = last_record
        try:
            self.target = {str(j.out): int(j.spec.target_steps()) for j in jobs}
        except Exception:  # an env that is not importable here: no step count
            self.target = {}
        self.out = {str(j.out): j.out for j in jobs}
        self.group = {str(j.out): _rate_group(j) for j in [*jobs, *sources]}
        self.workers = workers
        # finished runs: read once, rates only
        self._done = {str(j.out): r for j in sources if (r := self._record(j.out))}
        self._records: dict[str, dict[str, Any]] = {}
        self._settled: set[str] = set()
        self.total = sum(self.target.values())

    @staticmethod
    def _steps(record: dict[str, Any] | None) -> int:
        try:
            return int((record or {})["env_steps"])
        except (KeyError, TypeError, ValueError):
            return 0

    def reached(self, settled: set[str]) -> int | None:
        """Steps reached now (a settled run counts as its target: nothing is left of it)."""
        if not self.target:
            return None
        for k in self.target:  # a run settled before the last read changes no more
            if not (k in self._settled and k in self._records):
                if r := self._record(self.out[k]):
                    self._records[k] = r
        self._settled = set(settled)
        return sum(t if k in settled else min(self._steps(self._records.get(k)), t)
                   for k, t in self.target.items())  # fmt: skip

    def _seconds_per_step(self) -> dict[str, float]:
        """Per run to do that can be priced: the seconds one env step of it costs."""
        sums: dict[tuple, list[float]] = {}
        for k, rec in [*self._records.items(), *self._done.items()]:
            steps, wall = self._steps(rec), rec.get("wall_time")
            if steps > 0 and isinstance(wall, int | float) and math.isfinite(wall) and wall > 0:
                task, rest = self.group[k]
                for g in ((task, rest), (task,)):
                    acc = sums.setdefault(g, [0.0, 0.0])
                    acc[0] += wall
                    acc[1] += steps
        rate = {g: w / n for g, (w, n) in sums.items()}
        out = {}
        for k in self.target:
            task, rest = self.group[k]
            for g in ((task, rest), (task,)):
                if g in rate:
                    out[k] = rate[g]
                    break
        return out

    def eta(self) -> tuple[float, int]:
        """(seconds until the last priced run ends, NaN if none can be priced; how many runs
        left cannot be priced yet): see the class docstring. Call :meth:`reached` first."""
        spp = self._seconds_per_step()
        slots = [0.0] * max(1, self.workers or 1)
        priced = unpriced = 0
        for k, t in self.target.items():  # queue order: the runs going come first
            left = 0 if k in self._settled else t - self._steps(self._records.get(k))
            if left <= 0:
                continue
            if k in spp:
                heapq.heapreplace(slots, slots[0] + left * spp[k])
                priced += 1
            else:
                unpriced += 1
        return (max(slots) if priced or not unpriced else math.nan), unpriced


def _rate_group(job: Job) -> tuple[str, str]:
    """(task, the rest of what sets a run's cost) of a job: its trial's task, then its method
    and swept values; without a trial, its env with the env's keywords, then the rest of its
    spec (algorithm, preset, overrides, utility noise)."""

    def text(x: Any) -> str:
        return json.dumps(x, sort_keys=True, default=str)

    if job.meta and job.meta.get("task"):
        return str(job.meta["task"]), text({k: v for k, v in job.meta.items() if k != "task"})
    spec = job.spec
    rest = {k: v for k, v in spec.overrides.items() if k != "env_kwargs"}
    return (f"{spec.env} {text(spec.env_kwargs)}",
            text([spec.algo, spec.preset, rest, spec.utility_noise]))  # fmt: skip


class _Status:
    """A tqdm bar over the runs to do (its ETA), with done / running / failed counts and the
    share of env steps done; without a bar, a log line whenever a run ends, else at most every
    ``LOG_EVERY`` seconds, with the ETA of :class:`_StepMeter` (``sources``: the runs already
    finished, whose records help price the steps left) and how many runs it cannot price."""

    LOG_EVERY = 600.0
    STEPS_EVERY = 30.0  # seconds between two reads of the running runs' progress

    def __init__(
        self,
        total: int,
        skipped: int,
        enabled: bool,
        name: str,
        jobs: list[Job] | None = None,
        sources: Sequence[Job] = (),
    ) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, desc=name, unit="run", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr, mininterval=1.0)  # fmt: skip
        self.skipped, self.total = skipped, total
        self.done = self.failed = self.running = 0
        self.settled: set[str] = set()
        self.meter = _StepMeter(jobs or [], sources=sources)  # workers: set by run_jobs
        self._steps_text, self._steps_share, self._steps_eta = "", "", math.nan
        self._unpriced = 0
        self._steps_at = -math.inf
        self._last_log = 0.0
        self._start = time.monotonic()

    def _steps(self, force: bool) -> tuple[str, float, int]:
        """``("env steps 1.2M of 180M (0.7%)", eta seconds, runs not priced)``, re-read at
        most every ``STEPS_EVERY`` seconds unless ``force``."""
        now = time.monotonic()
        if force or now - self._steps_at >= self.STEPS_EVERY:
            self._steps_at = now
            reached = self.meter.reached(self.settled)
            if reached is None or not self.meter.total:
                self._steps_text, self._steps_share = "", ""
                self._steps_eta, self._unpriced = math.nan, 0
            else:
                self._steps_share = f"{100 * reached / self.meter.total:.1f}%"
                self._steps_text = (f"env steps {_si(reached)} of {_si(self.meter.total)} "
                                    f"({self._steps_share})")  # fmt: skip
                self._steps_eta, self._unpriced = self.meter.eta()
        return self._steps_text, self._steps_eta, self._unpriced

    def note(self, message: str) -> None:
        if self.enabled:
            self.bar.write(message, file=sys.stderr)
        else:
            logger.warning(message)

    def update(self, finished: int = 0) -> None:
        log = not self.enabled and (finished or time.monotonic() - self._last_log >= self.LOG_EVERY)
        steps, steps_eta, unpriced = self._steps(force=bool(log))
        postfix = dict(done=self.done, running=self.running, failed=self.failed,
                       skipped=self.skipped)  # fmt: skip
        if self._steps_share:
            postfix["steps"] = self._steps_share
        self.bar.set_postfix(**postfix, refresh=False)
        if finished:
            self.bar.update(finished)
        if not log:
            return
        self._last_log = time.monotonic()
        n = self.done + self.failed
        if steps:
            eta = steps_eta
        else:
            eta = (time.monotonic() - self._start) / n * (self.total - n) if n else float("nan")
        eta_text = "?" if eta != eta else self.bar.format_interval(eta)
        if steps and unpriced:  # runs of a task with no record yet: no rate to price them at
            plural = "s" if unpriced != 1 else ""
            eta_text += f" + {unpriced} run{plural} not priced (no timed step of their task yet)"
        logger.info("runs: %d/%d finished (%d failed), %d running%s, ETA %s", n, self.total,
                    self.failed, self.running, f"; {steps}" if steps else "", eta_text)  # fmt: skip

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


def _timed_out(ex: Any, inflight: list[Slot], timeout: float | None) -> list[Slot]:
    """Cancel (and report failed) the runs still running after ``timeout`` seconds."""
    if timeout is None:
        return []
    out = []
    now = time.monotonic()
    for s in inflight:
        if s.outcome is None and now - s.started > timeout:
            ex.cancel(s)
            s.outcome = {
                "status": "failed",
                "run_dir": str(s.job.out),
                "error": f"timed out after {timeout:g} s (worker killed)",
            }
            record_error(s.job.out, s.outcome)
            out.append(s)
    return out


def _settle(s: Slot, retries: int, status: _Status) -> dict[str, Any] | None:
    """A finished slot's outcome (with ``retries``), or None if its worker died and it gets
    another attempt."""
    outcome = dict(s.outcome or {})
    key = str(s.job.out)
    if outcome["status"] == "died":
        if s.attempt < retries:
            status.note(f"{key}: {outcome['error']}: retrying ({s.attempt + 1} of {retries})")
            return None
        outcome["status"] = "failed"
        outcome["error"] += f" (after {s.attempt} retries)"
        record_error(s.job.out, outcome)
    outcome["retries"] = s.attempt
    status.settled.add(key)
    if outcome["status"] == "failed":
        status.failed += 1
        status.note(f"run failed: {key}: {outcome['error']}")
    else:
        status.done += 1
    return outcome


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
    done = [j for j in jobs if result.status.get(str(j.out), {}).get("status") == "skipped"]
    status = _Status(len(todo), result.count("skipped"), progress, name, list(todo), done)
    previous = _raise_on_sigterm()
    ex = None
    try:
        ex = _make_executor(executor, workers, address, Path(log_dir or "logs"))
        status.meter.workers = ex.capacity
        inflight: list[Slot] = []
        attempts: dict[str, int] = {}
        while todo or inflight:
            while todo and len(inflight) < ex.capacity:
                job = todo.popleft()
                slot = Slot(job, attempts.get(str(job.out), 0), time.monotonic())
                inflight.append(slot)
                ex.submit(slot)
            status.running = len(inflight)
            status.update()
            finished = ex.wait(inflight, timeout=1.0) + _timed_out(ex, inflight, timeout)
            for s in finished:
                inflight.remove(s)
                outcome = _settle(s, retries, status)
                if outcome is None:  # the worker died: run it again (it resumes)
                    attempts[str(s.job.out)] = s.attempt + 1
                    todo.appendleft(s.job)
                    continue
                result.status[str(s.job.out)] = outcome
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
    tensorboard: bool = False,
    wandb: dict[str, Any] | None = None,
) -> RunResult:
    """Run a :class:`~kl_alloc.experiments.spec.SweepSpec`'s trials: ``executor`` defaults to
    ``ray`` with an ``address``, else ``local``. Status: ``OUT/sweep.json``; worker logs:
    ``OUT/logs/``. ``timeout`` defaults to the sweep file's.

    ``tensorboard``: each trial writes TensorBoard scalars to its ``RUN_DIR/tb``. ``wandb``:
    :class:`~kl_alloc.rl.callbacks.WandbLogger` keywords (project, entity, group): each trial is
    one W&B run named after its run directory, in the group ``wandb["group"]`` (default: the
    sweep's name), tagged with its task and method; None for no W&B."""
    executor = executor or ("ray" if address else "local")

    def loggers(t: Any, name: str) -> dict[str, Any] | None:
        if not tensorboard and wandb is None:
            return None
        wb = None
        if wandb is not None:
            wb = {"group": spec.name} | {k: v for k, v in wandb.items() if v is not None}
            wb |= {"name": name, "tags": [t.task, t.method]}
        return {"tensorboard": tensorboard, "wandb": wb}

    jobs = []
    for t in spec.trials:
        name = str(t.run_dir.relative_to(spec.out))
        jobs.append(Job(t.spec, t.run_dir, meta=t.meta(), name=name, loggers=loggers(t, name)))
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
