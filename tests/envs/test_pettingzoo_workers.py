"""PettingZoo envs in env worker processes: a run's numbers do not depend on the worker count.

Copy ``k`` of a PettingZoo env is reset from child ``copy_offset + k`` of the run's seed
sequence, so a worker holding copies ``[a, b)`` steps them exactly as one process holding all
of them (see kl_alloc.envs.workers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
pytest.importorskip("torch")

from kl_alloc.envs.registry import make_env  # noqa: E402
from kl_alloc.rl import Trainer, TrainerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"wall_time", "seconds_per_iter", "time"}


def _progress(run_dir: Path) -> list[dict]:
    """progress.jsonl without its wall-clock fields."""
    lines = (run_dir / "progress.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _runs(
    tmp_path: Path, env: str, config: TrainerConfig, steps: int, counts=(1, 2, 4)
) -> dict[int, list[dict]]:
    runs = {}
    for workers in counts:
        out = tmp_path / f"w{workers}"
        trainer = Trainer(env, "hatrpo-g", config.replace(num_workers=workers), 5, out)
        trainer.learn(steps, progress=False)
        trainer.close()
        runs[workers] = _progress(out)
    return runs


def test_copies_of_a_slice_reset_as_in_the_whole_env():
    pytest.importorskip("mpe2")
    whole = make_env("simple_speaker_listener_v4", num_envs=4, seed=3)
    part = make_env("simple_speaker_listener_v4", num_envs=2, seed=3, copy_offset=2)
    obs_whole, state_whole = whole.reset()
    obs_part, state_part = part.reset()
    np.testing.assert_array_equal(state_part, state_whole[2:])
    for a, b in zip(obs_part, obs_whole, strict=True):
        np.testing.assert_array_equal(a, b[2:])
    # and copy 0 of an offset-0 env is still the first child of the seed (the old seeding)
    root = np.random.SeedSequence(3)
    assert part.copy_offset == 2 and whole.copy_offset == 0
    assert root.spawn(4)[2].spawn_key == (2,)


def test_speaker_listener_progress_is_identical_for_1_2_and_4_workers(tmp_path):
    pytest.importorskip("mpe2")
    config = TrainerConfig.for_env(
        "simple_speaker_listener_v4",
        num_envs=4,
        rollout_length=30,  # episodes of 25 steps: automatic resets inside the rollout
        hidden=(16,),
        critic_hidden=(16,),
        eval_every=2,
        eval_episodes=2,
    )
    runs = _runs(tmp_path, "simple_speaker_listener_v4", config, 240)  # 2 iterations
    assert len(runs[1]) == 2 and runs[1][-1]["episodes"] > 0
    assert runs[2] == runs[1]
    assert runs[4] == runs[1]


def test_a_users_parallel_env_factory_runs_in_workers(tmp_path, monkeypatch):
    """A plain factory returning a ParallelEnv (tests/user_project/my_pz.py): the PettingZoo
    wrapper takes the copy offset, the user's factory never sees it; the picker's action masks
    and its leaving after step 3 reach the learner from the workers (picking a masked item
    raises in the env)."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "user_project"))
    path = os.environ.get("PYTHONPATH")
    user = str(ROOT / "tests" / "user_project")
    monkeypatch.setenv("PYTHONPATH", user if not path else f"{user}{os.pathsep}{path}")
    config = TrainerConfig.for_env(
        "my_pz:make_env", num_envs=4, rollout_length=8, hidden=(8,), critic_hidden=(8,)
    )
    runs = _runs(tmp_path, "my_pz:make_env", config, 64, counts=(1, 4))  # 2 iterations
    assert len(runs[1]) == 2 and runs[1][-1]["episodes"] > 0
    assert runs[4] == runs[1]
