"""Actions from observations, and a policy-only file that loads without the trainer.

    actions = trainer.predict(obs)                   # obs: one array per agent
    trainer.export_policy("policy.pt")               # or: kl-alloc export RUN policy.pt
    policy = kl_alloc.load_policy("policy.pt")       # torch + numpy only: no env package
    actions = policy.predict(obs, deterministic=True)

**Observations and actions.** ``predict`` takes the observations in one of two forms:

- a list (or tuple) with one array per agent, in the env's agent order, as a kl_alloc env's
  ``reset`` / ``step`` returns them: agent i's array has shape ``(obs_size_i,)`` (one
  observation) or ``(B, obs_size_i)`` (a batch; the same ``B`` for every agent). An agent with
  ``obs_size_i == 0`` (a stateless game) takes ``None`` or an empty array. It returns a list of
  actions as a kl_alloc env's ``step`` takes them: a discrete agent's action index (``int64``,
  shape ``()`` or ``(B,)``), a continuous agent's action (``float32``, ``(dim,)`` or ``(B,
  dim)``) clipped to its :class:`~kl_alloc.envs.base.ActionSpec` bounds where they are finite
  (the clipping every adapter applies itself before using an action).
- a dict ``{agent name: observation}`` as a PettingZoo ``ParallelEnv`` returns it (for policies
  trained on a PettingZoo env, MPE included): the observation is the agent's own (a Box array, a
  Discrete integer, or the ``{"observation", "action_mask"}`` dict). It returns ``{agent name:
  action}`` for the agents in the dict, as that env's ``step`` takes them: ``Discrete`` actions
  offset by the space's ``start``, ``Box`` actions mapped to the bounds the way the adapter does
  (:func:`kl_alloc.envs.pettingzoo.native_action`: rescaled from [-1, 1] by default).

``deterministic=True`` plays the mode (discrete) / mean (continuous) action, the action
``kl-alloc evaluate`` plays; ``False`` samples from the policy with the predictor's own
``torch.Generator`` (seeded by ``seed``), never the trainer's. Observations are normalised with
the run's running statistics frozen at export (``(o - mean) / sqrt(var + 1e-8)``, clipped to
``[-obs_clip, obs_clip]``), exactly as the trainer does. ``action_masks`` (discrete agents:
per agent a bool array ``(n,)`` / ``(B, n)`` of allowed actions, or None) restricts the mode and
the samples to the allowed actions; in the dict form the mask may also come inside the
observation dict. A batch of B observations and the same observations one at a time may differ
in the last bit of a continuous action (matrix products of different shapes round differently).

**The file** (``torch.save`` of plain types: it loads with ``torch.load(weights_only=True)``,
so a policy file from elsewhere cannot run code when loaded): ``format`` =
:data:`POLICY_FORMAT`, the kl_alloc version, the run's algo / seed / iteration / env steps and
env spec (informational), the network settings (``hidden``, ``activation``, ``feature_norm``,
``hidden_layer_norm``, ``std_param``, ``std_max``, ...) and per agent its name, observation
size, action space (kind, n or dim, bounds), observation statistics (or None), PettingZoo
spaces (or None) and the policy's ``state_dict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kl_alloc.envs.base import ActionSpec
from kl_alloc.rl.normalization import RunningMeanStd
from kl_alloc.rl.policies import Policy, actions_to_numpy, make_policy

__all__ = [
    "POLICY_FORMAT",
    "PolicyFileError",
    "PolicyPredictor",
    "export_checkpoint",
    "load_policy",
]

#: the ``format`` field of a policy file; the number goes up when the layout changes
POLICY_FORMAT = "kl_alloc.policy/1"

#: the TrainerConfig fields that shape a policy network (``make_policy`` keywords)
_NET_FIELDS = {
    "hidden": "hidden",
    "activation": "activation",
    "init_log_std": "init_log_std",
    "init_action_mean": "init_mean",
    "feature_norm": "feature_norm",
    "hidden_layer_norm": "hidden_layer_norm",
    "std_param": "std_param",
    "std_max": "std_max",
}


class PolicyFileError(ValueError):
    """A policy file that is missing, unreadable or not a kl_alloc policy (names the file)."""


def _spec_payload(spec: ActionSpec) -> dict[str, Any]:
    def bound(b: Any) -> torch.Tensor | None:
        arr = np.broadcast_to(np.asarray(b, np.float32), (spec.dim,))
        return torch.from_numpy(arr.copy())

    if spec.is_discrete:
        return {"kind": "discrete", "n": int(spec.n)}
    return {
        "kind": "continuous",
        "dim": int(spec.dim),
        "low": bound(spec.low),
        "high": bound(spec.high),
    }


def _spec_from_payload(d: Mapping[str, Any]) -> ActionSpec:
    if d["kind"] == "discrete":
        return ActionSpec.discrete(int(d["n"]))
    return ActionSpec.continuous(int(d["dim"]), d["low"].numpy(), d["high"].numpy())


def _plain(value: Any) -> Any:
    """numpy arrays -> tensors, numpy scalars -> Python: what ``weights_only`` loading takes."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(
            np.array(value, dtype=np.float64 if value.dtype.kind == "f" else value.dtype)
        )
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, Mapping):
        return {k: _unplain(v) for k, v in value.items()}
    return value


def policy_payload(
    policies: Sequence[Policy],
    config: Mapping[str, Any],
    action_specs: Sequence[ActionSpec],
    obs_norms: Sequence[RunningMeanStd] | None,
    native: Sequence[Mapping[str, Any]] | None,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The policy file's contents (see the module docstring); ``config`` is
    ``TrainerConfig.to_dict()``, ``meta`` the run's algo / seed / iteration / env_steps / env."""
    from kl_alloc import __version__

    agents = []
    for i, (policy, spec) in enumerate(zip(policies, action_specs, strict=True)):
        norm = None if obs_norms is None else obs_norms[i]
        agents.append(
            {
                "name": str(native[i]["name"]) if native else f"agent_{i}",
                "obs_size": int(policy.obs_size),
                "action": _spec_payload(spec),
                "obs_norm": None
                if norm is None
                else {
                    "mean": torch.from_numpy(norm.mean.copy()),
                    "var": torch.from_numpy(norm.var.copy()),
                    "clip": float(norm.clip),
                },
                "native": None if not native else _plain(native[i]),
                "state_dict": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
            }
        )
    net = {}
    for key, kw in _NET_FIELDS.items():
        value = config[key]
        net[kw] = [int(h) for h in value] if key == "hidden" else value
    return {
        "format": POLICY_FORMAT,
        "kl_alloc_version": __version__,
        "meta": json.loads(json.dumps(dict(meta), default=str)),
        "network": net,
        "agents": agents,
    }


class PolicyPredictor:
    """Per-agent policies and their frozen observation normalisers: actions from observations
    (see the module docstring for the forms and shapes).

    Args:
        policies: one policy per agent (modules; used in place, not copied).
        action_specs: the agents' action spaces.
        obs_norms: per-agent observation statistics, or None (no normalisation).
        names: the agents' names (PettingZoo ``possible_agents``), or None.
        native: per agent the PettingZoo spaces (:meth:`PettingZooEnv.native_spaces`), or None.
        seed: seeds the generator of ``deterministic=False`` predictions.
        meta: what the file says about the run it came from (``algo``, ``seed``, ...).
    """

    def __init__(
        self,
        policies: Sequence[Policy],
        action_specs: Sequence[ActionSpec],
        obs_norms: Sequence[RunningMeanStd] | None = None,
        names: Sequence[str] | None = None,
        native: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.policies = list(policies)
        self.action_specs = list(action_specs)
        self.obs_norms = None if obs_norms is None else list(obs_norms)
        self.n_agents = len(self.policies)
        self.names = [f"agent_{i}" for i in range(self.n_agents)] if names is None else list(names)
        self.native = None if native is None else list(native)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.meta = dict(meta or {})

    @property
    def obs_sizes(self) -> list[int]:
        return [int(p.obs_size) for p in self.policies]

    def __repr__(self) -> str:
        run = ", ".join(f"{k}={self.meta[k]!r}" for k in ("algo", "iteration") if k in self.meta)
        agents = ", ".join(
            f"{name}: obs {o}, {f'Discrete({s.n})' if s.is_discrete else f'Box({s.dim})'}"
            for name, o, s in zip(self.names, self.obs_sizes, self.action_specs, strict=True)
        )
        return f"PolicyPredictor({agents}{'; ' + run if run else ''})"

    # -- list form ------------------------------------------------------------------------------
    def _check_obs(self, obs: Sequence[Any]) -> tuple[list[np.ndarray | None], bool, int]:
        """(arrays, batched, B) of list-form observations; ValueError naming the agent."""
        if len(obs) != self.n_agents:
            raise ValueError(f"obs: expected {self.n_agents} agents' observations, got {len(obs)}")
        arrays: list[np.ndarray | None] = []
        batch: set[int | None] = set()
        for i, (o, size) in enumerate(zip(obs, self.obs_sizes, strict=True)):
            if o is None:
                if size:
                    raise ValueError(
                        f"obs[{i}]: None, but agent {self.names[i]!r} observes {size} numbers"
                    )
                arrays.append(None)
                continue
            a = np.asarray(o)
            if a.ndim not in (1, 2) or a.shape[-1] != size:
                raise ValueError(
                    f"obs[{i}]: expected shape ({size},) or (B, {size}) for agent "
                    f"{self.names[i]!r}, got {a.shape}"
                )
            if a.dtype.kind not in "fiub":
                raise ValueError(f"obs[{i}]: expected numbers, got dtype {a.dtype}")
            batch.add(a.shape[0] if a.ndim == 2 else None)
            arrays.append(a)
        if len(batch) > 1:
            raise ValueError(
                f"obs: agents disagree on single vs batched / batch size: {sorted(batch, key=str)}"
            )
        b = next(iter(batch)) if batch else None
        return arrays, b is not None, 1 if b is None else b

    def _mask(self, i: int, mask: Any, batched: bool, b: int) -> torch.Tensor | None:
        if mask is None:
            return None
        spec = self.action_specs[i]
        if not spec.is_discrete:
            raise ValueError(f"action_masks[{i}]: agent {self.names[i]!r} has continuous actions")
        m = np.asarray(mask, bool)
        want = (b, spec.n) if batched else (spec.n,)
        if m.shape != want:
            raise ValueError(f"action_masks[{i}]: expected shape {want}, got {m.shape}")
        if not m.any(axis=-1).all():
            raise ValueError(f"action_masks[{i}]: a mask allows no action")
        return torch.from_numpy(np.ascontiguousarray(m.reshape(b, spec.n)))

    def _observe(self, i: int, o: np.ndarray | None, b: int, device: torch.device) -> torch.Tensor:
        """What policy i sees: the normalised observation, as the trainer's collector makes it."""
        if o is None:
            return torch.zeros((b, 0), device=device)
        o = o.reshape(b, -1)
        o = self.obs_norms[i].normalize(o) if self.obs_norms is not None else o
        # a C-contiguous float32 copy in torch's own memory: the collector's ``_aligned``
        return torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)).clone().to(device)

    @torch.no_grad()
    def _act(self, obs: Sequence[Any], deterministic: bool, masks: Sequence[Any] | None):
        arrays, batched, b = self._check_obs(obs)
        if masks is not None and len(masks) != self.n_agents:
            raise ValueError(f"action_masks: expected {self.n_agents} entries, got {len(masks)}")
        out = []
        for i, (policy, spec) in enumerate(zip(self.policies, self.action_specs, strict=True)):
            device = next(policy.parameters()).device
            o = self._observe(i, arrays[i], b, device)
            m = None if masks is None else self._mask(i, masks[i], batched, b)
            dist = policy.dist(o) if m is None else policy.dist(o, m.to(device))
            a = dist.mode(b) if deterministic else dist.sample(b, self.generator)
            a = actions_to_numpy(a, spec)
            if not spec.is_discrete:
                low = np.broadcast_to(np.asarray(spec.low, np.float32), (spec.dim,))
                high = np.broadcast_to(np.asarray(spec.high, np.float32), (spec.dim,))
                a = np.clip(a, low, high).astype(np.float32)  # inf bounds leave a as it is
            out.append(a if batched else a[0])
        return out

    def predict(
        self,
        obs: Sequence[Any] | Mapping[str, Any],
        deterministic: bool = True,
        action_masks: Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> list[np.ndarray] | dict[str, Any]:
        """Per-agent actions for per-agent observations (a list, or a PettingZoo dict: see the
        module docstring for the shapes and what comes back)."""
        if isinstance(obs, Mapping):
            return self._predict_native(obs, deterministic, action_masks)
        if isinstance(action_masks, Mapping):
            raise ValueError("action_masks: a dict goes with dict observations; give a list")
        return self._act(obs, deterministic, action_masks)

    # -- PettingZoo dict form -------------------------------------------------------------------
    def _flatten(self, i: int, value: Any) -> tuple[np.ndarray, Any]:
        """(the policy's input row, the mask inside the observation or None) of agent i."""
        spaces = self.native[i]["obs"]
        mask = None
        if spaces.get("mask_in_obs") and spaces["kind"] != "other":
            if not isinstance(value, Mapping) or "observation" not in value:
                raise ValueError(
                    f"obs[{self.names[i]!r}]: expected a dict with 'observation' and 'action_mask'"
                )
            mask, value = value.get("action_mask"), value["observation"]
        kind = spaces["kind"]
        if kind == "box":
            a = np.asarray(value, np.float32)
            if a.size != self.obs_sizes[i]:
                raise ValueError(
                    f"obs[{self.names[i]!r}]: expected shape {spaces['shape']}, got {a.shape}"
                )
            return a.reshape(-1), mask
        if kind == "discrete":
            row = np.zeros(int(spaces["n"]), np.float32)
            row[int(value) - int(spaces["start"])] = 1.0
            return row, mask
        raise ValueError(
            f"obs[{self.names[i]!r}]: this agent's observation space is neither Box "
            "nor Discrete; pass the flattened observations as a list instead"
        )

    def _predict_native(
        self, obs: Mapping[str, Any], deterministic: bool, action_masks: Any
    ) -> dict[str, Any]:
        from kl_alloc.envs.pettingzoo import native_action

        if self.native is None:
            raise ValueError(
                "obs: a dict of observations by agent name needs a policy trained on "
                "a PettingZoo env; give a list with one array per agent"
            )
        unknown = sorted(set(obs) - set(self.names))
        if unknown:
            raise ValueError(f"obs: unknown agents {unknown}; this policy's are {self.names}")
        if action_masks is not None and not isinstance(action_masks, Mapping):
            raise ValueError("action_masks: with dict observations, give {agent name: mask}")
        rows: list[np.ndarray | None] = []
        masks: list[Any] = []
        for i, name in enumerate(self.names):
            if name not in obs:  # an agent that left the episode: zeros, its action unused
                rows.append(np.zeros((1, self.obs_sizes[i]), np.float32))
                masks.append(None)
                continue
            row, mask = self._flatten(i, obs[name])
            if action_masks is not None and action_masks.get(name) is not None:
                mask = action_masks[name]
            rows.append(row.reshape(1, -1))
            masks.append(None if mask is None else np.asarray(mask, bool).reshape(1, -1))
        acts = self._act(rows, deterministic, masks)
        return {
            name: native_action(_unplain(self.native[i]["action"]), acts[i][0])
            for i, name in enumerate(self.names)
            if name in obs
        }

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], seed: int = 0) -> PolicyPredictor:
        """Rebuild the networks from a policy file's contents (CPU, float32)."""
        net = dict(payload["network"])
        policies, specs, norms, native = [], [], [], []
        with torch.random.fork_rng(devices=[]):  # initialisation draws: not the caller's stream
            for agent in payload["agents"]:
                spec = _spec_from_payload(agent["action"])
                policy = make_policy(int(agent["obs_size"]), spec, **net)
                policy.load_state_dict(agent["state_dict"])
                policy.eval()
                policies.append(policy)
                specs.append(spec)
                norm = agent["obs_norm"]
                if norm is not None:
                    rms = RunningMeanStd((int(agent["obs_size"]),), clip=float(norm["clip"]))
                    rms.mean, rms.var = norm["mean"].numpy(), norm["var"].numpy()
                    norms.append(rms)
                native.append(agent["native"])
        has_norm = [n is not None for n in (a["obs_norm"] for a in payload["agents"])]
        return cls(
            policies,
            specs,
            norms if all(has_norm) else None,
            [a["name"] for a in payload["agents"]],
            native if all(n is not None for n in native) else None,
            seed=seed,
            meta=payload.get("meta"),
        )


def trainer_predictor(trainer: Any) -> PolicyPredictor:
    """``Trainer.predictor``: the trainer's live policies and statistics; the sampling generator
    is seeded from ``SeedSequence([trainer.seed, 0x9ED1C7])``."""
    native = trainer.env.native_spaces()
    return PolicyPredictor(
        trainer.policies,
        trainer.env.action_specs,
        trainer.collector.obs_norms,
        None if native is None else [a["name"] for a in native],
        native,
        seed=int(np.random.SeedSequence([trainer.seed, 0x9ED1C7]).generate_state(1)[0]),
        meta={"algo": trainer.algo, "seed": trainer.seed},
    )


def trainer_payload(trainer: Any) -> dict[str, Any]:
    """``Trainer.export_policy``'s file contents (:func:`policy_payload` of the trainer)."""
    from kl_alloc.envs.registry import env_spec

    meta = {"algo": trainer.algo, "seed": trainer.seed, "iteration": trainer.iteration,
            "env_steps": trainer.env_steps, "env": env_spec(trainer.env)}  # fmt: skip
    return policy_payload(
        trainer.policies,
        trainer.config.to_dict(),
        trainer.env.action_specs,
        trainer.collector.obs_norms,
        trainer.env.native_spaces(),
        meta,
    )


def save_policy(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a policy file atomically; returns its path."""
    from kl_alloc.rl.checkpoint import save_atomic

    save_atomic(payload, path)
    return Path(path)


def load_policy(path: str | os.PathLike, seed: int = 0) -> PolicyPredictor:
    """Load a policy file written by ``Trainer.export_policy`` / ``kl-alloc export``: needs
    torch and numpy only (no env package, no trainer, no run directory). ``seed`` seeds the
    sampling of ``predict(..., deterministic=False)``. :class:`PolicyFileError` (naming the
    file) for a file that is missing, unreadable or not a policy file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise PolicyFileError(
                f"{path}: a directory, not a policy file (export a run with "
                "`kl-alloc export RUN PATH`)"
            )
        if path.stat().st_size == 0:
            raise PolicyFileError(f"{path}: empty file, not a kl_alloc policy")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PolicyFileError(f"{path}: no such policy file") from None
    except PolicyFileError:
        raise
    except Exception as exc:  # noqa: BLE001 (torch.load of arbitrary bytes raises many kinds)
        text = str(exc)
        if "Unsupported global" in text:
            raise PolicyFileError(
                f"{path}: not a kl_alloc policy file: it holds Python objects, not only tensors "
                "(a training checkpoint? export it with `kl-alloc export RUN PATH`)"
            ) from None
        if "WeightsUnpickler error:" in text:  # the reason, not torch's advice around it
            text = text.split("WeightsUnpickler error:", 1)[1].strip()
        first = text.splitlines()[0][:120] if text else type(exc).__name__
        raise PolicyFileError(
            f"{path}: not a readable kl_alloc policy file ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = (
            " (a training checkpoint: export it with `kl-alloc export RUN PATH`)"
            if isinstance(payload, dict) and "policies" in payload
            else ""
        )
        raise PolicyFileError(
            f"{path}: not a kl_alloc policy file (format {found!r}, expected "
            f"{POLICY_FORMAT!r}){hint}"
        )
    try:
        return PolicyPredictor.from_payload(payload, seed=seed)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise PolicyFileError(f"{path}: a damaged kl_alloc policy file ({exc})") from None


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A policy file from a run's ``checkpoint.pt`` (what ``kl-alloc export`` does): the env is
    built once, with one copy, from the checkpoint's spec, to read the action bounds and the
    PettingZoo spaces."""
    from kl_alloc.envs.registry import make_env
    from kl_alloc.rl import checkpoint as ckpt_io

    state = ckpt_io.load(checkpoint)
    spec = state.get("env_spec")
    if spec is None:
        raise ValueError(
            f"{checkpoint}: the run's env was not made by make_env; export it from "
            "the Trainer (trainer.export_policy(path))"
        )
    env = make_env(spec["name"], **{**spec["kwargs"], "num_envs": 1})
    try:
        config = state["config"]
        net = {kw: config[key] for key, kw in _NET_FIELDS.items()}
        with torch.random.fork_rng(devices=[]):
            policies = [
                make_policy(o, s, **net)
                for o, s in zip(env.obs_sizes, env.action_specs, strict=True)
            ]
        for policy, sd in zip(policies, state["policies"], strict=True):
            policy.load_state_dict(sd)
        stats = state["collector"].get("obs_norms")
        norms = None
        if stats is not None:
            norms = [RunningMeanStd((o,), clip=config["obs_clip"]) for o in env.obs_sizes]
            for rms, s in zip(norms, stats, strict=True):
                rms.load_state_dict(s)
        meta = {k: state[k] for k in ("algo", "seed", "iteration", "env_steps")}
        payload = policy_payload(
            policies, config, env.action_specs, norms, env.native_spaces(), {**meta, "env": spec}
        )
    finally:
        env.close()
    return save_policy(payload, path)
