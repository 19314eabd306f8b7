"""One typed path from user text to a :class:`~kl_alloc.rl.config.TrainerConfig`.

``--set key=value`` (strings), ``--config FILE.toml`` and sweep TOML (native TOML values) all go
through :func:`parse_value`, typed by the dataclass annotations, so every bad value is refused the
same way and the message names its key (and, for ``env_kwargs``, the env and the keywords it
accepts). Nothing is ``eval()``ed.

    overrides = parse_set(["delta=0.02", "hidden=32,32"])        # from the command line
    overrides |= load_config_file("cfg.toml")                     # same keys, TOML values
    config = build_config("matrix", overrides)                    # preset + overrides, checked

Torch-free.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kl_alloc.rl.config import TrainerConfig

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and the source."""


def config_types() -> dict[str, Any]:
    """``TrainerConfig`` field name -> resolved type annotation."""
    return typing.get_type_hints(TrainerConfig)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _number(value: Any, where: str, integer: bool) -> int | float:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool):
        raise _fail(where, f"expected {kind}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if (not integer or any(c in text for c in ".eE")) else int(text)
        except ValueError:
            raise _fail(where, f"expected {kind}, got {text!r}") from None
    if not isinstance(value, int | float):
        raise _fail(where, f"expected {kind}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise _fail(where, f"expected a finite number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise _fail(where, f"expected an integer, got {value!r}")
        return int(value)
    return float(value)


def parse_value(key: str, value: Any, tp: Any, where: str | None = None) -> Any:
    """``value`` (command-line text, or a TOML/JSON value) as a value of type ``tp``.

    Text: numbers, ``true``/``false``, ``none`` for optional fields, ``64,64`` for tuples,
    JSON for dicts. Native values: checked against ``tp`` (lists become tuples, ints floats).
    """
    where = where or key
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in _NONE)
        ):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise _fail(where, f"cannot parse a value of type {tp}")
        return parse_value(key, value, inner[0], where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _fail(where, f"expected a boolean (true/false), got {value!r}")
    if tp is int or tp is float:
        return _number(value, where, integer=tp is int)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            body = value.strip().strip("()[]").strip()
            value = [p.strip() for p in body.split(",") if p.strip()] if body else []
        if not isinstance(value, list | tuple):
            raise _fail(where, f"expected a list, got {type(value).__name__} {value!r}")
        elem = args[0] if args else str
        return tuple(parse_value(key, v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise _fail(where, f"expected a JSON object, e.g. '{{\"a\": 1}}' ({exc})") from None
        if not isinstance(value, dict):
            raise _fail(where, f"expected a table / JSON object, got {value!r}")
        return dict(value)
    raise _fail(where, f"fields of type {tp} cannot be set from text")


def _unknown_key(key: str, known: Iterable[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{source}{key}: unknown config key{hint} (`kl-alloc config` lists them)")


def parse_overrides(data: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """Typed ``TrainerConfig`` overrides from a mapping of text or native values.

    ``source`` prefixes every message (``"--config cfg.toml: "``, ``"sweep.toml: tasks.x."``).
    """
    hints = config_types()
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).strip().replace("-", "_")
        if key not in hints:
            raise _unknown_key(key, hints, source)
        out[key] = parse_value(key, value, hints[key], f"{source}{key}")
    return out


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """``["delta=0.02", "hidden=32,32"]`` -> ``{"delta": 0.02, "hidden": (32, 32)}``."""
    data: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        data[key] = text
    return parse_overrides(data, source="--set ")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Overrides from a TOML (or ``.json``) file of ``key = value`` pairs."""
    path = Path(path)
    source = f"--config {path}: "
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of key = value pairs")
    return parse_overrides(data, source=source)


def build_config(
    env: str,
    overrides: Mapping[str, Any] | None = None,
    preset: str = "default",
    source: str = "",
) -> TrainerConfig:
    """The env's preset with ``overrides`` applied and checked (``env_kwargs`` against the
    keywords the env accepts). Raises :class:`ConfigError` naming the key."""
    from kl_alloc.envs.registry import check_env_kwargs, env_preset

    overrides = dict(overrides or {})
    try:
        base = env_preset(env, preset, overrides.get("env_kwargs"))
    except ValueError as exc:
        raise ConfigError(f"{source}{exc}") from None
    merged = {**base, **overrides}
    if "env_kwargs" in merged:
        merged["env_kwargs"] = dict(merged["env_kwargs"])
        try:
            check_env_kwargs(env, merged["env_kwargs"])
        except ValueError as exc:
            raise ConfigError(f"{source}env_kwargs: {exc}") from None
    try:
        return TrainerConfig.from_dict(merged)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}{exc}") from None


def field_docs() -> dict[str, str]:
    """The attribute docstrings of ``TrainerConfig`` (the string under each field)."""
    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(TrainerConfig))
    except (OSError, TypeError):
        return docs
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainerConfig)]
