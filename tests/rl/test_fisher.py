"""The cheaper direction machinery: the Gauss-Newton Fisher product, the cached curvature and
warm-started CG (kl_alloc.rl.fisher, kl_alloc.rl.update.Curvature, cg_warm_iters)."""

import numpy as np
import pytest
import torch

from kl_alloc.envs.base import ActionSpec
from kl_alloc.rl.allocators import GreedyAllocator, UniformAllocator, WaterFillAllocator
from kl_alloc.rl.config import TrainerConfig
from kl_alloc.rl.fisher import GaussNewtonFisher
from kl_alloc.rl.policies import make_policy
from kl_alloc.rl.trpo import conjugate_gradient, fisher_vector_product
from kl_alloc.rl.update import AgentBatch, SequentialUpdate, TRPOSettings


def _policy_batch(act_dim=2, obs_size=5, n=300, seed=0, valid=False, **kw):
    torch.manual_seed(seed)
    spec = ActionSpec.continuous(act_dim) if act_dim else ActionSpec.discrete(3)
    policy = make_policy(obs_size, spec, hidden=(16, 8), init_log_std=-0.4, **kw).double()
    with torch.no_grad():  # off the symmetric initialisation: a generic Fisher
        for p in policy.parameters():
            p.add_(0.2 * torch.randn_like(p))
    obs = torch.randn(n, obs_size, dtype=torch.float64)
    with torch.no_grad():
        dist = policy.dist(obs)
        actions = dist.sample(n, torch.Generator().manual_seed(seed))
        batch = AgentBatch(obs, actions, dist.log_prob(actions), dist.detach())
    if valid:
        batch.valid = torch.rand(n, generator=torch.Generator().manual_seed(1)) > 0.3
    return policy, batch


def _hessian_fvp(policy, batch, damping):
    dist = batch.dist(policy)
    return fisher_vector_product(
        lambda: SequentialUpdate._mean_kl(batch, dist), list(policy.parameters()), damping
    )


@pytest.mark.parametrize(
    "act_dim,kw,valid",
    [
        (1, {}, False),
        (3, {}, False),
        (2, {"activation": "relu", "feature_norm": True, "hidden_layer_norm": True}, False),
        (2, {"std_param": "sigmoid", "std_max": 1.0, "activation": "elu"}, False),
        (2, {}, True),
    ],
)
def test_gauss_newton_product_equals_the_kl_hessian(act_dim, kw, valid):
    """At theta_old, J^T H_out J is the Hessian of the mean KL: both products agree to float64
    rounding on random vectors, for every supported network / std / validity mask."""
    policy, batch = _policy_batch(act_dim, valid=valid, **kw)
    assert GaussNewtonFisher.supports(policy)
    hess = _hessian_fvp(policy, batch, 0.1)
    gn = GaussNewtonFisher(policy, batch, 0.1)
    n = sum(p.numel() for p in policy.parameters())
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(n, generator=gen, dtype=torch.float64)
        a, b = hess(v), gn(v)
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), float((a - b).abs().max())


def test_gauss_newton_unsupported_policies_fall_back():
    categorical, _ = _policy_batch(act_dim=0)
    stateless = make_policy(0, ActionSpec.continuous(2))
    assert not GaussNewtonFisher.supports(categorical)
    assert not GaussNewtonFisher.supports(stateless)
    with pytest.raises(ValueError, match="policy"):
        GaussNewtonFisher(stateless, None, 0.1)


def test_warm_started_cg_converges_from_a_nearby_solution():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, generator=gen, dtype=torch.float64)
    spd = a @ a.T / 30 + 0.1 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    exact = torch.linalg.solve(spd, b)
    b2 = b + 0.05 * torch.randn(30, generator=gen, dtype=torch.float64)
    exact2 = torch.linalg.solve(spd, b2)
    cold = conjugate_gradient(lambda v: spd @ v, b2, iters=3)
    warm = conjugate_gradient(lambda v: spd @ v, b2, iters=3, x0=exact)
    assert (warm - exact2).norm() < 0.2 * (cold - exact2).norm()
    # a caller that has A x0 passes it: the same iterates, one product fewer
    calls = []

    def counted(v):
        calls.append(1)
        return spd @ v

    given = conjugate_gradient(counted, b2, iters=3, x0=exact, ax0=spd @ exact)
    assert torch.equal(given, warm) and len(calls) == 3
    # from the exact solution it stays there
    again = conjugate_gradient(lambda v: spd @ v, b, iters=3, x0=exact)
    assert torch.allclose(again, exact, atol=1e-8)


def _agents(n=4, seed=0):
    policies, batches = [], []
    for i in range(n):
        p, b = _policy_batch(act_dim=1, obs_size=4, n=200, seed=seed + i)
        policies.append(p.float())
        b.obs, b.actions, b.old_log_probs = (
            b.obs.float(),
            b.actions.float(),
            b.old_log_probs.float(),
        )
        with torch.no_grad():
            b.old_dist = b.dist(policies[-1]).detach()
            b.old_log_probs = b.old_dist.log_prob(b.actions)
        batches.append(b)
    adv = torch.randn(200, generator=torch.Generator().manual_seed(seed))
    return policies, batches, adv


def _run(allocator, settings, seed=0):
    policies, batches, adv = _agents(seed=seed)
    res = SequentialUpdate(policies, allocator, settings).run(
        batches, adv, 0.04, np.random.default_rng(0)
    )
    params = torch.cat([torch.cat([p.reshape(-1) for p in q.parameters()]) for q in policies])
    return res, params.detach()


@pytest.mark.parametrize("allocator", [UniformAllocator, WaterFillAllocator, GreedyAllocator])
def test_cached_curvature_gives_the_numbers_of_fresh_directions(allocator, monkeypatch):
    """The per-iteration cache of forward + Fisher graph is bit-identical to rebuilding them
    for every direction (what the code did before)."""
    cached, p_cached = _run(allocator(), TRPOSettings())

    def fresh(self, i, batch, weights, curvature=None, x0=None):
        return original(self, i, batch, weights, None, x0)

    original = SequentialUpdate.direction
    monkeypatch.setattr(SequentialUpdate, "direction", fresh)
    rebuilt, p_rebuilt = _run(allocator(), TRPOSettings())
    assert torch.equal(p_cached, p_rebuilt)
    assert cached.order == rebuilt.order
    assert [r.to_json() for r in cached.records] == [r.to_json() for r in rebuilt.records]


def test_gauss_newton_and_warm_start_runs_stay_close_to_the_reference():
    """The opt-in levers change rounding (GN) or the CG start (warm): the update still
    allocates nearly the same and stays within the budget."""
    ref, p_ref = _run(WaterFillAllocator(), TRPOSettings())
    gn, p_gn = _run(WaterFillAllocator(), TRPOSettings(fvp="gauss_newton"))
    warm, _ = _run(WaterFillAllocator(), TRPOSettings(fvp="gauss_newton", cg_warm_iters=4))
    assert gn.order == ref.order
    for a, b in zip(ref.records, gn.records, strict=True):
        assert a.delta_alloc == pytest.approx(b.delta_alloc, rel=1e-3, abs=1e-9)
    p0 = torch.cat([torch.cat([p.reshape(-1) for p in q.parameters()]) for q in _agents()[0]])
    step = (p_ref - p0).norm()
    assert step > 0 and (p_gn - p_ref).norm() < 0.02 * step
    assert warm.budget_used <= 0.04 * (1 + 1e-9)
    assert [r.utility for r in warm.records] == [r.utility for r in gn.records]  # M = 1: cold


def test_config_fields_are_checked():
    assert TrainerConfig().fvp == "hessian" and TrainerConfig().cg_warm_iters is None
    with pytest.raises(ValueError, match="fvp"):
        TrainerConfig(fvp="exact")
    with pytest.raises(ValueError, match="cg_warm_iters"):
        TrainerConfig(cg_warm_iters=0)


def test_trainer_passes_the_fields_to_the_update():
    from kl_alloc.rl import Trainer

    cfg = TrainerConfig.for_env("matrix", fvp="gauss_newton", cg_warm_iters=3)
    trainer = Trainer("matrix", "hatrpo-w", cfg, 0)
    assert (trainer.updater.settings.fvp, trainer.updater.settings.cg_warm_iters) == (
        "gauss_newton",
        3,
    )
    trainer.learn(2 * trainer.steps_per_iteration, progress=False)  # stateless: Hessian form
    assert trainer.iteration == 2
