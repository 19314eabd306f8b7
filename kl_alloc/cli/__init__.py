"""The ``kl-alloc`` command line (also ``python -m kl_alloc``): one module per command, the
parser built from the registries (methods, environments and their options).

    kl-alloc demo                                  # HATRPO vs W vs G on the matrix game (~1 min)
    kl-alloc train --env matrix --algo hatrpo-w --seed 0 --out runs/matrix-w-0
    kl-alloc train --env my_pkg.envs:make_env --algo my_pkg.rules:MyAllocator --out runs/mine
    kl-alloc train --out runs/matrix-w-0 --resume  # continue a killed run with its own settings
    kl-alloc evaluate runs/matrix-w-0 --episodes 10
    kl-alloc export runs/matrix-w-0 policy.pt      # kl_alloc.load_policy("policy.pt"): torch only
    kl-alloc plot runs/bench/matrix --out plots/matrix
    kl-alloc config --env differential             # every --set key, its type and value

User errors (a bad value, a run directory that cannot be used, a file that cannot be read or
written) print one line, ``kl-alloc: error: ...``, and exit with status 2; ``--debug`` shows the
traceback as well.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kl_alloc.cli.common import CLIError, Formatter

logger = logging.getLogger("kl_alloc.cli")

#: the command modules, in --help order; each has add_parser(subparsers)
COMMANDS = ("train", "evaluate", "export", "plot", "demo", "config", "sweep", "report")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from kl_alloc import __version__

    parser = argparse.ArgumentParser(
        prog="kl-alloc",
        description=(
            "Adaptive KL trust-region allocation for multi-agent RL: train, evaluate and plot "
            "HATRPO (uniform split), HATRPO-W (water-filling), HATRPO-G (greedy) or your own rule."
        ),
        epilog="Run `kl-alloc COMMAND --help` for a command's options.",
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"kl_alloc {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not just its line"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"kl_alloc.cli.{name}_cmd").add_parser(sub)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # the trainer logs a debug line per iteration; numba is chatty at debug
        logging.getLogger("numba").setLevel(logging.WARNING)
    logging.getLogger("kl_alloc").setLevel(level if verbose else max(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    from kl_alloc.cli.common import user_error

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        again = getattr(args, "continue_with", None)
        print(f"interrupted{f': continue with `{again}`' if again else ''}", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        if args.debug:
            import traceback

            traceback.print_exc()
        parser.exit(2, f"kl-alloc: error: {message}\n")
    return 0


__all__ = ["CLIError", "build_parser", "main"]
