"""A finished run extended to twice its steps (``--resume --steps 2N``) is the straight 2N run.

Compared through the public CLI on ``progress.jsonl`` without its wall-clock fields (the reduction
of ``benchmarks/fingerprints.py``): every learned number of every iteration is equal. The
evaluations legitimately differ (the first leg also evaluated at its end: ``eval.jsonl`` and the
``eval`` that its last iteration record carries) and are not compared.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from golden._golden import fingerprints_module

from kl_alloc.cli import main

fingerprints = fingerprints_module()


def train(out, *args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--quiet", "train", "--out", str(out), "--no-progress", *args]) == 0


def records(out) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "eval"} for r in fingerprints.read_progress(out)]


@pytest.mark.parametrize(
    "env,algo,steps",
    [
        ("matrix", "hatrpo", 20_000),
        ("matrix", "hatrpo-w", 20_000),
        ("matrix", "hatrpo-g", 20_000),
        ("differential", "hatrpo-g", 4_000),
    ],
)
def test_extended_run_equals_straight_run(tmp_path, env, algo, steps):
    common = ["--env", env, "--algo", algo, "--seed", "0"]
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    train(straight, *common, "--steps", str(2 * steps))
    train(extended, *common, "--steps", str(steps))
    first_leg = records(extended)
    assert (extended / "done.json").exists()
    train(extended, "--resume", "--steps", str(2 * steps))
    a, b = records(straight), records(extended)
    assert len(a) == len(b) == 2 * len(first_leg)
    assert b[: len(first_leg)] == first_leg  # the finished part is kept as it was
    for ra, rb in zip(a, b, strict=True):
        assert ra == rb, f"iteration {ra['iteration']} differs"
    assert fingerprints.fingerprint(a)["sha256"] == fingerprints.fingerprint(b)["sha256"]
