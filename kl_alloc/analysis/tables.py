"""Text tables: the aligned plain-text/Markdown table and a report's Markdown page.

print(format_table(["method", "final"], [["HATRPO", "0.99"]]))
md = render_markdown(report, figures=["curves.png"], title="Sweep eps")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kl_alloc.methods import method_label


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def params_label(params: dict[str, Any]) -> str:
    """``key=value, ...`` of a group's swept fields, sorted by key; booleans and None as
    ``--set`` writes them (``carry=true``, ``eps=none``), floats short, sequences ``(a,b)``."""

    def fmt(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return format(v, "g")
        if isinstance(v, list | tuple):
            return "(" + ",".join(fmt(x) for x in v) + ")"
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(params.items()))


def group_label(method: str, params: dict[str, Any]) -> str:
    """A group's display name: the method's label, then its swept fields."""
    p = params_label(params)
    return method_label(method) + (f" ({p})" if p else "")


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:+.1f}%"


def _steps(x: Any) -> str:
    if x is None:
        return "never"
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    return f"{x / 1000:.3g}k" if x >= 1000 else f"{x:.0f}"


# -- a report's table ------------------------------------------------------------------------------


def _task_headers(task: dict[str, Any], show_thr: bool, show_basin: bool, base: str) -> list[str]:
    headers = ["method", "swept", "runs", f"final {task['metric']} [95% CI]"]
    headers += [f"vs {base} [95% CI]", "var ratio [95% CI]"]
    if show_thr:
        headers += [f"samples to {task['threshold']:g}: median (reached); mean [95% CI]"]
        headers += ["speed-up (median)"]
    if show_basin:
        headers += ["global basin"]
    return headers + ["s/iter", f"x {base}", "solver share"]


def _task_line(r: dict[str, Any], show_thr: bool, show_basin: bool) -> list[str]:
    ci = r.get("final_ci") or [None, None]
    line = [
        method_label(r["method"]),
        params_label(r["params"]) or "-",
        f"{r['n']}/{r['found']}"
        + (f" ({r['unfinished']} unfinished)" if r.get("unfinished") else ""),
        f"{_f(r['final_mean'], 5)} [{_f(ci[0], 5)}, {_f(ci[1], 5)}]",
    ]
    if r.get("improvement") is not None:
        line.append(f"{_pct(r['improvement'])} [{_pct(r.get('imp_lo'))}, {_pct(r.get('imp_hi'))}]")
    else:
        line.append("(baseline)" if r.get("is_baseline") else "-")
    if r.get("var_ratio") is not None:
        line.append(f"{_f(r['var_ratio'], 3)} [{_f(r.get('var_lo'), 3)}, {_f(r.get('var_hi'), 3)}]")
    else:
        line.append("-")
    if show_thr:
        sp = r.get("samples_spread") or {}
        text = f"{_steps(sp.get('median'))} ({sp.get('n_valid', 0)}/{sp.get('n', 0)})"
        if r.get("samples_mean") is not None:
            lo, hi = r["samples_ci"]
            text += f"; mean {_steps(r['samples_mean'])} [{_steps(lo)}, {_steps(hi)}]"
        line.append(text)
        line.append(_f(r.get("speedup"), 3) + ("x" if r.get("speedup") else ""))
    if show_basin:
        b = r.get("in_basin")
        line.append(f"{b[0]}/{b[1]}" if b else "-")
    share = (r.get("time_share") or {}).get("solver")
    spi = r.get("seconds_per_iter")
    return line + [
        f"{1000 * spi:.1f} ms" if spi is not None else "-",
        _f(r.get("time_ratio"), 3),
        f"{100 * share:.2f}%" if share is not None else "-",
    ]


def task_table(task: dict[str, Any], baseline: str = "hatrpo") -> str:
    """One task of a report (:func:`kl_alloc.analysis.report.build_report`) as a table; the
    comparison columns are named after the report's ``baseline`` method."""
    rows = task["rows"]
    show_thr = task.get("threshold") is not None
    show_basin = any("in_basin" in r for r in rows)
    return format_table(
        _task_headers(task, show_thr, show_basin, method_label(baseline)),
        [_task_line(r, show_thr, show_basin) for r in rows],
    )


# -- the robust statistics of a report ------------------------------------------------------------


def interval_text(d: dict[str, Any] | None, digits: int = 3) -> str:
    """``value [lo, hi]`` of an interval dict (``value`` alone without bounds, ``-`` if none)."""
    if not d or d.get("value") is None:
        return "-"
    text = _f(d["value"], digits)
    if d.get("lo") is None and d.get("hi") is None:
        return text
    return f"{text} [{_f(d.get('lo'), digits)}, {_f(d.get('hi'), digits)}]"


def interval_bounds(interval: dict[str, Any] | None) -> tuple[float, float] | None:
    """``(lo, hi)`` of an interval dict, None when either is missing or not finite."""
    lo, hi = ((interval or {}).get(k) for k in ("lo", "hi"))
    ok = all(isinstance(v, int | float) and math.isfinite(v) for v in (lo, hi))
    return (float(lo), float(hi)) if ok else None


def separation(poi: dict[str, Any] | None) -> str:
    """What an interval of P(X > Y) says: ``higher`` (it lies above 0.5), ``lower`` (below),
    ``no separation`` (it contains 0.5), ``too few runs`` (no interval)."""
    if (b := interval_bounds(poi)) is None:
        return "too few runs"
    return "higher" if b[0] > 0.5 else "lower" if b[1] < 0.5 else "no separation"


def poi_table(comparisons: Sequence[dict[str, Any]]) -> str:
    """P(X > Y) with its interval and what the interval says, one row per comparison."""
    rows = [
        [
            f"{method_label(c['x'])} > {method_label(c['y'])}",
            params_label(c["params"]) or "-",
            interval_text(c["poi"]),
            separation(c["poi"]),
        ]
        for c in comparisons
    ]
    return format_table(["P(X > Y)", "swept", "P [95% CI]", "X vs Y: interval says"], rows)


def runs_used_line(report: dict[str, Any]) -> str:
    """Which runs the statistics use (finished only, all as far as they got, or a common
    step count), and the final-score window."""
    pct = f"{100 * report.get('fraction', 0.1):g}%"
    if report.get("common_steps"):
        which = (
            f"every run that reached {_steps(report['common_steps'])} env steps, finished or not, "
            f"cut back to that point (a common-step comparison)"
        )
    elif report.get("include_unfinished"):
        which = "finished and unfinished runs, each as far as it got (--include-unfinished)"
    else:
        which = "finished runs only (done.json)"
    return (
        f"Runs used: {which}. Final score of a run: mean of its evaluations in the last {pct} "
        "of the env steps it reached (the last expected reward on the games)."
    )


def robust_task_tables(task: dict[str, Any]) -> list[str]:
    """IQM per group, P(X > Y) and variance ratios of one task (Markdown lines)."""
    if "comparisons" not in task:
        return []
    lines = []
    rows = []
    for r in task["rows"]:
        reached = r.get("steps_reached") or []
        rows.append(
            [
                group_label(r["method"], r["params"]),
                f"{r['n']}/{r['found']}",
                r.get("unfinished", 0),
                f"{_steps(min(reached))}-{_steps(max(reached))}" if reached else "-",
                _f(r.get("final_mean"), 5),
                interval_text(r.get("iqm"), 5),
            ]
        )
    headers = ["group", "runs used/found", "unfinished used", "steps reached", "mean", "IQM [95%]"]
    lines += ["", format_table(headers, rows)]
    if task["comparisons"]:
        lines += ["", poi_table(task["comparisons"])]
    if task.get("variance"):
        var = [
            [
                f"{method_label(v['x'])} / {method_label(v['y'])}",
                params_label(v["params"]) or "-",
                f"{v['n'][0]} / {v['n'][1]}",
                interval_text(v["ratio"]),
            ]
            for v in task["variance"]
        ]
        lines += ["", format_table(["variance ratio", "swept", "seeds", "ratio [95% CI]"], var)]
    return lines


def aggregate_lines(agg: dict[str, Any] | None) -> list[str]:
    """The aggregate across tasks (normalised scores) as Markdown lines."""
    if not agg:
        return []
    lines = [
        "## Across tasks: " + ", ".join(agg["tasks"]),
        "",
        f"Scores normalised {agg['normalisation']} (0 = the task's worst run, 1 = its best).",
        "",
    ]
    rows = [
        [group_label(g["method"], g["params"]), g["runs"], interval_text(g["iqm"])]
        for g in agg["groups"]
    ]
    lines.append(format_table(["group", "runs per task", "IQM [95% CI]"], rows))
    if agg["comparisons"]:
        lines += ["", poi_table(agg["comparisons"])]
    return lines + [""]


# -- a report's page -------------------------------------------------------------------------------


def _provenance_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    prov = report.get("provenance") or {}
    if prov:
        code = f"kl_alloc {prov.get('kl_alloc')}"
        if prov.get("git_commit"):
            code += f", git {prov['git_commit'][:12]}" + (
                " + local changes" if prov.get("git_dirty") else ""
            )
        lines += ["", f"Generated {prov.get('generated_utc')} ({code})."]
    for c in report.get("code") or []:
        what = f"git {c['git_commit']}" if c.get("git_commit") else f"kl_alloc {c.get('kl_alloc')}"
        if c.get("git_dirty"):
            what += " + local changes"
        lines += ["", f"Runs trained with {what} ({c['runs']} runs)."]
    return lines


def render_markdown(report: dict[str, Any], figures: Sequence[str] = (), title: str = "") -> str:
    """The report as a Markdown page: how it was computed, one table per task, the figures."""
    lines = [f"# {title or 'Sweep report'}", ""]
    lines.append(
        f"{report['finished']} finished run(s) of {report['runs']} found under "
        + ", ".join(f"`{s}`" for s in report["sources"])
        + f". Baseline: {method_label(report['baseline'])}. Intervals: 95% percentile bootstrap "
        f"over seeds ({report['resamples']} resamples, seed {report['seed']}); improvement = "
        "(mean - mean_base) / |mean_base|; var ratio = var / var_base across seeds (its "
        "interval: the robust statistics' bootstrap from 2 seeds a side where rliable is "
        "installed, else none with fewer than 5 seeds a side); samples to the threshold: "
        "median over seeds, runs that never reach it count as never "
        "(median 'never' when half or more fail); s/iter: median seconds per iteration, first "
        "iteration excluded; solver share: time in the allocator's solver call / total time."
    )
    if report.get("include_unfinished"):
        lines += [
            "",
            "Runs without done.json (killed, failed or still running) are included as far as "
            "they got: their 'final' value is the last one logged.",
        ]
    lines += ["", runs_used_line(report)]
    if report.get("robust"):
        lines += [
            "",
            "Robust statistics (Agarwal et al. 2021, rliable): IQM = mean of the middle 50% of "
            "the final scores; P(X > Y) = probability that a run of X scores above a run of Y "
            "(Mann-Whitney); intervals: 95% stratified percentile bootstrap; performance "
            "profiles on scores normalised min-max over all runs of the task.",
        ]
    lines += _provenance_lines(report)
    lines.append("")
    for task in report["tasks"]:
        lines.append(
            f"## {task['task']} ({task['env']}, {task['n_agents']} agents; metric: "
            f"{task['metric']})"
        )
        lines += ["", task_table(task, report["baseline"])]
        lines += robust_task_tables(task) + [""]
    lines += aggregate_lines(report.get("aggregate"))
    if report["failed"]:
        lines += ["## Failed runs", ""]
        lines += [f"- `{f['run_dir']}`: {f['error']}" for f in report["failed"]]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for fig in figures:
            lines += [f"![{Path(fig).stem}]({Path(fig).name})", ""]
    return "\n".join(lines).rstrip() + "\n"
