"""What each difference between the mamujoco env's "harl" preset and its earlier "default"
preset does on Ant 2x4 (issue 11): reads the runs of ``benchmarks/sweeps/harl_ablation.toml``
(the harl preset with one group of settings put back) and the harl preset's own Ant 2x4 HATRPO
run (``benchmarks/results/evidence/hessian_fvp``: the evidence sweep's first run, made with the
same Fisher product as the variants) cut at the same step count, and prints a table
of scores; writes ``summary.json`` and ``curves.png`` next to the runs.

    python benchmarks/harl_ablation.py
    python benchmarks/harl_ablation.py --steps 1000000 --include-unfinished

Score of a run = the mean of its deterministic evaluations in the last 10% of the first
``--steps`` env steps (the evidence protocol's final score, at this step count); "mean" = the
mean of all its evaluations up to ``--steps`` (an area under the learning curve: it also sees
how early a variant learns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: sweep task -> what it puts back (benchmarks/sweeps/harl_ablation.toml)
VARIANTS = {
    "harl": "the harl preset itself (evidence/hessian_fvp/ant-2x4/hatrpo)",
    "no-arch": "tanh 64x64, no input / hidden LayerNorm",
    "no-critic-tricks": "MSE critic, no value clipping, no gradient clipping, Adam eps 1e-8",
    "exp-std": "std = exp(log_std) from exp(-1)",
    "obs-norm": "running observation normalisation on",
    "default-preset": "all of the above (the earlier default preset)",
}


def run_scores(run_dir: Path, steps: float, fraction: float) -> dict[str, Any] | None:
    """Score, mean and curve of one run cut at ``steps`` (None if it has no evaluation)."""
    from kl_alloc.rundir import load_run

    run = load_run(run_dir)
    keep = np.isfinite(run.eval_return_mean) & (run.eval_env_steps <= steps)
    x, y = run.eval_env_steps[keep], run.eval_return_mean[keep]
    if not y.size:
        return None
    complete = bool(np.nanmax(run.env_steps) >= steps) if run.env_steps.size else False
    reached = float(steps if complete else x.max())
    window = x >= (1.0 - fraction) * reached
    return {
        "run": str(run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir),
        "seed": int(run.config.get("seed", -1)) if isinstance(run.config, dict) else -1,
        "steps_reached": reached,
        "complete": complete,
        "score": float(y[window].mean()),
        "mean": float(y.mean()),
        "curve": [x.tolist(), y.tolist()],
    }


def collect(args) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    roots = {"harl": Path(args.evidence) / "ant-2x4" / "hatrpo"}
    roots |= {t: Path(args.runs) / t / "hatrpo" for t in VARIANTS if t != "harl"}
    for variant, root in roots.items():
        rows = []
        for seed_dir in sorted(root.glob("seed-*")):
            if not (seed_dir / "progress.jsonl").exists():
                continue
            row = run_scores(seed_dir, args.steps, args.fraction)
            if row is not None:
                row["seed"] = int(seed_dir.name.split("-")[1])
                if row["complete"] or args.include_unfinished:
                    rows.append(row)
        out[variant] = rows
    return out


def table(results: dict[str, list[dict[str, Any]]], steps: float) -> str:
    base = {r["seed"]: r for r in results.get("harl", [])}
    lines = [
        f"| variant (harl preset with ...) | seeds | score at {steps / 1e6:g}M "
        "| vs harl, same seed | mean over evaluations |",
        "|---|---|---|---|---|",
    ]
    for variant, rows in results.items():
        if not rows:
            lines.append(f"| `{variant}`: {VARIANTS[variant]} | none yet | | | |")
            continue
        scores = ", ".join(f"{r['score']:.0f}" for r in rows)
        diff = ", ".join(
            f"{r['score'] - base[r['seed']]['score']:+.0f}" for r in rows if r["seed"] in base
        )
        means = ", ".join(f"{r['mean']:.0f}" for r in rows)
        seeds = ",".join(str(r["seed"]) for r in rows)
        partial = "" if all(r["complete"] for r in rows) else " (unfinished)"
        lines.append(
            f"| `{variant}`: {VARIANTS[variant]} | {seeds}{partial} | {scores} | "
            f"{diff if variant != 'harl' else ''} | {means} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from kl_alloc.analysis.figures import new_figure, save

    fig = new_figure(7.5, 4.5)
    ax = fig.subplots()
    for variant, rows in results.items():
        for i, r in enumerate(rows):
            x, y = r["curve"]
            ax.plot(np.asarray(x) / 1e6, y, lw=2.2 if variant == "harl" else 1.2,
                    color="black" if variant == "harl" else None,
                    label=variant if i == 0 else None)  # fmt: skip
    ax.set_xlabel("env steps (M)")
    ax.set_ylabel("deterministic evaluation return")
    ax.set_title("Ant 2x4, HATRPO: harl preset with one group of settings put back")
    ax.legend(fontsize=8)
    save(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(ROOT / "benchmarks/results/harl_ablation/runs"))
    # the harl preset's own Ant HATRPO run with the same Fisher product as the variants
    # ("hessian", the default): the evidence sweep's first run, kept aside when the sweep moved
    # to fvp = "gauss_newton"
    p.add_argument("--evidence", default=str(ROOT / "benchmarks/results/evidence/hessian_fvp"))
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/harl_ablation"))
    p.add_argument("--steps", type=float, default=1_000_000)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--include-unfinished", action="store_true")
    args = p.parse_args(argv)
    results = collect(args)
    text = table(results, args.steps)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": "python benchmarks/harl_ablation.py " + " ".join(argv or sys.argv[1:]),
        "steps": args.steps,
        "fraction": args.fraction,
        "variants": VARIANTS,
        "results": {
            v: [{k: r[k] for k in r if k != "curve"} for r in rows] for v, rows in results.items()
        },  # fmt: skip
        "table": text,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if any(results.values()):
        plot(results, out / "curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
