"""Rollout and whole-iteration throughput against the env worker count, and where it stops scaling.

    python benchmarks/env_workers.py                                  # Ant 2x4, 1 vs 2 workers
    python benchmarks/env_workers.py --workers 1 2 4 --repeats 5 --json /tmp/workers.json
    python benchmarks/env_workers.py --iterations 1 --repeats 1 --rollout-length 20   # smoke

One :class:`~kl_alloc.rl.Trainer` per worker count (preset "mamujoco": 20 copies x 200 steps,
HATRPO, one torch thread), all built first (worker start-up is reported separately), then
``--repeats`` rounds in which every trainer runs ``--iterations`` iterations, interleaved
(1, 2, 1, 2, ...) so load from other processes hits every worker count alike. ``env.step`` is
wrapped with a timer (nothing in the library changes). Per iteration, medians over rounds:

- ``rollout``: wall seconds of the rollout; ``step``: of which waiting for ``env.step``
  (in-process: the simulation; with workers: the slowest worker plus the pipe/shared-memory
  round trip); ``samples/s``: rollout throughput;
- ``iteration``: wall seconds of the whole iteration; ``learner``: iteration - rollout (critic,
  GAE, the TRPO updates);
- ``cpu learner`` / ``cpu workers``: CPU seconds of the training process and of the worker
  processes (``/proc/<pid>/stat``), so a loaded machine shows in wall but not in CPU time.

The model (from the 1-worker measurement): an iteration is ``L + P + S(W)``, L the learner, P
the learner's side of the rollout (normalisation, the batched policy forward, sampling), S the
simulation, which W workers on W free cores divide as ``ceil(n / W) / n`` (n copies), plus the
per-step round trip ``O`` measured with workers. Predicted rollout and iteration speed-ups are
printed for every measured worker count (compare with the measurement) and for 16 and 64 cores
(16 and 64 workers; more workers than copies idle, so at 20 copies 64 cores predict what 20
do: such a machine wants more copies, whose learner cost grows with the samples); the Amdahl
limit is ``(L + P + S) / (L + P)``. On a machine with other load, the 2-worker speed-up measures the
neighbours: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kl_alloc.envs.workers import WorkerVecEnv  # noqa: E402
from kl_alloc.rl import Trainer, TrainerConfig  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """utime + stime of a live process, seconds (0 where /proc is missing)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class _StepTimer:
    """Wraps ``env.step``: the wall seconds spent in it since the last ``take``."""

    def __init__(self, env: Any) -> None:
        self.inner, self.seconds = env.step, 0.0
        env.step = self

    def __call__(self, actions: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.inner(actions)
        finally:
            self.seconds += time.perf_counter() - t

    def take(self) -> float:
        out, self.seconds = self.seconds, 0.0
        return out


def build(workers: int, args: argparse.Namespace) -> tuple[Trainer, _StepTimer, float]:
    config = TrainerConfig.for_env(
        "mamujoco",
        num_envs=args.num_envs,
        rollout_length=args.rollout_length,
        num_workers=workers,
        eval_episodes=1,
        eval_every=0,
        env_kwargs={"scenario": args.scenario, "agent_conf": args.agent_conf},
    )
    t = time.perf_counter()
    trainer = Trainer("mamujoco", args.algo, config, seed=args.seed)
    startup = time.perf_counter() - t
    trainer._evaluate_and_log = dict  # no end-of-learn evaluation inside the measured CPU time
    return trainer, _StepTimer(trainer.env), startup


def run_round(trainer: Trainer, timer: _StepTimer, iterations: int) -> dict[str, float]:
    """Run ``iterations`` iterations; per-iteration means of this round."""
    env = trainer.env
    pids = [p.pid for p in env._procs] if isinstance(env, WorkerVecEnv) else []
    workers0 = sum(_cpu_of(p) for p in pids)
    cpu0 = time.process_time()
    timer.take()
    first = len(trainer.history)
    trainer.learn(trainer.env_steps + iterations * trainer.steps_per_iteration, progress=False)
    records = trainer.history[first:]
    k = len(records)
    return {
        "rollout": sum(r["time"]["rollout"] for r in records) / k,
        "step": timer.take() / k,
        "iteration": sum(r["seconds_per_iter"] for r in records) / k,
        "cpu_learner": (time.process_time() - cpu0) / k,
        "cpu_workers": (sum(_cpu_of(p) for p in pids) - workers0) / k,
    }


def model(one: dict[str, float], n: int, overhead: float, workers: int) -> dict[str, float]:
    """Predicted per-iteration seconds with ``workers`` workers on as many free cores."""
    sim, learner = one["step"], one["iteration"] - one["rollout"]
    policy = one["rollout"] - sim
    share = math.ceil(n / min(workers, n)) / n  # the slowest worker's share (W > n: idle ones)
    rollout = policy + sim * share + (overhead if workers > 1 else 0.0)
    return {
        "workers": workers,
        "rollout": rollout,
        "iteration": learner + rollout,
        "rollout_speedup": one["rollout"] / rollout,
        "iteration_speedup": one["iteration"] / (learner + rollout),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scenario", default="Ant")
    parser.add_argument("--agent-conf", default="2x4")
    parser.add_argument("--num-envs", type=int, default=20)
    parser.add_argument("--rollout-length", type=int, default=200)
    parser.add_argument("--algo", default="hatrpo")
    parser.add_argument("--iterations", type=int, default=3, help="per round and worker count")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if 1 not in args.workers:
        parser.error("--workers: include 1 (the model is fitted on the in-process run)")
    torch.set_num_threads(1)

    trainers = {w: build(w, args) for w in args.workers}
    for trainer, timer, _ in trainers.values():  # warm-up: first-iteration costs, not measured
        run_round(trainer, timer, 1)
    rounds: dict[int, list[dict[str, float]]] = {w: [] for w in args.workers}
    for _ in range(args.repeats):
        for w, (trainer, timer, _) in trainers.items():
            rounds[w].append(run_round(trainer, timer, args.iterations))
    for trainer, _, _ in trainers.values():
        trainer.close()

    samples = args.num_envs * args.rollout_length
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in rounds.items()}
    one = med[1]
    overheads = [
        med[w]["step"] - one["step"] * math.ceil(args.num_envs / w) / args.num_envs
        for w in args.workers
        if w > 1
    ]
    overhead = max(0.0, statistics.median(overheads)) if overheads else 0.0
    predicted = [model(one, args.num_envs, overhead, w) for w in sorted({*args.workers, 16, 64})]

    header = (
        f"{'workers':>7} {'start s':>8} {'rollout s':>9} {'step s':>8} {'samples/s':>9} "
        f"{'iteration s':>11} {'learner s':>9} {'cpu learner':>11} {'cpu workers':>11}"
    )
    what = f"{args.scenario} {args.agent_conf}, {args.num_envs} copies x {args.rollout_length}"
    print(f"{what} steps, {args.algo}; medians of {args.repeats} x {args.iterations} iterations")
    print(header)
    for w in args.workers:
        m = med[w]
        print(
            f"{w:>7} {trainers[w][2]:>8.2f} {m['rollout']:>9.3f} {m['step']:>8.3f} "
            f"{samples / m['rollout']:>9.0f} {m['iteration']:>11.3f} "
            f"{m['iteration'] - m['rollout']:>9.3f} {m['cpu_learner']:>11.3f} "
            f"{m['cpu_workers']:>11.3f}"
        )
    learner, policy = one["iteration"] - one["rollout"], one["rollout"] - one["step"]
    print(f"\nmodel: L={learner:.3f} s, P={policy:.3f} s, S={one['step']:.3f} s per iteration,"
          f" round trip O={overhead:.3f} s")  # fmt: skip
    limit = one["iteration"] / (one["iteration"] - one["step"])
    print(f"Amdahl limit of the iteration speed-up (S -> 0): {limit:.2f}x")
    print(f"{'workers':>7} {'rollout s':>9} {'x rollout':>9} {'iteration s':>11} {'x iter':>7}"
          f" {'measured x rollout':>18} {'measured x iter':>15}")  # fmt: skip
    for p in predicted:
        w = p["workers"]
        mx = f"{one['rollout'] / med[w]['rollout']:>18.2f}" if w in med else f"{'':>18}"
        mi = f"{one['iteration'] / med[w]['iteration']:>15.2f}" if w in med else f"{'':>15}"
        print(f"{w:>7} {p['rollout']:>9.3f} {p['rollout_speedup']:>9.2f} {p['iteration']:>11.3f}"
              f" {p['iteration_speedup']:>7.2f} {mx} {mi}")  # fmt: skip

    if args.json is not None:
        result = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            },
            "startup_seconds": {w: t[2] for w, t in trainers.items()},
            "rounds": rounds,
            "medians": med,
            "model": {"overhead": overhead, "amdahl_limit": limit, "predicted": predicted},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
