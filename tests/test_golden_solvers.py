"""Golden solver outputs: a fixed set of problems and every field of the public answer, bitwise.

The inputs are written out below; the outputs in ``tests/golden/<machine class>/solvers.json``
were measured from ``water_fill`` / ``greedy_allocate`` / ``uniform_allocate`` and are stored as
hex floats. A refactoring of the solver core must reproduce them exactly. (docs/solvers.md: the
sums over agents are vectorised with ``fastmath={'reassoc'}``: on a machine with another vector
width the last bits of some answers legitimately differ: each class of machine, AVX2 or
AVX-512, has its own file, see ``tests/golden/_golden.py``.) Large rows (the sampled-bracket /
sampled-band paths) are drawn from a seeded ``numpy.random.default_rng``; their inputs are
pinned by hash too.
"""

from __future__ import annotations

import numpy as np
import pytest
from golden._golden import decode, encode, load, save, writing, wrote

from kl_alloc import greedy_allocate, uniform_allocate, water_fill

FILE = "solvers.json"
FUNCTIONS = {
    "water_fill": water_fill,
    "greedy_allocate": greedy_allocate,
    "uniform_allocate": uniform_allocate,
}
FIELDS = {
    "water_fill": ("delta", "level", "iterations", "converged", "residual", "status"),
    "greedy_allocate": ("delta", "scores", "order", "critical", "residual"),
    "uniform_allocate": ("delta", "share"),
}


def _large(seed: int, n: int):
    rng = np.random.default_rng(seed)
    w = rng.exponential(size=n)
    c = rng.uniform(0.0, 0.01, n)
    hi = rng.uniform(0.001, 0.05, n)
    return w, c, hi


def _large_greedy(seed: int, n: int):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=n)
    D = rng.exponential(0.01, size=n)
    return L, D


def problems() -> dict[str, tuple[str, tuple, dict]]:
    """name -> (function, args, kwargs). Append new problems; never edit existing ones."""
    w8 = np.array([0.1, 0.25, 0.0, 0.4, 0.05, 0.7, 0.33, 0.2])
    c8 = np.array([0.001, 0.0, 0.002, 0.0005, 0.0, 0.003, 0.001, 0.0])
    lo8 = np.array([0.0, 0.001, 0.0, 0.0, 0.002, 0.0, 0.0, 0.0005])
    hi8 = np.array([0.02, 0.01, 0.05, np.inf, 0.015, 0.008, 0.03, 0.012])
    rng = np.random.default_rng(20240601)
    W = rng.exponential(size=(6, 5))
    C = rng.uniform(0, 0.01, (6, 5))
    H = rng.uniform(0.005, 0.05, (6, 5))
    Tb = rng.uniform(0.01, 0.1, 6)
    Lb = np.round(rng.normal(size=(5, 4)), 3)
    Db = np.round(rng.exponential(0.01, size=(5, 4)), 4)
    wl, cl, hil = _large(7, 20_000)
    Ll, Dl = _large_greedy(11, 10_000)
    P: dict[str, tuple[str, tuple, dict]] = {
        # water_fill, one problem
        "wf_readme": ("water_fill", ([0.5, 0.3, 0.2], 0.04), {"floors": 0.001, "upper": 0.03}),
        "wf_plain": ("water_fill", ([1.0, 2.0, 3.0, 4.0], 1.0), {}),
        "wf_arrays": ("water_fill", (w8, 0.06), {"floors": c8, "lower": lo8, "upper": hi8}),
        "wf_arrays_bisect": (
            "water_fill",
            (w8, 0.06),
            {"floors": c8, "lower": lo8, "upper": hi8, "method": "bisect"},
        ),
        "wf_zero_weights_floor": ("water_fill", ([0.0, 1.5, 0.0, 2.5], 0.3), {"floors": 0.01}),
        "wf_saturated": ("water_fill", ([1.0, 1.0, 1.0], 1.0), {"upper": 0.2}),
        "wf_all_zero": ("water_fill", ([0.0, 0.0, 0.0], 0.5), {"lower": 0.01}),
        "wf_total_zero": ("water_fill", ([0.3, 0.7], 0.0), {}),
        "wf_lower_uses_budget": ("water_fill", ([0.3, 0.7], 0.2), {"lower": [0.05, 0.15]}),
        "wf_single": ("water_fill", ([2.0], 0.01), {"floors": 0.5}),
        "wf_bisect_tol": ("water_fill", ([0.5, 0.3, 0.2], 0.04), {"method": "bisect", "tol": 1e-6}),
        "wf_max_iter": (
            "water_fill",
            (w8, 0.06),
            {"floors": c8, "method": "bisect", "max_iter": 3},
        ),
        # water_fill, batched
        "wf_batched": ("water_fill", (W, Tb), {"floors": C, "upper": H}),
        "wf_batched_scalar_total": ("water_fill", (W, 0.05), {"floors": 0.002}),
        "wf_batched_bisect": ("water_fill", (W, Tb), {"floors": C, "upper": H, "method": "bisect"}),
        # water_fill, large rows (sampled bracket)
        "wf_large": ("water_fill", (wl, 50.0), {"floors": cl, "upper": hil}),
        "wf_large_bisect": (
            "water_fill",
            (wl, 50.0),
            {"floors": cl, "upper": hil, "method": "bisect"},
        ),
        # greedy
        "greedy_basic": (
            "greedy_allocate",
            ([0.3, 0.1, 0.5, -0.1], [0.01, 0.02, 0.005, 0.01], 0.02),
            {},
        ),
        "greedy_ties_requests": (
            "greedy_allocate",
            ([0.2, 0.4, 0.2, 0.4, 0.0], [0.01, 0.02, 0.01, 0.02, 0.01], 0.025),
            {"eps": 1e-6, "requests": [0.01, 0.03, 0.005, 0.01, 0.02]},
        ),
        "greedy_zero_divergence": (
            "greedy_allocate",
            ([0.1, 0.2, 0.3], [0.0, 0.01, 0.0], 0.05),
            {"eps": 1e-3},
        ),
        "greedy_underfull": ("greedy_allocate", ([0.1, -0.2, 0.3], [0.001, 0.01, 0.002], 1.0), {}),
        "greedy_batched": ("greedy_allocate", (Lb, Db, 0.015), {"eps": 1e-4}),
        "greedy_large": ("greedy_allocate", (Ll, Dl, 10.0), {}),
        # uniform
        "uniform_count": ("uniform_allocate", (3, 0.04), {}),
        "uniform_batched": ("uniform_allocate", (np.ones((2, 4)), [0.04, 0.07]), {}),
    }
    return P


def solve(fn: str, args: tuple, kwargs: dict) -> dict:
    res = FUNCTIONS[fn](*args, **kwargs)
    return {f: encode(np.asarray(getattr(res, f))[()]) for f in FIELDS[fn]}


def _record() -> dict:
    return {
        name: {
            "function": fn,
            "args": encode(list(a)),
            "kwargs": {k: encode(v) for k, v in kw.items()},
            "result": solve(fn, a, kw),
        }
        for name, (fn, a, kw) in problems().items()
    }


@pytest.fixture(scope="module")
def golden():
    if writing():
        save(FILE, {"problems": _record()})
        wrote(FILE)
    return load(FILE)["problems"]


@pytest.mark.parametrize("name", list(problems()))
def test_solver_output_is_bitwise_golden(golden, name):
    fn, args, kwargs = problems()[name]
    stored = golden.get(name)
    assert stored is not None, f"{name}: not in tests/golden/{FILE} (record it deliberately)"
    # the inputs are the ones that were recorded (a silent edit above would void the check)
    assert encode(list(args)) == stored["args"]
    assert {k: encode(v) for k, v in kwargs.items()} == stored["kwargs"]
    got = solve(fn, args, kwargs)
    for field, value in stored["result"].items():
        assert got[field] == value, f"{name}.{field}: {got[field]} != stored {value}"


def test_batched_rows_equal_single_problems(golden):
    """Each stored batched answer is also each row's single-problem answer (both are pinned)."""
    fn, (W, Tb), kw = problems()["wf_batched"]
    delta = decode(golden["wf_batched"]["result"]["delta"])
    for b in range(W.shape[0]):
        one = water_fill(W[b], Tb[b], floors=kw["floors"][b], upper=kw["upper"][b])
        np.testing.assert_array_equal(one.delta, delta[b])


def test_goldens_are_kept_per_machine_class(monkeypatch):
    """The machine's class picks the golden folder; a class with none recorded skips with the
    way to record it (another class's last bits would fail without anything being wrong)."""
    from golden import _golden

    fp = _golden.fingerprints_module()
    assert (_golden.GOLDEN / "x86_64-avx2" / FILE).exists()
    assert (_golden.GOLDEN / "x86_64-avx512-znver4" / FILE).exists()
    # what numba compiles for decides (an Intel AVX-512 CPU tunes the sums otherwise)
    monkeypatch.setattr(fp.platform, "machine", lambda: "x86_64")
    from numba.core import config

    monkeypatch.setattr(config, "CPU_NAME", "skylake-avx512")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512f")
    assert fp.machine_class() == "x86_64-avx512-skylake-avx512"
    monkeypatch.setattr(config, "CPU_NAME", "haswell")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,-avx512f")
    assert fp.machine_class() == "x86_64-avx2"
    monkeypatch.setattr(fp, "machine_class", lambda: "riscv64")
    with pytest.raises(
        pytest.skip.Exception, match="no goldens recorded for machine class riscv64"
    ):
        _golden.load(FILE)
