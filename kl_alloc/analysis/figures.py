"""Figures drawn from run directories (what ``kl-alloc plot`` and the benchmarks save).

- :func:`plot_learning_curves`: per method, the mean over seeds and a +-1 std band against env
  steps; y is the task's metric (:func:`~kl_alloc.analysis.metrics.choose_metric`: the exact
  expected reward on the games, the deterministic evaluation return elsewhere (MuJoCo), else
  the rollout's episode return).
- :func:`plot_allocation_heatmaps`: delta_i allocated to each agent at each iteration (agent x
  iteration), one panel per run: the paper-style picture of where W and G put the KL budget.
- :func:`plot_trajectories`: the differential game's reward over the action box with each run's
  mean-action trajectory, one panel per method.
- :func:`plot_runs`: all of the above for a set of run directories, written as PNG files.

The figures of a sweep report (by swept value, cost per agent count) are in
:mod:`kl_alloc.analysis.sweep_figures`. Colours and labels come from :mod:`kl_alloc.methods`.

Uses matplotlib's object-oriented API on the Agg canvas (no pyplot, no display, no global
backend switch), so it is safe in headless jobs and does not disturb a caller's pyplot.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import EngFormatter, MaxNLocator

from kl_alloc.analysis.metrics import (
    BASIN_CENTRE,
    BASIN_RADIUS,
    LOCAL_CENTRE,
    METRIC_LABELS,
    choose_metric,
    find_runs,
    group_by_algo,
    group_by_env,
    in_basin,
    mean_action_trajectory,
    run_algo,
    run_curve,
    run_seed,
    seed_statistics,
)
from kl_alloc.methods import method_color, method_label
from kl_alloc.rundir import RunData, load_run

logger = logging.getLogger(__name__)


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas (``fig.savefig`` works without pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_grid(n: int, width: float = 5.2, height: float = 3.8) -> tuple[Figure, list]:
    """A figure of ``n`` panels, at most 3 per row, and its axes in reading order."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = new_figure(width * cols, height * rows)
    return fig, list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())


# -- learning curves -------------------------------------------------------------------------------


DASHES = ("-", "--", ":", "-.")


def group_styles(methods: Sequence[str]) -> list[tuple[str, str]]:
    """``(colour, line style)`` for groups drawn in this order, one method name per group: a
    method is drawn in its registered colour in every figure (an unregistered one by its place
    among the methods), and the groups of one method (different swept values) differ by line
    style."""
    position = {m: i for i, m in enumerate(dict.fromkeys(methods))}
    seen: dict[str, int] = {}
    out = []
    for m in methods:
        nth = seen[m] = seen.get(m, -1) + 1
        out.append((method_color(m, position[m]), DASHES[nth % len(DASHES)]))
    return out


def draw_mean_band(
    ax: Axes,
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    color: Any,
    label: str,
    lw: float = 1.8,
    alpha: float = 0.2,
    ls: str = "-",
) -> bool:
    """The mean over seeds of ``curves`` (see ``seed_statistics``) and, with more than one,
    a +-1 std band; returns False when there is nothing to draw."""
    x, mean, std, _ = seed_statistics(curves)
    if not x.size:
        return False
    ax.plot(x, mean, color=color, lw=lw, ls=ls, label=label)
    if len(curves) > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=alpha, lw=0)
    return True


def plot_learning_curves(
    ax: Axes,
    runs: Sequence[RunData],
    metric: str | None = None,
    threshold: float | None = None,
    title: str | None = None,
) -> str:
    """Draw mean +- std over seeds per method on ``ax``; returns the metric used."""
    metric = metric or choose_metric(runs)
    for index, (algo, group) in enumerate(group_by_algo(runs).items()):
        draw_mean_band(
            ax,
            [run_curve(r, metric) for r in group],
            method_color(algo, index),
            f"{method_label(algo)} (mean of {len(group)})",
        )
    if threshold is not None:
        ax.axhline(threshold, color="k", ls=":", lw=1, label=f"{threshold:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(alpha=0.3)
    ax.legend(
        loc="best", fontsize="small", title="band: +-1 std over seeds", title_fontsize="x-small"
    )
    if title:
        ax.set_title(title)
    return metric


# -- KL-allocation heatmaps ------------------------------------------------------------------------


def _agent_labels(run: RunData) -> list[str]:
    actions = run.config.get("env", {}).get("actions") or []
    n = run.delta_alloc.shape[1] if run.delta_alloc.ndim == 2 else len(actions)
    labels = []
    for i in range(n):
        spec = actions[i] if i < len(actions) else {}
        if spec.get("kind") == "discrete":
            labels.append(f"agent {i} (K={spec.get('n')})")
        elif spec.get("kind") == "continuous" and spec.get("dim", 1) > 1:
            labels.append(f"agent {i} ({spec.get('dim')}-d)")
        else:
            labels.append(f"agent {i}")
    return labels


def plot_allocation_heatmaps(
    runs: Sequence[RunData],
    title: str | None = None,
    max_iterations: int | None = None,
    labels: Sequence[str] | None = None,
) -> Figure:
    """One panel per run: ``delta_alloc`` (agent x iteration) on a shared colour scale.
    ``labels`` (one per run) replace the default panel titles (method, seed, budget)."""
    if labels is None:
        labels = [None] * len(runs)
    pairs = [(r, lab) for r, lab in zip(runs, labels, strict=True) if r.delta_alloc.size]
    if not pairs:
        raise ValueError("runs: no run has any iteration to draw")
    runs = [r for r, _ in pairs]
    n_agents = max(r.delta_alloc.shape[1] for r in runs)
    panel_h = 0.45 + 0.28 * n_agents
    fig = new_figure(10, 0.6 + panel_h * len(runs))
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    alloc = [r.delta_alloc[:max_iterations] for r in runs]
    vmax = max(float(np.nanmax(a)) for a in alloc) or 1.0
    image = None
    for ax, (run, label), a in zip(axes, pairs, alloc, strict=True):
        iters = a.shape[0]
        image = ax.imshow(
            a.T,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            extent=(0.5, iters + 0.5, a.shape[1] - 0.5, -0.5),
        )
        ax.set_yticks(range(a.shape[1]), _agent_labels(run), fontsize="small")
        if label is None:
            total = np.nanmedian(run.delta_total) if run.delta_total.size else math.nan
            label = (
                f"{method_label(run_algo(run))}, seed {run_seed(run)}  (delta_total = {total:.3g})"
            )
        ax.set_title(label, fontsize="medium", loc="left")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("iteration")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="delta_i allocated (KL radius)", shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


# -- differential game trajectories ----------------------------------------------------------------


def differential_env(run: RunData):
    """The run's differential game (same peaks, tilt and action box), for its reward map."""
    from kl_alloc.envs import make_env

    kwargs = dict(run.config.get("env", {}).get("kwargs", {}) or {})
    kwargs["num_envs"] = 1
    return make_env("differential", **kwargs)


def plot_trajectories(
    runs: Sequence[RunData],
    title: str | None = None,
    centre: Sequence[float] = BASIN_CENTRE,
    radius: float = BASIN_RADIUS,
) -> Figure:
    """Reward heatmap over the action box with each run's mean-action trajectory; one panel per
    method. Each panel's title counts the runs that end in the global basin (final mean action
    within ``radius`` of ``centre``)."""
    groups = group_by_algo(r for r in runs if r.policy_mean is not None)
    if not groups:
        raise ValueError("runs: no run has per-iteration mean actions (a continuous game)")
    first = next(iter(groups.values()))[0]
    if first.policy_mean.shape[1] != 2:
        raise ValueError("runs: the trajectory map needs a two-agent game")
    env = differential_env(first)
    lo, hi = env.low, env.high
    grid = np.linspace(lo, hi, 281)
    a1, a2 = np.meshgrid(grid, grid)
    reward = env.reward_at(np.stack([a1, a2], axis=-1))

    fig = new_figure(4.6 * len(groups) + 0.8, 4.6)
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    image = None
    for ax, (algo, group) in zip(axes, groups.items(), strict=True):
        image = ax.imshow(
            reward, origin="lower", extent=(lo, hi, lo, hi), cmap="magma", aspect="equal"
        )
        ax.contour(a1, a2, reward, levels=8, colors="white", linewidths=0.4, alpha=0.5)
        ax.add_patch(Circle(centre, radius, fill=False, ec="cyan", ls="--", lw=1.2))
        ends_in = 0
        for k, run in enumerate(group):
            traj = mean_action_trajectory(run)
            ok = in_basin(traj[-1], centre, radius)
            ends_in += ok
            ax.plot(traj[:, 0], traj[:, 1], color=method_color(algo), lw=1.0, alpha=0.8)
            ax.plot(
                *traj[0],
                "o",
                ms=4,
                mfc="white",
                mec="k",
                mew=0.6,
                label="start" if k == 0 else None,
            )
            ax.plot(
                *traj[-1],
                "*" if ok else "X",
                ms=9,
                mfc=method_color(algo),
                mec="white",
                mew=0.6,
            )
        ax.set_title(
            f"{method_label(algo)}: {ends_in}/{len(group)} end in the global basin",
            fontsize="medium",
        )
        ax.set_xlabel("mean action of agent 0 (a1)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    axes[0].set_ylabel("mean action of agent 1 (a2)")
    label_box = {"boxstyle": "round,pad=0.2", "fc": "black", "ec": "none", "alpha": 0.5}
    axes[0].annotate(
        "global basin", xy=(centre[0], centre[1] - radius), xytext=(0, -12),
        textcoords="offset points", ha="center", color="cyan", fontsize="small", bbox=label_box,
    )  # fmt: skip
    axes[0].annotate(
        "local peak", xy=LOCAL_CENTRE, xytext=(28, -22), textcoords="offset points",
        color="white", fontsize="small", bbox=label_box,
        arrowprops={"arrowstyle": "-", "color": "white"},
    )  # fmt: skip
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="reward R(a1, a2)", shrink=0.85)
    fig.suptitle(
        title
        or "Differential game: mean-action trajectories (o start, * ends in basin, X elsewhere)",
        fontsize="medium",
    )
    return fig


# -- everything for a set of run directories -------------------------------------------------------


def output_path(prefix: str | os.PathLike, name: str) -> Path:
    """``prefix`` + ``_name.png``; a prefix that is a directory (existing, or ending in a path
    separator) puts ``name.png`` inside it."""
    text = str(prefix)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return Path(text) / f"{name}.png"
    return Path(f"{text}_{name}.png")


def save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    logger.debug("wrote %s", path)
    return path


def plot_runs(
    paths: Iterable[str | os.PathLike],
    out_prefix: str | os.PathLike,
    heatmaps: str = "first",
) -> list[Path]:
    """Learning curves, KL-allocation heatmaps and (differential game) trajectories for the
    runs found under ``paths``; returns the PNG files written.

    ``heatmaps``: ``"first"`` draws the lowest seed of every method in one figure; ``"all"``
    draws every run, one figure per method; ``"none"`` skips them. With runs of several
    environments the file names get the environment in them (``<prefix>_<env>_curves.png``).
    """
    if heatmaps not in ("first", "all", "none"):
        raise ValueError(f"heatmaps: expected first|all|none, got {heatmaps!r}")
    runs = [load_run(d) for d in find_runs(paths)]
    empty = [r for r in runs if not r.iteration.size]
    if empty:
        logger.warning("skipping %d run(s) without a finished iteration", len(empty))
    runs = [r for r in runs if r.iteration.size]
    if not runs:
        raise ValueError("no run has a finished iteration to plot")
    by_env = group_by_env(runs)
    written: list[Path] = []
    for env_name, env_runs in by_env.items():
        stem = "" if len(by_env) == 1 else f"{env_name}_"
        by_algo = group_by_algo(env_runs)

        fig = new_figure(8, 4.8)
        ax = fig.subplots()
        metric = choose_metric(env_runs)
        threshold = 0.99 if env_name == "matrix" and metric == "expected_reward" else None
        plot_learning_curves(ax, env_runs, metric, threshold, title=f"{env_name}: learning curves")
        written.append(save(fig, output_path(out_prefix, f"{stem}curves")))

        if heatmaps == "first":
            firsts = [group[0] for group in by_algo.values()]
            fig = plot_allocation_heatmaps(
                firsts, title=f"{env_name}: KL budget allocated per agent (first seed per method)"
            )
            written.append(save(fig, output_path(out_prefix, f"{stem}allocation")))
        elif heatmaps == "all":
            for algo, group in by_algo.items():
                fig = plot_allocation_heatmaps(
                    group, title=f"{env_name}: KL budget allocated per agent, {method_label(algo)}"
                )
                written.append(save(fig, output_path(out_prefix, f"{stem}allocation_{algo}")))

        if env_name == "differential":
            two_d = [
                r for r in env_runs if r.policy_mean is not None and r.policy_mean.shape[1] == 2
            ]
            if two_d:
                fig = plot_trajectories(two_d)
                written.append(save(fig, output_path(out_prefix, f"{stem}trajectories")))
            else:
                logger.warning(
                    "%s: no two-agent runs with mean actions: no trajectory map", env_name
                )
    return written


__all__ = [
    "draw_mean_band",
    "new_figure",
    "output_path",
    "plot_allocation_heatmaps",
    "plot_learning_curves",
    "plot_runs",
    "plot_trajectories",
    "save",
]
