"""How the joint KL budget is split across agents, and in which order they update
(algorithm.md sections 2 and 4).

The sequential update (:mod:`kl_alloc.rl.update`) runs, per iteration, rounds of

    signals    = allocator.measure(context)      # measure: ask for what the rule needs
    allocation = allocator.allocate(signals)     # allocate: order and radii
    commit allocation.committed, in order        # commit: one trust-region step per agent

An allocator is a small object with two methods and one attribute:

- ``measure(context) -> AllocationSignals``: what the rule needs, at the current M, for the
  agents ``context.candidates``. The context (:class:`~kl_alloc.rl.update.UpdateContext`)
  offers ``context.utility(i)`` (q_i = g_i^T F_i^-1 g_i), ``context.gradient(i)`` (g_i),
  ``context.probe(i, radius)`` (a tentative trust-region step: its ``actual_improvement``,
  ``kl`` and ``accepted``; parameters restored; committed as is later if it fits the radius),
  ``context.budget`` (KL budget left), ``context.n_agents``, ``context.rng``, and
  ``context.signals(**per_agent_arrays)`` to build the result. The default measures nothing
  (``context.signals()``): a rule that only implements ``allocate`` (a fixed split) works.
  Measured ``utility`` / ``improvement`` / ``divergence`` arrays are logged per agent.
- ``allocate(signals) -> Allocation`` (or the plain tuple ``(order, deltas)``): ``order`` lists
  the agents to update (agents left out keep their parameters and leave M unchanged);
  ``deltas`` has one KL radius per agent (``n_agents`` entries). ``Allocation.commit = k``
  commits only the first k agents of the order this round, and ``Allocation.remaining`` lists
  the agents to measure and allocate again afterwards, against the new M and the budget left
  (HATRPO-G re-scoring); by default the whole order is committed and the iteration ends.
  :func:`checked_allocation` checks the result first (:class:`AllocationError` if the update
  cannot commit it).
- ``carry_leftover``: budget an agent leaves unused (its line search stopped below its radius,
  or found nothing) flows to the next agent committed (see :class:`BudgetTracker`). Every
  allocator takes it; ``TrainerConfig.carry`` overrides each method's own default.

To plug in a new rule, subclass :class:`Allocator` (override ``allocate``, and ``measure`` if it
needs a signal) and pass it to the Trainer, or name it as ``--algo my_pkg.rules:MyAllocator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kl_alloc import greedy_allocate, uniform_allocate, water_fill


@dataclass
class AllocationSignals:
    """What the allocator sees. Per-agent arrays have length ``n_agents``; only the entries of
    ``candidates`` are meaningful (NaN elsewhere)."""

    candidates: np.ndarray  # agents still to be updated this iteration, ascending
    n_agents: int
    budget: float  # KL budget still available
    rng: np.random.Generator  # for random orders (seeded, checkpointed by the trainer)
    utility: np.ndarray | None = None  # q_i (HATRPO-W)
    improvement: np.ndarray | None = None  # probe L_j (HATRPO-G)
    divergence: np.ndarray | None = None  # probe D_j (HATRPO-G)


@dataclass
class Allocation:
    """What ``allocate`` decided. Unpacks as ``order, deltas`` like the plain tuple."""

    order: np.ndarray  # agents to update, in order
    deltas: np.ndarray  # KL radius per agent (n_agents entries)
    commit: int | None = None  # commit only the first ``commit`` agents this round (None: all)
    remaining: Sequence[int] | None = None  # measure + allocate again for these (None: done)

    @property
    def committed(self) -> list[int]:
        order = [int(i) for i in self.order]
        return order if self.commit is None else order[: self.commit]

    def __iter__(self):
        return iter((self.order, self.deltas))

    @classmethod
    def of(cls, result: Allocation | tuple[np.ndarray, np.ndarray]) -> Allocation:
        return result if isinstance(result, Allocation) else cls(*result)


class AllocationError(ValueError):
    """An allocator's ``allocate`` returned what the update cannot commit: the message names the
    allocator and the problem."""


def checked_allocation(result, signals: AllocationSignals, allocator) -> Allocation:
    """``result`` of ``allocator.allocate(signals)`` as an :class:`Allocation`, after checking
    it: ``order`` distinct agents among ``signals.candidates`` (agents already updated this
    iteration are not), ``deltas`` ``n_agents`` entries, finite and >= 0 for the agents
    committed, ``commit`` None or >= 0, ``remaining`` candidates not committed. Raises
    :class:`AllocationError`. Returns ``result`` itself when it is an Allocation."""
    who = f"{type(allocator).__name__}.allocate"
    if not (isinstance(result, Allocation) or (isinstance(result, tuple) and len(result) == 2)):
        raise AllocationError(
            f"{who} returned {type(result).__name__}; expected an Allocation or a tuple "
            "(order, deltas)"
        )
    alloc = Allocation.of(result)

    def fail(what: str) -> AllocationError:
        return AllocationError(f"{who}: {what}")

    n = signals.n_agents
    cand = {int(c) for c in signals.candidates}
    order = np.asarray(alloc.order)
    if order.ndim != 1 or (order.size and not np.issubdtype(order.dtype, np.integer)):
        raise fail(f"order must be a 1-D sequence of agent indices, got {alloc.order!r}")
    agents = [int(i) for i in order]
    if len(set(agents)) != len(agents):
        raise fail(f"order {agents} lists an agent twice")
    if stray := [i for i in agents if i not in cand]:
        raise fail(
            f"order names agent(s) {stray} that are not candidates this round {sorted(cand)} "
            f"(n_agents = {n}; an agent already updated this iteration is not one)"
        )
    try:
        deltas = np.asarray(alloc.deltas, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(f"deltas must be numbers, got {alloc.deltas!r}") from None
    if deltas.shape != (n,):
        raise fail(f"deltas must have one entry per agent, shape ({n},), got {deltas.shape}")
    # commit = k takes the first k of the order, fewer when it is shorter (HATRPO-G asks for
    # 1 of an empty order when no probe gained anything: the iteration then ends)
    if alloc.commit is not None and not (
        isinstance(alloc.commit, int | np.integer) and alloc.commit >= 0
    ):
        raise fail(f"commit must be None or an int >= 0, got {alloc.commit!r}")
    committed = alloc.committed
    ok = np.isfinite(deltas) & (deltas >= 0)
    bad = [(i, float(deltas[i])) for i in committed if not ok[i]]
    if bad:
        raise fail(f"the radius of every committed agent must be finite and >= 0, got {bad}")
    if alloc.remaining is not None:
        rest = [int(i) for i in alloc.remaining]
        if len(set(rest)) != len(rest) or not set(rest) <= cand - set(committed):
            raise fail(
                f"remaining {rest} must list distinct candidates {sorted(cand)} not committed "
                f"this round {committed}"
            )
    return alloc


def _carry(config, default: bool) -> bool:
    """The config's ``carry`` (None = the method's ``default``)."""
    carry = getattr(config, "carry", None)
    return default if carry is None else bool(carry)


class Allocator:
    """Base class: see the module docstring for the protocol."""

    name = "base"
    carry_leftover = False
    #: the sequential update that runs this allocator (None: the TRPO
    #: :class:`~kl_alloc.rl.update.SequentialUpdate`); a sibling algorithm names its own
    #: subclass here, so ``--algo pkg.mod:MyAllocator`` brings its update along
    update_class = None

    @classmethod
    def from_config(cls, config) -> Allocator:
        """Build from a :class:`~kl_alloc.rl.config.TrainerConfig` (override to read fields);
        the base sets ``carry_leftover`` from ``config.carry`` when that is not None."""
        allocator = cls()
        allocator.carry_leftover = _carry(config, allocator.carry_leftover)
        return allocator

    def measure(self, context) -> AllocationSignals:
        """The signals ``allocate`` needs for ``context.candidates`` (default: none)."""
        return context.signals()

    def allocate(self, signals: AllocationSignals) -> Allocation | tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class UniformAllocator(Allocator):
    """HATRPO: a random order and delta_i = budget / n for everyone. Measures nothing. Leftover
    is NOT carried by default, so this is the published HATRPO baseline (each agent's own
    KL <= delta); ``carry_leftover=True`` is the carry-over control."""

    name = "uniform"

    def __init__(self, carry_leftover: bool = False) -> None:
        self.carry_leftover = bool(carry_leftover)

    @classmethod
    def from_config(cls, config) -> UniformAllocator:
        return cls(carry_leftover=_carry(config, False))

    def allocate(self, signals: AllocationSignals) -> Allocation:
        cand = signals.candidates
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = uniform_allocate(len(cand), signals.budget).delta
        return Allocation(signals.rng.permutation(cand), deltas)


def _natural_gradient(context, i: int) -> float:
    return context.utility(i)


def _grad_norm(context, i: int) -> float:
    g = context.gradient(i)
    return float(g.dot(g))


class WaterFillAllocator(Allocator):
    """HATRPO-W: measures u_i per candidate (``utility="natural_gradient"``: q_i = g_i^T F_i^-1
    g_i; ``"grad_norm"``: ||g_i||^2), then w_i = u_i / sum_j u_j, delta = water_fill(w, budget,
    floors=floor, lower=delta_min, upper=delta_max); order by descending delta_i; zero-delta
    agents skipped; the whole order is committed.

    With floor = 0 and no bounds, delta_i = budget * q_i / sum q: the maximiser of the TRPO
    model's predicted improvement sum_i sqrt(2 delta_i q_i) under sum_i delta_i <= budget.
    """

    name = "water_fill"
    UTILITIES = {"natural_gradient": _natural_gradient, "grad_norm": _grad_norm}

    def __init__(
        self,
        floor: float = 0.0,
        delta_min: float = 0.0,
        delta_max: float | None = None,
        carry_leftover: bool = True,
        method: str = "exact",
        utility: str = "natural_gradient",
    ) -> None:
        if utility not in self.UTILITIES:
            raise ValueError(f"utility: expected one of {sorted(self.UTILITIES)}, got {utility!r}")
        self.floor, self.delta_min = float(floor), float(delta_min)
        self.delta_max = delta_max
        self.carry_leftover = bool(carry_leftover)
        self.method = method
        self.utility = utility

    @classmethod
    def from_config(cls, config) -> WaterFillAllocator:
        return cls(
            floor=config.wf_floor,
            delta_min=config.delta_min,
            delta_max=config.delta_max,
            carry_leftover=_carry(config, True),
            utility=config.utility,
        )

    def measure(self, context) -> AllocationSignals:
        measure = self.UTILITIES[self.utility]
        utility = np.full(context.n_agents, np.nan)
        for i in context.candidates:
            utility[i] = measure(context, i)
        return context.signals(utility=utility)

    def allocate(self, signals: AllocationSignals) -> Allocation:
        cand = signals.candidates
        q = np.maximum(np.asarray(signals.utility, dtype=np.float64)[cand], 0.0)
        total_q = q.sum()
        w = q / total_q if total_q > 0 and np.isfinite(total_q) else np.zeros_like(q)
        upper = np.inf if self.delta_max is None else float(self.delta_max)
        res = water_fill(
            w,
            signals.budget,
            floors=self.floor,
            lower=self.delta_min,
            upper=upper,
            method=self.method,
        )
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = res.delta
        # descending delta, ties by agent index (stable sort on the ascending candidates)
        ranked = cand[np.argsort(-res.delta, kind="stable")]
        return Allocation(ranked[deltas[ranked] > 0], deltas)


class GreedyAllocator(Allocator):
    """HATRPO-G: probes every candidate with a tentative step of radius min(budget,
    max_probe_radius); score_j = L_j / (D_j + eps); ``greedy_allocate`` gives each agent, in
    score order, min(D_j, budget left).

    ``rescore=True`` (as published): commit the top agent (with its probe step, which fits),
    then re-probe the other agents whose improvement was positive against the new M and the
    budget left, repeat: n(n+1)/2 probes per iteration. ``rescore=False``: score once at M = 1,
    then commit every allocated agent in score order with its allocation as radius (recomputed
    against the current M, leftover carried). ``max_probe_radius`` is the config's
    ``delta_max``; None = the whole budget left.
    """

    name = "greedy"

    def __init__(
        self,
        eps: float = 1e-4,
        max_probe_radius: float | None = None,
        rescore: bool = True,
        carry_leftover: bool = True,
    ) -> None:
        self.eps = float(eps)
        self.max_probe_radius = max_probe_radius
        self.rescore = bool(rescore)
        self.carry_leftover = bool(carry_leftover)

    @classmethod
    def from_config(cls, config) -> GreedyAllocator:
        return cls(
            eps=config.greedy_eps,
            max_probe_radius=config.delta_max,
            rescore=config.rescore,
            carry_leftover=_carry(config, True),
        )

    def probe_radius(self, budget: float) -> float:
        cap = self.max_probe_radius
        return budget if cap is None else min(budget, float(cap))

    def measure(self, context) -> AllocationSignals:
        radius = self.probe_radius(context.budget)
        improvement = np.full(context.n_agents, np.nan)
        divergence = np.full(context.n_agents, np.nan)
        for i in context.candidates:
            out = context.probe(i, radius)
            improvement[i] = out.actual_improvement if out.accepted else 0.0
            divergence[i] = out.kl
        return context.signals(improvement=improvement, divergence=divergence)

    def allocate(self, signals: AllocationSignals) -> Allocation:
        cand = signals.candidates
        improvement = np.asarray(signals.improvement, dtype=np.float64)
        divergence = np.maximum(np.asarray(signals.divergence, dtype=np.float64)[cand], 0.0)
        res = greedy_allocate(improvement[cand], divergence, signals.budget, eps=self.eps)
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = res.delta
        ranked = cand[np.asarray(res.order)]
        ranked = ranked[deltas[ranked] > 0]
        if not self.rescore:
            return Allocation(ranked, deltas)
        # agents without a positive improvement sit this iteration out (algorithm.md s.4);
        # agents only left out because the budget ran short are probed again
        rest = [int(c) for c in cand if c not in ranked[:1] and improvement[c] > 0]
        return Allocation(ranked, deltas, commit=1, remaining=rest)


class BudgetTracker:
    """Keeps sum_i KL_i <= total over one iteration's sequential update.

    radius_m = min(delta_m + leftover, remaining) with leftover = radius_{m-1} - KL_{m-1} when
    carrying (else 0). Since KL_m <= radius_m, sum_m KL_m = sum_m delta_m - leftover_last <= total.
    """

    def __init__(self, total: float, carry_leftover: bool) -> None:
        self.total = float(total)
        self.carry_leftover = bool(carry_leftover)
        self.spent = 0.0
        self.leftover = 0.0

    @property
    def remaining(self) -> float:
        return max(self.total - self.spent, 0.0)

    def radius(self, delta: float) -> float:
        extra = self.leftover if self.carry_leftover else 0.0
        return max(min(float(delta) + extra, self.remaining), 0.0)

    def commit(self, radius: float, kl: float) -> None:
        self.spent += float(kl)
        if self.carry_leftover:
            self.leftover = max(float(radius) - float(kl), 0.0)
