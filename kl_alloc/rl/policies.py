"""Per-agent policies: categorical (discrete) and diagonal Gaussian with a learned,
state-independent log-std (continuous). Each agent has its own network sized for its own
observation and action; an agent with ``obs_size == 0`` (stateless game) has free parameters
instead (logits, or a mean vector), the same for every sample.

A policy maps observations to a small distribution object with ``log_prob``, ``kl`` (closed
form, from :mod:`kl_alloc.rl.trpo`), ``sample`` (with an explicit torch Generator, so runs are
reproducible and resumable) and ``mode`` (the deterministic evaluation action).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from kl_alloc.envs.base import ActionSpec
from kl_alloc.rl.trpo import kl_categorical, kl_diag_gaussian

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(
    in_size: int,
    hidden: Sequence[int],
    out_size: int,
    activation: str = "tanh",
    out_gain=0.01,
    feature_norm: bool = False,
    hidden_layer_norm: bool = False,
) -> nn.Sequential:
    """Orthogonally initialised MLP; a small output gain keeps the initial policy near-uniform.

    ``feature_norm`` puts a LayerNorm on the input (HARL's ``use_feature_normalization``);
    ``hidden_layer_norm`` puts one after every hidden activation (HARL's ``MLPLayer``:
    Linear -> activation -> LayerNorm). LayerNorms start at weight 1 / bias 0 and draw no random
    numbers, so with both off the layers, their initialisation and the RNG stream are unchanged.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    if feature_norm:
        layers.append(nn.LayerNorm(in_size))
    sizes = [in_size, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        if hidden_layer_norm:
            layers.append(nn.LayerNorm(b))
    layers.append(nn.Linear(sizes[-1], out_size))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            last = layer is layers[-1]
            nn.init.orthogonal_(layer.weight, gain=out_gain if last else math.sqrt(2.0))
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


# -- distributions -----------------------------------------------------------------------------


class Categorical:
    """pi(a) = softmax(logits)_a over the last axis."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.log_probs = torch.log_softmax(logits, dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        lp = self.log_probs.expand(actions.shape[0], -1)
        return lp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def kl(self, other: Categorical) -> torch.Tensor:
        """Per-sample KL(self || other)."""
        return kl_categorical(self.log_probs, other.log_probs)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # inverse CDF: one uniform per sample, cheaper than torch.multinomial on (n, K)
        probs = self.log_probs.exp().expand(n, -1)
        # drawn by the (CPU) generator, then moved: the same draws on every device
        u = torch.rand((n, 1), generator=generator, dtype=probs.dtype).to(probs.device)
        idx = (torch.cumsum(probs, dim=-1) < u).sum(dim=-1)
        return idx.clamp_(max=probs.shape[-1] - 1)

    def mode(self, n: int) -> torch.Tensor:
        return self.log_probs.argmax(dim=-1).expand(n)

    def entropy(self) -> torch.Tensor:
        """-sum_k p_k log p_k per sample (0 * log 0 = 0: masked actions add nothing)."""
        return -torch.sum(self.log_probs.exp() * self.log_probs, dim=-1)

    def detach(self) -> Categorical:
        out = Categorical.__new__(Categorical)
        out.log_probs = self.log_probs.detach().clone()
        return out


#: the logit of a masked action: exp(-1e9 - logsumexp) is exactly 0 in float32, yet finite, so
#: log-probabilities, KL (0 * finite) and entropy stay finite and their gradients are exact
MASKED_LOGIT = -1e9


class MaskedCategorical(Categorical):
    """pi(a) = softmax(logits masked)_a: actions with ``mask`` False get probability exactly 0.

    Masked logits are replaced by :data:`MASKED_LOGIT` (not -inf: 0 * (-inf) would make the KL
    NaN). The mask is per sample and fixed (stored with the rollout), so old and new policies
    share it and KL(old || new) sums over the allowed actions only. A row with no allowed action
    is a caller error (:class:`~kl_alloc.envs.pettingzoo.PettingZooEnv` refuses such masks).
    """

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor) -> None:
        mask = mask.to(torch.bool)
        self.mask = mask
        fill = torch.full((), MASKED_LOGIT, dtype=logits.dtype)
        super().__init__(torch.where(mask, logits, fill))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # inverse CDF on the allowed mass: idx = #{k: cdf_k <= u * cdf_K}. A masked k has
        # cdf_k = cdf_{k-1}, so it is never the first k with cdf_k > u * cdf_K; rounding at the
        # top end is caught by capping at the last allowed action
        probs = self.log_probs.exp().expand(n, -1)
        cdf = torch.cumsum(probs, dim=-1)
        u = torch.rand((n, 1), generator=generator, dtype=probs.dtype) * cdf[:, -1:]
        idx = (cdf <= u).sum(dim=-1)
        mask = self.mask.expand(n, -1)
        last = mask.shape[-1] - 1 - torch.argmax(mask.flip(-1).to(torch.int8), dim=-1)
        return torch.minimum(idx, last)


class DiagGaussian:
    """pi(a) = prod_d N(a_d; mean_d, exp(log_std_d)^2)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        per_dim = -0.5 * z * z - self.log_std - 0.5 * math.log(2.0 * math.pi)
        return per_dim.sum(dim=-1)

    def kl(self, other: DiagGaussian) -> torch.Tensor:
        """Per-sample KL(self || other)."""
        return kl_diag_gaussian(self.mean, self.log_std, other.mean, other.log_std)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        mean = self.mean.expand(n, -1)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + noise * torch.exp(self.log_std.expand(n, -1))

    def mode(self, n: int) -> torch.Tensor:
        return self.mean.expand(n, -1)

    def entropy(self) -> torch.Tensor:
        """sum_d (1/2 log(2 pi e) + log std_d) per sample."""
        per_dim = self.log_std + 0.5 * math.log(2.0 * math.pi * math.e)
        return per_dim.sum(dim=-1).expand(self.mean.shape[:-1])

    def detach(self) -> DiagGaussian:
        # clone: a free mean / the log-std ARE parameters; a view would follow later updates
        return DiagGaussian(self.mean.detach().clone(), self.log_std.detach().clone())


# -- policies ----------------------------------------------------------------------------------


class CategoricalPolicy(nn.Module):
    """Logits from an MLP on the agent's observation, or free logits when ``obs_size == 0``
    (initialised to zero: the uniform policy)."""

    def __init__(
        self,
        obs_size: int,
        n_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        feature_norm: bool = False,
        hidden_layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.obs_size, self.n_actions = int(obs_size), int(n_actions)
        if self.obs_size == 0:
            self.logits = nn.Parameter(torch.zeros(1, self.n_actions))
        else:
            self.net = mlp(
                self.obs_size,
                hidden,
                self.n_actions,
                activation,
                feature_norm=feature_norm,
                hidden_layer_norm=hidden_layer_norm,
            )

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> Categorical:
        """= :meth:`dist` (so ``torch.func.functional_call`` can run the policy)."""
        return self.dist(obs, mask)

    def dist(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> Categorical:
        """Stateless policies return a (1, K) distribution that broadcasts over the batch;
        with a (B, K) bool ``mask`` of allowed actions, a :class:`MaskedCategorical`."""
        logits = self.logits if self.obs_size == 0 else self.net(obs)
        return Categorical(logits) if mask is None else MaskedCategorical(logits, mask)

    def summary(self) -> np.ndarray:
        """Action probabilities (K,) of a stateless policy (for ``env.expected_reward``)."""
        with torch.no_grad():
            return torch.softmax(self.logits[0].double(), dim=-1).cpu().numpy()

    def summary_json(self) -> dict:
        return {"probs": self.summary().tolist()}


class GaussianPolicy(nn.Module):
    """Mean from an MLP on the observation (or a free mean vector when ``obs_size == 0``);
    the std is learned and state independent.

    ``std_param="exp"``: std = exp(log_std), ``log_std`` the parameter (initialised to
    ``init_log_std``). ``std_param="sigmoid"``: std = std_max * sigmoid(std_logit), as HARL's
    ``DiagGaussian`` (std_y_coef * sigmoid(log_std / std_x_coef) with std_x_coef = 1): bounded
    by ``std_max``; ``std_logit`` starts where std = exp(init_log_std) (needs std < std_max).
    """

    def __init__(
        self,
        obs_size: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
        init_mean: float = 0.0,
        feature_norm: bool = False,
        hidden_layer_norm: bool = False,
        std_param: str = "exp",
        std_max: float = 0.5,
    ) -> None:
        super().__init__()
        self.obs_size, self.act_dim = int(obs_size), int(act_dim)
        if self.obs_size == 0:
            self.mean = nn.Parameter(torch.full((1, self.act_dim), float(init_mean)))
        else:
            self.net = mlp(
                self.obs_size,
                hidden,
                self.act_dim,
                activation,
                feature_norm=feature_norm,
                hidden_layer_norm=hidden_layer_norm,
            )
            nn.init.constant_(self.net[-1].bias, float(init_mean))
        self.std_param = std_param
        if std_param == "exp":
            self.log_std = nn.Parameter(torch.full((self.act_dim,), float(init_log_std)))
        elif std_param == "sigmoid":
            frac = math.exp(float(init_log_std)) / float(std_max)
            if not 0.0 < frac < 1.0:
                raise ValueError(
                    f"init_log_std: std_param='sigmoid' needs exp(init_log_std) < std_max, got "
                    f"std {math.exp(float(init_log_std)):.4g} >= std_max {std_max}"
                )
            self.std_max = float(std_max)
            self.std_logit = nn.Parameter(
                torch.full((self.act_dim,), math.log(frac) - math.log1p(-frac))
            )
        else:
            raise ValueError(f"std_param: expected 'exp' or 'sigmoid', got {std_param!r}")

    def current_log_std(self) -> torch.Tensor:
        """log std (act_dim,), differentiable in the std parameter."""
        if self.std_param == "exp":
            return self.log_std
        return math.log(self.std_max) + nn.functional.logsigmoid(self.std_logit)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> DiagGaussian:
        """= :meth:`dist` (so ``torch.func.functional_call`` can run the policy)."""
        return self.dist(obs, mask)

    def dist(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> DiagGaussian:
        """``mask`` is accepted for a uniform call and ignored (continuous actions)."""
        mean = self.mean if self.obs_size == 0 else self.net(obs)
        return DiagGaussian(mean, self.current_log_std())

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of a stateless policy (for ``env.expected_reward``)."""
        with torch.no_grad():
            std = self.current_log_std().double().exp().cpu().numpy()
            return self.mean[0].double().cpu().numpy().copy(), std

    def summary_json(self) -> dict:
        mean, std = self.summary()
        return {"mean": mean.tolist(), "std": std.tolist()}


Policy = CategoricalPolicy | GaussianPolicy


def make_policy(
    obs_size: int,
    spec: ActionSpec,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    init_log_std: float = 0.0,
    init_mean: float = 0.0,
    feature_norm: bool = False,
    hidden_layer_norm: bool = False,
    std_param: str = "exp",
    std_max: float = 0.5,
) -> Policy:
    """The policy matching an agent's action space."""
    norms = dict(feature_norm=feature_norm, hidden_layer_norm=hidden_layer_norm)
    if spec.is_discrete:
        return CategoricalPolicy(obs_size, spec.n, hidden, activation, **norms)
    return GaussianPolicy(
        obs_size,
        spec.dim,
        hidden,
        activation,
        init_log_std,
        init_mean,
        std_param=std_param,
        std_max=std_max,
        **norms,
    )


def actions_to_numpy(actions: torch.Tensor, spec: ActionSpec) -> np.ndarray:
    """int64 (n,) for discrete agents, float32 (n, dim) for continuous ones (the env clips)."""
    return actions.cpu().numpy().astype(np.int64 if spec.is_discrete else np.float32, copy=False)
