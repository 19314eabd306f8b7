"""The render hook of the env interface (``render_frame`` / ``render_fps``, what ``kl-alloc
evaluate --video`` draws): pictures of the right shape that follow the simulation, and drawing
never changes it (the same seed gives the same steps whether or not every step is drawn)."""

from __future__ import annotations

import numpy as np
import pytest

from kl_alloc.envs import make_env
from kl_alloc.envs.base import RenderError


def _play(env, draw: bool, steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(rewards and observations of ``steps`` seeded random steps, frames if ``draw``)."""
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    seen, frames = [np.concatenate(obs, axis=1)], []
    for _ in range(steps):
        if draw:
            frames.append(env.render_frame(0))
        actions = [
            rng.integers(0, s.n, env.num_envs)
            if s.is_discrete
            else rng.uniform(-1, 1, (env.num_envs, s.dim))
            for s in env.action_specs
        ]
        res = env.step(actions)
        seen += [res.reward[:, None], np.concatenate(res.obs, axis=1)]
    return seen, frames


def _check(name: str, shape: tuple[int, int, int], fps: float, steps: int = 8, **kwargs) -> None:
    drawn = make_env(name, num_envs=2, seed=0, render_mode="rgb_array", **kwargs)
    plain = make_env(name, num_envs=2, seed=0, **kwargs)
    try:
        try:
            with_frames, frames = _play(drawn, True, steps)
        except RenderError as err:
            pytest.skip(f"{name} cannot render on this machine: {err}")
        without, _ = _play(plain, False, steps)
    finally:
        drawn.close()
        plain.close()
    assert all(np.array_equal(a, b) for a, b in zip(with_frames, without, strict=True))
    assert drawn.render_fps == fps
    assert all(f.shape == shape and f.dtype == np.uint8 for f in frames)
    assert frames[0].std() > 1.0
    assert max(np.abs(f.astype(int) - frames[0]).mean() for f in frames[1:]) > 0.1


def test_mpe_renders():
    pytest.importorskip("mpe2")
    _check("simple_speaker_listener_v4", (700, 700, 3), 10.0)


def test_vmas_renders():
    pytest.importorskip("vmas")
    _check("vmas", (700, 700, 3), 10.0, scenario="balance")


def test_games_cannot_render_and_bad_modes_are_refused():
    with pytest.raises(RenderError, match="MatrixGame cannot render frames"):
        make_env("matrix", num_envs=2).render_frame(0)
    pytest.importorskip("vmas")
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        make_env("vmas", num_envs=1, render_mode="human")
