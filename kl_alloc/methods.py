"""The method registry: every place that lists methods (CLI choices, sweep validation,
analysis, plots, reports, benchmark scripts) derives from it.

    from kl_alloc.methods import get_method, available_methods
    get_method("hatrpo-w").make(config)          # -> a WaterFillAllocator for a TrainerConfig
    get_method("my_pkg.rules:MyAllocator")       # user code, no registration needed
    register_method(Method("my-rule", make=MyAllocator.from_config, label="Mine"))

A name resolves to, in order: a built-in or registered :class:`Method`; an entry point of the
``kl_alloc.methods`` group (a Method, an Allocator class or a factory); a ``module:attr`` spec
(same kinds). An allocator class is made with ``cls.from_config(config)`` if it has one, else
``cls()``; a plain function is called as ``factory(config)``. The run directory records the
name as given, so a run made with ``--algo my_pkg.rules:MyAllocator`` resumes with it.

Torch-free (labels and colours are read by the analysis, which must not import torch); the
allocator classes are imported only when a method is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kl_alloc.plugins import METHOD_GROUP, PluginError, is_spec, load_object, resolve

#: colours of methods without their own, cycled by position
EXTRA_COLORS = ("#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#64B5CD")


@dataclass(frozen=True)
class Method:
    """One allocation method: how to build its allocator and how to show it.

    Attributes:
        name: the key used on the command line, in sweep files and in run directories.
        make: ``make(config) -> Allocator`` for a :class:`~kl_alloc.rl.config.TrainerConfig`.
        label: display name in tables and legends (default: the name).
        color: matplotlib colour (default: one of :data:`EXTRA_COLORS`).
        fields: the ``TrainerConfig`` fields the method reads (``kl-alloc config`` groups them).
        has_signal: the allocator measures per-agent signals (utilities or probes), so wrappers
            that perturb signals (the noisy-utility sweep) apply to it.
        description: one line for ``--help``.
    """

    name: str
    make: Callable[[Any], Any]
    label: str = ""
    color: str = ""
    fields: tuple[str, ...] = ()
    has_signal: bool = False
    description: str = ""
    builtin: bool = field(default=False, compare=False)

    def display(self) -> str:
        return self.label or self.name


def _lazy(spec: str) -> Callable[[Any], Any]:
    """``make`` for a built-in allocator class named by its ``module:attr`` spec: built-ins are
    loaded exactly like user plug-ins, on first use (this module imports no RL code)."""

    def make(config: Any) -> Any:
        return load_object(spec, "method").from_config(config)

    make.__qualname__ = f"{spec}.from_config"
    return make


_BUILTIN = (
    Method(
        "hatrpo",
        _lazy("kl_alloc.rl.allocators:UniformAllocator"),
        label="HATRPO",
        color="#4C72B0",
        fields=("delta", "delta_total", "carry"),
        description="uniform split delta_i = delta_total / n, random order (the baseline)",
    ),
    Method(
        "hatrpo-w",
        _lazy("kl_alloc.rl.allocators:WaterFillAllocator"),
        label="HATRPO-W",
        color="#DD8452",
        fields=(
            "delta",
            "delta_total",
            "wf_floor",
            "delta_min",
            "delta_max",
            "utility",
            "carry",
        ),
        has_signal=True,
        description="KKT water-filling on q_i = g_i^T F_i^-1 g_i, order by allocation",
    ),
    Method(
        "hatrpo-g",
        _lazy("kl_alloc.rl.allocators:GreedyAllocator"),
        label="HATRPO-G",
        color="#55A868",
        fields=("delta", "delta_total", "delta_max", "greedy_eps", "rescore", "carry"),
        has_signal=True,
        description="greedy L_j / (D_j + eps) ranking of probe steps, re-scored after commits",
    ),
)

_REGISTRY: dict[str, Method] = {}
for _m in _BUILTIN:
    _REGISTRY[_m.name] = Method(**{**_m.__dict__, "builtin": True})


def register_method(method: Method, *, overwrite: bool = False) -> Method:
    """Add ``method`` to the registry (in this process; use an entry point or a
    ``module:attr`` name for runs that resume elsewhere)."""
    if not isinstance(method, Method):
        raise TypeError(f"method: expected a Method, got {type(method).__name__}")
    if is_spec(method.name):
        raise ValueError(f"method.name: {method.name!r} looks like a module:attr spec")
    if method.name in _REGISTRY and not overwrite:
        raise ValueError(f"method {method.name!r} is already registered (overwrite=True)")
    _REGISTRY[method.name] = method
    return method


def builtin_methods() -> list[str]:
    """The three methods of the paper, in display order."""
    return [m.name for m in _BUILTIN]


def available_methods() -> list[str]:
    """Registered names (built-ins first), then entry points."""
    names = list(_REGISTRY)
    from kl_alloc.plugins import entry_point_names

    return names + [n for n in entry_point_names(METHOD_GROUP) if n not in _REGISTRY]


def _as_method(name: str, obj: Any) -> Method:
    if isinstance(obj, Method):
        return obj if obj.name == name else Method(**{**obj.__dict__, "name": name})
    if isinstance(obj, type):
        if not callable(getattr(obj, "allocate", None)):
            raise PluginError(f"method {name!r}: class {obj.__name__} has no allocate() method")
        cls = obj

        def make(config: Any) -> Any:
            factory = getattr(cls, "from_config", None)
            return factory(config) if factory is not None else cls()

        return Method(
            name,
            make,
            label=getattr(cls, "label", "") or cls.__name__,
            has_signal=getattr(cls, "has_signal", False),
            description=(cls.__doc__ or "").strip().split("\n")[0],
        )
    if callable(obj):
        return Method(name, obj, label=getattr(obj, "__name__", name))
    raise PluginError(
        f"method {name!r}: expected a Method, an Allocator class or a factory(config), "
        f"got {type(obj).__name__}"
    )


def get_method(name: str) -> Method:
    """Resolve ``name`` (registered, entry point or ``module:attr``); ValueError if unknown."""
    if isinstance(name, Method):
        return name
    return resolve(
        str(name), _REGISTRY, METHOD_GROUP, _as_method, "method", available_methods(),
        "for your own allocator",
    )  # fmt: skip


# -- display helpers: never import user code (a report may read runs of methods that are not
#    importable here), so an unknown name is shown by its own text --------------------------------


def method_label(name: str) -> str:
    """Display name: the registered label, the attr of a ``module:attr`` spec, or the name."""
    m = _REGISTRY.get(name)
    if m is not None:
        return m.display()
    if is_spec(name):
        return name.partition(":")[2]
    return name


def method_color(name: str, index: int = 0) -> str:
    m = _REGISTRY.get(name)
    if m is not None and m.color:
        return m.color
    return EXTRA_COLORS[index % len(EXTRA_COLORS)]


def method_sort_key(name: str) -> tuple[int, str]:
    """Built-ins in the paper's order, then everything else alphabetically."""
    order = builtin_methods()
    return (order.index(name) if name in order else len(order), name)


def make_allocator(algo: str, config: Any) -> Any:
    """The allocator of a method name (registered, entry point or ``module:attr``), configured
    from a :class:`~kl_alloc.rl.config.TrainerConfig`."""
    method = get_method(algo)
    allocator = method.make(config)
    missing = [f for f in ("measure", "allocate") if not callable(getattr(allocator, f, None))]
    if missing:
        raise PluginError(
            f"method {method.name!r}: its factory returned {type(allocator).__name__}, not an "
            f"allocator (no {' or '.join(f + '()' for f in missing)}; subclass "
            "kl_alloc.rl.Allocator)"
        )
    return allocator
