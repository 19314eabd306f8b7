r"""Two-peak differential game (experiments.md s.2): who escapes the local optimum?

For HATRPO, HATRPO-W and HATRPO-G, ``--seeds`` runs each (separate processes, two at a time) of
the differential-game preset (Gaussian policies, initial mean 1.5 and std 0.5 for both agents,
400 one-step plays per iteration), then:

- the fraction of seeds whose final mean action lies in the global basin (within 1.5 of (5, 5)),
  with a 95% Wilson interval, and the fraction at the local peak (within 1.5 of (1, 1));
- the final exact expected reward (mean, std, min, max over seeds);
- seconds per iteration and the solver's share;
- the figure: the reward heatmap over [0, 7]^2 with every seed's mean-action trajectory, one
  panel per method.

Published claim: HATRPO is trapped at the local optimum; W and G escape to the global one.

    python benchmarks/differential_game.py                  # 20 seeds x 3 methods x 200k steps
    python benchmarks/differential_game.py --seeds 1 --steps 800 \
        --runs-dir /tmp/d --results-dir /tmp/d

Resumable: finished runs in ``--runs-dir`` are reused. Writes ``differential_game.json`` and
``differential_game.png`` into ``--results-dir`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _runner  # noqa: E402

from kl_alloc.analysis import (  # noqa: E402
    BASIN_CENTRE,
    BASIN_RADIUS,
    LOCAL_CENTRE,
    final_expected_reward,
    final_mean_action,
    format_table,
    in_basin,
    time_breakdown,
    truncate,
    wilson_interval,
)
from kl_alloc.analysis.figures import plot_trajectories, save  # noqa: E402
from kl_alloc.methods import builtin_methods, method_label  # noqa: E402
from kl_alloc.rundir import load_run, provenance  # noqa: E402

NAME = "differential_game"
CLAIM = "HATRPO stays trapped at the local optimum; HATRPO-W and HATRPO-G escape to the global one"


def analyse(jobs: list[_runner.Job], steps: int) -> dict:
    methods = {}
    for algo in builtin_methods():
        mine = [j for j in jobs if j.algo == algo]
        if not mine:
            continue
        runs = [truncate(load_run(j.run_dir), steps) for j in mine]
        finals = np.array([final_mean_action(r) for r in runs])
        rewards = np.array([final_expected_reward(r) for r in runs])
        global_ = [in_basin(a, BASIN_CENTRE, BASIN_RADIUS) for a in finals]
        local = [in_basin(a, LOCAL_CENTRE, BASIN_RADIUS) for a in finals]
        k, n = sum(global_), len(global_)
        methods[algo] = {
            "label": method_label(algo),
            "per_seed": [
                {
                    "seed": j.seed,
                    "final_mean_action": a.tolist(),
                    "in_global_basin": g,
                    "at_local_peak": loc,
                    "final_expected_reward": float(rw),
                    "iterations": int(r.iteration.size),
                }
                for j, r, a, g, loc, rw in zip(
                    mine, runs, finals, global_, local, rewards, strict=True
                )
            ],
            "global_basin": {"count": k, "n": n, "fraction": k / n, "ci95": wilson_interval(k, n)},
            "local_peak": {"count": sum(local), "n": n, "fraction": sum(local) / n},
            "final_expected_reward": {
                "mean": float(rewards.mean()),
                "std": float(rewards.std()),
                "min": float(rewards.min()),
                "max": float(rewards.max()),
            },
            "final_mean_action_mean": finals.mean(axis=0).tolist(),
            "timing": time_breakdown(runs),
            "config": runs[0].config.get("config"),
        }
    return methods


def table(methods: dict) -> str:
    rows = []
    for m in methods.values():
        g, loc, fr, t = m["global_basin"], m["local_peak"], m["final_expected_reward"], m["timing"]
        rows.append([
            m["label"],
            f"{g['count']}/{g['n']} = {g['fraction']:.2f} [{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]",
            f"{loc['count']}/{loc['n']}",
            f"{fr['mean']:.4f} +- {fr['std']:.4f}",
            f"{fr['min']:.4f} - {fr['max']:.4f}",
            "(" + ", ".join(f"{v:.2f}" for v in m["final_mean_action_mean"]) + ")",
            f"{t['seconds_per_iter_median'] * 1e3:.1f}",
            f"{t['share'].get('solver', 0) * 100:.1f}%",
        ])  # fmt: skip
    return format_table(
        ["method", "global basin [95% CI]", "local peak", "final E[R] (mean +- std)",
         "min - max", "mean final action", "ms/iter", "solver"],
        rows,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _runner.add_common_args(parser, seeds=20, steps=200_000, name="differential")
    args = parser.parse_args(argv)
    _runner.setup_logging()
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be >= 1")

    jobs = [
        _runner.Job("differential", algo, seed, args.steps, args.runs_dir / f"{algo}-{seed}")
        for algo in builtin_methods()
        if algo in args.algos
        for seed in range(args.seeds)
    ]
    if not args.analyse_only:
        _runner.run_jobs(jobs, args.runs_dir / "logs", args.jobs)
    methods = analyse(jobs, args.steps)
    print()
    print(f"Two-peak differential game, {args.seeds} seeds x {args.steps:,} env steps per method")
    print(table(methods))
    print(f"published claim: {CLAIM}")
    timing = None
    if args.timing_iterations > 0:
        timing = _runner.interleaved_timing(
            "differential", list(methods), iterations=args.timing_iterations
        )
        print(
            f"\nSeconds per iteration, {args.timing_iterations} iterations per method measured "
            "round robin in one process (1 torch thread):"
        )
        print(_runner.timing_table(timing))

    png = args.results_dir / f"{NAME}.png"
    runs = [truncate(load_run(j.run_dir), args.steps) for j in jobs]
    fig = plot_trajectories(
        runs,
        title=(
            f"Differential game, {args.seeds} seeds x {args.steps:,} steps: mean-action "
            "trajectories (o start, * ends in the global basin, X elsewhere)"
        ),
    )
    save(fig, png)
    result = {
        "benchmark": NAME,
        "claim": CLAIM,
        "provenance": provenance(__file__, argv),
        "settings": {
            "env": "differential",
            "seeds": args.seeds,
            "steps": args.steps,
            "basin": {"centre": BASIN_CENTRE, "radius": BASIN_RADIUS},
            "runs_dir": str(args.runs_dir),
        },
        "methods": methods,
        "table": table(methods),
        "timing": timing,
        "timing_table": None if timing is None else _runner.timing_table(timing),
        "figure": png.name,
    }
    _runner.write_json(args.results_dir / f"{NAME}.json", _runner.clean_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
