"""Helpers shared by the golden tests: hex-float encoding and the deliberate re-recording switch.

Golden files hold numbers measured from the code at the commit that wrote them. A test compares
the code's answer with the file; it never writes the file unless the developer asks for it:

    KL_ALLOC_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden*.py

rewrites every golden file those tests touch and then *skips* (never passes) the tests that wrote,
so a re-recording run cannot be mistaken for a green one. Review the diff and say in the commit
why the numbers changed. (The run fingerprints have their own switch:
``benchmarks/fingerprints.py --write``.)

The files live in ``tests/golden/<machine class>/`` (:func:`machine_dir`): AVX-512 and AVX2
machines give different last bits of vectorised sums, so each class is recorded on its own.

Floats are stored as ``float.hex`` strings (exact), arrays as ``{"dtype", "shape", "data"}``
with hex floats, large arrays as ``{"dtype", "shape", "sha256"}`` of their bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent
ROOT = GOLDEN.parents[1]
WRITE_ENV = "KL_ALLOC_WRITE_GOLDEN"
#: arrays with more elements than this are stored as a hash of their bytes
MAX_LISTED = 64


def writing() -> bool:
    return os.environ.get(WRITE_ENV, "") == "1"


def hexf(x: float) -> str:
    return float(x).hex()


def unhexf(s: str) -> float:
    return float.fromhex(s)


def encode(x: Any) -> Any:
    """JSON-able, exact form of a solver argument or result field."""
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return {"f": hexf(x)}
    if isinstance(x, str):
        return x
    if isinstance(x, list | tuple):
        return [encode(v) for v in x]
    if isinstance(x, np.ndarray):
        head = {"dtype": str(x.dtype), "shape": list(x.shape)}
        if x.size > MAX_LISTED:
            data = np.ascontiguousarray(x)
            return {**head, "sha256": hashlib.sha256(data.tobytes()).hexdigest()}
        flat = x.ravel().tolist()
        if x.dtype.kind == "f":
            flat = [hexf(v) for v in flat]
        return {**head, "data": flat}
    raise TypeError(f"cannot encode {type(x).__name__}")


def decode(x: Any) -> Any:
    """The argument back from :func:`encode` (hashed arrays cannot be decoded)."""
    if isinstance(x, list):
        return [decode(v) for v in x]
    if isinstance(x, dict):
        if "f" in x:
            return unhexf(x["f"])
        if "data" in x:
            data = x["data"]
            if x["dtype"].startswith("float"):
                data = [unhexf(v) for v in data]
            return np.array(data, dtype=x["dtype"]).reshape(x["shape"])
        raise ValueError(f"cannot decode {x}")
    return x


def machine_dir() -> Path:
    """``tests/golden/<machine class>/``: bitwise goldens hold per class of machine (see
    ``benchmarks/fingerprints.py``'s ``machine_class``: the vector width changes the last bits
    of reassociated sums in numba's kernels, torch's and MKL's)."""
    return GOLDEN / fingerprints_module().machine_class()


def load(name: str) -> dict:
    """A golden file of this machine's class. A class with no recorded goldens skips the test
    with the command that records them (the numbers of another class would fail in the last
    bits without anything being wrong); a recorded class with the file missing fails."""
    folder = machine_dir()
    if not folder.is_dir():
        known = sorted(
            p.name for p in GOLDEN.iterdir() if p.is_dir() and not p.name.startswith("_")
        )
        pytest.skip(
            f"no goldens recorded for machine class {folder.name} (recorded: {', '.join(known)}); "
            f"record them deliberately with {WRITE_ENV}=1 and benchmarks/fingerprints.py --write"
        )
    path = folder / name
    if not path.exists():
        pytest.fail(f"{path} is missing: record it deliberately with {WRITE_ENV}=1")
    return json.loads(path.read_text())


def save(name: str, data: dict) -> None:
    folder = machine_dir()
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def wrote(name: str) -> None:
    pytest.skip(f"{WRITE_ENV}=1: rewrote {machine_dir() / name}; review the diff before committing")


def fingerprints_module():
    """``benchmarks/fingerprints.py`` as a module (the runs, the timing-free reduction)."""
    if "fingerprints" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "fingerprints", ROOT / "benchmarks" / "fingerprints.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["fingerprints"] = module
        spec.loader.exec_module(module)
    return sys.modules["fingerprints"]
