"""Run directories as the reports see them: one :class:`RunSummary` per run (its task, method,
seed and swept fields, from ``trial.json`` or guessed from ``config.json``), and the ordering
helpers every table and figure shares. Torch-free."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.analysis.metrics import env_key, find_runs
from kl_alloc.methods import method_sort_key
from kl_alloc.rundir import RunData, load_run

#: config fields never treated as swept when guessing them from config.json
_NOT_SWEPT = ("seed", "checkpoint_every", "eval_every", "eval_episodes")


@dataclass
class RunSummary:
    run_dir: Path
    task: str
    method: str
    algo: str
    seed: int
    params: dict[str, Any]
    env_name: str
    n_agents: int
    finished: bool
    data: RunData = field(repr=False)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _flat_config(run: RunData) -> dict[str, Any]:
    cfg = dict(run.config.get("config", {}) or {})
    env_kwargs = cfg.pop("env_kwargs", {}) or {}
    out = {k: v for k, v in cfg.items() if k not in _NOT_SWEPT}
    spec_kwargs = run.config.get("env", {}).get("kwargs", {}) or {}
    for k, v in {**env_kwargs, **spec_kwargs}.items():
        if k not in ("num_envs", "seed"):
            out[f"env.{k}"] = v
    return out


def _summarize(run_dir: Path) -> tuple[RunSummary, bool]:
    """One run's summary, and whether its task/method were guessed (no trial.json)."""
    data = load_run(run_dir)
    trial = read_json(run_dir / "trial.json")
    env = data.config.get("env", {})
    common = dict(
        run_dir=run_dir,
        seed=int(data.config.get("seed", -1)),
        env_name=str(env.get("name", "?")),
        n_agents=int(env.get("n_agents", 0)),
        finished=data.done is not None,
        data=data,
    )
    if trial is not None:
        return RunSummary(
            task=str(trial["task"]),
            method=str(trial["method"]),
            algo=str(trial["algo"]),
            params=dict(trial.get("params", {})),
            **common,
        ), False
    algo = str(data.config.get("algo", "?"))
    allocator = str(data.config.get("allocator", ""))
    method = algo if allocator in ("", "uniform", "water_fill", "greedy") else allocator
    return RunSummary(task=env_key(data), method=method, algo=algo, params={}, **common), True


def summarize_runs(paths: Iterable[str | os.PathLike]) -> list[RunSummary]:
    """Load every run directory under ``paths`` and name its task, method and swept fields."""
    summaries: list[RunSummary] = []
    by_tm: dict[tuple[str, str], list[RunSummary]] = {}
    for run_dir in find_runs(paths):
        s, guessed = _summarize(run_dir)
        summaries.append(s)
        if guessed:
            by_tm.setdefault((s.task, s.method), []).append(s)
    # swept fields of runs without trial.json: config values that differ within (task, method)
    for group in by_tm.values():
        flats = [_flat_config(s.data) for s in group]
        keys = sorted(set().union(*flats))
        varying = [
            k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1
        ]
        for s, f in zip(group, flats, strict=True):
            s.params = {k: f.get(k) for k in varying}
    return summaries


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the current directory when it lies below it (portable reports)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _sort_value(v: Any) -> tuple:
    if isinstance(v, bool):
        return (0, int(v), "")
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, 0.0, json.dumps(v, sort_keys=True))


def row_order(row: dict[str, Any], baseline: str) -> tuple:
    """The baseline first, then the methods in the registry's order, then by swept values."""
    m = row["method"]
    rank = 0 if m == baseline else 1 + method_sort_key(m)[0]
    return (rank, m, [(k, _sort_value(v)) for k, v in sorted(row["params"].items())])


__all__ = [
    "RunSummary",
    "display_path",
    "params_key",
    "read_json",
    "row_order",
    "summarize_runs",
]
