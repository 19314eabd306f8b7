"""Aggregate run directories into the comparison table and figures of a sweep.

    report = build_report(["runs/sweeps/eps_sensitivity"])          # a dict (also report.json)
    write_report(report, "benchmarks/results/sweeps/eps_sensitivity")  # report.md, *.png, .json

Runs are grouped by task, method and the swept fields. A run made by ``kl-alloc sweep`` says
which trial it is (``trial.json``); for any other run directory the task is its env
(``matrix``, ``mamujoco-Ant-2x4``, ...), the method its algorithm, and the swept fields are the
config fields that differ between runs of the same task and method (the seed aside).

Per group, over its finished runs (``done.json``; one run per seed):

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

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.analysis import (
    algo_label,
    env_key,
    final_mean_action,
    find_runs,
    format_table,
    in_basin,
    spread,
    time_breakdown,
    wilson_interval,
)
from kl_alloc.experiments.runner import provenance
from kl_alloc.rl.telemetry import RunData, load_run

logger = logging.getLogger(__name__)

RESAMPLES = 10_000
#: fewest seeds per side for a bootstrap interval of a variance ratio
MIN_SEEDS_VAR_CI = 5
#: config fields never treated as swept when guessing them from config.json
_NOT_SWEPT = ("seed", "checkpoint_every", "eval_every", "eval_episodes")


# -- per run ---------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run_dir: Path
    task: str
    method: str
    algo: str
    seed: int
    params: dict[str, Any]
    env_name: str
    n_agents: int
    finished: bool
    data: RunData = field(repr=False)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _flat_config(run: RunData) -> dict[str, Any]:
    cfg = dict(run.config.get("config", {}) or {})
    env_kwargs = cfg.pop("env_kwargs", {}) or {}
    out = {k: v for k, v in cfg.items() if k not in _NOT_SWEPT}
    spec_kwargs = run.config.get("env", {}).get("kwargs", {}) or {}
    for k, v in {**env_kwargs, **spec_kwargs}.items():
        if k not in ("num_envs", "seed"):
            out[f"env.{k}"] = v
    return out


def summarize_runs(paths: Iterable[str | os.PathLike]) -> list[RunSummary]:
    """Load every run directory under ``paths`` and name its task, method and swept fields."""
    summaries: list[RunSummary] = []
    guessed: list[RunSummary] = []
    for run_dir in find_runs(paths):
        data = load_run(run_dir)
        trial = _read_json(run_dir / "trial.json")
        env = data.config.get("env", {})
        common = dict(
            run_dir=run_dir,
            seed=int(data.config.get("seed", -1)),
            env_name=str(env.get("name", "?")),
            n_agents=int(env.get("n_agents", 0)),
            finished=data.done is not None,
            data=data,
        )
        if trial is not None:
            s = RunSummary(
                task=str(trial["task"]),
                method=str(trial["method"]),
                algo=str(trial["algo"]),
                params=dict(trial.get("params", {})),
                **common,
            )
        else:
            algo = str(data.config.get("algo", "?"))
            allocator = str(data.config.get("allocator", ""))
            method = algo if allocator in ("", "uniform", "water_fill", "greedy") else allocator
            s = RunSummary(task=env_key(data), method=method, algo=algo, params={}, **common)
            guessed.append(s)
        summaries.append(s)
    # swept fields of runs without trial.json: config values that differ within (task, method)
    by_tm: dict[tuple[str, str], list[RunSummary]] = {}
    for s in guessed:
        by_tm.setdefault((s.task, s.method), []).append(s)
    for group in by_tm.values():
        flats = [_flat_config(s.data) for s in group]
        keys = sorted(set().union(*flats))
        varying = [
            k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1
        ]
        for s, f in zip(group, flats, strict=True):
            s.params = {k: f.get(k) for k in varying}
    return summaries


# -- statistics ------------------------------------------------------------------------------------


def bootstrap_mean_ci(
    values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean (a single value: a zero-width interval)."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return (float(lo), float(hi))


def bootstrap_improvement(
    values: Sequence[float], base: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """(mean - mean_base) / |mean_base| and var / var_base with 95% bootstrap intervals (the
    two samples resampled independently)."""
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


def final_value(run: RunData, metric: str) -> float:
    """The run's final performance under ``metric`` (see the module docstring)."""
    if metric == "expected_reward":
        return float(run.expected_reward[-1]) if run.expected_reward.size else math.nan
    if metric == "eval_return":
        y = run.eval_return_mean[np.isfinite(run.eval_return_mean)]
    else:
        y = run.episode_return[np.isfinite(run.episode_return)]
    if not y.size:
        return math.nan
    return float(y[-max(1, math.ceil(0.1 * y.size)) :].mean())


def task_metric(runs: Sequence[RunData]) -> str:
    if runs and all(np.isfinite(r.expected_reward).any() for r in runs):
        return "expected_reward"
    if runs and all(np.isfinite(r.eval_return_mean).any() for r in runs):
        return "eval_return"
    return "episode_return"


def curve(run: RunData, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "expected_reward":
        x, y = run.env_steps, run.expected_reward
    elif metric == "eval_return":
        x, y = run.eval_env_steps, run.eval_return_mean
    else:
        x, y = run.env_steps, run.episode_return
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def steps_to(run: RunData, metric: str, threshold: float) -> float | None:
    x, y = curve(run, metric)
    hit = np.flatnonzero(y >= threshold)
    return float(x[hit[0]]) if hit.size else None


def default_threshold(env_name: str, metric: str, run: RunData) -> float | None:
    """0.99 of the payoff on the matrix game (experiments.md s.1); none elsewhere."""
    if env_name == "matrix" and metric == "expected_reward":
        payoff = (run.config.get("env", {}).get("kwargs", {}) or {}).get("payoff", 1.0)
        return 0.99 * float(payoff)
    return None


# -- the report ------------------------------------------------------------------------------------


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the current directory when it lies below it (portable reports)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def params_label(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return format(v, "g")
        if isinstance(v, list | tuple):
            return "(" + ",".join(fmt(x) for x in v) + ")"
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(params.items()))


def method_label(method: str) -> str:
    return algo_label(method)


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _sort_value(v: Any) -> tuple:
    if isinstance(v, bool):
        return (0, int(v), "")
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, 0.0, json.dumps(v, sort_keys=True))


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _nan_to_none(x.item())
    return x


def build_report(
    paths: Iterable[str | os.PathLike],
    baseline: str = "hatrpo",
    threshold: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    include_unfinished: bool = False,
    summaries: Sequence[RunSummary] | None = None,
) -> dict[str, Any]:
    """The aggregated results of the runs under ``paths`` (JSON-ready; see the module doc)."""
    paths = [Path(p) for p in paths]
    if summaries is None:
        summaries = summarize_runs(paths)
    failed = []
    for p in paths:
        for err in sorted(p.rglob("error.json")) if p.is_dir() else []:
            info = _read_json(err) or {}
            if not (err.parent / "done.json").exists():
                failed.append({"run_dir": display_path(err.parent), "error": info.get("error")})

    tasks: dict[str, list[RunSummary]] = {}
    for s in summaries:
        tasks.setdefault(s.task, []).append(s)

    out_tasks = []
    for task, members in sorted(tasks.items()):
        used = [s for s in members if s.finished or include_unfinished]
        used = [s for s in used if s.data.iteration.size]
        metric = task_metric([s.data for s in used])
        env_name = members[0].env_name
        thr = threshold
        if thr is None and used:
            thr = default_threshold(env_name, metric, used[0].data)
        groups: dict[tuple[str, str], list[RunSummary]] = {}
        for s in members:
            groups.setdefault((s.method, _params_key(s.params)), [])
        for s in used:
            groups[(s.method, _params_key(s.params))].append(s)

        rows = []
        for (method, pkey), runs in groups.items():
            runs = sorted(runs, key=lambda s: s.seed)
            params = json.loads(pkey)
            found = sum(1 for s in members if s.method == method and _params_key(s.params) == pkey)
            finals = [final_value(s.data, metric) for s in runs]
            finals_ok = [v for v in finals if math.isfinite(v)]
            lo, hi = bootstrap_mean_ci(finals_ok, resamples, seed)
            row: dict[str, Any] = {
                "task": task,
                "method": method,
                "algo": runs[0].algo if runs else method,
                "params": params,
                "env": env_name,
                "n_agents": members[0].n_agents if not runs else runs[0].n_agents,
                "n": len(runs),
                "found": found,
                "unfinished": sum(not s.finished for s in runs),
                "seeds": [s.seed for s in runs],
                "final": finals,
                "final_mean": float(np.mean(finals_ok)) if finals_ok else math.nan,
                "final_std": float(np.std(finals_ok, ddof=1)) if len(finals_ok) > 1 else math.nan,
                "final_ci": [lo, hi],
            }
            if thr is not None:
                reached = [steps_to(s.data, metric, thr) for s in runs]
                row["threshold"] = thr
                row["samples_to_threshold"] = reached
                row["samples_spread"] = spread(reached)
                if reached and all(v is not None for v in reached):
                    row["samples_mean"] = float(np.mean(reached))
                    row["samples_ci"] = list(bootstrap_mean_ci(reached, resamples, seed))
            if env_name == "differential" and runs:
                ends = []
                for s in runs:
                    try:
                        point = final_mean_action(s.data)
                    except ValueError:
                        continue
                    if point.size == 2:
                        ends.append(bool(in_basin(point)))
                if ends:
                    row["in_basin"] = [int(sum(ends)), len(ends)]
                    row["in_basin_ci"] = list(wilson_interval(int(sum(ends)), len(ends)))
            if runs:
                tb = time_breakdown([s.data for s in runs], skip_first=1)
                row["seconds_per_iter"] = tb["seconds_per_iter_median"]
                row["time_share"] = tb["share"]
                row["solver_seconds_per_iter"] = tb["solver_seconds_per_iter"]
                row["iterations"] = int(np.median([s.data.iteration.size for s in runs]))
                row["env_steps"] = float(np.median([s.data.env_steps[-1] for s in runs]))
            rows.append(row)

        # baselines
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
            row.update(bootstrap_improvement(a, b, resamples, seed))
            if row.get("seconds_per_iter") and base.get("seconds_per_iter"):
                row["time_ratio"] = row["seconds_per_iter"] / base["seconds_per_iter"]
            if "samples_spread" in row and "samples_spread" in base:
                mb, mr = base["samples_spread"]["median"], row["samples_spread"]["median"]
                row["speedup"] = (mb / mr) if (mb and mr) else None

        rows.sort(key=lambda r: _row_order(r, baseline))
        out_tasks.append(
            {
                "task": task,
                "env": env_name,
                "metric": metric,
                "threshold": thr,
                "n_agents": members[0].n_agents,
                "rows": rows,
            }
        )

    return _nan_to_none(
        {
            "sources": [display_path(p) for p in paths],
            "provenance": provenance(),
            "code": _run_code(summaries),
            "baseline": baseline,
            "resamples": resamples,
            "seed": seed,
            "runs": len(summaries),
            "finished": sum(s.finished for s in summaries),
            "include_unfinished": include_unfinished,
            "failed": failed,
            "tasks": out_tasks,
        }
    )


def _run_code(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """The distinct code versions the runs were trained with (from trial.json), with counts."""
    seen: dict[str, dict[str, Any]] = {}
    for s in summaries:
        trial = _read_json(s.run_dir / "trial.json") or {}
        code = trial.get("code")
        if code:
            key = json.dumps({k: code.get(k) for k in ("git_commit", "git_dirty", "path")})
            seen.setdefault(key, {**code, "runs": 0})["runs"] += 1
    return list(seen.values())


def _row_order(row: dict[str, Any], baseline: str) -> tuple:
    order = ("hatrpo", "hatrpo-w", "hatrpo-g")
    m = row["method"]
    rank = 0 if m == baseline else 1 + (order.index(m) if m in order else len(order))
    return (rank, m, [(k, _sort_value(v)) for k, v in sorted(row["params"].items())])


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


# -- Markdown ------------------------------------------------------------------------------------


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


def task_table(task: dict[str, Any]) -> str:
    rows = task["rows"]
    show_thr = task.get("threshold") is not None
    show_basin = any("in_basin" in r for r in rows)
    headers = ["method", "swept", "runs", f"final {task['metric']} [95% CI]"]
    headers += ["vs HATRPO [95% CI]", "var ratio [95% CI]"]
    if show_thr:
        headers += [f"samples to {task['threshold']:g}: median (reached); mean [95% CI]"]
        headers += ["speed-up (median)"]
    if show_basin:
        headers += ["global basin"]
    headers += ["s/iter", "x HATRPO", "solver share"]
    table = []
    for r in rows:
        ci = r.get("final_ci") or [None, None]
        line = [
            method_label(r["method"]),
            params_label(r["params"]) or "-",
            f"{r['n']}/{r['found']}"
            + (f" ({r['unfinished']} unfinished)" if r.get("unfinished") else ""),
            f"{_f(r['final_mean'], 5)} [{_f(ci[0], 5)}, {_f(ci[1], 5)}]",
        ]
        if r.get("improvement") is not None:
            line.append(
                f"{_pct(r['improvement'])} [{_pct(r.get('imp_lo'))}, {_pct(r.get('imp_hi'))}]"
            )
        else:
            line.append("(baseline)" if r.get("is_baseline") else "-")
        if r.get("var_ratio") is not None:
            line.append(
                f"{_f(r['var_ratio'], 3)} [{_f(r.get('var_lo'), 3)}, {_f(r.get('var_hi'), 3)}]"
            )
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
        line += [
            f"{1000 * spi:.1f} ms" if spi is not None else "-",
            _f(r.get("time_ratio"), 3),
            f"{100 * share:.2f}%" if share is not None else "-",
        ]
        table.append(line)
    return format_table(headers, table)


def render_markdown(report: dict[str, Any], figures: Sequence[str] = (), title: str = "") -> str:
    lines = [f"# {title or 'Sweep report'}", ""]
    lines.append(
        f"{report['finished']} finished run(s) of {report['runs']} found under "
        + ", ".join(f"`{s}`" for s in report["sources"])
        + f". Baseline: {method_label(report['baseline'])}. Intervals: 95% percentile bootstrap "
        f"over seeds ({report['resamples']} resamples, seed {report['seed']}); improvement = "
        "(mean - mean_HATRPO) / |mean_HATRPO|; var ratio = var / var_HATRPO across seeds (no "
        "interval with fewer than 5 seeds a side); samples to the threshold: median over seeds, "
        "runs that never reach it count as never "
        "(median 'never' when half or more fail); s/iter: median seconds per iteration, first "
        "iteration excluded; solver share: time in the allocator's solver call / total time."
    )
    if report.get("include_unfinished"):
        lines += [
            "",
            "Runs without done.json (killed, failed or still running) are included as far as "
            "they got: their 'final' value is the last one logged.",
        ]
    prov = report.get("provenance") or {}
    if prov:
        code = f"kl_alloc {prov.get('kl_alloc')}"
        if prov.get("git_commit"):
            code += f", git {prov['git_commit']}" + (
                " + local changes" if prov["git_dirty"] else ""
            )
        lines += ["", f"Generated {prov.get('generated_utc')} ({code})."]
    for c in report.get("code") or []:
        what = f"git {c['git_commit']}" if c.get("git_commit") else f"kl_alloc {c.get('kl_alloc')}"
        if c.get("git_dirty"):
            what += " + local changes"
        lines += ["", f"Runs trained with {what} ({c['runs']} runs)."]
    lines.append("")
    for task in report["tasks"]:
        lines.append(
            f"## {task['task']} ({task['env']}, {task['n_agents']} agents; metric: "
            f"{task['metric']})"
        )
        lines.append("")
        lines.append(task_table(task))
        lines.append("")
    if report["failed"]:
        lines.append("## Failed runs")
        lines.append("")
        for f in report["failed"]:
            lines.append(f"- `{f['run_dir']}`: {f['error']}")
        lines.append("")
    if figures:
        lines.append("## Figures")
        lines.append("")
        for fig in figures:
            lines.append(f"![{Path(fig).stem}]({Path(fig).name})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- figures ---------------------------------------------------------------------------------------


def _group_runs(summaries: Sequence[RunSummary], include_unfinished: bool) -> dict:
    groups: dict[str, dict[tuple[str, str], list[RunSummary]]] = {}
    for s in summaries:
        if not (s.finished or include_unfinished) or not s.data.iteration.size:
            continue
        groups.setdefault(s.task, {}).setdefault((s.method, _params_key(s.params)), []).append(s)
    return groups


def _group_label(method: str, pkey: str) -> str:
    p = params_label(json.loads(pkey))
    return method_label(method) + (f" ({p})" if p else "")


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def plot_curves(report: dict[str, Any], summaries: Sequence[RunSummary], include_unfinished: bool):
    from kl_alloc.plotting import new_figure, seed_statistics

    groups = _group_runs(summaries, include_unfinished)
    tasks = [t for t in report["tasks"] if t["task"] in groups]
    if not tasks:
        return None
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig = new_figure(5.2 * cols, 3.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, task in zip(axes, tasks, strict=False):
        tg = groups[task["task"]]
        keys = sorted(
            tg,
            key=lambda k: _row_order(
                {"method": k[0], "params": json.loads(k[1])}, report["baseline"]
            ),
        )
        for color, key in zip(_colors(len(keys)), keys, strict=True):
            x, mean, std, _ = seed_statistics([curve(s.data, task["metric"]) for s in tg[key]])
            if not x.size:
                continue
            ax.plot(x, mean, color=color, lw=1.4, label=f"{_group_label(*key)} (n={len(tg[key])})")
            if len(tg[key]) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)
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
    from kl_alloc.plotting import plot_allocation_heatmaps

    picked: list[tuple[str, RunSummary]] = []
    for row in task["rows"]:
        if row["algo"] == "hatrpo" or not row["n"]:
            continue
        runs = [
            s
            for s in summaries
            if s.task == task["task"]
            and s.method == row["method"]
            and _params_key(s.params) == _params_key(row["params"])
            and s.data.delta_alloc.size
        ]
        if runs:
            run = min(runs, key=lambda s: s.seed)
            picked.append(
                (f"{_group_label(row['method'], _params_key(row['params']))}, seed {run.seed}", run)
            )
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


def plot_sweeps(report: dict[str, Any]):
    """Final performance (and, with a threshold, samples to it) against each numeric swept
    field: one column per (field, task), one line per method, mean with its 95% interval;
    the baseline's mean and interval as a dashed line and band."""
    from kl_alloc.plotting import new_figure

    panels: list[tuple[str, dict[str, Any], dict[str, list[dict[str, Any]]]]] = []
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
    if not panels:
        return None

    def second(methods: dict[str, list[dict[str, Any]]]) -> str | None:
        rows = [r for rs in methods.values() for r in rs]
        if any(r.get("samples_mean") is not None for r in rows):
            return "samples"
        if any(r.get("in_basin") for r in rows):
            return "basin"
        return None

    seconds = [second(m) for _, _, m in panels]
    whats = ["final", "second"] if any(seconds) else ["final"]
    fig = new_figure(5.0 * len(panels), 3.6 * len(whats))
    axes = fig.subplots(len(whats), len(panels), squeeze=False)
    for col, (key, task, methods) in enumerate(panels):
        base = next(
            (r for r in task["rows"] if r.get("is_baseline") and r["n"]),
            None,
        )
        for row_i, what in enumerate(whats):
            ax = axes[row_i, col]
            if what == "second":
                what = seconds[col]
                if what is None:
                    ax.set_visible(False)
                    continue
            colors = _colors(len(methods))
            xs = []
            for color, (method, rows) in zip(colors, methods.items(), strict=True):
                x, y, lo, hi = _metric_points(rows, key, what)
                xs.extend(x)
                ok = np.isfinite(y)
                if not ok.any():
                    continue
                err = np.vstack([y - lo, hi - y])[:, ok]
                ax.errorbar(
                    x[ok],
                    y[ok],
                    yerr=np.nan_to_num(err),
                    color=color,
                    marker="o",
                    ms=4,
                    capsize=3,
                    label=method_label(method),
                )
            if base is not None:
                _, by, blo, bhi = _metric_points([{**base, "params": {key: 0}}], key, what)
                if np.isfinite(by[0]):
                    ax.axhline(
                        by[0], color="k", ls="--", lw=0.8, label=method_label(base["method"])
                    )
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
    fig.suptitle("mean over seeds with 95% bootstrap interval", fontsize="medium")
    return fig


def _eng():
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="")


def plot_overhead(report: dict[str, Any]):
    """Seconds per iteration and the solver's share against the number of agents, per env."""
    from kl_alloc.plotting import new_figure

    lines: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
    for task in report["tasks"]:
        for r in task["rows"]:
            if r["n"] and r.get("seconds_per_iter") is not None:
                key = (task["env"], r["method"], _params_key(r["params"]))
                lines.setdefault(key, []).append((task["n_agents"], r))
    lines = {k: v for k, v in lines.items() if len({n for n, _ in v}) >= 2}
    if not lines:
        return None
    fig = new_figure(11, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    envs = sorted({k[0] for k in lines})
    groups = sorted({(k[1], k[2]) for k in lines})
    palette = dict(zip(groups, _colors(len(groups)), strict=True))
    for key, pts in sorted(lines.items()):
        env, method, pkey = key
        color = palette[(method, pkey)]
        pts = sorted(pts, key=lambda p: p[0])
        n = [p[0] for p in pts]
        spi = [1000 * p[1]["seconds_per_iter"] for p in pts]
        share = [100 * ((p[1].get("time_share") or {}).get("solver") or 0.0) for p in pts]
        label = f"{_group_label(method, pkey)} / {env}"
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


def write_report(
    report: dict[str, Any],
    out_dir: str | os.PathLike,
    summaries: Sequence[RunSummary] | None = None,
    heatmaps: bool = True,
    title: str = "",
    include_unfinished: bool = False,
) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the figures (PNG) into ``out_dir``."""
    from kl_alloc.plotting import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("curves", "sweep", "overhead", "allocation", "allocation_*"):
        for old in out.glob(f"{stale}.png"):  # figures of an earlier report of other runs
            old.unlink()
    if summaries is None:
        summaries = summarize_runs(report["sources"])  # relative to the current directory
    figures: list[Path] = []

    def emit(fig, name: str) -> None:
        if fig is not None:
            figures.append(save(fig, out / f"{name}.png"))

    emit(plot_curves(report, summaries, include_unfinished), "curves")
    emit(plot_sweeps(report), "sweep")
    emit(plot_overhead(report), "overhead")
    if heatmaps:
        for task in report["tasks"]:
            stem = "allocation" if len(report["tasks"]) == 1 else f"allocation_{task['task']}"
            emit(plot_heatmaps(task, summaries), stem)
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
) -> tuple[dict[str, Any], list[Path]]:
    """:func:`build_report` + :func:`write_report`."""
    summaries = summarize_runs(paths)
    report = build_report(
        paths, baseline, threshold, resamples, seed, include_unfinished, summaries
    )
    files = write_report(report, out_dir, summaries, heatmaps, title, include_unfinished)
    return report, files


__all__ = [
    "RunSummary",
    "bootstrap_improvement",
    "bootstrap_mean_ci",
    "build_report",
    "final_value",
    "make_report",
    "render_markdown",
    "summarize_runs",
    "task_table",
    "write_report",
]
