"""``kl-alloc export``: a run's policies as one file that loads with torch alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import CLIError, Formatter

EPILOG = """\
The file holds the policies' weights, the observation normaliser's statistics and the action
spaces (a torch.save of plain types: it loads with weights_only=True). Load it without the
env package, the trainer or the run directory:

    import kl_alloc
    policy = kl_alloc.load_policy("policy.pt")
    actions = policy.predict(obs, deterministic=True)

obs: a list with one array per agent, (obs_size,) or (B, obs_size) -> a list of actions as the
kl_alloc env takes them; or, for a PettingZoo env (MPE included), the env's {agent: obs} dict ->
{agent: action} for its step(). See kl_alloc.rl.export for the details.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's policies to one file for kl_alloc.load_policy",
        description="Export RUN's policies (from its checkpoint) to PATH: weights, observation "
        "statistics and action spaces, loadable with torch only.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a checkpoint.pt file)")
    p.add_argument("path", metavar="PATH", help="the policy file to write (e.g. policy.pt)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from kl_alloc.rl.export import export_checkpoint, load_policy

    run = Path(args.run)
    path = run if run.is_file() else run / "checkpoint.pt"
    if not path.exists():
        raise CLIError(f"{run}: no checkpoint.pt (is it a run directory that has checkpointed?)")
    out = export_checkpoint(path, args.path)
    policy = load_policy(out)  # read back: the file is whole and loads the way users load it
    meta = policy.meta
    print(
        f"{out}: {meta.get('algo')} policy of {args.run} at iteration {meta.get('iteration')} "
        f"({meta.get('env_steps')} env steps): {policy.n_agents} agents, "
        f"{out.stat().st_size / 1024:.0f} KiB"
    )
    return 0
