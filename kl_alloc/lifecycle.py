"""One run lifecycle: how a run directory is created, continued, extended or refused. Used by
``kl-alloc train``, the sweeps (every executor) and the benchmark drivers.

The rules (docs/training.md states them too):

1. The run's full spec (env and its kwargs, method, seed, preset, config overrides, target steps)
   is written to ``spec.json`` before the trainer is built, so a run killed at any moment can be
   continued from its own directory: from ``checkpoint.pt`` if there is one, else restarted from
   its spec (the logs it restarts are exactly the ones it can recreate).
2. ``resume`` keeps the run's own target steps unless new ``steps`` are given (a larger value
   extends a finished run); options given with ``resume`` must match the run's own.
3. Nothing is deleted or overwritten that the command did not create: an existing run is
   refused unless ``resume`` or ``force`` is given, ``force`` deletes only run files, and a
   directory holding other files is refused.
4. Every I/O or corruption failure is a :class:`RunError`: one line naming the file and the way
   out (``--force``, restore the file, free space).

    spec = RunSpec(env="matrix", algo="hatrpo-w", seed=0, steps=200_000)
    result = execute(spec, "runs/w0")                     # new run
    result = execute(None, "runs/w0", resume=True)        # continue it, with its own spec
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.rl.config import EXECUTION_FIELDS
from kl_alloc.rundir import (
    RUN_FILES,
    SPEC,
    TB_DIR,
    TMP_SUFFIX,
    WANDB_DIR,
    WANDB_ID,
    RunDirError,
    check_not_in_use,
)

logger = logging.getLogger(__name__)

SPEC_FILE = SPEC
#: what a restart from the spec deletes: the logs it writes again from iteration 0
RESTART_FILES = ("progress.jsonl", "progress.csv", "eval.jsonl", "done.json", "error.json")


class RunError(Exception):
    """A run directory problem for the user: ``str(err)`` is one line with the way out."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def io_error(path: str | os.PathLike, exc: OSError, doing: str = "write") -> RunError:
    """An OSError as one line naming the file and what to do about it."""
    path = Path(getattr(exc, "filename", None) or path)
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        hint = "the disk is full: free space, then continue with --resume"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "not writable: fix its permissions or choose another --out"
    elif code == errno.ENOENT:
        hint = "it does not exist"
    else:
        hint = exc.strerror or str(exc)
    return RunError(f"{path}: cannot {doing} ({hint})", path)


# -- the spec ------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    """Everything that defines a run; ``spec.json`` holds it.

    Attributes:
        env: registered env name, entry point or ``module:attr``.
        algo: method name (see :mod:`kl_alloc.methods`), entry point or ``module:attr``.
        seed: the run's seed.
        steps: target env steps; None = the env's default.
        preset: which of the env's presets the config starts from.
        overrides: ``TrainerConfig`` overrides on top of the preset (``env_kwargs`` included).
        utility_noise: multiplicative noise on the allocator's measured signal (a sweep control;
            0 = none).
    """

    env: str
    algo: str = "hatrpo"
    seed: int = 0
    steps: int | None = None
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    utility_noise: float = 0.0

    def __post_init__(self) -> None:
        self.seed = int(self.seed)
        if self.steps is not None:
            self.steps = int(self.steps)
            if self.steps < 1:
                raise ValueError(f"steps must be >= 1, got {self.steps}")
        self.overrides = dict(self.overrides)

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.overrides.get("env_kwargs") or {})

    def target_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        from kl_alloc.envs.registry import get_env_entry

        return get_env_entry(self.env).target_steps(self.env_kwargs)

    def config(self):
        """The run's ``TrainerConfig`` (preset + overrides, checked by :mod:`kl_alloc.config`)."""
        from kl_alloc.config import build_config

        return build_config(self.env, self.overrides, preset=self.preset)

    def make_allocator(self, config):
        from kl_alloc.methods import make_allocator

        allocator = make_allocator(self.algo, config)
        if self.utility_noise > 0:
            from kl_alloc.rl.noise import NoisyUtilityAllocator

            allocator = NoisyUtilityAllocator(allocator, self.utility_noise)
        return allocator

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: RunSpec, fields: tuple[str, ...] | None = None) -> list[str]:
        """``"key: mine -> other"`` for every field (and override) that differs."""
        out = []
        mine, theirs = self.to_json(), other.to_json()
        for key in fields or tuple(mine):
            if key == "overrides":
                a, b = mine["overrides"], theirs["overrides"]
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        out.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
            elif mine[key] != theirs[key]:
                out.append(f"{key}: {mine[key]!r} -> {theirs[key]!r}")
        return out


# -- reading a run directory --------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise RunError(
            f"{path}: not valid JSON (truncated or edited?): restore it, or --force to start over",
            path,
        ) from None
    except OSError as exc:
        raise io_error(path, exc, "read") from None


def write_json_atomic(path: Path, obj: Any) -> None:
    """:func:`kl_alloc.rundir.write_json_atomic`, its OSError as a :class:`RunError`."""
    from kl_alloc import rundir

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rundir.write_json_atomic(path, obj)
    except OSError as exc:
        raise io_error(path, exc) from None


def stored_spec(out: Path) -> RunSpec | None:
    """The run's spec: ``spec.json``, or rebuilt from ``config.json`` for runs that predate it
    (their overrides are the whole stored config; target steps unknown)."""
    data = _read_json(out / SPEC_FILE)
    if data is not None:
        return RunSpec.from_json(data)
    cfg = _read_json(out / "config.json")
    if cfg is None:
        return None
    config = dict(cfg.get("config") or {})
    env = cfg.get("env") or {}
    if env.get("kwargs") and not config.get("env_kwargs"):
        config["env_kwargs"] = {k: v for k, v in env["kwargs"].items() if k != "num_envs"}
    return RunSpec(env=env.get("name", "?"), algo=cfg["algo"], seed=cfg["seed"], overrides=config)


@dataclass
class RunState:
    """What ``out`` holds: ``missing``, ``empty``, ``foreign`` (other files), ``run``."""

    kind: str
    spec: RunSpec | None = None
    has_checkpoint: bool = False
    finished_steps: int | None = None  # env steps of done.json, if finished

    def describe(self, out: Path) -> str:
        if self.finished_steps is not None:
            return f"a finished run ({self.finished_steps} env steps)"
        if self.has_checkpoint:
            return "an unfinished run with a checkpoint"
        return "a run that has no checkpoint yet"


def inspect_run(out: str | os.PathLike) -> RunState:
    out = Path(out)
    if not out.exists():
        return RunState("missing")
    if not out.is_dir():
        return RunState("foreign")
    try:
        names = {p.name for p in out.iterdir()}
    except OSError as exc:
        raise io_error(out, exc, "read") from None
    if not names:
        return RunState("empty")
    known = set(RUN_FILES) | {n + TMP_SUFFIX for n in RUN_FILES} | {TB_DIR, WANDB_DIR}
    if not names & set(RUN_FILES) or names - known:
        return RunState("foreign")
    done = _read_json(out / "done.json")
    return RunState(
        "run",
        spec=stored_spec(out),
        has_checkpoint="checkpoint.pt" in names,
        finished_steps=None if done is None else int(done.get("env_steps", 0)),
    )


def delete_run_files(out: Path) -> None:
    """Exactly the files a run writes (and ``tb/``, and the W&B run id so that a new W&B run
    starts; wandb's own files under ``wandb/`` stay: an offline run may not be synced yet);
    anything else stays."""
    try:
        for name in (*RUN_FILES, WANDB_ID):
            (out / name).unlink(missing_ok=True)
            (out / (name + TMP_SUFFIX)).unlink(missing_ok=True)
        if (out / TB_DIR).is_dir():
            shutil.rmtree(out / TB_DIR)
    except OSError as exc:
        raise io_error(out, exc, "delete run files in") from None


# -- deciding what to do -------------------------------------------------------------------------


@dataclass
class Plan:
    """``action``: ``new`` | ``resume`` (from the checkpoint) | ``restart`` (no checkpoint: from
    the spec) | ``finished`` (nothing to do)."""

    action: str
    spec: RunSpec
    out: Path
    steps: int  # the target env steps; ``finished``: the steps the run reached


#: RunSpec fields a resumed run must agree on when the user states them
_RESUME_CHECKED = ("env", "algo", "seed", "preset", "utility_noise")


def plan(
    out: str | os.PathLike,
    spec: RunSpec | None,
    *,
    resume: bool = False,
    force: bool = False,
    steps: int | None = None,
    given: tuple[str, ...] | None = None,
) -> Plan:
    """Decide what to do with ``out`` for ``spec`` (None: the run's own, with ``resume``).

    ``given`` names the spec fields the user stated (checked against a resumed run; default:
    all of them); ``steps`` overrides the target steps.
    """
    out = Path(out)
    state = inspect_run(out)
    if state.kind == "foreign":
        raise RunError(f"{out}: holds files that are not a kl-alloc run: choose another --out", out)
    if state.kind in ("missing", "empty"):
        if spec is None:
            raise RunError(f"{out}: no run to resume there (give the run's --env to start one)")
        if steps is not None:
            spec = dataclasses.replace(spec, steps=steps)
        return Plan("new", spec, out, spec.target_steps())
    try:  # --force, a restart and a resume all cut or delete the run's files
        check_not_in_use(out)
    except RunDirError as exc:
        raise RunError(str(exc), out) from None
    stored = state.spec
    if force:
        if spec is None:
            spec = stored
        if spec is None:
            raise RunError(f"{out}: --force needs the run's settings (its spec.json is gone)", out)
        delete_run_files(out)
        if steps is not None:
            spec = dataclasses.replace(spec, steps=steps)
        return Plan("new", spec, out, spec.target_steps())
    if not resume:
        raise RunError(
            f"{out}: already holds {state.describe(out)}. Pass --resume to continue it (a larger "
            "--steps extends it), --force to delete it and start over, or choose another --out.",
            out,
        )
    if stored is None and spec is not None and (given is None or "env" in given):
        # killed before even its spec was written: the command line states the whole run
        if steps is not None:
            spec = dataclasses.replace(spec, steps=steps)
        return Plan("restart", spec, out, spec.target_steps())
    if stored is None:
        raise RunError(
            f"{out}: neither spec.json nor config.json is there: restore one, or --force", out
        )
    if spec is not None:
        _check_matches(out, stored, spec, given)
        execution = {k: v for k, v in spec.overrides.items() if k in EXECUTION_FIELDS}
        if execution:
            stored = dataclasses.replace(stored, overrides={**stored.overrides, **execution})
    if steps is not None:
        stored = dataclasses.replace(stored, steps=steps)
    target = stored.target_steps()
    if not (out / SPEC_FILE).exists() and steps is None and state.finished_steps is not None:
        target = max(target, state.finished_steps)  # an old run: its own length, not the default
    if state.finished_steps is not None and state.finished_steps >= target:
        return Plan("finished", stored, out, state.finished_steps)
    return Plan("resume" if state.has_checkpoint else "restart", stored, out, target)


def _check_matches(out: Path, stored: RunSpec, asked: RunSpec, given: tuple[str, ...] | None):
    fields = given if given is not None else (*_RESUME_CHECKED, "overrides")
    problems = []
    for key in fields:
        if key == "overrides":
            effective = json.loads(json.dumps(stored.config().to_dict(), default=list))
            for k, v in asked.overrides.items():
                if k in EXECUTION_FIELDS:
                    continue
                have = effective.get(k, stored.overrides.get(k))
                if k == "env_kwargs" and isinstance(v, dict):  # only the keywords stated
                    have = {kk: (have or {}).get(kk) for kk in v}
                if json.loads(json.dumps(v, default=list)) != have:
                    problems.append(f"{k}={v!r} (the run has {have!r})")
        elif key in _RESUME_CHECKED and getattr(asked, key) != getattr(stored, key):
            problems.append(f"{key} {getattr(asked, key)!r} (the run has {getattr(stored, key)!r})")
    if problems:
        raise RunError(
            f"--resume: {out} holds a {stored.algo} run on {stored.env} (seed {stored.seed}) "
            f"whose settings differ: {'; '.join(problems)}. Resume with the run's own settings "
            "(omit them), or train into a new --out.",
            out,
        )


# -- doing it ------------------------------------------------------------------------------------


def open_trainer(p: Plan, provenance: Mapping[str, Any] | None = None):
    """The trainer for a plan: built from the spec (``new``/``restart``, spec written first) or
    loaded from the checkpoint (``resume``)."""
    from kl_alloc.rl import Trainer

    spec = p.spec
    if p.action in ("new", "restart"):
        config = spec.config()
        allocator = spec.make_allocator(config)
        if p.action == "restart":
            logger.warning("%s: no checkpoint yet: restarting the run from its spec", p.out)
            for name in RESTART_FILES:
                (p.out / name).unlink(missing_ok=True)
        record = {**spec.to_json(), "steps": p.steps}
        if provenance:
            record["code"] = dict(provenance)
        write_json_atomic(p.out / SPEC_FILE, record)
        return Trainer(
            spec.env,
            algo=spec.algo,
            config=config,
            seed=spec.seed,
            out_dir=p.out,
            allocator=allocator,
        )
    record = _read_json(p.out / SPEC_FILE) or p.spec.to_json()  # an older run gets its spec
    update = {"steps": p.steps, "overrides": p.spec.to_json()["overrides"]}
    if any(record.get(k) != v for k, v in update.items()) or not (p.out / SPEC_FILE).exists():
        write_json_atomic(p.out / SPEC_FILE, {**record, **update})
    from kl_alloc.rl.checkpoint import CheckpointError

    try:
        return Trainer.resume(
            p.out,
            allocator=p.spec.make_allocator(p.spec.config()),
            num_workers=p.spec.overrides.get("num_workers"),
        )
    except CheckpointError as exc:
        raise RunError(str(exc), p.out) from None


def execute(
    spec: RunSpec | None,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    steps: int | None = None,
    given: tuple[str, ...] | None = None,
    callback: Callable[[Any, dict], Any] | None = None,
    progress: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plan and run to the target steps; returns ``{"action", "out", "steps", "summary"}``."""
    p = plan(out, spec, resume=resume, force=force, steps=steps, given=given)
    if p.action == "finished":
        return {"action": "finished", "out": str(p.out), "steps": p.steps, "summary": None}
    trainer = open_trainer(p, provenance)
    try:
        trainer.learn(p.steps, progress=progress, callback=callback)
    except OSError as exc:
        raise io_error(p.out, exc) from None
    finally:
        trainer.close()
    return {"action": p.action, "out": str(p.out), "steps": p.steps, "trainer": trainer}
