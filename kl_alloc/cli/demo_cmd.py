"""``kl-alloc demo``: HATRPO vs HATRPO-W vs HATRPO-G on the sparse matrix game.

The demo writes only into its own directory: its runs (``<method>-<seed>``), its plots and a
``demo.json`` that lists them. A directory holding anything else, or plots that a previous demo
did not write, is refused; a previous demo's finished runs with the same settings are reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.cli.common import CLIError, Formatter, summary_line

logger = logging.getLogger("kl_alloc.cli")
MARKER = "demo.json"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="HATRPO vs HATRPO-W vs HATRPO-G on the sparse matrix game (about a minute)",
        description=(
            "Train the three methods on the sparse heterogeneous matrix game (K = 2, 3, 5, 8; "
            "4000 plays per iteration), print samples to 0.99 expected reward and the final "
            "expected reward per method, and write learning curves and allocation heatmaps. "
            "A rerun into the same --out reuses the runs it finished before; a directory that "
            "holds anything the demo did not write is refused."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", default="runs/demo", help="directory for the runs and the plots")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method")
    p.add_argument("--steps", type=int, default=200_000, help="env steps per run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)


def _check_out(out: Path, files: list[str]) -> None:
    """Refuse a directory holding anything a previous demo did not write (its demo.json lists
    what it wrote), then record what this demo will write, before it writes any of it."""
    names: set[str] = set()
    if out.exists():
        if not out.is_dir():
            raise CLIError(f"--out {out}: is a file; choose a directory")
        names = {p.name for p in out.iterdir()}
    ours: set[str] = set()
    if MARKER in names:
        try:
            ours = set(json.loads((out / MARKER).read_text()).get("files", [])) | {MARKER}
        except (OSError, ValueError):
            raise CLIError(
                f"{out / MARKER}: unreadable: restore it or choose another --out"
            ) from None
    foreign = sorted(names - ours)
    if foreign:
        raise CLIError(
            f"--out {out}: holds files the demo did not write ({', '.join(foreign[:4])}"
            f"{', ...' if len(foreign) > 4 else ''}): choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"files": sorted(ours | set(files))}) + "\n")


def run_demo(out: Path, seeds: int = 3, steps: int = 200_000, progress: bool = True) -> dict:
    """Train the three built-in methods on the matrix game (``seeds`` each, in this process),
    print the comparison table and write the plots into ``out``; returns the table's numbers."""
    from kl_alloc.lifecycle import RunSpec, open_trainer, plan
    from kl_alloc.methods import builtin_methods, method_label
    from kl_alloc.rl.callbacks import ProgressBar

    algos = builtin_methods()
    jobs = [(a, s, out / f"{a}-{s}") for a in algos for s in range(seeds)]
    plots = ["curves.png", "allocation.png"]  # what plot_runs writes for one env
    _check_out(out, [d.name for _, _, d in jobs] + plots)
    t_start = time.perf_counter()
    # one bar per run says it all: keep the trainer's per-run "starting" line out of the way
    trainer_log = logging.getLogger("kl_alloc.rl.trainer")
    level = trainer_log.level
    trainer_log.setLevel(max(level, logging.WARNING))
    try:
        for algo, seed, run_dir in jobs:
            spec = RunSpec(env="matrix", algo=algo, seed=seed, steps=steps)
            p = plan(run_dir, spec, resume=True)
            if p.action == "finished":
                continue
            trainer = open_trainer(p)
            bar = ProgressBar(
                steps, trainer.env_steps, f"{method_label(algo)} seed {seed}", enabled=progress
            )
            try:
                trainer.learn(steps, progress=False, callback=bar)
            finally:
                bar.close()
                trainer.close()
            if not progress:
                logger.info("%s", summary_line(trainer))
    finally:
        trainer_log.setLevel(level)
    summary = _report(out, jobs, algos, seeds, steps, time.perf_counter() - t_start)
    return summary


def _fmt_steps(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def _report(out: Path, jobs: list, algos: list[str], seeds: int, steps: int, elapsed: float):
    from kl_alloc.analysis import final_expected_reward, samples_to_reach, spread
    from kl_alloc.analysis.figures import plot_runs
    from kl_alloc.analysis.tables import format_table
    from kl_alloc.methods import method_label
    from kl_alloc.rundir import load_run

    rows, summary = [], {}
    base = None
    for algo in algos:
        runs = [load_run(d) for a, _, d in jobs if a == algo]
        hits = [samples_to_reach(r, 0.99) for r in runs]
        stats = spread(hits)
        final = np.array([final_expected_reward(r) for r in runs])
        # the first iteration carries one-off warm-up costs: leave it out when there are others
        spi = float(np.mean([np.mean(r.seconds_per_iter[1 if r.iteration.size > 1 else 0 :])
                             for r in runs]))  # fmt: skip
        if algo == "hatrpo":
            base = stats["median"]
        speedup = base / stats["median"] if base and stats["median"] else None
        summary[algo] = {
            "samples_to_0.99": hits,
            "median": stats["median"],
            "final": final.tolist(),
        }
        never = stats["n"] - stats["n_valid"]
        rows.append(
            [
                method_label(algo),
                f"{_fmt_steps(stats['median'])} "
                f"[{_fmt_steps(stats['min'])} - {_fmt_steps(stats['max'])}]"
                + (f" ({never} never)" if never else ""),
                "-" if speedup is None else f"{speedup:.2f}x",
                f"{final.mean():.4f} +- {final.std():.4f}",
                f"{spi * 1000:.1f}",
            ]
        )
    print()
    print(
        f"Sparse matrix game (K = 2, 3, 5, 8; 4000 plays per iteration): {seeds} seed(s) x "
        f"{steps:,} env steps per method, {elapsed:.0f} s"
    )
    headers = ["method", "samples to 0.99 (median [min - max])", "speed-up vs HATRPO",
               "final expected reward", "ms/iter"]  # fmt: skip
    print(format_table(headers, rows))
    written = plot_runs([out], str(out) + os.sep)
    marker = json.loads((out / MARKER).read_text())
    files = sorted(set(marker["files"]) | {Path(p).name for p in written})
    (out / MARKER).write_text(json.dumps({"files": files}) + "\n")
    print("\nplots: " + ", ".join(str(p) for p in written))
    print(f"runs:  {out}/<algo>-<seed>  (kl-alloc plot / evaluate read them)")
    return summary


def cmd_demo(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.steps < 1:
        raise CLIError("--seeds and --steps must be >= 1")
    args.continue_with = f"kl-alloc demo --out {args.out}"
    run_demo(Path(args.out), seeds=args.seeds, steps=args.steps, progress=not args.no_progress)
    return 0
