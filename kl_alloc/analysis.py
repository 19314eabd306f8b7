"""Reading groups of run directories and computing the paper's metrics from them.

Used by the CLI (``kl-alloc demo``, ``kl-alloc plot``) and by the scripts in ``benchmarks/``,
so a number in a table and a curve in a figure come from the same code. Everything here reads
run directories through :mod:`kl_alloc.rl.telemetry` and never touches torch.

    runs = [load_run(d) for d in find_runs(["runs/bench/matrix"])]
    by_algo = group_by_algo(runs)
    steps = [samples_to_reach(r, 0.99) for r in by_algo["hatrpo-w"]]   # None = never reached
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.rl.telemetry import RunData

#: display order and names of the three methods (anything else sorts after them, as is)
ALGO_ORDER = ("hatrpo", "hatrpo-w", "hatrpo-g")
ALGO_LABELS = {"hatrpo": "HATRPO", "hatrpo-w": "HATRPO-W", "hatrpo-g": "HATRPO-G"}

#: the differential game's global basin (experiments.md s.2): final mean action within
#: BASIN_RADIUS of BASIN_CENTRE
BASIN_CENTRE = (5.0, 5.0)
BASIN_RADIUS = 1.5
LOCAL_CENTRE = (1.0, 1.0)


def algo_label(algo: str) -> str:
    return ALGO_LABELS.get(algo, algo)


def algo_sort_key(algo: str) -> tuple[int, str]:
    return (ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER), algo)


# -- finding and grouping runs ---------------------------------------------------------------------


def is_run_dir(path: str | os.PathLike) -> bool:
    """A run directory holds a ``config.json`` written by the trainer."""
    return (Path(path) / "config.json").is_file()


def find_runs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories among ``paths``: each path is a run directory itself, or a directory
    searched recursively for them. Sorted, without duplicates. Raises ``FileNotFoundError``
    for a path that does not exist and ``ValueError`` if no run is found at all."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or directory")
        if is_run_dir(p):
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(c.parent for c in p.rglob("config.json") if is_run_dir(c.parent)))
    unique = sorted(set(found), key=lambda d: str(d))
    if not unique:
        raise ValueError(f"no run directories (with a config.json) under {[str(p) for p in paths]}")
    return unique


def run_algo(run: RunData) -> str:
    return str(run.config.get("algo", "?"))


def run_seed(run: RunData) -> int:
    return int(run.config.get("seed", -1))


def env_key(run: RunData) -> str:
    """A readable key of the env a run trained on: ``matrix``, ``mamujoco-Ant-2x4``, ..."""
    env = run.config.get("env", {})
    name = str(env.get("name", "?"))
    kwargs = env.get("kwargs", {}) or {}
    if name == "mamujoco":
        parts = [str(kwargs.get("scenario", "")), str(kwargs.get("agent_conf", ""))]
        return "-".join([name] + [p for p in parts if p and p != "None"])
    return name


def group_by_algo(runs: Iterable[RunData]) -> dict[str, list[RunData]]:
    """Runs keyed by algorithm (HATRPO, W, G first), each list sorted by seed."""
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(run_algo(r), []).append(r)
    return {a: sorted(groups[a], key=run_seed) for a in sorted(groups, key=algo_sort_key)}


def group_by_env(runs: Iterable[RunData]) -> dict[str, list[RunData]]:
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(env_key(r), []).append(r)
    return dict(sorted(groups.items()))


def truncate(run: RunData, max_steps: float | None) -> RunData:
    """The run as it stood after ``max_steps`` env steps (iterations beyond are dropped)."""
    if max_steps is None:
        return run
    keep = run.env_steps <= max_steps
    ekeep = run.eval_env_steps <= max_steps
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(run):
        value = getattr(run, f.name)
        if f.name.startswith("eval_"):
            changes[f.name] = value[ekeep]
        elif isinstance(value, np.ndarray) and value.shape[:1] == keep.shape:
            changes[f.name] = value[keep]
        elif f.name == "time":
            changes[f.name] = {k: v[keep] for k, v in value.items()}
    return dataclasses.replace(run, **changes)


# -- the paper's metrics ---------------------------------------------------------------------------


def samples_to_reach(run: RunData, threshold: float = 0.99) -> float | None:
    """Env steps consumed when the expected reward of the joint policy first reached
    ``threshold`` (measured after each iteration's update); ``None`` if it never did."""
    hit = np.flatnonzero(np.nan_to_num(run.expected_reward, nan=-np.inf) >= threshold)
    return float(run.env_steps[hit[0]]) if hit.size else None


def final_expected_reward(run: RunData) -> float:
    return float(run.expected_reward[-1]) if run.expected_reward.size else math.nan


def mean_action_trajectory(run: RunData) -> np.ndarray:
    """(iterations + 1, n_agents) mean actions of a continuous stateless game, starting from
    the initial mean (``config.init_action_mean``). Raises ``ValueError`` if the run's
    telemetry has no per-iteration policy means (not a continuous stateless game)."""
    if run.policy_mean is None:
        raise ValueError("run: progress.jsonl has no per-iteration policy means")
    init = float(run.config.get("config", {}).get("init_action_mean", math.nan))
    start = np.full((1, run.policy_mean.shape[1]), init)
    return np.concatenate([start, run.policy_mean], axis=0)


def final_mean_action(run: RunData) -> np.ndarray:
    return mean_action_trajectory(run)[-1]


def in_basin(
    point: Sequence[float], centre: Sequence[float] = BASIN_CENTRE, radius: float = BASIN_RADIUS
) -> bool:
    return bool(np.linalg.norm(np.asarray(point, float) - np.asarray(centre, float)) <= radius)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sensible at 0/n and n/n)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, quartiles, min, max and mean of the values that are not ``None``; ``n`` counts
    all, ``n_valid`` the others. Censored entries (None, e.g. never reached the threshold)
    count as +inf for the median and quartiles, so a method that often fails is not flattered;
    a statistic that lands on a censored entry is reported as ``None``."""
    valid = np.array([v for v in values if v is not None], dtype=np.float64)
    full = np.array([np.inf if v is None else v for v in values], dtype=np.float64)
    out: dict[str, Any] = {"n": len(full), "n_valid": int(valid.size)}
    if full.size == 0:
        return out | {k: None for k in ("median", "q25", "q75", "min", "max", "mean")}

    def q(p: float) -> float | None:
        # with censored (+inf) entries, take an order statistic rather than interpolate to inf
        method = "linear" if np.isfinite(full).all() else "nearest"
        v = float(np.quantile(full, p, method=method))
        return v if math.isfinite(v) else None

    out["median"] = q(0.5)
    out["q25"] = q(0.25)
    out["q75"] = q(0.75)
    out["min"] = float(valid.min()) if valid.size else None
    out["max"] = float(full.max()) if math.isfinite(full.max()) else None
    out["mean"] = float(valid.mean()) if valid.size == full.size else None
    return out


def bootstrap_ratio_ci(
    numerator: Sequence[float],
    denominator: Sequence[float],
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(numerator) / median(denominator), the two
    samples resampled independently (seeds of different methods are not paired)."""
    a = np.asarray(numerator, np.float64)
    b = np.asarray(denominator, np.float64)
    if a.size == 0 or b.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ma / mb
    lo, hi = np.nanquantile(ratio, [0.025, 0.975])
    return (float(lo), float(hi))


def time_breakdown(runs: Iterable[RunData], skip_first: int = 1) -> dict[str, Any]:
    """Seconds per iteration over a set of runs (median and mean of all iterations but the
    first ``skip_first`` of each run, which carry one-off JIT and warm-up costs) and each
    component's share of the total time (rollout, critic, actor, solver, other)."""
    per_iter: list[np.ndarray] = []
    parts: dict[str, float] = {}
    for r in runs:
        spi = r.seconds_per_iter[skip_first:]
        per_iter.append(spi)
        for k, v in r.time.items():
            parts[k] = parts.get(k, 0.0) + float(np.nansum(v[skip_first:]))
    spi_all = np.concatenate(per_iter) if per_iter else np.zeros(0)
    total = float(np.nansum(spi_all))
    return {
        "iterations": int(spi_all.size),
        "seconds_per_iter_median": float(np.nanmedian(spi_all)) if spi_all.size else None,
        "seconds_per_iter_mean": float(np.nanmean(spi_all)) if spi_all.size else None,
        "share": {k: (v / total if total > 0 else None) for k, v in parts.items()},
        "solver_seconds_per_iter": (
            parts.get("solver", 0.0) / spi_all.size if spi_all.size else None
        ),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
