"""The sweep file, the noisy-utility allocator and the Ray runner (one local Ray per module)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.experiments.commands import main as commands_main
from kl_alloc.experiments.noise import NoisyUtilityAllocator
from kl_alloc.experiments.runner import run_trial, trial_state
from kl_alloc.experiments.spec import SpecError, load_spec, parse_spec
from kl_alloc.rl.allocators import AllocationSignals, GreedyAllocator, WaterFillAllocator

TINY = """
[sweep]
name = "tiny"
seeds = 2
steps = 4000

[tasks.matrix]
env = "matrix"
config = { num_envs = 500, checkpoint_every = 2 }

[methods]
hatrpo = {}
"hatrpo-w" = { grid = { utility_noise = [0.3] } }
"""


def _spec(text: str, tmp_path: Path, **kw):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path, out=tmp_path / "runs", **kw)


# -- spec parsing ----------------------------------------------------------------------------------


def test_spec_expands_the_grid(tmp_path):
    spec = _spec(
        """
        [sweep]
        seeds = [0, 5]
        steps = 1000
        [tasks.m]
        env = "matrix"
        env_kwargs = { action_counts = [2, 2] }
        [tasks.d]
        env = "differential"
        steps = 2000
        seeds = [9]
        [config]
        delta = 0.02
        [methods.hatrpo]
        [methods.g]
        algo = "hatrpo-g"
        config = { rescore = false }
        grid = { greedy_eps = [1e-8, 0.1], hidden = [[8], [4, 4]] }
        """,
        tmp_path,
    )
    assert spec.name == "sweep"
    assert len(spec.trials) == (1 + 4) * 2 + (1 + 4) * 1
    g = [t for t in spec.trials if t.method == "g" and t.task == "m"]
    assert {t.algo for t in g} == {"hatrpo-g"}
    t = g[0]
    assert t.overrides["rescore"] is False and t.overrides["delta"] == 0.02
    assert t.overrides["env_kwargs"] == {"action_counts": [2, 2]}
    assert t.config().hidden in ((8,), (4, 4))
    assert t.run_dir.relative_to(spec.out).parts[:2] == ("m", "g")
    assert "greedy_eps=1e-08_hidden=8" in str(t.run_dir)
    assert {(t.steps, t.seed) for t in spec.trials if t.task == "d"} == {(2000, 9)}
    assert len({t.run_dir for t in spec.trials}) == len(spec.trials)


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "[sweep]\nsteps = 1\nfoo = 1\n[tasks.m]\nenv='matrix'",
            r"unknown key\(s\) 'foo' in \[sweep\]",
        ),
        ("bogus = 1\n[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'", r"'bogus' in the top level"),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[config]\ndeltaa = 0.1",
            r"unknown key\(s\) 'deltaa' \(did you mean delta",
        ),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\nenvkw = 1", r"'envkw' in \[tasks.m\]"),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='chess'", r"tasks.m\]\.env: expected one of"),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[grid]\ndelta = 0.1", r"non-empty list"),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[grid]\ndelta = ['a']", r"not a valid"),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[config]\ndelta = -1.0", r"delta must be"),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[methods.x]", r"methods.x\]\.algo"),
        ("[sweep]\n[tasks.m]\nenv='matrix'", r"no steps"),
        ("[sweep]\nsteps = 1", r"no tasks"),
        ("[sweep]\nsteps = 1\nseeds = 0\n[tasks.m]\nenv='matrix'", r"seeds must be >= 1"),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[methods.hatrpo]\n"
            "grid = { utility_noise = [0.1] }",
            r"utility_noise needs an allocator",
        ),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[grid]\nutility_noise = [1.5]",
            r"number in \[0, 1\)",
        ),
        ("[sweep\nsteps = 1", r"not valid TOML"),
    ],
)
def test_spec_errors_name_the_problem(tmp_path, text, match):
    with pytest.raises(SpecError, match=match):
        _spec(text, tmp_path)


def test_spec_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such sweep file"):
        load_spec(tmp_path / "nope.toml")


def test_parse_spec_from_a_dict(tmp_path):
    spec = parse_spec(
        {"sweep": {"steps": 10, "seeds": 1}, "tasks": {"m": {"env": "matrix"}}},
        out=tmp_path,
    )
    assert sorted(t.method for t in spec.trials) == ["hatrpo", "hatrpo-g", "hatrpo-w"]


# -- the noisy allocator ---------------------------------------------------------------------------


def _signals(seed: int = 0) -> AllocationSignals:
    return AllocationSignals(
        candidates=np.arange(4),
        n_agents=4,
        budget=0.04,
        rng=np.random.default_rng(seed),
        utility=np.array([1.0, 2.0, 3.0, 4.0]),
        improvement=np.array([0.1, 0.0, 0.3, -0.2]),
        divergence=np.array([0.01, 0.01, 0.01, 0.01]),
    )


def test_noisy_allocator_perturbs_within_bounds_and_is_seeded():
    inner = WaterFillAllocator()
    noisy = NoisyUtilityAllocator(inner, 0.5)
    assert (noisy.signal, noisy.rescore, noisy.carry_leftover) == ("utility", False, True)
    seen = []

    class Spy(WaterFillAllocator):
        def allocate(self, signals):
            seen.append(signals.utility.copy())
            return super().allocate(signals)

    spy = NoisyUtilityAllocator(Spy(), 0.5)
    sig = _signals()
    order, deltas = spy.allocate(sig)
    ratio = seen[0] / sig.utility
    assert np.all((ratio >= 0.5) & (ratio <= 1.5)) and not np.allclose(ratio, 1)
    np.testing.assert_array_equal(sig.utility, [1, 2, 3, 4])  # the caller's signal is untouched
    assert deltas.sum() == pytest.approx(0.04)
    spy.allocate(_signals())
    np.testing.assert_array_equal(seen[0], seen[1])  # same rng state -> same noise
    assert NoisyUtilityAllocator(WaterFillAllocator(), 0.0).allocate(_signals())[
        1
    ] == pytest.approx(WaterFillAllocator().allocate(_signals())[1])
    with pytest.raises(ValueError, match="level"):
        NoisyUtilityAllocator(inner, 1.0)


def test_noisy_greedy_keeps_signs_and_divergence():
    seen = []

    class Spy(GreedyAllocator):
        def allocate(self, signals):
            seen.append((signals.improvement.copy(), signals.divergence.copy()))
            return super().allocate(signals)

    noisy = NoisyUtilityAllocator(Spy(eps=1e-4), 0.4)
    assert noisy.signal == "probe" and noisy.rescore and noisy.probe_radius(1.0) == 1.0
    order, _ = noisy.allocate(_signals(3))
    imp, div = seen[0]
    assert np.array_equal(np.sign(imp), np.sign([0.1, 0.0, 0.3, -0.2]))
    np.testing.assert_array_equal(div, 0.01)
    assert set(order.tolist()) <= {0, 2}


# -- running trials --------------------------------------------------------------------------------


def test_run_trial_in_process_resumes_from_checkpoint(tmp_path):
    spec = _spec(TINY.replace("steps = 4000", "steps = 2000"), tmp_path)
    trial = next(t for t in spec.trials if t.method == "hatrpo-w" and t.seed == 0)
    assert trial_state(trial) == "new"
    out = run_trial(trial.to_json())
    assert out["status"] == "done" and not out["resumed"]
    assert trial_state(trial) == "done"
    assert run_trial(trial.to_json())["status"] == "skipped"
    # a longer budget resumes from the checkpoint and extends the same run
    longer = _spec(TINY, tmp_path)
    trial2 = next(t for t in longer.trials if t.run_dir == trial.run_dir)
    assert trial_state(trial2) == "resume"
    out = run_trial(trial2.to_json())
    assert out["status"] == "done" and out["resumed"]
    lines = (trial.run_dir / "progress.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == list(range(1, 9))
    assert json.loads((trial.run_dir / "config.json").read_text())["allocator"] == (
        "noisy-water_fill"
    )
    # the same directory with another trial's parameters is refused, not mixed up
    other = _spec(TINY.replace("num_envs = 500", "num_envs = 400"), tmp_path)
    trial3 = next(t for t in other.trials if t.run_dir == trial.run_dir)
    assert trial_state(trial3) == "conflict"
    failed = run_trial(trial3.to_json())
    assert failed["status"] == "failed" and "holds another trial" in failed["error"]


def test_sweep_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    monkeypatch.setitem(sys.modules, "ray", None)
    code = commands_main(["sweep", str(path), "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    assert 'pip install "kl_alloc[ray]"' in capsys.readouterr().err


def test_sweep_bad_file_exit_code(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[sweep]\nsteps = 1\nwat = 2\n[tasks.m]\nenv = 'matrix'\n")
    assert commands_main(["sweep", str(path)]) == 2
    assert "'wat'" in capsys.readouterr().err


# -- under Ray -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from kl_alloc.experiments.runner import init_ray

    started = init_ray(None, 2)
    yield ray
    if started:
        ray.shutdown()


def test_sweep_under_ray_fails_one_skips_finished_and_reports(ray_session, tmp_path, capsys):
    from kl_alloc.experiments.runner import run_sweep

    text = TINY + textwrap.dedent(
        """
        [tasks.broken]
        env = "matrix"
        env_kwargs = { action_counts = [2, 0] }
        """
    )
    text = text.replace("seeds = 2", "seeds = 1")
    path = tmp_path / "s.toml"
    path.write_text(text)
    spec = load_spec(path, out=tmp_path / "runs")
    assert len(spec.trials) == 4
    result = run_sweep(spec, progress=False)
    assert result.count("done") == 2 and result.count("failed") == 2
    failed = {Path(f["run_dir"]).relative_to(spec.out).parts[0] for f in result.failed}
    assert failed == {"broken"}
    assert all("action_counts" in f["error"] for f in result.failed)
    err = json.loads((spec.out / "broken" / "hatrpo" / "seed-0" / "error.json").read_text())
    assert "Traceback" in err["traceback"]
    status = json.loads((spec.out / "sweep.json").read_text())
    assert status["counts"] == {"done": 2, "skipped": 0, "failed": 2, "pending": 0}

    # rerun through the command line: finished trials are skipped, the report is written
    report_dir = tmp_path / "report"
    code = commands_main(
        ["sweep", str(path), "--out", str(spec.out), "--report", str(report_dir), "--no-progress"]
    )
    assert code == 1  # the broken task still fails
    out = capsys.readouterr().out
    assert "skipped 2 (already finished)" in out and "failed 2" in out
    report = json.loads((report_dir / "report.json").read_text())
    (task,) = report["tasks"]
    assert task["task"] == "matrix"
    assert {r["method"] for r in task["rows"]} == {"hatrpo", "hatrpo-w"}
    assert len(report["failed"]) == 2
    assert (report_dir / "report.md").read_text().count("HATRPO-W") >= 1
    assert (report_dir / "curves.png").stat().st_size > 0


def test_a_trial_over_the_timeout_is_killed_and_reported(ray_session, tmp_path):
    from kl_alloc.experiments.runner import run_sweep

    text = TINY.replace("seeds = 2", "seeds = 1").replace("steps = 4000", "steps = 1_000_000_000")
    text = text.replace('"hatrpo-w" = { grid = { utility_noise = [0.3] } }', "")
    spec = _spec(text, tmp_path)
    assert len(spec.trials) == 1
    result = run_sweep(spec, progress=False, timeout=4.0)
    (failed,) = result.failed
    assert "timed out after 4 s" in failed["error"]
    err = json.loads((spec.trials[0].run_dir / "error.json").read_text())
    assert "timed out" in err["error"]


def test_dry_run_lists_trials_and_filters(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    out = str(tmp_path / "r")
    assert commands_main(["sweep", str(path), "--out", out, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 trials (4 to run, 0 finished)" in text and "[new     ] matrix/hatrpo/seed-0" in text
    args = ["sweep", str(path), "--out", out, "--dry-run", "--methods", "hatrpo-*"]
    assert commands_main(args) == 0
    assert "2 trials" in capsys.readouterr().out
    assert commands_main([*args[:-1], "nothing"]) == 2
