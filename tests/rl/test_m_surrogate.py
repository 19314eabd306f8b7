"""The compounding factor M, pinned against an independent autograd computation.

HATRPO's sequential update (algorithm.md s.1): the agent updated m-th maximises
``mean(r_m * M * A)`` with ``M = prod_{k<m} r_k`` over the agents already committed, where
``r_k = pi_k,new(a_k|o_k) / pi_k,old(a_k|o_k)`` per sample (a product over action dimensions).
Here the surrogate gradient each later agent's step was computed from, its recorded predicted
improvement ``g^T (theta_new - theta_old)`` and its actual improvement must equal what autograd
gives for ``mean(r_m * r_1 * ... * r_{m-1} * A)``; and the data are built so that dropping M
(independent per-agent TRPO, ``weights = advantages``) is far outside the tolerance.

Everything that touches the update's implementation is in the two helpers under "the one place
that knows the update": a redesign changes those, not the checks.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kl_alloc.envs.base import ActionSpec
from kl_alloc.rl import Allocator, TrainerConfig, make_allocator
from kl_alloc.rl.policies import make_policy

N_SAMPLES = 512
OBS = 4
SPECS = [ActionSpec.continuous(3), ActionSpec.discrete(5), ActionSpec.continuous(2)]
DELTA = 0.01


class FixedOrder(Allocator):
    """Updates the agents in a given order, ``DELTA`` each, no leftover carried."""

    name = "fixed-order"

    def __init__(self, order):
        self.order = list(order)

    def allocate(self, signals):
        deltas = np.zeros(signals.n_agents)
        deltas[self.order] = DELTA
        return np.array(self.order, dtype=np.int64), deltas


# -- the one place that knows the update -----------------------------------------------------------


def run_sequential_update(policies, allocator, obs, actions, old_log_probs, advantages):
    """One sequential update; returns (records, gradients).

    records: per agent {"position", "accepted", "predicted_improvement", "actual_improvement"};
    gradients: agent -> the flat surrogate gradient of the LAST search direction computed for
    it (the one its committed step used)."""
    from kl_alloc.rl.update import AgentBatch, SequentialUpdate, TRPOSettings

    with torch.no_grad():
        batches = [
            AgentBatch(o, a, lp, p.dist(o).detach())
            for p, o, a, lp in zip(policies, obs, actions, old_log_probs, strict=True)
        ]
    updater = SequentialUpdate(policies, allocator, TRPOSettings())
    gradients: dict[int, torch.Tensor] = {}
    direction = updater.direction

    def spy(i, batch, weights, *args, **kwargs):  # (curvature, x0: the context's caches)
        d = direction(i, batch, weights, *args, **kwargs)
        gradients[i] = d.g.detach().clone()
        return d

    updater.direction = spy
    result = updater.run(batches, advantages, len(policies) * DELTA, np.random.default_rng(0))
    records = [
        {
            "position": r.position,
            "accepted": r.accepted,
            "predicted_improvement": r.predicted_improvement,
            "actual_improvement": r.actual_improvement,
        }
        for r in result.records
    ]
    return records, gradients


# -- the independent computation ------------------------------------------------------------------


def log_prob(policy, obs, actions):
    return policy.dist(obs).log_prob(actions)  # the policy's own density (sum over action dims)


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def make_problem(seed: int):
    torch.manual_seed(seed)
    policies = [make_policy(OBS, spec, hidden=(16,)) for spec in SPECS]
    gen = torch.Generator().manual_seed(seed)
    obs = [torch.randn(N_SAMPLES, OBS, generator=gen) for _ in SPECS]
    with torch.no_grad():
        actions = [p.dist(o).sample(N_SAMPLES, gen) for p, o in zip(policies, obs, strict=True)]
        old_lp = [log_prob(p, o, a) for p, o, a in zip(policies, obs, actions, strict=True)]
    # advantages that depend on every agent's action, so each r_k reweights the others' signal
    feats = torch.stack(
        [a.float().reshape(N_SAMPLES, -1).sum(-1) for a in actions], dim=1
    )  # (N, n)
    adv = torch.tanh(feats @ torch.tensor([1.0, -0.7, 0.5])) + 0.3 * torch.randn(
        N_SAMPLES, generator=gen
    )
    adv = (adv - adv.mean()) / adv.std()
    return policies, obs, actions, old_lp, adv


def check_m_surrogate(allocator, seed=0):
    policies, obs, actions, old_lp, adv = make_problem(seed)
    old_policies = copy.deepcopy(policies)
    records, gradients = run_sequential_update(policies, allocator, obs, actions, old_lp, adv)

    order = sorted((r["position"], i) for i, r in enumerate(records) if r["position"] is not None)
    order = [i for _, i in order]
    assert len(order) >= 2, "fewer than two agents updated: nothing to check"
    assert records[order[0]]["accepted"], "the first agent's step was rejected: M stayed 1"

    factor = torch.ones(N_SAMPLES)  # M: the ratios of the agents committed so far
    checked = 0
    for m, i in enumerate(order):
        with torch.no_grad():
            new_ratio = torch.exp(log_prob(policies[i], obs[i], actions[i]) - old_lp[i])
        if m > 0:
            # autograd of mean(r_i * M * A) at theta_i,old
            old = old_policies[i]
            params = list(old.parameters())
            r = torch.exp(log_prob(old, obs[i], actions[i]) - old_lp[i])
            g_ref = flat(
                torch.autograd.grad(torch.mean(r * factor * adv), params, retain_graph=True)
            )
            g_without_m = flat(torch.autograd.grad(torch.mean(r * adv), params))
            g = gradients[i]
            scale = float(g_ref.norm())
            assert scale > 0
            # the data make M matter: dropping it moves the gradient by far more than rounding
            assert float((g_without_m - g_ref).norm()) > 1e-2 * scale
            torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6 * scale)

            rec = records[i]
            assert rec["accepted"], f"agent {i} (position {m}) rejected: nothing to compare"
            step = flat(policies[i].parameters()).detach() - flat(params).detach()
            assert rec["predicted_improvement"] == pytest.approx(float(g_ref @ step), rel=1e-4)
            actual = float(torch.mean(new_ratio * factor * adv) - torch.mean(factor * adv))
            assert rec["actual_improvement"] == pytest.approx(actual, rel=1e-3, abs=1e-7)
            checked += 1
        if records[i]["accepted"]:
            factor = factor * new_ratio
    assert checked >= 1


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_later_agents_maximise_the_m_weighted_surrogate(order):
    check_m_surrogate(FixedOrder(order))


@pytest.mark.parametrize("algo", ["hatrpo", "hatrpo-w", "hatrpo-g"])
def test_every_method_uses_m(algo):
    """The same property whatever order the method's own allocator chooses."""
    check_m_surrogate(make_allocator(algo, TrainerConfig()), seed=1)
