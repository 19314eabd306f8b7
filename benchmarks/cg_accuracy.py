"""What cheaper CG does to HATRPO-W's numbers, on HalfCheetah 6x1 batches of a real run.

    python benchmarks/cg_accuracy.py                    # -> benchmarks/results/cg_accuracy.json

After ``--warmup`` HATRPO iterations (seed 0, the MaMuJoCo preset), one rollout is captured and

1. q_i = g_i^T s_i with s_i = CG(F_i, g_i) after k = 1, 2, 3, 5, 10 (the default), 20 and 50
   iterations, and the HATRPO-W allocation delta_i = budget * q_i / sum_j q_j each gives
   (the lever "fewer CG iterations where only q_i is needed");
2. after W commits its first agent (M changes), each other agent's direction at the new M:
   cold CG with 10 iterations (the reference), warm-started from its M = 1 solution with
   k = 2, 4, 6 iterations (``cg_warm_iters``), and cold 50 iterations (close to F^-1 g): the
   relative error ||s - s_50|| / ||s_50|| and the cosine with s_50;
3. the same with the Gauss-Newton product (``fvp=gauss_newton``): its difference from the
   Hessian product is float32 rounding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def capture(warmup: int, seed: int, preset: str = "default"):
    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer, TrainerConfig
    from kl_alloc.rl.gae import normalize_advantages
    from kl_alloc.rl.update import AgentBatch

    torch.set_num_threads(1)
    cfg = TrainerConfig.for_env("mamujoco", preset, eval_every=0)
    env = make_env("mamujoco", num_envs=cfg.num_envs, seed=seed, scenario="HalfCheetah",
                   agent_conf="6x1")  # fmt: skip
    trainer = Trainer(env, algo="hatrpo", config=cfg, seed=seed)
    trainer.collector.reset(seed)
    trainer._started = True
    for _ in range(warmup):
        trainer._iteration()
    rollout = trainer.collector.collect(cfg.rollout_length, trainer.generator)
    adv, _ = trainer.advantages(rollout)
    adv = torch.as_tensor(normalize_advantages(adv).reshape(-1), dtype=torch.float32)
    batches = []
    with torch.no_grad():
        for policy, obs, act, logp in zip(
            trainer.policies, rollout.obs, rollout.actions, rollout.log_probs, strict=True
        ):
            batch = AgentBatch(obs, act, logp, None)
            batch.old_dist = batch.dist(policy).detach()
            batches.append(batch)
    return trainer, batches, adv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cg_accuracy.json")
    args = parser.parse_args(argv)
    from kl_alloc import water_fill
    from kl_alloc.rl.update import SequentialUpdate, TRPOSettings

    trainer, batches, adv = capture(args.warmup, args.seed)
    n = len(batches)
    budget = float(trainer.delta_total)
    out: dict = {"warmup_iterations": args.warmup, "budget": budget}

    # 1. q_i and the W allocation against the CG iteration count
    alloc = {}
    for k in (1, 2, 3, 5, 10, 20, 50):
        up = SequentialUpdate(trainer.policies, None, TRPOSettings(cg_iters=k))
        q = np.array([up.direction(i, batches[i], adv).utility for i in range(n)])
        delta = water_fill(q / q.sum(), budget).delta
        alloc[k] = {"q": q.tolist(), "delta": delta.tolist()}
    ref = np.array(alloc[10]["delta"])
    for row in alloc.values():
        d = np.array(row["delta"])
        row["max_abs_delta_change_vs_10"] = float(np.abs(d - ref).max())
        row["max_rel_delta_change_vs_10"] = float(np.abs(d / ref - 1).max())
        row["order"] = np.argsort(-d, kind="stable").tolist()
    out["allocation_vs_cg_iters"] = {str(k): v for k, v in alloc.items()}

    # 2./3. directions at the M after W's first commit: warm starts and the GN product
    first = int(np.argmax(ref))
    up = SequentialUpdate(trainer.policies, None, TRPOSettings())
    d0 = {i: up.direction(i, batches[i], adv) for i in range(n)}
    with torch.no_grad():
        out_first = up.step(first, batches[first], adv, float(ref[first]), d0[first])
    weights = (out_first.ratio * adv).detach()
    rows = {}
    for i in (j for j in range(n) if j != first):

        def solve(fvp="hessian", iters=10, warm=None, i=i):
            st = TRPOSettings(cg_iters=iters, fvp=fvp, cg_warm_iters=warm)
            x0 = None if warm is None else d0[i]
            return SequentialUpdate(trainer.policies, None, st).direction(
                i, batches[i], weights, None, x0=x0
            )

        s50 = solve(iters=50).s
        cases = {"cold10": solve(), "cold50": solve(iters=50)}
        for k in (2, 4, 6):
            cases[f"warm{k}"] = solve(warm=k)
        cases["gn_cold10"] = solve(fvp="gauss_newton")
        cases["gn_warm4"] = solve(fvp="gauss_newton", warm=4)
        rows[str(i)] = {
            name: {
                "rel_err_vs_cold50": float((d.s - s50).norm() / s50.norm()),
                "cos_vs_cold50": float(torch.dot(d.s, s50) / (d.s.norm() * s50.norm())),
                "q": d.utility,
            }
            for name, d in cases.items()
        }
        rows[str(i)]["gn_vs_hessian_cold10_rel"] = float(
            (cases["gn_cold10"].s - cases["cold10"].s).norm() / cases["cold10"].s.norm()
        )
    out["first_committed"] = first
    out["directions_after_first_commit"] = rows
    args.out.write_text(json.dumps(out, indent=1) + "\n")

    print("W allocation vs CG iterations (delta_i; max relative change vs 10):")
    for k, row in alloc.items():
        rel = row["max_rel_delta_change_vs_10"]
        print(f"  k={k:2d} order {row['order']} delta {np.round(row['delta'], 4).tolist()} "
              f"max rel {rel:.3f}")  # fmt: skip
    print(f"directions after committing agent {first} (rel. error vs cold 50 iterations):")
    names = list(next(iter(rows.values())).keys())[:-1]
    print("  agent " + " ".join(f"{x:>10}" for x in names))
    for i, row in rows.items():
        print(f"  {i:>5} " + " ".join(f"{row[x]['rel_err_vs_cold50']:10.4f}" for x in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
