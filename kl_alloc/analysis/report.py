"""Aggregate run directories into the comparison table and figures of a sweep.

    report = build_report(["runs/sweeps/eps_sensitivity"])          # a dict (also report.json)
    write_report(report, "benchmarks/results/sweeps/eps_sensitivity")  # report.md, *.png, .json

Runs are grouped by task, method and the swept fields. A run made by ``kl-alloc sweep`` says
which trial it is (``trial.json``); for any other run directory the task is its env
(``matrix``, ``mamujoco-Ant-2x4``, ...), the method its algorithm, and the swept fields are the
config fields that differ between runs of the same task and method (the seed aside).

Per group, over its finished runs (``done.json``; one run per seed), with the task's metric
(:func:`~kl_alloc.analysis.metrics.choose_metric`, the same one the curves show):

- final: the exact expected reward of the final joint policy on the games; elsewhere the mean
  of the last 10% of the evaluations (experiments.md s.3); mean with a 95% percentile-bootstrap
  interval of the mean (seeded, 10,000 resamples);
- improvement over the baseline (HATRPO): (mean - mean_base) / |mean_base|, both samples
  resampled independently for the interval (seeds of different methods are not paired);
- variance ratio: var(final) / var_base(final) across seeds (sample variances), bootstrapped;
- samples to a threshold (default 0.99 of the payoff on the matrix game): median env steps,
  runs that never reach it counted as +inf (a method that often fails is not flattered);
- differential game: how many runs end in the global basin (Wilson interval);
- seconds per iteration (median, first iteration of every run excluded: JIT and warm-up) and
  the share of the allocator's solver call in the total time.

The baseline of a group is the baseline method's group of the same task, matched on the swept
fields both have; a group without a match gets no improvement or variance ratio.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.analysis.metrics import (
    RESAMPLES,
    bootstrap_improvement,
    bootstrap_mean_ci,
    choose_metric,
    default_threshold,
    final_mean_action,
    in_basin,
    samples_to_reach,
    spread,
    time_breakdown,
    truncate,
    wilson_interval,
)
from kl_alloc.analysis.robust import FRACTION, final_score, steps_reached
from kl_alloc.analysis.runs import (
    RunSummary,
    display_path,
    params_key,
    read_json,
    row_order,
    summarize_runs,
)
from kl_alloc.analysis.tables import render_markdown
from kl_alloc.methods import method_sort_key
from kl_alloc.rundir import provenance

logger = logging.getLogger(__name__)


def nan_to_none(x: Any) -> Any:
    """``x`` with every NaN / inf float (at any depth) as None: what JSON can hold."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return nan_to_none(x.item())
    return x


@dataclass
class _Stats:
    """What every group of a task is measured with."""

    metric: str
    threshold: float | None
    resamples: int
    seed: int
    fraction: float = FRACTION


def _group_row(
    method: str, pkey: str, runs: list[RunSummary], members: list[RunSummary], st: _Stats
) -> dict[str, Any]:
    """The report row of one (method, swept values) group over its used ``runs``."""
    finals = [final_score(s.data, st.metric, st.fraction) for s in runs]
    finals_ok = [v for v in finals if math.isfinite(v)]
    lo, hi = bootstrap_mean_ci(finals_ok, st.resamples, st.seed)
    row: dict[str, Any] = {
        "task": members[0].task,
        "method": method,
        "algo": runs[0].algo if runs else method,
        "params": json.loads(pkey),
        "env": members[0].env_name,
        "n_agents": members[0].n_agents if not runs else runs[0].n_agents,
        "n": len(runs),
        "found": sum(1 for s in members if s.method == method and params_key(s.params) == pkey),
        "unfinished": sum(not s.finished for s in runs),
        "seeds": [s.seed for s in runs],
        "steps_reached": [steps_reached(s.data) for s in runs],
        "final": finals,
        "final_mean": float(np.mean(finals_ok)) if finals_ok else math.nan,
        "final_std": float(np.std(finals_ok, ddof=1)) if len(finals_ok) > 1 else math.nan,
        "final_ci": [lo, hi],
    }
    if st.threshold is not None:
        reached = [samples_to_reach(s.data, st.threshold, st.metric) for s in runs]
        row["threshold"] = st.threshold
        row["samples_to_threshold"] = reached
        row["samples_spread"] = spread(reached)
        if reached and all(v is not None for v in reached):
            row["samples_mean"] = float(np.mean(reached))
            row["samples_ci"] = list(bootstrap_mean_ci(reached, st.resamples, st.seed))
    if members[0].env_name == "differential" and runs:
        row.update(_basin_counts(runs))
    if runs:
        tb = time_breakdown([s.data for s in runs], skip_first=1)
        row["seconds_per_iter"] = tb["seconds_per_iter_median"]
        row["time_share"] = tb["share"]
        row["solver_seconds_per_iter"] = tb["solver_seconds_per_iter"]
        row["iterations"] = int(np.median([s.data.iteration.size for s in runs]))
        row["env_steps"] = float(np.median([s.data.env_steps[-1] for s in runs]))
    return row


def _basin_counts(runs: list[RunSummary]) -> dict[str, Any]:
    ends = []
    for s in runs:
        try:
            point = final_mean_action(s.data)
        except ValueError:
            continue
        if point.size == 2:
            ends.append(bool(in_basin(point)))
    if not ends:
        return {}
    return {
        "in_basin": [int(sum(ends)), len(ends)],
        "in_basin_ci": list(wilson_interval(int(sum(ends)), len(ends))),
    }


def _match_baseline(
    row: dict[str, Any], rows: list[dict[str, Any]], baseline: str
) -> dict[str, Any] | None:
    cands = [r for r in rows if r["method"] == baseline and r["n"]]
    if not cands:
        cands = [r for r in rows if r["algo"] == baseline and r["n"]]
    if row in cands:
        return row
    shared = [
        r
        for r in cands
        if all(row["params"].get(k) == v for k, v in r["params"].items() if k in row["params"])
    ]
    if len(shared) == 1:
        return shared[0]
    if len(cands) == 1:
        return cands[0]
    return None


def _compare_to_baseline(rows: list[dict[str, Any]], baseline: str, st: _Stats) -> None:
    for row in rows:
        base = _match_baseline(row, rows, baseline)
        row["is_baseline"] = base is row
        row["baseline"] = (
            None if base is None else {"method": base["method"], "params": base["params"]}
        )
        if base is None or base is row:
            continue
        a = [v for v in row["final"] if math.isfinite(v)]
        b = [v for v in base["final"] if math.isfinite(v)]
        row.update(bootstrap_improvement(a, b, st.resamples, st.seed))
        if row.get("seconds_per_iter") and base.get("seconds_per_iter"):
            row["time_ratio"] = row["seconds_per_iter"] / base["seconds_per_iter"]
        if "samples_spread" in row and "samples_spread" in base:
            mb, mr = base["samples_spread"]["median"], row["samples_spread"]["median"]
            row["speedup"] = (mb / mr) if (mb and mr) else None


def _task_report(
    task: str,
    members: list[RunSummary],
    baseline: str,
    st: _Stats,
    include_unfinished: bool,
    common_steps: float | None,
) -> dict[str, Any]:
    used = _used_runs(members, include_unfinished, common_steps)
    # before any run of the task has finished, the metric comes from the runs found that have
    # evaluated (the empty set, or one just started, gave episode_return: a part-way run's
    # final score changed meaning later)
    started = [s for s in members if s.data.iteration.size and (
        np.isfinite(s.data.expected_reward).any() or np.isfinite(s.data.eval_return_mean).sum() >= 2
    )]  # fmt: skip
    metric = choose_metric([s.data for s in (used or started or members)])
    env_name = members[0].env_name
    threshold = st.threshold
    if threshold is None and used:
        threshold = default_threshold(env_name, metric, used[0].data)
    st = dataclasses.replace(st, metric=metric, threshold=threshold)
    groups: dict[tuple[str, str], list[RunSummary]] = {}
    for s in members:
        groups.setdefault((s.method, params_key(s.params)), [])
    for s in used:
        groups[(s.method, params_key(s.params))].append(s)
    rows = [
        _group_row(method, pkey, sorted(runs, key=lambda s: s.seed), members, st)
        for (method, pkey), runs in groups.items()
    ]
    _compare_to_baseline(rows, baseline, st)
    rows.sort(key=lambda r: row_order(r, baseline))
    return {
        "task": task,
        "env": env_name,
        "metric": metric,
        "threshold": threshold,
        "n_agents": members[0].n_agents,
        "rows": rows,
        "runs": [_run_status(s, used) for s in sorted(members, key=_run_order)],
    }


def _run_order(s: RunSummary) -> tuple:
    return (method_sort_key(s.method), params_key(s.params), s.seed)


def _run_status(s: RunSummary, used: list[RunSummary]) -> dict[str, Any]:
    """What a report says of every run it found: steps reached, finished, used."""
    return {
        "method": s.method,
        "params": s.params,
        "seed": s.seed,
        "run_dir": display_path(s.run_dir),
        "finished": s.finished,
        "steps": steps_reached(s.data),
        "used": any(u.run_dir == s.run_dir for u in used),
    }


def _used_runs(
    members: list[RunSummary], include_unfinished: bool, common_steps: float | None
) -> list[RunSummary]:
    """The runs a task's statistics use: finished ones (and, with ``include_unfinished``, the
    others as far as they got); with ``common_steps``, every run that reached that many env
    steps, finished or not, cut back to it (its final score is then taken at that point)."""
    if common_steps is None:
        return [s for s in members if (s.finished or include_unfinished) and s.data.iteration.size]
    out = []
    for s in members:
        if s.data.iteration.size and steps_reached(s.data) >= common_steps:
            out.append(dataclasses.replace(s, data=truncate(s.data, common_steps)))
    return out


def _failed_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    failed = []
    for p in paths:
        for err in sorted(p.rglob("error.json")) if p.is_dir() else []:
            info = read_json(err) or {}
            if not (err.parent / "done.json").exists():
                failed.append({"run_dir": display_path(err.parent), "error": info.get("error")})
    return failed


def build_report(
    paths: Iterable[str | os.PathLike],
    baseline: str = "hatrpo",
    threshold: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    include_unfinished: bool = False,
    summaries: Sequence[RunSummary] | None = None,
    fraction: float = FRACTION,
    common_steps: float | None = None,
    robust: bool = True,
    aggregate_tasks: Sequence[str] | None = None,
    profile_resamples: int = 2000,
) -> dict[str, Any]:
    """The aggregated results of the runs under ``paths`` (JSON-ready; see the module doc).

    ``fraction``: the share of training whose evaluations make a run's final score;
    ``common_steps``: compare every run that reached this many env steps at that point
    (finished or not); ``robust``: add IQM, probability of improvement, variance ratios and
    performance profiles (needs rliable: ImportError naming the extra);
    ``aggregate_tasks``: the tasks of the aggregate across tasks (default: all)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a value in (0, 1], got {fraction}")
    if common_steps is not None and not common_steps > 0:
        raise ValueError(f"common_steps: expected a positive step count, got {common_steps}")
    if robust:
        from kl_alloc.analysis.robust import require_rliable

        require_rliable()
    paths = [Path(p) for p in paths]
    if summaries is None:
        summaries = summarize_runs(paths)
    tasks: dict[str, list[RunSummary]] = {}
    for s in summaries:
        tasks.setdefault(s.task, []).append(s)
    st = _Stats("", threshold, resamples, seed, fraction)
    out_tasks = [
        _task_report(task, members, baseline, st, include_unfinished, common_steps)
        for task, members in sorted(tasks.items())
    ]
    agg = None
    if robust:
        from kl_alloc.analysis import robust_report

        for task in out_tasks:
            robust_report.add_task_statistics(task, baseline, resamples, seed, profile_resamples)
        names = set(aggregate_tasks) if aggregate_tasks is not None else None
        chosen = [t for t in out_tasks if names is None or t["task"] in names]
        agg = robust_report.aggregate(chosen, baseline, resamples, seed, profile_resamples)
    prov = provenance()
    return nan_to_none(
        {
            "sources": [display_path(p) for p in paths],
            "provenance": {k: prov[k] for k in _REPORT_PROVENANCE},
            "code": _run_code(summaries),
            "baseline": baseline,
            "resamples": resamples,
            "seed": seed,
            "runs": len(summaries),
            "finished": sum(s.finished for s in summaries),
            "include_unfinished": include_unfinished,
            "fraction": fraction,
            "common_steps": common_steps,
            "robust": robust,
            "failed": _failed_runs(paths),
            "tasks": out_tasks,
            "aggregate": agg,
        }
    )


#: what a report records of :func:`~kl_alloc.rundir.provenance` (the code, not the machine)
_REPORT_PROVENANCE = ("generated_utc", "kl_alloc", "path", "git_commit", "git_dirty")


def _run_code(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """The distinct code versions the runs were trained with (from trial.json), with counts."""
    seen: dict[str, dict[str, Any]] = {}
    for s in summaries:
        trial = read_json(s.run_dir / "trial.json") or {}
        code = trial.get("code")
        if code:
            key = json.dumps({k: code.get(k) for k in ("git_commit", "git_dirty", "path")})
            seen.setdefault(key, {**code, "runs": 0})["runs"] += 1
    return list(seen.values())


# -- writing it ------------------------------------------------------------------------------------


def write_report(
    report: dict[str, Any],
    out_dir: str | os.PathLike,
    summaries: Sequence[RunSummary] | None = None,
    heatmaps: bool = True,
    title: str = "",
    include_unfinished: bool = False,
) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the figures (PNG) into ``out_dir``."""
    from kl_alloc.analysis import robust_figures, sweep_figures
    from kl_alloc.analysis.figures import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("curves", "sweep", "overhead", "allocation", "allocation_*", "profiles", "poi"):
        for old in out.glob(f"{stale}.png"):  # figures of an earlier report of other runs
            old.unlink()
    if summaries is None:
        summaries = summarize_runs(report["sources"])  # relative to the current directory
    figures: list[Path] = []

    def emit(fig, name: str) -> None:
        if fig is not None:
            figures.append(save(fig, out / f"{name}.png"))

    emit(sweep_figures.plot_curves(report, summaries, include_unfinished), "curves")
    emit(sweep_figures.plot_sweeps(report), "sweep")
    emit(sweep_figures.plot_overhead(report), "overhead")
    emit(robust_figures.plot_profiles(report), "profiles")
    emit(robust_figures.plot_poi(report), "poi")
    if heatmaps:
        for task in report["tasks"]:
            stem = "allocation" if len(report["tasks"]) == 1 else f"allocation_{task['task']}"
            emit(sweep_figures.plot_heatmaps(task, summaries), stem)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    md = render_markdown(report, [str(f) for f in figures], title)
    (out / "report.md").write_text(md)
    return [out / "report.md", out / "report.json", *figures]


def make_report(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    baseline: str = "hatrpo",
    threshold: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    heatmaps: bool = True,
    title: str = "",
    include_unfinished: bool = False,
    **options: Any,
) -> tuple[dict[str, Any], list[Path]]:
    """:func:`build_report` (``options``: its keyword arguments) + :func:`write_report`."""
    summaries = summarize_runs(paths)
    report = build_report(
        paths, baseline, threshold, resamples, seed, include_unfinished, summaries, **options
    )
    files = write_report(report, out_dir, summaries, heatmaps, title, include_unfinished)
    return report, files


__all__ = [
    "RunSummary",
    "build_report",
    "display_path",
    "make_report",
    "summarize_runs",
    "write_report",
]
