"""The MaMuJoCo batch step (kl_alloc.envs.mamujoco_fast) on and off, in the same run.

    python benchmarks/mamujoco_batch_step.py          # Ant 2x4, HalfCheetah 6x1, Walker2d 2x3
    python benchmarks/mamujoco_batch_step.py --tasks ant-2x4 --rounds 3 --iterations 1
    python benchmarks/mamujoco_batch_step.py --json benchmarks/results/mamujoco_batch_step.json

Two measurements per task, each with ``batch_step=True`` (the default) and ``batch_step=False``
(each copy's own Gymnasium ``step``), interleaved over ``--rounds`` rounds (on, off, on, off,
...) so load from other processes hits both alike:

- ``step``: ``env.step`` of a 20-copy ``MaMuJoCoEnv`` (``--num-envs``), ``--steps`` steps per
  round with pre-drawn uniform actions in [-1, 1] (auto-resets included), the two settings
  alternating every ``--chunk`` steps within a round, in milliseconds per call; ``physics``:
  the CPU milliseconds per call spent inside ``mujoco.mj_step`` (timed in the same calls), the
  floor neither setting can go under;
- ``iteration``: one training iteration of the real :class:`~kl_alloc.rl.Trainer`, HATRPO with
  the HARL preset (``build_config("mamujoco", {"fvp": "gauss_newton", "env_kwargs": ...},
  preset="harl")``: 20 copies x 200 steps, one torch thread), ``--iterations`` iterations per
  round after one warm-up iteration, in seconds per iteration; ``env`` is the part spent in
  ``env.step`` (timer wrapped around it, nothing in the library changes).

Times are CPU seconds of the (single) thread (``time.thread_time``): on a shared machine wall
seconds measure the neighbours as much as the code; wall seconds are recorded too. Ratios are
on/off, the median over rounds of the per-round ratio (and its range). ``same`` checks that the
two settings give the same numbers: the sum of rewards over the timed steps, and a hash of the
trained parameters after the timed iterations.
"""

from __future__ import annotations

import argparse
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
from mamujoco_profile import Timers, fingerprint, task_scenario

SETTINGS = {"on": True, "off": False}


def _clock() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


class _PhysicsTimer:
    """Wraps ``mujoco.mj_step`` (both settings call it through the module attribute): the thread
    CPU seconds spent inside it since the last :meth:`take`. The wrapper costs both settings
    the same (two clock reads per call), which pulls the on/off ratio slightly towards 1."""

    def __init__(self) -> None:
        import mujoco

        self.module, self.inner, self.seconds = mujoco, mujoco.mj_step, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        c = time.thread_time()
        self.inner(*args, **kwargs)
        self.seconds += time.thread_time() - c

    def __enter__(self) -> _PhysicsTimer:
        self.module.mj_step = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.mj_step = self.inner

    def take(self) -> float:
        out, self.seconds = self.seconds, 0.0
        return out


def step_rounds(
    task: str, num_envs: int, steps: int, rounds: int, seed: int, chunk: int
) -> dict[str, Any]:
    """``env.step`` milliseconds per call (CPU and wall) per round and setting; within a round
    the settings alternate every ``chunk`` steps (both see the same actions in the same order)."""
    from kl_alloc.envs.mamujoco import MaMuJoCoEnv

    scenario, conf = task_scenario(task)
    envs = {
        name: MaMuJoCoEnv(scenario, conf, num_envs=num_envs, seed=seed, batch_step=flag)
        for name, flag in SETTINGS.items()
    }
    for env in envs.values():
        env.reset()
    rng = np.random.default_rng(seed)
    specs = envs["on"].action_specs
    actions = [
        [rng.uniform(-1, 1, (num_envs, s.dim)).astype(np.float32) for s in specs]
        for _ in range(steps)
    ]
    keys = ("cpu_ms", "wall_ms", "physics_cpu_ms", "reward_sum")
    out: dict[str, Any] = {name: {key: [] for key in keys} for name in envs}
    with _PhysicsTimer() as physics:
        for _ in range(rounds):
            sums = {name: dict.fromkeys(keys, 0.0) for name in envs}
            for lo in range(0, steps, chunk):
                for name, env in envs.items():
                    row = sums[name]
                    physics.take()
                    c0, w0 = _clock()
                    for a in actions[lo : lo + chunk]:
                        row["reward_sum"] += float(env.step(a).reward.sum())
                    c1, w1 = _clock()
                    row["cpu_ms"] += 1e3 * (c1 - c0) / steps
                    row["wall_ms"] += 1e3 * (w1 - w0) / steps
                    row["physics_cpu_ms"] += 1e3 * physics.take() / steps
            for name in envs:
                for key in keys:
                    out[name][key].append(sums[name][key])
    out["batch_stepping"] = {name: env.batch_stepping for name, env in envs.items()}
    for env in envs.values():
        env.close()
    return out


def _trainer(task: str, flag: bool, seed: int) -> tuple[Any, Timers]:
    from kl_alloc.config import build_config
    from kl_alloc.rl import Trainer

    scenario, conf = task_scenario(task)
    env_kwargs = {"scenario": scenario, "agent_conf": conf, "batch_step": flag}
    cfg = build_config("mamujoco", {"fvp": "gauss_newton", "env_kwargs": env_kwargs}, preset="harl")
    trainer = Trainer("mamujoco", algo="hatrpo", config=cfg, seed=seed)
    timers = Timers()
    timers.wrap(trainer.env, "step", "env")
    trainer.collector.reset(seed)
    trainer._started = True
    trainer._iteration()  # warm-up (numba / torch first calls): not timed
    timers.take()
    return trainer, timers


def iteration_rounds(task: str, iterations: int, rounds: int, seed: int) -> dict[str, Any]:
    """Training-iteration seconds (CPU and wall) and their env.step part, per round/setting."""
    runs = {name: _trainer(task, flag, seed) for name, flag in SETTINGS.items()}
    out: dict[str, Any] = {
        name: {"cpu_s": [], "wall_s": [], "env_cpu_s": [], "env_wall_s": []} for name in runs
    }
    for _ in range(rounds):
        for name, (trainer, timers) in runs.items():
            c0, w0 = _clock()
            for _ in range(iterations):
                trainer._iteration()
            c1, w1 = _clock()
            wall, cpu = timers.take()
            row = out[name]
            row["cpu_s"].append((c1 - c0) / iterations)
            row["wall_s"].append((w1 - w0) / iterations)
            row["env_cpu_s"].append(cpu.get("env", 0.0) / iterations)
            row["env_wall_s"].append(wall.get("env", 0.0) / iterations)
    for name, (trainer, _) in runs.items():
        out[name]["fingerprint"] = fingerprint(trainer)
        out[name]["batch_stepping"] = bool(trainer.env.batch_stepping)
    return out


def summarise(step: dict[str, Any], it: dict[str, Any]) -> dict[str, Any]:
    med = statistics.median
    on, off = it["on"], it["off"]
    return {
        "step_cpu_ms": {n: med(step[n]["cpu_ms"]) for n in SETTINGS},
        "step_wall_ms": {n: med(step[n]["wall_ms"]) for n in SETTINGS},
        "step_cpu_ratio": sbs.ratio(step["on"]["cpu_ms"], step["off"]["cpu_ms"]),
        "step_wall_ratio": sbs.ratio(step["on"]["wall_ms"], step["off"]["wall_ms"]),
        "step_same": step["on"]["reward_sum"] == step["off"]["reward_sum"],
        "step_physics_cpu_ms": {n: med(step[n]["physics_cpu_ms"]) for n in SETTINGS},
        "iter_cpu_s": {n: med(it[n]["cpu_s"]) for n in SETTINGS},
        "iter_wall_s": {n: med(it[n]["wall_s"]) for n in SETTINGS},
        "iter_env_cpu_s": {n: med(it[n]["env_cpu_s"]) for n in SETTINGS},
        "iter_cpu_ratio": sbs.ratio(on["cpu_s"], off["cpu_s"]),
        "iter_wall_ratio": sbs.ratio(on["wall_s"], off["wall_s"]),
        "iter_same": on["fingerprint"] == off["fingerprint"],
        "batch_stepping": {n: it[n]["batch_stepping"] for n in SETTINGS},
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'task':16} {'step CPU ms on/off':>19} {'ratio (range)':>18} {'wall':>5} "
        f"{'physics on/off':>11} {'same':>4} | "
        f"{'iter CPU s on/off':>17} {'ratio (range)':>18} {'wall':>5} "
        f"{'env CPU s on/off':>16} {'same':>4}"
    )
    lines = [head]
    for task, r in rows.items():
        sr, ir = r["step_cpu_ratio"], r["iter_cpu_ratio"]
        lines.append(
            f"{task:16} {r['step_cpu_ms']['on']:8.2f} / {r['step_cpu_ms']['off']:7.2f} "
            f"{sbs.ratio_text(sr)} "
            f"{r['step_wall_ratio']['median']:5.2f} "
            f"{r['step_physics_cpu_ms']['on']:5.2f}/{r['step_physics_cpu_ms']['off']:5.2f} "
            f"{sbs.same_text(r['step_same'])} | "
            f"{r['iter_cpu_s']['on']:7.3f} / {r['iter_cpu_s']['off']:7.3f} "
            f"{sbs.ratio_text(ir)} "
            f"{r['iter_wall_ratio']['median']:5.2f} "
            f"{r['iter_env_cpu_s']['on']:6.3f} / {r['iter_env_cpu_s']['off']:6.3f} "
            f"{sbs.same_text(r['iter_same'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sbs.add_round_args(parser, "ant-2x4,halfcheetah-6x1,Walker2d-2x3", iterations=1, rounds=7)
    parser.add_argument("--num-envs", type=int, default=20)
    args = parser.parse_args(argv)
    sbs.check_round_args(parser, args)
    if args.num_envs < 1:
        parser.error("--num-envs must be >= 1")
    torch.set_num_threads(1)
    load_before = list(os.getloadavg())

    def measure(task: str) -> dict[str, Any]:
        return {
            "step": step_rounds(
                task, args.num_envs, args.steps, args.rounds, args.seed, args.chunk
            ),
            "iteration": iteration_rounds(task, args.iterations, args.rounds, args.seed),
        }

    raw, rows = sbs.run_tasks(
        args.tasks, measure, lambda r: summarise(r["step"], r["iteration"]), table
    )
    if args.json:
        payload = {
            "command": "python benchmarks/mamujoco_batch_step.py " + shlex.join(sys.argv[1:]),
            "num_envs": args.num_envs,
            "steps": args.steps,
            "chunk": args.chunk,
            "iterations": args.iterations,
            "rounds": args.rounds,
            "seed": args.seed,
            "load_avg_before": load_before,
            "load_avg_after": list(os.getloadavg()),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "summary": rows,
            "rounds_raw": raw,
        }
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
