"""Figures of the robust statistics (:mod:`kl_alloc.analysis.robust_report`): performance
profiles with bootstrap bands, probability of improvement with intervals, and learning curves
with a bootstrap band of the mean over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import EngFormatter

from kl_alloc.analysis.figures import group_styles, new_figure, panel_grid
from kl_alloc.analysis.metrics import run_curve
from kl_alloc.analysis.robust import curve_band
from kl_alloc.analysis.tables import group_label, params_label
from kl_alloc.methods import method_label, method_sort_key


def _group_styles(keys) -> list[tuple[str, str, str]]:
    """``(key, colour, line style)`` per group key (``{"method", "params"}`` JSON), in one order
    for every figure: the registry's method order, then the swept values (see
    :func:`~kl_alloc.analysis.figures.group_styles`)."""
    infos = sorted(
        ((k, json.loads(k)) for k in keys),
        key=lambda ki: (
            method_sort_key(ki[1]["method"]),
            json.dumps(ki[1]["params"], sort_keys=True),
        ),
    )
    styles = group_styles([info["method"] for _, info in infos])
    return [(k, c, d) for (k, _), (c, d) in zip(infos, styles, strict=True)]


def _profile_panels(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    panels = [(t["task"], t.get("profile") or {}) for t in report["tasks"]]
    agg = report.get("aggregate")
    if agg:
        panels.append((f"all of {', '.join(agg['tasks'])}", agg.get("profile") or {}))
    return [(name, prof) for name, prof in panels if prof]


def plot_profiles(report: dict[str, Any]):
    """Performance profiles: fraction of runs with normalised score > tau, 95% bands."""
    panels = _profile_panels(report)
    if not panels:
        return None
    fig, axes = panel_grid(len(panels))
    for ax, (name, prof) in zip(axes, panels, strict=False):
        for key, color, dash in _group_styles(prof):
            p, info = prof[key], json.loads(key)
            tau = np.asarray(p["tau"], float)
            label = group_label(info["method"], info["params"])
            ax.plot(tau, p["value"], color=color, ls=dash, label=label)
            lo = np.asarray([np.nan if v is None else v for v in p["lo"]], float)
            hi = np.asarray([np.nan if v is None else v for v in p["hi"]], float)
            ax.fill_between(tau, lo, hi, color=color, alpha=0.15, lw=0)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("normalised score threshold tau (min-max per task)")
        ax.set_ylabel("fraction of runs with score > tau")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("performance profiles (band: 95% stratified bootstrap)", fontsize="medium")
    return fig


def _poi_items(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items = []
    for t in report["tasks"]:
        for c in t.get("comparisons") or []:
            items.append((t["task"], c))
    agg = report.get("aggregate")
    for c in (agg or {}).get("comparisons") or []:
        items.append(("all tasks", c))
    return items


def plot_poi(report: dict[str, Any]):
    """P(X > Y) per task (and across tasks) with 95% intervals; 0.5 = no difference."""
    items = _poi_items(report)
    if not items:
        return None
    fig = new_figure(7.5, 0.8 + 0.32 * len(items))
    ax = fig.subplots()
    labels = []
    for k, (task, c) in enumerate(items):
        p = c["poi"]
        labels.append(
            f"{task}: {method_label(c['x'])} > {method_label(c['y'])}"
            + (f" ({params_label(c['params'])})" if c["params"] else "")
        )
        if p.get("value") is None:
            continue
        lo, hi = p.get("lo"), p.get("hi")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [k, k], color="C0", lw=4, alpha=0.5, solid_capstyle="butt")
        ax.plot([p["value"]], [k], "o", color="C0")
    ax.axvline(0.5, color="k", ls=":", lw=0.8)
    ax.set_yticks(range(len(items)), labels, fontsize="x-small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement P(X > Y) [95% CI]")
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_curves_ci(
    report: dict[str, Any],
    summaries: Sequence[Any],
    include_unfinished: bool = True,
    resamples: int = 1000,
):
    """Learning curves per task and group: mean over seeds, 95% bootstrap band of the mean."""
    groups: dict[str, dict[str, list]] = {}
    for s in summaries:
        if (s.finished or include_unfinished) and s.data.iteration.size:
            key = json.dumps({"method": s.method, "params": s.params}, sort_keys=True)
            groups.setdefault(s.task, {}).setdefault(key, []).append(s)
    tasks = [t for t in report["tasks"] if t["task"] in groups]
    if not tasks:
        return None
    fig, axes = panel_grid(len(tasks))
    drawn = 0
    for ax, task in zip(axes, tasks, strict=False):
        tg = groups[task["task"]]
        for key, color, dash in _group_styles(tg):
            info = json.loads(key)
            x, mean, lo, hi = curve_band(
                [run_curve(s.data, task["metric"]) for s in tg[key]], resamples
            )
            if not x.size:
                continue
            part_way = sum(not s.finished for s in tg[key])
            n = f"n={len(tg[key])}" + (f", {part_way} part-way" if part_way else "")
            label = f"{group_label(info['method'], info['params'])} ({n})"
            marker = "o" if x.size == 1 else None  # one evaluation: a point, not a line
            ax.plot(x, mean, color=color, ls=dash, lw=1.4, marker=marker, label=label)
            drawn += 1
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        ax.set_title(task["task"], fontsize="medium")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel(task["metric"].replace("_", " "))
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="x-small", loc="best")
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    if not drawn:  # no run has evaluated yet: no empty axes
        return None
    fig.suptitle("learning curves: mean over seeds, band 95% bootstrap CI", fontsize="medium")
    return fig


__all__ = ["plot_curves_ci", "plot_poi", "plot_profiles"]
