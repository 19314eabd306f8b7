"""Videos of a run's deterministic policy (``kl-alloc evaluate RUN --video PATH``).

    info = record_video(trainer, "ant.mp4", episodes=1)   # {"path", "frames", "returns", ...}

The frames come from a **dedicated render env**: the run's env rebuilt from its registry spec
with one copy and ``render_mode="rgb_array"`` (see :mod:`kl_alloc.envs.base`). The evaluation
env is never touched, so ``evaluate`` prints the same numbers with or without ``--video``. The
render env is reset with the evaluation's seed (``--seed``, else the one derived from the run's
seed and iteration) and plays the deterministic policy (mode / mean action, the frozen
observation normalisation) for ``episodes`` whole episodes in a row. Where an env seeds copy
``k`` from the seed and ``k`` alone (MaMuJoCo, PettingZoo and MPE2), these are the evaluation's
copy-0 episodes: the first video episode is the first evaluation episode (the returns are
logged to compare). vmas draws the initial states of all copies in one batch, so for VMAS they
are deterministic episodes from the same seed, not the evaluation's.

Frames: one for the first observation of each episode and one after every step except an
episode's last (the env resets a finished copy within that step, so its final state is never
drawn): an episode of ``L`` steps gives ``L`` frames. Frames keep the env's own render size
(MaMuJoCo 480 x 480, MPE2 700 x 700) unless ``size`` (``--video-size WxH``) asks for another:
each frame is then resampled with pillow's Lanczos filter (pillow comes with imageio). The
frame rate is the env's ``render_fps`` (real time: MaMuJoCo Ant 20, MPE2 and VMAS 10), else
:data:`DEFAULT_FPS`.

Files are written with ``imageio``, by extension: ``.mp4`` (H.264 through imageio-ffmpeg's own
ffmpeg binary, streamed frame by frame; odd sizes are resized to even ones, as yuv420p needs)
or ``.gif`` (pillow; kept in memory until closed, so use ``.mp4`` for long episodes; pillow
merges identical consecutive frames into one frame of their summed duration, so a GIF may hold
fewer frames than were drawn, at the same timing). A log line per finished episode (its return
and length) and one for the written file (its frame count) show the progress: drawing MuJoCo in
software is slow (about 0.1 s a frame here, so a 1000-step Ant episode takes minutes).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kl_alloc.envs.base import MultiAgentEnv, RenderError
from kl_alloc.rl.evaluation import default_eval_seed, deterministic_actions
from kl_alloc.rl.policies import Policy

__all__ = [
    "DEFAULT_FPS",
    "VIDEO_SUFFIXES",
    "check_renders",
    "make_render_env",
    "parse_size",
    "record_episodes",
    "record_video",
]

logger = logging.getLogger(__name__)

#: frames per second when the env does not say (``render_fps`` None)
DEFAULT_FPS = 30.0
VIDEO_SUFFIXES = (".mp4", ".gif")
#: the largest width or height ``size`` may ask for
MAX_SIZE = 8192
INSTALL_HINT = 'writing videos needs imageio and imageio-ffmpeg: pip install "kl_alloc[video]"'


def _takes_render_mode(name: str) -> bool:
    from kl_alloc.envs.registry import get_env_entry

    try:
        return "render_mode" in inspect.signature(get_env_entry(name).load_factory()).parameters
    except (TypeError, ValueError):
        return False


def render_env_names() -> list[str]:
    """Registered envs whose factory names ``render_mode`` (the ones ``--video`` can draw)."""
    from kl_alloc.envs.registry import registered_entries

    return [e.name for e in registered_entries() if _takes_render_mode(e.name)]


def check_renders(name: str) -> None:
    """:class:`RenderError` naming env ``name`` and the envs that can render, if its factory
    takes no ``render_mode`` (factories taking ``**kwargs`` are given the benefit of the doubt)."""
    from kl_alloc.envs.registry import accepted_kwargs

    accepted = accepted_kwargs(name)
    if accepted is not None and "render_mode" not in accepted:
        raise RenderError(
            f"env {name!r} cannot render frames (its factory takes no render_mode); --video "
            f"works with {', '.join(render_env_names())} and your own envs whose factory takes "
            "render_mode (PettingZoo envs do)"
        )


def make_render_env(spec: dict[str, Any]) -> MultiAgentEnv:
    """The env of ``spec`` (``{"name", "kwargs"}``) with one copy and ``render_mode="rgb_array"``
    (:func:`check_renders` first)."""
    from kl_alloc.envs.registry import make_env

    name = spec["name"]
    check_renders(name)
    kwargs = {**spec["kwargs"], "num_envs": 1, "render_mode": "rgb_array"}
    return make_env(name, **kwargs)


@torch.no_grad()
def record_episodes(
    env: MultiAgentEnv,
    policies: list[Policy],
    policy_obs: Callable[[list[np.ndarray]], list[torch.Tensor]],
    episodes: int,
    seed: int,
    on_frame: Callable[[np.ndarray], None],
    max_steps: int = 1_000_000,
) -> list[float]:
    """Play ``episodes`` deterministic episodes on copy 0 of ``env`` from ``reset(seed)``,
    handing each frame to ``on_frame`` (see the module docstring); returns their returns."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    obs, _ = env.reset(seed=seed)
    on_frame(env.render_frame(0))
    returns: list[float] = []
    acc, length = 0.0, 0
    for _ in range(max_steps):
        res = env.step(deterministic_actions(env, policies, policy_obs, obs))
        acc += float(res.reward[0])
        length += 1
        if res.terminated[0] or res.truncated[0]:
            returns.append(acc)
            logger.info("video episode %d/%d: return %.4g, %d steps", len(returns), episodes,
                        acc, length)  # fmt: skip
            acc, length = 0.0, 0
            if len(returns) == episodes:
                return returns
        obs = res.obs
        on_frame(env.render_frame(0))
    raise RuntimeError(f"video: {episodes} episodes did not end within {max_steps} steps")


def _writer(path: Path, fps: float) -> Any:
    try:
        import imageio.v2 as iio
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    if path.suffix.lower() == ".gif":
        return iio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return iio.get_writer(path, fps=fps, codec="libx264", macro_block_size=2)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (``"320x240"``) or ``"N"`` (square) -> ``(width, height)``, each in
    [2, :data:`MAX_SIZE`]; ValueError naming the expected form otherwise."""
    parts = text.lower().split("x")
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        size = tuple(int(v) for v in parts) * (3 - len(parts))
    except ValueError:
        raise ValueError(
            f"expected WIDTHxHEIGHT (e.g. 320x240) or one number, got {text!r}"
        ) from None
    return _checked_size(size, text)


def _checked_size(size: tuple[int, ...], given: object) -> tuple[int, int]:
    if not all(2 <= v <= MAX_SIZE for v in size):
        raise ValueError(f"width and height must be in [2, {MAX_SIZE}], got {given!r}")
    return size[0], size[1]


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 resampled to ``size`` = (width, height) (Lanczos, pillow)."""
    from PIL import Image

    if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def record_video(
    trainer: Any,
    path: str | Path,
    episodes: int = 1,
    seed: int | None = None,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Write ``episodes`` deterministic episodes of ``trainer``'s policy to ``path`` (``.mp4``
    or ``.gif``); returns ``{"path", "frames", "episodes", "returns", "fps", "size", "seed"}``
    (``size`` = (height, width) of the frames written). ``size`` = (width, height): every frame
    resampled to it (default: the env's own render size)."""
    from kl_alloc.envs.registry import env_spec

    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"path: {path} must end in {' or '.join(VIDEO_SUFFIXES)}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if size is not None:
        size = _checked_size((int(size[0]), int(size[1])), size)
    spec = env_spec(trainer.env)
    if spec is None:
        raise RenderError(
            f"{type(trainer.env).__name__} was not made by make_env: no spec to build a render "
            "env from"
        )
    if seed is None:
        seed = default_eval_seed(trainer.seed, trainer.iteration)
    env = make_render_env(spec)
    frames: list[tuple[int, int]] = []
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # renamed once complete
    try:
        fps = float(fps or env.render_fps or DEFAULT_FPS)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = _writer(partial, fps)
        try:

            def on_frame(frame: np.ndarray) -> None:
                if size is not None:
                    frame = resize_frame(frame, size)
                writer.append_data(frame)
                frames.append(frame.shape[:2])

            returns = record_episodes(
                env, trainer.policies, trainer.collector.policy_obs, int(episodes), seed, on_frame
            )
        finally:
            writer.close()
        partial.replace(path)
    finally:
        env.close()
        partial.unlink(missing_ok=True)
    logger.info("wrote %s: %d frames, %d episode(s) at %g fps", path, len(frames), episodes, fps)
    return {
        "path": str(path),
        "frames": len(frames),
        "episodes": len(returns),
        "returns": returns,
        "fps": fps,
        "size": list(frames[0]),
        "seed": int(seed),
    }
