"""``kl-alloc config``: every TrainerConfig key with its type, value and meaning."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from kl_alloc.cli.common import Formatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="list the TrainerConfig keys (for --set) with their types and values",
        formatter_class=Formatter,
    )
    p.add_argument("--env", default=None, help="show this env's preset values")
    p.add_argument("--preset", default="default", help="which of the env's presets")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from kl_alloc.config import build_config, config_types, field_docs
    from kl_alloc.methods import available_methods, get_method
    from kl_alloc.rl.config import TrainerConfig

    cfg = build_config(args.env, {}, preset=args.preset) if args.env else TrainerConfig()
    hints = config_types()
    docs = field_docs()
    users: dict[str, list[str]] = {}
    for name in available_methods():
        for f in get_method(name).fields:
            users.setdefault(f, []).append(name)
    title = f"the {args.env!r} preset {args.preset!r}" if args.env else "TrainerConfig()"
    print(f"{title}: set any of these with --set key=value\n")
    for f in dataclasses.fields(cfg):
        tp = hints[f.name]
        tname = getattr(tp, "__name__", None) if not typing.get_args(tp) else str(tp)
        value = getattr(cfg, f.name)
        used = f"  [{', '.join(users[f.name])}]" if f.name in users else ""
        print(f"  {f.name} ({tname or tp}) = {value!r}{used}")
        if f.name in docs:
            print(f"      {docs[f.name]}")
    if args.env:
        print(f"\n{env_keywords_line(args.env)}")
    return 0


def env_keywords_line(env: str) -> str:
    """What ``env_kwargs`` can hold for ``env``: its factory's own keywords."""
    from kl_alloc.envs.registry import WORKER_KEYWORDS, factory_keywords

    keywords = factory_keywords(env)
    if keywords is None:
        return f"env_kwargs of {env!r}: its factory's signature cannot be read"
    own = [k for k in keywords[0] if k not in WORKER_KEYWORDS]
    text = ", ".join(own) or "none"
    if keywords[1]:
        text += (
            ", and any other keyword its factory passes on"
            if own
            else "; any keyword its factory passes on"
        )
    return f"env_kwargs of {env!r}: {text} (set with --set 'env_kwargs={{\"name\": value}}')"
