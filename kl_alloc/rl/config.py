"""Every trainer default, documented in one place.

    cfg = TrainerConfig()                         # HATRPO reference defaults (algorithm.md s.1)
    cfg = TrainerConfig.for_env("matrix")         # a per-env preset
    cfg = TrainerConfig.for_env("differential", delta=0.02)   # preset + overrides

The allocation defaults (``delta_total``, ``wf_floor``, ``delta_min``/``delta_max``,
``greedy_eps``, ``rescore``, ``carry``) are the plain ones of algorithm.md; the ablation
on the games (docs/results.md) is what should confirm or replace them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

#: config fields that never change a number (how the work is spread): a resumed run may use
#: other values than the run's own
EXECUTION_FIELDS = ("num_workers",)


@dataclass
class TrainerConfig:
    # -- trust region and budget ------------------------------------------------------------------
    delta: float = 0.01
    """Per-agent KL threshold of HATRPO (0.01 on MaMuJoCo; 0.005 Ant 4x2, 0.001 Hopper 3x1)."""
    delta_total: float | None = None
    """Joint KL budget per iteration; None = n_agents * delta (HATRPO's split is then feasible)."""

    # -- the TRPO step (algorithm.md s.1) ---------------------------------------------------------
    cg_iters: int = 10
    """Conjugate-gradient iterations for s = F^-1 g."""
    cg_damping: float = 0.1
    """Added to the Fisher-vector product: (F + damping I) v."""
    ls_steps: int = 10
    """Backtracking line-search tries."""
    ls_backtrack: float = 0.8
    """Step shrink factor per try."""
    accept_ratio: float = 0.5
    """Accept only if actual / expected (first-order) improvement exceeds this."""
    fvp: str = "hessian"
    """How CG multiplies by the Fisher matrix: "hessian" (double backward through the KL, the
    reference) or "gauss_newton" (the same matrix as J^T H J from per-sample Jacobians: 3-5x
    cheaper per product on MLP Gaussian policies, others fall back to "hessian"; the float32
    rounding differs, so numbers are not bit-identical to "hessian")."""
    cg_warm_iters: int | None = None
    """None = every CG solve starts at 0 with cg_iters iterations (the reference). k = a solve
    for an agent whose direction was already computed this iteration at another M (HATRPO-W's
    commit phase, HATRPO-G's re-probes) starts from that solution and runs k iterations
    (changes numbers; cheaper when k < cg_iters)."""

    # -- allocation (HATRPO-W / HATRPO-G, algorithm.md s.4) ---------------------------------------
    wf_floor: float = 0.0
    """Water-filling floor c_i: delta_i = clip(w_i * mu - c_i, delta_min, delta_max)."""
    delta_min: float = 0.0
    """Lower bound on an agent's allocation (W). n_agents * delta_min must be <= delta_total."""
    delta_max: float | None = None
    """W: upper bound on an agent's allocation; G: the largest probe radius
    (``GreedyAllocator.max_probe_radius``); None = no cap."""
    greedy_eps: float = 1e-4
    """eps in the greedy score L_j / (D_j + eps)."""
    rescore: bool = True
    """HATRPO-G re-probes the remaining agents after every commit (as published); False = score
    once at M = 1 and update in score order (n probes instead of n(n+1)/2)."""
    carry: bool | None = None
    """Budget an agent leaves unused flows to the next agent in the order. None = the method's
    default: HATRPO does not carry (the published baseline), W and G do. True for HATRPO is the
    control that separates W's gain from re-using unspent budget from its gain from the split."""
    utility: str = "natural_gradient"
    """W's per-agent signal: "natural_gradient" (q_i = g^T F^-1 g) or "grad_norm" (||g||^2)."""

    # -- returns and advantages -------------------------------------------------------------------
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    """Normalise the joint advantages (mean 0, std 1) once per iteration."""

    # -- critic -----------------------------------------------------------------------------------
    critic_lr: float = 5e-4
    critic_epochs: int = 5
    critic_minibatches: int = 1
    critic_hidden: tuple[int, ...] = (64, 64)
    normalize_values: bool = False
    """Critic predicts standardised returns (running mean/std); useful with large returns.
    HARL's ``use_valuenorm`` is the nearest equivalent, not the same: its ValueNorm is an
    exponential moving average (beta 0.99999) updated at every critic minibatch."""
    critic_loss: str = "mse"
    """"mse": mean of (V - R)^2. "huber": torch's Huber loss with ``huber_delta`` (HARL's
    ``use_huber_loss``: e^2/2 for |e| <= delta, else delta * (|e| - delta/2))."""
    huber_delta: float = 10.0
    """Delta of the Huber loss (HARL's ``huber_delta``); used only with critic_loss="huber"."""
    value_clip: float | None = None
    """Clipped value loss (HARL's ``use_clipped_value_loss`` with ``clip_param``): the max of the
    loss of V and of V_old + clip(V - V_old, -value_clip, value_clip), V_old the critic's output
    before this iteration's fit. None = no clipping."""
    critic_max_grad_norm: float | None = None
    """Clip the critic's gradient norm to this before each Adam step (HARL's ``max_grad_norm``
    with ``use_max_grad_norm``). None = no clipping."""
    critic_adam_eps: float = 1e-8
    """eps of the critic's Adam (torch's default 1e-8; HARL's ``opti_eps`` is 1e-5)."""

    # -- policies ---------------------------------------------------------------------------------
    hidden: tuple[int, ...] = (64, 64)
    """Per-agent MLP hidden sizes (ignored for stateless agents: free parameters)."""
    activation: str = "tanh"
    """Hidden activation of the policies and of the critic ("tanh", "relu", "elu")."""
    feature_norm: bool = False
    """LayerNorm on the input of every network, policies and critic (HARL's
    ``use_feature_normalization``); its weight and bias are trained like the rest."""
    hidden_layer_norm: bool = False
    """LayerNorm after every hidden activation, policies and critic (HARL's ``MLPLayer`` does
    Linear -> activation -> LayerNorm in every hidden layer, always)."""
    init_log_std: float = 0.0
    """Initial log-std of Gaussian policies (state independent, learned)."""
    std_param: str = "exp"
    """Gaussian std parametrisation: "exp" (std = exp(log_std)) or "sigmoid" (std = std_max *
    sigmoid(p), HARL's DiagGaussian with std_x_coef = 1, std_y_coef = std_max; p starts where
    std = exp(init_log_std)). It changes the Fisher metric of the std parameter and bounds std."""
    std_max: float = 0.5
    """Upper bound of the std with std_param="sigmoid" (HARL's ``std_y_coef``)."""
    init_action_mean: float = 0.0
    """Initial mean action of Gaussian policies (free mean, or the output-layer bias)."""

    # -- rollouts ---------------------------------------------------------------------------------
    num_envs: int = 20
    """Env copies when the Trainer builds the env from a name (an env instance keeps its own)."""
    rollout_length: int = 200
    """Steps per copy per iteration: samples per iteration = num_envs * rollout_length."""
    normalize_obs: bool = False
    """Running mean/var normalisation of every agent's observation and of the global state."""
    obs_clip: float = 10.0

    num_workers: int = 1
    """Env worker processes stepping the copies (:mod:`kl_alloc.envs.workers`); 1 = in the
    training process. The numbers do not depend on it. Needs an env from the registry whose
    factory takes ``copy_offset`` (every built-in env does)."""

    # -- where the learner runs -------------------------------------------------------------------
    device: str = "cpu"
    """torch device of the policies, the critic and the TRPO step (CG, line search), e.g.
    "cuda" or "cuda:1". Only "cpu" is tested; the env, the rollout's random draws (the seeded
    CPU generator, so a device does not change which noise is drawn) and the checkpoints stay
    on the CPU."""

    # -- bookkeeping ------------------------------------------------------------------------------
    eval_every: int = 0
    """Evaluate the deterministic policy every this many iterations (0 = only at the end)."""
    eval_episodes: int = 10
    checkpoint_every: int = 10
    """Write checkpoint.pt every this many iterations (and always at the end); 0 = end only."""

    # -- presets -----------------------------------------------------------------------------------
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra kwargs for make_env when the Trainer builds the env from a name."""

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        positive = ("delta", "cg_damping", "critic_lr", "ls_backtrack")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.delta_total is not None and not self.delta_total > 0:
            raise ValueError(f"delta_total must be > 0 or None, got {self.delta_total}")
        if self.ls_backtrack >= 1:
            raise ValueError(f"ls_backtrack must be in (0, 1), got {self.ls_backtrack}")
        for name in ("wf_floor", "delta_min", "greedy_eps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.delta_max is not None and not self.delta_max > 0:
            raise ValueError(f"delta_max must be > 0 or None, got {self.delta_max}")
        if self.utility not in ("natural_gradient", "grad_norm"):
            raise ValueError(f"utility: expected natural_gradient|grad_norm, got {self.utility!r}")
        if self.fvp not in ("hessian", "gauss_newton"):
            raise ValueError(f"fvp: expected hessian|gauss_newton, got {self.fvp!r}")
        if self.cg_warm_iters is not None and int(self.cg_warm_iters) < 1:
            raise ValueError(f"cg_warm_iters must be >= 1 or None, got {self.cg_warm_iters}")
        for name in ("cg_iters", "ls_steps", "critic_epochs", "critic_minibatches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_envs", "rollout_length", "num_workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError("gamma and gae_lambda must be in [0, 1]")
        if self.critic_loss not in ("mse", "huber"):
            raise ValueError(f"critic_loss: expected mse|huber, got {self.critic_loss!r}")
        for name in ("huber_delta", "critic_adam_eps", "std_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("value_clip", "critic_max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if self.std_param not in ("exp", "sigmoid"):
            raise ValueError(f"std_param: expected exp|sigmoid, got {self.std_param!r}")
        if self.std_param == "sigmoid" and not math.exp(self.init_log_std) < self.std_max:
            raise ValueError(
                f"init_log_std: with std_param='sigmoid' the initial std exp({self.init_log_std})"
                f" must be < std_max = {self.std_max}"
            )

    def budget(self, n_agents: int) -> float:
        """The joint KL budget for ``n_agents`` (validated against delta_min)."""
        total = n_agents * self.delta if self.delta_total is None else float(self.delta_total)
        if n_agents * self.delta_min > total * (1 + 1e-12):
            raise ValueError(
                f"delta_min: n_agents * delta_min = {n_agents * self.delta_min} exceeds "
                f"delta_total = {total}"
            )
        return total

    @classmethod
    def for_env(cls, name: str, preset: str = "default", **overrides: Any) -> TrainerConfig:
        """The env's preset (its registry entry's, see :mod:`kl_alloc.envs.registry`; plain
        defaults if it has none), with keyword overrides."""
        from kl_alloc.envs.registry import env_preset

        return cls(**{**env_preset(name, preset, overrides.get("env_kwargs")), **overrides})

    def replace(self, **changes: Any) -> TrainerConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def stored_as(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A stored config (JSON) with the defaults of fields added since filled in, in JSON
        types: compare two of these to tell whether a run directory may be continued. Unknown
        fields are kept, so they show up as a difference."""
        data = migrate_stored(data)
        known = {f.name for f in dataclasses.fields(cls)}
        base = json.loads(
            json.dumps(cls.from_dict({k: v for k, v in data.items() if k in known}).to_dict())
        )
        return {**base, **{k: v for k, v in data.items() if k not in known}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        """A config from its ``to_dict`` form, including the forms older runs stored (see
        :func:`migrate_stored`)."""
        data = migrate_stored(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}")
        return cls(**data)


def migrate_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config in today's fields. Older runs stored the carry-over as two flags:
    ``carry_leftover`` (W and G carry; default True) and, from the carry-over control on,
    ``uniform_carry_leftover`` (HATRPO carries too; default False). They become ``carry``:
    (True, False) -> None (each method's default), (True, True) -> True, (False, False) ->
    False; (False, True) (HATRPO carries, W and G do not) has no ``carry`` value: ValueError.
    The new field has its own name because a stored ``carry_leftover: true`` without the second
    flag (the runs of the first version) means "the method's default", not "always"."""
    if "carry_leftover" not in data and "uniform_carry_leftover" not in data:
        return data
    if "carry" in data:
        raise ValueError("config: carry and the old carry_leftover fields are both set")
    data = dict(data)
    carry = data.pop("carry_leftover", True)
    uniform = data.pop("uniform_carry_leftover", False)
    if carry and not uniform:
        data["carry"] = None
    elif carry == uniform:
        data["carry"] = bool(carry)
    else:
        raise ValueError(
            "config: carry_leftover=false with uniform_carry_leftover=true (HATRPO carries "
            "leftover, W and G do not) cannot be expressed with the single field carry; "
            "set carry=true or carry=false explicitly"
        )
    return data
