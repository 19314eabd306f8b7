"""The TRPO maths, all in one place: flat parameters, closed-form KL, conjugate gradient,
Fisher-vector products and the backtracking line search (algorithm.md section 1).

One trust-region step for a policy with surrogate L(theta) and old policy pi_old:

    g = grad L                                   (at theta_old)
    s = CG(F, g)   with F v = H_KL v + damping v (H_KL: Hessian of mean KL(pi_old || pi_theta))
    q = g^T s      (~ g^T F^-1 g: the agent's natural-gradient "utility", used by HATRPO-W)
    full step = sqrt(2 delta / s^T F s) * s      (the largest step with 1/2 x^T F x <= delta)
    line search: x = 0.8^k * full step, k = 0..9; accept the first x with
        KL(pi_old || pi_theta+x) <= delta, improvement > 0, improvement / (g^T x) > 0.5
    if nothing passes, the parameters stay at theta_old.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# -- flat parameters ---------------------------------------------------------------------------


def flat_params(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one detached 1-D tensor (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    """Inverse of :func:`flat_params`."""
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"flat: expected {offset} values, got {flat.numel()}")


def flat_grad(
    y: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    retain_graph: bool = False,
    create_graph: bool = False,
) -> torch.Tensor:
    """d y / d params, flattened; parameters ``y`` does not depend on get zeros."""
    grads = torch.autograd.grad(
        y,
        params,
        retain_graph=retain_graph or create_graph,
        create_graph=create_graph,
        allow_unused=True,
    )
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


# -- closed-form KL(old || new), per sample ----------------------------------------------------


def kl_categorical(old_log_probs: torch.Tensor, new_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k), from normalised log-probabilities (..., K)."""
    return torch.sum(old_log_probs.exp() * (old_log_probs - new_log_probs), dim=-1)


def kl_diag_gaussian(
    old_mean: torch.Tensor,
    old_log_std: torch.Tensor,
    new_mean: torch.Tensor,
    new_log_std: torch.Tensor,
) -> torch.Tensor:
    """KL(N(m0, s0^2) || N(m1, s1^2)) summed over the last (action) axis:
    sum_d log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2."""
    var_ratio = torch.exp(2.0 * (old_log_std - new_log_std))
    mahalanobis = ((old_mean - new_mean) * torch.exp(-new_log_std)) ** 2
    per_dim = (new_log_std - old_log_std) + 0.5 * (var_ratio + mahalanobis) - 0.5
    return per_dim.sum(dim=-1)


# -- conjugate gradient and the Fisher-vector product ------------------------------------------


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
    x0: torch.Tensor | None = None,
    ax0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A, given x -> A x.

    ``x0``: the starting point (warm start: r_0 = b - A x0, with ``ax0`` = A x0 if the caller
    has it, else one extra product); None starts at x = 0 (r_0 = b)."""
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.detach().clone()
        r = b - (matvec(x) if ax0 is None else ax0)
    p = r.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr <= residual_tol:
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    mean_kl: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    damping: float,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H v + damping v), H the Hessian of ``mean_kl()`` (KL(pi_old || pi_theta) averaged
    over the batch) at the current parameters, which equals the Fisher matrix at theta = theta_old.

    The KL gradient graph is built once and reused by every product (Pearlmutter's trick:
    H v = grad(grad(KL) . v)).
    """
    grad_kl = flat_grad(mean_kl(), params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad(torch.dot(grad_kl, v), params, retain_graph=True)
        return hv + damping * v

    return fvp


# -- the trust-region step ---------------------------------------------------------------------


@dataclass
class Direction:
    """The search direction of one trust-region step (reusable while M is unchanged)."""

    g: torch.Tensor  # surrogate gradient
    s: torch.Tensor  # CG(F, g) ~ F^-1 g
    sfs: float  # s^T F s
    base: float  # surrogate at theta_old
    fs: torch.Tensor | None = None  # F s (+ damping s): a warm start from s needs no product

    @property
    def utility(self) -> float:
        """q = g^T F^-1 g (>= 0): the squared natural-gradient norm."""
        return max(float(torch.dot(self.g, self.s)), 0.0)


@dataclass
class StepOutcome:
    """What a trust-region step found; ``params`` is the accepted parameter vector (or None)."""

    radius: float
    accepted: bool
    kl: float  # actual mean KL of the accepted step (0 if rejected)
    predicted_improvement: (
        float  # first-order g^T x of the accepted step (of the full step if none)
    )
    actual_improvement: float  # L(theta_new) - L(theta_old) (0 if rejected)
    utility: float
    ls_tries: int  # line-search evaluations made
    params: torch.Tensor | None = None
    ratio: torch.Tensor | None = None  # pi_new(a|s) / pi_old(a|s) per sample, if the caller kept it


def line_search(
    module: nn.Module,
    old: torch.Tensor,
    direction: Direction,
    radius: float,
    evaluate: Callable[[], tuple[float, float]],
    *,
    steps: int = 10,
    backtrack: float = 0.8,
    accept_ratio: float = 0.5,
) -> StepOutcome:
    """Backtracking search along the natural-gradient direction scaled to ``radius``.

    ``evaluate()`` returns ``(surrogate, mean KL)`` at the module's current parameters. The
    module's parameters are restored to ``old`` before returning: the caller commits.
    """
    utility = direction.utility
    if radius <= 0.0 or not direction.sfs > 0.0 or not math.isfinite(direction.sfs):
        return StepOutcome(radius, False, 0.0, 0.0, 0.0, utility, 0)
    full = math.sqrt(2.0 * radius / direction.sfs) * direction.s
    expected_full = float(torch.dot(direction.g, full))
    outcome = StepOutcome(radius, False, 0.0, expected_full, 0.0, utility, 0)
    try:
        frac = 1.0
        for k in range(steps):
            candidate = old + frac * full
            set_flat_params(module, candidate)
            surrogate, kl = evaluate()
            improvement = surrogate - direction.base
            expected = expected_full * frac
            outcome.ls_tries = k + 1
            if (
                math.isfinite(kl)
                and kl <= radius
                and improvement > 0.0
                and expected > 0.0
                and improvement / expected > accept_ratio
            ):
                outcome.accepted = True
                outcome.kl = kl
                outcome.predicted_improvement = expected
                outcome.actual_improvement = improvement
                outcome.params = candidate
                break
            frac *= backtrack
    finally:
        set_flat_params(module, old)
    return outcome
