"""The figures of a sweep report (:mod:`kl_alloc.analysis.report`), drawn from its rows and
run summaries: learning curves per group, allocation heatmaps per task, final performance
against each swept value, and the cost per iteration against the number of agents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import EngFormatter

from kl_alloc.analysis.figures import (
    draw_mean_band,
    group_styles,
    new_figure,
    panel_grid,
    plot_allocation_heatmaps,
)
from kl_alloc.analysis.metrics import run_curve
from kl_alloc.analysis.runs import RunSummary, params_key, row_order
from kl_alloc.analysis.tables import group_label
from kl_alloc.methods import method_label


def _group_runs(summaries: Sequence[RunSummary], include_unfinished: bool) -> dict:
    groups: dict[str, dict[tuple[str, str], list[RunSummary]]] = {}
    for s in summaries:
        if not (s.finished or include_unfinished) or not s.data.iteration.size:
            continue
        groups.setdefault(s.task, {}).setdefault((s.method, params_key(s.params)), []).append(s)
    return groups


def plot_curves(report: dict[str, Any], summaries: Sequence[RunSummary], include_unfinished: bool):
    groups = _group_runs(summaries, include_unfinished)
    tasks = [t for t in report["tasks"] if t["task"] in groups]
    if not tasks:
        return None
    fig, axes = panel_grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=False):
        tg = groups[task["task"]]
        keys = sorted(
            tg,
            key=lambda k: row_order(
                {"method": k[0], "params": json.loads(k[1])}, report["baseline"]
            ),
        )
        styles = group_styles([k[0] for k in keys])
        for (color, dash), key in zip(styles, keys, strict=True):
            draw_mean_band(
                ax,
                [run_curve(s.data, task["metric"]) for s in tg[key]],
                color,
                f"{group_label(key[0], json.loads(key[1]))} (n={len(tg[key])})",
                lw=1.4,
                alpha=0.15,
                ls=dash,
            )
        if task.get("threshold") is not None:
            ax.axhline(task["threshold"], color="k", ls=":", lw=0.8)
        ax.set_title(f"{task['task']} ({task['n_agents']} agents)", fontsize="medium")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(_eng())
        ax.set_ylabel(task["metric"].replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle("learning curves: mean over seeds, band +-1 std", fontsize="medium")
    return fig


def plot_heatmaps(task: dict[str, Any], summaries: Sequence[RunSummary], max_panels: int = 6):
    """delta_i allocated (agent x iteration), first seed of each adaptive group of ``task``."""
    picked: list[tuple[str, RunSummary]] = []
    for row in task["rows"]:
        if row["algo"] == "hatrpo" or not row["n"]:
            continue
        runs = [
            s
            for s in summaries
            if s.task == task["task"]
            and s.method == row["method"]
            and params_key(s.params) == params_key(row["params"])
            and s.data.delta_alloc.size
        ]
        if runs:
            run = min(runs, key=lambda s: s.seed)
            picked.append((f"{group_label(row['method'], row['params'])}, seed {run.seed}", run))
    if not picked:
        return None
    if len(picked) > max_panels:
        idx = np.unique(np.linspace(0, len(picked) - 1, max_panels).round().astype(int))
        picked = [picked[i] for i in idx]
    return plot_allocation_heatmaps(
        [s.data for _, s in picked],
        title=f"{task['task']}: KL budget allocated per agent",
        labels=[label for label, _ in picked],
    )


def _metric_points(rows: list[dict[str, Any]], key: str, what: str):
    x = np.array([r["params"][key] for r in rows], float)
    if what == "final":
        y = [r.get("final_mean") for r in rows]
        ci = [r.get("final_ci") or [None, None] for r in rows]
    elif what == "basin":
        y = [r["in_basin"][0] / r["in_basin"][1] if r.get("in_basin") else None for r in rows]
        ci = [r.get("in_basin_ci") or [None, None] for r in rows]
    else:
        y = [r.get("samples_mean") for r in rows]
        ci = [r.get("samples_ci") or [None, None] for r in rows]
    as_float = lambda v: np.nan if v is None else float(v)  # noqa: E731
    y = np.array([as_float(v) for v in y])
    lo = np.array([as_float(c[0]) for c in ci])
    hi = np.array([as_float(c[1]) for c in ci])
    return x, y, lo, hi


_Panel = tuple[str, dict[str, Any], dict[str, list[dict[str, Any]]]]


def _sweep_panels(report: dict[str, Any]) -> list[_Panel]:
    """(swept field, task, {method: rows sorted by the field}) for every numeric field that
    a method was run at two or more values of (rows that vary that field alone)."""
    panels: list[_Panel] = []
    for task in report["tasks"]:
        by_key: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in task["rows"]:
            if len(r["params"]) == 1 and r["n"]:
                key = next(iter(r["params"]))
                by_key.setdefault(key, {}).setdefault(r["method"], []).append(r)
        for key, methods in by_key.items():
            methods = {
                m: sorted(rows, key=lambda r: r["params"][key])
                for m, rows in methods.items()
                if len(rows) >= 2
                and all(
                    isinstance(r["params"][key], int | float)
                    and not isinstance(r["params"][key], bool)
                    for r in rows
                )
            }
            if methods:
                panels.append((key, task, methods))
    return panels


def _second_metric(methods: dict[str, list[dict[str, Any]]]) -> str | None:
    rows = [r for rs in methods.values() for r in rs]
    if any(r.get("samples_mean") is not None for r in rows):
        return "samples"
    if any(r.get("in_basin") for r in rows):
        return "basin"
    return None


def _draw_sweep_axis(ax, panel: _Panel, what: str) -> None:
    """One method per line (mean and 95% interval of ``what``) against the swept field, the
    baseline as a dashed line and band."""
    key, task, methods = panel
    base = next((r for r in task["rows"] if r.get("is_baseline") and r["n"]), None)
    xs = []
    styles = group_styles(list(methods))
    for (color, _), (method, rows) in zip(styles, methods.items(), strict=True):
        x, y, lo, hi = _metric_points(rows, key, what)
        xs.extend(x)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        err = np.vstack([y - lo, hi - y])[:, ok]
        ax.errorbar(
            x[ok], y[ok], yerr=np.nan_to_num(err), color=color, marker="o", ms=4, capsize=3,
            label=method_label(method),
        )  # fmt: skip
    if base is not None:
        _, by, blo, bhi = _metric_points([{**base, "params": {key: 0}}], key, what)
        if np.isfinite(by[0]):
            ax.axhline(by[0], color="k", ls="--", lw=0.8, label=method_label(base["method"]))
            if np.isfinite(blo[0]) and np.isfinite(bhi[0]):
                ax.axhspan(blo[0], bhi[0], color="k", alpha=0.08, lw=0)
    pos = np.array(xs, float)
    if pos.size and np.all(pos > 0) and pos.max() / pos.min() >= 100:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    if what == "final":
        ax.set_ylabel(f"final {task['metric'].replace('_', ' ')}")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(f"{task['task']}", fontsize="medium")
    elif what == "basin":
        ax.set_ylabel("fraction ending in the global basin")
        ax.set_ylim(-0.05, 1.05)
    else:
        ax.set_ylabel(f"env steps to {task.get('threshold')} (mean)")
        ax.yaxis.set_major_formatter(_eng())
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small")


def plot_sweeps(report: dict[str, Any]):
    """Final performance (and, with a threshold, samples to it) against each numeric swept
    field: one column per (field, task), one line per method, mean with its 95% interval;
    the baseline's mean and interval as a dashed line and band."""
    panels = _sweep_panels(report)
    if not panels:
        return None
    seconds = [_second_metric(m) for _, _, m in panels]
    whats = ["final", "second"] if any(seconds) else ["final"]
    fig = new_figure(5.0 * len(panels), 3.6 * len(whats))
    axes = fig.subplots(len(whats), len(panels), squeeze=False)
    for col, panel in enumerate(panels):
        for row_i, what in enumerate(whats):
            what = seconds[col] if what == "second" else what
            if what is None:
                axes[row_i, col].set_visible(False)
                continue
            _draw_sweep_axis(axes[row_i, col], panel, what)
    fig.suptitle("mean over seeds with 95% bootstrap interval", fontsize="medium")
    return fig


def _eng() -> EngFormatter:
    return EngFormatter(sep="")


def plot_overhead(report: dict[str, Any]):
    """Seconds per iteration and the solver's share against the number of agents, per env."""
    lines: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
    for task in report["tasks"]:
        for r in task["rows"]:
            if r["n"] and r.get("seconds_per_iter") is not None:
                key = (task["env"], r["method"], params_key(r["params"]))
                lines.setdefault(key, []).append((task["n_agents"], r))
    lines = {k: v for k, v in lines.items() if len({n for n, _ in v}) >= 2}
    if not lines:
        return None
    fig = new_figure(11, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    envs = sorted({k[0] for k in lines})
    groups = sorted({(k[1], k[2]) for k in lines})
    methods = [g[0] for g in groups]
    if len(set(methods)) == len(methods):  # a method's own colour, as in every other figure
        colors = [c for c, _ in group_styles(methods)]
    else:  # line style marks the env here: groups of one method need colours of their own
        from matplotlib import colormaps

        colors = [colormaps["tab10"](i % 10) for i in range(len(groups))]
    palette = dict(zip(groups, colors, strict=True))
    for key, pts in sorted(lines.items()):
        env, method, pkey = key
        color = palette[(method, pkey)]
        pts = sorted(pts, key=lambda p: p[0])
        n = [p[0] for p in pts]
        spi = [1000 * p[1]["seconds_per_iter"] for p in pts]
        share = [100 * ((p[1].get("time_share") or {}).get("solver") or 0.0) for p in pts]
        label = f"{group_label(method, json.loads(pkey))} / {env}"
        ls = styles[envs.index(env) % len(styles)]
        ax1.plot(n, spi, ls, color=color, marker="o", ms=4, label=label)
        ax2.plot(n, share, ls, color=color, marker="o", ms=4, label=label)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("agents")
        ax.grid(alpha=0.3)
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(_eng())
    ax1.set_ylabel("ms per iteration (median)")
    ax2.set_ylabel("solver share of the iteration time (%)")
    ax1.legend(fontsize="x-small")
    fig.suptitle("cost per iteration against the number of agents", fontsize="medium")
    return fig
