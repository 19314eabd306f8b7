"""The kernels interpreted as plain Python (NUMBA_DISABLE_JIT=1) give the compiled answers.

This runs the very same kernel source without numba, in a subprocess, on a few instances per
path (small rows, the sampled long-row path, bisection, batches, greedy with its band search),
so kernel code that only works because of numba's typing (or breaks because of it) shows up.
Compiled reductions are reassociated, so the comparison is to rounding, not bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = r"""
import json, sys
import numpy as np
from kl_alloc import water_fill, greedy_allocate
rng = np.random.default_rng(5)
out = {}
w, c = rng.exponential(size=(2, 9)); hi = rng.uniform(0.01, 0.5, 9)
out["small"] = water_fill(w, 0.3 * hi.sum(), floors=c, upper=hi).delta.tolist()
out["bisect"] = water_fill(w, 0.3 * hi.sum(), floors=c, upper=hi, method="bisect").delta.tolist()
out["batch"] = water_fill(np.stack([w, w[::-1]]), 1.0, floors=0.1).delta.tolist()
n = 17000
W, C = rng.exponential(size=(2, n)); H = rng.uniform(0.01, 0.5, n)
out["long"] = water_fill(W, 0.3 * H.sum(), floors=C, upper=H).delta.tolist()
L = np.round(rng.normal(size=9000), 2); D = np.round(rng.exponential(size=9000), 2)
out["greedy_long"] = greedy_allocate(L, D, 0.3 * D.sum()).delta.tolist()
out["greedy"] = greedy_allocate(L[:7], D[:7], 0.5).delta.tolist()
kern = sys.modules["kl_alloc.solvers._wf_kernels"].solve_row
json.dump({"kind": type(kern).__name__, "out": out}, sys.stdout)
"""


def test_kernels_as_plain_python_match_compiled():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root
    )
    assert p.returncode == 0, p.stderr[-2000:]
    interpreted = json.loads(p.stdout)
    compiled = json.loads(
        subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=root, check=True
        ).stdout
    )
    assert interpreted["kind"] == "function" and compiled["kind"] == "CPUDispatcher"
    interpreted, compiled = interpreted["out"], compiled["out"]
    for key, ref in compiled.items():
        np.testing.assert_allclose(interpreted[key], ref, rtol=1e-12, atol=1e-13, err_msg=key)
