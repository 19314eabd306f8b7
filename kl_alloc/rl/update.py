"""The sequential multi-agent trust-region update with the compounding factor M
(algorithm.md sections 1 and 4).

Per iteration, with normalised joint advantages A (one per sample) and M = 1:

    repeat:
        measure the allocator's signal for the remaining agents (nothing / q_i / probes)
        order, deltas = allocator.allocate(signals)
        for agent m in order (only order[0] if the allocator re-scores):
            radius = budget tracker's radius for deltas[m]
            maximise L_m(theta) = mean[ pi_m,theta(a_m|o_m) / pi_m,old(a_m|o_m) * M * A ]
                s.t. mean KL(pi_m,old || pi_m,theta) <= radius        (one TRPO step)
            M <- M * pi_m,new(a_m|o_m) / pi_m,old(a_m|o_m)
    until the allocator does not re-score, or no agent / no budget is left.

Every agent updates at most once per iteration; its "old" policy is the one that collected the
data. Trust-region search directions and probe steps are cached while M is unchanged, so a
probe that gets committed is not recomputed (HATRPO-G) and the first W agent reuses the CG
solve that gave its utility; the M update of a committed step reuses the ratio its line search
computed. For n = 2 that is the minimum work: W and G both need 3 CG solves (HATRPO 2).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from kl_alloc.rl.allocators import AllocationSignals, Allocator, BudgetTracker
from kl_alloc.rl.policies import Categorical, DiagGaussian, Policy
from kl_alloc.rl.trpo import (
    Direction,
    StepOutcome,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    line_search,
    set_flat_params,
)

logger = logging.getLogger(__name__)


@dataclass
class TRPOSettings:
    cg_iters: int = 10
    cg_damping: float = 0.1
    ls_steps: int = 10
    ls_backtrack: float = 0.8
    accept_ratio: float = 0.5
    utility: str = "natural_gradient"  # or "grad_norm" (||g||^2)


@dataclass
class AgentBatch:
    """One agent's slice of the rollout, plus its old policy's distribution (fixed)."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    old_dist: Categorical | DiagGaussian


@dataclass
class AgentRecord:
    """Per-agent telemetry of one iteration (one entry of ``progress.jsonl``'s ``agents``)."""

    agent: int
    delta_alloc: float = 0.0  # allocated radius (before leftover)
    radius: float = 0.0  # radius actually used (with carried leftover)
    kl: float = 0.0  # actual mean KL(old || new)
    predicted_improvement: float = 0.0  # first-order g^T x of the step
    actual_improvement: float = 0.0  # surrogate gain
    accepted: bool = False
    position: int | None = None  # place in the update order; None = not updated
    utility: float | None = None  # q_i (HATRPO-W signal)
    probe_improvement: float | None = None  # first-round probe L_j (HATRPO-G)
    probe_kl: float | None = None  # first-round probe D_j (HATRPO-G)
    probes: int = 0
    ls_tries: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class UpdateResult:
    records: list[AgentRecord]
    order: list[int]
    factor: torch.Tensor  # final M per sample
    delta_total: float
    budget_used: float
    actor_seconds: float = 0.0  # whole update, solver excluded
    solver_seconds: float = 0.0  # inside allocator.allocate (the solver core)
    extra: dict = field(default_factory=dict)


class SequentialUpdate:
    """Runs the allocator-driven sequential update over a set of per-agent policies."""

    def __init__(self, policies: list[Policy], allocator: Allocator, settings: TRPOSettings):
        self.policies = policies
        self.allocator = allocator
        self.settings = settings

    # -- one agent's TRPO pieces ------------------------------------------------------------------
    # the pieces share one forward (``dist``): the same ops in the same order as separate
    # forwards, so sharing never changes a number
    @staticmethod
    def _ratio(batch: AgentBatch, dist) -> torch.Tensor:
        """pi_theta(a|o) / pi_old(a|o) per sample (product over action dimensions)."""
        return torch.exp(dist.log_prob(batch.actions) - batch.old_log_probs)

    @staticmethod
    def _mean_kl(batch: AgentBatch, dist) -> torch.Tensor:
        return batch.old_dist.kl(dist).mean()

    def direction(self, i: int, batch: AgentBatch, weights: torch.Tensor) -> Direction:
        """g, s = CG(F, g), s^T F s at the agent's current (old) parameters."""
        policy = self.policies[i]
        params = list(policy.parameters())
        dist = policy.dist(batch.obs)
        surrogate = torch.mean(self._ratio(batch, dist) * weights)
        g = flat_grad(surrogate, params, retain_graph=True).detach()
        base = float(surrogate.detach())
        if not torch.any(g != 0):
            return Direction(g, torch.zeros_like(g), 0.0, base)
        fvp = fisher_vector_product(
            lambda: self._mean_kl(batch, dist), params, self.settings.cg_damping
        )
        s = conjugate_gradient(fvp, g, self.settings.cg_iters).detach()
        sfs = float(torch.dot(s, fvp(s)))
        return Direction(g, s, sfs, base)

    def step(
        self, i: int, batch: AgentBatch, weights: torch.Tensor, radius: float, direction: Direction
    ) -> StepOutcome:
        """A tentative trust-region step (parameters restored; the caller commits). An accepted
        step carries its per-sample ratio pi_new / pi_old, so committing it costs no forward."""
        last_ratio: list[torch.Tensor] = []

        @torch.no_grad()
        def evaluate() -> tuple[float, float]:
            dist = self.policies[i].dist(batch.obs)
            ratio = self._ratio(batch, dist)
            last_ratio[:] = [ratio]
            return float(torch.mean(ratio * weights)), float(self._mean_kl(batch, dist))

        st = self.settings
        outcome = line_search(
            self.policies[i],
            flat_params(self.policies[i]),
            direction,
            radius,
            evaluate,
            steps=st.ls_steps,
            backtrack=st.ls_backtrack,
            accept_ratio=st.accept_ratio,
        )
        if outcome.accepted:  # the search stops at the accepted candidate: its ratio is the last
            outcome.ratio = last_ratio[0]
        return outcome

    @torch.no_grad()
    def ratio(self, i: int, batch: AgentBatch) -> torch.Tensor:
        """pi_i,new(a_i|o_i) / pi_i,old(a_i|o_i) per sample (product over action dims)."""
        return self._ratio(batch, self.policies[i].dist(batch.obs))

    # -- the sequential update ------------------------------------------------------------------
    def run(
        self,
        batches: list[AgentBatch],
        advantages: torch.Tensor,
        delta_total: float,
        rng: np.random.Generator,
    ) -> UpdateResult:
        t_start = time.perf_counter()
        n = len(self.policies)
        alloc = self.allocator
        factor = torch.ones_like(advantages)
        tracker = BudgetTracker(delta_total, alloc.carry_leftover)
        records = [AgentRecord(agent=i) for i in range(n)]
        order: list[int] = []
        candidates = list(range(n))
        version = 0  # bumps whenever M changes; cached directions/probes are valid within one
        directions: dict[int, tuple[int, Direction]] = {}
        probes: dict[int, tuple[int, StepOutcome]] = {}
        solver_seconds = 0.0
        min_budget = 1e-12 * max(delta_total, 1e-300)

        def get_direction(i: int, weights: torch.Tensor) -> Direction:
            cached = directions.get(i)
            if cached is None or cached[0] != version:
                directions[i] = (version, self.direction(i, batches[i], weights))
            return directions[i][1]

        while candidates and tracker.remaining > min_budget:
            weights = (factor * advantages).detach()
            signals = AllocationSignals(
                candidates=np.array(candidates, dtype=np.int64),
                n_agents=n,
                budget=tracker.remaining,
                rng=rng,
            )
            if alloc.signal == "utility":
                signals.utility = np.full(n, np.nan)
                for i in candidates:
                    d = get_direction(i, weights)
                    q = d.utility if self.settings.utility == "natural_gradient" else d.g.dot(d.g)
                    signals.utility[i] = float(q)
                    if records[i].utility is None:
                        records[i].utility = float(q)
            elif alloc.signal == "probe":
                radius = alloc.probe_radius(tracker.remaining)
                signals.improvement = np.full(n, np.nan)
                signals.divergence = np.full(n, np.nan)
                for i in candidates:
                    out = self.step(i, batches[i], weights, radius, get_direction(i, weights))
                    probes[i] = (version, out)
                    records[i].probes += 1
                    signals.improvement[i] = out.actual_improvement if out.accepted else 0.0
                    signals.divergence[i] = out.kl
                    if records[i].probe_improvement is None:
                        records[i].probe_improvement = float(signals.improvement[i])
                        records[i].probe_kl = out.kl

            t0 = time.perf_counter()
            ranked, deltas = alloc.allocate(signals)
            solver_seconds += time.perf_counter() - t0
            ranked = [int(i) for i in ranked]
            commit = ranked[:1] if alloc.rescore else ranked
            if not commit:
                # nothing gets budget (e.g. every probe measured KL 0 in float32 with a tiny
                # remainder): probing again against the same M and budget would give the same
                # answer forever, so the iteration ends here
                break
            for i in commit:
                radius = tracker.radius(deltas[i])
                cached = probes.get(i)
                if (
                    cached is not None
                    and cached[0] == version
                    and cached[1].accepted
                    and cached[1].kl <= radius
                ):
                    out = cached[1]  # the tentative step fits: commit it as is
                else:
                    out = self.step(i, batches[i], weights, radius, get_direction(i, weights))
                if out.accepted:
                    set_flat_params(self.policies[i], out.params)
                    ratio = out.ratio if out.ratio is not None else self.ratio(i, batches[i])
                    factor = factor * ratio
                    version += 1
                    weights = (factor * advantages).detach()
                tracker.commit(radius, out.kl)
                rec = records[i]
                rec.delta_alloc = float(deltas[i])
                rec.radius = radius
                rec.kl = out.kl
                rec.predicted_improvement = out.predicted_improvement
                rec.actual_improvement = out.actual_improvement
                rec.accepted = out.accepted
                rec.position = len(order)
                rec.ls_tries = out.ls_tries
                order.append(i)
            done = set(commit)
            if not alloc.rescore:
                break
            candidates = [c for c in candidates if c not in done]
            if signals.improvement is not None:
                # no positive improvement: the agent sits this iteration out (algorithm.md s.4);
                # agents only left out because the budget ran short are probed again
                candidates = [c for c in candidates if signals.improvement[c] > 0]

        if tracker.spent > delta_total * (1 + 1e-9):  # impossible by construction: shout
            logger.error("KL budget exceeded: %.6g > %.6g", tracker.spent, delta_total)
        total = time.perf_counter() - t_start
        return UpdateResult(
            records=records,
            order=order,
            factor=factor,
            delta_total=float(delta_total),
            budget_used=tracker.spent,
            actor_seconds=total - solver_seconds,
            solver_seconds=solver_seconds,
        )
