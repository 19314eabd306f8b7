"""Microbenchmarks of the solver core against the peers a user would otherwise pick.

    .venv/bin/python benchmarks/solvers.py          # writes benchmarks/results/solvers.json
    .venv/bin/python benchmarks/solvers.py --quick  # no numpy/python peers at n = 1e6
    .venv/bin/python benchmarks/solvers.py --baseline main --repeats 15  # + the previous wrappers

Every case is timed in this one process, peers side by side, on the same instance: the median
and the min over repeats of the wall time per call (each repeat runs the call enough times to
last >= ~20 ms) and the median and min process CPU time per call, in microseconds (on a loaded
box the CPU times are the steadier measure: the wall clock also counts waiting for a core);
"x ours" is a row's median over our public call's median, and "fastest peer / ours" the same for
the best peer; brentq and the previous wrappers get their ratio by each of the four measures. Every
peer's answer is checked against ours (max |delta - ours| / total, column "err") so no row times
something that does not solve the problem. The machine is shared: the load average is printed
and stored, and only ratios from the same run should be compared.

Instance (solver-notes section 9): weights U ~ Exp(1), floors C ~ Exp(1), caps ~ U(0.01, 0.5),
total = 0.3 * sum(caps); greedy: L ~ Exp(1), D ~ Exp(1), total = 0.3 * sum(D).

Rows:
  water_fill exact / bisect     the public API (validation inside the kernel, allocation of delta)
  water_fill exact (API, out=)  the same with the caller's output array (no allocation)
  kernel exact                  the njit kernel, called through numba's dispatcher with a
                                preallocated output (what the general path does)
  fast kernel                   the kernel the API's fast path calls (solve_fast through its
                                dispatcher, preallocated output): the part of the API time that
                                is not Python
  previous ... (REV)            with --baseline REV: the wrapper modules water_fill.py/greedy.py
                                of git revision REV, loaded beside the current ones (same kernels)
  scipy brentq                  scipy.optimize.brentq on the level, numpy closure (default xtol)
  numpy bisection               vectorised bisection on the level until |S - T| <= 1e-12 T
  python bisection              the same over Python lists (n <= 1024)
  scipy SLSQP                   max sum U log(1 + delta/C), analytic jacobian (n <= 16)
  greedy_allocate               the public API (order is sorted lazily: "+ .order" adds it)
  numpy argsort+cumsum          the obvious vectorised greedy
  scipy linprog                 the fractional knapsack as an LP (HiGHS), n <= 1024
Batched rows: (B, n) problems in one call, microseconds per problem (0.050 = 50 ns), 1 thread
and all threads (CPU time sums the threads); the peer is a Python loop over scipy brentq
(measured on a few hundred rows).
Cold start: a fresh interpreter, warm numba cache: `import kl_alloc` + the first water_fill and
greedy_allocate calls, timed inside the subprocess (median of 5 processes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy
from scipy.optimize import brentq, linprog, minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kl_alloc  # noqa: E402
from kl_alloc import greedy_allocate, water_fill  # noqa: E402

_K = sys.modules["kl_alloc.solvers._wf_kernels"]
_WF = sys.modules["kl_alloc.solvers.water_fill"]
RESULTS = Path(__file__).resolve().parent / "results" / "solvers.json"


# ------------------------------------------------------------------------------ timing


REPEATS = 7  # (--repeats)


def timed(fn, *, min_time=0.02, repeats=None) -> dict:
    """Median and min wall seconds per call over `repeats` repeats of `number` calls each, and
    the median process CPU seconds per call (on a shared, loaded box the wall clock also counts
    the time the process waited for a core; CPU time does not, but sums over threads)."""
    fn()  # warm (JIT cache load, page faults)
    repeats = REPEATS if repeats is None else max(repeats, REPEATS * repeats // 7)
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time or number >= 1 << 20:
            break
        number *= 2 if dt > min_time / 8 else 8
    samples = []
    cpu = []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
        cpu.append((time.process_time() - c0) / number)
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "cpu_median": statistics.median(cpu),
        "cpu_min": min(cpu),
        "number": number,
    }


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ------------------------------------------------------------------------------ baseline

BASELINE: dict = {}  # "water_fill" / "greedy_allocate" of --baseline REV, and "rev"


def load_baseline(rev: str) -> None:
    """The public wrappers of git revision ``rev`` (kl_alloc/solvers/water_fill.py and greedy.py,
    executed as separate modules beside the current ones; they share the current kernels, so a
    kernel change is not measured, only the wrappers')."""
    import types

    root = Path(__file__).resolve().parents[1]
    for name, attr in (("water_fill", "water_fill"), ("greedy", "greedy_allocate")):
        src = subprocess.run(
            ["git", "show", f"{rev}:kl_alloc/solvers/{name}.py"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        mod = types.ModuleType(f"baseline_{name}")
        mod.__file__ = f"<{rev}:kl_alloc/solvers/{name}.py>"
        sys.modules[mod.__name__] = mod
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        BASELINE[attr] = getattr(mod, attr)
    BASELINE["rev"] = rev
    # the previous wrappers compile their variants through dispatchers the current ones keep
    # closed: open them for the warm-up calls (timed() warms every function first)
    for fn in (_K.solve_row_entry, sys.modules["kl_alloc.solvers._greedy_kernels"].greedy_entry):
        fn._can_compile = True


# ------------------------------------------------------------------------------ instances


def wf_instance(n, rng):
    U = rng.exponential(size=n)
    C = rng.exponential(size=n)
    cap = rng.uniform(0.01, 0.5, n)
    return U, C, cap, float(0.3 * cap.sum())


def greedy_instance(n, rng):
    L = rng.exponential(size=n)
    D = rng.exponential(size=n)
    return L, D, float(0.3 * D.sum())


# ------------------------------------------------------------------------------ peers


def peer_brentq(U, C, cap, T):
    def f(mu):
        return np.clip(U * mu - C, 0.0, cap).sum() - T

    hi = float(np.max((cap + C) / U))
    mu = brentq(f, 0.0, hi)
    return np.clip(U * mu - C, 0.0, cap)


def peer_numpy_bisect(U, C, cap, T):
    lo, hi = 0.0, float(np.max((cap + C) / U))
    for _ in range(200):
        mu = 0.5 * (lo + hi)
        S = np.clip(U * mu - C, 0.0, cap).sum()
        if abs(S - T) <= 1e-12 * T:
            break
        if S < T:
            lo = mu
        else:
            hi = mu
    return np.clip(U * mu - C, 0.0, cap)


def peer_python_bisect(U, C, cap, T):
    u, c, k = U.tolist(), C.tolist(), cap.tolist()
    n = len(u)
    lo, hi = 0.0, max((k[i] + c[i]) / u[i] for i in range(n))
    mu = 0.5 * (lo + hi)
    for _ in range(200):
        mu = 0.5 * (lo + hi)
        S = 0.0
        for i in range(n):
            x = u[i] * mu - c[i]
            S += 0.0 if x < 0.0 else (k[i] if x > k[i] else x)
        if abs(S - T) <= 1e-12 * T:
            break
        if S < T:
            lo = mu
        else:
            hi = mu
    return np.clip(U * mu - C, 0.0, cap)


def peer_slsqp(U, C, cap, T):
    n = len(U)
    res = minimize(
        lambda d: -np.sum(U * np.log1p(d / C)),
        np.full(n, T / n),
        jac=lambda d: -U / (C + d),
        bounds=list(zip(np.zeros(n), cap, strict=True)),
        constraints=[{"type": "eq", "fun": lambda d: d.sum() - T, "jac": lambda d: np.ones(n)}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return res.x


def peer_greedy_numpy(L, D, T, eps=1e-4):
    s = L / (D + eps)
    r = np.where(L > 0, D, 0.0)
    order = np.argsort(-s, kind="stable")
    cum = np.cumsum(r[order])
    take = np.clip(T - (cum - r[order]), 0.0, r[order])
    out = np.empty_like(r)
    out[order] = take
    return out


def peer_linprog(L, D, T, eps=1e-4):
    s = L / (D + eps)
    n = len(L)
    res = linprog(
        -s,
        A_ub=np.ones((1, n)),
        b_ub=[T],
        bounds=list(zip(np.zeros(n), np.where(L > 0, D, 0.0), strict=True)),
        method="highs",
    )
    return res.x


# ------------------------------------------------------------------------------ cases


def row(case, name, t, err=None, ours=None, note=""):
    return {"case": case, "name": name, **t, "err": err, "ours": ours, "note": note}


def bench_water_fill(n, rng, quick):
    U, C, cap, T = wf_instance(n, rng)
    case = f"water_fill n={n}"
    ref = water_fill(U, T, floors=C, upper=cap)
    out = np.empty(n)
    # the kernel the general path calls for this n (through numba's dispatcher)
    kernel = _K.solve_row if n < _K.SAMPLE_MIN else _K.solve_row_large
    rows = [
        row(
            case,
            "water_fill exact (API)",
            timed(lambda: water_fill(U, T, floors=C, upper=cap)),
            ours=True,
            note=f"{ref.iterations} passes",
        ),
        row(
            case,
            "water_fill exact (API, out=)",
            timed(lambda: water_fill(U, T, floors=C, upper=cap, out=out)),
            ours=True,
            note="caller's output array",
        ),
        row(
            case,
            "water_fill bisect (API)",
            timed(lambda: water_fill(U, T, floors=C, upper=cap, method="bisect")),
            ours=True,
            note=f"{water_fill(U, T, floors=C, upper=cap, method='bisect').iterations} passes",
            err=_err(water_fill(U, T, floors=C, upper=cap, method="bisect").delta, ref.delta, T),
        ),
        row(
            case,
            "kernel exact (preallocated out)",
            timed(lambda: kernel(U, T, C, 0.0, cap, 0, 1e-12, 200, out)),
            ours=True,
            note="numba dispatcher call",
        ),
    ]
    if n < _K.SAMPLE_MIN:
        fast = _WF._FAST
        rows.append(
            row(
                case,
                "fast kernel (preallocated out)",
                timed(lambda: fast(U, T, C, cap, out)),
                ours=True,
                note="what the API's fast path calls",
            )
        )
    if BASELINE:
        prev = BASELINE["water_fill"]
        rows.append(
            row(
                case,
                f"previous water_fill (API, {BASELINE['rev']})",
                timed(lambda: prev(U, T, floors=C, upper=cap)),
                ours=True,
                err=_err(prev(U, T, floors=C, upper=cap).delta, ref.delta, T),
                note="the previous wrapper, same kernels",
            )
        )
    peers = [("scipy brentq", peer_brentq), ("numpy bisection", peer_numpy_bisect)]
    if n <= 1024:
        peers.append(("python bisection", peer_python_bisect))
    if n <= 16:
        peers.append(("scipy SLSQP", peer_slsqp))
    if quick and n >= 10**6:
        peers = peers[:1]
    for name, fn in peers:
        rows.append(
            row(
                case,
                name,
                timed(lambda fn=fn: fn(U, C, cap, T), repeats=5),
                err=_err(fn(U, C, cap, T), ref.delta, T),
            )
        )
    return rows


def bench_greedy(n, rng, quick):
    L, D, T = greedy_instance(n, rng)
    case = f"greedy n={n}"
    ref = greedy_allocate(L, D, T)
    rows = [
        row(case, "greedy_allocate (API)", timed(lambda: greedy_allocate(L, D, T)), ours=True),
        row(
            case,
            "greedy_allocate + .order",
            timed(lambda: greedy_allocate(L, D, T).order),
            ours=True,
        ),
        *(
            [
                row(
                    case,
                    f"previous greedy_allocate (API, {BASELINE['rev']})",
                    timed(lambda: BASELINE["greedy_allocate"](L, D, T)),
                    ours=True,
                    err=_err(BASELINE["greedy_allocate"](L, D, T).delta, ref.delta, T),
                    note="the previous wrapper, same kernels",
                )
            ]
            if BASELINE
            else []
        ),
        row(
            case,
            "numpy argsort+cumsum",
            timed(lambda: peer_greedy_numpy(L, D, T), repeats=5),
            err=_err(peer_greedy_numpy(L, D, T), ref.delta, T),
        ),
    ]
    if n <= 1024:
        rows.append(
            row(
                case,
                "scipy linprog (HiGHS)",
                timed(lambda: peer_linprog(L, D, T), repeats=5),
                err=_err(peer_linprog(L, D, T), ref.delta, T),
            )
        )
    return rows


def bench_batched(n, B, rng):
    U = rng.exponential(size=(B, n))
    C = rng.exponential(size=(B, n))
    cap = rng.uniform(0.01, 0.5, (B, n))
    T = 0.3 * cap.sum(axis=1)
    case = f"batched water_fill (B={B}, n={n})"
    nthreads = numba.config.NUMBA_NUM_THREADS
    rows = []
    for label, kw in (("capped", {"floors": C, "upper": cap}), ("uncapped", {"floors": C})):
        Tk = T if label == "capped" else np.full(B, 0.1 * n)
        for threads in sorted({1, nthreads}):
            numba.set_num_threads(threads)
            t = timed(lambda kw=kw, Tk=Tk: water_fill(U, Tk, **kw), repeats=5, min_time=0.1)
            rows.append(
                row(
                    case,
                    f"water_fill exact {label}, {threads} thread(s)",
                    _per(t, B),
                    ours=True,
                    note="per problem",
                )
            )
        numba.set_num_threads(nthreads)
    m = 200
    t = timed(lambda: [peer_brentq(U[i], C[i], cap[i], T[i]) for i in range(m)], repeats=3)
    rows.append(
        row(
            case,
            "python loop of scipy brentq",
            _per(t, m),
            note="per problem",
        )
    )
    # greedy batched
    L = rng.exponential(size=(B, n))
    D = rng.exponential(size=(B, n))
    TG = 0.3 * D.sum(axis=1)
    for threads in sorted({1, nthreads}):
        numba.set_num_threads(threads)
        t = timed(lambda: greedy_allocate(L, D, TG), repeats=5, min_time=0.1)
        rows.append(
            row(
                f"batched greedy (B={B}, n={n})",
                f"greedy_allocate, {threads} thread(s)",
                _per(t, B),
                ours=True,
                note="per problem",
            )
        )
    numba.set_num_threads(nthreads)
    return rows


def _per(t, k):
    """Per-problem times from per-call times of a batch of k problems."""
    return {key: (v / k if key != "number" else v) for key, v in t.items()}


def _err(x, ref, T):
    return float(np.max(np.abs(np.asarray(x) - ref)) / T) if len(ref) else 0.0


COLD = """
import time
t0 = time.perf_counter(); c0 = time.process_time()
import numpy as np
t1 = time.perf_counter(); c1 = time.process_time()
from kl_alloc import water_fill, greedy_allocate
t2 = time.perf_counter(); c2 = time.process_time()
r = water_fill(np.array([0.5, 0.3, 0.2]), 0.04, floors=np.array([0.001, 0.002, 0.003]), upper=0.03)
t3 = time.perf_counter(); c3 = time.process_time()
g = greedy_allocate(np.array([1.0, 2.0, 3.0]), np.array([0.01, 0.02, 0.01]), 0.025)
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, c2 - c1 + c3 - c2)
"""


def bench_cold_start(runs=5):
    cmd = [sys.executable, "-c", COLD]
    env = dict(os.environ)
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # make sure the cache is warm
    parts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        parts.append([float(x) for x in p.stdout.split()] + [wall])
    med = [statistics.median(col) for col in zip(*parts, strict=True)]
    return {
        "import numpy": med[0],
        "import kl_alloc": med[1],
        "first water_fill": med[2],
        "first greedy_allocate": med[3],
        "import kl_alloc + first call (target <= 0.6 s)": med[1] + med[2],
        "import kl_alloc + first call, CPU time": med[4],
        "process wall (interpreter start to exit)": med[5],
    }


# ------------------------------------------------------------------------------ report


def report(rows):
    lines = []
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    for case, rs in by_case.items():
        ours = min(
            (
                r["median"]
                for r in rs
                if r["ours"]
                and "bisect" not in r["name"]
                and "kernel" not in r["name"]
                and "entry" not in r["name"]
                and "fast kernel" not in r["name"]
                and "previous" not in r["name"]
                and "out=" not in r["name"]
                and "order" not in r["name"]
            ),
            default=None,
        )
        peers = [r["median"] for r in rs if not r["ours"]]
        best_peer = min(peers) if peers else None
        ours_row = next((r for r in rs if r["ours"] and r["median"] == ours), None)
        lines.append(f"\n{case}")
        lines.append(
            f"  {'':40s} {'median us':>12s} {'min us':>11s} {'cpu us':>11s} {'cpu min':>11s} "
            f"{'x ours':>9s} {'err':>9s}  note"
        )
        for r in rs:
            ratio = r["median"] / ours if ours else float("nan")
            r["ratio_to_ours"] = ratio
            if not r["ours"] and best_peer is not None:
                r["fastest_peer"] = r["median"] == best_peer
            err = "" if r["err"] is None else f"{r['err']:.1e}"
            lines.append(
                f"  {r['name']:40s} {r['median'] * 1e6:12.3f} {r['min'] * 1e6:11.3f} "
                f"{r['cpu_median'] * 1e6:11.3f} {r['cpu_min'] * 1e6:11.3f} {ratio:9.1f} "
                f"{err:>9s}  {r['note']}"
            )
        if best_peer is not None and ours:
            lines.append(f"  -> fastest peer / ours = {best_peer / ours:.1f}x (wall medians)")
        for r in rs:  # the ratios the targets are stated in, by every measure
            if ours_row is not None and ("brentq" in r["name"] or "previous" in r["name"]):
                q = {k: r[k] / ours_row[k] for k in ("median", "min", "cpu_median", "cpu_min")}
                r["ratios_to_ours"] = q
                lines.append(
                    f"  -> {r['name']} / ours = {q['median']:.2f}x wall median, {q['min']:.2f}x "
                    f"wall min, {q['cpu_median']:.2f}x cpu median, {q['cpu_min']:.2f}x cpu min"
                )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--baseline", metavar="REV", help="also time the wrappers of git revision REV")
    ap.add_argument("--repeats", type=int, default=7, help="repeats per row (min/median over them)")
    args = ap.parse_args()
    global REPEATS
    REPEATS = max(3, args.repeats)
    if args.baseline:
        load_baseline(args.baseline)
    rng = np.random.default_rng(0)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "kl_alloc": kl_alloc.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "load_before": load(),
        "command": "python benchmarks/solvers.py"
        + (" --quick" if args.quick else "")
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + (f" --repeats {args.repeats}" if args.repeats != 7 else ""),
    }
    rows = []
    for n in (4, 16, 1024, 10**6):
        rows += bench_water_fill(n, rng, args.quick)
    for n in (4, 16, 1024, 10**6):
        rows += bench_greedy(n, rng, args.quick)
    for n in (4, 16):
        rows += bench_batched(n, 100_000, rng)
    meta["threading_layer"] = numba.threading_layer()
    cold = bench_cold_start()
    meta["load_after"] = load()
    text = report(rows)
    print(
        f"kl_alloc solver benchmarks  load avg before/after: {meta['load_before']} / "
        f"{meta['load_after']}  cores={meta['cores']} numba threads={meta['numba_threads']} "
        f"layer={meta['threading_layer']}"
    )
    print(text)
    print("\ncold start (fresh interpreter, warm numba cache), median of 5, seconds:")
    for k, v in cold.items():
        print(f"  {k:48s} {v:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "cold_start_s": cold}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
