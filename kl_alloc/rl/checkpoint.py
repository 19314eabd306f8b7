"""Atomic checkpoint files: write to ``<path>.tmp``, fsync, then ``os.replace`` onto the target,
so a crash at any moment leaves either the previous checkpoint or the new one, never half of one.

Checkpoints are plain ``torch.save`` dictionaries holding numpy arrays and RNG states, so they
are loaded with ``weights_only=False``: load only checkpoints you (or your runs) wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=False)
