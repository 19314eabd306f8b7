"""The sweep file, the noisy-utility allocator and the Ray runner (one local Ray per module)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.cli import main as cli_main
from kl_alloc.experiments.runner import Job, job_state, run_job, run_jobs, run_sweep
from kl_alloc.experiments.spec import SpecError, load_spec, parse_spec
from kl_alloc.rl.allocators import AllocationSignals, GreedyAllocator, WaterFillAllocator
from kl_alloc.rl.noise import NoisyUtilityAllocator

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
            r"\[config\]\.deltaa: unknown config key; did you mean delta",
        ),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\nenvkw = 1", r"'envkw' in \[tasks.m\]"),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='chess'",
            r"tasks.m\]\.env: unknown environment 'chess'",
        ),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[grid]\ndelta = 0.1", r"non-empty list"),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[grid]\ndelta = ['a']",
            r"\[grid\]\.delta: expected a number, got 'a'",
        ),
        (  # the table's name whole: [tasks.m].config.delta, not tasks.m].config.delta
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\nconfig = { delta = 'x' }",
            r": \[tasks\.m\]\.config\.delta: expected a number",
        ),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[methods.hatrpo]\n"
            "grid = { nosuch = [1, 2] }",
            r": \[methods\.hatrpo\]\.grid\.nosuch: unknown config key",
        ),
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
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\nenv_kwargs = { k = 3 }",
            # copy_offset is the env workers' (kl_alloc.envs.workers), not listed to a user
            r"tasks.m\]\.env_kwargs: env 'matrix' does not take 'k'; it accepts: "
            r"action_counts, paying_action, payoff$",
        ),
        ("[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\npreset = 'fast'", r"no preset 'fast'"),
        (
            "[sweep]\nsteps = 1\n[tasks.m]\nenv='matrix'\n[methods.x]\nalgo = 'no_such_mod:X'",
            r"methods.x\]\.algo: .*no_such_mod",
        ),
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


class _Measured:
    """A context with two candidates whose measurements are fixed (the wrapper measures exactly
    what its inner allocator measures)."""

    candidates, n_agents, budget = [0, 1], 2, 0.04

    def __init__(self):
        self.probed = []

    def utility(self, i):
        return [1.0, 4.0][i]

    def probe(self, i, radius):
        from kl_alloc.rl.trpo import StepOutcome

        self.probed.append((i, radius))
        return StepOutcome(radius, True, 0.01, 0.02, 0.02, 0.0, 1)

    def signals(self, **arrays):
        return AllocationSignals(np.arange(2), 2, self.budget, np.random.default_rng(0), **arrays)


def test_noisy_allocator_perturbs_within_bounds_and_is_seeded():
    inner = WaterFillAllocator()
    noisy = NoisyUtilityAllocator(inner, 0.5)
    assert noisy.carry_leftover and noisy.measure(_Measured()).utility.tolist() == [1.0, 4.0]
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
    assert NoisyUtilityAllocator(WaterFillAllocator(), 0.0).allocate(
        _signals()
    ).deltas == pytest.approx(WaterFillAllocator().allocate(_signals()).deltas)
    with pytest.raises(ValueError, match="level"):
        NoisyUtilityAllocator(inner, 1.0)


def test_noisy_greedy_keeps_signs_and_divergence():
    seen = []

    class Spy(GreedyAllocator):
        def allocate(self, signals):
            seen.append((signals.improvement.copy(), signals.divergence.copy()))
            return super().allocate(signals)

    noisy = NoisyUtilityAllocator(Spy(eps=1e-4), 0.4)
    ctx = _Measured()
    noisy.measure(ctx)  # measures with the inner rule: one probe per candidate, whole budget
    assert ctx.probed == [(0, 0.04), (1, 0.04)]
    order, _ = noisy.allocate(_signals(3))
    imp, div = seen[0]
    assert np.array_equal(np.sign(imp), np.sign([0.1, 0.0, 0.3, -0.2]))
    np.testing.assert_array_equal(div, 0.01)
    assert set(order.tolist()) <= {0, 2}


# -- running trials --------------------------------------------------------------------------------

TIMING = {"wall_time", "seconds_per_iter", "time"}
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "progress.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def _jobs(spec) -> list[Job]:
    return [Job(t.spec, t.run_dir, meta=t.meta()) for t in spec.trials]


def test_run_job_in_process_resumes_and_refuses_another_run(tmp_path):
    spec = _spec(TINY.replace("steps = 4000", "steps = 2000"), tmp_path)
    trial = next(t for t in spec.trials if t.method == "hatrpo-w" and t.seed == 0)
    job = Job(trial.spec, trial.run_dir, meta=trial.meta())
    assert job_state(job)[0] == "new"
    out = run_job(job.to_json())
    assert out["status"] == "done" and out["action"] == "new"
    assert job_state(job)[0] == "done"
    assert run_job(job.to_json())["status"] == "skipped"
    recorded = json.loads((trial.run_dir / "trial.json").read_text())
    assert recorded["method"] == "hatrpo-w" and recorded["params"] == {"utility_noise": 0.3}
    assert recorded["code"]["kl_alloc"]
    # a longer budget resumes from the checkpoint and extends the same run
    longer = _spec(TINY, tmp_path)
    trial2 = next(t for t in longer.trials if t.run_dir == trial.run_dir)
    job2 = Job(trial2.spec, trial2.run_dir)
    assert job_state(job2)[0] == "resume"
    out = run_job(job2.to_json())
    assert out["status"] == "done" and out["action"] == "resume"
    assert [r["iteration"] for r in _records(trial.run_dir)] == list(range(1, 9))
    assert json.loads((trial.run_dir / "config.json").read_text())["allocator"] == (
        "noisy-water_fill"
    )
    # the same directory with another trial's parameters is refused, with the differences
    other = _spec(TINY.replace("num_envs = 500", "num_envs = 400"), tmp_path)
    trial3 = next(t for t in other.trials if t.run_dir == trial.run_dir)
    state, detail = job_state(Job(trial3.spec, trial3.run_dir))
    assert state == "conflict" and "num_envs: 500 -> 400" in detail
    failed = run_job(Job(trial3.spec, trial3.run_dir).to_json())
    assert failed["status"] == "failed" and "holds another run" in failed["error"]
    assert not (trial.run_dir / "error.json").exists()  # nothing written into another's run


DIE_ONCE = """
[sweep]
name = "die"
seeds = 1
steps = 1200

[tasks.matrix]
env = "matrix"
config = { num_envs = 200, checkpoint_every = 2 }

[methods.die]
algo = "sweep_plugins:DieOnce"
"""


@pytest.fixture
def plugins_path(monkeypatch):
    """Workers find the test module ``sweep_plugins`` (user code, not registered)."""
    monkeypatch.syspath_prepend(str(TESTS))
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


def test_a_worker_that_dies_once_is_retried_and_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, plugins_path
):
    import sweep_plugins

    marker = tmp_path / "died"
    monkeypatch.setenv(sweep_plugins.MARKER_VAR, str(marker))
    spec = _spec(DIE_ONCE, tmp_path)
    (trial,) = spec.trials
    assert trial.algo == "sweep_plugins:DieOnce"
    result = run_sweep(spec, executor="local", retries=1, progress=False)
    assert marker.exists()  # it did die once
    (outcome,) = result.status.values()
    assert outcome["status"] == "done" and outcome["retries"] == 1
    status = json.loads((spec.out / "sweep.json").read_text())
    assert status["trials"][0]["retries"] == 1 and status["counts"]["done"] == 1
    # the same trial without dying (the marker exists), in this process
    clean = load_spec(tmp_path / "sweep.toml", out=tmp_path / "clean")
    again = run_jobs(_jobs(clean), executor="inline", progress=False)
    assert next(iter(again.status.values()))["retries"] == 0
    assert _records(clean.trials[0].run_dir) == _records(trial.run_dir)
    assert len(_records(trial.run_dir)) == 6
    # without retries the death is a failure, reported with retries=0
    marker.unlink()
    third = load_spec(tmp_path / "sweep.toml", out=tmp_path / "third")
    result = run_sweep(third, executor="local", retries=0, progress=False)
    (outcome,) = result.status.values()
    assert outcome["status"] == "failed" and outcome["retries"] == 0
    assert "worker process exited with status 9" in outcome["error"]
    err = json.loads((third.trials[0].run_dir / "error.json").read_text())
    assert "status 9" in err["error"]


KILL_ME = """
[sweep]
name = "killme"
seeds = 1
steps = 6000

[tasks.matrix]
env = "matrix"
config = { num_envs = 200, checkpoint_every = 2 }

[methods]
hatrpo = {}
"""


def _sweep_process(path: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "kl_alloc", "sweep", str(path), "--out", str(out),
            "--executor", "local", "--no-report", "--no-progress"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a live process, from /proc (psutil is not a dependency)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _wait_for_progress(proc: subprocess.Popen, run_dir: Path, lines: int = 2) -> list[int]:
    """Wait until the run has ``lines`` iterations; the PIDs of the driver's descendants."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    deadline = time.monotonic() + 240
    progress = run_dir / "progress.jsonl"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.communicate()}")
        if progress.exists() and len(progress.read_text().splitlines()) >= lines:
            return _descendants(proc.pid)
        time.sleep(0.2)
    proc.kill()
    pytest.fail("no progress within 240 s")


def _gone(pids: list[int], within: float = 15.0) -> list[int]:
    """The PIDs still alive (zombies count as gone) after waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if (st := _proc_stat(p)) is not None and st[1] != "Z"]
        time.sleep(0.1)
    return alive


def test_sigkill_of_the_driver_leaves_no_process_and_rerunning_finishes_it(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(KILL_ME)
    out = tmp_path / "runs"
    run_dir = out / "matrix" / "hatrpo" / "seed-0"
    proc = _sweep_process(path, out)
    try:
        children = _wait_for_progress(proc, run_dir)
        assert children, "the local executor runs the trial in a worker process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert _gone(children) == [], "a worker outlived the SIGKILLed driver"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert not (run_dir / "done.json").exists()
    again = _sweep_process(path, out)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert "1 trials (1 to run, 0 finished)" in stdout
    # equal to an uninterrupted sweep of the same file
    clean = load_spec(path, out=tmp_path / "clean")
    run_jobs(_jobs(clean), executor="inline", progress=False)
    assert _records(run_dir) == _records(clean.trials[0].run_dir)
    assert len(_records(run_dir)) == 30


def test_ctrl_c_stops_the_workers_and_prints_the_command_that_continues(tmp_path):
    path = tmp_path / "s.toml"
    # long enough that the trial cannot finish between its first progress line and the Ctrl-C
    # (with KILL_ME's 30 iterations it once did, on a box at load ~8)
    path.write_text(KILL_ME.replace("steps = 6000", "steps = 600000"))
    out = tmp_path / "runs"
    proc = _sweep_process(path, out)
    try:
        children = _wait_for_progress(proc, out / "matrix" / "hatrpo" / "seed-0", lines=1)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    command = f"kl-alloc sweep {path} --out {out} --executor local --no-report --no-progress"
    assert f"interrupted: continue with `{command}`" in stderr
    assert "--resume" not in stderr
    assert _gone(children) == []


def test_sweep_ray_executor_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["sweep", str(path), "--out", str(tmp_path / "r"), "--no-progress", "--executor", "ray"]
    assert cli_main(args) == 2
    assert 'pip install "kl_alloc[ray]"' in capsys.readouterr().err


def test_sweep_bad_file_exit_code(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[sweep]\nsteps = 1\nwat = 2\n[tasks.m]\nenv = 'matrix'\n")
    assert cli_main(["sweep", str(path)]) == 2
    assert "'wat'" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_executor_runs_module_attr_methods_in_its_workers_and_fails_one(
    tmp_path, plugins_path, capsys
):
    import ray  # the dev extra installs it: a broken install fails here, it does not skip

    text = DIE_ONCE + textwrap.dedent(
        """
        [tasks.broken]
        env = "matrix"
        env_kwargs = { action_counts = [2, 0] }
        """
    )
    path = tmp_path / "s.toml"
    path.write_text(text)
    args = ["sweep", str(path), "--out", str(tmp_path / "runs"), "--executor", "ray",
            "--workers", "1", "--no-progress", "--report", str(tmp_path / "report")]  # fmt: skip
    assert cli_main(args) == 1  # the broken task fails, the plug-in trial finishes
    out = capsys.readouterr()
    assert "done 1, skipped 0 (already finished), failed 1" in out.out
    assert "action_counts" in out.err
    status = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert status["counts"] == {"done": 1, "skipped": 0, "failed": 1, "pending": 0}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {r["method"] for t in report["tasks"] for r in t["rows"]} == {"die"}
    assert not ray.is_initialized()  # the Ray this sweep started is shut down


def test_dry_run_lists_trials_and_filters(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    out = str(tmp_path / "r")
    assert cli_main(["sweep", str(path), "--out", out, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 trials (4 to run, 0 finished)" in text and "[new     ] matrix/hatrpo/seed-0" in text
    args = ["sweep", str(path), "--out", out, "--dry-run", "--methods", "hatrpo-*"]
    assert cli_main(args) == 0
    assert "2 trials" in capsys.readouterr().out
    assert cli_main([*args[:-1], "nothing"]) == 2


def test_status_eta_past_a_day_is_not_wrapped(caplog):
    """The sweep's ETA log line counts hours past 24 (it used to print a time of day)."""
    import logging

    from kl_alloc.experiments.runner import _Status

    status = _Status(total=57, skipped=0, enabled=False, name="evidence")
    status._start -= 2 * 3600.0  # one run took two hours: 56 left -> 112 hours
    status.done = 1
    with caplog.at_level(logging.INFO, logger="kl_alloc.experiments.runner"):
        status.update(finished=1)
    status.close()
    (line,) = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert "1/57 finished" in line
    eta = line.rsplit("ETA ", 1)[1]
    assert eta.split(":")[0] in ("111", "112"), line


def test_status_eta_from_env_steps(tmp_path, caplog):
    """Before any run of a sweep ends, its log line counts env steps (the tail of each running
    run's progress.jsonl, a record cut short by a crash skipped) and gives an ETA from the
    runs' timed steps; a settled run counts as complete. Runs no timed step can price yet are
    counted apart."""
    import logging

    from kl_alloc.experiments.runner import _Status
    from kl_alloc.lifecycle import RunSpec

    jobs = [Job(RunSpec(env="matrix", algo="hatrpo", seed=s, steps=1_000_000), tmp_path / f"r{s}")
            for s in range(4)]  # fmt: skip

    def progress(job, *steps, cut=False, ms=None):
        job.out.mkdir(exist_ok=True)
        timed = {} if ms is None else {"wall_time": 0.0}
        lines = [json.dumps({"iteration": i, "env_steps": n, "agents": [{"kl": 0.1}] * 50,
                             **{k: n * ms / 1000 for k in timed}})
                 for i, n in enumerate(steps)]  # fmt: skip
        text = "\n".join(lines) + "\n" + ('{"iteration": 9, "env_st' if cut else "")
        (job.out / "progress.jsonl").write_text(text)

    status = _Status(total=4, skipped=0, enabled=False, name="s", jobs=jobs)
    status.meter.workers = 2  # what run_jobs sets from its executor
    progress(jobs[0], *range(100_000, 450_001, 1000))  # a long file (tail read)
    progress(jobs[1], 50_000, 150_000, cut=True)  # a record cut short by a crash
    status.running = 2
    with caplog.at_level(logging.INFO, logger="kl_alloc.experiments.runner"):
        status.update()  # the first call logs at once (nothing logged before)
        progress(jobs[0], *range(100_000, 450_001, 1000), ms=1.0)
        progress(jobs[1], 50_000, 150_000, cut=True, ms=2.0)
        status.settled.add(str(jobs[2].out))  # e.g. failed: nothing is left of it
        status.failed = 1
        status.update(finished=1)
    status.close()
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(lines) == 2
    # no wall_time yet: nothing to price the 4 runs left at
    assert lines[0].endswith("env steps 600k of 4M (15.0%), ETA ? + 4 runs not priced "
                             "(no timed step of their task yet)"), lines[0]  # fmt: skip
    # run 2 settled: 1.6M reached; 1.25 ms per step (750 s / 600k); left r0 550k, r1 850k,
    # r3 1M on 2 workers: r3 after r0, 687.5 + 1250 = 1937.5 s
    assert "1/4 finished (1 failed), 2 running; env steps 1.6M of 4M (40.0%), ETA 32:17" in lines[1]


def test_status_eta_prices_each_group_at_its_own_rate(tmp_path, caplog):
    """With the runs' wall_time, each run's steps left cost its own group's seconds per step
    (task + method + swept values), else its task's, else every run's, finished runs
    included; the runs left are laid out in queue order on the workers, so a long run at the
    end is not split across idle ones. A settled run adds nothing."""
    import logging

    from kl_alloc.experiments.runner import _Status
    from kl_alloc.lifecycle import RunSpec

    groups = [("a", "x", 0), ("a", "x", 0), ("a", "y", 0), ("a", "z", 0), ("b", "x", 1),
              ("b", "x", 2), ("b", "y", 0)]  # fmt: skip
    jobs = [Job(RunSpec(env="matrix", algo="hatrpo", seed=s, steps=1_000_000), tmp_path / f"r{s}",
                meta={"task": t, "method": m, "params": {"p": p}})
            for s, (t, m, p) in enumerate(groups)]  # fmt: skip
    *todo, finished = jobs

    def progress(job, steps, wall):
        job.out.mkdir(exist_ok=True)
        rec = {"iteration": 1, "env_steps": steps, "wall_time": wall}
        (job.out / "progress.jsonl").write_text(json.dumps(rec) + "\n")

    progress(finished, 100_000, 200.0)  # b/y, finished before the sweep: 2 ms per step
    status = _Status(total=6, skipped=1, enabled=False, name="s", jobs=todo, sources=[finished])
    status.meter.workers = 2
    progress(todo[0], 500_000, 500.0)  # a/x: 1 ms per step
    progress(todo[2], 250_000, 750.0)  # a/y: 3 ms
    progress(todo[4], 100_000, 1000.0)  # b/x p=1: 10 ms
    status.running = 2
    with caplog.at_level(logging.INFO, logger="kl_alloc.experiments.runner"):
        status.update()
    (line,) = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    # seconds left: r0 500k x 1 ms = 500; r1 1M x 1 ms (its group) = 1000; r2 750k x 3 ms =
    # 2250; r3 (a/z: no run) 1M at task a's (1250 s / 750k) = 1666.7; r4 900k x 10 ms = 9000;
    # r5 (b/x p=2: no run) 1M at task b's (1200 s / 200k, the finished run included) = 6000.
    # Two workers in queue order: r0 | r1, r2 after r0 (2750), r3 after r1 (2666.7), r4 after
    # r3 (11666.7), r5 after r2 (8750): the last ends at 11666.7 s
    assert line.endswith("ETA 3:14:26"), line
    meter = status.meter
    meter.workers = 8  # more workers than runs: the longest run sets the pace
    meter.reached(set())
    assert meter.eta() == (pytest.approx(9000.0), 0)
    meter.workers = 2
    meter.reached({str(j.out) for k, j in enumerate(todo) if k != 4})
    assert meter.eta() == (pytest.approx(9000.0), 0)  # not 9000 / 2
    status.close()
