"""TensorBoard scalars from a training run, as a :meth:`Trainer.learn` callback.

    from kl_alloc.rl.tensorboard import TensorBoardCallback

    tb = TensorBoardCallback("runs/ant-w-0/tb")
    trainer.learn(1_000_000, callback=tb)
    tb.close(trainer)          # logs the final evaluation and flushes

    tensorboard --logdir runs/ant-w-0/tb

The x axis is env steps. Logged per iteration: ``reward/expected`` (games), ``reward/mean_step``,
``reward/episode_return``, ``budget/used`` and ``budget/total``, ``critic/loss``,
``time/seconds_per_iter`` and ``time/<part>`` (rollout, critic, actor, solver, other), and per
agent ``agent_<i>/delta_alloc``, ``agent_<i>/kl``, ``agent_<i>/actual_improvement``; after each
evaluation ``eval/return_mean`` and ``eval/return_std`` (read back from the run's
``eval.jsonl``, the public record of evaluations).

TensorBoard comes with the MuJoCo extra (``pip install "kl_alloc[mujoco]"``) or on its own
(``pip install tensorboard``); the callback raises a clear ``ImportError`` without it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from kl_alloc.rl.telemetry import read_eval

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    'TensorBoard logging needs tensorboard: pip install tensorboard (or "kl_alloc[mujoco]")'
)


def _summary_writer(log_dir: str, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's module raises ImportError when tensorboard is missing
        raise ImportError(INSTALL_HINT) from exc
    return SummaryWriter(log_dir=log_dir, purge_step=purge_step, flush_secs=30)


class TensorBoardCallback:
    """Writes one run's scalars to ``log_dir``; pass it as ``callback=`` to ``Trainer.learn``.

    Args:
        log_dir: the TensorBoard event directory (created).
        purge_step: when continuing a run, the first env step to log again: events at or after
            it (written before a crash, after the last checkpoint) are dropped by TensorBoard,
            so a resumed run shows one clean curve. ``None`` for a new run.
        per_agent: also log the per-agent allocation, KL and improvement.
    """

    def __init__(
        self, log_dir: str | os.PathLike, purge_step: int | None = None, per_agent: bool = True
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.per_agent = per_agent
        self.writer = _summary_writer(str(self.log_dir), purge_step)
        self._evals_logged: int | None = None

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        step = int(record["env_steps"])
        scalars = {
            "reward/expected": record.get("expected_reward"),
            "reward/mean_step": record.get("mean_reward"),
            "reward/episode_return": record.get("episode_return"),
            "budget/used": record.get("budget_used"),
            "budget/total": record.get("delta_total"),
            "critic/loss": record.get("critic_loss"),
            "time/seconds_per_iter": record.get("seconds_per_iter"),
        }
        for part, seconds in (record.get("time") or {}).items():
            scalars[f"time/{part}"] = seconds
        if self.per_agent:
            for agent in record.get("agents", []):
                i = agent["agent"]
                for key in ("delta_alloc", "kl", "actual_improvement"):
                    scalars[f"agent_{i}/{key}"] = agent.get(key)
        for tag, value in scalars.items():
            self._scalar(tag, value, step)
        self._log_new_evals(trainer)

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if value is None:
            return
        value = float(value)
        if math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def _log_new_evals(self, trainer: Any) -> None:
        out_dir = getattr(trainer, "out_dir", None)
        if out_dir is None:
            return
        evals = read_eval(out_dir)
        if self._evals_logged is None:
            # evaluations from before this process (a resumed run) are already in the log dir
            self._evals_logged = sum(
                1 for e in evals if e.get("env_steps", 0) < getattr(trainer, "env_steps", 0)
            )
        for e in evals[self._evals_logged :]:
            step = int(e["env_steps"])
            self._scalar("eval/return_mean", e.get("return_mean"), step)
            self._scalar("eval/return_std", e.get("return_std"), step)
        self._evals_logged = len(evals)

    def close(self, trainer: Any = None) -> None:
        """Log evaluations written after the last callback (the final one), then flush."""
        if trainer is not None:
            self._log_new_evals(trainer)
        self.writer.flush()
        self.writer.close()
