"""The allocators, the budget tracker and the sequential update with the factor M."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kl_alloc.envs import make_env
from kl_alloc.rl import (
    Allocation,
    AllocationError,
    AllocationSignals,
    Allocator,
    BudgetTracker,
    GreedyAllocator,
    Trainer,
    TrainerConfig,
    UniformAllocator,
    WaterFillAllocator,
)
from kl_alloc.rl.allocators import checked_allocation
from kl_alloc.rl.trpo import flat_params
from kl_alloc.rl.update import AgentBatch, SequentialUpdate


def _signals(n=4, budget=0.04, **kw):
    return AllocationSignals(
        candidates=np.arange(n), n_agents=n, budget=budget, rng=np.random.default_rng(0), **kw
    )


def test_uniform_allocator_is_hatrpo():
    order, deltas = UniformAllocator().allocate(_signals())
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(deltas, 0.01)
    rng = np.random.default_rng(1)
    seen = {
        tuple(UniformAllocator().allocate(AllocationSignals(np.arange(4), 4, 0.04, rng)).order)
        for _ in range(40)
    }
    assert len(seen) > 5  # a random permutation each time


def test_water_fill_allocator_proportional_order_and_skip():
    q = np.array([1.0, 0.0, 3.0, 4.0])
    order, deltas = WaterFillAllocator().allocate(_signals(utility=q))
    np.testing.assert_allclose(deltas, 0.04 * q / q.sum(), rtol=1e-12)
    assert order.tolist() == [3, 2, 0]  # descending delta, the zero-delta agent skipped
    # a cap moves the excess to the others; a floor removes weak agents
    _, capped = WaterFillAllocator(delta_max=0.015).allocate(_signals(utility=q))
    assert capped.max() <= 0.015 + 1e-15 and capped.sum() == pytest.approx(0.04)
    order, floored = WaterFillAllocator(floor=0.02).allocate(_signals(utility=q))
    assert floored[0] == 0.0 and 0 not in order.tolist()
    assert floored.sum() == pytest.approx(0.04)


def test_greedy_allocator_scores_and_budget():
    improvement = np.array([0.02, -0.01, 0.05, 0.03])
    divergence = np.array([0.01, 0.01, 0.03, 0.01])
    order, deltas = GreedyAllocator(eps=1e-4).allocate(
        _signals(budget=0.025, improvement=improvement, divergence=divergence)
    )
    # scores: 0 -> 1.98, 2 -> 1.66, 3 -> 2.97; agent 1 never (negative improvement)
    assert order.tolist() == [3, 0, 2]
    np.testing.assert_allclose(deltas, [0.01, 0.0, 0.005, 0.01])


@given(
    deltas=st.lists(st.floats(0, 0.05), min_size=1, max_size=8),
    fracs=st.lists(st.floats(0, 1), min_size=8, max_size=8),
    carry=st.booleans(),
)
def test_budget_tracker_never_overspends(deltas, fracs, carry):
    total = 0.04
    scale = min(1.0, total / max(sum(deltas), 1e-300))
    tracker = BudgetTracker(total, carry)
    for d, f in zip(deltas, fracs, strict=False):
        radius = tracker.radius(d * scale)
        assert radius <= tracker.remaining + 1e-18
        tracker.commit(radius, radius * f)  # any actual KL within the radius
    assert tracker.spent <= total * (1 + 1e-12)


def _trainer(algo, seed=0, **cfg):
    config = TrainerConfig.for_env("matrix", num_envs=1000, **cfg)
    return Trainer(make_env("matrix", num_envs=1000), algo=algo, config=config, seed=seed)


@pytest.mark.parametrize(
    "algo,kw",
    [("hatrpo", {}), ("hatrpo-w", {}), ("hatrpo-g", {}), ("hatrpo-g", {"rescore": False})],
)
def test_factor_is_product_of_updated_ratios_and_budget_holds(algo, kw):
    trainer = _trainer(algo, **kw)
    trainer.learn(3000, progress=False)  # move off the uniform start first
    trainer.collector.reset(1)
    rollout = trainer.collector.collect(1, trainer.generator)
    adv, _ = trainer.advantages(rollout)
    with torch.no_grad():
        batches = [
            AgentBatch(o, a, lp, p.dist(o).detach())
            for p, o, a, lp in zip(
                trainer.policies, rollout.obs, rollout.actions, rollout.log_probs, strict=True
            )
        ]
    adv_t = torch.as_tensor((adv - adv.mean()) / adv.std(), dtype=torch.float32).reshape(-1)
    result = trainer.updater.run(batches, adv_t, trainer.delta_total, trainer.rng)
    accepted = [r.agent for r in result.records if r.accepted]
    assert accepted, "no agent updated: the check below would be vacuous"
    expected = torch.ones_like(adv_t)
    with torch.no_grad():
        for i, (p, b) in enumerate(zip(trainer.policies, batches, strict=True)):
            ratio = torch.exp(p.dist(b.obs).log_prob(b.actions) - b.old_log_probs)
            if i in accepted:
                expected = expected * ratio
            else:  # not updated: its policy did not move
                assert torch.equal(ratio, torch.ones_like(ratio))
    torch.testing.assert_close(result.factor, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(result.factor, torch.ones_like(result.factor))
    kls = [r.kl for r in result.records]
    assert sum(kls) <= trainer.delta_total * (1 + 1e-9)
    assert result.budget_used == pytest.approx(sum(kls))
    for r in result.records:
        assert r.kl <= r.radius + 1e-15
        if algo == "hatrpo":
            assert r.radius == pytest.approx(trainer.config.delta)


@pytest.mark.parametrize("algo", ["hatrpo-w", "hatrpo-g"])
def test_sum_of_actual_kls_within_budget_over_iterations(algo):
    trainer = _trainer(algo, seed=3)
    trainer.learn(8 * 1000, progress=False)
    spent = []
    for rec in trainer.history:
        kls = [a["kl"] for a in rec["agents"]]
        assert sum(kls) <= rec["delta_total"] * (1 + 1e-9)
        assert all(a["kl"] <= a["radius"] + 1e-15 for a in rec["agents"])
        spent.append(sum(kls))
    # the adaptive methods really use the joint budget (more than one agent's share)
    assert max(spent) > trainer.config.delta


def test_greedy_rescore_probes_remaining_agents_after_every_commit():
    trainer = _trainer("hatrpo-g", seed=0)
    trainer.learn(4000, progress=False)
    n = trainer.n_agents
    for rec in trainer.history:
        assert len(rec["order"]) == n  # early on every agent improves: all get updated
        for a in rec["agents"]:
            # the agent committed k-th (0-based) was probed in rounds 0..k: k + 1 times
            assert a["probes"] == a["position"] + 1
        assert sum(a["probes"] for a in rec["agents"]) == n * (n + 1) // 2
        # each commit reuses its probe: delta_alloc is exactly the probe's KL
        assert all(a["kl"] == a["delta_alloc"] for a in rec["agents"])
    once = _trainer("hatrpo-g", seed=0, rescore=False)
    once.learn(1000, progress=False)
    assert all(a["probes"] == 1 for a in once.history[0]["agents"])


class _NothingFits(GreedyAllocator):
    """Scores like G but gives nobody budget: the case of probes whose measured KL is 0 with a
    tiny remaining budget (float32), which once made the re-scoring loop spin forever."""

    def __init__(self):
        super().__init__(rescore=True)
        self.calls = 0

    def allocate(self, signals):
        self.calls += 1
        if self.calls > 50:
            raise AssertionError("the re-scoring loop keeps asking: it would never end")
        return np.array([], dtype=np.int64), np.zeros(signals.n_agents)


def test_rescoring_ends_when_nothing_can_be_committed():
    alloc = _NothingFits()
    trainer = Trainer(
        make_env("matrix", num_envs=200),
        algo="hatrpo-g",
        config=TrainerConfig.for_env("matrix", num_envs=200),
        seed=0,
        allocator=alloc,
    )
    trainer.learn(3 * 200, progress=False)
    assert alloc.calls == 3  # one allocation round per iteration, then the iteration ends
    assert all(not a["accepted"] for rec in trainer.history for a in rec["agents"])


def test_hatrpo_carries_leftover_only_when_asked():
    from kl_alloc.methods import make_allocator

    assert not make_allocator("hatrpo", TrainerConfig()).carry_leftover  # published baseline
    control = make_allocator("hatrpo", TrainerConfig(carry=True))
    assert isinstance(control, UniformAllocator) and control.carry_leftover
    # and the trainer honours it: some agent's radius exceeds its uniform share
    trainer = _trainer("hatrpo", carry=True)
    trainer.learn(10 * 1000, progress=False)
    radii = [a["radius"] for rec in trainer.history for a in rec["agents"]]
    assert max(radii) > trainer.config.delta * (1 + 1e-9)
    assert all(
        sum(a["kl"] for a in rec["agents"]) <= rec["delta_total"] * (1 + 1e-9)
        for rec in trainer.history
    )


# -- the measure -> allocate -> commit protocol ----------------------------------------------------


class _Context:
    """Records what an allocator's ``measure`` asks for (a stand-in for UpdateContext)."""

    n_agents, budget = 3, 0.03

    def __init__(self, candidates=(0, 2)):
        self.candidates = list(candidates)
        self.rng = np.random.default_rng(0)
        self.asked = []

    def utility(self, i):
        self.asked.append(("utility", i))
        return float(i + 1)

    def gradient(self, i):
        self.asked.append(("gradient", i))
        return torch.tensor([float(i + 1), 1.0])

    def probe(self, i, radius):
        from kl_alloc.rl.trpo import StepOutcome

        self.asked.append(("probe", i, radius))
        return StepOutcome(radius, True, radius / 2, 0.02, 0.01 * (i + 1), 0.0, 1)

    def signals(self, **arrays):
        return AllocationSignals(
            np.array(self.candidates), self.n_agents, self.budget, self.rng, **arrays
        )


def test_each_allocator_measures_exactly_what_it_needs():
    ctx = _Context()
    assert UniformAllocator().measure(ctx).utility is None and ctx.asked == []  # nothing
    ctx = _Context()
    np.testing.assert_array_equal(WaterFillAllocator().measure(ctx).utility, [1.0, np.nan, 3.0])
    assert ctx.asked == [("utility", 0), ("utility", 2)]
    ctx = _Context()
    sig = WaterFillAllocator(utility="grad_norm").measure(ctx)
    assert ctx.asked == [("gradient", 0), ("gradient", 2)] and sig.utility[2] == 10.0
    ctx = _Context()
    sig = GreedyAllocator(max_probe_radius=0.01).measure(ctx)  # radius min(budget, cap)
    assert ctx.asked == [("probe", 0, 0.01), ("probe", 2, 0.01)]
    np.testing.assert_array_equal(sig.improvement, [0.01, np.nan, 0.03])
    np.testing.assert_array_equal(sig.divergence, [0.005, np.nan, 0.005])
    with pytest.raises(ValueError, match="utility"):
        WaterFillAllocator(utility="advantage")


def test_greedy_commits_one_agent_and_rescores_the_positive_rest():
    sig = _signals(
        improvement=np.array([0.02, -0.01, 0.05, 0.03]),
        divergence=np.array([0.01, 0.01, 0.03, 0.01]),
        budget=0.025,
    )
    plan = GreedyAllocator().allocate(sig)
    assert plan.committed == [3] and list(plan.remaining) == [0, 2]  # agent 1 sits out
    once = GreedyAllocator(rescore=False).allocate(sig)
    assert once.committed == [3, 0, 2] and once.remaining is None


def test_allocators_take_carry_from_the_one_config_field():
    from kl_alloc.methods import make_allocator

    for algo, default in (("hatrpo", False), ("hatrpo-w", True), ("hatrpo-g", True)):
        assert make_allocator(algo, TrainerConfig()).carry_leftover is default
        for carry in (True, False):
            assert make_allocator(algo, TrainerConfig(carry=carry)).carry_leftover is carry
    g = make_allocator("hatrpo-g", TrainerConfig(delta_max=0.02))
    assert g.max_probe_radius == 0.02 and g.probe_radius(0.05) == 0.02
    w = make_allocator("hatrpo-w", TrainerConfig(utility="grad_norm", delta_max=0.02))
    assert w.utility == "grad_norm" and w.delta_max == 0.02


class _FixedSplit(Allocator):
    """A user rule with only ``allocate``: agent 1 first with 3/4 of the budget, then agent 0."""

    def allocate(self, signals):
        deltas = np.zeros(signals.n_agents)
        deltas[[1, 0]] = [0.75 * signals.budget, 0.25 * signals.budget]
        return np.array([1, 0]), deltas


def test_a_rule_with_only_allocate_runs_on_the_default_signal():
    trainer = Trainer(
        make_env("matrix", num_envs=200, action_counts=[3, 3]),
        config=TrainerConfig.for_env("matrix", num_envs=200, carry=True),
        allocator=_FixedSplit.from_config(TrainerConfig(carry=True)),
    )
    trainer.learn(3 * 200, progress=False)
    for rec in trainer.history:
        assert rec["order"] == [1, 0]
        a0, a1 = rec["agents"]
        assert a1["delta_alloc"] == pytest.approx(0.75 * rec["delta_total"])
        assert a0["radius"] >= a0["delta_alloc"]  # agent 1's leftover carried to agent 0
        assert a0["utility"] is None and a0["probes"] == 0  # nothing was measured


@pytest.mark.parametrize("algo", ["hatrpo", "hatrpo-w", "hatrpo-g"])
@pytest.mark.parametrize("carry", [True, False])
def test_budget_invariant_holds_with_and_without_carry(algo, carry):
    trainer = _trainer(algo, seed=1, carry=carry)
    trainer.learn(5 * 1000, progress=False)
    for rec in trainer.history:
        agents = rec["agents"]
        assert sum(a["kl"] for a in agents) <= rec["delta_total"] * (1 + 1e-9)
        assert rec["budget_used"] == pytest.approx(sum(a["kl"] for a in agents))
        for a in agents:
            assert a["kl"] <= a["radius"] + 1e-15
            if not carry and a["position"] is not None:  # no leftover: radius = allocation
                assert a["radius"] <= a["delta_alloc"] + 1e-15


class _SignStep(SequentialUpdate):
    """A toy sibling update: each agent takes a fixed-size gradient step scaled to the allocated
    amount (no CG, no line search), through the same measure -> allocate -> commit loop."""

    def agent_step(self, context, i, radius):
        from kl_alloc.rl.trpo import StepOutcome

        g = context.gradient(i)
        params = flat_params(self.policies[i]) + radius * torch.sign(g)
        return StepOutcome(radius, True, radius / 2, 0.0, 0.0, 0.0, 0, params=params)


def test_a_sibling_update_overrides_only_the_agent_step():
    trainer = _trainer("hatrpo-w")
    trainer.updater = _SignStep(trainer.policies, trainer.allocator, trainer.updater.settings)
    before = [flat_params(p) for p in trainer.policies]
    trainer.learn(2 * 1000, progress=False)
    for rec in trainer.history:
        assert all(a["kl"] == a["radius"] / 2 for a in rec["agents"] if a["accepted"])
        assert rec["budget_used"] <= rec["delta_total"]
    after = [flat_params(p) for p in trainer.policies]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


_D = np.full(4, 0.01)


@pytest.mark.parametrize(
    "result, message",
    [
        (None, "returned NoneType; expected an Allocation or a tuple (order, deltas)"),
        ((np.array([0, 1, 0]), _D), "lists an agent twice"),
        ((np.array([0, 9]), _D), "agent(s) [9] that are not candidates this round [0, 1, 2]"),
        ((np.array([3]), _D), "agent(s) [3] that are not candidates"),  # updated already
        ((np.array([0.0, 1.0]), _D), "order must be a 1-D sequence of agent indices"),
        ((np.array([0, 1]), np.full(6, 0.01)), "shape (4,), got (6,)"),
        ((np.array([0, 1]), np.array([0.01, np.nan, 0, 0])), "[(1, nan)]"),
        ((np.array([1]), np.array([0.01, -0.01, 0, 0])), "finite and >= 0, got [(1, -0.01)]"),
        (Allocation(np.array([0, 1]), _D, commit=-1), "commit must be None or an int >= 0"),
        (Allocation(np.array([0, 1]), _D, commit=1.0), "commit must be None or an int >= 0"),
        (Allocation(np.array([0, 1]), _D, commit=1, remaining=[0, 2]), "remaining [0, 2]"),
    ],
)
def test_an_allocation_the_update_cannot_commit_is_refused(result, message):
    signals = AllocationSignals(
        candidates=np.arange(3), n_agents=4, budget=0.04, rng=np.random.default_rng(0)
    )
    with pytest.raises(AllocationError, match="_FixedSplit.allocate") as info:
        checked_allocation(result, signals, _FixedSplit())
    assert message in str(info.value)


def test_a_valid_allocation_passes_unchanged():
    signals = AllocationSignals(
        candidates=np.arange(3), n_agents=4, budget=0.04, rng=np.random.default_rng(0)
    )
    a = Allocation(np.array([2, 0]), np.array([0.01, 0, 0.0, 0]), commit=1, remaining=[0, 1])
    assert checked_allocation(a, signals, _FixedSplit()) is a
    # the plain tuple; a NaN radius of an agent not committed is nobody's business
    b = checked_allocation(([1], [np.nan, 0.02, 0, 0]), signals, _FixedSplit())
    assert b.committed == [1]
    # commit 1 of an empty order (HATRPO-G when no probe gained anything): nothing to commit,
    # the iteration ends; not an error
    empty = Allocation(np.array([], dtype=np.int64), np.zeros(4), commit=1, remaining=[])
    assert checked_allocation(empty, signals, _FixedSplit()).committed == []


def test_the_trainer_refuses_a_rule_that_lists_an_agent_twice():
    class Twice(_FixedSplit):
        def allocate(self, signals):
            order, deltas = super().allocate(signals)
            return np.array([1, 0, 1]), deltas

    trainer = Trainer(
        make_env("matrix", num_envs=200, action_counts=[3, 3]),
        config=TrainerConfig.for_env("matrix", num_envs=200),
        allocator=Twice(),
    )
    with pytest.raises(AllocationError, match=r"order \[1, 0, 1\] lists an agent twice"):
        trainer.learn(200, progress=False)


def test_greedy_runs_on_when_no_probe_gains_anything():
    """Near the matrix game's optimum every probe can gain nothing: HATRPO-G then asks to
    commit 1 agent of an empty order, and the iteration ends without an update (seed 3 gets
    there at iteration 25). A regression test: the allocation check once refused that."""
    trainer = Trainer("matrix", algo="hatrpo-g", seed=3)
    trainer.learn(30 * 4000, progress=False)
    assert len(trainer.history) == 30
    assert any(rec["order"] == [] for rec in trainer.history)
    assert trainer.history[-1]["expected_reward"] > 0.999
