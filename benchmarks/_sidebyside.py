"""What the side-by-side speed scripts share (``mamujoco_batch_step.py``, ``mpe_step.py``): two
settings of the same code measured in the same run, interleaved, compared as per-round ratios.

Import it first: it asks for one thread per numerical library (before numpy / torch / numba
load) and puts the checkout on ``sys.path`` (the scripts run as ``python benchmarks/x.py``)."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def ratio(a: list[float], b: list[float]) -> dict[str, float]:
    """``a / b`` per round: the median and the range over rounds."""
    per_round = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}


def run_tasks(
    tasks: str,
    measure: Callable[[str], dict[str, Any]],
    summarise: Callable[[dict[str, Any]], dict[str, Any]],
    table: Callable[[dict[str, dict[str, Any]]], str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``measure`` each task of the comma-separated ``tasks`` (its raw rounds), ``summarise``
    it into a row, print the row as it comes and the whole table at the end; ``(raw, rows)``."""
    raw: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    for task in [t for t in tasks.split(",") if t]:
        raw[task] = measure(task)
        rows[task] = summarise(raw[task])
        print(table({task: rows[task]}).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    return raw, rows


def ratio_text(r: dict[str, float]) -> str:
    """A :func:`ratio` as ``0.478 (0.47-0.48)``: the median and the range over rounds."""
    return f"{r['median']:6.3f} ({r['min']:.2f}-{r['max']:.2f})"


def same_text(same: bool) -> str:
    """Whether both settings gave the same numbers, as a table cell."""
    return f"{'yes' if same else 'NO':>4}"


def add_round_args(parser: Any, tasks: str, iterations: int, rounds: int) -> None:
    """The arguments every side-by-side script takes (its own come after)."""
    parser.add_argument("--tasks", default=tasks, help=f"comma-separated (default {tasks})")
    parser.add_argument("--steps", type=int, default=200, help="env.step calls per round")
    parser.add_argument("--chunk", type=int, default=10, help="steps between setting switches")
    parser.add_argument("--iterations", type=int, default=iterations, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here (a .json file)")


def check_round_args(parser: Any, args: Any) -> None:
    """An argument error (not a traceback deep in a measurement) for counts below 1."""
    if min(args.steps, args.chunk, args.iterations, args.rounds) < 1:
        parser.error("--steps, --chunk, --iterations and --rounds must be >= 1")
