"""The run directory: what a training run writes, how to read it back, and where the code
that wrote it came from. Torch-free (analysis, reports and plots read runs without torch).

Layout of ``out_dir`` (stable: the CLI, plots and benchmarks read it)::

    config.json      written at start: {"algo", "seed", "env": {"name", "kwargs", "n_agents",
                     "num_envs", "obs_sizes", "state_size", "actions"}, "config": TrainerConfig
                     as a dict, "version": kl_alloc version, "format": 1}
    progress.jsonl   one JSON object per iteration, flushed as soon as the iteration ends:
        iteration          1-based iteration index
        env_steps          env steps consumed so far (all copies)
        wall_time          training seconds so far, summed over the run's sessions (a resume
                           goes on from its checkpoint's; start-up and the time between
                           sessions not counted)
        seconds_per_iter   wall time of this iteration
        time               {"rollout", "critic", "actor", "solver", "other"}: disjoint seconds
                           ("actor" is the sequential update without the allocator's solver call)
        mean_reward        mean per-step reward of this iteration's rollout
        expected_reward    exact expected reward of the current joint policy, after the update
                           (games; null when the env cannot compute it)
        episode_return     mean return of the episodes that ended in this rollout (null if none)
        episodes           how many episodes ended in this rollout
        critic_loss        last-epoch critic loss
        delta_total        the joint KL budget
        budget_used        sum of the agents' actual KLs (<= delta_total)
        order              agents in the order they were updated (skipped agents absent)
        agents             per agent i (list index = agent id): {"agent", "delta_alloc",
                           "radius", "kl", "predicted_improvement", "actual_improvement",
                           "accepted", "position" (null = not updated), "utility" (W: q_i),
                           "probe_improvement", "probe_kl" (G: first-round probe), "probes",
                           "ls_tries"}
        policy             stateless games only: per agent {"probs": [...]} or
                           {"mean": [...], "std": [...]} after the update (trajectories)
        eval               only in an iteration that ended with an evaluation (absent in runs
                           written before it was added): the same object as its eval.jsonl line
    eval.jsonl       one line per evaluation: {"iteration", "env_steps", "return_mean",
                     "return_std", "episodes", "expected_reward"} (the final evaluation of a run
                     whose last iteration was not an evaluation one appears only here)
    checkpoint.pt    everything needed to resume bit-for-bit (see trainer.py); atomic writes
    progress.csv     the same per-iteration records as a flat table (one column per scalar,
                     ``agent{i}_{field}`` per agent, ``time_{part}``), rewritten from
                     progress.jsonl at every checkpoint and at the end (``write_progress_csv``)
    done.json        written only when a run finishes: {"iterations", "env_steps", "wall_time",
                     "final_expected_reward", "final_eval", "seconds_per_iter"}

Missing values are JSON ``null`` (never NaN). A line cut short by a crash is ignored by the
readers, and a resumed run truncates both JSONL files back to its checkpoint.

:func:`provenance` says which code and command produced a result (sweep trials, reports,
benchmark JSON).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1

CONFIG = "config.json"
PROGRESS = "progress.jsonl"
EVAL = "eval.jsonl"
CHECKPOINT = "checkpoint.pt"
PROGRESS_CSV = "progress.csv"
DONE = "done.json"
#: every file a training run writes (and the temporary names of its atomic writes)
SPEC = "spec.json"  # the run's spec, written before the first iteration (kl_alloc.lifecycle)
ERROR = "error.json"  # a failed sweep trial's error
TRIAL = "trial.json"  # a sweep trial's task / method / params
TRIAL_LOG = "trial.log"
TB_DIR = "tb"  # TensorBoard scalars
WANDB_DIR = "wandb"  # wandb's own files (offline runs) and WANDB_ID, with --wandb
WANDB_ID = "wandb/kl_alloc_run.json"  # the W&B run id, continued by --resume
TMP_SUFFIX = ".tmp"
#: every file a run writes: ``--force`` deletes exactly these, their ``.tmp`` and ``tb/``
RUN_FILES = (SPEC, CONFIG, PROGRESS, PROGRESS_CSV, EVAL, CHECKPOINT, DONE, ERROR, TRIAL, TRIAL_LOG)


def _clean(x: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "__dataclass_fields__"):
        import dataclasses

        return _clean(dataclasses.asdict(x))
    return x


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON through a synced temporary file and ``os.replace``: the file is either the
    old one or the whole new one, also after a power loss."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDirError(ValueError):
    """A run directory whose files no longer match its checkpoint (one line, with the way out)."""


def _lock(f: Any, run_dir: Path, release: bool = False) -> None:
    """An exclusive, non-blocking lock on an open file (released by ``release``, or when it is
    closed, also by a crash); a no-op where ``fcntl`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        return
    if release:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirError(
            f"{run_dir} is being written by another process (a training of this run is still "
            "going): wait for it to end, or choose another out directory"
        ) from None


def check_not_in_use(run_dir: str | os.PathLike) -> None:
    """RunDirError if a training holds ``run_dir``'s lock now (see :meth:`RunWriter.open`):
    what deletes or rewrites a run's files asks this first."""
    path = Path(run_dir) / PROGRESS
    if not path.exists():
        return
    with open(path, "a", encoding="utf-8") as f:
        _lock(f, Path(run_dir))
        _lock(f, Path(run_dir), release=True)


class RunWriter:
    """Appends to ``progress.jsonl`` / ``eval.jsonl`` with a flush per line."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._progress = None
        self._eval = None

    @property
    def progress_path(self) -> Path:
        return self.dir / PROGRESS

    @property
    def eval_path(self) -> Path:
        return self.dir / EVAL

    def open(self, progress_offset: int | None = None, eval_offset: int | None = None) -> None:
        """Open for appending; with offsets (a resume), first cut the files back to them.
        Takes an exclusive lock on ``progress.jsonl`` (held until :meth:`release` or
        :meth:`close`, or the process ends): a second writer of the same run directory gets a
        :class:`RunDirError` before it cuts or writes anything."""
        progress = open(self.progress_path, "a", encoding="utf-8")  # noqa: SIM115
        try:
            _lock(progress, self.dir)
        except BaseException:
            progress.close()
            raise
        for path, offset in ((self.progress_path, progress_offset), (self.eval_path, eval_offset)):
            if offset is None:
                path.write_text("")
            else:
                size = path.stat().st_size if path.exists() else 0
                if size < offset:
                    raise RunDirError(
                        f"{path} is shorter ({size} bytes) than at the checkpoint ({offset}): "
                        "restore it, or start the run over with --force"
                    )
                with open(path, "a+b") as f:
                    f.truncate(offset)
        self._progress = progress  # O_APPEND: it writes at the end, wherever that now is
        self._eval = open(self.eval_path, "a", encoding="utf-8")  # noqa: SIM115

    def acquire(self) -> None:
        """Take the run directory's lock again (after :meth:`release`); RunDirError if another
        writer holds it."""
        if self._progress is not None:
            _lock(self._progress, self.dir)

    def release(self) -> None:
        """Let another writer have the run directory (the files stay open)."""
        if self._progress is not None:
            _lock(self._progress, self.dir, release=True)

    def positions(self) -> tuple[int, int]:
        """Byte offsets of both files (stored in checkpoints: the telemetry position), after
        syncing them to disk: a checkpoint never points past lines a power loss could take."""
        for f in (self._progress, self._eval):
            f.flush()
            os.fsync(f.fileno())
        return tuple(os.fstat(f.fileno()).st_size for f in (self._progress, self._eval))

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.dir / CONFIG, config)

    def progress(self, record: dict[str, Any]) -> None:
        self._progress.write(dumps(record) + "\n")
        self._progress.flush()

    def eval(self, record: dict[str, Any]) -> None:
        self._eval.write(dumps(record) + "\n")
        self._eval.flush()

    def done(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.dir / DONE, summary)

    def close(self) -> None:
        for f in (self._progress, self._eval):
            if f is not None:
                f.close()
        self._progress = self._eval = None


# -- reading back ----------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # cut short by a crash
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RunDirError(
                    f"{path}: line {number} is not JSON ({exc.msg}): the file was edited or "
                    "damaged; restore it, or cut it back to the line before"
                ) from None
    return out


def read_progress(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-iteration records of ``progress.jsonl``."""
    return _read_jsonl(Path(run_dir) / PROGRESS)


def last_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last complete ``progress.jsonl`` record, None if there is none (or it is not a JSON
    object); reads only the file's tail (cheap enough to poll a running run)."""
    path = Path(run_dir) / PROGRESS
    block = 1 << 16
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            while True:
                start = max(0, size - block)
                f.seek(start)
                lines = f.read(size - start).split(b"\n")[:-1]  # the last piece is unfinished
                if start > 0:
                    lines = lines[1:]  # the first may be cut
                for line in reversed(lines):
                    if line.strip():
                        try:
                            record = json.loads(line)
                        except ValueError:
                            return None
                        return record if isinstance(record, dict) else None
                if start == 0:
                    return None
                block *= 4
    except OSError:
        return None


def read_eval(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluations of ``eval.jsonl``."""
    return _read_jsonl(Path(run_dir) / EVAL)


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(run_dir) / CONFIG).read_text())


def _num(x: Any) -> float:
    return np.nan if x is None else float(x)


@dataclass
class RunData:
    """A run as numpy arrays (NaN where a value is missing), for plotting without pandas.

    Per-iteration arrays have shape (iterations,); per-agent ones (iterations, n_agents);
    ``position`` is -1 where the agent was not updated.
    """

    config: dict[str, Any]
    iteration: np.ndarray
    env_steps: np.ndarray
    wall_time: np.ndarray
    seconds_per_iter: np.ndarray
    mean_reward: np.ndarray
    expected_reward: np.ndarray
    episode_return: np.ndarray
    budget_used: np.ndarray
    delta_total: np.ndarray
    time: dict[str, np.ndarray]
    delta_alloc: np.ndarray
    radius: np.ndarray
    kl: np.ndarray
    predicted_improvement: np.ndarray
    actual_improvement: np.ndarray
    accepted: np.ndarray
    position: np.ndarray
    utility: np.ndarray
    policy_mean: np.ndarray | None  # (iterations, n_agents) first mean component (continuous)
    eval_env_steps: np.ndarray
    eval_return_mean: np.ndarray
    eval_return_std: np.ndarray
    done: dict[str, Any] | None


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run directory into :class:`RunData`."""
    run_dir = Path(run_dir)
    recs = read_progress(run_dir)
    evals = read_eval(run_dir)
    config = read_config(run_dir) if (run_dir / CONFIG).exists() else {}
    n = len(recs[0]["agents"]) if recs else int(config.get("env", {}).get("n_agents", 0))

    def col(key: str) -> np.ndarray:
        return np.array([_num(r.get(key)) for r in recs], dtype=np.float64)

    def agent_col(key: str) -> np.ndarray:
        out = np.full((len(recs), n), np.nan)
        for t, r in enumerate(recs):
            for i, a in enumerate(r["agents"]):
                out[t, i] = _num(a.get(key))
        return out

    time_keys = ("rollout", "critic", "actor", "solver", "other")
    times = {k: np.array([_num(r.get("time", {}).get(k)) for r in recs]) for k in time_keys}
    position = agent_col("position")
    policy_mean = None
    if recs and recs[0].get("policy") and "mean" in recs[0]["policy"][0]:
        policy_mean = np.array([[p["mean"][0] for p in r["policy"]] for r in recs])
    done_path = run_dir / DONE
    return RunData(
        config=config,
        iteration=col("iteration").astype(np.int64) if recs else np.zeros(0, np.int64),
        env_steps=col("env_steps"),
        wall_time=col("wall_time"),
        seconds_per_iter=col("seconds_per_iter"),
        mean_reward=col("mean_reward"),
        expected_reward=col("expected_reward"),
        episode_return=col("episode_return"),
        budget_used=col("budget_used"),
        delta_total=col("delta_total"),
        time=times,
        delta_alloc=agent_col("delta_alloc"),
        radius=agent_col("radius"),
        kl=agent_col("kl"),
        predicted_improvement=agent_col("predicted_improvement"),
        actual_improvement=agent_col("actual_improvement"),
        accepted=agent_col("accepted") > 0.5,
        position=np.where(np.isnan(position), -1, position).astype(np.int64),
        utility=agent_col("utility"),
        policy_mean=policy_mean,
        eval_env_steps=np.array([_num(e.get("env_steps")) for e in evals]),
        eval_return_mean=np.array([_num(e.get("return_mean")) for e in evals]),
        eval_return_std=np.array([_num(e.get("return_std")) for e in evals]),
        done=json.loads(done_path.read_text()) if done_path.exists() else None,
    )


_AGENT_FIELDS = (
    "delta_alloc",
    "radius",
    "kl",
    "predicted_improvement",
    "actual_improvement",
    "accepted",
    "position",
    "utility",
)


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key == "agents":
            for a in value:
                for f in _AGENT_FIELDS:
                    row[f"agent{a['agent']}_{f}"] = a.get(f)
        elif key == "time":
            for part, sec in value.items():
                row[f"time_{part}"] = sec
        elif key == "order":
            row["order"] = " ".join(str(i) for i in value)
        elif not isinstance(value, dict | list):
            row[key] = value
    return row


def write_progress_csv(run_dir: str | os.PathLike) -> Path:
    """Write ``progress.csv`` (a flat view of ``progress.jsonl``, see the module docstring)
    atomically; returns its path. Empty cells are missing values."""
    import csv
    import io

    rows = [_flat(r) for r in read_progress(run_dir)]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    path = Path(run_dir) / PROGRESS_CSV
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- provenance ------------------------------------------------------------------------------------

#: the checkout kl_alloc is imported from (a git work tree when installed editable)
_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    if not (_ROOT / ".git").exists():  # an installed package: never ask an enclosing repository
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.rstrip("\n")  # keep porcelain's leading status columns


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (without importing it), None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)  # the installed version, without importing the package
    except PackageNotFoundError:
        return None


def command_line(script: str | None = None, argv: Sequence[str] | None = None) -> str:
    """The exact command: the interpreter and arguments this process was started with, or,
    when a script's ``main(argv)`` was called from Python, the equivalent command line."""
    if script is not None and argv is not None:
        try:
            path = os.path.relpath(script)
        except ValueError:
            path = script
        return shlex.join([sys.executable, path, *argv])
    return shlex.join(list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))


def provenance(script: str | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Which code, command and machine produced a result (sweep trials, reports, benchmarks).

    Keys: ``generated_utc``, ``command`` (see :func:`command_line`), ``cwd``, ``kl_alloc``
    (version), ``path`` (the checkout), ``git_commit`` (full hash) / ``git_dirty`` (tracked
    files changed) / ``modified_files`` (None outside a git checkout), ``python``, ``numpy``,
    ``torch`` (installed versions; torch is not imported), ``cpus``, ``machine``.
    """
    from kl_alloc import __version__

    changed = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command_line(script, argv),
        "cwd": os.getcwd(),
        "kl_alloc": __version__,
        "path": str(_ROOT),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if changed is None else bool(changed.strip()),
        "modified_files": None if changed is None else [ln[3:] for ln in changed.splitlines()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": dist_version("torch"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
