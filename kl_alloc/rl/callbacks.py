"""Callbacks for :meth:`Trainer.learn`: the progress bar and TensorBoard, fed by the iteration
record (which carries the iteration's evaluation, if any, as ``record["eval"]``).

A callback is any ``callback(trainer, record)``; returning ``False`` stops training.

    from kl_alloc.rl.callbacks import ProgressBar, TensorBoardCallback, chain

    tb = TensorBoardCallback("runs/ant-w-0/tb")
    trainer.learn(1_000_000, callback=tb)       # learn(progress=True) adds a ProgressBar itself
    tb.close(trainer)                            # logs a final evaluation made after it, flushes

    tensorboard --logdir runs/ant-w-0/tb

TensorBoard's x axis is env steps. Logged per iteration: ``reward/expected`` (games),
``reward/mean_step``, ``reward/episode_return``, ``budget/used`` and ``budget/total``,
``critic/loss``, ``time/seconds_per_iter`` and ``time/<part>`` (rollout, critic, actor, solver,
other), and per agent ``agent_<i>/delta_alloc``, ``agent_<i>/kl``, ``agent_<i>/actual_improvement``;
with each evaluation ``eval/return_mean`` and ``eval/return_std``.

TensorBoard comes with the MuJoCo extra (``pip install "kl_alloc[mujoco]"``) or on its own
(``pip install tensorboard``); the callback raises a clear ``ImportError`` without it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Callback = Callable[[Any, dict], Any]

INSTALL_HINT = (
    'TensorBoard logging needs tensorboard: pip install tensorboard (or "kl_alloc[mujoco]")'
)


def chain(*callbacks: Callback | None) -> Callback:
    """One callback that runs ``callbacks`` (``None`` skipped) in order, every one of them each
    iteration; it returns ``False`` (stop) if any of them did."""
    callbacks = tuple(c for c in callbacks if c is not None)

    def run(trainer: Any, record: dict[str, Any]) -> bool | None:
        stop = False
        for c in callbacks:
            stop = (c(trainer, record) is False) or stop
        return False if stop else None

    return run


# -- the progress bar ------------------------------------------------------------------------------


class ProgressBar:
    """The training progress bar: steps/s, the iteration, the exact expected reward (games) or
    else the latest evaluation or episode return. With ``enabled=False``, a log line about
    every tenth of the run instead.

    Args:
        total: the target env steps (the bar's end).
        start: env steps already done (a resumed run).
        desc: the bar's label, e.g. ``"hatrpo-w s0"``.
    """

    def __init__(self, total: int, start: int = 0, desc: str = "", enabled: bool = True) -> None:
        self.total = int(total)
        self.enabled = enabled
        self.last_return: float | None = None
        self.last_eval: float | None = None
        self._next_log = start + self.total / 10
        self._t0 = time.perf_counter()
        self._start = start
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=min(start, self.total),
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                desc=desc,
            )

    def postfix(self, record: dict[str, Any]) -> dict[str, Any]:
        """What the bar shows after ``record`` (and remembers for later iterations)."""
        if record.get("episode_return") is not None:
            self.last_return = float(record["episode_return"])
        if (record.get("eval") or {}).get("return_mean") is not None:
            self.last_eval = float(record["eval"]["return_mean"])
        post: dict[str, Any] = {"it": record["iteration"]}
        if record.get("expected_reward") is not None:
            post["E[R]"] = f"{record['expected_reward']:.4f}"
        else:
            if self.last_eval is not None:
                post["eval"] = f"{self.last_eval:.1f}"
            if self.last_return is not None:
                post["return"] = f"{self.last_return:.1f}"
            if len(post) == 1:
                post["reward"] = f"{record['mean_reward']:.4g}"
        return post

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        steps = int(record["env_steps"])
        post = self.postfix(record)
        if self.bar is not None:
            self.bar.update(min(steps, self.total) - self.bar.n)
            self.bar.set_postfix(post, refresh=False)
        elif steps >= self._next_log or steps >= self.total:
            rate = (steps - self._start) / max(time.perf_counter() - self._t0, 1e-9)
            details = ", ".join(f"{k} {v}" for k, v in post.items())
            logger.info("%d/%d env steps (%.0f steps/s): %s", steps, self.total, rate, details)
            self._next_log = steps + self.total / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- TensorBoard -----------------------------------------------------------------------------------


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
        self._last_step: int | None = None  # env steps of the last record seen
        self._last_eval_step: int | None = None

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        step = int(record["env_steps"])
        self._last_step = step
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
        if record.get("eval") is not None:
            self._log_eval(record["eval"])

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if value is None:
            return
        value = float(value)
        if math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def _log_eval(self, result: dict[str, Any]) -> None:
        step = int(result["env_steps"])
        self._scalar("eval/return_mean", result.get("return_mean"), step)
        self._scalar("eval/return_std", result.get("return_std"), step)
        self._last_eval_step = step

    def close(self, trainer: Any = None) -> None:
        """Log an evaluation made after the last record (a run stopped by a callback), then
        flush."""
        last = getattr(trainer, "last_eval", None)
        if (
            last is not None
            and self._last_step is not None  # this process trained: its evaluation is new
            and int(last["env_steps"]) >= self._last_step
            and self._last_eval_step != int(last["env_steps"])
        ):
            self._log_eval(last)
        self.writer.flush()
        self.writer.close()
