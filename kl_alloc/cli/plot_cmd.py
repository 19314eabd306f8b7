"""``kl-alloc plot``: figures from run directories (torch-free)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import CLIError, Formatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plot",
        help="learning curves, KL-allocation heatmaps, differential-game trajectories",
        description=(
            "Draw figures from run directories (directories are searched recursively for runs). "
            "Writes PREFIX_curves.png (per method: mean and +-1 std over seeds against env steps; "
            "expected reward on the games, evaluation return elsewhere), PREFIX_allocation.png "
            "(delta_i allocated, agent x iteration) and, for the differential game, "
            "PREFIX_trajectories.png. With several environments the env name is added to each "
            "file name."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_OR_DIR", help="run directories or parents")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE_PREFIX",
        help="output prefix; a directory (trailing /) puts curves.png etc. inside it "
        "(default: FIRST_ARG/plot)",
    )
    p.add_argument(
        "--heatmaps",
        choices=("first", "all", "none"),
        default="first",
        help="allocation heatmaps for the first seed per method, every run, or none",
    )
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from kl_alloc.analysis.figures import plot_runs

    prefix = args.out
    if prefix is None:
        first = Path(args.runs[0])
        prefix = str(first / "plot") if first.is_dir() else str(first.with_suffix("")) + "_plot"
    try:
        written = plot_runs(args.runs, prefix, heatmaps=args.heatmaps)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(f"plot: {exc}") from None
    for path in written:
        print(path)
    return 0
