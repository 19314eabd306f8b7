"""Multi-Agent MuJoCo step rates: the raw package against the vectorised adapter, in one run.

    python benchmarks/mamujoco_steps.py                   # Ant 2x4 and HalfCheetah 6x1
    python benchmarks/mamujoco_steps.py --with-policy     # + end-to-end rollout collection

Every rate is environment transitions per second on one core, with pre-made actions (a cycle of
256 random actions in [-1, 1], drawn before timing) unless stated:

- ``raw_mamujoco``: ONE ``mamujoco_v1.parallel_env`` driven through its own API (a dict of
  actions per step, ``reset()`` when the episode ends). The reference of issue 4.
- ``raw_gym``: the single-agent Gymnasium env (``Ant-v5``, ``HalfCheetah-v5``) the scenario wraps.
- ``adapter``: ``MaMuJoCoEnv(num_envs=N)`` (fast backend): N copies per ``step`` call, per-agent
  ``(N, dim)`` actions, observations, state, auto-reset; rate = N * calls / s.
- ``adapter_parallel``: the same adapter with ``backend="parallel"`` (per-copy dict API).
- ``rollout`` (``--with-policy``): ``kl_alloc.rl.rollout.RolloutCollector.collect`` with one
  Gaussian MLP policy per agent (64, 64), running observation normalisation, ONE batched
  forward per agent per step, sampling and buffer writes: what training pays per sample.

Methods are interleaved over ``--rounds`` rounds (so load from other processes hits them alike)
and the median round is reported, with the load average before and after. Results go to
``benchmarks/results/mamujoco_steps.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "mamujoco_steps.json"
SCENARIOS = (("Ant", "2x4"), ("HalfCheetah", "6x1"))
N_PREMADE = 256


def timed(step: Callable[[], int], seconds: float, warmup: int = 20, batch: int = 50) -> float:
    """Transitions per second of ``step`` (which returns how many transitions it made), run for
    at least ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(batch):
            count += step()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def raw_mamujoco(scenario: str, conf: str) -> Callable[[], int]:
    from kl_alloc.envs._quiet import MujocoWarningsToLog
    from kl_alloc.envs.mamujoco import _import_mamujoco

    with MujocoWarningsToLog(logging.DEBUG):  # no MUJOCO_LOG.TXT; not timed
        env = _import_mamujoco().parallel_env(scenario, conf)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [
        {
            a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32)
            for a in env.possible_agents
        }
        for _ in range(N_PREMADE)
    ]
    first = env.possible_agents[0]
    t = 0

    def step() -> int:
        nonlocal t
        _, _, terminations, truncations, _ = env.step(actions[t % N_PREMADE])
        t += 1
        if terminations[first] or truncations[first]:
            env.reset()
        return 1

    return step


def raw_gym(scenario: str) -> Callable[[], int]:
    import gymnasium

    from kl_alloc.envs._quiet import MujocoWarningsToLog

    with MujocoWarningsToLog(logging.DEBUG):
        env = gymnasium.make(f"{scenario}-v5")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (N_PREMADE, *env.action_space.shape)).astype(np.float32)
    t = 0

    def step() -> int:
        nonlocal t
        _, _, terminated, truncated, _ = env.step(actions[t % N_PREMADE])
        t += 1
        if terminated or truncated:
            env.reset()
        return 1

    return step


def adapter(scenario: str, conf: str, num_envs: int, backend: str) -> Callable[[], int]:
    from kl_alloc.envs.mamujoco import MaMuJoCoEnv

    env = MaMuJoCoEnv(scenario, conf, num_envs=num_envs, seed=0, backend=backend)
    env.reset()
    rng = np.random.default_rng(0)
    actions = [
        [rng.uniform(-1, 1, (num_envs, s.dim)).astype(np.float32) for s in env.action_specs]
        for _ in range(N_PREMADE)
    ]
    t = 0

    def step() -> int:
        nonlocal t
        env.step(actions[t % N_PREMADE])
        t += 1
        return num_envs

    return step


def rollout(scenario: str, conf: str, num_envs: int, horizon: int) -> Callable[[], int]:
    """End-to-end collection: policy forwards, sampling, normalisation, env steps, buffers."""
    import torch

    from kl_alloc.envs.mamujoco import MaMuJoCoEnv
    from kl_alloc.rl.policies import make_policy
    from kl_alloc.rl.rollout import RolloutCollector

    torch.manual_seed(0)
    env = MaMuJoCoEnv(scenario, conf, num_envs=num_envs, seed=0)
    policies = [make_policy(o, s) for o, s in zip(env.obs_sizes, env.action_specs, strict=True)]
    collector = RolloutCollector(env, policies, normalize_obs=True)
    collector.reset(seed=0)
    generator = torch.Generator().manual_seed(0)

    def step() -> int:
        return collector.collect(horizon, generator).num_samples

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per method and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=20)
    parser.add_argument("--with-policy", action="store_true", help="also time RolloutCollector")
    parser.add_argument(
        "--horizon", type=int, default=200, help="rollout steps per collect call (x num_envs)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        if args.with_policy:
            raise
    if args.with_policy:
        try:
            import kl_alloc.rl.rollout  # noqa: F401
        except ImportError as err:
            parser.error(f"--with-policy needs kl_alloc.rl.rollout ({err})")

    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    for scenario, conf in SCENARIOS:
        methods: dict[str, Callable[[], int]] = {
            "raw_mamujoco": raw_mamujoco(scenario, conf),
            "raw_gym": raw_gym(scenario),
            "adapter": adapter(scenario, conf, args.num_envs, "fast"),
            "adapter_parallel": adapter(scenario, conf, args.num_envs, "parallel"),
        }
        if args.with_policy:
            methods["rollout"] = rollout(scenario, conf, args.num_envs, args.horizon)
        rates: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, step in methods.items():
                if name == "rollout":  # one call is a whole iteration's collection
                    rates[name].append(timed(step, args.seconds, warmup=1, batch=1))
                else:
                    rates[name].append(timed(step, args.seconds))
        median = {name: statistics.median(r) for name, r in rates.items()}
        results[f"{scenario} {conf}"] = {
            name: {
                "steps_per_s": median[name],
                "rounds": rates[name],
                "ratio_to_raw_mamujoco": median[name] / median["raw_mamujoco"],
            }
            for name in methods
        }
    load_after = os.getloadavg()

    import gymnasium
    import mujoco

    report = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "num_envs": args.num_envs,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "horizon": args.horizon if args.with_policy else None,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"num_envs={args.num_envs}, {args.rounds} rounds x {args.seconds:g} s, median round")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"{'task':<18}{'method':<18}{'steps/s':>10}{'x raw MaMuJoCo':>16}")
    for task, rows in results.items():
        for name, row in rows.items():
            print(
                f"{task:<18}{name:<18}{row['steps_per_s']:>10.0f}"
                f"{row['ratio_to_raw_mamujoco']:>16.2f}"
            )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
