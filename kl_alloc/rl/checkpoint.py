"""Atomic checkpoint files: write to ``<path>.tmp``, fsync, then ``os.replace`` onto the target,
so a crash at any moment leaves either the previous checkpoint or the new one, never half of one.

Checkpoints are plain ``torch.save`` dictionaries holding numpy arrays and RNG states, so they
are loaded with ``weights_only=False``: load only checkpoints you (or your runs) wrote.
A file that cannot be read as one raises :class:`CheckpointError` naming it and the way out.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or not a checkpoint (one line, with the way out)."""


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    way_out = "restore it from a copy, or start the run over with --force"
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty checkpoint file: {way_out}")
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
    ) as exc:
        if isinstance(exc, CheckpointError):
            raise
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason}): {way_out}") from None
    if not isinstance(state, dict) or "policies" not in state:
        raise CheckpointError(f"{path}: not a kl_alloc checkpoint: {way_out}")
    return state
