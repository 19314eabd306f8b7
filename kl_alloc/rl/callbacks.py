"""Callbacks for :meth:`Trainer.learn`: the progress bar, TensorBoard and Weights & Biases, fed
by the iteration record (which carries the iteration's evaluation, if any, as
``record["eval"]``).

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

:class:`WandbLogger` logs exactly these scalars (one function, :func:`iteration_scalars`, makes
them for both) to a W&B run, with ``env_steps`` as the x axis::

    wb = WandbLogger(project="kl_alloc", name="ant-w-0", dir="runs/ant-w-0")
    trainer.learn(1_000_000, callback=chain(tb, wb)); wb.close(trainer)

TensorBoard comes with the MuJoCo extra (``pip install "kl_alloc[mujoco]"``) or on its own
(``pip install tensorboard``), wandb with ``pip install "kl_alloc[wandb]"``; each callback
raises a clear ``ImportError`` without its package.
"""

from __future__ import annotations

import json
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


# -- the scalars both loggers write -------------------------------------------------------------


def _finite(scalars: dict[str, Any]) -> dict[str, float]:
    out = {}
    for tag, value in scalars.items():
        if value is not None and math.isfinite(float(value)):
            out[tag] = float(value)
    return out


def iteration_scalars(record: dict[str, Any], per_agent: bool = True) -> dict[str, float]:
    """The scalars of one iteration record, tag -> value (None and non-finite values left
    out): the tags listed in the module docstring, the evaluation's aside."""
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
    if per_agent:
        for agent in record.get("agents", []):
            i = agent["agent"]
            for key in ("delta_alloc", "kl", "actual_improvement"):
                scalars[f"agent_{i}/{key}"] = agent.get(key)
    return _finite(scalars)


def eval_scalars(result: dict[str, Any]) -> dict[str, float]:
    """``eval/return_mean`` and ``eval/return_std`` of an evaluation (an ``eval.jsonl`` line)."""
    return _finite(
        {"eval/return_mean": result.get("return_mean"), "eval/return_std": result.get("return_std")}
    )


class ScalarLogger:
    """What TensorBoard and W&B logging share: each record becomes :func:`iteration_scalars`
    at its env steps, and its evaluation (if any) :func:`eval_scalars` at the evaluation's env
    steps; :meth:`close` logs an evaluation made after the last record. Subclasses write
    (:meth:`write`) and finish (:meth:`finish`)."""

    def __init__(self, per_agent: bool = True) -> None:
        self.per_agent = per_agent
        self._last_step: int | None = None  # env steps of the last record seen
        self._last_eval_step: int | None = None

    def write(self, scalars: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Flush and close the sink."""

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        step = int(record["env_steps"])
        self._last_step = step
        self.write(iteration_scalars(record, self.per_agent), step)
        if record.get("eval") is not None:
            self._log_eval(record["eval"])

    def _log_eval(self, result: dict[str, Any]) -> None:
        step = int(result["env_steps"])
        self.write(eval_scalars(result), step)
        self._last_eval_step = step

    def close(self, trainer: Any = None) -> None:
        """Log an evaluation made after the last record (a run stopped by a callback), then
        finish."""
        last = getattr(trainer, "last_eval", None)
        if (
            last is not None
            and self._last_step is not None  # this process trained: its evaluation is new
            and int(last["env_steps"]) >= self._last_step
            and self._last_eval_step != int(last["env_steps"])
        ):
            self._log_eval(last)
        self.finish()


# -- TensorBoard -----------------------------------------------------------------------------------


def _summary_writer(log_dir: str, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's module raises ImportError when tensorboard is missing
        raise ImportError(INSTALL_HINT) from exc
    return SummaryWriter(log_dir=log_dir, purge_step=purge_step, flush_secs=30)


class TensorBoardCallback(ScalarLogger):
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
        super().__init__(per_agent)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = _summary_writer(str(self.log_dir), purge_step)

    def write(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def finish(self) -> None:
        self.writer.flush()
        self.writer.close()


# -- Weights & Biases ------------------------------------------------------------------------------

WANDB_HINT = 'W&B logging needs wandb: pip install "kl_alloc[wandb]"'


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ImportError(f"{WANDB_HINT} ({exc})") from exc
    return wandb


def _run_config(trainer: Any) -> dict[str, Any]:
    """The run's ``config.json`` contents (algo, allocator, seed, env, TrainerConfig)."""
    make = getattr(trainer, "_run_config", None)
    return json.loads(json.dumps(make(), default=list)) if make is not None else {}


class WandbLogger(ScalarLogger):
    """Logs the same scalars as :class:`TensorBoardCallback` to a Weights & Biases run; pass it
    as ``callback=`` to ``Trainer.learn`` and call :meth:`close` after.

    The x axis is env steps: every ``log`` carries ``env_steps`` and all metrics are defined
    with ``step_metric="env_steps"`` (W&B's own step counter just counts the calls). The W&B
    run starts at the first record, with the run's ``config.json`` contents as its config
    (unless ``config`` is given). ``wandb`` is imported when the logger is made: without it,
    ``ImportError`` with the install line (``pip install "kl_alloc[wandb]"``).

    Offline: ``mode="offline"`` or the environment variable ``WANDB_MODE=offline`` (honoured
    when ``mode`` is None) writes the run under ``dir/wandb/`` with no network and no account;
    ``wandb sync DIR/wandb/offline-run-*`` uploads it later. ``WANDB_MODE=disabled`` logs
    nothing.

    Args:
        project: the W&B project.
        name: the W&B run's display name.
        dir: where wandb keeps its files (``dir/wandb/``).
        config: the run config to show (default: the trainer's ``config.json`` contents).
        id_file: a JSON file keeping the W&B run id: if it exists, its run is continued
            (``resume="allow"``; iterations replayed after a crash are logged again at the same
            env steps, W&B cannot drop them as TensorBoard's ``purge_step`` does), else the new
            run's id is written there.
        entity, group, tags, mode: as ``wandb.init``'s (None: wandb's default).
        per_agent: also log the per-agent allocation, KL and improvement.
        init_kwargs: more ``wandb.init`` keywords.
    """

    def __init__(
        self,
        project: str = "kl_alloc",
        name: str | None = None,
        dir: str | os.PathLike | None = None,  # noqa: A002 (wandb.init's own name)
        config: dict[str, Any] | None = None,
        id_file: str | os.PathLike | None = None,
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        mode: str | None = None,
        per_agent: bool = True,
        **init_kwargs: Any,
    ) -> None:
        super().__init__(per_agent)
        self.wandb = import_wandb()
        self.config = config
        self.id_file = None if id_file is None else Path(id_file)
        self.dir = None if dir is None else Path(dir)
        given = dict(project=project, name=name, entity=entity, group=group, tags=tags, mode=mode)
        self.init_kwargs = {k: v for k, v in given.items() if v is not None} | init_kwargs
        self.run: Any = None

    def start(self, trainer: Any = None) -> Any:
        """Start (or continue, see ``id_file``) the W&B run; done by the first record."""
        if self.run is not None:
            return self.run
        kwargs = dict(self.init_kwargs)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            kwargs["dir"] = str(self.dir)
        if self.id_file is not None and self.id_file.exists():
            kwargs.update(id=json.loads(self.id_file.read_text())["id"], resume="allow")
        config = self.config if self.config is not None else _run_config(trainer)
        self.run = self.wandb.init(config=config, **kwargs)
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")
        if self.id_file is not None and not self.id_file.exists():
            self.id_file.parent.mkdir(parents=True, exist_ok=True)
            self.id_file.write_text(json.dumps({"id": self.run.id}) + "\n")
        logger.info("W&B run %s in project %s", self.run.id, kwargs.get("project"))
        return self.run

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        self.start(trainer)
        super().__call__(trainer, record)

    def write(self, scalars: dict[str, float], step: int) -> None:
        self.run.log({**scalars, "env_steps": step})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


# -- the loggers of one run directory --------------------------------------------------------------


def run_loggers(
    out: str | os.PathLike,
    *,
    resumed_at: int | None = None,
    tensorboard: bool = False,
    wandb: dict[str, Any] | None = None,
) -> list[ScalarLogger]:
    """The loggers ``kl-alloc train`` and a sweep trial attach to the run in ``out``.

    Args:
        out: the run directory.
        resumed_at: the env steps the run continues from (None for a new run): TensorBoard
            drops what was logged after them before the crash.
        tensorboard: TensorBoard events under ``out/tb/``.
        wandb: :class:`WandbLogger` keywords (project, name, entity, group, tags; name defaults
            to ``out``'s name), or None for no W&B run. wandb's files go under ``out/wandb/``
            and the W&B run id is kept there, so continuing the run continues the W&B run.
    """
    from kl_alloc.rundir import TB_DIR, WANDB_ID

    out = Path(out)
    loggers: list[ScalarLogger] = []
    if wandb is not None:  # first: a missing wandb fails before TensorBoard writes anything
        kwargs = {"name": out.name, **{k: v for k, v in wandb.items() if v is not None}}
        loggers.append(WandbLogger(dir=out, id_file=out / WANDB_ID, **kwargs))
    if tensorboard:
        purge = None if resumed_at is None else resumed_at + 1
        loggers.append(TensorBoardCallback(out / TB_DIR, purge_step=purge))
    return loggers
