"""The sequential multi-agent trust-region update with the compounding factor M
(algorithm.md sections 1 and 4), as rounds of measure -> allocate -> commit.

Per iteration, with normalised joint advantages A (one per sample) and M = 1:

    candidates = all agents
    repeat:
        signals    = allocator.measure(context)   # what the rule asks the context for
        allocation = allocator.allocate(signals)  # order, radii, what to commit now
        for agent m in allocation.committed:      # context.commit(m, delta_m)
            radius = budget tracker's radius for delta_m
            maximise L_m(theta) = mean[ pi_m,theta(a_m|o_m) / pi_m,old(a_m|o_m) * M * A ]
                s.t. mean KL(pi_m,old || pi_m,theta) <= radius        (one TRPO step)
            M <- M * pi_m,new(a_m|o_m) / pi_m,old(a_m|o_m)
        candidates = allocation.remaining         # None: the iteration ends
    until no candidate or no budget is left.

Every agent updates at most once per iteration; its "old" policy is the one that collected the
data. The :class:`UpdateContext` holds the iteration's state (M, the budget tracker, the
records) and offers the per-agent services allocators measure with (see
:mod:`kl_alloc.rl.allocators`). Trust-region search directions and probe steps are cached while
M is unchanged, so a probe that fits its radius is committed as is (HATRPO-G) and the first W
agent reuses the CG solve that gave its utility; the M update of a committed step reuses the
ratio its line search computed. For n = 2 that is the minimum work: W and G both need 3 CG
solves (HATRPO 2).

A sibling update (e.g. HAPPO-style: clip ranges allocated instead of KL radii, each agent
updated by a clipped objective) subclasses :class:`SequentialUpdate` and overrides
:meth:`SequentialUpdate.agent_step` (one agent's tentative update with the allocated amount,
returning a :class:`StepOutcome` with its parameters, ratio and the budget it used as ``kl``);
the loop, the budget tracker, the caches, the allocators and the telemetry are reused as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from kl_alloc.rl.allocators import (
    AllocationSignals,
    Allocator,
    BudgetTracker,
    checked_allocation,
)
from kl_alloc.rl.fisher import GaussNewtonFisher
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
    fvp: str = "hessian"  # "hessian" | "gauss_newton" (TrainerConfig.fvp)
    cg_warm_iters: int | None = None  # CG iterations of a warm-started re-solve (None: off)


@dataclass
class AgentBatch:
    """One agent's slice of the rollout, plus its old policy's distribution (fixed).

    ``mask`` (B, K) bool: the allowed actions each sample was drawn under (masked Categorical),
    or None. ``valid`` (B,) bool: False where the agent had left its episode, or None (all
    valid). On an invalid sample the agent's ratio is 1 (its action did nothing), so the sample
    adds a constant to the surrogate mean(r * M * A) and nothing to its gradient, and the KL is
    averaged over the valid samples only: mean_valid KL(pi_old || pi_theta). The surrogate stays
    a mean over all samples, so its improvements are on the same scale for every agent (what
    HATRPO-G compares)."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    old_dist: Categorical | DiagGaussian
    mask: torch.Tensor | None = None
    valid: torch.Tensor | None = None

    def dist(self, policy: Policy) -> Categorical | DiagGaussian:
        """The policy's distribution on this batch (under its masks, if any)."""
        return policy.dist(self.obs) if self.mask is None else policy.dist(self.obs, self.mask)


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


class UpdateContext:
    """One iteration's state (M, the budget tracker, per-agent records and caches) and the
    per-agent services an allocator's ``measure`` asks for, all at the current M.

    ``candidates`` (agents still to update), ``n_agents``, ``budget`` (KL left) and ``rng`` are
    read-only for allocators; ``utility``, ``gradient`` and ``probe`` measure; ``commit`` is
    the loop's.
    """

    def __init__(
        self,
        update: SequentialUpdate,
        batches: list[AgentBatch],
        advantages: torch.Tensor,
        tracker: BudgetTracker,
        rng: np.random.Generator,
    ) -> None:
        self.update = update
        self.batches = batches
        self.advantages = advantages
        self.tracker = tracker
        self.rng = rng
        self.n_agents = len(batches)
        self.candidates: list[int] = list(range(self.n_agents))
        self.factor = torch.ones_like(advantages)  # M per sample
        self.weights = (self.factor * advantages).detach()  # M * A
        self.records = [AgentRecord(agent=i) for i in range(self.n_agents)]
        self.order: list[int] = []
        self._version = 0  # bumps whenever M changes; cached directions/probes are valid within one
        self._directions: dict[int, tuple[int, Direction]] = {}
        self._probes: dict[int, tuple[int, StepOutcome]] = {}
        self._curvature: dict[int, Curvature] = {}  # per agent, until it commits

    @property
    def budget(self) -> float:
        return self.tracker.remaining

    def signals(self, **per_agent: np.ndarray) -> AllocationSignals:
        """The signals for the current candidates, with measured arrays (one entry per agent)."""
        return AllocationSignals(
            candidates=np.array(self.candidates, dtype=np.int64),
            n_agents=self.n_agents,
            budget=self.budget,
            rng=self.rng,
            **per_agent,
        )

    # -- measurements ------------------------------------------------------------------------------
    def direction(self, i: int) -> Direction:
        """Agent i's trust-region direction (g, s = CG(F, g), s^T F s), cached while M holds.
        Its forward and Fisher product are cached for the whole iteration (M-independent); with
        ``cg_warm_iters`` set, a direction at a new M starts CG from the agent's last one."""
        cached = self._directions.get(i)
        if cached is None or cached[0] != self._version:
            curvature = self._curvature.get(i)
            if curvature is None:
                curvature = self._curvature[i] = self.update.curvature(i, self.batches[i])
            x0 = None if cached is None else cached[1]
            d = self.update.direction(i, self.batches[i], self.weights, curvature, x0=x0)
            self._directions[i] = (self._version, d)
        return self._directions[i][1]

    def utility(self, i: int) -> float:
        """q_i = g_i^T F_i^-1 g_i (>= 0)."""
        return self.direction(i).utility

    def gradient(self, i: int) -> torch.Tensor:
        """g_i, the gradient of agent i's surrogate mean(r_i * M * A)."""
        return self.direction(i).g

    def probe(self, i: int, radius: float) -> StepOutcome:
        """A tentative step of agent i with ``radius`` (parameters restored); committed as is
        later if M has not changed and it fits the committed radius."""
        out = self.update.agent_step(self, i, radius)
        self._probes[i] = (self._version, out)
        self.records[i].probes += 1
        return out

    def log_signals(self, signals: AllocationSignals) -> None:
        """Per-agent telemetry: the first value of each measured signal."""
        for i in self.candidates:
            rec = self.records[i]
            if signals.utility is not None and rec.utility is None:
                rec.utility = float(signals.utility[i])
            if signals.improvement is not None and rec.probe_improvement is None:
                rec.probe_improvement = float(signals.improvement[i])
                if signals.divergence is not None:
                    rec.probe_kl = float(signals.divergence[i])

    # -- commit --------------------------------------------------------------------------------
    def commit(self, i: int, delta: float) -> StepOutcome:
        """Update agent i with the tracker's radius for ``delta``; M absorbs its ratio."""
        radius = self.tracker.radius(delta)
        cached = self._probes.get(i)
        if (
            cached is not None
            and cached[0] == self._version
            and cached[1].accepted
            and cached[1].kl <= radius
        ):
            out = cached[1]  # the tentative step fits: commit it as is
        else:
            out = self.update.agent_step(self, i, radius)
        self._curvature.pop(i, None)  # its parameters move: the cached forward is stale
        if out.accepted:
            set_flat_params(self.update.policies[i], out.params)
            ratio = out.ratio if out.ratio is not None else self.update.ratio(i, self.batches[i])
            self.factor = self.factor * ratio
            self._version += 1
            self.weights = (self.factor * self.advantages).detach()
        self.tracker.commit(radius, out.kl)
        rec = self.records[i]
        rec.delta_alloc = float(delta)
        rec.radius = radius
        rec.kl = out.kl
        rec.predicted_improvement = out.predicted_improvement
        rec.actual_improvement = out.actual_improvement
        rec.accepted = out.accepted
        rec.position = len(self.order)
        rec.ls_tries = out.ls_tries
        self.order.append(i)
        return out


class Curvature:
    """One agent's forward pass on its batch (with its autograd graph) and its Fisher-vector
    product v -> F v + damping v, built lazily on the first :attr:`fvp` and then reused.

    Both are taken at the agent's old parameters and neither depends on M (F is the Hessian of
    mean KL(pi_old || pi_theta), the surrogate's forward is pi_theta(a|o)), so the directions an
    agent needs as M changes (HATRPO-W's commit phase, HATRPO-G's re-probes) share one forward
    and one Fisher graph. ``settings.fvp = "hessian"``: Pearlmutter's double backward through
    the KL (:func:`~kl_alloc.rl.trpo.fisher_vector_product`); ``"gauss_newton"``: the same
    matrix as J^T H_out J from per-sample Jacobians (:mod:`kl_alloc.rl.fisher`), where the
    policy supports it (else the Hessian form).
    """

    def __init__(self, update: SequentialUpdate, i: int, batch: AgentBatch) -> None:
        self.update, self.batch = update, batch
        self.policy = policy = update.policies[i]
        # the graph is built on copies of the parameters: a probe's line search writes the
        # module's parameters in place (and restores them), which would invalidate a graph that
        # saved them; the copies hold the same values, so every number is the same
        names = [name for name, _ in policy.named_parameters()]
        self.params = [p.detach().clone().requires_grad_(True) for p in policy.parameters()]
        args = (batch.obs,) if batch.mask is None else (batch.obs, batch.mask)
        self.dist = functional_call(policy, dict(zip(names, self.params, strict=True)), args)
        self._fvp: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def fvp(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self._fvp is None:
            st, batch = self.update.settings, self.batch
            if st.fvp == "gauss_newton" and GaussNewtonFisher.supports(self.policy):
                self._fvp = GaussNewtonFisher(self.policy, batch, st.cg_damping)
            else:
                dist = self.dist
                self._fvp = fisher_vector_product(
                    lambda: SequentialUpdate._mean_kl(batch, dist), self.params, st.cg_damping
                )
        return self._fvp


class SequentialUpdate:
    """Runs the allocator-driven sequential update over a set of per-agent policies.

    The per-agent step is :meth:`agent_step` (TRPO here); a sibling update overrides it."""

    def __init__(self, policies: list[Policy], allocator: Allocator, settings: TRPOSettings):
        self.policies = policies
        self.allocator = allocator
        self.settings = settings

    # -- one agent's TRPO pieces ------------------------------------------------------------------
    # the pieces share one forward (``dist``): the same ops in the same order as separate
    # forwards, so sharing never changes a number
    @staticmethod
    def _ratio(batch: AgentBatch, dist) -> torch.Tensor:
        """pi_theta(a|o) / pi_old(a|o) per sample (product over action dimensions); 1 on the
        samples where the agent had left its episode."""
        ratio = torch.exp(dist.log_prob(batch.actions) - batch.old_log_probs)
        if batch.valid is None:
            return ratio
        return torch.where(batch.valid, ratio, torch.ones_like(ratio))

    @staticmethod
    def _mean_kl(batch: AgentBatch, dist) -> torch.Tensor:
        """mean KL(pi_old || pi_theta) over the samples (the valid ones, if some are not)."""
        kl = batch.old_dist.kl(dist)
        if batch.valid is None:
            return kl.mean()
        valid = batch.valid.to(kl.dtype)
        return torch.sum(kl * valid) / torch.clamp(valid.sum(), min=1.0)

    def curvature(self, i: int, batch: AgentBatch) -> Curvature:
        """Agent i's forward on its batch and (built on first use) its Fisher-vector product,
        at its current (old) parameters. Neither depends on M, so one serves every direction of
        the agent within an iteration (until it commits)."""
        return Curvature(self, i, batch)

    def direction(
        self,
        i: int,
        batch: AgentBatch,
        weights: torch.Tensor,
        curvature: Curvature | None = None,
        x0: Direction | None = None,
    ) -> Direction:
        """g, s = CG(F, g), s^T F s at the agent's current (old) parameters.

        ``curvature``: the agent's cached forward + Fisher product (None: built here; reusing
        one gives the same numbers as building it again). ``x0``: the agent's earlier
        :class:`Direction` this iteration; with ``settings.cg_warm_iters`` set, CG starts from
        its s (r_0 = g - F s from its stored F s) and runs ``cg_warm_iters`` iterations."""
        if curvature is None:
            curvature = self.curvature(i, batch)
        surrogate = torch.mean(self._ratio(batch, curvature.dist) * weights)
        g = flat_grad(surrogate, curvature.params, retain_graph=True).detach()
        base = float(surrogate.detach())
        if not torch.any(g != 0):
            return Direction(g, torch.zeros_like(g), 0.0, base)
        fvp = curvature.fvp
        st = self.settings
        if x0 is None or st.cg_warm_iters is None or not x0.sfs > 0:
            s = conjugate_gradient(fvp, g, st.cg_iters).detach()
        else:
            s = conjugate_gradient(fvp, g, st.cg_warm_iters, x0=x0.s, ax0=x0.fs).detach()
        fs = fvp(s)
        sfs = float(torch.dot(s, fs))
        return Direction(g, s, sfs, base, fs.detach())

    def step(
        self, i: int, batch: AgentBatch, weights: torch.Tensor, radius: float, direction: Direction
    ) -> StepOutcome:
        """A tentative trust-region step (parameters restored; the caller commits). An accepted
        step carries its per-sample ratio pi_new / pi_old, so committing it costs no forward."""
        last_ratio: list[torch.Tensor] = []

        @torch.no_grad()
        def evaluate() -> tuple[float, float]:
            dist = batch.dist(self.policies[i])
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

    def agent_step(self, context: UpdateContext, i: int, radius: float) -> StepOutcome:
        """Agent i's tentative update against the current M with the allocated ``radius``
        (parameters restored; ``context.commit`` applies it). The seam of a sibling update."""
        return self.step(i, context.batches[i], context.weights, radius, context.direction(i))

    @torch.no_grad()
    def ratio(self, i: int, batch: AgentBatch) -> torch.Tensor:
        """pi_i,new(a_i|o_i) / pi_i,old(a_i|o_i) per sample (product over action dims)."""
        return self._ratio(batch, batch.dist(self.policies[i]))

    # -- the sequential update: measure -> allocate -> commit -----------------------------------
    def run(
        self,
        batches: list[AgentBatch],
        advantages: torch.Tensor,
        delta_total: float,
        rng: np.random.Generator,
    ) -> UpdateResult:
        t_start = time.perf_counter()
        alloc = self.allocator
        tracker = BudgetTracker(delta_total, getattr(alloc, "carry_leftover", False))
        ctx = UpdateContext(self, batches, advantages, tracker, rng)
        solver_seconds = 0.0
        min_budget = 1e-12 * max(delta_total, 1e-300)
        while ctx.candidates and tracker.remaining > min_budget:
            signals = alloc.measure(ctx)
            ctx.log_signals(signals)
            t0 = time.perf_counter()
            result = alloc.allocate(signals)
            solver_seconds += time.perf_counter() - t0  # the rule's own time, not the checks
            allocation = checked_allocation(result, signals, alloc)
            committed = allocation.committed
            if not committed:
                # nothing gets budget (e.g. every probe measured KL 0 in float32 with a tiny
                # remainder): measuring again against the same M and budget would give the
                # same answer forever, so the iteration ends here
                break
            for i in committed:
                ctx.commit(i, allocation.deltas[i])
            if allocation.remaining is None:
                break
            ctx.candidates = [int(i) for i in allocation.remaining]

        if tracker.spent > delta_total * (1 + 1e-9):  # impossible by construction: shout
            logger.error("KL budget exceeded: %.6g > %.6g", tracker.spent, delta_total)
        total = time.perf_counter() - t_start
        return UpdateResult(
            records=ctx.records,
            order=ctx.order,
            factor=ctx.factor,
            delta_total=float(delta_total),
            budget_used=tracker.spent,
            actor_seconds=total - solver_seconds,
            solver_seconds=solver_seconds,
        )
