"""``kl-alloc evaluate``: the deterministic policy of a run, on its own env (by its spec), and
optionally a video of it (``--video``, :mod:`kl_alloc.rl.video`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kl_alloc.cli.common import CLIError, Formatter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mean and spread of the deterministic policy's return",
        description=(
            "Load RUN's checkpoint and run its deterministic policy (mode / mean action).\n\n"
            "--video PATH also writes --video-episodes whole deterministic episodes to PATH\n"
            "(.mp4, or .gif) from a separate one-copy env built with render_mode='rgb_array',\n"
            "reset with the evaluation's seed: the printed numbers are the same with or without\n"
            "it. Envs that render: mamujoco (MuJoCo, headless through EGL: MUJOCO_GL=egl unless\n"
            "set), the MPE2 tasks and pettingzoo envs whose factory takes render_mode (pygame,\n"
            "off-screen), vmas (pyglet: EGL, else an X display). One frame per step at the env's\n"
            "real-time rate (Ant 20 fps, MPE2 / VMAS 10) unless --fps is given. Needs\n"
            'imageio and imageio-ffmpeg (pip install "kl_alloc[video]").'
        ),
        formatter_class=Formatter,
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a checkpoint.pt file)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="evaluation env seed (default: derived from the run's seed and iteration)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--video", metavar="PATH", default=None, help="write a video of the policy (.mp4, .gif)"
    )
    p.add_argument("--video-episodes", type=int, default=1, help="episodes in the video")
    p.add_argument(
        "--fps", type=float, default=None, help="video frame rate (default: the env's real time)"
    )
    p.add_argument(
        "--video-size",
        metavar="WxH",
        default=None,
        help="resample every frame to WIDTHxHEIGHT, or NxN from one number (default: the env's "
        "own render size: MaMuJoCo 480x480, MPE2 700x700)",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kl_alloc.rl import Trainer

    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    run = Path(args.run)
    path = run if run.is_file() else run / "checkpoint.pt"
    if not path.exists():
        raise CLIError(f"{run}: no checkpoint.pt (is it a run directory that has checkpointed?)")
    if args.video is not None:
        _check_video_args(args)
    trainer = Trainer.load(path)
    if args.video is not None:
        _check_env_renders(trainer)
    result = trainer.evaluate(args.episodes, seed=args.seed)
    video = _write_video(trainer, args) if args.video is not None else None
    if args.json:
        extra = {"video": video} if video is not None else {}
        print(json.dumps({"run": str(args.run), "algo": trainer.algo, **result, **extra}))
        return 0
    name = trainer.env.spec["name"] if getattr(trainer.env, "spec", None) else "env"
    print(
        f"{args.run}: {trainer.algo} on {name}, seed {trainer.seed}, "
        f"iteration {trainer.iteration} ({trainer.env_steps} env steps)"
    )
    print(
        f"return over {result['episodes']} episodes (deterministic policy): "
        f"mean {result['return_mean']:.4f}, std {result['return_std']:.4f}"
    )
    if result.get("expected_reward") is not None:
        print(f"expected reward of the (stochastic) joint policy: {result['expected_reward']:.4f}")
    if video is not None:
        height, width = video["size"]
        returns = ", ".join(f"{r:.4g}" for r in video["returns"])
        print(
            f"video: {video['path']}: {video['frames']} frames ({width}x{height}, "
            f"{video['fps']:g} fps), {video['episodes']} episode{'s' * (video['episodes'] != 1)}, "
            f"returns {returns}"
        )
    return 0


def _check_video_args(args: argparse.Namespace) -> None:
    from kl_alloc.rl.video import VIDEO_SUFFIXES

    if Path(args.video).suffix.lower() not in VIDEO_SUFFIXES:
        raise CLIError(f"--video: {args.video} must end in {' or '.join(VIDEO_SUFFIXES)}")
    if args.video_episodes < 1:
        raise CLIError("--video-episodes must be >= 1")
    if args.fps is not None and not args.fps > 0:
        raise CLIError("--fps must be > 0")
    if args.video_size is not None:
        from kl_alloc.rl.video import parse_size

        try:
            args.video_size = parse_size(args.video_size)
        except ValueError as err:
            raise CLIError(f"--video-size: {err}") from None


def _check_env_renders(trainer: Any) -> None:
    from kl_alloc.envs.base import RenderError
    from kl_alloc.rl.video import check_renders

    spec = getattr(trainer.env, "spec", None) or {}
    try:
        check_renders(spec.get("name", type(trainer.env).__name__))
    except RenderError as err:
        raise CLIError(f"--video: {err}") from None


def _write_video(trainer: Any, args: argparse.Namespace) -> dict[str, Any]:
    from kl_alloc.envs.base import RenderError
    from kl_alloc.rl.video import record_video

    try:
        return record_video(
            trainer, args.video, args.video_episodes, args.seed, args.fps, args.video_size
        )
    except RenderError as err:
        raise CLIError(f"--video: {err}") from None
