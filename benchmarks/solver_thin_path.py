"""The small-n public calls against scipy brentq and a previous revision's wrappers, interleaved.

    .venv/bin/python benchmarks/solver_thin_path.py --baseline main
    # writes benchmarks/results/solver_thin_path.json

The targets of the solver's thin path are ratios measured in one run (water_fill n=4 >= 100x
``scipy.optimize.brentq``; the previous wrapper as the yardstick of a change). On a shared,
loaded box, rows timed one after the other (benchmarks/solvers.py) see different loads; here
every round times each row once, in turn (``number`` calls, the order rotated from round to
round), for ``rounds`` rounds, and the clock is the thread's CPU time (``time.thread_time``:
waiting for a core does not count), so a ratio compares rows under the same conditions.
Reported per row: the min and the median over rounds, in microseconds per call; ratios are
taken min to min and median to median. The garbage collector runs as in use (``--no-gc`` turns
it off while a row runs, as timeit does: brentq, which allocates, then gets faster).

Rows (n = 4 and 16; the n=4 water_fill instance is benchmarks/solvers.py's, and the ratio to
brentq depends on the instance: brentq's cost hardly does, ours grows with the Newton passes):
``water_fill`` (defaults, floors and upper arrays), the same with ``out=``, with ``lower=``
given (the general compiled entry), ``greedy_allocate``; with ``--baseline REV`` the same calls
of REV's wrapper modules (same kernels); ``scipy brentq`` on the level (numpy closure).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvers import BASELINE, greedy_instance, load, load_baseline, peer_brentq, wf_instance  # noqa: E402

from kl_alloc import greedy_allocate, water_fill  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "solver_thin_path.json"


def rows_for(n: int, rng) -> dict:
    U, C, cap, T = wf_instance(n, rng)
    L, D, TG = greedy_instance(n, rng)
    out = np.empty(n)
    rows = {
        "water_fill (API)": lambda: water_fill(U, T, floors=C, upper=cap),
        "water_fill (API, out=)": lambda: water_fill(U, T, floors=C, upper=cap, out=out),
        "water_fill (API, lower=0.01)": lambda: water_fill(U, T, floors=C, lower=0.01, upper=cap),
        "greedy_allocate (API)": lambda: greedy_allocate(L, D, TG),
    }
    if BASELINE:
        wf, gr = BASELINE["water_fill"], BASELINE["greedy_allocate"]
        rows.update(
            {
                "previous water_fill (API)": lambda: wf(U, T, floors=C, upper=cap),
                "previous water_fill (API, out=)": lambda: wf(U, T, floors=C, upper=cap, out=out),
                "previous water_fill (API, lower=0.01)": lambda: wf(
                    U, T, floors=C, lower=0.01, upper=cap
                ),
                "previous greedy_allocate (API)": lambda: gr(L, D, TG),
            }
        )
    rows["scipy brentq"] = lambda: peer_brentq(U, C, cap, T)
    return rows


def interleaved(rows: dict, rounds: int, with_gc: bool, target_s: float = 0.002) -> dict:
    """Per row: min and median thread-CPU seconds per call over ``rounds`` interleaved rounds."""
    numbers = {}
    for name, fn in rows.items():
        fn()  # warm (variant loading)
        t0 = time.thread_time()
        fn()
        numbers[name] = max(1, int(target_s / max(time.thread_time() - t0, 1e-7)))
    samples: dict = {name: [] for name in rows}
    names = list(rows)
    for i in range(rounds):
        gc.collect()
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotated each round
            fn, k = rows[name], numbers[name]
            if not with_gc:
                gc.disable()
            t0 = time.thread_time()
            for _ in range(k):
                fn()
            dt = time.thread_time() - t0
            gc.enable()
            samples[name].append(dt / k)
    return {
        name: {"min": min(v), "median": statistics.median(v), "number": numbers[name]}
        for name, v in samples.items()
    }


def ratios(res: dict) -> list[tuple[str, float, float]]:
    out = []
    for name in res:
        if name.startswith("previous"):
            ours = name.removeprefix("previous ")
            pairs = [(name, ours)]
        elif name == "scipy brentq":
            pairs = [(name, "water_fill (API)"), (name, "water_fill (API, out=)")]
        else:
            continue
        for a, b in pairs:
            r_min = res[a]["min"] / res[b]["min"]
            r_med = res[a]["median"] / res[b]["median"]
            out.append((f"{a} / {b}", r_min, r_med))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also time the wrappers of git revision REV")
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument(
        "--no-gc",
        action="store_true",
        help="garbage collector off while a row runs (as timeit; flatters brentq, which allocates)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.baseline:
        load_baseline(args.baseline)
    meta = {"load_before": load(), "rounds": args.rounds, "baseline": args.baseline}
    meta["gc"] = "off while a row runs" if args.no_gc else "on (as in use)"
    report = {}
    rng = np.random.default_rng(0)  # n=4: benchmarks/solvers.py's water_fill instance
    for n in (4, 16):
        res = interleaved(rows_for(n, rng), args.rounds, not args.no_gc)
        report[f"n={n}"] = {"rows": res, "ratios": ratios(res)}
        print(f"\nn={n}  (thread CPU time per call, us; {args.rounds} interleaved rounds)")
        for name, r in res.items():
            print(f"  {name:40s} min {r['min'] * 1e6:9.3f}  median {r['median'] * 1e6:9.3f}")
        for label, r_min, r_med in report[f"n={n}"]["ratios"]:
            print(f"  -> {label}: {r_min:.2f}x (mins), {r_med:.2f}x (medians)")
    meta["load_after"] = load()
    print(f"\nload average before/after: {meta['load_before']} / {meta['load_after']}")
    Path(args.out).write_text(json.dumps({"meta": meta, **report}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
