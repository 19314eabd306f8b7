"""The MPE2 tasks' fast path (kl_alloc.envs.mpe) against mpe2's own ``parallel_env``, same run.

    python benchmarks/mpe_step.py                     # speaker-listener and spread
    python benchmarks/mpe_step.py --tasks simple_speaker_listener_v4 --rounds 3
    python benchmarks/mpe_step.py --json benchmarks/results/mpe_step.json

Two settings of the same 16-copy :class:`~kl_alloc.envs.pettingzoo.PettingZooEnv`:

- ``fast``: what ``kl_alloc.envs.mpe`` builds (each copy the scenario's ``raw_env`` under
  ``aec_to_parallel`` alone; the global state is the concatenated observations, ``state="obs"``);
- ``mpe2``: ``mpe2.<task>.parallel_env`` (with its ``OrderEnforcingWrapper`` and
  ``AssertOutOfBoundsWrapper``) and the env's own ``state()`` (``state="auto"``), which is how
  the adapter ran these tasks before.

Two measurements per task, the settings interleaved over ``--rounds`` rounds so load from
other processes hits both alike:

- ``step``: ``env.step`` with pre-drawn uniform discrete actions (the same for both), the
  settings alternating every ``--chunk`` steps, CPU milliseconds per call;
- ``iteration``: one training iteration of a :class:`~kl_alloc.rl.Trainer` on each env (the
  task's MPE preset: 16 copies x 50 steps, ``--algo``, one torch thread), after one warm-up
  iteration, CPU seconds per iteration and its ``env.step`` part.

Times are CPU seconds of the (single) thread (``time.thread_time``); wall seconds are
recorded too. Ratios are fast/mpe2, the median over rounds of the per-round ratio (and its
range). ``same`` checks that the two settings give the same numbers bit for bit: a hash of every
observation, state, reward and end flag of the timed steps, and of the trained parameters.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any

import _sidebyside as sbs  # first: one thread per library, the checkout importable
import numpy as np
import torch
from _runner import write_json
from mamujoco_profile import Timers, fingerprint

SETTINGS = ("fast", "mpe2")
NUM_ENVS = 16


def make(setting: str, task: str, seed: int):
    """The task's 16-copy env in one setting (discrete actions, the tasks' defaults)."""
    import importlib

    from kl_alloc.envs import mpe
    from kl_alloc.envs.pettingzoo import PettingZooEnv

    if setting == "fast":
        return getattr(mpe, task)(num_envs=NUM_ENVS, seed=seed)
    module = importlib.import_module(f"mpe2.{task}")
    kwargs = {"max_cycles": 25, "continuous_actions": False}
    return PettingZooEnv(module.parallel_env, NUM_ENVS, seed, kwargs, state="auto")


def _digest(h: Any, result: Any) -> None:
    for a in (*result.obs, result.state, result.reward, result.terminated, result.truncated,
              *result.final_obs, result.final_state):  # fmt: skip
        h.update(np.ascontiguousarray(a).tobytes())


def step_rounds(task: str, steps: int, rounds: int, seed: int, chunk: int) -> dict[str, Any]:
    envs = {s: make(s, task, seed) for s in SETTINGS}
    for env in envs.values():
        env.reset()
    rng = np.random.default_rng(seed)
    specs = envs["fast"].action_specs
    actions = [[rng.integers(0, s.n, NUM_ENVS) for s in specs] for _ in range(steps)]
    out: dict[str, Any] = {s: {"cpu_ms": [], "wall_ms": []} for s in SETTINGS}
    hashes = {s: hashlib.sha256() for s in SETTINGS}
    for _ in range(rounds):
        sums = {s: [0.0, 0.0] for s in SETTINGS}
        for lo in range(0, steps, chunk):
            for s, env in envs.items():
                c0, w0 = time.thread_time(), time.perf_counter()
                for a in actions[lo : lo + chunk]:
                    _digest(hashes[s], env.step(a))
                sums[s][0] += 1e3 * (time.thread_time() - c0) / steps
                sums[s][1] += 1e3 * (time.perf_counter() - w0) / steps
        for s in SETTINGS:
            out[s]["cpu_ms"].append(sums[s][0])
            out[s]["wall_ms"].append(sums[s][1])
    out["same"] = hashes["fast"].hexdigest() == hashes["mpe2"].hexdigest()
    for env in envs.values():
        env.close()
    return out


def _trainer(setting: str, task: str, algo: str, seed: int) -> tuple[Any, Timers]:
    from kl_alloc.config import build_config
    from kl_alloc.rl import Trainer

    cfg = build_config(task, {})
    trainer = Trainer(make(setting, task, seed), algo=algo, config=cfg, seed=seed)
    timers = Timers()
    timers.wrap(trainer.env, "step", "env")
    trainer.collector.reset(seed)
    trainer._started = True
    trainer._iteration()  # warm-up (first calls): not timed
    timers.take()
    return trainer, timers


def iteration_rounds(task: str, algo: str, iterations: int, rounds: int, seed: int) -> dict:
    runs = {s: _trainer(s, task, algo, seed) for s in SETTINGS}
    out: dict[str, Any] = {s: {"cpu_s": [], "wall_s": [], "env_cpu_s": []} for s in SETTINGS}
    for _ in range(rounds):
        for s, (trainer, timers) in runs.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(iterations):
                trainer._iteration()
            c1, w1 = time.thread_time(), time.perf_counter()
            _, cpu = timers.take()
            out[s]["cpu_s"].append((c1 - c0) / iterations)
            out[s]["wall_s"].append((w1 - w0) / iterations)
            out[s]["env_cpu_s"].append(cpu.get("env", 0.0) / iterations)
    out["same"] = fingerprint(runs["fast"][0]) == fingerprint(runs["mpe2"][0])
    return out


def summarise(step: dict[str, Any], it: dict[str, Any]) -> dict[str, Any]:
    med = statistics.median
    return {
        "step_cpu_ms": {s: med(step[s]["cpu_ms"]) for s in SETTINGS},
        "step_cpu_ratio": sbs.ratio(step["fast"]["cpu_ms"], step["mpe2"]["cpu_ms"]),
        "step_wall_ratio": sbs.ratio(step["fast"]["wall_ms"], step["mpe2"]["wall_ms"]),
        "step_same": step["same"],
        "iter_cpu_s": {s: med(it[s]["cpu_s"]) for s in SETTINGS},
        "iter_env_cpu_s": {s: med(it[s]["env_cpu_s"]) for s in SETTINGS},
        "iter_cpu_ratio": sbs.ratio(it["fast"]["cpu_s"], it["mpe2"]["cpu_s"]),
        "iter_wall_ratio": sbs.ratio(it["fast"]["wall_s"], it["mpe2"]["wall_s"]),
        "iter_same": it["same"],
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'task':28} {'step CPU ms fast/mpe2':>22} {'ratio (range)':>18} {'same':>4} | "
        f"{'iter CPU s fast/mpe2':>21} {'ratio (range)':>18} {'env CPU s':>15} {'same':>4}"
    ]
    for task, r in rows.items():
        sr, ir = r["step_cpu_ratio"], r["iter_cpu_ratio"]
        lines.append(
            f"{task:28} {r['step_cpu_ms']['fast']:10.3f} / {r['step_cpu_ms']['mpe2']:9.3f} "
            f"{sbs.ratio_text(sr)} "
            f"{sbs.same_text(r['step_same'])} | "
            f"{r['iter_cpu_s']['fast']:9.3f} / {r['iter_cpu_s']['mpe2']:9.3f} "
            f"{sbs.ratio_text(ir)} "
            f"{r['iter_env_cpu_s']['fast']:6.3f} / {r['iter_env_cpu_s']['mpe2']:6.3f} "
            f"{sbs.same_text(r['iter_same'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sbs.add_round_args(
        parser, "simple_speaker_listener_v4,simple_spread_v3", iterations=3, rounds=5
    )
    parser.add_argument("--algo", default="hatrpo-g", help="method of the timed iterations")
    args = parser.parse_args(argv)
    sbs.check_round_args(parser, args)
    torch.set_num_threads(1)
    load_before = list(os.getloadavg())

    def measure(task: str) -> dict[str, Any]:
        return {
            "step": step_rounds(task, args.steps, args.rounds, args.seed, args.chunk),
            "iteration": iteration_rounds(task, args.algo, args.iterations, args.rounds, args.seed),
        }

    raw, rows = sbs.run_tasks(
        args.tasks, measure, lambda r: summarise(r["step"], r["iteration"]), table
    )
    if args.json:
        write_json(args.json, {
            "command": "python benchmarks/mpe_step.py " + shlex.join(sys.argv[1:]),
            "settings": vars(args) | {"json": str(args.json), "num_envs": NUM_ENVS},
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "load_before": load_before,
                        "load_after": list(os.getloadavg())},
            "summary": rows,
            "raw": raw,
        })  # fmt: skip
        print(f"wrote {args.json}")
    return 0 if all(r["step_same"] and r["iter_same"] for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
