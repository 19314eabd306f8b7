"""Sparse heterogeneous matrix game (experiments.md s.1): samples to 0.99 expected reward.

For HATRPO, HATRPO-W and HATRPO-G, ``--seeds`` runs each (separate processes, two at a time) of
the matrix-game preset (K = 2, 3, 5, 8; 4000 one-step plays per iteration), then:

- samples (env steps) until the exact expected reward of the joint policy first reaches 0.99,
  per seed; median, IQR and min-max over seeds (a seed that never reaches it counts as +inf);
- speed-up HATRPO / method = median(HATRPO) / median(method), with a 95% bootstrap interval;
- final expected reward (after ``--steps``), seconds per iteration and the solver's share.

Published claim: W and G need 2-3x fewer samples than HATRPO.

    python benchmarks/matrix_game.py                   # 10 seeds x 3 methods x 400k steps
    python benchmarks/matrix_game.py --seeds 1 --steps 8000 --runs-dir /tmp/m --results-dir /tmp/m

Resumable: finished runs in ``--runs-dir`` are reused. Writes ``matrix_game.json`` and
``matrix_game.png`` into ``--results-dir`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.ticker import EngFormatter

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _runner  # noqa: E402

from kl_alloc.analysis import (  # noqa: E402
    bootstrap_ratio_ci,
    final_expected_reward,
    format_table,
    samples_to_reach,
    spread,
    time_breakdown,
    truncate,
)
from kl_alloc.analysis.figures import new_figure, plot_learning_curves, save  # noqa: E402
from kl_alloc.methods import builtin_methods, method_color, method_label  # noqa: E402
from kl_alloc.rundir import load_run, provenance  # noqa: E402

NAME = "matrix_game"
CLAIM = "HATRPO-W and HATRPO-G reach 99% of the maximum reward with 2-3x fewer samples"


def _fmt(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def analyse(jobs: list[_runner.Job], threshold: float, steps: int) -> dict:
    methods = {}
    for algo in builtin_methods():
        mine = [j for j in jobs if j.algo == algo]
        if not mine:
            continue
        runs = [truncate(load_run(j.run_dir), steps) for j in mine]
        hits = [samples_to_reach(r, threshold) for r in runs]
        finals = np.array([final_expected_reward(r) for r in runs])
        methods[algo] = {
            "label": method_label(algo),
            "per_seed": [
                {
                    "seed": j.seed,
                    "samples_to_threshold": h,
                    "final_expected_reward": float(f),
                    "iterations": int(r.iteration.size),
                }
                for j, r, h, f in zip(mine, runs, hits, finals, strict=True)
            ],
            "samples_to_threshold": spread(hits),
            "reached": f"{sum(h is not None for h in hits)}/{len(hits)}",
            "final_expected_reward": {
                "mean": float(finals.mean()),
                "std": float(finals.std()),
                "min": float(finals.min()),
                "max": float(finals.max()),
            },
            "timing": time_breakdown(runs),
            "config": runs[0].config.get("config"),
            "_hits": hits,
        }
    base = methods.get("hatrpo")
    for m in methods.values():
        if base is None or m["samples_to_threshold"]["median"] is None:
            m["speedup_vs_hatrpo"] = None
            m["speedup_ci95"] = None
            continue
        b = base["samples_to_threshold"]["median"]
        m["speedup_vs_hatrpo"] = None if b is None else b / m["samples_to_threshold"]["median"]
        full_b = [h for h in base["_hits"] if h is not None]
        full_m = [h for h in m["_hits"] if h is not None]
        censored = len(full_b) < len(base["_hits"]) or len(full_m) < len(m["_hits"])
        m["speedup_ci95"] = None if censored else bootstrap_ratio_ci(full_b, full_m)
    return methods


def table(methods: dict) -> str:
    rows = []
    for m in methods.values():
        s = m["samples_to_threshold"]
        sp, ci = m["speedup_vs_hatrpo"], m["speedup_ci95"]
        t = m["timing"]
        sp_text = "-" if sp is None else f"{sp:.2f}x"
        if sp is not None and ci is not None:
            sp_text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
        rows.append([
            m["label"],
            m["reached"],
            _fmt(s["median"]),
            f"{_fmt(s['q25'])} - {_fmt(s['q75'])}",
            f"{_fmt(s['min'])} - {_fmt(s['max'])}",
            sp_text,
            f"{m['final_expected_reward']['mean']:.4f} +- {m['final_expected_reward']['std']:.4f}",
            f"{t['seconds_per_iter_median'] * 1e3:.1f}",
            f"{t['share'].get('solver', 0) * 100:.1f}%",
        ])  # fmt: skip
    return format_table(
        ["method", "reached", "samples to 0.99 (median)", "IQR", "min - max",
         "speed-up HATRPO/method [95% CI]", "final E[R] (mean +- std)", "ms/iter", "solver"],
        rows,
    )  # fmt: skip


def figure(
    jobs: list[_runner.Job], methods: dict, threshold: float, steps: int, path: Path
) -> None:
    runs = [truncate(load_run(j.run_dir), steps) for j in jobs]
    fig = new_figure(13, 4.8)
    ax_curve, ax_hits = fig.subplots(1, 2, width_ratios=[1.6, 1])
    plot_learning_curves(
        ax_curve, runs, "expected_reward", threshold, title="Sparse matrix game: learning curves"
    )
    finite = [h for m in methods.values() for h in m["_hits"] if h is not None]
    censored = any(h is None for m in methods.values() for h in m["_hits"])
    if finite and not censored:
        # every seed got there: show the part of the run where the curves move
        shown = min(steps, 2.5 * max(finite))
        ax_curve.set_xlim(0, shown)
        ax_curve.set_title(
            f"Sparse matrix game: learning curves (first {shown:,.0f} of {steps:,} steps)"
        )
    top = steps * 1.05 if censored or not finite else max(finite) * 1.3
    for k, (algo, m) in enumerate(methods.items()):
        hits = np.array([np.nan if h is None else h for h in m["_hits"]], dtype=float)
        rng = np.random.default_rng(k)
        x = k + rng.uniform(-0.15, 0.15, hits.size)
        ok = np.isfinite(hits)
        ax_hits.plot(x[ok], hits[ok], "o", color=method_color(algo), alpha=0.7, ms=5)
        ax_hits.plot(x[~ok], np.full((~ok).sum(), top), "x", color=method_color(algo), ms=7)
        med = m["samples_to_threshold"]["median"]
        if med is not None:
            ax_hits.hlines(med, k - 0.3, k + 0.3, color="k", lw=2)
    ax_hits.set_xticks(range(len(methods)), [m["label"] for m in methods.values()])
    ax_hits.set_ylabel(f"env steps to expected reward {threshold:g}")
    note = f"; x at top: never within {steps:,}" if censored else ""
    ax_hits.set_title(f"samples per seed (bar: median{note})", fontsize="medium")
    ax_hits.set_ylim(0, top * 1.08)
    ax_hits.grid(alpha=0.3, axis="y")
    ax_hits.yaxis.set_major_formatter(EngFormatter(sep=""))
    save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _runner.add_common_args(parser, seeds=10, steps=400_000, name="matrix")
    parser.add_argument("--threshold", type=float, default=0.99, help="expected-reward target")
    args = parser.parse_args(argv)
    _runner.setup_logging()
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be >= 1")

    jobs = [
        _runner.Job("matrix", algo, seed, args.steps, args.runs_dir / f"{algo}-{seed}")
        for algo in builtin_methods()
        if algo in args.algos
        for seed in range(args.seeds)
    ]
    if not args.analyse_only:
        _runner.run_jobs(jobs, args.runs_dir / "logs", args.jobs)
    methods = analyse(jobs, args.threshold, args.steps)
    print()
    print(
        f"Sparse matrix game, {args.seeds} seeds x {args.steps:,} env steps per method "
        f"(samples to expected reward {args.threshold:g})"
    )
    print(table(methods))
    print(f"published claim: {CLAIM}")
    timing = None
    if args.timing_iterations > 0:
        timing = _runner.interleaved_timing(
            "matrix", list(methods), iterations=args.timing_iterations
        )
        print(
            f"\nSeconds per iteration, {args.timing_iterations} iterations per method measured "
            "round robin in one process (1 torch thread):"
        )
        print(_runner.timing_table(timing))

    png = args.results_dir / f"{NAME}.png"
    figure(jobs, methods, args.threshold, args.steps, png)
    result = {
        "benchmark": NAME,
        "claim": CLAIM,
        "provenance": provenance(__file__, argv),
        "settings": {
            "env": "matrix",
            "seeds": args.seeds,
            "steps": args.steps,
            "threshold": args.threshold,
            "runs_dir": str(args.runs_dir),
        },
        "methods": {
            a: {k: v for k, v in m.items() if not k.startswith("_")} for a, m in methods.items()
        },
        "table": table(methods),
        "timing": timing,
        "timing_table": None if timing is None else _runner.timing_table(timing),
        "figure": png.name,
    }
    _runner.write_json(args.results_dir / f"{NAME}.json", _runner.clean_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
