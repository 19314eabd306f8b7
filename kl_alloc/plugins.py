"""User code plugs in by name: ``"package.module:attr"`` strings and entry points.

A registry (methods, environments) looks a name up in this order: its own built-in entries,
then the installed entry points of its group (``[project.entry-points."kl_alloc.methods"]``
in a user's ``pyproject.toml``), then a ``module:attr`` spec, imported on demand. The spec is
what a run directory records, so a run made with user code resumes and evaluates later (and
inside Ray workers) without any registration call.

Torch-free: importing this module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

#: entry-point groups a package can publish to
METHOD_GROUP = "kl_alloc.methods"
ENV_GROUP = "kl_alloc.envs"


class PluginError(ValueError):
    """A ``module:attr`` spec or entry point that cannot be loaded (the message says why)."""


def is_spec(name: str) -> bool:
    """True for ``"package.module:attr"`` (a colon with text on both sides)."""
    module, sep, attr = str(name).partition(":")
    return bool(sep and module.strip() and attr.strip())


def load_object(spec: str, what: str = "object") -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute.

    The current directory is importable (as for ``python -m``), so a user's ``my_rules.py``
    next to where they run ``kl-alloc`` is found. Errors say which part failed.
    """
    if not is_spec(spec):
        raise PluginError(f"{what} {spec!r}: expected 'package.module:attr'")
    module_name, _, attr_path = spec.partition(":")
    if "" not in sys.path:  # console scripts do not put the working directory on sys.path
        sys.path.insert(0, "")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{what} {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"{what} {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            raise PluginError(msg) from None
    return obj


def entry_point_names(group: str) -> list[str]:
    """Names published under an entry-point group (sorted)."""
    return sorted({ep.name for ep in metadata.entry_points(group=group)})


def load_entry_point(group: str, name: str) -> Any | None:
    """The object of entry point ``name`` in ``group``, or None if no package publishes it."""
    for ep in metadata.entry_points(group=group):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # a broken plug-in must say which one
                raise PluginError(f"entry point {group}:{name} ({ep.value}): {exc}") from exc
    return None


def resolve(
    name: str,
    registry: dict[str, Any],
    group: str,
    convert: Callable[[str, Any], Any],
    what: str,
    known: list[str],
    hint: str,
) -> Any:
    """The one lookup of every registry: a registered entry, else an entry point of ``group``,
    else a ``module:attr`` spec; ``convert(name, obj)`` turns a loaded object into an entry."""
    if name in registry:
        return registry[name]
    obj = load_entry_point(group, name)
    if obj is not None:
        return convert(name, obj)
    if is_spec(name):
        return convert(name, load_object(name, what))
    raise PluginError(
        f"unknown {what} {name!r}; known: {', '.join(known)}, or 'package.module:attr' {hint}"
    )
