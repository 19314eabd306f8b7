"""The TRPO maths: CG, the Fisher-vector product, closed-form KL, the line search."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from kl_alloc.envs.base import ActionSpec
from kl_alloc.rl.policies import Categorical, DiagGaussian, make_policy
from kl_alloc.rl.trpo import (
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    kl_categorical,
    kl_diag_gaussian,
    set_flat_params,
)
from kl_alloc.rl.update import AgentBatch, SequentialUpdate, TRPOSettings


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    spd = a @ a.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=50)
    expected = torch.linalg.solve(spd, b)
    assert torch.allclose(x, expected, rtol=1e-8, atol=1e-8)
    # 10 iterations on a well-conditioned system are already close
    well = torch.eye(12, dtype=torch.float64) + 0.1 * spd / torch.linalg.matrix_norm(spd, 2)
    x10 = conjugate_gradient(lambda v: well @ v, b, iters=10)
    assert torch.allclose(x10, torch.linalg.solve(well, b), atol=1e-6)


def test_conjugate_gradient_zero_rhs():
    x = conjugate_gradient(lambda v: 2 * v, torch.zeros(5), iters=10)
    assert torch.equal(x, torch.zeros(5))


def _tiny_batch(spec: ActionSpec, obs_size: int, n: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    policy = make_policy(obs_size, spec, hidden=(5,), init_log_std=-0.3).double()
    # move off the symmetric initialisation so the Fisher is generic
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = torch.randn(n, obs_size, dtype=torch.float64)
    return policy, obs


@pytest.mark.parametrize(
    "spec,obs_size",
    [
        (ActionSpec.discrete(3), 2),
        (ActionSpec.continuous(2), 2),
        (ActionSpec.discrete(4), 0),
        (ActionSpec.continuous(1), 0),
    ],
)
def test_fvp_equals_explicit_fisher(spec, obs_size):
    policy, obs = _tiny_batch(spec, obs_size)
    with torch.no_grad():
        old = policy.dist(obs).detach()
    theta0 = flat_params(policy)
    shapes = {name: p.shape for name, p in policy.named_parameters()}

    class DistOf(torch.nn.Module):  # functional_call needs forward(); the policy exposes dist()
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, o):
            return self.p.dist(o)

    wrapper = DistOf(policy)

    def mean_kl(flat):
        params, offset = {}, 0
        for name, shape in shapes.items():
            k = math.prod(shape)
            params["p." + name] = flat[offset : offset + k].view(shape)
            offset += k
        return old.kl(functional_call(wrapper, params, (obs,))).mean()

    fisher = torch.autograd.functional.hessian(mean_kl, theta0)
    damping = 0.1
    fvp = fisher_vector_product(
        lambda: old.kl(policy.dist(obs)).mean(), list(policy.parameters()), damping
    )
    rng = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(theta0.numel(), generator=rng, dtype=torch.float64)
        expected = fisher @ v + damping * v
        assert torch.allclose(fvp(v), expected, rtol=1e-8, atol=1e-10)
    # the KL Hessian at theta_old is the Fisher information E[score score^T] (symmetric PSD)
    assert torch.allclose(fisher, fisher.T, atol=1e-10)
    assert torch.linalg.eigvalsh(fisher).min() > -1e-10


def test_categorical_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    p_logits = torch.randn(1, 6, generator=g, dtype=torch.float64)
    q_logits = torch.randn(1, 6, generator=g, dtype=torch.float64)
    p, q = Categorical(p_logits), Categorical(q_logits)
    analytic = kl_categorical(p.log_probs, q.log_probs).item()
    a = p.sample(400_000, g)
    mc = (p.log_prob(a) - q.log_prob(a)).mean().item()
    assert analytic > 0.05
    assert mc == pytest.approx(analytic, abs=4e-3)
    assert kl_categorical(p.log_probs, p.log_probs).item() == pytest.approx(0.0, abs=1e-15)


def test_gaussian_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    m0 = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    m1 = torch.tensor([[0.0, -0.5, 2.5]], dtype=torch.float64)
    s0 = torch.tensor([0.0, -0.5, 0.2], dtype=torch.float64)
    s1 = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    p, q = DiagGaussian(m0, s0), DiagGaussian(m1, s1)
    analytic = kl_diag_gaussian(m0, s0.expand_as(m0), m1, s1.expand_as(m1)).item()
    assert analytic == pytest.approx(p.kl(q).item())
    a = p.sample(400_000, g)
    mc = (p.log_prob(a) - q.log_prob(a)).mean().item()
    assert analytic > 0.1
    assert mc == pytest.approx(analytic, abs=6e-3)


def test_distribution_detach_is_a_snapshot():
    """The old policy must not follow later parameter updates (a free mean IS a parameter)."""
    policy = make_policy(0, ActionSpec.continuous(1), init_mean=1.5)
    old = policy.dist(torch.zeros(4, 0)).detach()
    set_flat_params(policy, flat_params(policy) + 1.0)
    assert old.kl(policy.dist(torch.zeros(4, 0))).mean().item() > 0.1


def test_line_search_never_accepts_above_radius():
    """Random policies, advantages and radii: an accepted step's KL (recomputed here) never
    exceeds its radius, and a rejected step leaves the parameters unchanged."""
    tries = [_line_search_case(seed) for seed in range(6)]
    assert max(max(t) for t in tries) > 1  # the full step overshot and was cut back somewhere


def _line_search_case(seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    spec = ActionSpec.discrete(4) if seed % 2 else ActionSpec.continuous(2)
    obs_size = int(rng.integers(0, 3))
    policy = make_policy(obs_size, spec, hidden=(8,))
    n = 256
    obs = torch.randn(n, obs_size)
    with torch.no_grad():
        dist = policy.dist(obs)
        actions = dist.sample(n, torch.Generator().manual_seed(seed))
        batch = AgentBatch(obs, actions, dist.log_prob(actions), dist.detach())
    # a strong signal and a tiny damping push the quadratic model to overshoot
    weights = torch.as_tensor(rng.normal(size=n) * 3.0, dtype=torch.float32)
    upd = SequentialUpdate([policy], None, TRPOSettings(cg_damping=1e-3))
    before = flat_params(policy)
    tries = []
    for radius in (1e-4, 1e-2, 0.3, 2.0):
        out = upd.step(0, batch, weights, radius, upd.direction(0, batch, weights))
        assert torch.equal(flat_params(policy), before)  # the step is tentative
        if out.accepted:
            set_flat_params(policy, out.params)
            with torch.no_grad():
                kl = batch.old_dist.kl(policy.dist(obs)).mean().item()
            set_flat_params(policy, before)
            assert kl == pytest.approx(out.kl, rel=1e-5, abs=1e-9)
            assert out.kl <= radius
            assert out.actual_improvement > 0
            assert out.actual_improvement / out.predicted_improvement > 0.5
        else:
            assert out.kl == 0.0 and out.params is None
        tries.append(out.ls_tries)
    return tries
