"""What every command shares: the user-error type and how errors become one line, the help
formatter, the one-line run summary (the progress bar: :mod:`kl_alloc.rl.callbacks`) and the
logging options of ``train`` and ``sweep``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

logger = logging.getLogger("kl_alloc.cli")


class CLIError(Exception):
    """A user error: printed as ``kl-alloc: error: ...`` with exit status 2."""


def error_status(message: str) -> int:
    """Print ``kl-alloc: error: MESSAGE`` (the line :func:`kl_alloc.cli.main` prints for a
    :class:`CLIError`) and return the user-error exit status, 2."""
    print(f"kl-alloc: error: {message}", file=sys.stderr)
    return 2


def user_error(exc: BaseException) -> str | None:
    """The one line to print for an error the user can act on, or None for a bug (traceback)."""
    from kl_alloc.config import ConfigError
    from kl_alloc.lifecycle import RunError, io_error
    from kl_alloc.plugins import PluginError

    if isinstance(exc, CLIError | RunError | ConfigError | PluginError):
        return str(exc)
    if type(exc).__name__ in (
        "AllocationError",
        "CheckpointError",
        "PolicyFileError",
        "RunDirError",
        "SpecError",
        "RayMissingError",
    ):
        return str(exc)
    if isinstance(exc, OSError):
        return str(io_error(getattr(exc, "filename", None) or "?", exc))
    if isinstance(exc, ImportError):  # a missing extra: the message says what to install
        return str(exc)
    return None


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` for options that have a real default (not None / a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def summary_line(trainer: Any) -> str:
    spec = getattr(trainer.env, "spec", None) or {}
    parts = [
        f"{trainer.algo} on {spec.get('name', type(trainer.env).__name__)}",
        f"seed {trainer.seed}",
        f"{trainer.iteration} iterations",
        f"{trainer.env_steps} env steps",
        f"{trainer.wall_time:.1f} s",
    ]
    reward = trainer.expected_reward()
    if reward is not None:
        parts.append(f"expected reward {reward:.4f}")
    last = trainer.last_eval
    if last and last.get("return_mean") is not None:
        parts.append(f"eval return {last['return_mean']:.4g} +- {last['return_std']:.2g}")
    return ", ".join(parts)


def add_logging_arguments(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    """``--tensorboard`` and the ``--wandb*`` options of ``train`` (``sweep=False``: one run in
    OUT) and ``sweep`` (every trial logs, to its own run directory)."""
    where = "each trial's RUN_DIR" if sweep else "OUT"
    p.add_argument(
        "--tensorboard", action="store_true", help=f"also write TensorBoard scalars to {where}/tb"
    )
    wb = p.add_argument_group(
        "Weights & Biases",
        '--wandb logs the TensorBoard scalars to W&B (pip install "kl_alloc[wandb]"), x axis '
        f"env steps, config = the run's config.json. WANDB_MODE=offline keeps the run in "
        f"{where}/wandb/ (no account, no network; `wandb sync` it later); continuing a run "
        f"continues the same W&B run (its id is kept in {where}/wandb/kl_alloc_run.json)."
        + (
            " Each trial is one W&B run named after its run directory (task/method/...), in "
            "a group named after the sweep, tagged with its task and method. Ray workers "
            "need wandb installed too."
            if sweep
            else ""
        ),
    )
    wb.add_argument("--wandb", action="store_true", help="also log the scalars to W&B")
    wb.add_argument("--wandb-project", default="kl_alloc", help="W&B project")
    if not sweep:
        wb.add_argument("--wandb-name", default=None, help="W&B run name (default: OUT's name)")
    wb.add_argument("--wandb-entity", default=None, help="W&B entity (default: wandb's own)")
    wb.add_argument(
        "--wandb-group",
        default=None,
        help="W&B group (default: the sweep's name)" if sweep else "W&B group, e.g. one per sweep",
    )


def wandb_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--wandb-*`` options as :func:`~kl_alloc.rl.callbacks.run_loggers` keywords."""
    return {
        "project": args.wandb_project,
        "name": getattr(args, "wandb_name", None),
        "entity": args.wandb_entity,
        "group": args.wandb_group,
    }
