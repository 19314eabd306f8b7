"""``kl-alloc evaluate --video``: a watchable file of the deterministic policy (right frame count
and size, frames that move), the evaluation numbers unchanged, the video's first episode equal
to the evaluation's, and a one-line error for envs that cannot render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.cli import main

pytest.importorskip("imageio_ffmpeg")
iio = pytest.importorskip("imageio.v2")


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def read_frames(path: Path) -> list[np.ndarray]:
    with iio.get_reader(path) as reader:
        return [np.asarray(f) for f in reader]


def assert_watchable(frames: list[np.ndarray], count: int, shape: tuple[int, int, int]) -> None:
    assert len(frames) == count
    assert all(f.shape == shape and f.dtype == np.uint8 for f in frames)
    assert frames[0].std() > 1.0  # a picture, not a blank frame
    moved = [np.abs(f.astype(int) - frames[0]).mean() for f in frames[1:]]
    assert max(moved) > 0.5  # something moves


@pytest.fixture(scope="module")
def speaker_listener_run(tmp_path_factory) -> Path:
    pytest.importorskip("mpe2")
    out = tmp_path_factory.mktemp("video") / "sl"
    steps = 1600  # two iterations of the MPE preset (16 copies x 50 steps)
    assert run_cli("train", "--env", "simple_speaker_listener_v4", "--algo", "hatrpo-w",
                   "--seed", "0", "--steps", steps, "--out", out, "--no-progress") == 0  # fmt: skip
    return out


def test_mpe_video_is_watchable_and_leaves_the_evaluation_alone(
    speaker_listener_run, tmp_path, capsys
):
    capsys.readouterr()
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--json") == 0
    plain = json.loads(capsys.readouterr().out)
    video_path = tmp_path / "sub" / "sl.mp4"
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--json",
                   "--video", video_path, "--video-episodes", "2") == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    video = result.pop("video")
    assert result == plain  # the evaluation numbers do not change with --video
    # two 25-step episodes: one frame per step (the first observation, then after each step
    # but an episode's last), 700 x 700 at MPE's 10 fps
    assert video["frames"] == 50 and video["episodes"] == 2 and video["size"] == [700, 700]
    assert video["fps"] == 10.0
    # the same seed and copy: the video's first episode is the evaluation's episode
    assert video["returns"][0] == pytest.approx(plain["return_mean"], abs=1e-9)
    assert_watchable(read_frames(video_path), 50, (700, 700, 3))
    assert not list(video_path.parent.glob(".*partial*"))


def test_gif_and_text_output(speaker_listener_run, tmp_path, capsys):
    path = tmp_path / "sl.gif"
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--video", path,
                   "--fps", "5") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"video: {path}: 25 frames (700x700, 5 fps), 1 episode, returns" in out
    frames = iio.mimread(path)
    # pillow merges identical consecutive frames into one (adding their durations)
    assert 2 < len(frames) <= 25 and frames[0].shape[:2] == (700, 700)


def test_video_size(speaker_listener_run, tmp_path, capsys):
    """--video-size WxH: every frame resampled to it (the env draws 700 x 700), the same
    episode; one number gives a square."""
    capsys.readouterr()
    path = tmp_path / "small.mp4"
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--json",
                   "--video", path, "--video-size", "160x120") == 0  # fmt: skip
    video = json.loads(capsys.readouterr().out)["video"]
    assert video["size"] == [120, 160] and video["frames"] == 25
    assert_watchable(read_frames(path), 25, (120, 160, 3))
    full = tmp_path / "full.mp4"
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--json",
                   "--video", full) == 0  # fmt: skip
    big = json.loads(capsys.readouterr().out)["video"]
    assert big["returns"] == video["returns"]  # resampling does not touch the episode
    gif = tmp_path / "square.gif"
    assert run_cli("evaluate", speaker_listener_run, "--episodes", "1", "--video", gif,
                   "--video-size", "64") == 0  # fmt: skip
    assert "(64x64, 10 fps)" in capsys.readouterr().out
    assert iio.mimread(gif)[0].shape[:2] == (64, 64)


def test_parse_size():
    from kl_alloc.rl.video import parse_size

    assert parse_size("320x240") == (320, 240) and parse_size("96") == (96, 96)
    assert parse_size("2X8192") == (2, 8192)
    for bad in ("", "x", "10x", "1x10", "10x20x30", "ax3", "9000", "-4"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_video_errors(speaker_listener_run, tmp_path, capsys):
    def error(*args) -> str:
        with pytest.raises(SystemExit) as exc:
            run_cli("evaluate", *args)
        assert exc.value.code == 2
        return capsys.readouterr().err

    assert "must end in .mp4 or .gif" in error(speaker_listener_run, "--video", tmp_path / "x.avi")
    assert "--video-size: expected WIDTHxHEIGHT" in error(
        speaker_listener_run, "--video", tmp_path / "x.mp4", "--video-size", "big"
    )
    assert "--video-episodes must be >= 1" in error(
        speaker_listener_run, "--video", tmp_path / "x.mp4", "--video-episodes", "0"
    )
    game = tmp_path / "matrix"
    assert run_cli("train", "--env", "matrix", "--steps", "4000", "--out", game,
                   "--no-progress") == 0  # fmt: skip
    capsys.readouterr()
    message = error(game, "--video", tmp_path / "m.mp4")
    assert message.count("\n") == 1  # one line
    assert "--video: env 'matrix' cannot render frames" in message
    assert "mamujoco" in message and "vmas" in message and "simple_spread_v3" in message
    assert not (tmp_path / "m.mp4").exists()


def _mujoco_render_problem() -> str | None:
    """Why MuJoCo cannot render here (None: it can)."""
    try:
        from kl_alloc.envs import make_env
        from kl_alloc.envs.base import RenderError

        env = make_env("mamujoco", num_envs=1, seed=0, render_mode="rgb_array")
    except ImportError as err:
        return f"no MuJoCo extra ({err})"
    try:
        env.reset(seed=0)
        env.render_frame(0)
    except RenderError as err:
        return f"no OpenGL for MuJoCo: {err}"
    finally:
        env.close()
    return None


def test_mujoco_video(tmp_path):
    problem = _mujoco_render_problem()
    if problem is not None:
        pytest.skip(problem)
    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer, TrainerConfig
    from kl_alloc.rl.evaluation import deterministic_returns
    from kl_alloc.rl.video import record_video

    env = make_env("mamujoco", num_envs=2, seed=0, max_episode_steps=12)
    config = TrainerConfig.for_env(
        "mamujoco", num_envs=2, rollout_length=12, hidden=(16,), critic_hidden=(16,)
    )
    trainer = Trainer(env, config=config, seed=0)
    trainer.learn(24, progress=False)
    evaluation = trainer.evaluate(1)
    video = record_video(trainer, tmp_path / "ant.mp4", episodes=2)
    assert video["frames"] == 24 and video["fps"] == 20.0 and video["size"] == [480, 480]
    # rendering reads the physics, never changes it: the same two episodes on a 1-copy env
    # that does not render give exactly the video's returns
    plain = make_env("mamujoco", num_envs=1, max_episode_steps=12)
    policy = (trainer.policies, trainer.collector.policy_obs)
    assert deterministic_returns(plain, *policy, 2, video["seed"]) == video["returns"]
    # the evaluation env (2 copies) plays copy 0's first episode too; its batched policy
    # forward may round differently in the last bits
    assert video["returns"][0] == pytest.approx(evaluation["return_mean"], rel=1e-6)
    assert trainer.evaluate(1) == evaluation
    assert_watchable(read_frames(tmp_path / "ant.mp4"), 24, (480, 480, 3))
