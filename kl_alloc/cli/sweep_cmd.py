"""``kl-alloc sweep``: run a grid of trials from a sweep file.

    kl-alloc sweep benchmarks/sweeps/eps_sensitivity.toml            # local worker processes
    kl-alloc sweep SWEEP.toml --address auto --retries 3              # an existing Ray cluster
    kl-alloc sweep SWEEP.toml --dry-run                               # list the trials only

The handler returns an exit status: 0 on success, 1 if some trial failed, 2 for a user error
(a bad sweep file, Ray missing): the message names what is wrong. An interrupted sweep (Ctrl-C,
SIGTERM) stops its workers, prints the command that continues it and exits 130.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from typing import Any

from kl_alloc.cli.common import Formatter, add_logging_arguments, error_status, wandb_options


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
        return error_status(str(exc))
    if args.workers is not None and args.workers < 1:
        return error_status("--workers must be >= 1")
    if args.retries < 0:
        return error_status("--retries must be >= 0")
    if args.timeout is not None and not args.timeout > 0:
        return error_status("--timeout must be > 0 seconds")
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
            return error_status("--tasks/--methods select no trial")
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
        from kl_alloc.rl.callbacks import import_wandb

        try:
            import_wandb()  # said before any trial starts, not once per trial
        except ImportError as exc:
            return error_status(str(exc))
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
        return error_status(str(exc))
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


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
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
        formatter_class=Formatter,
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
    add_logging_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)
