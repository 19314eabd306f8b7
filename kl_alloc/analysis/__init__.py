"""Reading groups of run directories, the paper's metrics, report tables and figures.

Used by the CLI (``kl-alloc demo``, ``plot``, ``report``) and by the scripts in ``benchmarks/``,
so a number in a table and a curve in a figure come from the same code. Torch-free: runs are
read through :mod:`kl_alloc.rundir`; method labels, colours and order come from
:mod:`kl_alloc.methods`.

- :mod:`~kl_alloc.analysis.metrics`: finding and grouping runs, the one metric chooser
  (:func:`choose_metric`), curves, samples to a threshold, final values, intervals;
  re-exported here.
- :mod:`~kl_alloc.analysis.tables`: aligned text tables and a report's Markdown page.
- :mod:`~kl_alloc.analysis.report`: a sweep's report (``report.json``, ``report.md``, figures).
- :mod:`~kl_alloc.analysis.figures`: learning curves, allocation heatmaps, trajectories,
  :func:`~kl_alloc.analysis.figures.plot_runs` (``kl-alloc plot``).
- :mod:`~kl_alloc.analysis.sweep_figures`: the figures of a sweep report.

    runs = [load_run(d) for d in find_runs(["runs/bench/matrix"])]
    by_algo = group_by_algo(runs)
    steps = [samples_to_reach(r, 0.99) for r in by_algo["hatrpo-w"]]   # None = never reached
"""

from kl_alloc.analysis.metrics import (
    BASIN_CENTRE,
    BASIN_RADIUS,
    LOCAL_CENTRE,
    METRIC_LABELS,
    RESAMPLES,
    bootstrap_improvement,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    choose_metric,
    default_threshold,
    env_key,
    final_expected_reward,
    final_mean_action,
    final_value,
    find_runs,
    group_by_algo,
    group_by_env,
    in_basin,
    is_run_dir,
    mean_action_trajectory,
    run_algo,
    run_curve,
    run_seed,
    samples_to_reach,
    seed_statistics,
    spread,
    time_breakdown,
    truncate,
    wilson_interval,
)
from kl_alloc.analysis.tables import format_table
from kl_alloc.rundir import RunData, load_run

__all__ = [
    "BASIN_CENTRE",
    "BASIN_RADIUS",
    "LOCAL_CENTRE",
    "METRIC_LABELS",
    "RESAMPLES",
    "RunData",
    "bootstrap_improvement",
    "bootstrap_mean_ci",
    "bootstrap_ratio_ci",
    "choose_metric",
    "default_threshold",
    "env_key",
    "final_expected_reward",
    "final_mean_action",
    "final_value",
    "find_runs",
    "format_table",
    "group_by_algo",
    "group_by_env",
    "in_basin",
    "is_run_dir",
    "load_run",
    "mean_action_trajectory",
    "run_algo",
    "run_curve",
    "run_seed",
    "samples_to_reach",
    "seed_statistics",
    "spread",
    "time_breakdown",
    "truncate",
    "wilson_interval",
]
