"""``kl-alloc sweep`` and ``kl-alloc report``: parsers and handlers, wired into kl_alloc.cli.

    kl-alloc sweep benchmarks/sweeps/eps_sensitivity.toml            # local worker processes
    kl-alloc sweep SWEEP.toml --address auto --retries 3              # an existing Ray cluster
    kl-alloc sweep SWEEP.toml --dry-run                               # list the trials only
    kl-alloc report runs/sweeps/eps_sensitivity --out results/eps     # table + figures

Both handlers return an exit status: 0 on success, 1 if some trial failed, 2 for a user error
(a bad sweep file, Ray missing, no runs found): the message names what is wrong. An interrupted
sweep (Ctrl-C, SIGTERM) stops its workers, prints the command that continues it and exits 130.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import textwrap
from pathlib import Path

logger = logging.getLogger("kl_alloc.sweep")


def _error(message: str) -> int:
    print(f"kl-alloc: error: {message}", file=sys.stderr)
    return 2


def continue_command(args: argparse.Namespace) -> str:
    """The ``kl-alloc sweep`` command that continues this one (re-running resumes)."""
    argv = ["kl-alloc", "sweep", args.sweep]
    for flag, value in (
        ("--out", args.out),
        ("--executor", args.executor),
        ("--address", args.address),
        ("--workers", args.workers),
        ("--retries", None if args.retries == 2 else args.retries),
        ("--timeout", args.timeout),
        ("--tasks", args.tasks),
        ("--methods", args.methods),
        ("--report", args.report),
    ):
        if value is not None:
            argv += [flag, str(value)]
    switches = (
        ("--no-report", args.no_report),
        ("--no-progress", args.no_progress),
        ("--tensorboard", args.tensorboard),
        ("--wandb", args.wandb),
    )
    argv += [flag for flag, on in switches if on]
    if args.wandb:
        for flag, value, default in (
            ("--wandb-project", args.wandb_project, "kl_alloc"),
            ("--wandb-entity", args.wandb_entity, None),
            ("--wandb-group", args.wandb_group, None),
        ):
            if value != default:
                argv += [flag, str(value)]
    return shlex.join(argv)


def cmd_sweep(args: argparse.Namespace) -> int:
    from kl_alloc.experiments.runner import Job, RayMissingError, job_state, run_sweep
    from kl_alloc.experiments.spec import SpecError, load_spec

    try:
        spec = load_spec(args.sweep, out=args.out)
    except SpecError as exc:
        return _error(str(exc))
    if args.workers is not None and args.workers < 1:
        return _error("--workers must be >= 1")
    if args.retries < 0:
        return _error("--retries must be >= 0")
    if args.timeout is not None and not args.timeout > 0:
        return _error("--timeout must be > 0 seconds")
    if args.tasks or args.methods:
        import fnmatch

        def keep(value: str, patterns: str | None) -> bool:
            return patterns is None or any(
                fnmatch.fnmatchcase(value, p.strip()) for p in patterns.split(",")
            )

        spec.trials = [
            t for t in spec.trials if keep(t.task, args.tasks) and keep(t.method, args.methods)
        ]
        if not spec.trials:
            return _error("--tasks/--methods select no trial")
    states = [job_state(Job(t.spec, t.run_dir))[0] for t in spec.trials]
    todo = sum(s != "done" for s in states)
    print(
        f"sweep {spec.name}: {len(spec.trials)} trials ({todo} to run, "
        f"{len(spec.trials) - todo} finished) -> {spec.out}"
    )
    if args.dry_run:
        for trial, state in zip(spec.trials, states, strict=True):
            print(f"  [{state:8s}] {trial.run_dir.relative_to(spec.out)}  steps={trial.steps}")
        return 0
    wandb = None
    if args.wandb:
        from kl_alloc.cli.common import wandb_options
        from kl_alloc.rl.callbacks import import_wandb

        try:
            import_wandb()  # said before any trial starts, not once per trial
        except ImportError as exc:
            return _error(str(exc))
        wandb = wandb_options(args)
    args.continue_with = continue_command(args)  # printed by kl_alloc.cli on Ctrl-C / SIGTERM
    try:
        result = run_sweep(
            spec,
            executor=args.executor,
            address=args.address,
            workers=args.workers,
            retries=args.retries,
            progress=not args.no_progress,
            timeout=args.timeout,
            tensorboard=args.tensorboard,
            wandb=wandb,
        )
    except RayMissingError as exc:
        return _error(str(exc))
    print(
        f"done {result.count('done')}, skipped {result.count('skipped')} (already finished), "
        f"failed {result.count('failed')} in {result.seconds:.0f} s; status: {spec.out}/sweep.json"
    )
    for f in result.failed:
        print(f"  FAILED {f['run_dir']}: {f['error']}", file=sys.stderr)
    if not args.no_report:
        from kl_alloc.analysis.report import make_report
        from kl_alloc.analysis.robust import has_rliable

        out = args.report or spec.report_out or spec.out / "report"
        opts = spec.report
        try:
            _, files = make_report(
                [spec.out],
                out,
                baseline=opts.get("baseline", "hatrpo"),
                threshold=opts.get("threshold"),
                resamples=int(opts.get("resamples", 10_000)),
                seed=int(opts.get("seed", 0)),
                title=f"Sweep {spec.name}",
                robust=has_rliable(),  # without the analysis extra: the plain report
            )
            print(f"report: {files[0]}")
        except ValueError as exc:  # e.g. every trial failed: nothing to aggregate
            print(f"no report: {exc}", file=sys.stderr)
    return 1 if result.failed else 0


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
        return _error(str(exc) + (" (or pass --no-robust)" if isinstance(exc, ImportError) else ""))
    if not args.quiet_table:
        print(files[0].read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def add_sweep_parser(subparsers, formatter_class=argparse.ArgumentDefaultsHelpFormatter):
    """Add ``sweep`` to an argparse sub-parser set (``kl_alloc.cli``)."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of trials (tasks x methods x seeds x config values)",
        description=textwrap.fill(
            "Run every trial of SWEEP.toml in its own worker process (one torch thread each; "
            "--executor ray or --address for Ray), each in its own run directory named from its "
            "parameters. Resumable: run the same command again: finished trials are skipped, "
            "killed ones resume from their checkpoint. A failing trial is reported and the others "
            "go on; a worker that dies is retried. Ctrl-C stops every worker and prints the "
            "command that continues the sweep. At the end a report (table + figures) is written. "
            "The file format is documented in kl_alloc/experiments/spec.py; examples in "
            "benchmarks/sweeps/. module:attr envs and methods must be importable by the workers.",
            88,
        ),
        formatter_class=formatter_class,
    )
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument(
        "--executor",
        choices=("local", "ray", "inline"),
        default=None,
        help="local worker processes, Ray tasks, or inline (one after another in this process); "
        "default: ray with --address, else local. On one machine prefer local: a SIGKILLed "
        "driver can leave a local Ray's agents running",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. auto or ray://host:10001); implies --executor ray",
    )
    p.add_argument(
        "--workers",
        "--num-cpus",
        dest="workers",
        type=int,
        default=None,
        help="trials at a time (local: default min(2, cores); a local Ray's CPUs)",
    )
    p.add_argument(
        "--retries", type=int, default=2, help="restarts of a trial whose worker process died"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds after which a running trial is killed and reported failed "
        "(default: sweep.timeout, else none)",
    )
    p.add_argument("--tasks", default=None, help="only these tasks (comma-separated glob patterns)")
    p.add_argument(
        "--methods", default=None, help="only these methods (comma-separated glob patterns)"
    )
    p.add_argument("--out", default=None, help="run root (overrides sweep.out)")
    p.add_argument("--report", default=None, help="report directory (default: sweep.report)")
    p.add_argument("--no-report", action="store_true", help="do not write a report at the end")
    p.add_argument("--dry-run", action="store_true", help="list the trials and their state")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from kl_alloc.cli.common import add_logging_arguments

    add_logging_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)
    return p


def add_report_parser(subparsers, formatter_class=argparse.ArgumentDefaultsHelpFormatter):
    """Add ``report`` to an argparse sub-parser set (``kl_alloc.cli``)."""
    p = subparsers.add_parser(
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
        formatter_class=formatter_class,
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m kl_alloc.experiments.commands``) until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="kl-alloc")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
