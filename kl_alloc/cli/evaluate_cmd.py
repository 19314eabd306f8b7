"""``kl-alloc evaluate``: the deterministic policy of a run, on its own env (by its spec)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import CLIError, Formatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mean and spread of the deterministic policy's return",
        description="Load RUN's checkpoint and run its deterministic policy (mode / mean action).",
        formatter_class=Formatter,
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a checkpoint.pt file)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="evaluation env seed (default: derived from the run's seed and iteration)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kl_alloc.rl import Trainer

    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    run = Path(args.run)
    path = run if run.is_file() else run / "checkpoint.pt"
    if not path.exists():
        raise CLIError(f"{run}: no checkpoint.pt (is it a run directory that has checkpointed?)")
    trainer = Trainer.load(path)
    result = trainer.evaluate(args.episodes, seed=args.seed)
    if args.json:
        print(json.dumps({"run": str(args.run), "algo": trainer.algo, **result}))
        return 0
    name = trainer.env.spec["name"] if getattr(trainer.env, "spec", None) else "env"
    print(
        f"{args.run}: {trainer.algo} on {name}, seed {trainer.seed}, "
        f"iteration {trainer.iteration} ({trainer.env_steps} env steps)"
    )
    print(
        f"return over {result['episodes']} episodes (deterministic policy): "
        f"mean {result['return_mean']:.4f}, std {result['return_std']:.4f}"
    )
    if result.get("expected_reward") is not None:
        print(f"expected reward of the (stochastic) joint policy: {result['expected_reward']:.4f}")
    return 0
