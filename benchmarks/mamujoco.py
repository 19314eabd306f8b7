"""The Multi-Agent MuJoCo comparison (experiments.md s.3): HATRPO vs HATRPO-W vs HATRPO-G.

    python benchmarks/mamujoco.py                          # everything, 2 runs at a time
    python benchmarks/mamujoco.py --tasks ant-2x4 --algos hatrpo,hatrpo-g --seeds 0 --steps 200000
    python benchmarks/mamujoco.py --report                 # only (re)write the results
    setsid nohup python benchmarks/mamujoco.py > runs/bench/mamujoco/driver.log 2>&1 &

- Every run is its own process (this script with ``--worker``), one torch / OpenMP / numba
  thread, at most ``--jobs`` at once (default 2: one per core). Run directories are
  ``<out>/<task>-<algo>-<seed>`` (the run-dir format of :mod:`kl_alloc.rundir`), the
  per-run log is ``<out>/logs/<task>-<algo>-<seed>.log``.
- Resumable: runs with ``done.json`` are skipped, a killed run continues from its checkpoint
  (``Trainer.resume``: bit-for-bit the run it would have been). Re-running the same command is
  how to continue. A run directory whose stored config differs from what this script would use
  now is an error, never silently mixed into the results.
- One driver at a time: ``<out>/driver.lock`` holds its PID (a stale lock is taken over).
- The report (``--report``, and always at the end) works on whatever exists: finished runs give
  the final returns, unfinished ones are listed with their progress and drawn in the curves.

Final return = mean of the last 10% of a run's evaluations (deterministic policy, 10 episodes
each, every 25 iterations); improvement = (R_method - R_HATRPO) / |R_HATRPO| on the means over
seeds; wall-clock per iteration = mean over a run's iterations (first one excluded), then over
seeds. Runs share the machine (two at a time, plus whatever else runs), so absolute seconds are
noisy; the ratios compare runs that ran under the same conditions only roughly.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python benchmarks/mamujoco.py` from a checkout

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
for _var in THREAD_VARS:  # before numpy / torch / numba are imported
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.mamujoco")

#: task name -> (scenario, agent_conf)
TASKS = {"ant-2x4": ("Ant", "2x4"), "halfcheetah-6x1": ("HalfCheetah", "6x1")}
from kl_alloc.methods import builtin_methods, method_label  # noqa: E402

ALGOS = tuple(builtin_methods())
LABELS = {m: method_label(m) for m in ALGOS}
DEFAULT_OUT = ROOT / "runs" / "bench" / "mamujoco"
RESULTS = ROOT / "benchmarks" / "results"
#: overrides of the "mamujoco" preset used by every run of this benchmark
RUN_CONFIG = dict(eval_every=25, eval_episodes=10, checkpoint_every=10)


def run_name(task: str, algo: str, seed: int) -> str:
    return f"{task}-{algo}-{seed}"


def make_config(task: str):
    from kl_alloc.rl import TrainerConfig

    scenario, conf = TASKS[task]
    return TrainerConfig.for_env("mamujoco", **RUN_CONFIG)


# -- one run (worker process) -------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _config_matches(run_dir: Path, cfg, steps: int) -> str | None:
    """None if the run directory may be continued with ``cfg``, else the reason why not."""
    stored = _read_json(run_dir / "config.json")
    if stored is None:
        return None
    stored_as = type(cfg).stored_as  # fills in defaults of fields added since the run started
    want = stored_as(json.loads(json.dumps(cfg.to_dict())))
    have = stored_as(stored.get("config", {}))
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    return f"config differs in {diff}" if diff else None


def worker(task: str, algo: str, seed: int, steps: int, out: Path) -> int:
    """Train (or continue) one run; returns a process exit code."""
    import torch

    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    torch.set_num_threads(1)
    run_dir = out / run_name(task, algo, seed)
    scenario, conf = TASKS[task]
    cfg = make_config(task)
    problem = _config_matches(run_dir, cfg, steps)
    if problem:
        logger.error("%s: %s; move the directory away to rerun it", run_dir, problem)
        return 3
    if (run_dir / "checkpoint.pt").exists():
        trainer = Trainer.resume(run_dir)
        logger.info(
            "resumed %s at iteration %d (%d steps)", run_dir, trainer.iteration, trainer.env_steps
        )
    else:
        for name in ("progress.jsonl", "eval.jsonl", "config.json"):  # killed before 1st ckpt
            (run_dir / name).unlink(missing_ok=True)
        env = make_env(
            "mamujoco", num_envs=cfg.num_envs, seed=seed, scenario=scenario, agent_conf=conf
        )
        trainer = Trainer(env, algo=algo, config=cfg, seed=seed, out_dir=run_dir)
        logger.info("started %s", run_dir)

    def log_progress(tr, rec: dict) -> None:
        if rec["iteration"] % 5 and rec["env_steps"] < steps:
            return
        ev = tr._last_eval
        logger.info(
            "it %d  steps %d  %.2fs/it (rollout %.2f actor %.2f critic %.2f)  train-ep-return %s"
            "  eval %s",
            rec["iteration"],
            rec["env_steps"],
            rec["seconds_per_iter"],
            rec["time"]["rollout"],
            rec["time"]["actor"],
            rec["time"]["critic"],
            "-" if rec["episode_return"] is None else f"{rec['episode_return']:.1f}",
            "-" if ev is None else f"{ev['return_mean']:.1f} (it {ev['iteration']})",
        )

    trainer.learn(steps, progress=False, callback=log_progress)
    trainer.close()
    logger.info("finished %s: %s", run_dir, _read_json(run_dir / "done.json"))
    return 0


# -- the driver ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the driver dies (Linux), so a killed driver
    leaves no orphan run that a restarted driver would start a second time."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lock(out: Path) -> Path:
    lock = out / "driver.lock"
    info = _read_json(lock)
    if info and _pid_alive(int(info.get("pid", -1))) and int(info["pid"]) != os.getpid():
        raise SystemExit(f"another driver is running (pid {info['pid']}, {lock}); not starting")
    lock.write_text(json.dumps({"pid": os.getpid(), "started": _now(), "argv": sys.argv}))
    return lock


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_done(run_dir: Path, steps: int) -> bool:
    done = _read_json(run_dir / "done.json")
    return bool(done) and int(done.get("env_steps", 0)) >= steps


def drive(args: argparse.Namespace) -> int:
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    lock = _take_lock(out)
    signal.signal(signal.SIGTERM, _raise_exit)  # run the cleanup below on kill -TERM too
    # task-major, then seed, then method: partial results always hold every method
    todo = [
        (task, algo, seed)
        for task in args.tasks
        for seed in args.seeds
        for algo in args.algos
        if not is_done(out / run_name(task, algo, seed), args.steps)
    ]
    logger.info("driver pid %d: %d runs to do, %d at a time", os.getpid(), len(todo), args.jobs)
    running: dict[tuple, subprocess.Popen] = {}
    failed: list[str] = []
    env = dict(os.environ, **{v: "1" for v in THREAD_VARS}, PYTHONPATH=str(ROOT))
    try:
        while todo or running:
            while todo and len(running) < args.jobs:
                task, algo, seed = key = todo.pop(0)
                name = run_name(task, algo, seed)
                log = open(out / "logs" / f"{name}.log", "a")  # noqa: SIM115 (child owns it)
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    "--tasks",
                    task,
                    "--algos",
                    algo,
                    "--seeds",
                    str(seed),
                    "--steps",
                    str(args.steps),
                    "--out",
                    str(out),
                ]
                running[key] = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                    preexec_fn=_die_with_parent,
                )
                log.close()
                logger.info("started %s (pid %d)", name, running[key].pid)
                _write_status(out, running)
            time.sleep(2.0)
            for key, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[key]
                name = run_name(*key)
                if proc.returncode == 0:
                    logger.info("%s finished", name)
                else:
                    logger.error("%s exited with %s (see logs/%s.log)", name, proc.returncode, name)
                    failed.append(name)
                _write_status(out, running)
                try:  # a fresh report after every finished run (cheap)
                    report(args)
                except Exception:
                    logger.exception("report failed")
    finally:
        for proc in running.values():  # an interrupted driver leaves no orphans behind
            proc.terminate()
        lock.unlink(missing_ok=True)
        _write_status(out, {})
    report(args)
    if failed:
        logger.error("failed runs: %s", failed)
    return 1 if failed else 0


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _write_status(out: Path, running: dict) -> None:
    status = {
        "driver_pid": os.getpid(),
        "updated": _now(),
        "running": {run_name(*k): p.pid for k, p in running.items()},
    }
    (out / "status.json").write_text(json.dumps(status, indent=1))


# -- the report ---------------------------------------------------------------------------------


def _final_return(evals: np.ndarray) -> float:
    """Mean of the last 10% of the evaluations (at least one)."""
    k = max(1, math.ceil(0.1 * len(evals)))
    return float(np.mean(evals[-k:]))


def _stats(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    if not v.size:
        return {"n": 0, "mean": None, "std": None, "var": None, "min": None, "max": None}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "var": float(v.var(ddof=1)) if v.size > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
    }


def collect(args: argparse.Namespace) -> dict[str, Any]:
    from kl_alloc.rundir import load_run

    tasks: dict[str, Any] = {}
    for task in args.tasks:
        methods: dict[str, Any] = {}
        for algo in args.algos:
            runs = []
            for seed in args.seeds:
                run_dir = args.out / run_name(task, algo, seed)
                if not (run_dir / "progress.jsonl").exists():
                    runs.append({"seed": seed, "status": "not started"})
                    continue
                data = load_run(run_dir)
                done = is_done(run_dir, args.steps)
                spi = (
                    data.seconds_per_iter[1:]
                    if data.seconds_per_iter.size > 1
                    else (data.seconds_per_iter)
                )
                shares = {k: float(np.nansum(v[1:])) for k, v in data.time.items()}
                total = sum(shares.values()) or 1.0
                evals = data.eval_return_mean[np.isfinite(data.eval_return_mean)]
                runs.append(
                    {
                        "seed": seed,
                        "status": "done" if done else "in progress",
                        "iterations": int(data.iteration[-1]) if data.iteration.size else 0,
                        "env_steps": int(data.env_steps[-1]) if data.env_steps.size else 0,
                        "wall_time": float(data.wall_time[-1]) if data.wall_time.size else None,
                        "seconds_per_iter": float(np.mean(spi)) if spi.size else None,
                        "seconds_per_iter_median": float(np.median(spi)) if spi.size else None,
                        "time_share": {k: v / total for k, v in shares.items()},
                        "evaluations": len(evals),
                        "final_return": _final_return(evals) if (done and len(evals)) else None,
                        "last_eval": float(evals[-1]) if len(evals) else None,
                        "_data": data,
                    }
                )
            finals = [r["final_return"] for r in runs if r.get("final_return") is not None]
            spis = [r["seconds_per_iter"] for r in runs if r.get("seconds_per_iter")]
            medians = [r["seconds_per_iter_median"] for r in runs if r.get("seconds_per_iter")]
            methods[algo] = {
                "runs": runs,
                "final_return": _stats(finals),
                "seconds_per_iter": float(np.mean(spis)) if spis else None,
                "seconds_per_iter_median": float(np.median(medians)) if medians else None,
            }
        base = methods.get("hatrpo", {}).get("final_return", {}).get("mean")
        base_spi = methods.get("hatrpo", {}).get("seconds_per_iter_median")
        for algo, m in methods.items():
            mean = m["final_return"]["mean"]
            m["improvement_pct"] = (
                100.0 * (mean - base) / abs(base)
                if (mean is not None and base not in (None, 0.0) and algo != "hatrpo")
                else None
            )
            spi = m["seconds_per_iter_median"]
            m["overhead_vs_hatrpo"] = spi / base_spi if (spi and base_spi) else None
        # partial results: every method's mean evaluation return at the last evaluation step
        # that all runs of the task with an evaluation have reached
        curves = {
            (algo, r["seed"]): dict(
                zip(
                    r["_data"].eval_env_steps.tolist(),
                    r["_data"].eval_return_mean.tolist(),
                    strict=True,
                )
            )
            for algo, m in methods.items()
            for r in m["runs"]
            if "_data" in r and r["_data"].eval_env_steps.size
        }
        common = set.intersection(*(set(c) for c in curves.values())) if curves else set()
        at_common = None
        if common:
            step = max(common)
            at_common = {"env_steps": int(step)}
            for algo in methods:
                vals = [c[step] for (a, _), c in curves.items() if a == algo]
                at_common[algo] = {"mean": float(np.mean(vals)), "n": len(vals)} if vals else None
        var_g = methods.get("hatrpo-g", {}).get("final_return", {}).get("var")
        var_w = methods.get("hatrpo-w", {}).get("final_return", {}).get("var")
        tasks[task] = {
            "methods": methods,
            "variance_ratio_g_over_w": var_g / var_w if (var_g is not None and var_w) else None,
            "at_common_step": at_common,
        }
    return tasks


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _markdown(tasks: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Multi-Agent MuJoCo: HATRPO vs HATRPO-W vs HATRPO-G",
        "",
        f"Command: `{meta['command']}`  ",
        f"Written {meta['written']} at commit {meta['commit']}; {meta['steps']:,} env steps per "
        f"run, seeds {meta['seeds']}.",
        "",
        "Final return = mean of the last 10% of a run's deterministic evaluations (10 episodes "
        "every 25 iterations), over finished seeds: mean +- std (min..max). s/iter = median over "
        "seeds of each run's mean seconds per iteration (first iteration excluded); runs share "
        "a 2-core machine (two at a time), so seconds are noisy: the CPU-time overheads are in "
        "mamujoco_profile.md.",
        "",
    ]
    for task, t in tasks.items():
        lines += [f"## {task}", ""]
        lines.append(
            "| method | finished seeds | final return | vs HATRPO | variance over seeds "
            "| s/iter | s/iter vs HATRPO | time shares (rollout/actor/critic/solver) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for algo, m in t["methods"].items():
            fr = m["final_return"]
            n_done = sum(r["status"] == "done" for r in m["runs"])
            ret = (
                "-"
                if fr["mean"] is None
                else (f"{fr['mean']:.1f} +- {_fmt(fr['std'])} ({fr['min']:.1f}..{fr['max']:.1f})")
            )
            shares = [r["time_share"] for r in m["runs"] if "time_share" in r]
            share = "-"
            if shares:
                avg = {k: np.mean([s[k] for s in shares]) for k in shares[0]}
                share = "/".join(
                    f"{100 * avg[k]:.0f}%" for k in ("rollout", "actor", "critic", "solver")
                )
            imp = m["improvement_pct"]
            lines.append(
                f"| {LABELS.get(algo, algo)} | {n_done}/{len(m['runs'])} | {ret} | "
                f"{'-' if imp is None else f'{imp:+.1f}%'} | {_fmt(fr['var'], '.4g')} | "
                f"{_fmt(m['seconds_per_iter_median'], '.2f')} | "
                f"{_fmt(m['overhead_vs_hatrpo'], '.2f')} | {share} |"
            )
        lines += ["", f"Variance ratio G/W: {_fmt(t['variance_ratio_g_over_w'], '.3g')}", ""]
        common = t.get("at_common_step")
        if common:
            parts = [
                f"{LABELS.get(a, a)} {v['mean']:.1f} (n={v['n']})"
                for a, v in common.items()
                if a != "env_steps" and v
            ]
            lines += [
                f"At {common['env_steps']:,} env steps (the last evaluation every evaluated run "
                f"has reached; n = runs): " + ", ".join(parts),
                "",
            ]
        lines.append("| run | status | iterations | env steps | wall time | last eval |")
        lines.append("|---|---|---|---|---|---|")
        for algo, m in t["methods"].items():
            for r in m["runs"]:
                wall = r.get("wall_time")
                lines.append(
                    f"| {run_name(task, algo, r['seed'])} | {r['status']} | "
                    f"{r.get('iterations', '-')} | {r.get('env_steps', '-')} | "
                    f"{'-' if wall is None else f'{wall / 60:.1f} min'} | "
                    f"{_fmt(r.get('last_eval'))} |"
                )
        lines.append("")
    lines.append(f"Figures: {', '.join(meta['figures']) or 'none yet'}")
    return "\n".join(lines) + "\n"


def _plot(tasks: dict[str, Any], prefix: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[str] = []
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    drawn = False
    for ax, (task, t) in zip(axes[0], tasks.items(), strict=True):
        for index, (algo, m) in enumerate(t["methods"].items()):
            curves = [
                (r["_data"].eval_env_steps, r["_data"].eval_return_mean)
                for r in m["runs"]
                if "_data" in r and r["_data"].eval_env_steps.size
            ]
            if not curves:
                continue
            grid = np.unique(np.concatenate([x for x, _ in curves]))
            values = np.full((len(curves), grid.size), np.nan)
            for k, (x, y) in enumerate(curves):
                inside = (grid >= x[0]) & (grid <= x[-1])
                values[k, inside] = np.interp(grid[inside], x, y)
            with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            color = f"C{index}"
            ax.plot(
                grid, mean, color=color, label=f"{LABELS.get(algo, algo)} ({len(curves)} seeds)"
            )
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, lw=0)
            drawn = True
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return (deterministic)")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small", title="band: +-1 std over seeds", title_fontsize="x-small")
    if drawn:
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "_curves.png")
        fig.savefig(path, dpi=110)
        figures.append(path.name)
    plt.close(fig)

    # KL-allocation heatmaps, agent x iteration, for W and G (the first seed that has data)
    try:
        from kl_alloc.analysis.figures import plot_allocation_heatmaps
    except Exception:  # the shared plotting module is optional here
        plot_allocation_heatmaps = None
    for task, t in tasks.items():
        runs = []
        for algo in ("hatrpo-w", "hatrpo-g"):
            m = t["methods"].get(algo)
            with_data = [r for r in (m["runs"] if m else []) if "_data" in r]
            if with_data and with_data[0]["_data"].delta_alloc.size:
                runs.append(with_data[0]["_data"])
        if not runs:
            continue
        path = prefix.with_name(f"{prefix.name}_alloc_{task}.png")
        if plot_allocation_heatmaps is not None:
            hfig = plot_allocation_heatmaps(runs, title=f"{task}: KL allocated per agent")
        else:
            hfig, hax = plt.subplots(len(runs), 1, figsize=(10, 1 + 1.5 * len(runs)), squeeze=False)
            vmax = max(float(np.nanmax(r.delta_alloc)) for r in runs) or 1.0
            for ax, r in zip(hax[:, 0], runs, strict=True):
                im = ax.imshow(
                    r.delta_alloc.T, aspect="auto", interpolation="nearest", vmin=0, vmax=vmax
                )
                ax.set_title(f"{r.config.get('algo')} seed {r.config.get('seed')}", loc="left")
                ax.set_ylabel("agent")
            hax[-1, 0].set_xlabel("iteration")
            hfig.colorbar(im, ax=list(hax[:, 0]), label="delta_i allocated")
        hfig.savefig(path, dpi=110)
        plt.close(hfig)
        figures.append(path.name)
    return figures


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "kl_alloc/rl",
                "kl_alloc/envs",
                "benchmarks/mamujoco.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")
    except Exception:
        return "unknown"


def report(args: argparse.Namespace) -> dict[str, Any]:
    import mujoco
    import torch

    tasks = collect(args)
    args.results.mkdir(parents=True, exist_ok=True)
    prefix = args.results / "mamujoco"
    meta = {
        "command": args.command,
        "written": _now(),
        "commit": _git_commit(),
        "steps": args.steps,
        "seeds": list(args.seeds),
        "run_config": {"preset": "mamujoco", **RUN_CONFIG},
        "out": str(args.out),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
    }
    meta["figures"] = _plot(tasks, prefix)
    complete = all(
        r["status"] == "done"
        for t in tasks.values()
        for m in t["methods"].values()
        for r in m["runs"]
    )
    meta["complete"] = complete
    for t in tasks.values():
        for m in t["methods"].values():
            for r in m["runs"]:
                r.pop("_data", None)
    payload = {"meta": meta, "tasks": tasks}
    (prefix.with_suffix(".json")).write_text(json.dumps(payload, indent=1) + "\n")
    md = _markdown(tasks, meta)
    if not complete:
        md = "**Partial results: some runs are unfinished (see the run tables).**\n\n" + md
    (prefix.with_suffix(".md")).write_text(md)
    logger.info("report written to %s.{json,md}", prefix)
    return payload


# -- command line -------------------------------------------------------------------------------


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=_csv(str), default=list(TASKS))
    parser.add_argument("--algos", type=_csv(str), default=list(ALGOS))
    parser.add_argument("--seeds", type=_csv(int), default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--report", action="store_true", help="only write the report")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for task in args.tasks:
        if task not in TASKS:
            parser.error(f"--tasks: unknown task {task!r}; known: {list(TASKS)}")
    for algo in args.algos:
        if algo not in ALGOS:
            parser.error(f"--algos: unknown method {algo!r}; known: {list(ALGOS)}")
    args.out = args.out.resolve()
    args.command = "python benchmarks/mamujoco.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    if args.worker:
        return worker(args.tasks[0], args.algos[0], args.seeds[0], args.steps, args.out)
    if args.report:
        report(args)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
