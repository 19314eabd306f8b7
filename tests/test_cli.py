"""The ``kl-alloc`` command line, end to end on the matrix game (a few iterations each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.cli import main
from kl_alloc.config import ConfigError
from kl_alloc.config import parse_set as parse_overrides
from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rundir import read_config, read_progress

STEPS = 8000  # two iterations of the matrix preset (4000 plays each)


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def train(out: Path, *extra: str, steps: int = STEPS) -> int:
    return run_cli("train", "--env", "matrix", "--algo", "hatrpo-w", "--seed", "0",
                   "--steps", str(steps), "--out", str(out), "--no-progress", *extra)  # fmt: skip


def expect_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        run_cli(*args)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert train(out) == 0
    return out


# -- --set parsing -------------------------------------------------------------------------------


def test_set_values_are_typed_from_the_dataclass():
    got = parse_overrides([
        "delta=0.02", "cg_iters=5", "rescore=false", "carry=YES", "delta_max=none",
        "delta_total=0.5", "hidden=32,16", "critic_hidden=(8,)", "utility=grad_norm",
        "num_envs=1e3", 'env_kwargs={"action_counts": [2, 3]}', "greedy-eps=1e-5",
    ])  # fmt: skip
    assert got == {
        "delta": 0.02, "cg_iters": 5, "rescore": False, "carry": True,
        "delta_max": None, "delta_total": 0.5, "hidden": (32, 16), "critic_hidden": (8,),
        "utility": "grad_norm", "num_envs": 1000, "env_kwargs": {"action_counts": [2, 3]},
        "greedy_eps": 1e-5,
    }  # fmt: skip
    assert type(got["cg_iters"]) is int and type(got["delta"]) is float
    # the parsed values build a valid config
    TrainerConfig(**{k: v for k, v in got.items() if k != "env_kwargs"})


@pytest.mark.parametrize(
    "pair, message",
    [
        ("delt=0.1", "unknown config key; did you mean delta"),
        ("nonsense=1", "unknown config key"),
        ("delta", "expected key=value"),
        ("delta=abc", "expected a number"),
        ("delta=nan", "finite"),
        ("cg_iters=1.5", "expected an integer"),
        ("rescore=maybe", "expected a boolean"),
        ("delta=none", "expected a number"),  # not optional
        ("hidden=a,b", "expected an integer"),
        ("env_kwargs=[1]", "JSON object"),
        ("env_kwargs=__import__('os')", "JSON object"),  # never eval()
    ],
)
def test_set_rejects_bad_keys_and_values(pair, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_overrides([pair])


def test_bad_set_on_the_command_line_exits_2_with_a_message(capsys, tmp_path):
    err = expect_error(
        capsys, "train", "--env", "matrix", "--set", "delt=1", "--out", tmp_path / "x"
    )
    assert "kl-alloc: error: --set delt: unknown config key" in err
    err = expect_error(
        capsys, "train", "--env", "matrix", "--set", "delta=-1", "--out", tmp_path / "x"
    )
    assert "delta must be > 0" in err
    assert not (tmp_path / "x").exists()  # nothing written on a bad command


def test_bad_arguments_give_clear_errors(capsys, tmp_path):
    assert "unknown method 'foo'" in expect_error(
        capsys, "train", "--env", "matrix", "--algo", "foo"
    )
    assert "--env is required" in expect_error(capsys, "train", "--out", tmp_path / "new")
    assert "--steps must be >= 1" in expect_error(
        capsys, "train", "--env", "matrix", "--steps", "0", "--out", tmp_path / "y"
    )
    assert "--scenario: not an option of --env matrix" in expect_error(
        capsys, "train", "--env", "matrix", "--scenario", "Ant", "--out", tmp_path / "z"
    )
    assert "not allowed with argument" in expect_error(
        capsys, "train", "--env", "matrix", "--resume", "--force", "--out", tmp_path / "w"
    )
    expect_error(capsys)  # no command at all


# -- train / resume ------------------------------------------------------------------------------


def test_train_writes_a_valid_run_dir(finished_run, capsys):
    records = read_progress(finished_run)
    assert [r["iteration"] for r in records] == [1, 2]
    assert records[-1]["env_steps"] == STEPS
    assert all(len(r["agents"]) == 4 for r in records)
    assert all(0 <= r["expected_reward"] <= 1 for r in records)
    config = read_config(finished_run)
    assert config["algo"] == "hatrpo-w" and config["seed"] == 0
    assert config["env"]["name"] == "matrix"
    assert config["config"]["num_envs"] == 4000  # the matrix preset
    done = json.loads((finished_run / "done.json").read_text())
    assert done["env_steps"] == STEPS
    assert (finished_run / "checkpoint.pt").exists()


def test_refuses_to_overwrite_a_run(finished_run, capsys):
    before = (finished_run / "progress.jsonl").read_text()
    err = expect_error(capsys, "train", "--env", "matrix", "--out", finished_run, "--no-progress")
    assert "already holds a finished run" in err and "--resume" in err and "--force" in err
    assert (finished_run / "progress.jsonl").read_text() == before


def test_refuses_a_directory_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for flag in ([], ["--force"], ["--resume"]):
        err = expect_error(capsys, "train", "--env", "matrix", "--out", tmp_path, *flag)
        assert "holds files that are not a kl-alloc run" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_of_a_finished_run_is_a_no_op(finished_run, capsys):
    assert run_cli("train", "--out", finished_run, "--resume", "--steps", STEPS) == 0
    assert f"already finished ({STEPS} env steps); a larger --steps" in capsys.readouterr().out
    assert len(read_progress(finished_run)) == 2
    # a smaller --steps: the run's own steps are reported, and that it is not cut short
    assert run_cli("train", "--out", finished_run, "--resume", "--steps", STEPS // 2) == 0
    out = capsys.readouterr().out
    assert f"already finished ({STEPS} env steps); --steps {STEPS // 2} does not shorten" in out
    assert len(read_progress(finished_run)) == 2


def test_resume_refuses_different_settings(finished_run, capsys):
    err = expect_error(capsys, "train", "--out", finished_run, "--resume", "--algo", "hatrpo-g",
                       "--set", "delta=0.02")  # fmt: skip
    assert "algo 'hatrpo-g' (the run has 'hatrpo-w')" in err
    assert "delta=0.02 (the run has 0.01)" in err


def test_resume_continues_a_killed_run_to_the_uninterrupted_numbers(tmp_path):
    cfg = TrainerConfig.for_env("matrix", checkpoint_every=1)

    class Killed(Exception):
        pass

    def kill_after_3(trainer, record):
        if record["iteration"] == 3:
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        Trainer("matrix", algo="hatrpo-g", config=cfg, seed=3, out_dir=killed).learn(
            5 * 4000, progress=False, callback=kill_after_3
        )
    assert not (killed / "done.json").exists()
    assert len(read_progress(killed)) == 3

    assert run_cli("train", "--out", killed, "--resume", "--steps", 5 * 4000, "--no-progress") == 0
    resumed = read_progress(killed)
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4, 5]
    assert (killed / "done.json").exists()

    straight = tmp_path / "straight"
    args = ["--algo", "hatrpo-g", "--seed", 3, "--steps", 5 * 4000, "--set", "checkpoint_every=1"]
    assert run_cli("train", "--env", "matrix", *args, "--out", straight, "--no-progress") == 0
    expected = [r["expected_reward"] for r in read_progress(straight)]
    assert [r["expected_reward"] for r in resumed] == expected


def test_resume_extends_a_finished_run_and_force_starts_over(tmp_path):
    out = tmp_path / "run"
    assert train(out) == 0
    assert train(out, "--resume", steps=3 * 4000) == 0
    assert [r["iteration"] for r in read_progress(out)] == [1, 2, 3]
    assert train(out, "--force", steps=4000) == 0
    assert [r["iteration"] for r in read_progress(out)] == [1]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    out = tmp_path / "early"
    out.mkdir()
    (out / "progress.jsonl").write_text('{"iteration": 1}\n{"iter')  # killed before a checkpoint
    assert train(out, "--resume", steps=4000) == 0
    assert [r["iteration"] for r in read_progress(out)] == [1]


def test_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb-run"
    assert train(out, "--tensorboard") == 0
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"reward/expected", "budget/used", "time/solver", "agent_3/delta_alloc"} <= set(tags)
    events = acc.Scalars("reward/expected")
    assert [e.step for e in events] == [4000, 8000]
    expected = [r["expected_reward"] for r in read_progress(out)]
    np.testing.assert_allclose([e.value for e in events], expected, rtol=1e-6)
    assert [e.step for e in acc.Scalars("eval/return_mean")] == [8000]


# -- evaluate / plot / demo / config -------------------------------------------------------------


def test_evaluate_prints_mean_and_spread(finished_run, capsys):
    assert run_cli("evaluate", finished_run, "--episodes", "5") == 0
    out = capsys.readouterr().out
    assert "return over 5 episodes (deterministic policy): mean" in out
    assert "std" in out and "expected reward" in out

    assert run_cli("evaluate", finished_run, "--episodes", "3", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and result["algo"] == "hatrpo-w"
    assert result["return_mean"] in (0.0, 1.0)  # the matrix game pays 0 or 1, deterministically
    assert result["return_std"] == 0.0
    assert result["expected_reward"] == pytest.approx(
        read_progress(finished_run)[-1]["expected_reward"]
    )


def test_evaluate_errors(capsys, tmp_path):
    assert "no checkpoint.pt" in expect_error(capsys, "evaluate", tmp_path)
    assert "--episodes must be >= 1" in expect_error(
        capsys, "evaluate", tmp_path, "--episodes", "0"
    )


def test_plot_writes_pngs(finished_run, tmp_path, capsys):
    assert run_cli("plot", finished_run, "--out", tmp_path / "fig") == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "fig_curves.png"), str(tmp_path / "fig_allocation.png")]
    for path in printed:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no run directories" in expect_error(capsys, "plot", tmp_path)


def test_demo_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--seeds", "1", "--steps", "4000", "--out", out, "--no-progress") == 0
    text = capsys.readouterr().out
    for label in ("HATRPO ", "HATRPO-W", "HATRPO-G", "samples to 0.99", "final expected reward"):
        assert label in text
    assert (out / "curves.png").exists() and (out / "allocation.png").exists()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "hatrpo-0", "hatrpo-g-0", "hatrpo-w-0"
    ]  # fmt: skip
    # a rerun replaces the previous demo instead of refusing
    assert run_cli("demo", "--seeds", "1", "--steps", "4000", "--out", out, "--no-progress") == 0


def test_config_lists_every_key(capsys):
    assert run_cli("config", "--env", "matrix") == 0
    out = capsys.readouterr().out
    for key in ("delta_total", "wf_floor", "greedy_eps", "rescore", "num_envs (int) = 4000"):
        assert key in out
    # and what env_kwargs can hold: the env factory's keywords, not the env workers' copy_offset
    assert "env_kwargs of 'matrix': action_counts, paying_action, payoff (set with" in out


def test_python_dash_m_works():
    res = subprocess.run(
        [sys.executable, "-m", "kl_alloc", "train", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0
    assert "--resume" in res.stdout and "--set KEY=VALUE" in res.stdout
