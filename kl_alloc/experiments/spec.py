"""The sweep file: a TOML description of a grid of training runs, parsed into trials.

A sweep is the product tasks x methods x seeds x (the values of the swept fields)::

    [sweep]
    name = "eps_sensitivity"             # default: the file's stem
    out = "runs/sweeps/eps_sensitivity"  # run directories go below it (default runs/sweeps/NAME)
    seeds = 10                           # 10 -> seeds 0..9; or a list, [0, 3, 7]
    steps = 200_000                      # env steps per trial (a task may override it)
    report = "benchmarks/results/sweeps/eps_sensitivity"   # optional: report written at the end
    timeout = 600                        # optional: kill a trial running longer (seconds)

    [tasks.matrix]                       # one table per task; the key names it
    env = "matrix"                       # a registered env, or "my_pkg.envs:make_env"
    preset = "default"                   # optional: which of the env's presets to start from
    env_kwargs = { action_counts = [2, 3, 5, 8] }
    config = { delta = 0.01 }            # TrainerConfig overrides for this task only
    steps = 200_000
    seeds = 20                           # optional: this task's own seeds

    [methods.hatrpo]                     # or: methods = ["hatrpo", "hatrpo-w", "hatrpo-g"]
    [methods."hatrpo-g"]
    algo = "hatrpo-g"                    # default: the key; "my_pkg.rules:MyAllocator" works
    config = { rescore = true }
    grid = { greedy_eps = [1e-8, 1e-4, 1e-1] }   # swept for this method only

    [config]                             # TrainerConfig overrides for every trial
    [grid]                               # swept for every method: key = [values]

    [report]                             # defaults for the report (kl-alloc report options)
    baseline = "hatrpo"
    threshold = 0.99

Keys of ``config`` / ``grid`` are :class:`~kl_alloc.rl.TrainerConfig` fields, plus
``utility_noise``: multiplicative noise on the allocator's utility signals
(:class:`~kl_alloc.rl.noise.NoisyUtilityAllocator`; 0 = the plain method). Precedence,
lowest first: the env preset, ``[config]``, the task's ``config``, the method's ``config``,
the swept values. Relative paths are relative to the current directory.

``env`` and ``algo`` may name user code as ``"package.module:attr"`` (no registration needed): the
module is imported when the file is read and again by every worker that runs a trial, so it
must be importable there (installed, or on ``PYTHONPATH``; with a Ray cluster, on every node).

Every trial's run directory is ``OUT/TASK/METHOD[/KEY=VALUE_KEY=VALUE]/seed-S`` (swept keys
sorted): a name that only depends on the trial's parameters, so a rerun finds its runs again.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kl_alloc.lifecycle import RunSpec

#: grid / config keys that are not TrainerConfig fields
EXTRA_KEYS = ("utility_noise",)

_SWEEP_KEYS = ("name", "out", "seeds", "steps", "report", "timeout")
_TOP_KEYS = ("sweep", "tasks", "methods", "config", "grid", "report")
_TASK_KEYS = ("env", "env_kwargs", "config", "steps", "seeds", "preset", "methods")
_METHOD_KEYS = ("algo", "config", "grid")
_REPORT_KEYS = ("out", "baseline", "threshold", "resamples", "seed")


class SpecError(ValueError):
    """A sweep file that cannot be used; the message names the file and the offending key."""


@dataclass
class Trial:
    """One training run of a sweep: a :class:`~kl_alloc.lifecycle.RunSpec` in its run
    directory, with its place in the grid (task, method, swept values)."""

    task: str
    method: str
    params: dict[str, Any]
    """The swept values of this trial (its place in the grid; names its directory)."""
    spec: RunSpec
    run_dir: Path

    @property
    def name(self) -> str:
        return str(self.run_dir)

    algo = property(lambda self: self.spec.algo)
    env = property(lambda self: self.spec.env)
    seed = property(lambda self: self.spec.seed)
    steps = property(lambda self: self.spec.steps)
    overrides = property(lambda self: self.spec.overrides)
    utility_noise = property(lambda self: self.spec.utility_noise)

    def config(self):
        """The trial's :class:`~kl_alloc.rl.TrainerConfig`."""
        return self.spec.config()

    def meta(self) -> dict[str, Any]:
        """What ``trial.json`` records besides the code (the report groups runs by it)."""
        return {
            "task": self.task,
            "method": self.method,
            "algo": self.algo,
            "params": _jsonable(self.params),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.meta(), "spec": self.spec.to_json(), "run_dir": str(self.run_dir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(
            task=data["task"],
            method=data["method"],
            params=dict(data["params"]),
            spec=RunSpec.from_json(data["spec"]),
            run_dir=Path(data["run_dir"]),
        )


@dataclass
class SweepSpec:
    """A parsed sweep file."""

    name: str
    out: Path
    trials: list[Trial]
    report_out: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    timeout: float | None = None
    """Seconds after which a running trial is killed and reported as failed (None: never)."""

    def summary(self) -> dict[str, Any]:
        tasks = sorted({t.task for t in self.trials})
        methods = sorted({t.method for t in self.trials})
        return {
            "name": self.name,
            "out": str(self.out),
            "trials": len(self.trials),
            "tasks": tasks,
            "methods": methods,
            "seeds": sorted({t.seed for t in self.trials}),
        }


# -- helpers -----------------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def _table(data: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: {where} must be a table, got {type(data).__name__}")
    return data


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise SpecError(
            f"{source}: unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; "
            f"allowed: {', '.join(allowed)}"
        )


def _check_overrides(data: Any, where: str, source: str, grid: bool) -> dict[str, Any]:
    """Typed overrides (``grid``: lists of values) through :mod:`kl_alloc.config`'s parser;
    ``utility_noise`` is a number in [0, 1)."""
    from kl_alloc.config import ConfigError, config_types, parse_overrides, parse_value

    data = dict(_table(data, where, source))
    hints = config_types()
    prefix = f"{source}: {where}."
    out: dict[str, Any] = {}
    for key, value in data.items():
        if grid and (not isinstance(value, list) or not value):
            raise SpecError(f"{source}: {where}.{key} must be a non-empty list of values")
        values = value if grid else [value]
        parsed = []
        for v in values:
            if key in EXTRA_KEYS:
                ok = isinstance(v, int | float) and not isinstance(v, bool)
                if not (ok and math.isfinite(v) and 0 <= v < 1):
                    raise SpecError(f"{prefix}{key}: expected a number in [0, 1), got {v!r}")
                parsed.append(float(v))
                continue
            try:
                if key in hints:
                    parsed.append(parse_value(key, v, hints[key], f"{prefix}{key}"))
                else:
                    parse_overrides({key: v}, source=prefix)  # raises, naming close keys
            except ConfigError as exc:
                raise SpecError(str(exc)) from None
        out[key] = parsed if grid else parsed[0]
    return out


def _seeds(value: Any, source: str, where: str = "sweep.seeds") -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"{source}: {where} must be >= 1, got {value}")
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        if len(set(value)) != len(value):
            raise SpecError(f"{source}: {where} has duplicates: {value}")
        return list(value)
    raise SpecError(f"{source}: {where}: expected a count or a list of seeds, got {value!r}")


def _steps(value: Any, where: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise SpecError(f"{source}: {where}: expected a positive integer, got {value!r}")


_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def format_value(value: Any) -> str:
    """A short, filesystem-safe rendering of a swept value (for directory names)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, list | tuple):
        text = "x".join(format_value(v) for v in value) or "none"
    elif value is None:
        text = "none"
    elif isinstance(value, dict):
        text = "_".join(f"{k}-{format_value(v)}" for k, v in sorted(value.items()))
    else:
        text = str(value)
    return _SAFE.sub("-", text)


def trial_dir(out: Path, task: str, method: str, params: dict[str, Any], seed: int) -> Path:
    parts = [format_value(task), format_value(method)]
    if params:
        parts.append("_".join(f"{k}={format_value(params[k])}" for k in sorted(params)))
    return out.joinpath(*parts, f"seed-{seed}")


# -- parsing -----------------------------------------------------------------------------------


def load_spec(path: str | Path, out: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep file (``out`` overrides ``sweep.out``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such sweep file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    return parse_spec(data, source=str(path), default_name=path.stem, out=out)


def parse_spec(
    data: dict[str, Any],
    source: str = "<sweep>",
    default_name: str = "sweep",
    out: str | Path | None = None,
) -> SweepSpec:
    """Validate a parsed sweep table and expand it into trials (see the module docstring)."""
    data = _table(data, "the file", source)
    _check_keys(data, _TOP_KEYS, "the top level", source)
    sweep = _table(data.get("sweep", {}), "[sweep]", source)
    _check_keys(sweep, _SWEEP_KEYS, "[sweep]", source)
    name = sweep.get("name", default_name)
    if not isinstance(name, str) or not name or _SAFE.search(name):
        raise SpecError(f"{source}: sweep.name must be a non-empty plain name, got {name!r}")
    out_dir = Path(out if out is not None else sweep.get("out", f"runs/sweeps/{name}"))
    out_dir = out_dir.expanduser().resolve()
    seeds = _seeds(sweep.get("seeds", 1), source)
    default_steps = _steps(sweep["steps"], "sweep.steps", source) if "steps" in sweep else None

    timeout = sweep.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise SpecError(f"{source}: sweep.timeout: expected seconds > 0, got {timeout!r}")
    report = _table(data.get("report", {}), "[report]", source)
    _check_keys(report, _REPORT_KEYS, "[report]", source)
    report_out = sweep.get("report", report.get("out"))
    if report_out is not None and not isinstance(report_out, str):
        raise SpecError(f"{source}: sweep.report must be a path, got {report_out!r}")

    common = _check_overrides(data.get("config", {}), "[config]", source, grid=False)
    common_grid = _check_overrides(data.get("grid", {}), "[grid]", source, grid=True)
    tasks = _parse_tasks(data, source, default_steps, seeds)
    methods = _parse_methods(data, source, common_grid)
    for tname, task in tasks.items():
        unknown = sorted(set(task["methods"] or ()) - set(methods))
        if unknown:
            raise SpecError(
                f"{source}: [tasks.{tname}].methods: {unknown} are not among the sweep's methods "
                f"({', '.join(methods)})"
            )

    trials: list[Trial] = []
    seen: dict[Path, str] = {}
    for tname, task in tasks.items():
        for mname, method in methods.items():
            if task["methods"] is not None and mname not in task["methods"]:
                continue
            grid = method["grid"]
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                params = dict(zip(keys, combo, strict=True))
                label = f"task {tname!r}, method {mname!r}" + (f", {params}" if params else "")
                base = _trial_spec(
                    task, method, {**common, **task["config"]}, params, label, source
                )
                for seed in task["seeds"]:
                    run_dir = trial_dir(out_dir, tname, mname, params, seed)
                    if run_dir in seen:
                        raise SpecError(
                            f"{source}: two trials map to the same directory {run_dir} "
                            f"({seen[run_dir]} and {label}); rename a task or method"
                        )
                    seen[run_dir] = label
                    spec = dataclasses.replace(base, seed=seed)
                    trials.append(Trial(tname, mname, dict(params), spec, run_dir))
    report_opts = {k: v for k, v in report.items() if k != "out"}
    return SweepSpec(
        name=name,
        out=out_dir,
        trials=trials,
        report_out=None if report_out is None else Path(report_out).expanduser().resolve(),
        report=report_opts,
        source=Path(source) if source != "<sweep>" else None,
        timeout=None if timeout is None else float(timeout),
    )


def _parse_tasks(
    data: dict[str, Any], source: str, default_steps: int | None, seeds: list[int]
) -> dict[str, dict[str, Any]]:
    from kl_alloc.envs.registry import check_env_kwargs, get_env_entry

    tasks_raw = _table(data.get("tasks"), "[tasks]", source) if "tasks" in data else None
    if not tasks_raw:
        raise SpecError(f"{source}: no tasks: add at least one [tasks.NAME] table with env = ...")
    tasks: dict[str, dict[str, Any]] = {}
    for tname, t in tasks_raw.items():
        where = f"[tasks.{tname}]"
        t = _table(t, where, source)
        _check_keys(t, _TASK_KEYS, where, source)
        env = t.get("env")
        if not isinstance(env, str):
            raise SpecError(f"{source}: {where}.env: expected an env name, got {env!r}")
        try:
            entry = get_env_entry(env)  # registered, entry point or module:attr (imported)
        except (ValueError, ImportError) as exc:
            raise SpecError(f"{source}: {where}.env: {exc}") from None
        env_kwargs = dict(_table(t.get("env_kwargs", {}), f"{where}.env_kwargs", source))
        try:
            check_env_kwargs(env, env_kwargs)
        except ValueError as exc:
            raise SpecError(f"{source}: {where}.env_kwargs: {exc}") from None
        preset = t.get("preset", "default")
        if not isinstance(preset, str):
            raise SpecError(f"{source}: {where}.preset: expected a preset name, got {preset!r}")
        try:
            entry.preset(preset, env_kwargs)
        except ValueError as exc:
            raise SpecError(f"{source}: {where}.{exc}") from None
        config = _check_overrides(t.get("config", {}), f"{where}.config", source, False)
        if "env_kwargs" in config and env_kwargs:
            raise SpecError(f"{source}: {where}: give env_kwargs once (not also in config)")
        if env_kwargs:
            config["env_kwargs"] = env_kwargs
        steps = _steps(t["steps"], f"{where}.steps", source) if "steps" in t else default_steps
        if steps is None:
            raise SpecError(f"{source}: {where}: no steps (set sweep.steps or {where}.steps)")
        task_seeds = _seeds(t["seeds"], source, f"{where}.seeds") if "seeds" in t else seeds
        only = t.get("methods")
        if only is not None and (
            not isinstance(only, list) or not only or not all(isinstance(m, str) for m in only)
        ):
            raise SpecError(f"{source}: {where}.methods: expected a list of method keys")
        tasks[tname] = {
            "methods": only,
            "env": env,
            "preset": preset,
            "config": config,
            "steps": steps,
            "seeds": task_seeds,
        }
    return tasks


def _parse_methods(
    data: dict[str, Any], source: str, common_grid: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    from kl_alloc.methods import builtin_methods, get_method

    methods_raw = data.get("methods", builtin_methods())
    if isinstance(methods_raw, list):
        if not methods_raw or not all(isinstance(m, str) for m in methods_raw):
            raise SpecError(f"{source}: methods: expected a list of method names or tables")
        methods_raw = {m: {} for m in methods_raw}
    methods_raw = _table(methods_raw, "[methods]", source)
    if not methods_raw:
        raise SpecError(f"{source}: methods is empty")
    methods: dict[str, dict[str, Any]] = {}
    for mname, m in methods_raw.items():
        where = f"[methods.{mname}]"
        m = _table(m, where, source)
        _check_keys(m, _METHOD_KEYS, where, source)
        algo = m.get("algo", mname)
        try:
            method = get_method(algo)  # registered, entry point or module:attr (imported)
        except (ValueError, ImportError) as exc:
            hint = "" if "algo" in m else " (set algo = ... for a method alias)"
            raise SpecError(f"{source}: {where}.algo: {exc}{hint}") from None
        config = _check_overrides(m.get("config", {}), f"{where}.config", source, False)
        grid = _check_overrides(m.get("grid", {}), f"{where}.grid", source, True)
        methods[mname] = {
            "algo": algo,
            "has_signal": method.has_signal,
            "config": config,
            "grid": {**common_grid, **grid},
        }
    return methods


def _trial_spec(
    task: dict[str, Any],
    method: dict[str, Any],
    fixed: dict[str, Any],
    params: dict[str, Any],
    label: str,
    source: str,
) -> RunSpec:
    """The RunSpec of one grid point (seed 0), its config built and checked once."""
    from kl_alloc.config import ConfigError, build_config

    merged = {**fixed, **method["config"], **params}
    noise = float(merged.pop("utility_noise", 0.0))
    try:
        build_config(task["env"], merged, preset=task["preset"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise SpecError(f"{source}: {label}: invalid config: {exc}") from None
    if noise > 0 and not method["has_signal"]:
        raise SpecError(
            f"{source}: {label}: utility_noise needs an allocator with a utility signal "
            f"(e.g. hatrpo-w or hatrpo-g); {method['algo']} has none"
        )
    return RunSpec(
        env=task["env"],
        algo=method["algo"],
        seed=0,
        steps=task["steps"],
        preset=task["preset"],
        overrides=merged,
        utility_noise=noise,
    )


__all__ = [
    "EXTRA_KEYS",
    "SpecError",
    "SweepSpec",
    "Trial",
    "format_value",
    "load_spec",
    "parse_spec",
    "trial_dir",
]
