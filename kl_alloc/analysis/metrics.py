"""Finding run directories, grouping them, and the paper's metrics computed from them.

One metric per task, chosen by :func:`choose_metric`, is used by the report's table and by
every learning-curve figure, so a number in a table and a curve in a figure come from the
same data:

    runs = [load_run(d) for d in find_runs(["runs/bench/matrix"])]
    metric = choose_metric(runs)                       # "expected_reward" on the games
    by_algo = group_by_algo(runs)
    steps = [samples_to_reach(r, 0.99, metric) for r in by_algo["hatrpo-w"]]  # None: never
    finals = [final_value(r, metric) for r in by_algo["hatrpo-w"]]
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.methods import method_sort_key
from kl_alloc.rundir import CONFIG, RunData

#: the differential game's global basin (experiments.md s.2): final mean action within
#: BASIN_RADIUS of BASIN_CENTRE
BASIN_CENTRE = (5.0, 5.0)
BASIN_RADIUS = 1.5
LOCAL_CENTRE = (1.0, 1.0)

#: resamples of the bootstrap intervals
RESAMPLES = 10_000

#: the metrics a task can be measured by, with their axis labels
METRIC_LABELS = {
    "expected_reward": "expected reward of the joint policy",
    "eval_return": "evaluation return (deterministic policy)",
    "episode_return": "episode return (training rollouts)",
}


# -- finding and grouping runs ---------------------------------------------------------------------


def is_run_dir(path: str | os.PathLike) -> bool:
    """A run directory holds a ``config.json`` written by the trainer."""
    return (Path(path) / CONFIG).is_file()


def find_runs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories among ``paths``: each path is a run directory itself, or a directory
    searched recursively for them. Sorted, without duplicates. Raises ``FileNotFoundError``
    for a path that does not exist and ``ValueError`` if no run is found at all."""
    paths = list(paths)
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or directory")
        if is_run_dir(p):
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(c.parent for c in p.rglob(CONFIG) if is_run_dir(c.parent)))
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
    """Runs keyed by algorithm in the method registry's display order, each sorted by seed."""
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(run_algo(r), []).append(r)
    return {a: sorted(groups[a], key=run_seed) for a in sorted(groups, key=method_sort_key)}


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


# -- the metric of a task and its curves -----------------------------------------------------------


def choose_metric(runs: Sequence[RunData]) -> str:
    """The one metric a set of runs (a task) is measured by, in tables and curves alike:
    ``expected_reward`` if every run has it (the games), else ``eval_return`` if every run
    has at least two evaluations (a curve, and a final value that is more than the last
    point), else ``episode_return``."""
    if runs and all(np.isfinite(r.expected_reward).any() for r in runs):
        return "expected_reward"
    if runs and all(np.isfinite(r.eval_return_mean).sum() >= 2 for r in runs):
        return "eval_return"
    return "episode_return"


def run_curve(run: RunData, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, value) of one run for ``metric``, NaN entries dropped."""
    if metric == "expected_reward":
        x, y = run.env_steps, run.expected_reward
    elif metric == "eval_return":
        x, y = run.eval_env_steps, run.eval_return_mean
    elif metric == "episode_return":
        x, y = run.env_steps, run.episode_return
    else:
        raise ValueError(f"metric: expected one of {sorted(METRIC_LABELS)}, got {metric!r}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def seed_statistics(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds on the union of their x values. Each seed is linearly
    interpolated inside its own x range and missing outside it (no extrapolation); returns
    ``(x, mean, std, count)``."""
    curves = [(x, y) for x, y in curves if x.size]
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    values = np.full((len(curves), grid.size), np.nan)
    for k, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[k, inside] = np.interp(grid[inside], x, y)
    count = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():  # columns without data: "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
    return grid, mean, std, count


def samples_to_reach(
    run: RunData, threshold: float = 0.99, metric: str = "expected_reward"
) -> float | None:
    """Env steps consumed when ``metric`` first reached ``threshold`` (the expected reward is
    measured after each iteration's update); ``None`` if it never did."""
    x, y = run_curve(run, metric)
    hit = np.flatnonzero(y >= threshold)
    return float(x[hit[0]]) if hit.size else None


def final_value(run: RunData, metric: str) -> float:
    """The run's final performance: the last expected reward (games); otherwise the mean of
    the last 10% of the evaluations (or episode returns), at least one (experiments.md s.3)."""
    if metric == "expected_reward":
        return float(run.expected_reward[-1]) if run.expected_reward.size else math.nan
    _, y = run_curve(run, metric)
    if not y.size:
        return math.nan
    return float(y[-max(1, math.ceil(0.1 * y.size)) :].mean())


def final_expected_reward(run: RunData) -> float:
    return final_value(run, "expected_reward")


def default_threshold(env_name: str, metric: str, run: RunData) -> float | None:
    """0.99 of the payoff on the matrix game (experiments.md s.1); none elsewhere."""
    if env_name == "matrix" and metric == "expected_reward":
        payoff = (run.config.get("env", {}).get("kwargs", {}) or {}).get("payoff", 1.0)
        return 0.99 * float(payoff)
    return None


# -- the differential game -------------------------------------------------------------------------


def mean_action_trajectory(run: RunData) -> np.ndarray:
    """(iterations + 1, n_agents) mean actions of a continuous stateless game, starting from
    the initial mean (``config.init_action_mean``). Raises ``ValueError`` if the run's
    progress has no per-iteration policy means (not a continuous stateless game)."""
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


# -- statistics over seeds -------------------------------------------------------------------------


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


def bootstrap_mean_ci(
    values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean; NaN with fewer than 2 values (one value
    resamples to itself: a zero-width interval would claim a precision that is not there)."""
    x = np.asarray(values, np.float64)
    if x.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return (float(lo), float(hi))


def bootstrap_ratio_ci(
    numerator: Sequence[float],
    denominator: Sequence[float],
    resamples: int = RESAMPLES,
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


#: fewest seeds per side for a bootstrap interval of a variance ratio
MIN_SEEDS_VAR_CI = 5


def bootstrap_improvement(
    values: Sequence[float], base: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """(mean - mean_base) / |mean_base| and var / var_base with 95% bootstrap intervals (the
    two samples resampled independently; NaN with fewer than 2 runs a side, and for the
    variance ratio fewer than :data:`MIN_SEEDS_VAR_CI`)."""
    a, b = np.asarray(values, np.float64), np.asarray(base, np.float64)
    out = {
        k: math.nan for k in ("improvement", "imp_lo", "imp_hi", "var_ratio", "var_lo", "var_hi")
    }
    if a.size == 0 or b.size == 0:
        return out
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, (resamples, a.size))]
    rb = b[rng.integers(0, b.size, (resamples, b.size))]
    mb = b.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        if mb != 0:
            out["improvement"] = float((a.mean() - mb) / abs(mb))
        # one run on a side resamples to itself: its interval would claim a precision that
        # is not there (one run each gave "+5.5% [+5.5%, +5.5%]")
        if mb != 0 and a.size > 1 and b.size > 1:
            imp = (ra.mean(axis=1) - rb.mean(axis=1)) / np.abs(rb.mean(axis=1))
            out["imp_lo"], out["imp_hi"] = (float(v) for v in np.nanquantile(imp, [0.025, 0.975]))
        if a.size > 1 and b.size > 1:
            vb = b.var(ddof=1)
            out["var_ratio"] = float(a.var(ddof=1) / vb) if vb > 0 else math.inf
            ratio = ra.var(axis=1, ddof=1) / rb.var(axis=1, ddof=1)
            ratio = ratio[np.isfinite(ratio)]
            # with fewer than 5 seeds a side, resampled variances are mostly 0: no interval
            if ratio.size and min(a.size, b.size) >= MIN_SEEDS_VAR_CI:
                out["var_lo"], out["var_hi"] = (
                    float(v) for v in np.quantile(ratio, [0.025, 0.975])
                )
    return out


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
