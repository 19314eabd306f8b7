"""The run lifecycle's rules, one regression test per fault a user met (issue 8):
a run killed at any moment continues from its own directory, --resume keeps the run's target,
nothing is overwritten that the command did not create, and every I/O or corruption failure is
one line naming the file and the way out."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from kl_alloc.cli import main
from kl_alloc.lifecycle import RunSpec, execute, plan
from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rundir import read_progress

STEPS = 8000  # two iterations of the matrix preset


def timeless(run: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if "seconds" not in k and "time" not in k}
        for r in read_progress(run)
    ]


def cli(*args) -> int:
    return main([str(a) for a in args])


def error_line(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        cli(*args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


class Killed(Exception):
    pass


def kill_at(iteration: int):
    def callback(trainer, record):
        if record["iteration"] == iteration:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("life") / "straight"
    execute(RunSpec("matrix", "hatrpo-w", seed=1, steps=3 * 4000), out)
    return out


def test_killed_before_its_first_checkpoint_resumes_from_its_own_spec(tmp_path, straight):
    out = tmp_path / "early"
    spec = RunSpec("matrix", "hatrpo-w", seed=1, steps=3 * 4000)
    with pytest.raises(Killed):
        execute(spec, out, callback=kill_at(1))  # checkpoint_every = 25: none written yet
    assert not (out / "checkpoint.pt").exists()
    assert (out / "spec.json").exists() and (out / "config.json").exists()
    # the README way: no --env, no --steps; nothing the run cannot recreate is deleted
    assert cli("train", "--out", out, "--resume", "--no-progress") == 0
    assert json.loads((out / "spec.json").read_text())["seed"] == 1
    assert timeless(out) == timeless(straight)


def test_python_learn_resume_without_a_checkpoint_continues(tmp_path, straight):
    out = tmp_path / "py"
    cfg = TrainerConfig.for_env("matrix")
    with pytest.raises(Killed):
        Trainer("matrix", "hatrpo-w", cfg, seed=1, out_dir=out).learn(
            12000, progress=False, callback=kill_at(1)
        )
    Trainer("matrix", "hatrpo-w", cfg, seed=1, out_dir=out).learn(
        12000, progress=False, resume=True
    )
    assert timeless(out) == timeless(straight)


def test_resume_keeps_the_runs_own_target_steps(tmp_path):
    out = tmp_path / "short"
    spec = RunSpec("matrix", "hatrpo", seed=0, steps=STEPS, overrides={"checkpoint_every": 1})
    with pytest.raises(Killed):
        execute(spec, out, callback=kill_at(1))
    assert cli("train", "--out", out, "--resume", "--no-progress") == 0
    assert read_progress(out)[-1]["env_steps"] == STEPS  # not the env's default 400k
    assert plan(out, None, resume=True).action == "finished"
    assert plan(out, None, resume=True, steps=3 * 4000).action == "resume"  # --steps extends


def test_demo_never_replaces_what_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "demo"
    cli("train", "--env", "matrix", "--algo", "hatrpo-w", "--steps", 4000, "--out",
        out / "hatrpo-w-0", "--no-progress")  # fmt: skip
    before = (out / "hatrpo-w-0" / "progress.jsonl").read_bytes()
    (out / "curves.png").write_bytes(b"my own figure")
    err = error_line(capsys, "demo", "--out", out, "--seeds", 1, "--steps", 4000, "--no-progress")
    assert "curves.png" in err and "choose another --out" in err
    assert (out / "curves.png").read_bytes() == b"my own figure"
    (out / "curves.png").unlink()
    # a run named like the demo's own is refused, not replaced or extended
    err = error_line(capsys, "demo", "--out", out, "--seeds", 1, "--steps", 8000, "--no-progress")
    assert "hatrpo-w-0" in err
    assert (out / "hatrpo-w-0" / "progress.jsonl").read_bytes() == before
    # its own directory: a rerun reuses its finished runs and rewrites only its own plots
    own = tmp_path / "own"
    args = ("demo", "--out", own, "--seeds", 1, "--steps", 4000, "--no-progress")
    assert cli(*args) == 0
    first = (own / "hatrpo-0" / "progress.jsonl").read_bytes()
    assert cli(*args) == 0
    assert (own / "hatrpo-0" / "progress.jsonl").read_bytes() == first


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty checkpoint"), (b"garbage", "not a readable checkpoint"), (None, "readable")],
)
def test_a_broken_checkpoint_is_one_line_naming_it(tmp_path, capsys, content, words):
    out = tmp_path / "run"
    cfg = ["--set", "checkpoint_every=1"]
    assert (
        cli("train", "--env", "matrix", "--steps", STEPS, "--out", out, "--no-progress", *cfg) == 0
    )
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if content is None else content)
    err = error_line(capsys, "train", "--out", out, "--resume", "--steps", 3 * 4000)
    assert str(ckpt) in err and words in err and "--force" in err


def test_a_shortened_progress_log_is_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train", "--env", "matrix", "--steps", STEPS, "--out", out, "--no-progress") == 0
    log = out / "progress.jsonl"
    log.write_bytes(log.read_bytes()[:10])
    args = ("train", "--out", out, "--resume", "--steps", 3 * 4000, "--no-progress")
    err = error_line(capsys, *args)
    assert str(log) in err and "--force" in err


def test_a_full_disk_or_read_only_file_is_one_line(tmp_path, capsys, monkeypatch):
    import kl_alloc.lifecycle as lifecycle

    for code, words in ((errno.ENOSPC, "free space"), (errno.EROFS, "not writable")):

        def refuse(path, obj, code=code):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(lifecycle, "write_json_atomic", refuse)
        out = tmp_path / f"e{code}"
        err = error_line(capsys, "train", "--env", "matrix", "--steps", 4000, "--out", out)
        assert "spec.json" in err and words in err


def test_config_errors_name_the_key_and_the_env(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('delta = "abc"\n')
    err = error_line(capsys, "train", "--env", "matrix", "--config", bad, "--out", tmp_path / "x")
    assert "delta: expected a number, got 'abc'" in err
    err = error_line(capsys, "train", "--env", "matrix", "--set", 'env_kwargs={"foo": 1}',
                     "--out", tmp_path / "x")  # fmt: skip
    assert "env 'matrix' does not take 'foo'" in err and "action_counts" in err
    assert not (tmp_path / "x").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli("--debug", "train", "--env", "matrix", "--set", "delta=abc", "--out", tmp_path / "x")
    assert "Traceback" in capsys.readouterr().err


def test_resume_may_change_the_worker_count_only(tmp_path, capsys):
    """num_workers never changes a number, so a run may continue with another count; any other
    setting that differs is refused."""
    out = tmp_path / "w"
    spec = RunSpec("matrix", "hatrpo", seed=0, steps=STEPS, overrides={"checkpoint_every": 1})
    with pytest.raises(Killed):
        execute(spec, out, callback=kill_at(1))
    p = plan(out, RunSpec("?", overrides={"num_workers": 3}), resume=True, given=("overrides",))
    assert p.action == "resume" and p.spec.overrides["num_workers"] == 3
    err = error_line(capsys, "train", "--out", out, "--resume", "--set", "delta=0.5")
    assert "delta=0.5" in err


def test_one_writer_per_run_directory(tmp_path):
    from kl_alloc.rundir import RunDirError, RunWriter

    first = RunWriter(tmp_path)
    first.open()
    first.progress({"iteration": 1})
    with pytest.raises(RunDirError, match="being written by another process"):
        RunWriter(tmp_path).open(0, 0)  # would cut the first writer's lines
    assert read_progress(tmp_path) == [{"iteration": 1}]
    first.release()  # e.g. its learn() returned: another may take the run over
    second = RunWriter(tmp_path)
    second.open(0, 0)
    with pytest.raises(RunDirError):
        first.acquire()
    second.close()
    first.acquire()
    first.close()


def test_a_second_training_of_a_running_run_is_one_line(tmp_path):
    """Two processes on one run directory: the second refuses before it touches the files
    (before: both ran, and progress.jsonl held iterations twice, interleaved)."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kl_alloc", "train", "--no-progress", "--out", str(out)]
    first = subprocess.Popen(
        [*cmd, "--env", "differential", "--steps", "4000000", "--set", "checkpoint_every=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not read_progress(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert read_progress(out), "the first training never wrote a record"
        second = subprocess.run(
            [*cmd, "--resume", "--steps", "4000000"], capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert "being written by another process" in second.stderr
        assert "Traceback" not in second.stderr
        # nor may --force delete the files under it
        forced = subprocess.run(
            [*cmd, "--env", "differential", "--force", "--steps", "4000"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert forced.returncode == 2 and "being written by another process" in forced.stderr
        assert (out / "progress.jsonl").exists()
    finally:
        first.kill()
        first.wait()
    iterations = [r["iteration"] for r in read_progress(out)]
    assert iterations == list(range(1, len(iterations) + 1))  # no line twice


def test_a_checkpoint_never_points_past_unsynced_lines(tmp_path, monkeypatch):
    from kl_alloc.rundir import RunWriter

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    w = RunWriter(tmp_path)
    w.open()
    w.progress({"iteration": 1})
    w.eval({"iteration": 1})
    offsets = w.positions()  # what a checkpoint stores
    assert set(synced) == {w._progress.fileno(), w._eval.fileno()}
    assert offsets == tuple((tmp_path / n).stat().st_size for n in ("progress.jsonl", "eval.jsonl"))
    w.close()


def test_a_damaged_line_inside_a_log_names_the_file_and_line(tmp_path):
    from kl_alloc.rundir import RunDirError

    (tmp_path / "progress.jsonl").write_text('{"iteration": 1}\n{"iteration": 2, oops}\n{}\n')
    with pytest.raises(RunDirError, match=r"progress.jsonl: line 2 is not JSON"):
        read_progress(tmp_path)


def test_a_callback_that_stops_at_the_target_still_finishes_the_run(tmp_path):
    cfg = TrainerConfig.for_env("matrix", num_envs=200)
    t = Trainer("matrix", algo="hatrpo", config=cfg, out_dir=tmp_path / "a")
    t.learn(400, progress=False, callback=lambda trainer, record: record["iteration"] < 2)
    assert (tmp_path / "a" / "done.json").exists()  # it reached its 400 steps
    t = Trainer("matrix", algo="hatrpo", config=cfg, out_dir=tmp_path / "b")
    t.learn(800, progress=False, callback=lambda trainer, record: record["iteration"] < 1)
    assert not (tmp_path / "b" / "done.json").exists()  # stopped half-way: not done


def test_done_json_times_the_whole_run_after_a_resume(tmp_path):
    import numpy as np

    cfg = TrainerConfig.for_env("matrix", num_envs=200)
    Trainer("matrix", algo="hatrpo", config=cfg, out_dir=tmp_path).learn(600, progress=False)
    Trainer.resume(tmp_path).learn(1200, progress=False)
    records = read_progress(tmp_path)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["seconds_per_iter"] == pytest.approx(
        np.mean([r["seconds_per_iter"] for r in records])  # all six, not the last three
    )
