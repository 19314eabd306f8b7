"""Env worker processes (kl_alloc.envs.workers): the numbers do not depend on the worker count,
exact resume holds, a dying worker is named, and no worker outlives the learner."""

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

from kl_alloc.envs.registry import make_env
from kl_alloc.envs.workers import EnvWorkerError, WorkerVecEnv, copy_slices

pytest.importorskip("mujoco")
torch = pytest.importorskip("torch")

from worker_helpers import descendants, still_alive  # noqa: E402

from kl_alloc.rl import Trainer, TrainerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TIMING = {"wall_time", "seconds_per_iter", "time"}
ANT = dict(scenario="Ant", agent_conf="2x4", max_episode_steps=20)


def _progress(run_dir: Path) -> list[dict]:
    """progress.jsonl without its wall-clock fields."""
    lines = (run_dir / "progress.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _assert_same_step(a, b) -> None:
    for name in ("state", "reward", "terminated", "truncated", "final_state"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for x, y in zip(a.obs + a.final_obs, b.obs + b.final_obs, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.info.keys() == b.info.keys()
    for key in a.info:
        np.testing.assert_array_equal(a.info[key], b.info[key], err_msg=key)


def test_copy_slices_cover_every_copy_once():
    assert copy_slices(5, 2) == [(0, 2), (2, 5)]
    assert copy_slices(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="num_workers: 3 workers for 2 env copies"):
        copy_slices(2, 3)


def test_mamujoco_in_workers_steps_and_saves_like_one_process():
    one = make_env("mamujoco", num_envs=5, seed=1, **ANT)
    workers = WorkerVecEnv.from_spec(one.spec, num_workers=2)
    try:
        assert workers.spec == one.spec and workers.bounds == [(0, 2), (2, 5)]
        for x, y in zip(one.reset(3)[0], workers.reset(3)[0], strict=True):
            np.testing.assert_array_equal(x, y)
        rng = np.random.default_rng(0)

        def actions():
            return [rng.uniform(-1, 1, (5, s.dim)).astype(np.float32) for s in one.action_specs]

        ended = 0
        for _ in range(45):  # crosses the 20-step time limit twice: automatic resets
            a = actions()
            res = one.step(a)
            _assert_same_step(res, workers.step(a))
            ended += int((res.terminated | res.truncated).sum())
        assert ended >= 5
        # the merged state is the one-process state; each side loads the other's
        saved_one, saved_workers = one.state_dict(), workers.state_dict()
        for key in ("num_envs", "elapsed", "episode_return", "state"):
            np.testing.assert_array_equal(saved_one[key], saved_workers[key])
        a = actions()
        res = one.step(a)
        one.load_state_dict(saved_workers)
        workers.load_state_dict(saved_one)
        _assert_same_step(res, workers.step(a))
        _assert_same_step(res, one.step(a))
    finally:
        workers.close()
        one.close()
    with pytest.raises(RuntimeError, match="closed"):
        workers.step(a)


@pytest.mark.parametrize("name", ["matrix", "differential"])
def test_games_in_workers_match_one_process(name):
    one = make_env(name, num_envs=7, seed=0)
    workers = WorkerVecEnv.from_spec(one.spec, num_workers=3)
    try:
        one.reset(0), workers.reset(0)
        rng = np.random.default_rng(1)
        for _ in range(3):
            a = [
                rng.integers(0, s.n, 7) if s.is_discrete else rng.uniform(-1, 8, (7, s.dim))
                for s in one.action_specs
            ]
            _assert_same_step(one.step(a), workers.step(a))
        probs = [np.full(s.n, 1 / s.n) for s in one.action_specs] if name == "matrix" else None
        if probs is not None:
            assert workers.expected_reward(probs) == one.expected_reward(probs)
        with pytest.raises(ValueError, match=r"actions\[0\]"):
            workers.step([np.zeros(3)] * one.n_agents)  # checked in the learner, named
    finally:
        workers.close()


def _ant_config(num_workers: int, **changes) -> TrainerConfig:
    return TrainerConfig.for_env(
        "mamujoco",
        num_envs=4,
        rollout_length=25,
        num_workers=num_workers,
        eval_episodes=2,
        env_kwargs=dict(ANT),
        **changes,
    )


def test_progress_is_identical_for_1_2_and_4_workers(tmp_path):
    runs = {}
    for workers in (1, 2, 4):
        trainer = Trainer("mamujoco", "hatrpo-w", _ant_config(workers), 0, tmp_path / f"w{workers}")
        trainer.learn(200, progress=False)  # 2 iterations of 4 x 25 samples
        trainer.close()
        runs[workers] = _progress(tmp_path / f"w{workers}")
    assert len(runs[1]) == 2 and runs[1][-1]["episodes"] > 0
    assert runs[2] == runs[1]
    assert runs[4] == runs[1]


def test_resume_with_workers_is_exact(tmp_path):
    config = _ant_config(2, checkpoint_every=1, eval_every=1)  # every record the same keys
    # the uninterrupted run in one process: the resumed 2-worker run must give its numbers
    whole = Trainer("mamujoco", "hatrpo-g", config.replace(num_workers=1), 3, tmp_path / "whole")
    whole.learn(300, progress=False)
    whole.close()
    part = Trainer("mamujoco", "hatrpo-g", config, 3, tmp_path / "part")
    part.learn(200, progress=False)
    part.close()
    again = Trainer.resume(tmp_path / "part")
    assert isinstance(again.env, WorkerVecEnv) and again.env.num_workers == 2
    again.learn(300, progress=False)
    again.close()
    assert _progress(tmp_path / "part") == _progress(tmp_path / "whole")


def test_a_dying_worker_is_named_and_the_run_resumes(tmp_path):
    config = TrainerConfig.for_env(
        "matrix",
        num_envs=4,
        num_workers=2,
        checkpoint_every=1,
        env_kwargs=dict(die_on_step=3, die_copy=3),
    )
    trainer = Trainer("worker_helpers:DyingGame", "hatrpo-w", config, 0, tmp_path / "run")
    procs = list(trainer.env._procs)
    with pytest.raises(EnvWorkerError) as info:
        trainer.learn(40, progress=False)
    message = str(info.value)
    assert "env worker 1 (copies 2..3 of env 'worker_helpers:DyingGame'" in message
    assert "died (exit code 3)" in message
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        trainer.env.reset(0)
    # the checkpoint of iteration 2 is intact: the run continues (on a healthy env) to the
    # numbers of a run that never failed
    resumed = Trainer.resume(tmp_path / "run", env=make_env("matrix", num_envs=4))
    assert resumed.iteration == 2
    resumed.learn(40, progress=False)
    resumed.close()
    clean = Trainer(make_env("matrix", num_envs=4), "hatrpo-w", config, 0, tmp_path / "clean")
    clean.learn(40, progress=False)
    clean.close()
    assert _progress(tmp_path / "run") == _progress(tmp_path / "clean")


def test_an_env_without_copy_offset_cannot_be_split():
    with pytest.raises(ValueError, match="num_workers: env .* takes no copy_offset"):
        WorkerVecEnv("worker_helpers:game_without_offset", 2, 4)


LEARNER = """
from kl_alloc.rl import Trainer, TrainerConfig
config = TrainerConfig.for_env("matrix", num_envs=4, num_workers=2)
Trainer("matrix", "hatrpo", config, 0, {out!r}).learn(10**9, progress=False)
"""


# SIGTERM kills like SIGKILL (no handler, no clean-up): both rely on PR_SET_PDEATHSIG
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_no_worker_outlives_the_learner(tmp_path, sig):
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    out = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(LEARNER.format(out=str(out)))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        progress = out / "progress.jsonl"
        while not (progress.exists() and progress.read_text().count("\n") >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the learner did not get going: {proc.communicate()}")
            time.sleep(0.1)
        workers = descendants(proc.pid)
        assert len(workers) >= 2, "two env worker processes"
        os.kill(proc.pid, sig)
        proc.wait(180)  # generous: a fresh-clone CI run at load ~8 once took more than 60 s
        assert still_alive(workers) == [], f"a worker outlived the learner ({sig!r})"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
