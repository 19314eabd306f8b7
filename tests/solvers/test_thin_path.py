"""The thin public path: water_fill's ``out=`` argument, the compiled-entry fast path of both
wrappers, and that every route gives the same numbers as the general path."""

from __future__ import annotations

import numpy as np
import pytest

from kl_alloc import greedy_allocate, water_fill
from kl_alloc.solvers import GreedyResult

FIELDS = ("delta", "level", "iterations", "converged", "residual", "status")


def _instance(n, seed=0):
    rng = np.random.default_rng(seed)
    U, C = rng.exponential(size=(2, n))
    cap = rng.uniform(0.01, 0.5, n)
    return U, C, cap, float(0.3 * cap.sum())


def _same(a, b, residual=True):
    """Bitwise equality of two results (residual optionally to rounding: for n >= 8 its last bits
    depend on whether the compiled sum in the final pass ran vectorised, which LLVM decides at
    run time from the distance between the output and input addresses)."""
    for f in FIELDS:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        if f == "residual" and not residual:
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-13)
        else:
            assert x.tobytes() == y.tobytes() and x.shape == y.shape, f


KWARGS = [
    {"floors": "C", "upper": "cap"},
    {"floors": "C"},
    {},
    {"floors": 0.2, "upper": 0.4},
    {"floors": "C", "lower": 0.001, "upper": "cap"},
    {"floors": "C", "lower": "lo", "upper": "cap"},
    {"floors": "C", "upper": "cap", "method": "bisect"},
    {"floors": "C", "upper": "cap", "tol": 1e-6, "max_iter": 3},
]


def _kw(kw, C, cap):
    sub = {"C": C, "cap": cap, "lo": 0.01 * cap}
    return {k: sub.get(v, v) if isinstance(v, str) and k != "method" else v for k, v in kw.items()}


@pytest.mark.parametrize("n", [0, 1, 4, 7, 16, 40])
@pytest.mark.parametrize("kw", KWARGS)
def test_out_equals_allocating_call(n, kw):
    U, C, cap, T = _instance(n, seed=n)
    kw = _kw(kw, C, cap)
    ref = water_fill(U, T, **kw)
    out = np.full(n, np.nan)
    res = water_fill(U, T, out=out, **kw)
    assert res.delta is out
    _same(res, ref, residual=n < 8)
    # the general path (lists, an np.float64 tolerance) gives the same numbers
    slow = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    if "tol" in slow:
        slow["tol"] = np.float64(slow["tol"])
    _same(water_fill(U.tolist(), T, **slow), ref, residual=n < 8)
    out2 = np.full(n, np.nan)
    res2 = water_fill(U.tolist(), T, out=out2, **slow)
    assert res2.delta is out2
    _same(res2, ref, residual=n < 8)


@pytest.mark.parametrize("n", [1, 4, 16])
def test_out_aliasing_an_input(n):
    U, C, cap, T = _instance(n, seed=3)
    ref = water_fill(U, T, floors=C, upper=cap)
    for name in ("weights", "floors", "upper"):
        U2, C2, cap2 = U.copy(), C.copy(), cap.copy()
        out = {"weights": U2, "floors": C2, "upper": cap2}[name]
        res = water_fill(U2, T, floors=C2, upper=cap2, out=out)
        assert res.delta is out
        _same(res, ref)
    # out overlapping the weights with an offset (a partial overlap)
    buf = np.concatenate([U, [0.0]])
    res = water_fill(buf[:n], T, floors=C, upper=cap, out=buf[1:])
    _same(res, ref)


def test_out_batched_and_aliasing():
    rng = np.random.default_rng(7)
    U, C, cap = rng.exponential(size=(3, 5, 4))
    T = 0.3 * cap.sum(axis=-1)
    ref = water_fill(U, T, floors=C, upper=cap)
    out = np.empty_like(U)
    res = water_fill(U, T, floors=C, upper=cap, out=out)
    assert res.delta is out
    _same(res, ref)
    U2 = U.copy()
    res = water_fill(U2, T, floors=C, upper=cap, out=U2)
    assert res.delta is U2
    _same(res, ref)


@pytest.mark.parametrize(
    "out, what",
    [
        (np.empty(3), "shape"),
        (np.empty((1, 4)), "shape"),
        (np.empty(4, dtype=np.float32), "dtype"),
        (np.empty(4, dtype=">f8"), "dtype"),
        (np.empty(8)[::2], "C-contiguous"),
        ("ro", "read-only"),
        ([0.0, 0.0, 0.0, 0.0], "list"),
    ],
)
def test_out_wrong_raises(out, what):
    U, C, cap, T = _instance(4)
    if isinstance(out, str):
        out = np.zeros(4)
        out.flags.writeable = False
    with pytest.raises(ValueError, match=rf"^out must be .*{what}"):
        water_fill(U, T, floors=C, upper=cap, out=out)
    with pytest.raises(ValueError, match="^out must be"):
        water_fill(np.stack([U, U]), T, floors=C, upper=cap, out=out)


def test_out_with_bad_input_still_names_the_argument():
    U, C, cap, T = _instance(4)
    out = np.zeros(4)
    with pytest.raises(ValueError, match=r"floors\[2\] = -1\.0"):
        water_fill(U, T, floors=np.array([0.1, 0.1, -1.0, 0.1]), upper=cap, out=out)


def test_fast_path_inputs_it_must_not_take():
    """Arrays the compiled entry cannot read as they are (byte order, strides, dtype, 0-d, 2-d,
    read-only) go through the general path and give the same numbers."""
    U, C, cap, T = _instance(6, seed=11)
    ref = water_fill(U, T, floors=C, upper=cap)
    big = U.astype(">f8")
    strided = np.repeat(U, 2)[::2]
    ro = U.copy()
    ro.flags.writeable = False
    for w in (big, strided, ro):
        _same(water_fill(w, T, floors=C, upper=cap), ref)
    _same(water_fill(U, np.float64(T), floors=C.astype(">f8"), upper=cap[::-1][::-1]), ref)
    f32 = water_fill(U.astype(np.float32), T, floors=C, upper=cap)
    _same(f32, water_fill(U.astype(np.float32).astype(np.float64), T, floors=C, upper=cap))


def test_long_row_through_the_public_call():
    U, C, cap, T = _instance(20000, seed=2)
    res = water_fill(U, T, floors=C, upper=cap)
    out = np.empty(20000)
    _same(water_fill(U, T, floors=C, upper=cap, out=out), res, residual=False)
    assert res.status == 0 and abs(res.residual) <= 1e-9 * T


@pytest.mark.parametrize("n", [0, 1, 4, 16, 128, 129, 1000])
def test_greedy_fast_and_general_paths_agree(n):
    rng = np.random.default_rng(n)
    L = np.round(rng.normal(size=n), 1)
    D = np.round(rng.exponential(size=n), 1)
    T = 0.3 * float(D.sum())
    g = greedy_allocate(L, D, T)
    s = greedy_allocate(L.tolist(), D.tolist(), T)
    for f in ("delta", "scores", "critical", "order"):
        assert np.asarray(getattr(g, f)).tobytes() == np.asarray(getattr(s, f)).tobytes(), f
    np.testing.assert_allclose(g.residual, s.residual, rtol=0, atol=1e-13)


def test_greedy_result_is_a_named_tuple_with_lazy_order():
    g = greedy_allocate(np.array([1.0, 2.0]), np.array([0.1, 0.2]), 0.25)
    assert isinstance(g, GreedyResult) and isinstance(g, tuple) and len(g) == 4
    delta, scores, critical, residual = g
    assert delta is g.delta and scores is g.scores
    assert g.order is g.order and g.order.tolist() == [1, 0]
    with pytest.raises(AttributeError):
        g.order = None


@pytest.mark.parametrize("n", [1, 4, 16, 40])
@pytest.mark.parametrize("kw", [{"floors": "C", "upper": "cap"}, {"floors": "C"}, {}])
def test_default_kernel_equals_the_general_entry(n, kw):
    """The defaults go through solve_fast (five arguments); the same parameters given explicitly
    (other objects than the defaults) go through solve_row_entry: the same bits."""
    U, C, cap, T = _instance(n, seed=20 + n)
    kw = _kw(kw, C, cap)
    explicit = dict(lower=float("0"), method="".join("exact"), tol=float("1e-12"))
    _same(water_fill(U, T, **kw), water_fill(U, T, max_iter=int("200"), **explicit, **kw))


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"floors": True}, "floors"),
        ({"upper": np.True_}, "upper"),
        ({"floors": 1 + 0j}, "floors"),
        ({"lower": False}, "lower"),
        ({"tol": True}, "tol"),
        ({"max_iter": 2.0}, "max_iter"),
    ],
)
def test_fast_path_does_not_convert_what_the_general_path_rejects(kw, name):
    """numba's dispatcher converts bools (and, with compilation disabled, more) to the kernels'
    types; the wrapper must still reject them, naming the argument."""
    U, C, cap, T = _instance(4)
    with pytest.raises(ValueError, match=name):
        water_fill(U, T, **kw)
    with pytest.raises(ValueError, match="total"):
        water_fill(U, True, floors=C)


def test_fast_path_takes_ints_subclasses_and_odd_sequences_like_the_general_path():
    U, C, cap, T = _instance(5, seed=9)
    ref = water_fill(U, T, floors=2.0, upper=cap)
    _same(water_fill(U, T, floors=2, upper=cap), ref)  # an int parameter: converted exactly
    sub = U.view(type("Sub", (np.ndarray,), {}))
    _same(water_fill(sub, T, floors=2.0, upper=cap), ref)
    assert water_fill([], 1.0).delta.shape == (0,)  # (numba cannot type an empty list)
    assert greedy_allocate([], [], 1.0).delta.shape == (0,)
    with pytest.raises(ValueError, match="improvements"):
        greedy_allocate(np.array([1.0, np.nan]), np.ones(2), 1.0)


@pytest.mark.parametrize("first", ["water_fill", "greedy"])
def test_fast_path_compiles_in_a_fresh_process_with_an_empty_cache(tmp_path, first):
    """The first call of a process, with nothing in numba's cache, compiles the fast variant and
    the kernels it calls (solve_fast calls solve_row_entry, whose dispatcher the fast path keeps
    disabled: compiling one used to fail with a TypingError on a fresh clone)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from kl_alloc import greedy_allocate, water_fill\n"
        "w = np.array([1.0, 2.0, 3.0, 4.0])\n"
        f"first = {first!r}\n"
        "r = water_fill(w, 1.0) if first == 'water_fill' else greedy_allocate(w, w, 1.0)\n"
        "print(float(np.sum(r.delta)))\n"
        "print(float(np.sum(water_fill(w, 1.0).delta)))\n"
        "print(float(np.sum(water_fill(list(w), 1.0).delta)))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert [float(x) for x in lines[-2:]] == [1.0, 1.0]
