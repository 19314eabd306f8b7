"""Keep third-party noise out of the user's way, without losing it.

Two sources of noise come with Multi-Agent MuJoCo:

- ``import gymnasium_robotics`` prints a release notice to ``sys.stderr`` (a plain ``print``, so
  ``warnings`` filters do not stop it);
- MuJoCo reports model-compiler deprecations (HalfCheetah's ``settotalmass``) and physics
  warnings through its user-warning hook, whose default prints to the console and appends to
  ``MUJOCO_LOG.TXT`` in the current directory.

Both are re-emitted through :mod:`logging` (logger ``kl_alloc.envs``) instead, so a user who
wants them configures logging as usual.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

logger = logging.getLogger("kl_alloc.envs")


@contextlib.contextmanager
def stderr_to_log(what: str) -> Iterator[None]:
    """Capture what is written to ``sys.stderr`` inside the block; log it at DEBUG level."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logger.debug("%s wrote to stderr: %s", what, text)


class MujocoWarningsToLog:
    """Route MuJoCo's user warnings to :mod:`logging` while the context is active.

    MuJoCo's warning hook is process-global, so it is installed only around our own calls into
    MuJoCo (model builds, steps, resets) and the previous hook is restored afterwards. Warnings
    while building a model are compiler deprecations: DEBUG. Warnings while simulating (an
    unstable simulation, a full contact buffer) matter to the user: WARNING.
    """

    def __init__(self, level: int) -> None:
        import mujoco

        self._mujoco = mujoco
        self._level = level
        self._previous = None

    def _log(self, message: str) -> None:
        logger.log(self._level, "MuJoCo: %s", message.strip())

    def __enter__(self) -> MujocoWarningsToLog:
        self._previous = self._mujoco.get_mju_user_warning()
        self._mujoco.set_mju_user_warning(self._log)
        return self

    def __exit__(self, *exc: object) -> None:
        self._mujoco.set_mju_user_warning(self._previous)
        self._previous = None
