"""The allocators, the budget tracker and the sequential update with the factor M."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kl_alloc.envs import make_env
from kl_alloc.rl import (
    AllocationSignals,
    BudgetTracker,
    GreedyAllocator,
    Trainer,
    TrainerConfig,
    UniformAllocator,
    WaterFillAllocator,
)
from kl_alloc.rl.update import AgentBatch


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
        tuple(UniformAllocator().allocate(AllocationSignals(np.arange(4), 4, 0.04, rng))[0])
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
    adv, _ = trainer._advantages(rollout)
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
    from kl_alloc.rl.allocators import make_allocator

    assert not make_allocator("hatrpo", TrainerConfig()).carry_leftover  # published baseline
    control = make_allocator("hatrpo", TrainerConfig(uniform_carry_leftover=True))
    assert isinstance(control, UniformAllocator) and control.carry_leftover
    # and the trainer honours it: some agent's radius exceeds its uniform share
    trainer = _trainer("hatrpo", uniform_carry_leftover=True)
    trainer.learn(10 * 1000, progress=False)
    radii = [a["radius"] for rec in trainer.history for a in rec["agents"]]
    assert max(radii) > trainer.config.delta * (1 + 1e-9)
    assert all(
        sum(a["kl"] for a in rec["agents"]) <= rec["delta_total"] * (1 + 1e-9)
        for rec in trainer.history
    )
