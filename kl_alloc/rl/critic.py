"""The centralised critic V(s): an MLP on the global state, or one learned constant when the
game has no state (``state_size == 0``). Fitted by Adam on the mean squared error to the GAE
returns, ``epochs`` passes of ``minibatches`` shuffled minibatches per iteration.

HARL's critic options (``harl/algorithms/critics/v_critic.py``), each off by default:
``loss="huber"`` (torch's Huber loss with ``huber_delta``: e^2/2 inside, delta(|e| - delta/2)
outside, as HARL's ``huber_loss``), ``value_clip`` (the elementwise max of the loss of the
prediction and of the old prediction plus the change clipped to +-value_clip, the old prediction
being the critic's output before this iteration's fit, as HARL's ``use_clipped_value_loss``),
``max_grad_norm`` (``clip_grad_norm_`` before each Adam step), ``adam_eps`` (HARL's
``opti_eps``); the network takes ``feature_norm`` / ``hidden_layer_norm`` like the policies.

With ``normalize_values`` the network predicts standardised values and a running mean/std of the
returns maps them back (in the spirit of HARL's ValueNorm): returns of MuJoCo size (hundreds to
thousands) then need no hand-tuned learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kl_alloc.rl.normalization import RunningMeanStd
from kl_alloc.rl.policies import mlp


class Critic(nn.Module):
    def __init__(
        self,
        state_size: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        lr: float = 5e-4,
        normalize_values: bool = False,
        loss: str = "mse",
        huber_delta: float = 10.0,
        value_clip: float | None = None,
        max_grad_norm: float | None = None,
        adam_eps: float = 1e-8,
        feature_norm: bool = False,
        hidden_layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if loss not in ("mse", "huber"):
            raise ValueError(f"loss: expected 'mse' or 'huber', got {loss!r}")
        self.state_size = int(state_size)
        if self.state_size == 0:
            self.constant = nn.Parameter(torch.zeros(1))
        else:
            self.net = mlp(
                self.state_size,
                hidden,
                1,
                activation,
                out_gain=1.0,
                feature_norm=feature_norm,
                hidden_layer_norm=hidden_layer_norm,
            )
        self.loss = loss
        self.huber_delta = float(huber_delta)
        self.value_clip = None if value_clip is None else float(value_clip)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, eps=adam_eps)
        self.value_norm = RunningMeanStd(shape=(), clip=np.inf) if normalize_values else None

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Raw (possibly standardised) prediction, shape (batch,)."""
        if self.state_size == 0:
            return self.constant.expand(states.shape[0])
        return self.net(states).squeeze(-1)

    @torch.no_grad()
    def values(self, states: torch.Tensor) -> np.ndarray:
        """V(s) in return units, float64 (batch,)."""
        raw = self(states).double().cpu().numpy()
        return self.value_norm.denormalize(raw) if self.value_norm is not None else raw

    def fit(
        self,
        states: torch.Tensor,
        returns: np.ndarray,
        epochs: int,
        minibatches: int,
        generator: torch.Generator,
    ) -> float:
        """Regress V(states) on ``returns``; returns the mean loss of the last epoch."""
        if self.value_norm is not None:
            self.value_norm.update(returns)
            targets_np = self.value_norm.normalize(returns)
        else:
            targets_np = returns
        targets = torch.as_tensor(np.asarray(targets_np), dtype=torch.float32).to(states.device)
        n = targets.shape[0]
        size = max(1, n // max(1, minibatches))
        old = None
        if self.value_clip is not None:
            with torch.no_grad():
                old = self(states).detach()
        plain = self.loss == "mse" and old is None
        last = 0.0
        for _ in range(epochs):
            perm = torch.randperm(n, generator=generator).to(states.device)
            losses = []
            for start in range(0, n - size + 1, size):
                idx = perm[start : start + size]
                if plain:
                    loss = torch.mean((self(states[idx]) - targets[idx]) ** 2)
                else:
                    loss = self._loss(self(states[idx]), targets[idx], old, idx)
                self.optimizer.zero_grad()
                loss.backward()
                if self.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
                self.optimizer.step()
                losses.append(loss.item())
            last = float(np.mean(losses))
        return last

    def _elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "huber":
            return nn.functional.huber_loss(pred, target, reduction="none", delta=self.huber_delta)
        return (pred - target) ** 2

    def _loss(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        old: torch.Tensor | None,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """Huber and/or clipped loss (HARL's ``cal_value_loss``), averaged over the batch."""
        loss = self._elementwise(pred, target)
        if old is not None:
            o = old[idx]
            clipped = o + (pred - o).clamp(-self.value_clip, self.value_clip)
            loss = torch.max(loss, self._elementwise(clipped, target))
        return loss.mean()

    def full_state_dict(self) -> dict[str, Any]:
        """Network, optimizer and value-normaliser state (for checkpoints)."""
        return {
            "model": self.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "value_norm": None if self.value_norm is None else self.value_norm.state_dict(),
        }

    def load_full_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value_norm is not None and state.get("value_norm") is not None:
            self.value_norm.load_state_dict(state["value_norm"])
