"""Robust statistics of final scores over seeds (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice"), computed with the ``rliable`` package (the ``analysis`` extra).

Definitions (``scores`` of one method: a ``(runs, tasks)`` matrix of final scores):

- **final score** of a run (:func:`final_score`): the mean of its evaluations (or episode
  returns) logged in the last ``fraction`` (default 10%) of its training, i.e. at env steps
  ``x >= (1 - fraction) * T`` with ``T`` the env steps the run reached; at least the last one.
  On the games (metric ``expected_reward``) it is the exact expected reward of the final joint
  policy: there is no evaluation noise to average out.
- **IQM**: the interquartile mean, the mean of the middle 50% of all ``runs x tasks`` scores
  (``scipy.stats.trim_mean(scores, 0.25, axis=None)``: ``floor(0.25 n)`` scores cut at each end).
- **intervals**: 95% percentile stratified bootstrap (runs resampled with replacement within
  each task; two methods resampled independently), ``rliable.library.get_interval_estimates``.
- **probability of improvement** P(X > Y): per task the Mann-Whitney statistic
  ``P(x > y) + P(x = y) / 2`` over all pairs of runs, averaged over tasks.
- **performance profile**: the fraction of all runs (of all tasks) whose score is above a
  threshold tau, as a function of tau, with a pointwise bootstrap band.
- **variance ratio** var(X) / var(Y): sample variances (ddof=1) of the seeds' final scores of
  one task, independent bootstrap of both (a resample with all-equal Y seeds gives inf).
- **normalisation across tasks** (:func:`minmax_normalise`): per task,
  ``(score - min) / (max - min)`` with min and max over every run of the task (all methods
  and configs compared), so 0 is the task's worst run and 1 its best; the aggregate across
  tasks is the IQM of these.

``import kl_alloc.analysis.robust`` works without rliable; the functions that need it raise an
``ImportError`` naming the extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kl_alloc.analysis.metrics import RESAMPLES, run_curve
from kl_alloc.rundir import RunData

#: the share of training whose evaluations make a run's final score
FRACTION = 0.1

_EXTRA_HINT = (
    "the robust statistics (IQM, probability of improvement, performance profiles) need the "
    "rliable package: pip install 'kl_alloc[analysis]'"
)


def require_rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``; ``ImportError`` naming the extra if missing."""
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT) from exc
    logging.getLogger("absl").setLevel(logging.WARNING)  # one INFO line per bootstrap otherwise
    return library, metrics


def has_rliable() -> bool:
    try:
        require_rliable()
    except ImportError:
        return False
    return True


# -- per run ---------------------------------------------------------------------------------------


def steps_reached(run: RunData) -> float:
    """The env steps a run reached: its last iteration or evaluation (0 if none)."""
    xs = [a[np.isfinite(a)] for a in (run.env_steps, run.eval_env_steps)]
    return float(max((a.max() for a in xs if a.size), default=0.0))


def final_score(run: RunData, metric: str, fraction: float = FRACTION) -> float:
    """The run's final score (module doc): the mean of ``metric`` over the last ``fraction`` of
    the env steps it reached; the last expected reward on the games. NaN if nothing logged."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a value in (0, 1], got {fraction}")
    x, y = run_curve(run, metric)
    if not y.size:
        return math.nan
    if metric == "expected_reward":
        return float(y[-1])
    window = x >= (1.0 - fraction) * steps_reached(run)
    return float(y[window].mean()) if window.any() else float(y[-1])


# -- intervals -------------------------------------------------------------------------------------


def _matrix(scores: Any) -> np.ndarray:
    """Scores as a ``(runs, tasks)`` matrix (a 1-D sequence is one task)."""
    a = np.asarray(scores, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"scores: expected (runs,) or (runs, tasks), got shape {a.shape}")
    return a


@contextlib.contextmanager
def _seeded(seed: int):
    """rliable's stratified resampling draws from NumPy's global RNG (its ``random_state`` only
    reaches arch's own draws): seed it for the bootstrap, then restore the caller's state."""
    state = np.random.get_state()  # noqa: NPY002 (rliable draws from the legacy global RNG)
    np.random.set_state(np.random.RandomState(seed).get_state())  # noqa: NPY002
    try:
        yield np.random.RandomState(seed)
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _nan_interval(point: float = math.nan) -> dict[str, float]:
    return {"value": point, "lo": math.nan, "hi": math.nan}


def _estimate(scores: Any, func, resamples: int, seed: int) -> dict[str, float]:
    """Point value and 95% percentile stratified-bootstrap interval of ``func`` (scalar)."""
    library, _ = require_rliable()
    with _seeded(seed) as rs, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch: random_state is deprecated
        point, ci = library.get_interval_estimates(
            {"x": scores}, lambda *s: np.array([func(*s)]), reps=resamples, random_state=rs
        )
    lo, hi = np.asarray(ci["x"], np.float64).ravel()[:2]
    return {"value": float(np.ravel(point["x"])[0]), "lo": float(lo), "hi": float(hi)}


# The two statistics evaluated once per bootstrap resample, in numpy: rliable's own
# (``aggregate_iqm`` through scipy's ``trim_mean``, ``probability_of_improvement`` through one
# ``mannwhitneyu`` per task) cost ~0.5 and ~5 ms a call in scipy's argument handling, i.e.
# minutes per interval at 10,000 resamples. These give the same bits (tested against rliable's,
# ties and NaN included): the same partition and mean as ``trim_mean``, and the Mann-Whitney U
# as the count of pairs x > y plus half the ties, which equals the rank-sum form exactly.


def aggregate_iqm(scores: np.ndarray) -> float:
    """rliable's ``aggregate_iqm``: ``scipy.stats.trim_mean(scores, 0.25, axis=None)``."""
    a = np.asarray(scores, np.float64).ravel()
    if not a.size or np.isnan(a).any():
        return math.nan
    low = int(0.25 * a.size)
    high = a.size - low
    return float(np.mean(np.partition(a, (low, high - 1))[low:high]))


def aggregate_poi(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``probability_of_improvement``: per task ``(#{x > y} + #{x = y} / 2) / (n m)``
    over all pairs of runs (0.5 for identical columns), averaged over tasks."""
    n, m = scores_x.shape[0], scores_y.shape[0]
    per_task = []
    for task in range(scores_x.shape[1]):
        x, y = scores_x[:, task], scores_y[:, task]
        if np.array_equal(x, y):
            per_task.append(0.5)
        elif np.isnan(x).any() or np.isnan(y).any():
            per_task.append(math.nan)
        else:
            d = x[:, None] - y[None, :]
            u = float(np.count_nonzero(d > 0)) + 0.5 * float(np.count_nonzero(d == 0))
            per_task.append(u / (n * m))
    return float(np.mean(per_task))


def iqm(scores: Any) -> float:
    """Interquartile mean of all entries (rliable's ``aggregate_iqm``)."""
    return aggregate_iqm(_matrix(scores))


def iqm_interval(scores: Any, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, float]:
    """IQM of a ``(runs, tasks)`` matrix (or one task's runs) with its 95% interval."""
    require_rliable()
    m = _matrix(scores)
    if m.shape[0] == 0:
        return _nan_interval()
    if m.shape[0] == 1:
        return _nan_interval(aggregate_iqm(m))
    return _estimate(m, aggregate_iqm, resamples, seed)


def probability_of_improvement(
    x: Any, y: Any, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """P(X > Y) of two ``(runs, tasks)`` matrices (same tasks, any run counts), with its 95%
    interval (independent stratified bootstrap)."""
    require_rliable()
    a, b = _matrix(x), _matrix(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x, y: different task counts ({a.shape[1]} and {b.shape[1]})")
    if min(a.shape[0], b.shape[0]) == 0:
        return _nan_interval()
    point = aggregate_poi(a, b)
    if min(a.shape[0], b.shape[0]) < 2:
        return _nan_interval(point)
    out = _estimate((a, b), aggregate_poi, resamples, seed)
    return out | {"value": point}


def _var_ratio(a: np.ndarray, b: np.ndarray) -> float:
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    if vb > 0:
        return float(va / vb)
    return math.inf if va > 0 else math.nan


def variance_ratio(
    x: Sequence[float], y: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """var(x) / var(y) across seeds (one task) with a 95% independent-bootstrap interval (NaN
    with fewer than 2 seeds a side). Resamples whose ratio is undefined (both variances 0)
    are dropped; a zero denominator counts as inf, so the upper end can be inf."""
    a = np.asarray(x, np.float64).ravel()
    b = np.asarray(y, np.float64).ravel()
    if min(a.size, b.size) < 2:
        return _nan_interval()
    point = _var_ratio(a, b)
    library, _ = require_rliable()
    with _seeded(seed) as rs, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        bs = library.StratifiedIndependentBootstrap(a[:, None], b[:, None], random_state=rs)
        ratios = np.array(
            [_var_ratio(ra[:, 0], rb[:, 0]) for (ra, rb), _ in bs.bootstrap(resamples)]
        )
    ratios = ratios[~np.isnan(ratios)]
    if not ratios.size:
        return _nan_interval(point)
    # the infinite resamples (var(y) = 0) sort last: numpy's interpolation would give
    # inf - inf = NaN (with a warning) where a percentile's neighbours reach them, so it is
    # done here, numpy's linear rule on the sorted ratios, inf where a neighbour used is inf
    r = np.sort(ratios)
    ends = []
    for q in (2.5, 97.5):
        pos = q / 100 * (r.size - 1)
        k = math.floor(pos)
        frac = pos - k
        if frac == 0.0 or not math.isfinite(r[min(k + 1, r.size - 1)]):
            ends.append(float(r[k]) if frac == 0.0 else math.inf)
        else:
            ends.append(float(r[k] + frac * (r[k + 1] - r[k])))
    lo, hi = ends
    return {"value": point, "lo": float(lo), "hi": float(hi)}


def performance_profile(
    score_dict: Mapping[str, Any],
    taus: Sequence[float] | np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, list[float]]]:
    """Score distributions: per key, the fraction of runs (all tasks) with score > tau at each
    tau, with a pointwise 95% stratified-bootstrap band (``create_performance_profile``)."""
    library, _ = require_rliable()
    taus = np.asarray(taus, np.float64)
    out: dict[str, dict[str, list[float]]] = {}
    for key, scores in score_dict.items():
        m = _matrix(scores)
        profile = [float(np.mean(m > t)) for t in taus] if m.size else [math.nan] * taus.size
        if m.shape[0] < 2:
            out[key] = {"tau": taus.tolist(), "value": profile, "lo": profile, "hi": profile}
            continue
        # create_performance_profile's bootstrap, seeded (it takes no random_state)
        with _seeded(seed) as rs, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            _, ci = library.get_interval_estimates(
                {key: m},
                lambda s: library.score_distributions(s, taus),
                reps=resamples,
                random_state=rs,
            )
        lo, hi = np.asarray(ci[key], np.float64)
        out[key] = {"tau": taus.tolist(), "value": profile, "lo": lo.tolist(), "hi": hi.tolist()}
    return out


def minmax_normalise(scores: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """One task's scores per key scaled to ``(s - min) / (max - min)`` with min and max over
    every score of every key (all 0.5 when they are all equal)."""
    arrays = {k: np.asarray(v, np.float64) for k, v in scores.items()}
    finite = [a[np.isfinite(a)] for a in arrays.values()]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    if not finite.size:
        return arrays
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return {k: np.where(np.isfinite(a), 0.5, np.nan) for k, a in arrays.items()}
    return {k: (a - lo) / (hi - lo) for k, a in arrays.items()}


def curve_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of learning curves with a pointwise 95% percentile-bootstrap interval of
    the mean (seeds resampled): ``(x, mean, lo, hi)`` on the union of the seeds' x values, each
    seed interpolated inside its own range only (points with one seed: no band)."""
    from kl_alloc.analysis.metrics import seed_statistics

    x, mean, _, count = seed_statistics(curves)
    if not x.size:
        return x, mean, mean.copy(), mean.copy()
    values = np.full((len(curves), x.size), np.nan)
    for k, (cx, cy) in enumerate(c for c in curves if c[0].size):
        inside = (x >= cx[0]) & (x <= cx[-1])
        values[k, inside] = np.interp(x[inside], cx, cy)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], (resamples, values.shape[0]))
    with warnings.catch_warnings():  # points where a resample has no seed: all-NaN slices
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.nanmean(values[idx], axis=1)  # (resamples, points)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    single = count < 2
    lo[single], hi[single] = mean[single], mean[single]
    return x, mean, lo, hi


__all__ = [
    "FRACTION",
    "curve_band",
    "final_score",
    "has_rliable",
    "iqm",
    "iqm_interval",
    "minmax_normalise",
    "performance_profile",
    "probability_of_improvement",
    "require_rliable",
    "steps_reached",
    "variance_ratio",
]
