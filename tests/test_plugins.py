"""User code plugs in without touching the package: a new allocation rule and a new env,
defined in a 'user project' folder (tests/user_project), driven through every command by
``module:attr`` names, in fresh processes started in that folder (as a user would)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

USER = Path(__file__).parent / "user_project"
ENV = "my_envs:make_env"
ALGO = "my_rules:LopsidedSplit"


def kl(*args, cwd=USER, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "kl_alloc", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugins") / "run"
    kl("train", "--env", ENV, "--algo", ALGO, "--seed", "0", "--steps", 6144, "--out", out,
       "--set", "checkpoint_every=4", "--no-progress")  # fmt: skip
    return out


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]


def test_train_uses_the_users_rule_and_env_and_learns(user_run):
    spec = json.loads((user_run / "spec.json").read_text())
    assert spec["env"] == ENV and spec["algo"] == ALGO
    recs = records(user_run)
    assert len(recs) == 24
    for r in recs:  # the rule's split: 70% of the budget to agent 0, in index order
        alloc = [a["delta_alloc"] for a in r["agents"]]
        assert alloc[0] == pytest.approx(0.7 * r["delta_total"])
        assert alloc[1] == pytest.approx(0.3 * r["delta_total"])
    first = sum(r["mean_reward"] for r in recs[:4]) / 4
    last = sum(r["mean_reward"] for r in recs[-4:]) / 4
    assert last > first + 0.1, (first, last)  # the policies learn to hit their targets


def test_evaluate_rebuilds_the_users_env_and_rule(user_run):
    proc = kl("evaluate", user_run, "--episodes", 3, "--json")
    result = json.loads(proc.stdout)
    assert result["algo"] == ALGO and result["episodes"] == 3


def test_resume_continues_with_the_users_code(user_run, tmp_path):
    killed = tmp_path / "killed"
    kl("train", "--env", ENV, "--algo", ALGO, "--seed", "0", "--steps", 4096, "--out", killed,
       "--set", "checkpoint_every=4", "--no-progress")  # fmt: skip
    kl("train", "--out", killed, "--resume", "--steps", 6144, "--no-progress")

    # learned numbers equal; the first leg's final evaluation (its last record carries it) is
    # an event of that leg only, so records are compared without timing and evaluation fields
    def learned(run):
        drop = ("seconds", "time", "eval")
        return [{k: v for k, v in r.items() if not any(d in k for d in drop)} for r in records(run)]

    strip, want = learned(killed), learned(user_run)
    assert strip == want


def test_plot_reads_runs_of_user_methods(user_run, tmp_path):
    proc = kl("plot", user_run, "--out", str(tmp_path) + os.sep)
    assert (tmp_path / "curves.png").exists(), proc.stdout


def test_a_broken_plugin_is_one_line(tmp_path):
    proc = kl("train", "--env", "my_envs:nothing", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2
    assert "has no attribute 'nothing'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "algo, message",
    [
        (
            "my_rules:TwiceListed",
            "TwiceListed.allocate: order [0, 1, 2, 3, 0] lists an agent twice",
        ),
        ("my_rules:not_a_rule", "its factory returned int, not an allocator"),
    ],
)
def test_a_rule_that_returns_nonsense_is_one_line(tmp_path, algo, message):
    proc = kl("train", "--env", "matrix", "--algo", algo, "--steps", 8000, "--out",
              tmp_path / "x", "--no-progress", check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


SWEEP = f"""
[sweep]
name = "plugins"
seeds = 1
steps = 1024

[tasks.target]
env = "{ENV}"
config = {{ checkpoint_every = 2 }}

[methods]
hatrpo = {{}}
lopsided = {{ algo = "{ALGO}" }}
"""


def test_sweep_and_report_on_the_users_rule_and_env(tmp_path):
    """``kl-alloc sweep`` (local worker processes) runs a builtin and the user's rule on the
    user's env; ``kl-alloc report`` labels both without importing the user's module."""
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    out, report = tmp_path / "runs", tmp_path / "report"
    proc = kl("sweep", path, "--out", out, "--executor", "local", "--workers", 2,
              "--no-progress", "--no-report")  # fmt: skip
    assert "done 2, skipped 0 (already finished), failed 0" in proc.stdout, proc.stdout
    spec = json.loads((out / "target" / "lopsided" / "seed-0" / "spec.json").read_text())
    assert spec["algo"] == ALGO and spec["env"] == ENV
    kl("report", out, "--out", report, cwd=tmp_path)  # where my_rules is not importable
    result = json.loads((report / "report.json").read_text())
    (task,) = result["tasks"]
    rows = {r["method"]: r for r in task["rows"]}
    assert set(rows) == {"hatrpo", "lopsided"}, rows
    for row in rows.values():
        assert row["n"] == 1 and row["unfinished"] == 0 and row["iterations"] == 4
        assert math.isfinite(row["final_mean"]), row  # a number, not NaN
    lines = (report / "report.md").read_text().splitlines()
    for label in ("HATRPO", "lopsided"):
        # the comparison table and the robust (IQM) table each have a row per method
        found = [ln for ln in lines if ln.startswith(f"| {label} ")]
        assert found and any(f"{rows[label.lower()]['final_mean']:.3f}"[:4] in ln for ln in found)


def test_a_sibling_update_plugs_in_with_its_allocator(tmp_path):
    """A sibling algorithm (its own per-agent step) is one user file: the allocator names its
    update class, and --algo brings both."""
    out = tmp_path / "sibling"
    kl("train", "--env", "matrix", "--algo", "my_rules:HalfRadiusUniform", "--steps", 8000,
       "--out", out, "--no-progress")  # fmt: skip
    agents = [a for r in records(out) for a in r["agents"] if a["accepted"]]
    assert agents and all(a["kl"] <= 0.5 * a["radius"] * (1 + 1e-6) for a in agents)
    base = tmp_path / "base"
    kl("train", "--env", "matrix", "--algo", "hatrpo", "--steps", 8000, "--out", base,
       "--no-progress")  # fmt: skip
    assert any(a["kl"] > 0.5 * a["radius"] for r in records(base) for a in r["agents"])
