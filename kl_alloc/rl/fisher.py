"""The Fisher-vector product of a Gaussian MLP policy from per-sample Jacobians (the
Gauss-Newton form), instead of a double backward through the KL.

At theta = theta_old the Hessian of the mean KL(pi_old || pi_theta) is exactly

    F = J^T H_out J,      H_out = d^2 KL / d out^2 at out = out_old,

because dKL/d out = 0 there (the second-order term of the chain rule vanishes). For a diagonal
Gaussian with outputs (mean (B, d), log_std (d,)) and sample weights w_b (1/B, or
valid_b / #valid), H_out is diagonal: w_b exp(-2 log_std_k) on mean_{b,k}, 2 sum_b w_b on
log_std_k, nothing across. J v and J^T u of an MLP come from its per-sample Jacobians, which
are outer products: for a Linear layer z = W a + b with input a_b and the back-propagated
Delta_{k,b} = d mean_{b,k} / d z_b (one backward per action dimension, once),

    (J v)_{b,k} = sum_layers Delta_{k,b} . (V_W a_b + V_b)                     (B x in x out)
    (J^T u)_W   = sum_k (Delta_k * u_k)^T A,   (J^T u)_b = sum_{k,b} Delta_k * u_k

and for a LayerNorm y = xhat * gamma + beta the same with xhat in place of a (elementwise).
Per product: two GEMMs per Linear layer, no activation derivatives, no second-order graph
(the double backward costs about three forwards, five with LayerNorms). The matrix is the same;
the float32 rounding is not, so a run with ``fvp="gauss_newton"`` is not bit-identical to one
with the default ``"hessian"`` (relative difference of a product ~1e-7).

Supported: :class:`~kl_alloc.rl.policies.GaussianPolicy` with an MLP (Linear, LayerNorm with
affine parameters, parameter-free activations) and either std parametrisation. Anything else
(categorical policies, stateless agents, custom networks): :meth:`GaussNewtonFisher.supports`
is False and the caller uses the Hessian form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kl_alloc.rl.policies import GaussianPolicy

_PARAM_FREE = (nn.Tanh, nn.ReLU, nn.ELU)


class GaussNewtonFisher:
    """v -> F v + damping v for a Gaussian MLP policy on one batch, at its current parameters
    (see the module docstring); ``v`` is flat in the order of ``policy.parameters()``."""

    @staticmethod
    def supports(policy: nn.Module) -> bool:
        """True for a Gaussian policy whose network this class can differentiate per sample."""
        if not isinstance(policy, GaussianPolicy) or policy.obs_size == 0:
            return False
        for layer in policy.net:
            if isinstance(layer, nn.LayerNorm):
                if layer.weight is None or layer.bias is None:
                    return False
            elif isinstance(layer, nn.Linear):
                if layer.bias is None:
                    return False
            elif not isinstance(layer, _PARAM_FREE):
                return False
        return True

    def __init__(self, policy: GaussianPolicy, batch, damping: float) -> None:
        if not self.supports(policy):
            raise ValueError(f"policy: GaussNewtonFisher does not support {type(policy).__name__}")
        self.damping = float(damping)
        self.sizes = [p.numel() for p in policy.parameters()]
        index = {id(p): k for k, p in enumerate(policy.parameters())}
        std_param = policy.log_std if policy.std_param == "exp" else policy.std_logit
        self.std_index = index[id(std_param)]
        # sample weights of the mean KL: 1/B, or valid / #valid
        n = batch.obs.shape[0]
        if batch.valid is None:
            w = torch.full((n,), 1.0 / n, dtype=batch.obs.dtype, device=batch.obs.device)
        else:
            valid = batch.valid.to(batch.obs.dtype)
            w = valid / torch.clamp(valid.sum(), min=1.0)
        with torch.no_grad():
            log_std = policy.current_log_std().detach()
            self.mean_metric = w[None, :] * torch.exp(-2.0 * log_std)[:, None]  # (d, B)
            # log_std = theta (exp) or log(std_max) + logsigmoid(theta): d log_std / d theta
            dls = (
                torch.ones_like(log_std) if policy.std_param == "exp" else torch.sigmoid(-std_param)
            )
            self.std_metric = 2.0 * w.sum() * dls * dls  # (d,)
        self.layers = self._per_sample_jacobians(policy, batch.obs)

    def _per_sample_jacobians(self, policy: GaussianPolicy, obs: torch.Tensor) -> list[tuple]:
        """Per parameterised layer: (kind, weight index, bias index, input or xhat, Delta (d, B,
        out)), Delta_k = d mean[:, k].sum() / d (layer output) = the per-sample back-propagation."""
        index = {id(p): k for k, p in enumerate(policy.parameters())}
        recs: list[tuple[str, int, int, torch.Tensor]] = []
        outs: list[torch.Tensor] = []
        with torch.enable_grad():
            x = obs
            for layer in policy.net:
                if isinstance(layer, nn.Linear):
                    recs.append(("linear", index[id(layer.weight)], index[id(layer.bias)], x))
                    x = layer(x)
                    outs.append(x)
                elif isinstance(layer, nn.LayerNorm):
                    xhat = F.layer_norm(x, layer.normalized_shape, None, None, layer.eps)
                    recs.append(("norm", index[id(layer.weight)], index[id(layer.bias)], xhat))
                    x = xhat * layer.weight + layer.bias
                    outs.append(x)
                else:
                    x = layer(x)
            d = x.shape[-1]
            deltas = [
                torch.autograd.grad(x[:, k].sum(), outs, retain_graph=k < d - 1) for k in range(d)
            ]
        return [
            (kind, wi, bi, a.detach(), torch.stack([dk[j] for dk in deltas]))
            for j, (kind, wi, bi, a) in enumerate(recs)
        ]

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        parts = list(v.split(self.sizes))
        # J v for the mean: (d, B)
        jv = None
        for kind, wi, bi, a, delta in self.layers:
            vw, vb = parts[wi], parts[bi]
            if kind == "linear":
                z = torch.addmm(vb, a, vw.view(delta.shape[-1], a.shape[-1]).t())
            else:
                z = a * vw + vb
            term = (delta * z).sum(-1)
            jv = term if jv is None else jv + term
        u = jv * self.mean_metric  # H_out (J v)
        out: list[torch.Tensor] = [torch.zeros(0)] * len(parts)
        for kind, wi, bi, a, delta in self.layers:
            dl = (delta * u[:, :, None]).sum(0)  # (B, out)
            out[wi] = (dl.t() @ a).reshape(-1) if kind == "linear" else (dl * a).sum(0)
            out[bi] = dl.sum(0)
        out[self.std_index] = self.std_metric * parts[self.std_index]
        return torch.cat(out) + self.damping * v
