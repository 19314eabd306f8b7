"""``kl-alloc train``: one run, through the run lifecycle (:mod:`kl_alloc.lifecycle`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import (
    CLIError,
    Formatter,
    add_logging_arguments,
    summary_line,
    wandb_options,
)

EXAMPLES = """examples:
  kl-alloc train --env matrix --algo hatrpo-w --seed 0 --out runs/matrix-w-0
  kl-alloc train --env differential --algo hatrpo-g --set delta=0.02 --set rescore=false
  kl-alloc train --env mamujoco --scenario Ant --agent-conf 2x4 --algo hatrpo-w \\
      --steps 1000000 --seed 0 --out runs/ant-w-0 --tensorboard
  WANDB_MODE=offline kl-alloc train --env simple_spread_v3 --algo hatrpo-g --wandb
  kl-alloc train --env my_pkg.envs:make_env --algo my_pkg.rules:MyAllocator --out runs/mine
  kl-alloc train --out runs/ant-w-0 --resume       # its own settings and target steps"""


def _env_options() -> dict[str, list[Any]]:
    """Every registered env option: name -> [(env, EnvOption), ...]."""
    from kl_alloc.envs.registry import registered_entries

    out: dict[str, list[Any]] = {}
    for entry in registered_entries():
        for opt in entry.options:
            out.setdefault(opt.name, []).append((entry.name, opt))
    return out


def add_parser(sub: Any) -> None:
    from kl_alloc.envs.registry import available_envs, registered_entries
    from kl_alloc.methods import available_methods

    steps = ", ".join(
        f"{e.name} {e.default_steps:,}"
        + (" (or the --env-fn factory's default_steps)" if e.steps_for else "")
        for e in registered_entries()
    )
    p = sub.add_parser(
        "train",
        help="train one run (progress bar, checkpoints, resumable)",
        description=(
            "Train one method on one environment. The run directory holds spec.json (written "
            "before the first iteration), config.json, progress.jsonl (one line per iteration), "
            "eval.jsonl, checkpoint.pt and, once finished, done.json. An existing run is never "
            "overwritten unless you pass --force; --resume continues it with its own settings "
            "(from its checkpoint, or from its spec if it was killed before the first one)."
        ),
        epilog=f"default --steps per env: {steps}.\n{EXAMPLES}",
        formatter_class=Formatter,
    )
    p.add_argument(
        "--env",
        default=None,
        help=f"environment: {', '.join(available_envs())} or package.module:factory "
        "(required for a new run; a resumed run keeps its own)",
    )
    p.add_argument(
        "--algo",
        default=None,
        help=f"method: {', '.join(available_methods())} or package.module:Allocator "
        "(new run: default hatrpo)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (new run: default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="target env steps, counted from the run's start (new run: the env's default; "
        "--resume: the run's own)",
    )
    p.add_argument("--out", default=None, help="run directory (default runs/ENV-ALGO-SEED)")
    p.add_argument("--preset", default=None, help="the env's config preset (default: default)")
    for owners in _env_options().values():  # one flag may serve several envs: each its own help
        text = "; ".join(f"({env}) {opt.help} (default {opt.default})" for env, opt in owners)
        p.add_argument(owners[0][1].flag, default=None, help=text)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (from its checkpoint, or from its spec if it has none; "
        "a larger --steps extends a finished run)",
    )
    mode.add_argument(
        "--force", action="store_true", help="delete the run files in --out and start over"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=None,
        help="override a TrainerConfig field (repeatable), e.g. --set delta=0.02 "
        "--set hidden=32,32 --set delta_max=none",
    )
    p.add_argument(
        "--config", metavar="FILE", default=None, help="TOML or JSON file of overrides (--set wins)"
    )
    add_logging_arguments(p, sweep=False)
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (log every tenth of the run)"
    )
    p.set_defaults(func=cmd_train)


def _asked_spec(args: argparse.Namespace):
    """The spec the command line asks for, and which of its fields the user stated."""
    from kl_alloc.config import load_config_file, parse_set
    from kl_alloc.lifecycle import RunSpec

    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_config_file(args.config))
    overrides.update(parse_set(args.set or []))
    options = {
        name: getattr(args, name) for name in _env_options() if getattr(args, name) is not None
    }
    if options:
        if args.env is not None:
            from kl_alloc.envs.registry import get_env_entry

            own = {o.name for o in get_env_entry(args.env).options}
            stray = [n for n in options if n not in own]
            if stray:
                flags = ", ".join("--" + n.replace("_", "-") for n in stray)
                raise CLIError(f"{flags}: not an option of --env {args.env}")
        overrides["env_kwargs"] = {**overrides.get("env_kwargs", {}), **options}
    given = (
        tuple(
            k
            for k, v in (("env", args.env), ("algo", args.algo), ("seed", args.seed))
            if v is not None
        )
        + (("preset",) if args.preset else ())
        + ("overrides",)
    )
    spec = RunSpec(
        env=args.env or "?",
        algo=args.algo or "hatrpo",
        seed=args.seed or 0,
        steps=None,
        preset=args.preset or "default",
        overrides=overrides,
    )
    return spec, given


def _new_run_spec(spec):
    """Fill the env's option defaults into env_kwargs and check everything resolves."""
    from kl_alloc.envs.registry import get_env_entry
    from kl_alloc.methods import get_method

    entry = get_env_entry(spec.env)
    kwargs = {o.name: o.default for o in entry.options} | spec.env_kwargs
    if kwargs:
        spec.overrides["env_kwargs"] = kwargs
    get_method(spec.algo)
    spec.config()  # every bad key or value fails here, before anything is written
    return entry


def cmd_train(args: argparse.Namespace) -> int:
    from kl_alloc.lifecycle import open_trainer, plan
    from kl_alloc.methods import method_label

    if args.steps is not None and args.steps < 1:
        raise CLIError("--steps must be >= 1")
    spec, given = _asked_spec(args)
    if args.out is None:
        if args.resume:
            raise CLIError("--resume needs --out DIR (the run to continue)")
        if args.env is None:
            raise CLIError("--env is required for a new run (see `kl-alloc train --help`)")
        entry = _new_run_spec(spec)
        algo = method_label(spec.algo) if ":" in spec.algo else spec.algo
        args.out = f"runs/{entry.run_name(spec.env_kwargs)}-{algo}-{spec.seed}"
    out = Path(args.out)
    args.continue_with = f"kl-alloc train --out {out} --resume"
    if args.env is None:
        if not args.resume:
            from kl_alloc.lifecycle import inspect_run

            if inspect_run(out).kind in ("missing", "empty"):
                raise CLIError("--env is required for a new run (see `kl-alloc train --help`)")
        asked = spec if len(given) > 1 or spec.overrides else None
        p = plan(out, asked, resume=args.resume, force=args.force, steps=args.steps, given=given)
    else:
        _new_run_spec(spec)
        p = plan(out, spec, resume=args.resume, force=args.force, steps=args.steps, given=given)
    if p.action == "finished":
        shorter = args.steps is not None and args.steps < p.steps
        print(
            f"{out}: already finished ({p.steps} env steps); "
            + (
                f"--steps {args.steps} does not shorten it"
                if shorter
                else "a larger --steps extends it"
            )
        )
        return 0
    from kl_alloc.rl.callbacks import ProgressBar, chain, import_wandb, run_loggers

    if args.wandb:
        import_wandb()  # before training: a missing wandb is said at once
    trainer = open_trainer(p)
    progress = None
    loggers = []
    try:
        loggers = run_loggers(
            out,
            resumed_at=trainer.env_steps if p.action == "resume" else None,
            tensorboard=args.tensorboard,
            wandb=wandb_options(args) if args.wandb else None,
        )
        progress = ProgressBar(
            p.steps, trainer.env_steps, f"{trainer.algo} s{trainer.seed}",
            enabled=not args.no_progress,
        )  # fmt: skip
        trainer.learn(p.steps, progress=False, callback=chain(progress, *loggers))
    finally:
        if progress is not None:
            progress.close()
        for logger in loggers:
            logger.close(trainer)
        trainer.close()
    print(summary_line(trainer))
    print(f"run directory: {out}")
    return 0
