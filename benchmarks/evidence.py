"""Turn the evidence sweep's runs (benchmarks/sweeps/evidence.toml, issue 11) into evidence:
``benchmarks/results/evidence/summary.json``, figures, and the README's results block.

    python benchmarks/evidence.py                          # benchmarks/results/evidence/runs
    python benchmarks/evidence.py --runs DIR --include-unfinished
    python benchmarks/evidence.py --sweep benchmarks/sweeps/evidence.toml   # fresh clone: count
                                                           # the trials not started as well

summary.json holds, per run (task / method / swept config / seed; the control tasks such as
``ant-2x4-damping`` are their own tasks): the env steps it reached, whether it finished, its
final score (mean of its evaluations over the last 10% of the steps it reached); and the
aggregate table of :func:`kl_alloc.analysis.report.build_report` (IQM with 95% stratified
bootstrap intervals, probability of improvement, variance ratios, performance profiles; finished
runs only unless ``--include-unfinished``). The aggregate across tasks uses the main tasks only
(a task whose name is another task's name plus ``-suffix`` is a control of it). Each control
task is also set against its base task at the control's step count (``attribution``: every
run cut there; the setting against no setting for each method, the other methods against
HATRPO with the setting, and against HATRPO without it), which is what says how much of a
W/G gain the setting alone (budget carry-over, Fisher damping) gives HATRPO.
The block opens with a table of what the published claims are about (``claims`` in
summary.json): per main task, W and G against HATRPO (mean final score in %, P(X > HATRPO) and
whether its interval lies above or below 0.5) and var(G) / var(W) against the claimed 1.39.
Figures (PNG, next to summary.json): learning curves with bootstrap bands over seeds
(``curves.png``), performance profiles (``profiles.png``), probability of improvement
(``poi.png``). The README's block between ``<!-- evidence:start -->`` and
``<!-- evidence:end -->`` is rewritten from summary.json (``--marker NAME``: the block
``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``; the bring-your-own-env sweep
``benchmarks/sweeps/own_envs.toml`` fills ``own-envs`` with ``--runs
benchmarks/results/own_envs/runs --out benchmarks/results/own_envs --marker own-envs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def markers(name: str = "evidence") -> tuple[str, str]:
    """The README block a summary fills: ``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def control_tasks(tasks: list[str]) -> set[str]:
    """Tasks named after another task plus ``-suffix`` (``ant-2x4-damping`` of ``ant-2x4``)."""
    return {t for t in tasks if any(t != o and t.startswith(o + "-") for o in tasks)}


def base_task(control: str, tasks: list[str]) -> str:
    """The task a control task is named after (the longest ``T`` with ``control = T-suffix``)."""
    return max((t for t in tasks if control.startswith(t + "-")), key=len)


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
    mine = first.data.config.get("config", {}) or {}
    theirs = same[0].data.config.get("config", {}) or {}
    return {k: v for k, v in sorted(mine.items()) if k != "env_kwargs" and theirs.get(k) != v}


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
    from kl_alloc.analysis import robust
    from kl_alloc.analysis.metrics import choose_metric, truncate
    from kl_alloc.analysis.tables import group_label
    from kl_alloc.methods import method_sort_key

    by_task: dict[str, list] = {}
    for s in summaries:
        by_task.setdefault(s.task, []).append(s)
    out = []
    for control in sorted(control_tasks(list(by_task))):
        base = base_task(control, list(by_task))
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
                                 "setting": setting, "groups": [], "comparisons": []}  # fmt: skip
        if not runs:
            out.append(entry)
            continue
        metric = choose_metric([d for _, d in runs])
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for s, data in sorted(runs, key=lambda r: r[0].seed):
            score = robust.final_score(data, metric, fraction)
            if not math.isfinite(score):  # no evaluation in the window: nothing to compare
                continue
            params = {**s.params, **(setting if s.task == control else {})}
            key = (s.task, s.method, json.dumps(params, sort_keys=True))
            g = groups.setdefault(key, {"task": s.task, "method": s.method, "params": params,
                                        "label": group_label(s.method, params),
                                        "seeds": [], "final": []})  # fmt: skip
            g["seeds"].append(s.seed)
            g["final"].append(score)
        for g in groups.values():
            g["iqm"] = robust.iqm_interval(np.array(g["final"]), resamples, seed)
        ctrl = {k[1]: g for k, g in groups.items() if k[0] == control}
        plain = {k[1]: g for k, g in groups.items() if k[0] == base}
        pairs = [(ctrl[m], plain[m]) for m in ctrl if m in plain]
        others = sorted((m for m in plain if m != baseline), key=method_sort_key)
        if baseline in ctrl:
            pairs += [(plain[m], ctrl[baseline]) for m in others]
            pairs += [(ctrl[m], ctrl[baseline]) for m in others if m in ctrl]
        if baseline in plain:
            pairs += [(plain[m], plain[baseline]) for m in others]
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
    from kl_alloc.analysis.tables import format_table, interval_text, separation

    lines: list[str] = []
    for e in entries:
        what = ", ".join(f"{k} = {json.dumps(v)}" for k, v in e.get("setting", {}).items())
        lines += ["", f"**Control {e['control']} ({what or 'no setting changed'}) against "
                  f"{e['base']}, both at {e['steps'] / 1e6:g}M steps** (final score: mean of the "
                  "evaluations over the last 10% of those steps; the runs that reached them)",
                  ""]  # fmt: skip
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
    from kl_alloc.analysis.robust import final_score, steps_reached

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

    def name(r):
        return f"{r['task']}/{r['method']}/seed-{r['seed']}"

    total = planned if planned is not None and planned >= len(runs) else len(runs)
    line = f"{len(done)} of {total} {'trials' if planned is not None else 'runs'} finished"
    if done:  # per task and method (the names of 72 runs are no reading)
        counts = Counter((r["task"], r["method"]) for r in done)
        line += " (" + ", ".join(f"{t}/{m}: {c}" for (t, m), c in sorted(counts.items())) + ")"
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
    from kl_alloc.analysis.tables import separation

    out = []
    for task in summary["report"]["tasks"]:
        if task["task"] not in summary["main_tasks"]:
            continue
        rows = {r["method"]: r for r in task["rows"] if not r["params"]}
        poi = {(c["x"], c["y"]): c["poi"] for c in task.get("comparisons", []) if not c["params"]}
        var = {(v["x"], v["y"]): v["ratio"] for v in task.get("variance", []) if not v["params"]}
        entry: dict[str, Any] = {"task": task["task"], "runs": {m: r["n"] for m, r in rows.items()},
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
        out.append(entry)
    return out


def claim_lines(claims: list[dict[str, Any]]) -> list[str]:
    """The README's table of the MuJoCo / MPE claims from :func:`claim_rows`."""
    from kl_alloc.analysis.tables import format_table, interval_bounds, interval_text
    from kl_alloc.methods import method_label

    def pct(d: dict[str, Any] | None) -> str:
        if not d or d.get("value") is None or not math.isfinite(d["value"]):
            return "-"
        text = f"{100 * d['value']:+.1f}%"
        if (b := interval_bounds(d)) is not None:
            text += f" [{100 * b[0]:+.1f}, {100 * b[1]:+.1f}]"
        return text

    rows = []
    for c in claims:
        runs = "/".join(str(c["runs"].get(m, 0)) for m in ("hatrpo", "hatrpo-w", "hatrpo-g"))
        for m, d in c["methods"].items():
            rows.append([c["task"], runs, f"{method_label(m)} vs HATRPO", pct(d["improvement"]),
                         interval_text(d["poi"]), d["verdict"]])  # fmt: skip
        v = c.get("var_g_over_w") or {}
        if v.get("value") is not None:
            b = interval_bounds(v)
            if b is None:
                says = "too few runs"
            else:
                says = (
                    "1.39 inside"
                    if b[0] <= 1.39 <= b[1]
                    else f"1.39 {'above' if b[1] < 1.39 else 'below'} it"
                )
            rows.append([c["task"], runs, "var(G) / var(W) (claim: 1.39)", interval_text(v), "",
                         says])  # fmt: skip
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


def readme_block(summary: dict[str, Any]) -> str:
    """The README's results block, generated from summary.json."""
    from kl_alloc.analysis.tables import aggregate_lines, robust_task_tables, runs_used_line

    lines = [
        f"Generated by `python benchmarks/evidence.py {summary['args']}` "
        f"({summary['generated_utc']}). "
        f"{status_line(summary['runs'], summary.get('planned_trials'))}",
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


def write_empty(args, argv: list[str] | None, why: str) -> int:
    """summary.json and the README block of a sweep with no run yet (figures removed)."""
    from kl_alloc.rundir import provenance

    prov = provenance(__file__, argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("curves", "profiles", "poi"):
        (out / f"{name}.png").unlink(missing_ok=True)
    summary = {"generated_utc": prov["generated_utc"], "command": prov["command"],
               "runs_dir": args.runs, "runs": [], "report": None, "note": why}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.readme:
        block = (
            f"Generated by `python benchmarks/evidence.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"({summary['generated_utc']}): no run of `{args.runs}` has started yet."
        )
        rewrite_readme(Path(args.readme), block, args.marker)
    print(f"no runs yet under {args.runs}; wrote {out / 'summary.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from kl_alloc.analysis import robust_figures
    from kl_alloc.analysis.figures import save
    from kl_alloc.analysis.report import build_report, display_path, summarize_runs
    from kl_alloc.experiments.spec import SpecError
    from kl_alloc.rundir import provenance

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--runs", default="benchmarks/results/evidence/runs", help="the sweep's run root"
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/evidence"))
    p.add_argument(
        "--sweep",
        default=None,
        help="the sweep file of --runs, for the number of planned trials where --runs has no "
        "sweep.json (a fresh clone); e.g. benchmarks/sweeps/evidence.toml",
    )
    p.add_argument("--readme", default=str(ROOT / "README.md"), help="'' to leave it alone")
    p.add_argument("--include-unfinished", action="store_true")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--marker", default="evidence", help="README block <!-- MARKER:start -->")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    try:
        planned = planned_trials(args.runs, args.sweep)
    except SpecError as exc:
        p.error(str(exc))
    try:
        summaries = summarize_runs([args.runs])
    except ValueError as exc:  # no run has written its config yet
        return write_empty(args, argv, str(exc))
    tasks = sorted({s.task for s in summaries})
    main_tasks = [t for t in tasks if t not in control_tasks(tasks)]
    report = build_report(
        [args.runs],
        resamples=args.resamples,
        include_unfinished=args.include_unfinished,
        summaries=summaries,
        fraction=args.fraction,
        aggregate_tasks=main_tasks,
        profile_resamples=min(2000, args.resamples),
    )
    summary = {
        "generated_utc": report["provenance"]["generated_utc"],
        "command": provenance(__file__, argv if argv is not None else sys.argv[1:])["command"],
        "runs_dir": display_path(args.runs),
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "planned_trials": planned,
        "main_tasks": main_tasks,
        "control_tasks": sorted(control_tasks(tasks)),
        "runs": run_rows(summaries, report),
        "attribution": control_attribution(summaries, args.fraction, args.resamples),
        "report": report,
    }
    summary["claims"] = claim_rows(json.loads(json.dumps(summary)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    figures = {
        "curves": robust_figures.plot_curves_ci(report, summaries, include_unfinished=True),
        "profiles": robust_figures.plot_profiles(report),
        "poi": robust_figures.plot_poi(report),
    }
    for name, fig in figures.items():
        if fig is not None:
            save(fig, out / f"{name}.png")
    if args.readme:
        block = readme_block(json.loads(json.dumps(summary)))
        rewrite_readme(Path(args.readme), block, args.marker)
    print(status_line(summary["runs"], summary["planned_trials"]))
    print(f"wrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
