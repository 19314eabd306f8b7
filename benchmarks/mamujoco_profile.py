"""Where a MaMuJoCo training iteration spends its time, per method (HATRPO / -W / -G).

    python benchmarks/mamujoco_profile.py                       # Ant 2x4 and HalfCheetah 6x1
    python benchmarks/mamujoco_profile.py --tasks ant-2x4 --iterations 8 --repeats 3
    python benchmarks/mamujoco_profile.py --code /tmp/old-checkout --label before --out /tmp/a.json
    python benchmarks/mamujoco_profile.py --label after --out /tmp/b.json
    python benchmarks/mamujoco_profile.py --compare /tmp/a.json /tmp/b.json   # -> results .md

Runs the real :class:`~kl_alloc.rl.Trainer` (preset "mamujoco", 20 copies x 200 steps, one torch
thread) for ``--iterations`` iterations after one warm-up iteration, with timers wrapped around
the pieces (nothing in the library changes). Times are CPU seconds of the (single) thread: on a
shared 2-core machine wall-clock seconds measure the neighbours as much as the code; the wall
seconds per iteration are recorded too.

- ``env_step``: ``env.step`` (MuJoCo simulation + the adapter); ``policy_forward``: the rest of
  the rollout (observation normalisation, the batched policy forward, sampling, buffers);
- ``critic``: value predictions, GAE and the critic fit;
- ``actor`` split into ``direction`` (surrogate gradient, Fisher graph, CG), ``line_search``
  and ``actor_other`` (M updates, old-policy snapshots, bookkeeping);
- ``solver``: the allocator's call into the solver core.

``--repeats`` runs each method that many times, interleaved (H, W, G, H, W, G, ...), so load
from other processes hits every method alike; the table gives the median seconds per
iteration over repeats and the W/G overhead ratios against HATRPO. ``fingerprint`` (a hash of
the final parameters) lets two code versions be checked for identical numerics.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TASKS = {"ant-2x4": ("Ant", "2x4"), "halfcheetah-6x1": ("HalfCheetah", "6x1")}


def task_scenario(task: str) -> tuple[str, str]:
    """A task name -> (MaMuJoCo scenario, agent_conf): the short names of ``TASKS``, or
    ``Scenario-conf`` for any other (e.g. ``ManySegmentSwimmer-8x1``: 8 one-joint agents)."""
    if task in TASKS:
        return TASKS[task]
    scenario, sep, conf = task.rpartition("-")
    if not sep:
        raise ValueError(f"task: expected one of {sorted(TASKS)} or Scenario-conf, got {task!r}")
    return scenario, conf


ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")
PARTS = (
    "env_step",
    "policy_forward",
    "critic",
    "direction",
    "line_search",
    "actor_other",
    "solver",
    "other",
)


class Timers:
    """Accumulates wall-clock and CPU (thread) seconds of wrapped methods. CPU time is what
    the numbers are based on: the machine is shared, and wall-clock seconds then measure the
    neighbours as much as the code (torch runs on this one thread)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def wrap(self, obj: Any, name: str, key: str) -> None:
        """Replace ``obj.name`` by a timed version (instance attribute)."""
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - w0
                self.cpu[key] = self.cpu.get(key, 0.0) + time.thread_time() - c0

        setattr(obj, name, timed)

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        out = self.wall, self.cpu
        self.wall, self.cpu = {}, {}
        return out


def fingerprint(trainer) -> str:
    h = hashlib.sha256()
    for policy in trainer.policies:
        for p in policy.parameters():
            h.update(p.detach().numpy().tobytes())
    for p in trainer.critic.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def profile_run(
    task: str,
    algo: str,
    iterations: int,
    seed: int,
    preset: str = "default",
    common: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from kl_alloc.config import parse_set
    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer, TrainerConfig

    torch.set_num_threads(1)
    scenario, conf = task_scenario(task)
    # "hatrpo-g:rescore=false" = a method with config overrides (Python literals)
    algo, _, extra = algo.partition(":")
    overrides = parse_set([item for item in extra.split(";") if item])
    cfg = TrainerConfig.for_env("mamujoco", preset, eval_every=0, **{**(common or {}), **overrides})
    env = make_env("mamujoco", num_envs=cfg.num_envs, seed=seed, scenario=scenario,
                   agent_conf=conf)  # fmt: skip
    trainer = Trainer(env, algo=algo, config=cfg, seed=seed)
    timers = Timers()
    timers.wrap(env, "step", "env_step")
    timers.wrap(trainer.collector, "collect", "rollout")
    timers.wrap(trainer.critic, "values", "critic_values")
    timers.wrap(trainer.critic, "fit", "critic_fit")
    timers.wrap(trainer.updater, "run", "actor")
    timers.wrap(trainer.updater, "direction", "direction")
    timers.wrap(trainer.updater, "step", "line_search")
    timers.wrap(trainer.allocator, "allocate", "solver")
    timers.wrap(trainer, "_iteration", "total")
    trainer.collector.reset(seed)
    trainer._started = True
    per_iter: list[dict[str, float]] = []
    for k in range(iterations + 1):  # the first one pays numba / torch warm-up: dropped
        trainer._iteration()
        wall, cpu = timers.take()
        if k == 0:
            continue
        g = cpu.get
        row = {
            "env_step": g("env_step", 0.0),
            "policy_forward": g("rollout", 0.0) - g("env_step", 0.0),
            "critic": g("critic_values", 0.0) + g("critic_fit", 0.0),
            "direction": g("direction", 0.0),
            "line_search": g("line_search", 0.0),
            "actor_other": g("actor", 0.0)
            - g("direction", 0.0)
            - g("line_search", 0.0)
            - g("solver", 0.0),
            "solver": g("solver", 0.0),
        }
        row["other"] = g("total", 0.0) - sum(row.values())  # GAE, snapshots, bookkeeping
        row["total"] = g("total", 0.0)
        row["total_wall"] = wall["total"]
        per_iter.append(row)
    mean = {k: float(np.mean([p[k] for p in per_iter])) for k in per_iter[0]}
    return {"seconds": mean, "fingerprint": fingerprint(trainer), "iterations": iterations}


def compare(paths: list[Path], out: Path) -> str:
    """A markdown table of several profile JSONs side by side (CPU s/iter, ratios, shares)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    lines = [
        "# MaMuJoCo: seconds per iteration by method, and where they go",
        "",
        "CPU seconds of the training thread per iteration (20 copies x 200 steps = 4000 samples, "
        "one torch thread), median over interleaved repeats; wall-clock seconds are in the "
        "JSONs (the machine was shared). Shares: env_step = MuJoCo + adapter, policy_forward = "
        "the rest of the rollout, direction = gradient + Fisher graph + CG, line_search, "
        "actor_other (M updates, bookkeeping), solver, other (GAE, snapshots).",
        "",
        "Runs: " + "; ".join(f"{r['label'] or i}: `{r['command']}`" for i, r in enumerate(runs)),
        "",
    ]
    head = "| task | method | " + " | ".join(
        f"{r['label'] or i} s/iter | ratio" for i, r in enumerate(runs)
    )
    head += " | same numbers | " + " | ".join(PARTS) + " |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    last = runs[-1]
    for task, rows in last["results"].items():
        for algo, row in rows.items():
            cells = []
            prints = set()
            for r in runs:
                other = r["results"].get(task, {}).get(algo)
                if other is None:
                    cells += ["-", "-"]
                    continue
                prints.add(tuple(other["fingerprints"]))
                cells += [f"{other['seconds_per_iter']:.3f}", f"{other['ratio_vs_hatrpo']:.2f}x"]
            same = "yes" if len(prints) == 1 else "NO"
            shares = [f"{100 * row['share'][p]:.1f}%" for p in PARTS]
            lines.append(f"| {task} | {algo} | " + " | ".join(cells + [same] + shares) + " |")
    lines[lines.index(head)] = head.replace(" | env_step", " | shares (last run): env_step")
    if len(runs) >= 2:  # the parts in milliseconds, first run -> last run
        first = runs[0]
        lines += ["", "CPU milliseconds per iteration by part, first run -> last run:", ""]
        lines += ["| task | method | " + " | ".join(PARTS) + " |", "|" + "---|" * (len(PARTS) + 2)]
        for task, rows in last["results"].items():
            for algo, row in rows.items():
                old = first["results"].get(task, {}).get(algo)
                if old is None:
                    continue
                cells = [
                    f"{1e3 * old['parts'][p]:.0f} -> {1e3 * row['parts'][p]:.0f}" for p in PARTS
                ]
                lines.append(f"| {task} | {algo} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument(
        "--algos",
        default=",".join(ALGOS),
        help="methods, comma separated; METHOD:key=value;key=value adds config overrides",
    )
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="default", help="the mamujoco preset (default, harl)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every method (e.g. fvp=gauss_newton, cg_warm_iters=4)",
    )
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--code", type=Path, help="import kl_alloc from this checkout (A/B another commit)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/mamujoco_profile.json"
    )
    parser.add_argument("--compare", nargs="+", type=Path, help="profile JSONs -> markdown")
    parser.add_argument("--md", type=Path, default=ROOT / "benchmarks/results/mamujoco_profile.md")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(args.compare, args.md))
        return 0
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    from kl_alloc.config import parse_set

    common = parse_set(args.set)
    tasks = [t for t in args.tasks.split(",") if t]
    algos = [a for a in args.algos.split(",") if a]
    import kl_alloc

    print(f"kl_alloc from {Path(kl_alloc.__file__).parent}", flush=True)
    results: dict[str, Any] = {}
    for task in tasks:
        samples: dict[str, list[dict[str, Any]]] = {a: [] for a in algos}
        for rep in range(args.repeats):
            for algo in algos:
                res = profile_run(task, algo, args.iterations, args.seed, args.preset, common)
                samples[algo].append(res)
                print(f"{task} {algo} repeat {rep}: {res['seconds']['total']:.3f} CPU s/iter "
                      f"({res['seconds']['total_wall']:.3f} wall) "
                      f"[{res['fingerprint']}]", flush=True)  # fmt: skip
        rows = {}
        for algo, runs in samples.items():
            totals = [r["seconds"]["total"] for r in runs]
            walls = [r["seconds"]["total_wall"] for r in runs]
            best = runs[int(np.argsort(totals)[len(totals) // 2])]  # the median repeat
            seconds = best["seconds"]
            rows[algo] = {
                "seconds_per_iter": float(np.median(totals)),
                "seconds_per_iter_repeats": totals,
                "wall_seconds_per_iter": float(np.median(walls)),
                "wall_seconds_per_iter_repeats": walls,
                "parts": {k: seconds[k] for k in PARTS},
                "share": {k: seconds[k] / seconds["total"] for k in PARTS},
                "fingerprints": sorted({r["fingerprint"] for r in runs}),
            }
        for algo, row in rows.items():
            # the baseline of "METHOD:overrides" is "hatrpo:overrides" when it was run too
            extra = algo.partition(":")[2]
            key = f"hatrpo:{extra}" if extra and f"hatrpo:{extra}" in rows else "hatrpo"
            base = rows.get(key, {}).get("seconds_per_iter")
            base_reps = rows.get(key, {}).get("seconds_per_iter_repeats")
            row["baseline"] = key if base else None
            row["ratio_vs_hatrpo"] = row["seconds_per_iter"] / base if base else None
            # repeats are interleaved (H, W, G, H, ...): the ratio within each repeat
            reps = row["seconds_per_iter_repeats"]
            row["ratio_repeats"] = (
                [a / b for a, b in zip(reps, base_reps, strict=True)] if base_reps else []
            )
        results[task] = rows

    header = (
        f"{'task':16} {'method':9} {'CPU s/it':>8} {'ratio':>6} {'ratio range':>11} "
        + " ".join(f"{p[:10]:>10}" for p in PARTS)
    )
    print(header)
    for task, rows in results.items():
        for algo, row in rows.items():
            ratio = row["ratio_vs_hatrpo"]
            print(
                f"{task:16} {algo:9} {row['seconds_per_iter']:8.3f} "
                f"{'-' if ratio is None else f'{ratio:.2f}':>6} "
                f"{_spread(row['ratio_repeats']):>11} "
                + " ".join(f"{100 * row['share'][p]:9.1f}%" for p in PARTS)
            )
    payload = {
        "command": "python benchmarks/mamujoco_profile.py " + shlex.join(sys.argv[1:]),
        "label": args.label,
        "code": str(Path(kl_alloc.__file__).parents[1]),
        "iterations": args.iterations,
        "repeats": args.repeats,
        "seed": args.seed,
        "preset": args.preset,
        "set": args.set,
        "load_avg": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
