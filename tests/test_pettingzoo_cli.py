"""A user's own PettingZoo env (tests/user_project/my_pz.py: a Box agent and a masked Discrete
agent that leaves early, no kl_alloc code) through every command by ``module:attr``, in fresh
processes started in the user's folder: train (it learns), evaluate, resume, a local sweep."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pettingzoo")

USER = Path(__file__).parent / "user_project"
ENV = "my_pz:make_env"


def kl(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "kl_alloc", *map(str, args)],
        cwd=USER, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pz_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pz") / "run"
    kl("train", "--env", ENV, "--algo", "hatrpo-w", "--seed", "0", "--out", out, "--no-progress")
    return out


def test_train_learns_on_the_users_pettingzoo_env(pz_run):
    spec = json.loads((pz_run / "spec.json").read_text())
    assert spec["env"] == ENV
    config = json.loads((pz_run / "config.json").read_text())
    assert config["env"]["obs_sizes"] == [2, 4] and config["env"]["state_size"] == 6
    recs = records(pz_run)
    assert len(recs) == 12  # default_steps 4608 / (16 copies x 24 steps)
    first = sum(r["episode_return"] for r in recs[:3]) / 3
    last = sum(r["episode_return"] for r in recs[-3:]) / 3
    assert last > first + 3.0, (first, last)  # measured: about -5.7 -> 0.4


def test_evaluate_rebuilds_the_users_pettingzoo_env(pz_run):
    proc = kl("evaluate", pz_run, "--episodes", 3, "--json")
    result = json.loads(proc.stdout)
    assert result["episodes"] == 3 and result["return_mean"] > -6.0
    assert "cannot save its state" not in proc.stderr  # only a continued training says it


def test_resume_continues_with_a_warning(pz_run, tmp_path):
    killed = tmp_path / "killed"
    kl("train", "--env", ENV, "--algo", "hatrpo-w", "--seed", "0", "--steps", 1920,
       "--out", killed, "--no-progress")  # fmt: skip
    proc = kl("train", "--out", killed, "--resume", "--steps", 4608, "--no-progress")
    assert "continuation differs from an uninterrupted run" in proc.stderr
    got, want = records(killed), records(pz_run)
    assert len(got) == len(want) == 12
    # up to the checkpoint: the same numbers; after it, fresh episodes from a derived seed
    assert [r["mean_reward"] for r in got[:5]] == [r["mean_reward"] for r in want[:5]]
    assert (Path(killed) / "done.json").exists()


def test_local_sweep_runs_the_users_pettingzoo_env(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(textwrap.dedent(f"""
        [sweep]
        name = "pz"
        seeds = 1
        steps = 768
        [tasks.mine]
        env = "{ENV}"
        [methods]
        hatrpo = {{}}
        "hatrpo-g" = {{}}
        """))  # fmt: skip
    out = tmp_path / "runs"
    kl("sweep", sweep, "--out", out, "--executor", "local", "--workers", 2, "--no-progress")
    status = json.loads((out / "sweep.json").read_text())
    assert status["counts"]["done"] == 2 and status["counts"]["failed"] == 0


@pytest.mark.slow
def test_ray_sweep_runs_the_users_pettingzoo_env(tmp_path):
    pytest.importorskip("ray")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(textwrap.dedent(f"""
        [sweep]
        name = "pz-ray"
        seeds = 1
        steps = 384
        [tasks.mine]
        env = "{ENV}"
        [methods]
        "hatrpo-w" = {{}}
        """))  # fmt: skip
    out = tmp_path / "runs"
    kl("sweep", sweep, "--out", out, "--executor", "ray", "--workers", 1, "--no-progress")
    status = json.loads((out / "sweep.json").read_text())
    assert status["counts"]["done"] == 1 and status["counts"]["failed"] == 0
