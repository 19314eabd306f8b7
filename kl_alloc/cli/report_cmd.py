"""``kl-alloc report``: the comparison table and figures of run directories.

    kl-alloc report runs/sweeps/eps_sensitivity --out results/eps     # table + figures

Exit status 0 on success, 2 for a user error (no runs found, rliable missing for the robust
metrics): the message names what is wrong.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import Formatter, error_status


def cmd_report(args: argparse.Namespace) -> int:
    from kl_alloc.analysis.report import make_report

    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    try:
        report, files = make_report(
            args.runs,
            out,
            baseline=args.baseline,
            threshold=args.threshold,
            resamples=args.resamples,
            seed=args.seed,
            heatmaps=not args.no_heatmaps,
            title=args.title or "",
            include_unfinished=args.include_unfinished,
            fraction=args.fraction,
            common_steps=args.at_steps,
            robust=not args.no_robust,
            aggregate_tasks=args.aggregate_tasks.split(",") if args.aggregate_tasks else None,
        )
    except (FileNotFoundError, ValueError, ImportError) as exc:
        hint = " (or pass --no-robust)" if isinstance(exc, ImportError) else ""
        return error_status(str(exc) + hint)
    if not args.quiet_table:
        print(files[0].read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="comparison table (bootstrap CIs, vs HATRPO) and figures from run directories",
        description=textwrap.fill(
            "Aggregate run directories (searched recursively) grouped by task, method and swept "
            "fields: final expected reward / return with 95% bootstrap intervals, improvement "
            "and variance ratio against the baseline, samples to a threshold, seconds per "
            "iteration and the solver's share; learning curves, KL-allocation heatmaps, "
            "parameter and agent-count plots. Writes OUT/report.md, report.json and PNGs.",
            88,
        ),
        formatter_class=Formatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUNS", help="run directories or their parents")
    p.add_argument("--out", default=None, help="output directory (default: FIRST_RUNS/report)")
    p.add_argument("--baseline", default="hatrpo", help="method the others are compared with")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="reward threshold for samples-to-threshold (default: 0.99 on the matrix game)",
    )
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--no-heatmaps", action="store_true", help="skip the allocation heatmaps")
    p.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also aggregate runs without done.json (as far as they got)",
    )
    p.add_argument(
        "--at-steps",
        type=float,
        default=None,
        metavar="N",
        help="compare every run that reached N env steps (finished or not) at N",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.1,
        help="final score of a run: mean of its evaluations over this last share of training",
    )
    p.add_argument(
        "--no-robust",
        action="store_true",
        help="skip IQM, probability of improvement and performance profiles (no rliable)",
    )
    p.add_argument(
        "--aggregate-tasks",
        default=None,
        metavar="T1,T2",
        help="tasks of the aggregate across tasks (default: all)",
    )
    p.add_argument("--quiet-table", action="store_true", help="do not print the Markdown report")
    p.set_defaults(func=cmd_report)
