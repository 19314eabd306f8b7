"""How the joint KL budget is split across agents, and in which order they update
(algorithm.md sections 2 and 4).

An allocator is a small object with ONE method, ``allocate(signals) -> (order, deltas)``, and
three class attributes that tell the sequential update what to measure and how to proceed:

- ``signal``: what the update measures before calling ``allocate``: ``"none"``, ``"utility"``
  (q_i = g_i^T F_i^-1 g_i per candidate, at the current M) or ``"probe"`` (a tentative
  trust-region step per candidate with radius ``probe_radius(budget)``: its actual surrogate
  improvement L_j and actual KL D_j; parameters are restored afterwards).
- ``rescore``: if True, only ``order[0]`` is committed, then the signals are measured again
  against the new M and the remaining budget, and ``allocate`` is called again (HATRPO-G).
  If False, every agent in ``order`` is updated in turn and the iteration ends.
- ``carry_leftover``: budget an agent leaves unused (its line search stopped below its radius,
  or rejected) flows to the next agent in the order (see :class:`BudgetTracker`).

``order`` lists the agents to update (agents left out are not updated this iteration and leave
M unchanged); ``deltas`` has one entry per agent (``n_agents``), the KL radius allocated.
To plug in a new rule, subclass :class:`Allocator` (or duck-type it) and pass it to the Trainer.
"""

from __future__ import annotations

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
    utility: np.ndarray | None = None  # q_i ("utility" signal)
    improvement: np.ndarray | None = None  # L_j ("probe" signal)
    divergence: np.ndarray | None = None  # D_j ("probe" signal)


class Allocator:
    """Base class: see the module docstring for the contract."""

    name = "base"
    signal = "none"
    rescore = False
    carry_leftover = False

    @classmethod
    def from_config(cls, config) -> Allocator:
        """Build from a :class:`~kl_alloc.rl.config.TrainerConfig` (override to read fields)."""
        return cls()

    def probe_radius(self, budget: float) -> float:
        return budget

    def allocate(self, signals: AllocationSignals) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class UniformAllocator(Allocator):
    """HATRPO: a random order and delta_i = budget / n for everyone. Leftover is NOT carried by
    default, so this is the published HATRPO baseline (each agent's own KL <= delta)."""

    name = "uniform"

    def __init__(self, carry_leftover: bool = False) -> None:
        self.carry_leftover = bool(carry_leftover)

    @classmethod
    def from_config(cls, config) -> UniformAllocator:
        return cls(carry_leftover=getattr(config, "uniform_carry_leftover", False))

    def allocate(self, signals: AllocationSignals) -> tuple[np.ndarray, np.ndarray]:
        cand = signals.candidates
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = uniform_allocate(len(cand), signals.budget).delta
        return signals.rng.permutation(cand), deltas


class WaterFillAllocator(Allocator):
    """HATRPO-W: w_i = q_i / sum_j q_j, delta = water_fill(w, budget, floors=floor,
    lower=delta_min, upper=delta_max); order by descending delta_i; zero-delta agents skipped.

    With floor = 0 and no bounds, delta_i = budget * q_i / sum q: the maximiser of the TRPO
    model's predicted improvement sum_i sqrt(2 delta_i q_i) under sum_i delta_i <= budget.
    """

    name = "water_fill"
    signal = "utility"

    def __init__(
        self,
        floor: float = 0.0,
        delta_min: float = 0.0,
        delta_max: float | None = None,
        carry_leftover: bool = True,
        method: str = "exact",
    ) -> None:
        self.floor, self.delta_min = float(floor), float(delta_min)
        self.delta_max = delta_max
        self.carry_leftover = bool(carry_leftover)
        self.method = method

    @classmethod
    def from_config(cls, config) -> WaterFillAllocator:
        return cls(
            floor=config.wf_floor,
            delta_min=config.delta_min,
            delta_max=config.delta_max,
            carry_leftover=config.carry_leftover,
        )

    def allocate(self, signals: AllocationSignals) -> tuple[np.ndarray, np.ndarray]:
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
        return ranked[deltas[ranked] > 0], deltas


class GreedyAllocator(Allocator):
    """HATRPO-G: score_j = L_j / (D_j + eps) from tentative steps of radius min(budget,
    delta_max); ``greedy_allocate`` gives each agent, in score order, min(D_j, budget left).

    ``rescore=True`` (as published): commit the top agent with its tentative step, re-probe the
    rest against the new M and the remaining budget, repeat: n(n+1)/2 probes per iteration.
    ``rescore=False``: score once at M = 1, then update every allocated agent in score order with
    its allocation as radius (recomputed against the current M, leftover carried).
    """

    name = "greedy"
    signal = "probe"

    def __init__(
        self,
        eps: float = 1e-4,
        delta_max: float | None = None,
        rescore: bool = True,
        carry_leftover: bool = True,
    ) -> None:
        self.eps = float(eps)
        self.delta_max = delta_max
        self.rescore = bool(rescore)
        self.carry_leftover = bool(carry_leftover)

    @classmethod
    def from_config(cls, config) -> GreedyAllocator:
        return cls(
            eps=config.greedy_eps,
            delta_max=config.delta_max,
            rescore=config.rescore,
            carry_leftover=config.carry_leftover,
        )

    def probe_radius(self, budget: float) -> float:
        return budget if self.delta_max is None else min(budget, float(self.delta_max))

    def allocate(self, signals: AllocationSignals) -> tuple[np.ndarray, np.ndarray]:
        cand = signals.candidates
        improvement = np.asarray(signals.improvement, dtype=np.float64)[cand]
        divergence = np.maximum(np.asarray(signals.divergence, dtype=np.float64)[cand], 0.0)
        res = greedy_allocate(improvement, divergence, signals.budget, eps=self.eps)
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = res.delta
        ranked = cand[np.asarray(res.order)]
        return ranked[deltas[ranked] > 0], deltas


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


def make_allocator(algo: str, config) -> Allocator:
    """The allocator of a method name (registered, entry point or ``module:attr``; see
    :mod:`kl_alloc.methods`), configured from a :class:`TrainerConfig`."""
    from kl_alloc.methods import get_method

    return get_method(algo).make(config)
