"""A small one-factor-at-a-time ablation of the allocation defaults on the two games.

Around the current defaults (``TrainerConfig.for_env(game)``), one factor is changed at a time:

- ``delta_total`` (all three methods; HATRPO splits it evenly): 0.5x, 2x, 4x of n * delta;
- ``wf_floor`` (W): the water-filling floor c_i;
- ``delta_min`` (W) and ``delta_max`` (W and G: G's probe radius is min(budget, delta_max));
- ``greedy_eps`` (G) and ``rescore`` (G: re-probe after every commit, or score once);
- ``carry`` (W and G: off; their default carries leftover).

Per cell and method, ``--seeds`` runs (worker processes of the run orchestrator, two at a
time; ``--runs-per-process`` is accepted and ignored) on each game, measured
as in the paper-experiment scripts: on the matrix game the samples to 0.99 expected reward
(median over seeds; "never" counts as +inf) and the final expected reward; on the differential
game the fraction of seeds ending in the global basin and the final expected reward.

    python benchmarks/ablation.py                          # 5 seeds, both games
    python benchmarks/ablation.py --games matrix --seeds 1 --matrix-steps 8000 \
        --factors delta_total --runs-dir /tmp/a --results-dir /tmp/a

Resumable (finished runs are reused). Writes ``ablation.json`` and ``ablation.png`` into
``--results-dir`` and prints the table (Markdown) of docs/results.md's "Defaults by evidence".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _runner  # noqa: E402

from kl_alloc.analysis import (  # noqa: E402
    final_expected_reward,
    final_mean_action,
    format_table,
    in_basin,
    samples_to_reach,
    spread,
    truncate,
)
from kl_alloc.analysis.figures import new_figure, save  # noqa: E402
from kl_alloc.methods import method_color, method_label  # noqa: E402
from kl_alloc.rl.config import TrainerConfig  # noqa: E402
from kl_alloc.rundir import load_run, provenance  # noqa: E402

NAME = "ablation"
GAMES = ("matrix", "differential")
N_AGENTS = {"matrix": 4, "differential": 2}
ALL = _runner.ALGOS  # kl_alloc.methods.builtin_methods()
W, G = ("hatrpo-w",), ("hatrpo-g",)


def factors(game: str) -> list[tuple[str, list[Any], tuple[str, ...]]]:
    """(config key, non-default values, methods it applies to) for ``game``, around the
    game's preset; delta_total in multiples of n * delta."""
    cfg = TrainerConfig.for_env(game)
    d, n = cfg.delta, N_AGENTS[game]
    return [
        ("delta_total", [round(m * n * d, 6) for m in (0.5, 2.0, 4.0)], ALL),
        ("wf_floor", [0.25 * d, d, 4 * d], W),
        ("delta_min", [0.1 * d, 0.25 * d, 0.5 * d], W),
        ("delta_max", [2 * d, 1.5 * d, d], W + G),
        ("greedy_eps", [1e-6, 1e-3, 1e-2], G),
        ("rescore", [not cfg.rescore], G),
        ("carry", [False], W + G),
    ]


def value_label(game: str, key: str | None, value: Any) -> str:
    """How a value reads in the table: delta_total as a multiple of n * delta (the two games
    have different n), everything else as given."""
    if key is None:
        return "(defaults)"
    if key == "delta_total":
        return f"{value / (N_AGENTS[game] * TrainerConfig.for_env(game).delta):g} x n*delta"
    return _runner.format_value(value)


def cell_name(key: str | None, value: Any) -> str:
    return "default" if key is None else f"{key}={_runner.format_value(value)}"


def make_jobs(
    game: str, seeds: int, steps: int, root: Path, only: list[str] | None
) -> list[tuple[tuple[str | None, Any], _runner.Job]]:
    """((factor, value), job) pairs: the default cell for all methods, then each factor value."""
    cells: list[tuple[str | None, Any, tuple[str, ...]]] = [(None, None, ALL)]
    for key, values, algos in factors(game):
        if only is None or key in only:
            cells += [(key, v, algos) for v in values]
    jobs = []
    for key, value, algos in cells:
        cell = cell_name(key, value)
        for algo in algos:
            for seed in range(seeds):
                job = _runner.Job(
                    game,
                    algo,
                    seed,
                    steps,
                    root / game / cell / f"{algo}-{seed}",
                    overrides={} if key is None else {key: value},
                    log_name=f"{game}__{cell}__{algo}-{seed}",
                )
                jobs.append(((key, value), job))
    return jobs


def measure(game: str, jobs: list, steps: int) -> list[dict[str, Any]]:
    """One row per (cell, method)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for (key, value), job in jobs:
        row = rows.setdefault(
            (cell_name(key, value), job.algo),
            {
                "game": game,
                "factor": key,
                "value": value,
                "label": value_label(game, key, value),
                "algo": job.algo,
                "runs": [],
            },  # fmt: skip
        )
        run = truncate(load_run(job.run_dir), steps)
        entry: dict[str, Any] = {
            "seed": job.seed,
            "final_expected_reward": final_expected_reward(run),
        }
        if game == "matrix":
            entry["samples_to_0.99"] = samples_to_reach(run, 0.99)
        else:
            action = final_mean_action(run)
            entry["final_mean_action"] = action.tolist()
            entry["in_global_basin"] = in_basin(action)
        row["runs"].append(entry)
    out = []
    for row in rows.values():
        runs = row["runs"]
        finals = np.array([r["final_expected_reward"] for r in runs])
        row["final_expected_reward_mean"] = float(finals.mean())
        row["final_expected_reward_min"] = float(finals.min())
        if game == "matrix":
            s = spread([r["samples_to_0.99"] for r in runs])
            row["samples_to_0.99"] = s
        else:
            k = sum(r["in_global_basin"] for r in runs)
            row["global_basin"] = {"count": k, "n": len(runs)}
        out.append(row)
    return out


def combined_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (factor, value, method), matrix and differential side by side."""
    index: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        k = (r["factor"] or "", r["label"], r["algo"])
        index.setdefault(k, {})[r["game"]] = r
    order = {"": 0} | {f: i + 1 for i, (f, _, _) in enumerate(factors("matrix"))}
    lines = []
    for (factor, value, algo), by_game in sorted(
        index.items(), key=lambda kv: (order.get(kv[0][0], 99), ALL.index(kv[0][2]))
    ):
        m, d = by_game.get("matrix"), by_game.get("differential")
        mat_s = "-"
        if m is not None:
            s = m["samples_to_0.99"]
            med = "never" if s["median"] is None else f"{s['median'] / 1000:.0f}k"
            mat_s = f"{med} ({s['n_valid']}/{s['n']})"
        lines.append([
            factor or "-",
            value,
            method_label(algo),
            mat_s,
            "-" if m is None else f"{m['final_expected_reward_mean']:.4f}",
            "-" if d is None else f"{d['global_basin']['count']}/{d['global_basin']['n']}",
            "-" if d is None else f"{d['final_expected_reward_mean']:.4f}",
        ])  # fmt: skip
    return format_table(
        ["factor", "value", "method", "matrix: samples to 0.99 (median, reached)",
         "matrix: final E[R]", "differential: global basin", "differential: final E[R]"],
        lines,
    )  # fmt: skip


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    games = sorted({r["game"] for r in rows}, key=GAMES.index)
    keys = [f for f, _, _ in factors("matrix") if any(r["factor"] == f for r in rows)]
    fig = new_figure(max(3.0 * len(keys), 6), 3.4 * len(games))
    axes = fig.subplots(len(games), max(len(keys), 1), squeeze=False)
    for gi, game in enumerate(games):
        default = {r["algo"]: r for r in rows if r["game"] == game and r["factor"] is None}
        for fi, key in enumerate(keys):
            ax = axes[gi, fi]
            cells = [r for r in rows if r["game"] == game and r["factor"] == key]
            algos = [a for a in ALL if any(r["algo"] == a for r in cells)]
            values = ["default"] + list(dict.fromkeys(r["label"] for r in cells))
            width = 0.8 / max(len(algos), 1)
            for ai, algo in enumerate(algos):
                series = [default.get(algo)] + [
                    next((r for r in cells if r["algo"] == algo and r["label"] == v), None)
                    for v in values[1:]
                ]
                ys = [_metric(game, r) for r in series]
                xs = np.arange(len(values)) + (ai - (len(algos) - 1) / 2) * width
                ax.bar(xs, ys, width, color=method_color(algo), label=method_label(algo))
            ax.set_xticks(range(len(values)), values, fontsize="x-small", rotation=30)
            ax.set_title(key, fontsize="small")
            if fi == 0:
                ax.set_ylabel(
                    "matrix: k samples to 0.99\n(missing bar: never)"
                    if game == "matrix"
                    else "differential: global-basin\nfraction",
                    fontsize="small",
                )
            if game == "differential":
                ax.set_ylim(0, 1.05)
                shown = [r for r in cells + list(default.values())]
                if all(r["global_basin"]["count"] == 0 for r in shown):
                    ax.text(0.5, 0.5, "no seed reached the\nglobal basin in any cell",
                            transform=ax.transAxes, ha="center", va="center",
                            fontsize="x-small")  # fmt: skip
            ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize="x-small")
    fig.suptitle("Ablation, one factor at a time around the defaults", fontsize="medium")
    save(fig, path)


def _metric(game: str, row: dict[str, Any] | None) -> float:
    if row is None:
        return np.nan
    if game == "matrix":
        med = row["samples_to_0.99"]["median"]
        return np.nan if med is None else med / 1000
    b = row["global_basin"]
    return b["count"] / b["n"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", nargs="+", choices=GAMES, default=list(GAMES))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell and method")
    parser.add_argument("--matrix-steps", type=int, default=400_000)
    parser.add_argument("--differential-steps", type=int, default=100_000)
    parser.add_argument(
        "--factors", nargs="+", default=None, help="only these factors (default: all)"
    )
    parser.add_argument("--runs-dir", type=Path, default=_runner.ROOT / "runs" / "bench" / NAME)
    parser.add_argument("--results-dir", type=Path, default=_runner.ROOT / "benchmarks" / "results")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument("--algos", nargs="+", choices=ALL, default=list(ALL), help="methods")
    parser.add_argument(
        "--runs-per-process", type=int, default=10,
        help="ignored (kept for old command lines): every run has its own worker process",
    )  # fmt: skip
    parser.add_argument("--analyse-only", action="store_true")
    args = parser.parse_args(argv)
    _runner.setup_logging()
    known = [f for f, _, _ in factors("matrix")]
    if args.factors and set(args.factors) - set(known):
        parser.error(f"--factors: unknown {sorted(set(args.factors) - set(known))}; known {known}")

    steps = {"matrix": args.matrix_steps, "differential": args.differential_steps}
    jobs = {
        g: [
            (cell, job)
            for cell, job in make_jobs(g, args.seeds, steps[g], args.runs_dir, args.factors)
            if job.algo in args.algos
        ]
        for g in args.games
    }
    if not args.analyse_only:
        _runner.run_jobs(
            [j for g in args.games for _, j in jobs[g]],
            args.runs_dir / "logs",
            args.jobs,
            runs_per_process=args.runs_per_process,
        )
    rows = [row for g in args.games for row in measure(g, jobs[g], steps[g])]
    table = combined_table(rows)
    print()
    print(f"Ablation, {args.seeds} seeds per cell; steps: {steps}")
    print(table)
    png = args.results_dir / f"{NAME}.png"
    figure(rows, png)
    result = {
        "benchmark": NAME,
        "provenance": provenance(__file__, argv),
        "settings": {
            "games": args.games,
            "seeds": args.seeds,
            "steps": steps,
            "factors": {g: [[k, v, list(a)] for k, v, a in factors(g)] for g in args.games},
            "defaults": {g: TrainerConfig.for_env(g).to_dict() for g in args.games},
        },
        "rows": rows,
        "table": table,
        "figure": png.name,
    }
    _runner.write_json(args.results_dir / f"{NAME}.json", _runner.clean_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
