"""User code for the sweep tests, loaded by ``module:attr`` (``sweep_plugins:DieOnce``) in the
sweep driver and in its worker processes: nothing here is registered with kl_alloc."""

from __future__ import annotations

import os
from pathlib import Path

from kl_alloc.rl.allocators import UniformAllocator

#: the marker file: DieOnce kills its process unless the file exists (and creates it first)
MARKER_VAR = "KL_ALLOC_TEST_DIE_MARKER"
DIE_AT_CALL = 4


class DieOnce(UniformAllocator):
    """HATRPO's uniform split whose process dies (``os._exit``) at its 4th allocation, once:
    the first time it runs with the marker file missing."""

    def __init__(self, carry_leftover: bool = False) -> None:
        super().__init__(carry_leftover)
        self.calls = 0

    def allocate(self, signals):
        self.calls += 1
        marker = os.environ.get(MARKER_VAR)
        if marker and self.calls == DIE_AT_CALL and not Path(marker).exists():
            Path(marker).touch()
            os._exit(9)
        return super().allocate(signals)
