"""HATRPO-W and re-scoring HATRPO-G CPU per iteration against the agent count, as ratios to
HATRPO's, on MaMuJoCo's ManySegmentSwimmer with N one-joint agents (N = 2..16).

    python benchmarks/agent_overhead_curve.py                               # N = 2, 4, 8, 16
    python benchmarks/agent_overhead_curve.py --agents 2,4 --iterations 1 --repeats 1

Each point is :func:`mamujoco_profile.profile_run` (the real Trainer, the MaMuJoCo preset,
20 copies x 200 steps, one torch thread, one warm-up iteration dropped, CPU seconds of the
training thread per iteration) for HATRPO, HATRPO-W and HATRPO-G, interleaved within each
repeat and each variant (so the machine's load hits all three alike); the ratio is taken
within a repeat, and the table gives the median and range over repeats.

Variants (``--variant NAME=key=value;key=value``, repeatable; default: both below):
``reference`` (the default config: Hessian Fisher products, cold CG) and ``fast``
(``fvp=gauss_newton``, ``cg_warm_iters=4``). Writes ``agent_overhead_curve.json`` and ``.png``
into ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from mamujoco_profile import profile_run  # noqa: E402

ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")
DEFAULT_VARIANTS = ("reference=", "fast=fvp=gauss_newton;cg_warm_iters=4")
TARGETS = {"hatrpo-w": 1.2, "hatrpo-g": 1.6}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"fast=fvp=gauss_newton;cg_warm_iters=4"`` -> ("fast", {"fvp": ..., ...})."""
    from kl_alloc.config import parse_set

    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--variant {text!r}: expected NAME=key=value;key=value")
    return name, parse_set([item for item in rest.split(";") if item])


def measure(args: argparse.Namespace, save=None) -> dict[str, Any]:
    """Measures every agent count; ``save(result)`` after each one (partial results survive)."""
    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    points: dict[str, Any] = {}
    for n in args.agents:
        task = f"{args.scenario}-{n}x1"
        cpu = {v: {a: [] for a in ALGOS} for v in variants}
        for rep in range(args.repeats):
            for vname, overrides in variants.items():
                for algo in ALGOS:
                    res = profile_run(task, algo, args.iterations, args.seed, "default", overrides)
                    cpu[vname][algo].append(res["seconds"]["total"])
                    print(
                        f"n={n:2d} {vname:10} {algo:9} repeat {rep}: "
                        f"{res['seconds']['total']:.3f} CPU s/iter",
                        flush=True,
                    )
        point = {}
        for vname, rows in cpu.items():
            base = rows["hatrpo"]
            point[vname] = {
                algo: {
                    "seconds_per_iter": float(np.median(reps)),
                    "seconds_per_iter_repeats": reps,
                    "ratio": float(np.median([a / b for a, b in zip(reps, base, strict=True)])),
                    "ratio_repeats": [a / b for a, b in zip(reps, base, strict=True)],
                }
                for algo, reps in rows.items()
            }
        points[str(n)] = point
        if save is not None:
            save({"variants": dict(variants), "points": points})
    return {"variants": dict(variants), "points": points}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(int(n) for n in result["points"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"hatrpo-w": ("tab:blue", "HATRPO-W"), "hatrpo-g": ("tab:red", "HATRPO-G")}
    marks = ["o", "s", "^", "D"]
    for k, vname in enumerate(result["variants"]):
        dash = "-" if k == 0 else "--"
        for algo, (color, label) in styles.items():
            rows = [result["points"][str(n)][vname][algo] for n in ns]
            med = [r["ratio"] for r in rows]
            lo = [min(r["ratio_repeats"]) for r in rows]
            hi = [max(r["ratio_repeats"]) for r in rows]
            ax.plot(ns, med, dash, color=color, marker=marks[k % 4], label=f"{label} ({vname})")
            ax.fill_between(ns, lo, hi, color=color, alpha=0.12)
    for algo, target in TARGETS.items():
        ax.axhline(target, color=styles[algo][0], lw=0.8, ls=":")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("agents (ManySegmentSwimmer Nx1)")
    ax.set_ylabel("CPU s/iteration / HATRPO's")
    ax.set_title("W/G overhead vs agent count (dotted: targets at n = 6)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--agents", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4, 8, 16]
    )
    parser.add_argument("--scenario", default="ManySegmentSwimmer")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", help="NAME=key=value;key=value")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    def save(result: dict[str, Any]) -> None:
        result.update(
            command="python benchmarks/agent_overhead_curve.py " + shlex.join(sys.argv[1:]),
            scenario=args.scenario,
            iterations=args.iterations,
            repeats=args.repeats,
            load_avg=list(os.getloadavg()),
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "agent_overhead_curve.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, args.out / "agent_overhead_curve.png")

    result = measure(args, save)
    print(f"{'n':>3} {'variant':10} {'W ratio':>14} {'G ratio':>14}")
    for n, point in result["points"].items():
        for vname, rows in point.items():
            cells = [
                f"{rows[a]['ratio']:.2f} ({min(rows[a]['ratio_repeats']):.2f}-"
                f"{max(rows[a]['ratio_repeats']):.2f})"
                for a in ("hatrpo-w", "hatrpo-g")
            ]
            print(f"{n:>3} {vname:10} {cells[0]:>14} {cells[1]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
