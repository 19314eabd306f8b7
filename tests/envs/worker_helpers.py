"""Helpers of test_workers: an env whose worker dies on cue, and /proc process listings.

Importable by name (``worker_helpers:DyingGame``) in env worker processes: pytest puts this
directory on ``sys.path`` and spawned workers inherit it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kl_alloc.envs.matrix_game import MatrixGame


class DyingGame(MatrixGame):
    """The matrix game, except that the process holding copy ``die_copy`` exits (code 3, no
    clean-up, as a crash would) on its ``die_on_step``-th step."""

    def __init__(self, *, die_on_step: int, die_copy: int, copy_offset: int = 0, **kwargs):
        super().__init__(copy_offset=copy_offset, **kwargs)
        self._die = copy_offset <= die_copy < copy_offset + self.num_envs
        self._die_on_step = int(die_on_step)
        self._steps = 0

    def step(self, actions):
        self._steps += 1
        if self._die and self._steps == self._die_on_step:
            os._exit(3)
        return super().step(actions)


def game_without_offset(num_envs: int = 4, seed: int | None = None) -> MatrixGame:
    """A kl_alloc env factory (it takes num_envs) without ``copy_offset``: cannot be split."""
    return MatrixGame(num_envs=num_envs, seed=seed)


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def still_alive(pids: list[int], within: float = 15.0) -> list[int]:
    """The PIDs still alive (zombies count as gone) after waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if (st := proc_stat(p)) is not None and st[1] != "Z"]
        time.sleep(0.1)
    return alive
