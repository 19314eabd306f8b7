"""One run of the orchestrator: a :class:`Job` (a RunSpec in its run directory), what the
lifecycle says to do with it (:func:`job_state`), and :func:`run_job`, the unit every executor
runs (in this process, a worker process or a Ray task)."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
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

# -- a job: one run --------------------------------------------------------------------------------


@dataclass
class Job:
    """One run: ``spec`` in ``out``. ``meta`` (a sweep trial's task / method / swept values) is
    written to ``out/trial.json`` with the code's provenance; ``name`` names its log file.
    ``loggers``: :func:`~kl_alloc.rl.callbacks.run_loggers` keywords (``tensorboard``,
    ``wandb``) for the loggers attached while it trains; None for none."""

    spec: RunSpec
    out: Path
    meta: dict[str, Any] | None = None
    name: str | None = None
    loggers: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "out": str(self.out),
            "meta": self.meta,
            "name": self.name,
            "loggers": self.loggers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(RunSpec.from_json(data["spec"]), Path(data["out"]), data.get("meta"),
                   data.get("name"), data.get("loggers"))  # fmt: skip


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
        from kl_alloc.rl.callbacks import chain, run_loggers

        loggers: list[Any] = []
        try:
            if job.loggers:
                resumed_at = trainer.env_steps if p.action == "resume" else None
                loggers = run_loggers(out, resumed_at=resumed_at, **job.loggers)
            trainer.learn(p.steps, progress=False, callback=chain(*loggers))
        finally:
            for lg in loggers:
                lg.close(trainer)
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
        record_error(out, error)
        return error


def record_error(out: Path, error: dict[str, Any]) -> None:
    """``out/error.json``, only in a directory that holds this run (never in another's)."""
    if (out / SPEC_FILE).exists() and "holds another run" not in error.get("error", ""):
        try:
            write_json_atomic(out / "error.json", error)
        except RunError:
            pass
