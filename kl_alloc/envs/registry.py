"""The environment registry: one :class:`EnvEntry` per env, carrying everything a command needs
(its factory, default training steps, config presets and its own command-line options).

    env = make_env("matrix", num_envs=4000, seed=0, action_counts=(2, 3, 5, 8))
    env = make_env("my_pkg.envs:make_my_env", num_envs=8, seed=0)     # user code, no registration
    register(EnvEntry("my-env", "my_pkg.envs:make_my_env", default_steps=500_000))

A name resolves to a registered entry, then an entry point of the ``kl_alloc.envs`` group, then
a ``module:attr`` spec. For the last two the factory may carry the entry's fields as attributes
(``default_steps``, ``preset`` (a dict of TrainerConfig overrides), ``options``), or be an
:class:`EnvEntry` itself. Factories take ``num_envs`` and ``seed`` keywords plus their own.
:func:`make_env` records ``env.spec = {"name", "kwargs"}``: the run directory keeps it, so
evaluation, ``--resume`` and Ray workers rebuild the same env by the same name.

PettingZoo: a factory that does not take ``num_envs`` and returns a ``ParallelEnv`` (or a
callable returning one), e.g. ``make_env("my_pkg.envs:make_pz")``, is wrapped by
:class:`~kl_alloc.envs.pettingzoo.PettingZooEnv` (one factory call per copy); the
``"pettingzoo"`` entry does the same with the adapter's options
(``make_env("pettingzoo", env_fn="mpe2.simple_spread_v3:parallel_env", reward_reduce="sum")``).
The MPE2 tasks ``simple_spread_v3`` and ``simple_speaker_listener_v4`` are registered by name.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kl_alloc.envs.base import MultiAgentEnv
from kl_alloc.plugins import ENV_GROUP, PluginError, is_spec, load_object, resolve

EnvFactory = Callable[..., MultiAgentEnv]
#: a preset: TrainerConfig overrides, or a function of the env kwargs returning them, or the
#: lazy "package.module:attr" name of either
Preset = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | str

DEFAULT_STEPS = 1_000_000


@dataclass(frozen=True)
class EnvOption:
    """An env keyword exposed as a command-line option of ``train`` (``--scenario``)."""

    name: str  # the keyword (``agent_conf`` -> ``--agent-conf``)
    default: Any
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class EnvEntry:
    """A registered environment.

    Attributes:
        name: registry key (``--env NAME``).
        factory: a callable or a lazy ``"package.module:attr"`` string.
        default_steps: training budget (env steps) when ``--steps`` is not given.
        presets: named ``TrainerConfig`` overrides; ``"default"`` is used unless another is
            asked for (``--preset``, a sweep task's ``preset``).
        options: env keywords with their own ``train`` flags and defaults.
        description: one line for ``--help``.
        steps_for: optional ``env_kwargs -> steps``, the default budget of an entry whose
            default depends on its keywords (``pettingzoo``: the ``env_fn``'s own
            ``default_steps``); :meth:`target_steps` falls back to ``default_steps``.
    """

    name: str
    factory: EnvFactory | str
    default_steps: int = DEFAULT_STEPS
    presets: Mapping[str, Preset] = field(default_factory=dict)
    options: tuple[EnvOption, ...] = ()
    description: str = ""
    steps_for: Callable[[Mapping[str, Any]], int] | None = None

    def target_steps(self, env_kwargs: Mapping[str, Any] | None = None) -> int:
        """The training budget when ``--steps`` is not given, for these env keywords."""
        if self.steps_for is None:
            return self.default_steps
        kwargs = {o.name: o.default for o in self.options} | dict(env_kwargs or {})
        return int(self.steps_for(kwargs))

    def load_factory(self) -> EnvFactory:
        if isinstance(self.factory, str):
            return load_object(self.factory, f"env {self.name!r} factory")
        return self.factory

    def preset(self, name: str = "default", env_kwargs: Mapping[str, Any] | None = None) -> dict:
        if name not in self.presets:
            if name == "default":
                return {}
            known = ", ".join(sorted(self.presets)) or "none"
            raise ValueError(f"preset: env {self.name!r} has no preset {name!r} (has: {known})")
        p = self.presets[name]
        if isinstance(p, str):  # a lazy "package.module:attr" preset (keeps imports light)
            p = load_object(p, f"env {self.name!r} preset {name!r}")
        kwargs = {o.name: o.default for o in self.options} | dict(env_kwargs or {})
        return dict(p(kwargs) if callable(p) else p)

    def run_name(self, env_kwargs: Mapping[str, Any]) -> str:
        """A short name for default run directories (``mamujoco-Ant-2x4``)."""
        base = self.name.partition(":")[2] if is_spec(self.name) else self.name
        parts = [str(env_kwargs.get(o.name, o.default)) for o in self.options]
        return "-".join([base, *[p for p in parts if p and p != "None"]])


_REGISTRY: dict[str, EnvEntry] = {}


def register(
    name: str | EnvEntry, factory: EnvFactory | str | None = None, *, overwrite: bool = False
) -> EnvEntry:
    """Register an :class:`EnvEntry` (or ``name`` + ``factory`` with the entry's defaults)."""
    entry = name if isinstance(name, EnvEntry) else EnvEntry(str(name), factory)  # type: ignore[arg-type]
    if entry.factory is None:
        raise ValueError("factory: a callable or a lazy 'package.module:attr' string")
    if isinstance(entry.factory, str) and not is_spec(entry.factory):
        raise ValueError(f"factory: lazy entries look like 'package.module:attr', got {factory!r}")
    if is_spec(entry.name):
        raise ValueError(f"name: {entry.name!r} looks like a module:attr spec")
    if not overwrite and entry.name in _REGISTRY:
        raise ValueError(f"name: environment {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def available_envs() -> list[str]:
    """Registered names, then entry points (``module:attr`` specs work too)."""
    from kl_alloc.plugins import entry_point_names

    return sorted(_REGISTRY) + [n for n in entry_point_names(ENV_GROUP) if n not in _REGISTRY]


def registered_entries() -> list[EnvEntry]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def _entry_from_object(name: str, obj: Any) -> EnvEntry:
    if isinstance(obj, EnvEntry):
        return obj if obj.name == name else EnvEntry(**{**obj.__dict__, "name": name})
    if not callable(obj):
        raise PluginError(f"env {name!r}: expected a factory or an EnvEntry, got {obj!r}")
    preset = getattr(obj, "preset", None)
    return EnvEntry(
        name,
        obj,
        default_steps=int(getattr(obj, "default_steps", DEFAULT_STEPS)),
        presets={"default": preset} if preset is not None else {},
        options=tuple(getattr(obj, "options", ())),
        description=(getattr(obj, "__doc__", "") or "").strip().split("\n")[0],
    )


def get_env_entry(name: str) -> EnvEntry:
    """Resolve an env name (registered, entry point or ``module:attr``)."""
    return resolve(
        str(name), _REGISTRY, ENV_GROUP, _entry_from_object, "environment", available_envs(),
        "for your own env factory",
    )  # fmt: skip


def env_preset(
    name: str, preset: str = "default", env_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The TrainerConfig overrides of ``name``'s preset (``{}`` if it has none)."""
    return get_env_entry(name).preset(preset, env_kwargs)


#: factory keywords the env workers set (kl_alloc.envs.workers), never a user
WORKER_KEYWORDS = ("copy_offset",)


def factory_keywords(name: str) -> tuple[list[str], bool] | None:
    """``(the named keywords of the env's factory besides num_envs/seed, whether it also
    takes **kwargs)``, or None when its signature cannot be read."""
    factory = get_env_entry(name).load_factory()
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    named = [
        p.name
        for p in params
        if p.name not in ("self", "num_envs", "seed")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def accepted_kwargs(name: str) -> list[str] | None:
    """The env's own keywords (besides num_envs/seed), or None if it takes ``**kwargs``."""
    keywords = factory_keywords(name)
    return None if keywords is None or keywords[1] else keywords[0]


def check_env_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """ValueError naming the env and its keywords if ``kwargs`` has one it does not take."""
    accepted = accepted_kwargs(name)
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        own = [k for k in accepted if k not in WORKER_KEYWORDS]
        raise ValueError(
            f"env {name!r} does not take {', '.join(repr(k) for k in unknown)}; "
            f"it accepts: {', '.join(own) or 'nothing'}"
        )


def make_env(
    name: str, num_envs: int | None = None, seed: int | None = None, **kwargs: Any
) -> MultiAgentEnv:
    """Build an environment by name; ``num_envs``/``seed`` are passed on when given."""
    entry = get_env_entry(name)
    factory = entry.load_factory()
    full = dict(kwargs)
    if num_envs is not None:
        full["num_envs"] = int(num_envs)
    if seed is not None:
        full["seed"] = int(seed)
    offset = None
    if "copy_offset" in kwargs and _plain_factory(factory):  # the PettingZoo wrapper's keyword
        kwargs = dict(kwargs)
        offset = int(kwargs.pop("copy_offset"))
    check_env_kwargs(name, kwargs)
    env = _build(name, factory, kwargs, num_envs, seed, offset)
    env.spec = {"name": name, "kwargs": {k: v for k, v in full.items() if k != "seed"}}
    return env


def takes_num_envs(factory: Callable[..., Any]) -> bool:
    try:
        return "num_envs" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _plain_factory(factory: Callable[..., Any]) -> bool:
    """A factory that names neither ``num_envs`` nor ``copy_offset`` (a PettingZoo env's, or
    one forwarding ``**kwargs``): ``copy_offset`` goes to the wrapper, not to it."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "num_envs" not in params and "copy_offset" not in params


def _build(
    name: str,
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    num_envs: int | None,
    seed: int | None,
    copy_offset: int | None = None,
) -> MultiAgentEnv:
    """Call an env factory; a factory of PettingZoo ``ParallelEnv`` s is wrapped.

    A factory whose signature names ``num_envs`` is a kl_alloc factory: called with
    ``num_envs``/``seed``. Any other is first called with its own keywords only; if it returns
    a PettingZoo ``ParallelEnv`` (or a callable returning one), that env (callable) becomes the
    ``env_fn`` of a :class:`~kl_alloc.envs.pettingzoo.PettingZooEnv` with ``num_envs`` copies
    (the first one reused); if it returns a :class:`MultiAgentEnv`, it is called again with
    ``num_envs``/``seed`` as well (factories that forward ``**kwargs``). ``copy_offset`` (env
    worker processes) goes with ``num_envs``/``seed``, or to the PettingZoo wrapper."""
    extra = {k: int(v) for k, v in (("num_envs", num_envs), ("seed", seed)) if v is not None}
    if copy_offset is not None:
        extra["copy_offset"] = int(copy_offset)
    try:
        if takes_num_envs(factory):
            return factory(**kwargs, **extra)
        made = factory(**kwargs)
        if isinstance(made, MultiAgentEnv):
            return factory(**kwargs, **extra) if extra else made
    except TypeError as exc:  # a keyword of the wrong kind: say which env refused it
        raise ValueError(f"env {name!r}: {exc}") from None
    from kl_alloc.envs.pettingzoo import PettingZooEnv, is_parallel_env

    n = int(num_envs or 8)
    offset = int(copy_offset or 0)
    if is_parallel_env(made):
        return PettingZooEnv(lambda: factory(**kwargs), n, seed, first=made, copy_offset=offset)
    if callable(made):
        return PettingZooEnv(made, n, seed, copy_offset=offset)
    raise ValueError(
        f"env {name!r}: the factory returned {type(made).__name__}, not a MultiAgentEnv, a "
        "PettingZoo ParallelEnv or a callable returning one"
    )


def env_spec(env: MultiAgentEnv) -> dict[str, Any] | None:
    """The ``{"name", "kwargs"}`` an env was made with by :func:`make_env`, else ``None``."""
    spec = getattr(env, "spec", None)
    return dict(spec) if isinstance(spec, dict) and "name" in spec else None


# -- the built-in environments ------------------------------------------------------------------

register(
    EnvEntry(
        "matrix",
        "kl_alloc.envs.matrix_game:MatrixGame",
        default_steps=400_000,
        # experiments.md s.1: 4000 one-step plays per iteration; the critic is a learned constant
        presets={
            "default": dict(num_envs=4000, rollout_length=1, eval_episodes=1, checkpoint_every=25)
        },
        description="sparse heterogeneous matrix game (experiments.md s.1)",
    )
)
register(
    EnvEntry(
        "differential",
        "kl_alloc.envs.differential_game:DifferentialGame",
        default_steps=200_000,
        # experiments.md s.2: a few hundred one-step plays; initial mean 1.5, initial std 0.5
        presets={
            "default": dict(
                num_envs=400,
                rollout_length=1,
                init_action_mean=1.5,
                init_log_std=math.log(0.5),
                eval_episodes=1,
                checkpoint_every=25,
            )
        },
        description="two-peak differential game (experiments.md s.2)",
    )
)
#: the "mamujoco" entry's default preset: experiments.md s.3 / algorithm.md s.1, 20 copies x 200
#: steps, HATRPO reference defaults. Initial std exp(-1) ~ 0.37, as HARL's (sigmoid(1) * 0.5):
#: with std 1 the control cost swamps Ant's reward (-1 per step, episodes of ~60 steps) and
#: learning barely starts in 1M steps (measured: mean reward per step after 100k steps -0.91
#: with std 1, +0.59 with 0.37).
MAMUJOCO_PRESET = dict(
    num_envs=20,
    rollout_length=200,
    init_log_std=-1.0,
    normalize_obs=True,
    normalize_values=True,
    eval_every=25,
    eval_episodes=10,
    checkpoint_every=10,
)


def _mamujoco_harl(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """HATRPO as HARL runs it on this robot and partition (kl_alloc.envs.mamujoco_presets)."""
    from kl_alloc.envs.mamujoco_presets import harl_preset

    return {**MAMUJOCO_PRESET, **harl_preset(env_kwargs["scenario"], env_kwargs["agent_conf"])}


#: the "pettingzoo" entry's default preset: 16 copies x 50 steps per iteration, observation and
#: value normalisation (a factory gives its own as a ``preset`` attribute, which replaces it)
PETTINGZOO_PRESET = dict(
    num_envs=16,
    rollout_length=50,
    normalize_obs=True,
    normalize_values=True,
    eval_every=10,
    eval_episodes=8,
    checkpoint_every=10,
)


#: the pettingzoo entry's budget for a factory without default_steps of its own
PETTINGZOO_STEPS = 200_000


def _env_fn_attr(env_kwargs: Mapping[str, Any], attr: str) -> Any:
    """An attribute of the ``pettingzoo`` entry's ``env_fn`` (a factory or its
    ``module:attr`` spec), None when it has none or no factory is given."""
    env_fn = env_kwargs.get("env_fn")
    if isinstance(env_fn, str):
        env_fn = load_object(env_fn, "env_fn") if is_spec(env_fn) else None
    return None if env_fn is None else getattr(env_fn, attr, None)


def _pettingzoo_default(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pettingzoo`` entry's default preset: the ``preset`` attribute of the ``env_fn``
    factory when it has one (so ``--env pettingzoo --env-fn my_mod:make_env`` trains as
    ``--env my_mod:make_env`` does), else :data:`PETTINGZOO_PRESET`."""
    own = _env_fn_attr(env_kwargs, "preset")
    return dict(own) if own is not None else dict(PETTINGZOO_PRESET)


def _pettingzoo_steps(env_kwargs: Mapping[str, Any]) -> int:
    """The ``pettingzoo`` entry's default budget: the ``env_fn`` factory's ``default_steps``
    when it has one (as ``--env my_mod:make_env`` would), else 200k."""
    own = _env_fn_attr(env_kwargs, "default_steps")
    return int(own) if own is not None else PETTINGZOO_STEPS


register(
    EnvEntry(
        "pettingzoo",
        "kl_alloc.envs.pettingzoo:pettingzoo_env",
        default_steps=PETTINGZOO_STEPS,
        presets={"default": _pettingzoo_default},
        steps_for=_pettingzoo_steps,
        options=(
            EnvOption("env_fn", "", "PettingZoo ParallelEnv factory, package.module:attr"),
            EnvOption("reward_reduce", "mean", "team reward from the agents': mean, sum, first"),
        ),
        description="any PettingZoo ParallelEnv (--env-fn pkg.module:factory)",
    )
)
for _task, _steps in (("simple_spread_v3", 2_000_000), ("simple_speaker_listener_v4", 200_000)):
    register(
        EnvEntry(
            _task,
            f"kl_alloc.envs.mpe:{_task}",
            default_steps=_steps,
            presets={"default": "kl_alloc.envs.mpe:MPE_PRESET"},  # resolved in EnvEntry.preset
            description=f"MPE2 {_task} (PettingZoo multi-particle env; pip install kl_alloc[mpe])",
        )
    )

register(
    EnvEntry(
        "mamujoco",
        "kl_alloc.envs.mamujoco:MaMuJoCoEnv",
        default_steps=1_000_000,
        presets={"default": MAMUJOCO_PRESET, "harl": _mamujoco_harl},
        options=(
            EnvOption("scenario", "Ant", "MaMuJoCo robot (Ant, HalfCheetah, Walker2d, Hopper...)"),
            EnvOption("agent_conf", "2x4", "MaMuJoCo agent partition (2x4, 6x1, 2x3, 3x1...)"),
        ),
        description="Multi-Agent MuJoCo (Gymnasium-Robotics MaMuJoCo, MuJoCo v5 robots)",
    )
)


def _vmas_preset(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Per-scenario settings of the "vmas" entry (:data:`VMAS_PRESETS`), else the generic one."""
    scenario = str(env_kwargs.get("scenario", "balance"))
    return dict(VMAS_PRESETS.get(scenario, VMAS_PRESET))


#: the "vmas" entry's preset for scenarios without their own: one 100-step episode per copy per
#: iteration (2000 samples), observations and values normalised, initial std exp(-0.5) ~ 0.61
#: (actions are clipped to [-1, 1]: with std 1 a third of them would sit on the bounds)
VMAS_PRESET = dict(
    num_envs=20,
    rollout_length=100,
    init_log_std=-0.5,
    normalize_obs=True,
    normalize_values=True,
    eval_every=10,
    eval_episodes=20,
    checkpoint_every=10,
)
VMAS_PRESETS: dict[str, dict[str, Any]] = {
    "balance": VMAS_PRESET,
    "het_mass": VMAS_PRESET,
    # MPE-style 25-step episodes: one episode per copy per iteration (2500 samples)
    "simple_speaker_listener": {**VMAS_PRESET, "num_envs": 100, "rollout_length": 25},
}

register(
    EnvEntry(
        "vmas",
        "kl_alloc.envs.vmas:VMASEnv",
        default_steps=1_000_000,
        presets={"default": _vmas_preset},
        options=(EnvOption("scenario", "balance", "VMAS scenario (balance, het_mass, ...)"),),
        description="VMAS, the vectorized multi-agent simulator (all copies in one torch batch)",
    )
)
