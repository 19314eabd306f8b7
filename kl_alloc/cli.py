"""The ``kl-alloc`` command line (also ``python -m kl_alloc``).

    kl-alloc demo                                  # HATRPO vs W vs G on the matrix game (~1 min)
    kl-alloc train --env matrix --algo hatrpo-w --seed 0 --out runs/matrix-w-0
    kl-alloc train --env mamujoco --scenario Ant --agent-conf 2x4 --algo hatrpo-g \\
        --steps 1000000 --out runs/ant-g-0 --tensorboard
    kl-alloc train --out runs/ant-g-0 --resume     # continue a killed run
    kl-alloc evaluate runs/ant-g-0 --episodes 10
    kl-alloc plot runs/bench/matrix --out plots/matrix
    kl-alloc config --env differential             # every --set key, its type and value

Config overrides (``--set key=value``) are typed from the :class:`TrainerConfig` dataclass fields
and parsed without ``eval``: numbers, booleans (true/false), ``none`` for optional fields,
comma-separated tuples (``hidden=64,64``) and JSON objects for ``env_kwargs``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kl_alloc.rundir import RUN_FILES  # what --force deletes (and tb/)

logger = logging.getLogger("kl_alloc.cli")

ENVS = ("matrix", "differential", "mamujoco")
ALGOS = ("hatrpo", "hatrpo-w", "hatrpo-g")
#: default training budget (env steps) per environment
DEFAULT_STEPS = {"matrix": 400_000, "differential": 200_000, "mamujoco": 1_000_000}
TB_DIR = "tb"


class CLIError(Exception):
    """A user error: printed as ``kl-alloc: error: ...`` with exit status 2."""


# -- typed --set parsing ---------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def config_types() -> dict[str, Any]:
    """``TrainerConfig`` field name -> resolved type annotation."""
    from kl_alloc.rl.config import TrainerConfig

    return typing.get_type_hints(TrainerConfig)


def _parse_as(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise CLIError(f"--set {key}: cannot parse a value of type {tp}")
        return _parse_as(text, inner[0], key)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise CLIError(f"--set {key}={text}: expected a boolean (true/false), got {text!r}")
    if tp is int:
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise CLIError(f"--set {key}={text}: expected an integer, got {text!r}") from None
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise CLIError(f"--set {key}={text}: expected an integer, got {text!r}")
            value = int(value)
        return value
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise CLIError(f"--set {key}={text}: expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise CLIError(f"--set {key}={text}: expected a finite number")
        return value
    if tp is str:
        return text
    if origin is tuple:
        body = text.strip().strip("()[]").strip()
        items = [p.strip() for p in body.split(",") if p.strip()] if body else []
        elem = args[0] if args else str
        return tuple(_parse_as(p, elem, key) for p in items)
    if origin is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(
                f"--set {key}: expected a JSON object, e.g. '{{\"a\": 1}}' ({exc})"
            ) from None
        if not isinstance(value, dict):
            raise CLIError(f"--set {key}: expected a JSON object, got {text!r}")
        return value
    raise CLIError(f"--set {key}: fields of type {tp} cannot be set from the command line")


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["delta=0.02", "hidden=32,32"]`` -> ``{"delta": 0.02, "hidden": (32, 32)}``, typed by
    the ``TrainerConfig`` field annotations. Unknown keys and bad values raise :class:`CLIError`."""
    hints = config_types()
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CLIError(f"--set {pair!r}: expected key=value")
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CLIError(
                f"--set {key}: unknown config key{hint} (see `kl-alloc config` for all keys)"
            )
        out[key] = _parse_as(text, hints[key], key)
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Overrides from a TOML or JSON file of ``key = value`` pairs (TrainerConfig fields)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            import tomllib

            data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CLIError(f"--config {path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise CLIError(f"--config {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise CLIError(f"--config {path}: expected a table of key = value pairs")
    hints = config_types()
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise CLIError(f"--config {path}: unknown config keys {unknown}")
    out = {}
    for key, value in data.items():
        # lists from TOML/JSON become tuples where the field is a tuple
        out[key] = tuple(value) if typing.get_origin(hints[key]) is tuple else value
    return out


def build_config(env: str, overrides: dict[str, Any]) -> Any:
    """The env's preset with ``overrides`` applied; invalid values raise :class:`CLIError`."""
    from kl_alloc.rl.config import PRESETS, TrainerConfig

    try:
        if env in PRESETS:
            return TrainerConfig.for_env(env, **overrides)
        return TrainerConfig(**overrides)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"config: {exc}") from None


def field_docs() -> dict[str, str]:
    """The attribute docstrings of ``TrainerConfig`` (the string under each field)."""
    from kl_alloc.rl.config import TrainerConfig

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(TrainerConfig))
    except (OSError, TypeError):
        return docs
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


# -- run directories -------------------------------------------------------------------------------


def _run_state(out: Path) -> str:
    """``"missing"`` / ``"empty"`` / ``"run"`` (holds run files) / ``"foreign"`` (other files)."""
    if not out.exists():
        return "missing"
    if not out.is_dir():
        return "foreign"
    entries = list(out.iterdir())
    if not entries:
        return "empty"
    if any((out / f).exists() for f in RUN_FILES):
        return "run"
    return "foreign"


def _describe_run(out: Path) -> str:
    done = out / "done.json"
    if done.exists():
        try:
            d = json.loads(done.read_text())
            return (
                f"a finished run ({d.get('iterations')} iterations, {d.get('env_steps')} env steps)"
            )
        except ValueError:
            pass
    from kl_alloc.rundir import read_progress

    recs = read_progress(out)
    if recs:
        last = recs[-1]
        return f"an unfinished run (iteration {last['iteration']}, {last['env_steps']} env steps)"
    return "an unfinished run"


def _delete_run_files(out: Path) -> None:
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / TB_DIR).is_dir():
        shutil.rmtree(out / TB_DIR)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list))


def _check_resume_matches(out: Path, args: argparse.Namespace, overrides: dict[str, Any]) -> dict:
    """The stored run's config.json, after checking every option the user gave against it."""
    from kl_alloc.rundir import read_config

    stored = read_config(out)
    problems = []
    asked = {"env": args.env, "algo": args.algo, "seed": args.seed}
    have = {"env": stored["env"]["name"], "algo": stored["algo"], "seed": stored["seed"]}
    for key, value in asked.items():
        if value is not None and value != have[key]:
            problems.append(f"--{key} {value} (the run has {have[key]})")
    stored_cfg = stored["config"]
    env_kwargs = stored_cfg.get("env_kwargs") or {}
    for opt, key in (("--scenario", "scenario"), ("--agent-conf", "agent_conf")):
        value = getattr(args, key)
        if value is not None and value != env_kwargs.get(key):
            problems.append(f"{opt} {value} (the run has {env_kwargs.get(key)})")
    for key, value in overrides.items():
        if _jsonable(value) != _jsonable(stored_cfg.get(key)):
            problems.append(f"{key}={value!r} (the run has {stored_cfg.get(key)!r})")
    if problems:
        raise CLIError(
            f"--resume: {out} holds a {have['algo']} run on {have['env']} (seed {have['seed']}) "
            f"whose settings differ from the command line: {'; '.join(problems)}. "
            "Resume with the run's own settings (omit them), or train into a new --out."
        )
    return stored


# -- commands --------------------------------------------------------------------------------------


def _summary_line(trainer: Any) -> str:
    spec = getattr(trainer.env, "spec", None) or {}
    parts = [
        f"{trainer.algo} on {spec.get('name', type(trainer.env).__name__)}",
        f"seed {trainer.seed}",
        f"{trainer.iteration} iterations",
        f"{trainer.env_steps} env steps",
        f"{trainer.wall_time:.1f} s",
    ]
    reward = trainer.expected_reward()
    if reward is not None:
        parts.append(f"expected reward {reward:.4f}")
    e = trainer.last_eval
    if e is not None:
        parts.append(f"eval return {e['return_mean']:.4g} +- {e['return_std']:.2g}")
    return ", ".join(parts)


def cmd_train(args: argparse.Namespace) -> int:
    from kl_alloc.rl import Trainer
    from kl_alloc.rl.callbacks import ProgressBar, chain

    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_config_file(args.config))
    overrides.update(parse_overrides(args.set or []))

    if args.out is None:
        if args.resume:
            raise CLIError("--resume needs --out DIR (the run to continue)")
        if args.env is None:
            raise CLIError("--env is required (matrix, differential or mamujoco)")
        name = args.env
        if args.env == "mamujoco":
            name += f"-{args.scenario or 'Ant'}-{args.agent_conf or '2x4'}"
        args.out = f"runs/{name}-{args.algo or 'hatrpo'}-{args.seed or 0}"
    if args.steps is not None and args.steps < 1:
        raise CLIError("--steps must be >= 1")
    out = Path(args.out)
    state = _run_state(out)
    if state == "foreign":
        raise CLIError(
            f"--out {out}: exists and is not an (empty) kl-alloc run directory; choose another"
        )

    resuming = False
    if state == "run":
        if args.resume and (out / "checkpoint.pt").exists():
            resuming = True
        elif args.resume:
            logger.warning("%s: no checkpoint to resume from (killed early): starting over", out)
            _delete_run_files(out)
        elif args.force:
            logger.warning("--force: deleting the run in %s", out)
            _delete_run_files(out)
        else:
            raise CLIError(
                f"--out {out}: already holds {_describe_run(out)}. Pass --resume to continue it "
                "(a larger --steps extends it), --force to delete it and start over, or choose "
                "another --out."
            )

    if resuming:
        stored = _check_resume_matches(out, args, overrides)
        env_name = stored["env"]["name"]
        steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(env_name, 1_000_000)
        trainer = Trainer.resume(out)
        if (out / "done.json").exists() and trainer.env_steps >= steps:
            print(f"{out}: already finished ({trainer.env_steps} env steps >= --steps {steps})")
            print(_summary_line(trainer))
            trainer.close()
            return 0
    else:
        if args.env is None:
            raise CLIError("--env is required for a new run (matrix, differential or mamujoco)")
        env_name = args.env
        if env_name != "mamujoco" and (args.scenario or args.agent_conf):
            raise CLIError("--scenario/--agent-conf only apply to --env mamujoco")
        if env_name == "mamujoco":
            env_kwargs = dict(overrides.get("env_kwargs", {}))
            env_kwargs.setdefault("scenario", args.scenario or "Ant")
            env_kwargs.setdefault("agent_conf", args.agent_conf or "2x4")
            overrides["env_kwargs"] = env_kwargs
        config = build_config(env_name, overrides)
        steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(env_name, 1_000_000)
        try:
            trainer = Trainer(
                env_name,
                algo=args.algo or "hatrpo",
                config=config,
                seed=args.seed or 0,
                out_dir=out,
            )
        except ImportError as exc:
            raise CLIError(str(exc)) from None
        except ValueError as exc:
            raise CLIError(f"train: {exc}") from None

    tb = None
    if args.tensorboard:
        from kl_alloc.rl.callbacks import TensorBoardCallback

        try:
            tb = TensorBoardCallback(
                out / TB_DIR, purge_step=trainer.env_steps + 1 if resuming else None
            )
        except ImportError as exc:
            raise CLIError(str(exc)) from None
    progress = ProgressBar(
        steps, trainer.env_steps, f"{trainer.algo} s{trainer.seed}", enabled=not args.no_progress
    )
    try:
        trainer.learn(steps, progress=False, callback=chain(progress, tb))
    finally:
        progress.close()
        if tb is not None:
            tb.close(trainer)
        trainer.close()
    print(_summary_line(trainer))
    print(f"run directory: {out}")
    return 0


def _load_for_eval(run: Path) -> Any:
    from kl_alloc.rl import Trainer

    path = run if run.is_file() else run / "checkpoint.pt"
    if not path.exists():
        raise CLIError(f"{run}: no checkpoint.pt (is it a run directory?)")
    try:
        return Trainer.load(path)
    except ImportError as exc:
        raise CLIError(str(exc)) from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    trainer = _load_for_eval(Path(args.run))
    result = trainer.evaluate(args.episodes, seed=args.seed)
    if args.json:
        print(json.dumps({"run": str(args.run), "algo": trainer.algo, **result}))
        return 0
    name = trainer.env.spec["name"] if getattr(trainer.env, "spec", None) else "env"
    print(
        f"{args.run}: {trainer.algo} on {name}, seed {trainer.seed}, "
        f"iteration {trainer.iteration} ({trainer.env_steps} env steps)"
    )
    print(
        f"return over {result['episodes']} episodes (deterministic policy): "
        f"mean {result['return_mean']:.4f}, std {result['return_std']:.4f}"
    )
    if result.get("expected_reward") is not None:
        print(f"expected reward of the (stochastic) joint policy: {result['expected_reward']:.4f}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from kl_alloc.analysis.figures import plot_runs

    prefix = args.out
    if prefix is None:
        first = Path(args.runs[0])
        prefix = str(first / "plot") if first.is_dir() else str(first.with_suffix("")) + "_plot"
    try:
        written = plot_runs(args.runs, prefix, heatmaps=args.heatmaps)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(f"plot: {exc}") from None
    for path in written:
        print(path)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from kl_alloc.rl.config import TrainerConfig

    cfg = build_config(args.env, {}) if args.env else TrainerConfig()
    hints = config_types()
    docs = field_docs()
    title = f"TrainerConfig.for_env({args.env!r})" if args.env else "TrainerConfig()"
    print(f"{title}: set any of these with --set key=value\n")
    for f in dataclasses.fields(cfg):
        tp = hints[f.name]
        tname = getattr(tp, "__name__", None) if not typing.get_args(tp) else str(tp)
        value = getattr(cfg, f.name)
        print(f"  {f.name} ({tname or tp}) = {value!r}")
        if f.name in docs:
            print(f"      {docs[f.name]}")
    return 0


def _fmt_steps(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def run_demo(out: Path, seeds: int = 3, steps: int = 200_000, progress: bool = True) -> dict:
    """Train HATRPO, HATRPO-W and HATRPO-G on the matrix game (``seeds`` each, in this process),
    print the comparison table and write the plots into ``out``; returns the table's numbers."""
    from kl_alloc.analysis import final_expected_reward, samples_to_reach, spread
    from kl_alloc.analysis.figures import plot_runs
    from kl_alloc.analysis.tables import format_table
    from kl_alloc.methods import method_label
    from kl_alloc.rl import Trainer
    from kl_alloc.rl.callbacks import ProgressBar
    from kl_alloc.rundir import load_run

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(algo, seed, out / f"{algo}-{seed}") for algo in ALGOS for seed in range(seeds)]
    for _, _, run_dir in jobs:
        state = _run_state(run_dir)
        if state == "foreign":
            raise CLIError(
                f"demo: {run_dir} exists and is not a run directory; choose another --out"
            )
        if state == "run":
            _delete_run_files(run_dir)  # the demo's own runs from a previous demo
    t_start = time.perf_counter()
    # one bar per run says it all: keep the trainer's per-run "starting" line out of the way
    trainer_log = logging.getLogger("kl_alloc.rl.trainer")
    level = trainer_log.level
    trainer_log.setLevel(max(level, logging.WARNING))
    for algo, seed, run_dir in jobs:
        trainer = Trainer("matrix", algo=algo, seed=seed, out_dir=run_dir)
        bar = ProgressBar(steps, 0, f"{method_label(algo)} seed {seed}", enabled=progress)
        try:
            trainer.learn(steps, progress=False, callback=bar)
        finally:
            bar.close()
            trainer.close()
        if not progress:
            logger.info("%s", _summary_line(trainer))
    trainer_log.setLevel(level)
    elapsed = time.perf_counter() - t_start

    rows, summary = [], {}
    base = None
    for algo in ALGOS:
        runs = [load_run(d) for a, _, d in jobs if a == algo]
        hits = [samples_to_reach(r, 0.99) for r in runs]
        stats = spread(hits)
        final = np.array([final_expected_reward(r) for r in runs])
        # the first iteration carries one-off warm-up costs: leave it out when there are others
        spi = float(np.mean([np.mean(r.seconds_per_iter[1 if r.iteration.size > 1 else 0 :])
                             for r in runs]))  # fmt: skip
        if algo == "hatrpo":
            base = stats["median"]
        speedup = base / stats["median"] if base and stats["median"] else None
        summary[algo] = {
            "samples_to_0.99": hits,
            "median": stats["median"],
            "final": final.tolist(),
        }
        rows.append(
            [
                method_label(algo),
                f"{_fmt_steps(stats['median'])} "
                f"[{_fmt_steps(stats['min'])} - {_fmt_steps(stats['max'])}]"
                + (
                    f" ({stats['n'] - stats['n_valid']} never)"
                    if stats["n_valid"] < stats["n"]
                    else ""
                ),
                "-" if speedup is None else f"{speedup:.2f}x",
                f"{final.mean():.4f} +- {final.std():.4f}",
                f"{spi * 1000:.1f}",
            ]
        )
    print()
    print(
        f"Sparse matrix game (K = 2, 3, 5, 8; 4000 plays per iteration): {seeds} seed(s) x "
        f"{steps:,} env steps per method, {elapsed:.0f} s"
    )
    print(
        format_table(
            [
                "method",
                "samples to 0.99 (median [min - max])",
                "speed-up vs HATRPO",
                "final expected reward",
                "ms/iter",
            ],
            rows,
        )
    )
    written = plot_runs([out], str(out) + os.sep)
    print("\nplots: " + ", ".join(str(p) for p in written))
    print(f"runs:  {out}/<algo>-<seed>  (kl-alloc plot / evaluate read them)")
    return summary


def cmd_demo(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.steps < 1:
        raise CLIError("--seeds and --steps must be >= 1")
    run_demo(Path(args.out), seeds=args.seeds, steps=args.steps, progress=not args.no_progress)
    return 0


# -- the parser ------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` for options that have a real default (not None / a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from kl_alloc import __version__

    parser = argparse.ArgumentParser(
        prog="kl-alloc",
        description=(
            "Adaptive KL trust-region allocation for multi-agent RL: train, evaluate and plot "
            "HATRPO (uniform split), HATRPO-W (water-filling) and HATRPO-G (greedy)."
        ),
        epilog="Run `kl-alloc COMMAND --help` for a command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"kl_alloc {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # train
    p = sub.add_parser(
        "train",
        help="train one run (progress bar, checkpoints, resumable)",
        description=(
            "Train HATRPO / HATRPO-W / HATRPO-G on one environment. The run directory holds "
            "config.json, progress.jsonl (one line per iteration), eval.jsonl, checkpoint.pt and, "
            "once finished, done.json (format: kl_alloc/rundir.py). An existing run is never "
            "overwritten unless you pass --force; --resume continues it from its checkpoint to "
            "the same numbers as an uninterrupted run."
        ),
        epilog=(
            "defaults per env: --steps "
            + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
            + "; the config is TrainerConfig.for_env(ENV) (see `kl-alloc config --env ENV`).\n"
            "examples:\n"
            "  kl-alloc train --env matrix --algo hatrpo-w --seed 0 --out runs/matrix-w-0\n"
            "  kl-alloc train --env differential --algo hatrpo-g --set delta=0.02 \\\n"
            "      --set rescore=false\n"
            "  kl-alloc train --env mamujoco --scenario Ant --agent-conf 2x4 --algo hatrpo-w \\\n"
            "      --steps 1000000 --seed 0 --out runs/ant-w-0 --tensorboard\n"
            "  kl-alloc train --out runs/ant-w-0 --resume"
        ),
        formatter_class=_Formatter,
    )
    p.add_argument(
        "--env",
        choices=ENVS,
        default=None,
        help="environment (required for a new run; a resumed run keeps its own)",
    )
    p.add_argument("--algo", choices=ALGOS, default=None, help="method (new run: default hatrpo)")
    p.add_argument("--seed", type=int, default=None, help="seed (new run: default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="total env steps of the run, counted from its start (default per env, below)",
    )
    p.add_argument("--out", default=None, help="run directory (default runs/ENV-ALGO-SEED)")
    p.add_argument("--scenario", default=None, help="MaMuJoCo robot (default Ant)")
    p.add_argument("--agent-conf", default=None, help="MaMuJoCo agent partition (default 2x4)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (or extend a finished one "
        "to a larger --steps); starts fresh if --out is empty",
    )
    mode.add_argument(
        "--force", action="store_true", help="delete the run files in --out and start over"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=None,
        help="override a TrainerConfig field (repeatable), e.g. --set delta=0.02 "
        "--set hidden=32,32 --set delta_max=none",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML or JSON file of TrainerConfig overrides (--set wins)",
    )
    p.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard scalars to OUT/tb"
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (log a line every tenth of the run)",
    )
    p.set_defaults(func=cmd_train)

    # evaluate
    p = sub.add_parser(
        "evaluate",
        help="mean and spread of the deterministic policy's return",
        description="Load RUN's checkpoint and run its deterministic policy (mode / mean action).",
        formatter_class=_Formatter,
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a checkpoint.pt file)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="evaluation env seed (default: derived from the run's seed and iteration)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_evaluate)

    # plot
    p = sub.add_parser(
        "plot",
        help="learning curves, KL-allocation heatmaps, differential-game trajectories",
        description=(
            "Draw figures from run directories (directories are searched recursively for runs). "
            "Writes PREFIX_curves.png (per method: mean and +-1 std over seeds against env steps; "
            "expected reward on the games, evaluation return on MuJoCo), PREFIX_allocation.png "
            "(delta_i allocated, agent x iteration) and, for the differential game, "
            "PREFIX_trajectories.png (reward map with each run's mean-action trajectory). With "
            "several environments the env name is added to each file name."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_OR_DIR", help="run directories or parents")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE_PREFIX",
        help="output prefix; a directory (trailing /) puts curves.png etc. inside it "
        "(default: FIRST_ARG/plot)",
    )
    p.add_argument(
        "--heatmaps",
        choices=("first", "all", "none"),
        default="first",
        help="allocation heatmaps for the first seed per method, every run, or none",
    )
    p.set_defaults(func=cmd_plot)

    # demo
    p = sub.add_parser(
        "demo",
        help="HATRPO vs HATRPO-W vs HATRPO-G on the sparse matrix game (about a minute)",
        description=(
            "Train the three methods on the sparse heterogeneous matrix game (K = 2, 3, 5, 8; "
            "4000 plays per iteration), print samples to 0.99 expected reward and the final "
            "expected reward per method, and write learning curves and allocation heatmaps. "
            "Runs in this process, one after another; reruns replace the previous demo's runs."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("--out", default="runs/demo", help="directory for the runs and the plots")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method")
    p.add_argument("--steps", type=int, default=200_000, help="env steps per run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    # config
    p = sub.add_parser(
        "config",
        help="list the TrainerConfig keys (for --set) with their types and values",
        formatter_class=_Formatter,
    )
    p.add_argument("--env", choices=ENVS, default=None, help="show this env's preset values")
    p.set_defaults(func=cmd_config)

    _add_experiment_commands(sub)
    return parser


def _add_experiment_commands(sub: Any) -> None:
    """``sweep`` and ``report`` (kl_alloc.experiments), when that package is present."""
    try:
        from kl_alloc.experiments.commands import add_report_parser, add_sweep_parser
    except ModuleNotFoundError as exc:
        if exc.name not in ("kl_alloc.experiments", "kl_alloc.experiments.commands"):
            raise
        return
    add_sweep_parser(sub, formatter_class=_Formatter)
    add_report_parser(sub, formatter_class=_Formatter)


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # the trainer logs a debug line per iteration; numba is chatty at debug
        logging.getLogger("numba").setLevel(logging.WARNING)
    logging.getLogger("kl_alloc").setLevel(level if verbose else max(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        parser.exit(2, f"kl-alloc: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted (resume with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
