"""Fingerprints of training runs: the numbers a refactoring must not change.

Each run below is a ``kl-alloc train`` command (run in-process through the public entry point
``kl_alloc.cli.main`` in a temporary directory). Its fingerprint is a SHA-256 of
``progress.jsonl`` with every wall-clock field removed, so it does not depend on the machine's
speed but changes if any learned number (rewards, KLs, allocations, policies, critic loss,
update order, line-search tries, ...) changes by one bit.

    .venv/bin/python benchmarks/fingerprints.py --check            # compare with the stored ones
    .venv/bin/python benchmarks/fingerprints.py --check --only matrix/hatrpo-w
    .venv/bin/python benchmarks/fingerprints.py --write            # deliberately re-record

``--write`` rewrites ``tests/golden/<machine class>/fingerprints.json`` (:func:`machine_class`:
the last bits of vectorised sums differ between AVX-512 and AVX2 machines, so each class has its
own files); run it only when a change of numbers is intended, or to record a new class of
machine, and say why in the commit. ``--check`` exits 1 and names every run that differs,
the first iteration that differs and the fields that differ.

The runs (seed 0, the settings in docs/results.md):

- ``matrix/<algo>``: ``kl-alloc train --env matrix --algo ALGO --seed 0`` (default 400k steps,
  100 iterations, ~4 s of training each);
- ``differential/<algo>``: ``kl-alloc train --env differential --algo ALGO --seed 0`` (default
  200k steps, 500 iterations, ~15-25 s each);
- ``differential-40k/<algo>``: the same with ``--steps 40000`` (100 iterations, a few seconds:
  the CI test runs these, the full ones are for this script);
- ``ant/<algo>``: ``kl-alloc train --env mamujoco --scenario Ant --agent-conf 2x4 --algo ALGO
  --seed 0 --steps 20000`` (5 iterations of 4000 samples).

How a record is reduced before hashing: the wall-clock keys (``TIMING_KEYS`` and any key
matching ``_is_timing``, at any depth) are removed, and each record is projected on the keys the
stored records had (``schema`` in the JSON file), so fields a later version *adds* to the record
(e.g. the evaluation carried in the iteration record) are ignored and listed, while a field that
disappears, is renamed, or changes value fails the check. Each record is serialised with sorted
keys; JSON floats are written by ``repr``, which round-trips exactly, so equal text means equal
bits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def machine_class() -> str:
    """The class of machine whose floating-point results a golden file holds: ``x86_64-avx2``
    when numba compiles for AVX2 at most, ``x86_64-avx512-<cpu>`` with AVX-512 (LLVM tunes the
    vector width per CPU: an Intel AVX-512 CPU compiles the solver's sums differently from an
    AMD one), else the architecture. What numba compiles for is what counts
    (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` override the host); torch's kernels and MKL
    dispatch on the same vector ISA. Bitwise goldens hold per class (tests/golden/CLASS/)."""
    arch = platform.machine().lower()
    if arch not in ("x86_64", "amd64"):
        return arch
    from llvmlite import binding  # numba's code generator
    from numba.core import config

    cpu = config.CPU_NAME or binding.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        flags = {f[1:]: f[0] == "+" for f in config.CPU_FEATURES.split(",") if f[:1] in "+-" and f}
    else:
        flags = dict(binding.get_host_cpu_features())
    if flags.get("avx512f"):
        return f"x86_64-avx512-{cpu}"
    return "x86_64-avx2" if flags.get("avx2") else "x86_64-sse"


STORE = GOLDEN / machine_class() / "fingerprints.json"

ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")
ANT = ["--env", "mamujoco", "--scenario", "Ant", "--agent-conf", "2x4", "--steps", "20000"]
#: run name -> ``kl-alloc train`` arguments (``--out`` and ``--no-progress`` are added)
RUNS: dict[str, list[str]] = {}
for _algo in ALGOS:
    RUNS[f"matrix/{_algo}"] = ["--env", "matrix", "--algo", _algo, "--seed", "0"]
for _algo in ALGOS:
    RUNS[f"differential/{_algo}"] = ["--env", "differential", "--algo", _algo, "--seed", "0"]
for _algo in ALGOS:  # the same, shortened to fit the CI test's time budget
    RUNS[f"differential-40k/{_algo}"] = [*RUNS[f"differential/{_algo}"], "--steps", "40000"]
for _algo in ALGOS:
    RUNS[f"ant/{_algo}"] = [*ANT, "--algo", _algo, "--seed", "0"]

#: wall-clock keys of a progress record (kl_alloc/rundir.py documents them)
TIMING_KEYS = frozenset({"time", "wall_time", "seconds_per_iter"})


def _is_timing(key: str) -> bool:
    k = key.lower()
    return k in TIMING_KEYS or k.startswith("time_") or "seconds" in k or k.endswith("_time")


def strip_timing(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items() if not _is_timing(k)}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


def schema_of(records: list[Any]) -> Any:
    """The union of the key structure of ``records``: a dict key -> sub-schema, None = leaf."""
    out: Any = None
    for r in records:
        if isinstance(r, dict):
            out = out if isinstance(out, dict) else {}
            for k, v in r.items():
                out[k] = _merge(out.get(k), schema_of([v]))
        elif isinstance(r, list):
            out = _merge(out, schema_of(r))
    return out


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    return a if b is None else b


def project(x: Any, schema: Any, extra: set[str], path: str = "") -> Any:
    """``x`` with only the keys in ``schema`` (the keys it drops are added to ``extra``)."""
    if isinstance(x, dict):
        if not isinstance(schema, dict):
            return x
        for k in x.keys() - schema.keys():
            extra.add(path + k)
        return {
            k: project(v, schema[k], extra, path + k + ".") for k, v in x.items() if k in schema
        }
    if isinstance(x, list):
        return [project(v, schema, extra, path) for v in x]
    return x


def canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_progress(run_dir: Path) -> list[dict]:
    lines = (run_dir / "progress.jsonl").read_text().splitlines()
    return [strip_timing(json.loads(line)) for line in lines if line.strip()]


def fingerprint(records: list[dict], schema: Any = None) -> dict:
    """The fingerprint of timing-free progress records (projected on ``schema`` if given)."""
    if schema is None:
        schema = schema_of(records)
    extra: set[str] = set()
    records = [project(r, schema, extra) for r in records]
    lines = [canonical(r) for r in records]
    keys = sorted({k for r in records for k in r})
    return {
        "sha256": sha("\n".join(lines)),
        "iterations": len(records),
        "per_iteration": [sha(line)[:16] for line in lines],
        "fields": {k: sha(canonical([r.get(k) for r in records]))[:16] for k in keys},
        "final": {
            k: records[-1].get(k)
            for k in ("env_steps", "expected_reward", "episode_return", "policy")
            if k in records[-1]
        },
        "schema": schema,
        "ignored_new_keys": sorted(extra),
    }


def train(args: list[str], out: Path) -> None:
    """One ``kl-alloc train`` run through the public entry point, output silenced."""
    from kl_alloc.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["--quiet", "train", *args, "--out", str(out), "--no-progress"])
    if rc != 0:
        raise RuntimeError(f"kl-alloc train {' '.join(args)} exited with {rc}")


def measure(name: str, schema: Any = None, workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / name.replace("/", "-")
        t0 = time.perf_counter()
        train(RUNS[name], out)
        seconds = time.perf_counter() - t0
        fp = fingerprint(read_progress(out), schema)
    fp["seconds"] = round(seconds, 1)  # information only; never compared
    return fp


def load_store(path: Path = STORE) -> dict:
    return json.loads(path.read_text())


def compare(name: str, stored: dict, got: dict) -> list[str]:
    """Human-readable differences (empty if the fingerprints match)."""
    if got["sha256"] == stored["sha256"]:
        return []
    msgs = [f"{name}: progress.jsonl fingerprint differs"]
    if got["iterations"] != stored["iterations"]:
        msgs.append(f"  iterations: {got['iterations']} (stored {stored['iterations']})")
    for i, (a, b) in enumerate(zip(got["per_iteration"], stored["per_iteration"], strict=False)):
        if a != b:
            msgs.append(f"  first differing iteration: {i + 1}")
            break
    differing = [
        k for k in stored["fields"] if got["fields"].get(k, "<missing>") != stored["fields"][k]
    ]
    if differing:
        msgs.append(f"  fields that differ: {', '.join(differing)}")
    for k, v in stored["final"].items():
        if got["final"].get(k) != v:
            msgs.append(f"  final {k}: {_short(got['final'].get(k))} (stored {_short(v)})")
    return msgs


def _short(x: Any, limit: int = 160) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(names: list[str], store: dict, workdir: Path | None = None) -> list[str]:
    problems = []
    for name in names:
        if name not in store["runs"]:
            problems.append(f"{name}: no stored fingerprint (run --write)")
            continue
        stored = store["runs"][name]
        got = measure(name, stored["schema"], workdir)
        msgs = compare(name, stored, got)
        status = "differs" if msgs else "ok"
        print(f"{name}: {status} ({got['iterations']} iterations, {got['seconds']} s)", flush=True)
        if got["ignored_new_keys"]:
            print(f"  (new keys ignored: {', '.join(got['ignored_new_keys'])})")
        problems += msgs
    return problems


def _provenance() -> dict:
    import numpy
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "machine_class": machine_class(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare with the stored fingerprints")
    mode.add_argument("--write", action="store_true", help="re-record (deliberately!)")
    p.add_argument("--only", nargs="+", metavar="RUN", help=f"a subset of: {' '.join(RUNS)}")
    p.add_argument("--store", type=Path, default=STORE, help="the fingerprint file")
    args = p.parse_args(argv)
    os.environ.setdefault("KL_ALLOC_QUIET", "1")
    import torch

    torch.set_num_threads(1)
    names = args.only or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")

    if args.check:
        problems = check(names, load_store(args.store))
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0

    store = load_store(args.store) if args.store.exists() else {"runs": {}}
    for name in names:
        fp = measure(name)
        fp.pop("ignored_new_keys")
        store["runs"][name] = {"argv": ["kl-alloc", "train", *RUNS[name]], **fp}
        print(f"{name}: {fp['sha256'][:16]} ({fp['iterations']} iterations, {fp['seconds']} s)")
    store["timing_keys_removed"] = sorted(TIMING_KEYS)
    store["provenance"] = _provenance()
    store["runs"] = {k: store["runs"][k] for k in RUNS if k in store["runs"]}
    args.store.parent.mkdir(parents=True, exist_ok=True)
    args.store.write_text(json.dumps(store, indent=1) + "\n")
    print(f"wrote {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
