"""Evidence from a sweep's runs: the tables of ``benchmarks/evidence.py`` (issue 11), as a
library so that a user's own sweep gets the same summary.

- :func:`build_summary`: per run (task / method / swept config / seed) the env steps it reached,
  whether it finished and its final score; the robust report of
  :func:`kl_alloc.analysis.report.build_report` (main tasks aggregated); the control
  attribution and the claims, as one JSON-ready dict (``summary.json``).
- Control tasks: a task named after another plus ``-suffix`` (``ant-2x4-damping`` of
  ``ant-2x4``) is a control of it; :func:`control_attribution` sets it against its base task at
  the control's step count.
- Claims (:func:`claim_rows`): per main task, W and G against the baseline (mean final score in
  %, P(X > baseline) and what its interval says) and var(G) / var(W), against the published
  numbers (:data:`CLAIMED_GAIN`, :data:`CLAIMED_VARIANCE_RATIO`).
- README blocks: :func:`readme_block` (the detailed block), :func:`glance_block` (one row per
  published claim, for the "results at a glance" table), :func:`rewrite_readme`.

Torch-free, like the rest of :mod:`kl_alloc.analysis`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.analysis import robust
from kl_alloc.analysis.metrics import choose_metric, truncate
from kl_alloc.analysis.report import build_report, display_path, nan_to_none
from kl_alloc.analysis.robust import final_score, steps_reached
from kl_alloc.analysis.runs import RunSummary, summarize_runs
from kl_alloc.analysis.tables import (
    aggregate_lines,
    format_table,
    group_label,
    interval_bounds,
    interval_text,
    params_label,
    robust_task_tables,
    runs_used_line,
    separation,
)
from kl_alloc.methods import method_label, method_sort_key

#: the published gains in final return over HATRPO (paper: > 22.5% on MuJoCo, G ~25%, W ~22.5%)
CLAIMED_GAIN = {"hatrpo-w": 0.225, "hatrpo-g": 0.25}
#: the published var(G) / var(W) of the final return across seeds (G's ~39% above W's)
CLAIMED_VARIANCE_RATIO = 1.39


def markers(name: str = "evidence") -> tuple[str, str]:
    """The README block a summary fills: ``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def control_tasks(tasks: list[str]) -> set[str]:
    """Tasks named after another task plus ``-suffix`` (``ant-2x4-damping`` of ``ant-2x4``)."""
    return {t for t in tasks if any(t != o and t.startswith(o + "-") for o in tasks)}


def base_task(control: str, tasks: list[str]) -> str:
    """The task a control task is named after (the longest ``T`` with ``control = T-suffix``)."""
    return max((t for t in tasks if control.startswith(t + "-")), key=len)


def _env_of(s) -> tuple[str, str]:
    """A run's environment: its env name and keywords (what a control must share)."""
    env = s.data.config.get("env") or {}
    kwargs = (s.data.config.get("config") or {}).get("env_kwargs") or env.get("kwargs") or {}
    return s.env_name, json.dumps(kwargs, sort_keys=True, default=str)


def _by_task(summaries) -> dict[str, list]:
    by_task: dict[str, list] = {}
    for s in summaries:
        by_task.setdefault(s.task, []).append(s)
    return by_task


def _trial_count(runs: list[dict[str, Any]], planned: int | None) -> tuple[int, str]:
    """(how many, "trials" or "runs"): the sweep's planned trials when known, else the runs."""
    if planned is not None and planned >= len(runs):
        return planned, "trials"
    return len(runs), "trials" if planned is not None else "runs"


def _runs_hwg(claim: dict[str, Any]) -> str:
    """``5/5/4``: a claims entry's run counts of HATRPO, W and G."""
    return "/".join(str(claim["runs"].get(m, 0)) for m in ("hatrpo", "hatrpo-w", "hatrpo-g"))


def find_controls(summaries) -> dict[str, str]:
    """``{control task: base task}``: a task named after another plus ``-suffix``
    (:func:`control_tasks`) whose runs are on the same environment (env name and keywords) and
    change at least one trainer setting (:func:`control_setting`). A task that only shares
    the name prefix, e.g. ``matrix-3-4-6-10`` (another game) beside ``matrix``, is a task of
    its own."""
    by_task = _by_task(summaries)
    out = {}
    for control in control_tasks(list(by_task)):
        base = base_task(control, list(by_task))
        envs = {_env_of(s) for s in by_task[control] + by_task[base]}
        if len(envs) == 1 and control_setting(by_task[control], by_task[base]):
            out[control] = base
    return out


def planned_steps(summary) -> float | None:
    """The env steps a run was started for (its stored spec), None if not recorded."""
    from kl_alloc.lifecycle import stored_spec

    spec = stored_spec(summary.run_dir)
    return None if spec is None or spec.steps is None else float(spec.steps)


def control_setting(control_runs, base_runs) -> dict[str, Any]:
    """The trainer settings a control task changes: the config values of its first run that
    differ from those of a base-task run of the same method (any base run if none)."""
    first = control_runs[0]
    same = [b for b in base_runs if b.method == first.method] or base_runs
    # a base run with the same swept values where there is one; swept keys are never the
    # setting (a control sweeping a subset of the base's values, or the key itself)
    same = [b for b in same if b.params == first.params] or same
    mine = first.data.config.get("config", {}) or {}
    theirs = same[0].data.config.get("config", {}) or {}
    return {
        k: v
        for k, v in sorted(mine.items())
        if k != "env_kwargs" and k not in first.params and theirs.get(k) != v
    }


def _pair_key(group: dict[str, Any], setting: dict[str, Any]) -> tuple[str, str]:
    """(method, swept values without the control's setting) of a control-table group."""
    own = {k: v for k, v in group["params"].items() if k not in setting}
    return group["method"], json.dumps(own, sort_keys=True)


def control_attribution(
    summaries, fraction: float, resamples: int, baseline: str = "hatrpo", seed: int = 0
) -> list[dict[str, Any]]:
    """Per control task (``T-suffix``, e.g. ``ant-2x4-carry`` with ``carry = true``): its runs
    and those of its base task ``T``, all cut at the control's planned step count (a base run
    that has not reached it is left out), final score = mean of the evaluations over the last
    ``fraction`` of those steps; IQM per group and P(X > Y) for

    - every method under the control's setting against the same method without it (what the
      setting does to that method);
    - every other method of the base task against the baseline under the setting (e.g. W
      against HATRPO that carries its unspent budget: W's gain beyond the budget re-use);
    - every other method against the baseline, both under the setting and both without it.
    """

    by_task = _by_task(summaries)
    out = []
    for control, base in sorted(find_controls(summaries).items()):
        planned = [p for p in map(planned_steps, by_task[control]) if p is not None]
        if not planned:
            continue
        steps = max(planned)
        members = [
            s
            for s in by_task[control] + by_task[base]
            if s.data.iteration.size and robust.steps_reached(s.data) >= steps
        ]
        runs = [(s, truncate(s.data, steps)) for s in members]
        setting = control_setting(by_task[control], by_task[base])
        entry: dict[str, Any] = {"control": control, "base": base, "steps": steps,
                                 "fraction": fraction, "setting": setting, "groups": [],
                                 "comparisons": []}  # fmt: skip
        if not runs:
            out.append(entry)
            continue
        metric = choose_metric([d for _, d in runs])
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for s, data in sorted(runs, key=lambda r: r[0].seed):
            score = robust.final_score(data, metric, fraction)
            if not math.isfinite(score):  # no evaluation in the window: nothing to compare
                continue
            params = {**(setting if s.task == control else {}), **s.params}
            key = (s.task, s.method, json.dumps(params, sort_keys=True))
            g = groups.setdefault(key, {"task": s.task, "method": s.method, "params": params,
                                        "label": group_label(s.method, params),
                                        "seeds": [], "final": []})  # fmt: skip
            g["seeds"].append(s.seed)
            g["final"].append(score)
        for g in groups.values():
            g["iqm"] = robust.iqm_interval(np.array(g["final"]), resamples, seed)

        # groups paired on (method, swept values): a control group's own values are its
        # params without the setting, so a swept cg_damping = 0.001 meets 0.001 only
        ctrl = {_pair_key(g, setting): g for g in groups.values() if g["task"] == control}
        plain = {_pair_key(g, {}): g for g in groups.values() if g["task"] == base}
        pairs = [(ctrl[k], plain[k]) for k in ctrl if k in plain]
        others = sorted(
            (k for k in plain if k[0] != baseline), key=lambda k: (method_sort_key(k[0]), k[1])
        )
        pairs += [(plain[k], ctrl[b]) for k in others if (b := (baseline, k[1])) in ctrl]
        pairs += [
            (ctrl[k], ctrl[b]) for k in others if k in ctrl and (b := (baseline, k[1])) in ctrl
        ]
        pairs += [(plain[k], plain[b]) for k in others if (b := (baseline, k[1])) in plain]
        for x, y in pairs:
            poi = robust.probability_of_improvement(
                np.array(x["final"]), np.array(y["final"]), resamples, seed
            )
            entry["comparisons"].append({"x": x["label"], "y": y["label"], "poi": poi})
        entry["metric"] = metric
        entry["groups"] = sorted(
            groups.values(), key=lambda g: (g["task"] != base, method_sort_key(g["method"]))
        )
        out.append(entry)
    return out


def attribution_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The README's control tables (one per control task) from :func:`control_attribution`."""

    lines: list[str] = []
    for e in entries:
        what = ", ".join(f"{k} = {json.dumps(v)}" for k, v in e.get("setting", {}).items())
        pct = f"{100 * e.get('fraction', 0.1):g}%"
        lines += ["", f"**Control {e['control']} ({what or 'no setting changed'}) against "
                  f"{e['base']}, both at {_steps_text(e['steps'])} steps** (final score: mean of "
                  f"the evaluations over the last {pct} of those steps, the last expected reward "
                  "on the games; every run that reached them, finished or not)", ""]  # fmt: skip
        if not e["groups"]:
            lines.append("No run has reached that step count yet.")
            continue
        rows = [[g["label"], len(g["final"]), interval_text(g["iqm"], 5)] for g in e["groups"]]
        lines.append(format_table(["group", "runs", "IQM [95% CI]"], rows))
        if e["comparisons"]:
            rows = [[f"{c['x']} > {c['y']}", interval_text(c["poi"]), separation(c["poi"])]
                    for c in e["comparisons"]]  # fmt: skip
            head = ["comparison", "P(X > Y) [95% CI]", "X vs Y: interval says"]
            lines += ["", format_table(head, rows)]
    return lines


def run_rows(summaries, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per run: task, method, config, seed, steps reached, finished, final score."""

    metrics = {t["task"]: t["metric"] for t in report["tasks"]}
    fraction = report["fraction"]
    rows = []
    for s in sorted(summaries, key=lambda s: (s.task, s.method, json.dumps(s.params), s.seed)):
        score = final_score(s.data, metrics[s.task], fraction) if s.data.iteration.size else None
        if score is not None and not math.isfinite(score):
            score = None  # e.g. a run that has not evaluated yet
        rows.append(
            {
                "task": s.task,
                "method": s.method,
                "config": s.params,
                "seed": s.seed,
                "env_steps": steps_reached(s.data),
                "finished": s.finished,
                "final_score": score,
            }
        )
    return rows


def planned_trials(runs_dir: str | Path, sweep_file: str | Path | None = None) -> int | None:
    """The number of trials of the sweep that writes ``runs_dir``: from its ``sweep.json``
    (written by ``kl-alloc sweep``; not committed), else from the sweep file itself, else None."""
    try:
        return int(json.loads((Path(runs_dir) / "sweep.json").read_text())["sweep"]["trials"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if sweep_file is None:
        return None
    from kl_alloc.experiments.spec import load_spec

    return len(load_spec(sweep_file, out=runs_dir).trials)


def status_line(runs: list[dict[str, Any]], planned: int | None = None) -> str:
    """What is finished, what is part-way and, given the sweep's trial count, how many trials
    have not started."""
    done = [r for r in runs if r["finished"]]
    todo = [r for r in runs if not r["finished"]]

    def group(r):  # a grid sweep's groups differ in their swept values only
        values = params_label(r.get("config") or {})
        return f"{r['task']}/{r['method']}" + (f" ({values})" if values else "")

    def name(r):
        return f"{group(r)}/seed-{r['seed']}"

    total, what = _trial_count(runs, planned)
    line = f"{len(done)} of {total} {what} finished"
    if done:  # per task and method (the names of 72 runs are no reading)
        counts = Counter(group(r) for r in done)
        line += " (" + ", ".join(f"{g}: {c}" for g, c in sorted(counts.items())) + ")"
    if todo:
        line += "; part-way (steps reached): " + ", ".join(
            f"{name(r)} ({r['env_steps'] / 1e6:.2f}M)" for r in todo
        )
    if total > len(runs):
        line += f"; {total - len(runs)} not started"
    return line + "."


def _finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def claim_rows(summary: dict[str, Any], baseline: str = "hatrpo") -> list[dict[str, Any]]:
    """Per main task, what the published claims are about: each other method's mean final
    score against the baseline's ((mean - mean_H) / |mean_H| with its 95% bootstrap interval),
    P(X > H) with its interval and what that interval says, and var(G) / var(W) across seeds
    with its interval (the claim: ~1.39). Groups without swept values only."""

    out = []
    for task in summary["report"]["tasks"]:
        if task["task"] not in summary["main_tasks"]:
            continue
        rows = {r["method"]: r for r in task["rows"] if not r["params"]}
        poi = {(c["x"], c["y"]): c["poi"] for c in task.get("comparisons", []) if not c["params"]}
        var = {(v["x"], v["y"]): v["ratio"] for v in task.get("variance", []) if not v["params"]}
        entry: dict[str, Any] = {"task": task["task"], "runs": {m: r["n"] for m, r in rows.items()},
                                 "env": summary.get("task_envs", {}).get(task["task"]),
                                 "methods": {}}  # fmt: skip
        for m, r in rows.items():
            if m == baseline or not r["n"] or not rows.get(baseline, {}).get("n"):
                continue
            p = poi.get((m, baseline))
            entry["methods"][m] = {
                "improvement": {
                    "value": _finite_or_none(r.get("improvement")),
                    "lo": _finite_or_none(r.get("imp_lo")),
                    "hi": _finite_or_none(r.get("imp_hi")),
                },
                "poi": p,
                "verdict": separation(p),
            }
        entry["var_g_over_w"] = var.get(("hatrpo-g", "hatrpo-w"))
        entry["swept_only"] = not rows and any(r["params"] and r["n"] for r in task["rows"])
        out.append(entry)
    return out


def _variance_says(v: dict[str, Any] | None) -> str:
    """Where the claimed var(G) / var(W) lies against a measured ratio's interval. An interval
    with a lower end and no upper one (resamples with var(W) = 0: few seeds) is unbounded
    above: the claim can still lie below it."""
    c = CLAIMED_VARIANCE_RATIO
    lo, hi = _finite_or_none((v or {}).get("lo")), _finite_or_none((v or {}).get("hi"))
    if lo is None:
        return "too few runs"
    if hi is None:
        return f"{c} below it" if c < lo else f"{c} inside (no upper end)"
    return f"{c} inside" if lo <= c <= hi else f"{c} {'above' if hi < c else 'below'} it"


def claim_lines(claims: list[dict[str, Any]]) -> list[str]:
    """The README's table of the MuJoCo / MPE claims from :func:`claim_rows`."""

    rows = []
    for c in claims:
        runs = _runs_hwg(c)
        for m, d in c["methods"].items():
            rows.append([c["task"], runs, f"{method_label(m)} vs HATRPO", _pct(d["improvement"]),
                         interval_text(d["poi"]), d["verdict"]])  # fmt: skip
        v = c.get("var_g_over_w") or {}
        if v.get("value") is not None:
            rows.append([c["task"], runs, f"var(G) / var(W) (claim: {CLAIMED_VARIANCE_RATIO})",
                         interval_text(v), "", _variance_says(v)])  # fmt: skip
    if not rows:
        return []
    head = ["task", "runs H/W/G", "comparison", "mean final score vs HATRPO [95%]",
            "P(X > HATRPO) [95%]", "P's interval says"]  # fmt: skip
    return [
        "",
        "**W and G against HATRPO, per task** (the published claims: > 22.5% better final "
        "return, G ~25%, W ~22.5%; G's variance across seeds ~39% above W's), from the runs "
        "the line above names; "
        "a method is higher or lower than HATRPO only where the whole interval of "
        "P(X > HATRPO) lies above or below 0.5.",
        "",
        format_table(head, rows),
    ]


def _made_by(summary: dict[str, Any]) -> str:
    """``Generated by `COMMAND` (time)``: the command that made the summary, or its run root
    when it was built through the API without one."""
    how = f"`{summary['command']}`" if summary.get("command") else f"from `{summary['runs_dir']}`"
    return f"Generated {'by ' if summary.get('command') else ''}{how} ({summary['generated_utc']})"


def readme_block(summary: dict[str, Any]) -> str:
    """The README's results block, generated from summary.json."""

    lines = [
        f"{_made_by(summary)}. {status_line(summary['runs'], summary.get('planned_trials'))}",
        "",
        runs_used_line(summary["report"]),
    ]
    lines += claim_lines(summary.get("claims", []))
    for task in summary["report"]["tasks"]:
        lines += ["", f"**{task['task']}** (metric: {task['metric']})"]
        lines += robust_task_tables(task)
    if summary["report"].get("aggregate"):
        lines += [""] + [ln.replace("## ", "**", 1) + "**" if ln.startswith("## ") else ln
                         for ln in aggregate_lines(summary["report"]["aggregate"])]  # fmt: skip
    lines += attribution_lines(summary.get("attribution", []))
    return "\n".join(lines).rstrip()


def rewrite_readme(readme: Path, block: str, marker: str = "evidence") -> None:
    START, END = markers(marker)  # noqa: N806
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{block}\n{END}{tail}")


def build_summary(
    runs_dir: str | Path,
    *,
    fraction: float = 0.1,
    resamples: int = 10_000,
    include_unfinished: bool = False,
    planned: int | None = None,
    command: str = "",
    args: str = "",
) -> tuple[dict[str, Any], list[RunSummary]]:
    """``(summary, run summaries)`` of the runs under ``runs_dir``: the JSON-ready dict that
    ``benchmarks/evidence.py`` writes as summary.json (see the module doc), and the runs it was
    built from (for the figures). ``planned``: the sweep's trial count (default: from the
    ``sweep.json`` that ``kl-alloc sweep`` writes into ``runs_dir``, see
    :func:`planned_trials`); ``command`` / ``args``: how it was made, for the README's line.
    Raises ValueError when no run under ``runs_dir`` has written its config yet."""
    summaries = summarize_runs([runs_dir])
    if planned is None:
        planned = planned_trials(runs_dir)
    tasks = sorted({s.task for s in summaries})
    controls = find_controls(summaries)
    main_tasks = [t for t in tasks if t not in controls]
    report = build_report(
        [runs_dir],
        resamples=resamples,
        include_unfinished=include_unfinished,
        summaries=summaries,
        fraction=fraction,
        aggregate_tasks=main_tasks,
        profile_resamples=min(2000, resamples),
    )
    summary: dict[str, Any] = {
        "generated_utc": report["provenance"]["generated_utc"],
        "command": command,
        "runs_dir": display_path(runs_dir),
        "args": args,
        "planned_trials": planned,
        "main_tasks": main_tasks,
        "control_tasks": sorted(controls),
        "task_envs": {
            t: ", ".join(sorted({s.env_name for s in summaries if s.task == t})) for t in tasks
        },  # fmt: skip
        "runs": run_rows(summaries, report),
        "attribution": control_attribution(summaries, fraction, resamples),
        "report": report,
    }
    # plain JSON types, what summary.json holds: NaN / inf (an interval of one run) -> None
    summary = json.loads(json.dumps(nan_to_none(summary)))
    summary["claims"] = claim_rows(summary)
    return summary, summaries


def _steps_text(steps: float) -> str:
    return f"{steps / 1e6:g}M" if steps >= 1e5 else f"{steps / 1e3:g}k"


def _task_steps(runs: list[dict[str, Any]], task: str, unfinished: bool = False) -> str:
    """The env steps of a task's runs used ('3M', or '2M-3M' when they differ)."""
    steps = [r["env_steps"] for r in runs if r["task"] == task and (r["finished"] or unfinished)]
    if not steps:
        return "-"
    lo, hi = min(steps), max(steps)
    return _steps_text(lo) if lo == hi else f"{_steps_text(lo)}-{_steps_text(hi)}"


def _pct(d: dict[str, Any] | None) -> str:
    """``+11.6% [-2.3, +26.8]`` from an improvement ``{value, lo, hi}`` (fractions)."""
    if not d or d.get("value") is None or not math.isfinite(d["value"]):
        return "-"
    text = f"{100 * d['value']:+.1f}%"
    if (b := interval_bounds(d)) is not None:
        text += f" [{100 * b[0]:+.1f}, {100 * b[1]:+.1f}]"
    return text


def _gain_verdict(method: str, claims: list[dict[str, Any]], against_claim: bool = True) -> str:
    """How one method's gain over the baseline came out across the tasks: on how many P(X >
    baseline)'s interval lies above 0.5 (and below), and (``against_claim``) on how many the
    interval of the mean gain lies wholly below or above the claimed size (the rest contain
    it)."""
    label = method_label(method).replace("HATRPO-", "")
    entries = [(c["task"], c["methods"][method]) for c in claims if method in c["methods"]]
    if not entries:
        return f"{label}: no finished runs"
    judged = [(t, d) for t, d in entries if d["verdict"] != "too few runs"]
    higher = [t for t, d in judged if d["verdict"] == "higher"]
    lower = [t for t, d in judged if d["verdict"] == "lower"]
    n = len(judged)
    text = f"**{label}**: higher than HATRPO on {len(higher)} of {n} task{'s' if n != 1 else ''}"
    if higher:
        text += f" ({', '.join(higher)})"
    if lower:
        text += f", lower on {len(lower)} ({', '.join(lower)})"
    claimed = CLAIMED_GAIN.get(method) if against_claim else None
    if claimed is not None:
        bounds = [interval_bounds(d["improvement"]) for _, d in judged]
        below = sum(b is not None and b[1] < claimed for b in bounds)
        above = sum(b is not None and b[0] > claimed for b in bounds)
        for count, where in ((below, "below"), (above, "above")):
            if count:
                text += (f"; {label}'s gain interval lies {where} its claimed "
                         f"{100 * claimed:g}% on {count} of {n}")  # fmt: skip
    if len(judged) < len(entries):
        text += f"; {len(entries) - len(judged)} with too few runs"
    return text


def glance_block(summary: dict[str, Any], claim_envs: Collection[str] | None = None) -> str:
    """One row per published claim (the final-return gain over HATRPO, which the paper
    measured on MuJoCo; G's variance against W's) over the main tasks, for the README's
    "results at a glance": what was measured, with intervals, and how it came out. Generated
    from summary.json like :func:`readme_block`; says "in progress" while the sweep has
    trials left. ``claim_envs``: the envs the gain claim is judged on (None: every task's);
    a task on another env is shown beside it, its verdict apart and never set against the
    claimed size."""
    runs = summary["runs"]
    claims = summary.get("claims", [])
    report = summary.get("report") or {}
    unfinished = bool(report.get("include_unfinished"))

    def in_scope(claim: dict[str, Any]) -> bool:
        return claim_envs is None or claim.get("env") in claim_envs

    done = sum(r["finished"] for r in runs)
    planned = summary.get("planned_trials")
    total, what = _trial_count(runs, planned)
    used = "all runs, unfinished included" if unfinished else "the finished runs"
    head = f"{_made_by(summary)}, using {used}: {done} of {total} {what} finished" + (
        " (**in progress**: not a result yet)." if done < total else "."
    )
    gains, variances = [], []
    for c in claims:
        if c.get("swept_only"):
            gains.append(f"{c['task']}: swept groups only (the claims use unswept groups)")
            continue
        n = _runs_hwg(c)
        parts = [f"{method_label(m).replace('HATRPO-', '')} {_pct(d['improvement'])}"
                 for m, d in c["methods"].items()]  # fmt: skip
        beside = "" if in_scope(c) else f"{c.get('env')}, beside the claim; "
        where = (f"{c['task']} ({beside}{n} seeds H/W/G, "
                 f"{_task_steps(runs, c['task'], unfinished)})")  # fmt: skip
        gains.append(f"{where}: {', '.join(parts) or 'no comparison yet'}")
        v = c.get("var_g_over_w")
        if v and v.get("value") is not None:
            variances.append((c["task"], v))
    methods = [m for m in ("hatrpo-w", "hatrpo-g") if any(m in c["methods"] for c in claims)]
    judged = [c for c in claims if not c.get("swept_only")]
    scoped = [c for c in judged if in_scope(c)]
    others = [c for c in judged if not in_scope(c)]
    verdicts = [_gain_verdict(m, scoped) for m in methods] if scoped or not others else []
    if others:
        envs = ", ".join(sorted({str(c.get("env")) for c in others}))
        verdicts.append(f"beside the claim ({envs}): " + "; ".join(
            _gain_verdict(m, others, against_claim=False) for m in methods))  # fmt: skip
    rows = [
        [
            "final score above HATRPO's (paper, on MuJoCo: > 22.5%; G ~25%, W ~22.5%)",
            "; ".join(gains) or "no finished runs yet",
            "<br>".join(verdicts) or "-",
        ]
    ]
    says = [(t, _variance_says(v)) for t, v in variances]
    judged = [(t, s) for t, s in says if s != "too few runs"]
    if not judged:
        verdict = "not judged yet (too few runs)" if says else "-"
    elif all("inside" in s for _, s in judged):
        verdict = f"not resolved: {CLAIMED_VARIANCE_RATIO} inside every interval"
    else:
        verdict = "; ".join(f"{t}: {s}" for t, s in judged)
    rows.append(
        [
            f"G's variance across seeds ~39% higher than W's (ratio {CLAIMED_VARIANCE_RATIO})",
            "; ".join(f"{t}: var(G)/var(W) {interval_text(v)}" for t, v in variances) or "-",
            verdict,
        ]
    )
    table = format_table(["published claim", "measured (95% intervals)", "how it came out"], rows)
    return f"{head}\n\n{table}"
