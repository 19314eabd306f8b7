"""The paper-experiment scripts run end to end in a tiny mode (so they cannot rot)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

_runner = importlib.import_module("_runner")


def load_script(name: str):
    return importlib.import_module(name)


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def matrix_tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix_bench")
    argv = ["--seeds", "1", "--steps", "8000", "--runs-dir", str(root / "runs"),
            "--results-dir", str(root / "results"), "--timing-iterations", "2"]  # fmt: skip
    assert load_script("matrix_game").main(argv) == 0
    return root


def test_matrix_game_tiny(matrix_tiny, capsys):
    result = json.loads((matrix_tiny / "results" / "matrix_game.json").read_text())
    assert set(result["methods"]) == {"hatrpo", "hatrpo-w", "hatrpo-g"}
    assert result["settings"]["steps"] == 8000
    assert "matrix_game.py" in result["provenance"]["command"]
    assert "--seeds 1" in result["provenance"]["command"]
    for m in result["methods"].values():
        (seed,) = m["per_seed"]
        assert seed["iterations"] == 2
        assert 0 < seed["final_expected_reward"] < 1
        assert m["samples_to_threshold"]["n"] == 1
    assert set(result["timing"]) == {"hatrpo", "hatrpo-w", "hatrpo-g"}
    assert result["timing"]["hatrpo"]["iterations"] == 2
    assert is_png(matrix_tiny / "results" / "matrix_game.png")
    for algo in ("hatrpo", "hatrpo-w", "hatrpo-g"):
        assert (matrix_tiny / "runs" / f"{algo}-0" / "done.json").exists()


def test_finished_runs_are_skipped_and_stale_ones_refused(matrix_tiny):
    runs = matrix_tiny / "runs"
    jobs = [_runner.Job("matrix", a, 0, 8000, runs / f"{a}-0") for a in ("hatrpo", "hatrpo-w")]
    assert all(j.status() == "done" for j in jobs)
    assert _runner.run_jobs(jobs, runs / "logs") == {}  # nothing ran again
    longer = _runner.Job("matrix", "hatrpo", 0, 12000, runs / "hatrpo-0")
    assert longer.status() == "todo"  # would be extended with --resume
    stale = _runner.Job("matrix", "hatrpo", 0, 8000, runs / "hatrpo-0", overrides={"delta": 0.02})
    with pytest.raises(RuntimeError, match="other settings"):
        stale.status()


def test_differential_game_tiny(tmp_path):
    argv = ["--seeds", "1", "--steps", "800", "--algos", "hatrpo-w", "--runs-dir",
            str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
            "--timing-iterations", "0"]  # fmt: skip
    assert load_script("differential_game").main(argv) == 0
    result = json.loads((tmp_path / "results" / "differential_game.json").read_text())
    assert set(result["methods"]) == {"hatrpo-w"}
    for m in result["methods"].values():
        (seed,) = m["per_seed"]
        assert len(seed["final_mean_action"]) == 2
        assert m["global_basin"]["n"] == 1
    assert result["timing"] is None
    assert is_png(tmp_path / "results" / "differential_game.png")


def test_ablation_tiny(tmp_path, capsys, matrix_tiny):
    argv = ["--games", "matrix", "--seeds", "1", "--matrix-steps", "4000", "--factors",
            "rescore", "--algos", "hatrpo-g", "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results")]  # fmt: skip
    assert load_script("ablation").main(argv) == 0
    result = json.loads((tmp_path / "results" / "ablation.json").read_text())
    cells = sorted((r["factor"] or "-", str(r["value"]), r["algo"]) for r in result["rows"])
    assert cells == [("-", "None", "hatrpo-g"), ("rescore", "False", "hatrpo-g")]
    rescored = json.loads(
        (tmp_path / "runs" / "matrix" / "rescore=false" / "hatrpo-g-0" / "config.json").read_text()
    )
    assert rescored["config"]["rescore"] is False
    assert "| rescore" in capsys.readouterr().out
    # the same run in another driver and worker gives the same numbers
    from kl_alloc.rundir import read_progress

    batched = read_progress(tmp_path / "runs" / "matrix" / "default" / "hatrpo-g-0")
    alone = read_progress(matrix_tiny / "runs" / "hatrpo-g-0")
    assert batched[0]["agents"] == alone[0]["agents"]
    assert batched[0]["expected_reward"] == alone[0]["expected_reward"]
    assert len(list((tmp_path / "runs" / "logs").glob("*.log"))) == 2  # a worker per run
    assert is_png(tmp_path / "results" / "ablation.png")


@pytest.mark.parametrize(
    "value", [None, True, False, 0.0025, 1e-6, 7, (64, 64), "grad_norm", {"a": [1, 2]}]
)
def test_runner_values_round_trip_through_the_cli_parser(value):
    from kl_alloc.config import config_types, parse_value

    key = {
        type(None): "delta_max", bool: "rescore", float: "wf_floor", int: "cg_iters",
        tuple: "hidden", str: "utility", dict: "env_kwargs",
    }[type(value)]  # fmt: skip
    assert parse_value(key, _runner.format_value(value), config_types()[key]) == value


@pytest.mark.slow
@pytest.mark.mujoco
def test_mamujoco_driver_runs_resumes_old_runs_and_refuses_other_settings(tmp_path):
    """benchmarks/mamujoco.py on the one orchestrator: a 2-iteration Ant run, its report; a run
    directory of the earlier driver (no spec.json) is skipped when finished and extended from
    its checkpoint; a run with other settings stops the script before anything runs."""
    mamujoco = load_script("mamujoco")
    runs, results = tmp_path / "runs", tmp_path / "results"
    tiny = [
        "--set",
        "num_envs=2",
        "--set",
        "rollout_length=20",
        "--set",
        "eval_episodes=1",
        "--set",
        "checkpoint_every=1",
    ]  # fmt: skip  (HATRPO: no solver to compile)
    argv = ["--tasks", "ant-2x4", "--algos", "hatrpo", "--seeds", "0", "--jobs", "1",
            "--out", str(runs), "--results", str(results), *tiny]  # fmt: skip
    assert mamujoco.main([*argv, "--steps", "80"]) == 0
    run = runs / "ant-2x4-hatrpo-0"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["env"] == "mamujoco" and spec["overrides"]["env_kwargs"]["scenario"] == "Ant"
    assert (runs / "logs" / "ant-2x4-hatrpo-0.log").exists()
    result = json.loads((results / "mamujoco.json").read_text())
    (row,) = result["tasks"]["ant-2x4"]["methods"]["hatrpo"]["runs"]
    assert row["status"] == "done" and row["iterations"] == 2 and row["env_steps"] == 80
    assert row["evaluations"] == 1 and isinstance(row["final_return"], float)
    assert result["meta"]["complete"] and "mamujoco.py" in result["meta"]["command"]
    assert "| HATRPO | 1/1 |" in (results / "mamujoco.md").read_text()

    (run / "spec.json").unlink()  # as the earlier driver left its runs: config.json only
    first = (run / "progress.jsonl").read_text()
    assert mamujoco.main([*argv, "--steps", "80"]) == 0  # finished: skipped
    assert (run / "progress.jsonl").read_text() == first and not (run / "spec.json").exists()
    assert mamujoco.main([*argv, "--steps", "120"]) == 0  # extended from its checkpoint
    progress = (run / "progress.jsonl").read_text()
    assert progress.startswith(first) and len(progress.splitlines()) == 3
    assert json.loads((run / "done.json").read_text())["env_steps"] == 120

    assert mamujoco.main([*argv, "--steps", "120", "--set", "delta=0.02"]) == 2
    assert (run / "progress.jsonl").read_text() == progress


def test_mpe_step_tiny(tmp_path, capsys):
    pytest.importorskip("mpe2")
    out = tmp_path / "mpe_step.json"
    argv = ["--tasks", "simple_speaker_listener_v4", "--steps", "30", "--chunk", "10",
            "--iterations", "1", "--rounds", "1", "--json", str(out)]  # fmt: skip
    assert load_script("mpe_step").main(argv) == 0  # 0: both settings gave the same numbers
    row = json.loads(out.read_text())["summary"]["simple_speaker_listener_v4"]
    assert row["step_same"] and row["iter_same"]
    assert row["step_cpu_ms"]["fast"] > 0 and row["iter_cpu_s"]["mpe2"] > 0
    assert "simple_speaker_listener_v4" in capsys.readouterr().out
