"""The update phase alone (measure -> allocate -> commit) of HATRPO / -W / -G on one captured
HalfCheetah 6x1 batch, under each lever, interleaved: which lever buys what.

    python benchmarks/wg_update_phase.py [default|harl] [--reps 3]

One warm-up HATRPO iteration, then one rollout is captured; every (variant, method) runs
``SequentialUpdate.run`` on the same batches from the same parameters, repeated ``--reps``
times interleaved; process CPU seconds, median and all repeats. Variants: ``nocache`` (the
forward and the Fisher graph rebuilt for every direction: the code before the cache),
``ref`` (the default settings), ``gn`` (fvp=gauss_newton), ``warm4`` (cg_warm_iters=4),
``gn+warm4``. The first repeat prints each variant's order and allocations. Writes
``benchmarks/results/wg_overhead/update_phase_<preset>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kl_alloc.rl.allocators import GreedyAllocator, UniformAllocator, WaterFillAllocator  # noqa: E402
from kl_alloc.rl.update import SequentialUpdate, TRPOSettings  # noqa: E402


class NoCache(SequentialUpdate):
    """The code before the cache: forward + Fisher graph rebuilt for every direction."""

    def direction(self, i, batch, weights, curvature=None, x0=None):
        return super().direction(i, batch, weights, None, x0)


VARIANTS = {
    "nocache": (NoCache, TRPOSettings()),
    "ref": (SequentialUpdate, TRPOSettings()),
    "gn": (SequentialUpdate, TRPOSettings(fvp="gauss_newton")),
    "warm4": (SequentialUpdate, TRPOSettings(cg_warm_iters=4)),
    "gn+warm4": (SequentialUpdate, TRPOSettings(fvp="gauss_newton", cg_warm_iters=4)),
}
METHODS = {"H": UniformAllocator, "W": WaterFillAllocator, "G": GreedyAllocator}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", nargs="?", default="default")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cg_accuracy import capture

    torch.set_num_threads(1)
    trainer, batches, adv = capture(1, 0, args.preset)
    state = [copy.deepcopy(p.state_dict()) for p in trainer.policies]
    cpu: dict[str, list[float]] = {f"{v} {m}": [] for v in VARIANTS for m in METHODS}
    allocations = {}
    for rep in range(args.reps):
        for vname, (update_class, settings) in VARIANTS.items():
            for mname, allocator in METHODS.items():
                for policy, s in zip(trainer.policies, state, strict=True):
                    policy.load_state_dict(s)
                update = update_class(trainer.policies, allocator(), settings)
                c0 = time.process_time()
                res = update.run(batches, adv, trainer.delta_total, np.random.default_rng(1))
                cpu[f"{vname} {mname}"].append(time.process_time() - c0)
                if rep == 0:
                    deltas = [round(r.delta_alloc, 4) for r in res.records]
                    allocations[f"{vname} {mname}"] = {"order": res.order, "deltas": deltas}
                    print(f"{vname:8} {mname} order {res.order} deltas {deltas}", flush=True)
    rows = {k: {"median": float(np.median(v)), "repeats": v} for k, v in cpu.items()}
    for k, row in rows.items():
        print(f"{k:10} median {row['median']:.3f} CPU s  repeats "
              + " ".join(f"{x:.3f}" for x in row["repeats"]))  # fmt: skip
    out = ROOT / "benchmarks/results/wg_overhead" / f"update_phase_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"preset": args.preset, "reps": args.reps, "cpu_seconds": rows,
               "allocations": allocations, "load_avg": list(os.getloadavg())}  # fmt: skip
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
