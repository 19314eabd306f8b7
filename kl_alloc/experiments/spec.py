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
    env = "matrix"                       # a registered env (make_env)
    env_kwargs = { action_counts = [2, 3, 5, 8] }
    config = { delta = 0.01 }            # TrainerConfig overrides for this task only
    steps = 200_000
    seeds = 20                           # optional: this task's own seeds

    [methods.hatrpo]                     # or: methods = ["hatrpo", "hatrpo-w", "hatrpo-g"]
    [methods."hatrpo-g"]
    algo = "hatrpo-g"                    # default: the key (so aliases with own configs work)
    config = { rescore = true }
    grid = { greedy_eps = [1e-8, 1e-4, 1e-1] }   # swept for this method only

    [config]                             # TrainerConfig overrides for every trial
    [grid]                               # swept for every method: key = [values]

    [report]                             # defaults for the report (kl-alloc report options)
    baseline = "hatrpo"
    threshold = 0.99

Keys of ``config`` / ``grid`` are :class:`~kl_alloc.rl.TrainerConfig` fields, plus
``utility_noise``: multiplicative noise on the allocator's utility signals
(:class:`~kl_alloc.experiments.noise.NoisyUtilityAllocator`; 0 = the plain method). Precedence,
lowest first: the env preset, ``[config]``, the task's ``config``, the method's ``config``,
the swept values. Relative paths are relative to the current directory.

Every trial's run directory is ``OUT/TASK/METHOD[/KEY=VALUE_KEY=VALUE]/seed-S`` (swept keys
sorted): a name that only depends on the trial's parameters, so a rerun finds its runs again.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: grid / config keys that are not TrainerConfig fields
EXTRA_KEYS = ("utility_noise",)

_SWEEP_KEYS = ("name", "out", "seeds", "steps", "report", "timeout")
_TOP_KEYS = ("sweep", "tasks", "methods", "config", "grid", "report")
_TASK_KEYS = ("env", "env_kwargs", "config", "steps", "seeds")
_METHOD_KEYS = ("algo", "config", "grid")
_REPORT_KEYS = ("out", "baseline", "threshold", "resamples", "seed")
_ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")


class SpecError(ValueError):
    """A sweep file that cannot be used; the message names the file and the offending key."""


@dataclass
class Trial:
    """One training run of a sweep."""

    task: str
    method: str
    algo: str
    env: str
    seed: int
    steps: int
    params: dict[str, Any]
    """The swept values of this trial (its place in the grid; names its directory)."""
    overrides: dict[str, Any]
    """Every TrainerConfig override (preset excluded), ``env_kwargs`` included."""
    utility_noise: float
    run_dir: Path

    @property
    def name(self) -> str:
        return str(self.run_dir)

    def config(self):
        """The trial's :class:`~kl_alloc.rl.TrainerConfig`."""
        return build_config(self.env, self.overrides)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "method": self.method,
            "algo": self.algo,
            "env": self.env,
            "seed": self.seed,
            "steps": self.steps,
            "params": _jsonable(self.params),
            "overrides": _jsonable(self.overrides),
            "utility_noise": self.utility_noise,
            "run_dir": str(self.run_dir),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        hints = _config_hints()
        overrides = {k: _coerce(k, v, hints) for k, v in data["overrides"].items()}
        return cls(
            task=data["task"],
            method=data["method"],
            algo=data["algo"],
            env=data["env"],
            seed=int(data["seed"]),
            steps=int(data["steps"]),
            params=dict(data["params"]),
            overrides=overrides,
            utility_noise=float(data.get("utility_noise", 0.0)),
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


def _config_hints() -> dict[str, Any]:
    from kl_alloc.rl.config import TrainerConfig

    return typing.get_type_hints(TrainerConfig)


def _type_ok(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        elem = args[0] if args else Any
        return isinstance(value, list | tuple) and all(
            elem is Any or _type_ok(v, elem) for v in value
        )
    if origin is dict:
        return isinstance(value, dict)
    return True


def _coerce(key: str, value: Any, hints: dict[str, Any]) -> Any:
    """TOML values -> TrainerConfig values (lists -> tuples for tuple fields; ints -> floats)."""
    if key in EXTRA_KEYS:
        return float(value)
    tp = hints[key]
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


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


def _check_overrides(
    data: dict[str, Any], where: str, source: str, hints: dict[str, Any], grid: bool
) -> dict[str, Any]:
    import difflib

    data = _table(data, where, source)
    unknown = [k for k in data if k not in hints and k not in EXTRA_KEYS]
    if unknown:
        names = list(hints) + list(EXTRA_KEYS)
        hints_txt = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=2)
            hints_txt.append(f"{k!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise SpecError(
            f"{source}: unknown key(s) {', '.join(hints_txt)} in {where}: expected TrainerConfig "
            f"fields (see `kl-alloc config`) or {', '.join(EXTRA_KEYS)}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        values = value if grid else [value]
        if grid and (not isinstance(value, list) or not value):
            raise SpecError(f"{source}: {where}.{key} must be a non-empty list of values")
        for v in values:
            if key in EXTRA_KEYS:
                ok = isinstance(v, int | float) and not isinstance(v, bool)
                ok = ok and math.isfinite(v) and 0 <= v < 1
                if not ok:
                    raise SpecError(
                        f"{source}: {where}.{key}: expected a number in [0, 1), got {v!r}"
                    )
            elif not _type_ok(v, hints[key]):
                raise SpecError(f"{source}: {where}.{key}: {v!r} is not a valid {hints[key]} value")
        out[key] = [_coerce(key, v, hints) for v in values] if grid else _coerce(key, value, hints)
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


def build_config(env: str, overrides: dict[str, Any]):
    """The env's preset (if any) with ``overrides`` applied."""
    from kl_alloc.rl.config import PRESETS, TrainerConfig

    if env in PRESETS:
        return TrainerConfig.for_env(env, **overrides)
    return TrainerConfig(**overrides)


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
    from kl_alloc.envs.registry import available_envs

    hints = _config_hints()
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

    common = _check_overrides(data.get("config", {}), "[config]", source, hints, grid=False)
    common_grid = _check_overrides(data.get("grid", {}), "[grid]", source, hints, grid=True)

    tasks_raw = _table(data.get("tasks"), "[tasks]", source) if "tasks" in data else None
    if not tasks_raw:
        raise SpecError(f"{source}: no tasks: add at least one [tasks.NAME] table with env = ...")
    envs = available_envs()
    tasks: dict[str, dict[str, Any]] = {}
    for tname, t in tasks_raw.items():
        where = f"[tasks.{tname}]"
        t = _table(t, where, source)
        _check_keys(t, _TASK_KEYS, where, source)
        env = t.get("env")
        if env not in envs:
            raise SpecError(f"{source}: {where}.env: expected one of {envs}, got {env!r}")
        env_kwargs = _table(t.get("env_kwargs", {}), f"{where}.env_kwargs", source)
        config = _check_overrides(t.get("config", {}), f"{where}.config", source, hints, False)
        if "env_kwargs" in config and env_kwargs:
            raise SpecError(f"{source}: {where}: give env_kwargs once (not also in config)")
        steps = _steps(t["steps"], f"{where}.steps", source) if "steps" in t else default_steps
        if steps is None:
            raise SpecError(f"{source}: {where}: no steps (set sweep.steps or {where}.steps)")
        task_seeds = _seeds(t["seeds"], source, f"{where}.seeds") if "seeds" in t else seeds
        tasks[tname] = {
            "env": env,
            "env_kwargs": env_kwargs,
            "config": config,
            "steps": steps,
            "seeds": task_seeds,
        }

    methods_raw = data.get("methods", list(_ALGOS))
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
        if algo not in _ALGOS:
            raise SpecError(
                f"{source}: {where}.algo: expected one of {list(_ALGOS)}, got {algo!r}"
                + ("" if "algo" in m else " (set algo = ... for a method alias)")
            )
        config = _check_overrides(m.get("config", {}), f"{where}.config", source, hints, False)
        grid = _check_overrides(m.get("grid", {}), f"{where}.grid", source, hints, True)
        methods[mname] = {"algo": algo, "config": config, "grid": {**common_grid, **grid}}

    trials: list[Trial] = []
    seen: dict[Path, str] = {}
    for tname, task in tasks.items():
        for mname, method in methods.items():
            grid = method["grid"]
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                params = dict(zip(keys, combo, strict=True))
                fixed = {**common, **task["config"], **method["config"]}
                merged = {**fixed, **params}
                noise = float(merged.pop("utility_noise", 0.0))
                if task["env_kwargs"]:
                    merged["env_kwargs"] = dict(task["env_kwargs"])
                label = f"task {tname!r}, method {mname!r}" + (f", {params}" if params else "")
                try:
                    build_config(task["env"], merged)
                except (TypeError, ValueError) as exc:
                    raise SpecError(f"{source}: {label}: invalid config: {exc}") from None
                if noise > 0 and method["algo"] == "hatrpo":
                    raise SpecError(
                        f"{source}: {label}: utility_noise needs an allocator with a utility "
                        "signal (hatrpo-w or hatrpo-g); HATRPO's uniform split has none"
                    )
                for seed in task["seeds"]:
                    run_dir = trial_dir(out_dir, tname, mname, params, seed)
                    if run_dir in seen:
                        raise SpecError(
                            f"{source}: two trials map to the same directory {run_dir} "
                            f"({seen[run_dir]} and {label}); rename a task or method"
                        )
                    seen[run_dir] = label
                    trials.append(
                        Trial(
                            task=tname,
                            method=mname,
                            algo=method["algo"],
                            env=task["env"],
                            seed=seed,
                            steps=task["steps"],
                            params=dict(params),
                            overrides=dict(merged),
                            utility_noise=noise,
                            run_dir=run_dir,
                        )
                    )
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


def trial_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields in which two ``Trial.to_json()`` dicts differ (``steps``, ``run_dir`` and
    ``code`` excluded: a longer budget extends a run, a moved sweep keeps its runs)."""
    keys = sorted((set(a) | set(b)) - {"steps", "run_dir", "code"})
    return [k for k in keys if _jsonable(a.get(k)) != _jsonable(b.get(k))]


__all__ = [
    "EXTRA_KEYS",
    "SpecError",
    "SweepSpec",
    "Trial",
    "build_config",
    "format_value",
    "load_spec",
    "parse_spec",
    "trial_differences",
    "trial_dir",
]
