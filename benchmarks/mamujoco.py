"""The Multi-Agent MuJoCo comparison (experiments.md s.3): HATRPO vs HATRPO-W vs HATRPO-G.

    python benchmarks/mamujoco.py                          # everything, 2 runs at a time
    python benchmarks/mamujoco.py --tasks ant-2x4 --algos hatrpo,hatrpo-g --seeds 0 --steps 200000
    python benchmarks/mamujoco.py --report                 # only (re)write the results
    setsid nohup python benchmarks/mamujoco.py > runs/bench/mamujoco/driver.log 2>&1 &

- The runs go through the one orchestrator (:func:`kl_alloc.experiments.runner.run_jobs`, via
  ``benchmarks/_runner.py``, local executor): every run is a
  :class:`~kl_alloc.lifecycle.RunSpec` (env ``mamujoco`` with the task's scenario / agent_conf,
  its default preset plus ``RUN_CONFIG`` and any ``--set``) in its own worker process, one
  torch / OpenMP / numba thread, at most ``--jobs`` at once (default 2: one per core), killed
  with this script. Run directories are ``<out>/<task>-<algo>-<seed>``, the per-run log is
  ``<out>/logs/<task>-<algo>-<seed>.log``, ``<out>/status.json`` says what ran and how.
- Resumable by the run lifecycle's rules (those of ``kl-alloc train --resume`` and
  ``kl-alloc sweep``): a run finished for ``--steps`` is skipped, a killed run continues from its
  checkpoint (bit-for-bit the run it would have been), a larger ``--steps`` extends finished
  runs. Run directories from the earlier driver of this script (no ``spec.json``) are read by
  their ``config.json``. A run directory holding a run with other settings is an error before
  anything runs, never silently mixed into the results. Re-running the same command continues.
- Two drivers on the same ``--out`` are not prevented (the earlier ``driver.lock`` is gone, as
  in ``kl-alloc sweep``): run one at a time.
- The report (``--report``; while runs finish, at most once a minute; at the end) works on
  whatever exists: finished runs give the final returns, unfinished ones are listed with their
  progress and drawn in the curves. Runs kept without ``progress.jsonl``
  (``benchmarks/results/mamujoco_runs``: config.json, done.json, eval.jsonl) give everything
  but the seconds per iteration and the time shares, which only the per-iteration log has.

Final return = mean of the last 10% of a run's evaluations (deterministic policy, 10 episodes
each, every 25 iterations); improvement = (R_method - R_HATRPO) / |R_HATRPO| on the means over
seeds; wall-clock per iteration = mean over a run's iterations (first one excluded), then over
seeds. Runs share the machine (two at a time, plus whatever else runs), so absolute seconds are
noisy; the ratios compare runs that ran under the same conditions only roughly.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _runner  # noqa: E402

from kl_alloc.config import ConfigError, parse_set  # noqa: E402
from kl_alloc.lifecycle import RunError, inspect_run  # noqa: E402
from kl_alloc.methods import builtin_methods, method_label  # noqa: E402
from kl_alloc.rundir import provenance  # noqa: E402

logger = logging.getLogger("benchmarks.mamujoco")

ROOT = _runner.ROOT
#: task name -> (scenario, agent_conf)
TASKS = {"ant-2x4": ("Ant", "2x4"), "halfcheetah-6x1": ("HalfCheetah", "6x1")}
ALGOS = tuple(builtin_methods())
LABELS = {m: method_label(m) for m in ALGOS}
DEFAULT_OUT = ROOT / "runs" / "bench" / "mamujoco"
RESULTS = ROOT / "benchmarks" / "results"
#: overrides of the "mamujoco" env's default preset used by every run of this benchmark
RUN_CONFIG = dict(eval_every=25, eval_episodes=10, checkpoint_every=10)
#: seconds between the reports written while runs finish (the final one is always written)
REPORT_EVERY = 60.0


def run_name(task: str, algo: str, seed: int) -> str:
    return f"{task}-{algo}-{seed}"


def make_jobs(args: argparse.Namespace) -> list[_runner.Job]:
    """The runs, task-major, then seed, then method: partial results always hold every method."""
    jobs = []
    for task in args.tasks:
        scenario, conf = TASKS[task]
        overrides = {**RUN_CONFIG, **args.set, "env_kwargs": {"scenario": scenario,
                                                               "agent_conf": conf}}  # fmt: skip
        for seed in args.seeds:
            for algo in args.algos:
                name = run_name(task, algo, seed)
                jobs.append(_runner.Job("mamujoco", algo, seed, args.steps, args.out / name,
                                        overrides=overrides, log_name=name))  # fmt: skip
    return jobs


def drive(args: argparse.Namespace) -> int:
    """Run what is unfinished through the orchestrator, a fresh report as runs finish and at
    the end; returns a process exit code."""
    jobs = make_jobs(args)
    try:
        for job in jobs:
            job.status()  # a run directory with other settings stops everything before any run
    except (RuntimeError, RunError, ConfigError) as exc:
        logger.error("%s", exc)
        return 2

    last_report = time.monotonic()

    def after_run(outcome: dict[str, Any]) -> None:
        nonlocal last_report
        if time.monotonic() - last_report < REPORT_EVERY:
            return
        try:  # a fresh report as runs finish (at most every REPORT_EVERY seconds)
            report(args)
        except Exception:
            logger.exception("report failed")
        last_report = time.monotonic()

    code = 0
    try:
        _runner.run_jobs(jobs, args.out / "logs", args.jobs, status_path=args.out / "status.json",
                         on_result=after_run)  # fmt: skip
    except RuntimeError as exc:  # some runs failed: the others are in the report
        logger.error("%s", exc)
        code = 1
    except KeyboardInterrupt:
        code = 130
    report(args)
    return code


# -- the report ---------------------------------------------------------------------------------


def _final_return(evals: np.ndarray) -> float:
    """Mean of the last 10% of the evaluations (at least one)."""
    k = max(1, math.ceil(0.1 * len(evals)))
    return float(np.mean(evals[-k:]))


def _stats(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    if not v.size:
        return {"n": 0, "mean": None, "std": None, "var": None, "min": None, "max": None}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "var": float(v.var(ddof=1)) if v.size > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
    }


def finished(run_dir: Path, steps: int) -> bool:
    """Finished for ``steps`` env steps, by the run lifecycle's reading of the directory."""
    try:
        state = inspect_run(run_dir)
    except RunError:
        return False
    return state.finished_steps is not None and state.finished_steps >= steps


def run_summary(run_dir: Path, seed: int, steps: int) -> dict[str, Any]:
    """One run's row: progress and evaluations; the timing needs ``progress.jsonl`` (a run kept
    with only config.json, done.json and eval.jsonl takes its length from done.json)."""
    from kl_alloc.rundir import load_run

    if not ((run_dir / "progress.jsonl").exists() or (run_dir / "done.json").exists()):
        return {"seed": seed, "status": "not started"}
    data = load_run(run_dir)
    done = finished(run_dir, steps)
    evals = data.eval_return_mean[np.isfinite(data.eval_return_mean)]
    row: dict[str, Any] = {"seed": seed, "status": "done" if done else "in progress"}
    if data.iteration.size:
        spi = data.seconds_per_iter[1:] if data.seconds_per_iter.size > 1 else data.seconds_per_iter
        shares = {k: float(np.nansum(v[1:])) for k, v in data.time.items()}
        total = sum(shares.values()) or 1.0
        row.update(
            iterations=int(data.iteration[-1]),
            env_steps=int(data.env_steps[-1]),
            wall_time=float(data.wall_time[-1]),
            seconds_per_iter=float(np.mean(spi)) if spi.size else None,
            seconds_per_iter_median=float(np.median(spi)) if spi.size else None,
            time_share={k: v / total for k, v in shares.items()},
        )
    else:  # no per-iteration log: the summary of done.json
        summary = data.done or {}
        row.update(
            iterations=int(summary.get("iterations", 0)),
            env_steps=int(summary.get("env_steps", 0)),
            wall_time=summary.get("wall_time"),
            seconds_per_iter=None,
            seconds_per_iter_median=None,
        )
    row.update(
        evaluations=len(evals),
        final_return=_final_return(evals) if (done and len(evals)) else None,
        last_eval=float(evals[-1]) if len(evals) else None,
        _data=data,
    )
    return row


def collect(args: argparse.Namespace) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for task in args.tasks:
        methods: dict[str, Any] = {}
        for algo in args.algos:
            runs = [run_summary(args.out / run_name(task, algo, seed), seed, args.steps)
                    for seed in args.seeds]  # fmt: skip
            finals = [r["final_return"] for r in runs if r.get("final_return") is not None]
            spis = [r["seconds_per_iter"] for r in runs if r.get("seconds_per_iter")]
            medians = [r["seconds_per_iter_median"] for r in runs if r.get("seconds_per_iter")]
            methods[algo] = {
                "runs": runs,
                "final_return": _stats(finals),
                "seconds_per_iter": float(np.mean(spis)) if spis else None,
                "seconds_per_iter_median": float(np.median(medians)) if medians else None,
            }
        base = methods.get("hatrpo", {}).get("final_return", {}).get("mean")
        base_spi = methods.get("hatrpo", {}).get("seconds_per_iter_median")
        for algo, m in methods.items():
            mean = m["final_return"]["mean"]
            m["improvement_pct"] = (
                100.0 * (mean - base) / abs(base)
                if (mean is not None and base not in (None, 0.0) and algo != "hatrpo")
                else None
            )
            spi = m["seconds_per_iter_median"]
            m["overhead_vs_hatrpo"] = spi / base_spi if (spi and base_spi) else None
        # partial results: every method's mean evaluation return at the last evaluation step
        # that all runs of the task with an evaluation have reached
        curves = {
            (algo, r["seed"]): dict(
                zip(
                    r["_data"].eval_env_steps.tolist(),
                    r["_data"].eval_return_mean.tolist(),
                    strict=True,
                )
            )
            for algo, m in methods.items()
            for r in m["runs"]
            if "_data" in r and r["_data"].eval_env_steps.size
        }
        common = set.intersection(*(set(c) for c in curves.values())) if curves else set()
        at_common = None
        if common:
            step = max(common)
            at_common = {"env_steps": int(step)}
            for algo in methods:
                vals = [c[step] for (a, _), c in curves.items() if a == algo]
                at_common[algo] = {"mean": float(np.mean(vals)), "n": len(vals)} if vals else None
        var_g = methods.get("hatrpo-g", {}).get("final_return", {}).get("var")
        var_w = methods.get("hatrpo-w", {}).get("final_return", {}).get("var")
        tasks[task] = {
            "methods": methods,
            "variance_ratio_g_over_w": var_g / var_w if (var_g is not None and var_w) else None,
            "at_common_step": at_common,
        }
    return tasks


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _markdown(tasks: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Multi-Agent MuJoCo: HATRPO vs HATRPO-W vs HATRPO-G",
        "",
        f"Command: `{meta['command']}`  ",
        f"Written {meta['written']} at commit {meta['commit']}; {meta['steps']:,} env steps per "
        f"run, seeds {meta['seeds']}.",
        "",
        "Final return = mean of the last 10% of a run's deterministic evaluations (10 episodes "
        "every 25 iterations), over finished seeds: mean +- std (min..max). s/iter = median over "
        "seeds of each run's mean seconds per iteration (first iteration excluded); runs share "
        "a 2-core machine (two at a time), so seconds are noisy: the CPU-time overheads are in "
        "mamujoco_profile.md. Runs kept without their per-iteration log (progress.jsonl) show "
        "'-' for s/iter and time shares.",
        "",
    ]
    for task, t in tasks.items():
        lines += [f"## {task}", ""]
        lines.append(
            "| method | finished seeds | final return | vs HATRPO | variance over seeds "
            "| s/iter | s/iter vs HATRPO | time shares (rollout/actor/critic/solver) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for algo, m in t["methods"].items():
            fr = m["final_return"]
            n_done = sum(r["status"] == "done" for r in m["runs"])
            ret = (
                "-"
                if fr["mean"] is None
                else (f"{fr['mean']:.1f} +- {_fmt(fr['std'])} ({fr['min']:.1f}..{fr['max']:.1f})")
            )
            shares = [r["time_share"] for r in m["runs"] if "time_share" in r]
            share = "-"
            if shares:
                avg = {k: np.mean([s[k] for s in shares]) for k in shares[0]}
                share = "/".join(
                    f"{100 * avg[k]:.0f}%" for k in ("rollout", "actor", "critic", "solver")
                )
            imp = m["improvement_pct"]
            lines.append(
                f"| {LABELS.get(algo, algo)} | {n_done}/{len(m['runs'])} | {ret} | "
                f"{'-' if imp is None else f'{imp:+.1f}%'} | {_fmt(fr['var'], '.4g')} | "
                f"{_fmt(m['seconds_per_iter_median'], '.2f')} | "
                f"{_fmt(m['overhead_vs_hatrpo'], '.2f')} | {share} |"
            )
        lines += ["", f"Variance ratio G/W: {_fmt(t['variance_ratio_g_over_w'], '.3g')}", ""]
        common = t.get("at_common_step")
        if common:
            parts = [
                f"{LABELS.get(a, a)} {v['mean']:.1f} (n={v['n']})"
                for a, v in common.items()
                if a != "env_steps" and v
            ]
            lines += [
                f"At {common['env_steps']:,} env steps (the last evaluation every evaluated run "
                f"has reached; n = runs): " + ", ".join(parts),
                "",
            ]
        lines.append("| run | status | iterations | env steps | wall time | last eval |")
        lines.append("|---|---|---|---|---|---|")
        for algo, m in t["methods"].items():
            for r in m["runs"]:
                wall = r.get("wall_time")
                lines.append(
                    f"| {run_name(task, algo, r['seed'])} | {r['status']} | "
                    f"{r.get('iterations', '-')} | {r.get('env_steps', '-')} | "
                    f"{'-' if wall is None else f'{wall / 60:.1f} min'} | "
                    f"{_fmt(r.get('last_eval'))} |"
                )
        lines.append("")
    lines.append(f"Figures: {', '.join(meta['figures']) or 'none yet'}")
    return "\n".join(lines) + "\n"


def _plot(tasks: dict[str, Any], prefix: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[str] = []
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    drawn = False
    for ax, (task, t) in zip(axes[0], tasks.items(), strict=True):
        for index, (algo, m) in enumerate(t["methods"].items()):
            curves = [
                (r["_data"].eval_env_steps, r["_data"].eval_return_mean)
                for r in m["runs"]
                if "_data" in r and r["_data"].eval_env_steps.size
            ]
            if not curves:
                continue
            grid = np.unique(np.concatenate([x for x, _ in curves]))
            values = np.full((len(curves), grid.size), np.nan)
            for k, (x, y) in enumerate(curves):
                inside = (grid >= x[0]) & (grid <= x[-1])
                values[k, inside] = np.interp(grid[inside], x, y)
            with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            color = f"C{index}"
            ax.plot(
                grid, mean, color=color, label=f"{LABELS.get(algo, algo)} ({len(curves)} seeds)"
            )
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, lw=0)
            drawn = True
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return (deterministic)")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small", title="band: +-1 std over seeds", title_fontsize="x-small")
    if drawn:
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "_curves.png")
        fig.savefig(path, dpi=110)
        figures.append(path.name)
    plt.close(fig)

    return figures + _plot_heatmaps(tasks, prefix)


def _plot_heatmaps(tasks: dict[str, Any], prefix: Path) -> list[str]:
    """KL-allocation heatmaps, agent x iteration, for W and G (the first seed with a
    per-iteration log)."""
    import matplotlib.pyplot as plt

    from kl_alloc.analysis.figures import plot_allocation_heatmaps, save

    figures = []
    for task, t in tasks.items():
        runs = []
        for algo in ("hatrpo-w", "hatrpo-g"):
            m = t["methods"].get(algo)
            with_data = [r for r in (m["runs"] if m else []) if "_data" in r]
            if with_data and with_data[0]["_data"].delta_alloc.size:
                runs.append(with_data[0]["_data"])
        if not runs:
            continue
        path = prefix.with_name(f"{prefix.name}_alloc_{task}.png")
        fig = plot_allocation_heatmaps(runs, title=f"{task}: KL allocated per agent")
        save(fig, path)
        plt.close(fig)
        figures.append(path.name)
    return figures


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    """Which command, code and machine wrote the report (:func:`kl_alloc.rundir.provenance`)."""
    from importlib.metadata import PackageNotFoundError, version

    code = provenance(__file__, args.argv)
    commit = (code["git_commit"] or "unknown")[:7]
    try:
        mujoco_version = version("mujoco")
    except PackageNotFoundError:
        mujoco_version = None
    return {
        "command": args.command,
        "written": code["generated_utc"],
        "commit": commit + (" (+ uncommitted changes)" if code["git_dirty"] else ""),
        "steps": args.steps,
        "seeds": list(args.seeds),
        "run_config": {"preset": "mamujoco", **RUN_CONFIG, **args.set},
        "out": str(args.out),
        "python": code["python"],
        "torch": code["torch"],
        "mujoco": mujoco_version,
        "cpu_count": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "provenance": code,
    }


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Write ``<results>/mamujoco.{json,md}`` and the figures from the runs in ``args.out``."""
    tasks = collect(args)
    args.results.mkdir(parents=True, exist_ok=True)
    prefix = args.results / "mamujoco"
    meta = _meta(args)
    meta["figures"] = _plot(tasks, prefix)
    complete = all(
        r["status"] == "done"
        for t in tasks.values()
        for m in t["methods"].values()
        for r in m["runs"]
    )
    meta["complete"] = complete
    for t in tasks.values():
        for m in t["methods"].values():
            for r in m["runs"]:
                r.pop("_data", None)
    payload = {"meta": meta, "tasks": tasks}
    (prefix.with_suffix(".json")).write_text(json.dumps(payload, indent=1) + "\n")
    md = _markdown(tasks, meta)
    if not complete:
        md = "**Partial results: some runs are unfinished (see the run tables).**\n\n" + md
    (prefix.with_suffix(".md")).write_text(md)
    logger.info("report written to %s.{json,md}", prefix)
    return payload


# -- command line -------------------------------------------------------------------------------


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=_csv(str), default=list(TASKS), help="comma-separated")
    parser.add_argument("--algos", type=_csv(str), default=list(ALGOS), help="comma-separated")
    parser.add_argument("--seeds", type=_csv(int), default=[0, 1, 2], help="comma-separated")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the run directories")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--report", action="store_true", help="only write the report")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config override on top of the benchmark's (quick checks; the report records it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        args.set = parse_set(args.set)
    except ConfigError as exc:
        parser.error(str(exc))
    for task in args.tasks:
        if task not in TASKS:
            parser.error(f"--tasks: unknown task {task!r}; known: {list(TASKS)}")
    for algo in args.algos:
        if algo not in ALGOS:
            parser.error(f"--algos: unknown method {algo!r}; known: {list(ALGOS)}")
    args.out = args.out.resolve()
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.command = "python benchmarks/mamujoco.py " + shlex.join(args.argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    if args.report:
        report(args)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
