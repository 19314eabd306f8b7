"""Env worker processes: the copies of one env stepped in ``num_workers`` processes.

    env = WorkerVecEnv("mamujoco", num_workers=2, num_envs=20, seed=0, scenario="Ant")

:class:`WorkerVecEnv` is an ordinary :class:`~kl_alloc.envs.base.MultiAgentEnv` of ``num_envs``
copies: the rollout and the trainer see one env and one batched policy forward per agent per
step. Worker ``w`` builds, by name from the registry (MaMuJoCo is not picklable), an env of its
slice of copies ``[a_w, b_w)`` with ``copy_offset=a_w``; actions, observations, states, rewards,
flags, action masks and active agents move through one shared-memory block (a file in
``/dev/shm``, unlinked as soon as every worker has mapped it, so nothing leaks even if every
process is SIGKILLed), commands and the ``info`` dicts through one pipe per worker.

The numbers do not depend on the worker count. This rests on the ``copy_offset`` contract of the
env (its factory must take that keyword): an env of copies ``[a, b)`` built with
``copy_offset=a`` and the same seed produces, copy for copy, exactly what copies ``a..b-1`` of
the whole env produce in one process (MaMuJoCo seeds copy ``k`` from child ``k`` of
``SeedSequence(seed)``, whatever the slicing). The wrapper also resolves a missing seed to one
entropy in the learner, so every worker derives its copies' seeds from the same root.

Processes: workers start with the ``spawn`` method (torch + fork is unsafe), one thread each
(``OMP_NUM_THREADS=1`` and friends while they start), ignore SIGINT (Ctrl-C reaches the whole
process group; the learner stops them), and ask Linux to SIGKILL them when the learner dies
(``PR_SET_PDEATHSIG``; note that the kernel sends it when the *thread* that started them
exits). They are daemonic and closed by a finaliser, so an exception or Ctrl-C in the learner
ends them too. A worker that dies raises :class:`EnvWorkerError` naming the worker, its copies
and the env; the wrapper is then closed (the trainer's last checkpoint is untouched).

``state_dict()`` is the in-process env's own format when the env class can merge and split its
state (``merge_state_dicts`` / ``split_state_dict`` class methods, which MaMuJoCo has), so a
checkpoint resumes under any worker count; otherwise it holds one state per worker and loads
only under the same slicing.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing as mp
import os
import signal
import tempfile
import traceback
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions

__all__ = ["EnvWorkerError", "WorkerVecEnv", "copy_slices"]

logger = logging.getLogger("kl_alloc.envs")

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
_ALIGN = 64


class EnvWorkerError(RuntimeError):
    """An env worker process died or its env raised."""


def copy_slices(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """Worker ``w`` owns copies ``[w n / W, (w + 1) n / W)`` (sizes differ by at most one)."""
    if int(num_workers) < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if int(num_workers) > int(num_envs):
        raise ValueError(
            f"num_workers: {num_workers} workers for {num_envs} env copies; each worker needs "
            "at least one copy"
        )
    n, w = int(num_envs), int(num_workers)
    return [(k * n // w, (k + 1) * n // w) for k in range(w)]


# -- the shared block -----------------------------------------------------------------------------


def _fields(
    n: int,
    obs_sizes: list[int],
    state_size: int,
    specs: list[ActionSpec],
    masked: list[bool] | None = None,
    active: bool = False,
) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Every per-step array: name, shape (leading axis = copy) and dtype; ``mask{i}`` for the
    agents with action masks, ``active`` when the env says which agents are still in."""
    out = []
    for i, s in enumerate(specs):
        shape = (n,) if s.is_discrete else (n, s.dim)
        out.append((f"act{i}", shape, np.dtype(np.int64 if s.is_discrete else np.float64)))
    for i, size in enumerate(obs_sizes):
        out.append((f"obs{i}", (n, size), np.dtype(np.float32)))
        out.append((f"final_obs{i}", (n, size), np.dtype(np.float32)))
    out += [
        ("state", (n, state_size), np.dtype(np.float32)),
        ("final_state", (n, state_size), np.dtype(np.float32)),
        ("reward", (n,), np.dtype(np.float64)),
        ("terminated", (n,), np.dtype(bool)),
        ("truncated", (n,), np.dtype(bool)),
    ]
    for i, has in enumerate(masked or ()):
        if has:
            out.append((f"mask{i}", (n, specs[i].n), np.dtype(bool)))
    if active:
        out.append(("active", (n, len(specs)), np.dtype(bool)))
    return out


def _layout(fields: list) -> tuple[dict[str, tuple[int, tuple[int, ...], np.dtype]], int]:
    """Byte offsets (64-byte aligned) of the fields in one block, and its size."""
    offsets, pos = {}, 0
    for name, shape, dtype in fields:
        offsets[name] = (pos, shape, dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        pos += -(-max(size, 1) // _ALIGN) * _ALIGN
    return offsets, max(pos, _ALIGN)


def _views(buf: mmap.mmap, layout: dict) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype, buffer=buf, offset=off)
        for name, (off, shape, dtype) in layout.items()
    }


def _map(path: str, size: int) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


# -- the worker process ---------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the learner dies (Linux); exit if it is already gone."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the finaliser and the pipe's EOF have to do
        pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    index: int, name: str, kwargs: dict, lo: int, hi: int, seed: Any, conn: Connection, parent: int
) -> None:
    """Build copies ``[lo, hi)`` and serve commands until ``close`` or the learner's end."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from kl_alloc.envs.registry import make_env

    try:
        env = make_env(name, num_envs=hi - lo, seed=seed, copy_offset=lo, **kwargs)
        masks = env.action_masks()
        masked = None if masks is None else [m is not None for m in masks]
        meta = (env.n_agents, list(env.obs_sizes), env.state_size, env.action_specs)
        conn.send(("ok", (*meta, masked, env.active_agents() is not None)))
        _, (path, layout, size) = conn.recv()
        views = {k: v[lo:hi] for k, v in _views(_map(path, size), layout).items()}
        conn.send(("ok", None))
    except EOFError:
        return
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    n_agents = env.n_agents
    while True:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):  # the learner is gone
            break
        try:
            if cmd == "step":
                actions = [views[f"act{i}"].copy() for i in range(n_agents)]
                res = env.step(actions)
                _write(views, env, res.obs, res.state)
                for i in range(n_agents):
                    views[f"final_obs{i}"][...] = res.final_obs[i]
                views["final_state"][...] = res.final_state
                views["reward"][...] = res.reward
                views["terminated"][...] = res.terminated
                views["truncated"][...] = res.truncated
                reply: Any = res.info
            elif cmd == "reset":
                obs, state = env.reset(seed=arg)
                _write(views, env, obs, state)
                reply = None
            elif cmd == "state_dict":
                reply = env.state_dict()
            elif cmd == "load_state_dict":
                reply = env.load_state_dict(arg)
            elif cmd == "call":
                method, args = arg
                reply = getattr(env, method)(*args)
            elif cmd == "close":
                env.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", reply))
        except Exception:
            conn.send(("error", traceback.format_exc()))


def _write(views: dict, env: MultiAgentEnv, obs: list[np.ndarray], state: np.ndarray) -> None:
    """Observations, state, and the action masks and active agents that go with them."""
    for i in range(env.n_agents):
        views[f"obs{i}"][...] = obs[i]
    views["state"][...] = state
    if "active" in views:
        views["active"][...] = env.active_agents()
    masks = env.action_masks() if any(k.startswith("mask") for k in views) else None
    for i, m in enumerate(masks or ()):
        if m is not None:
            views[f"mask{i}"][...] = m


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Children started inside inherit one-thread BLAS/OpenMP settings (unless set already)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _shutdown(procs: list, conns: list, buf: list) -> None:
    """Stop the workers (politely, then by force) and release the shared block."""
    for conn in conns:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("close", None))
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
    for conn in conns:
        conn.close()
    for b in buf:
        with contextlib.suppress(BufferError):
            b.close()


# -- the learner's side ---------------------------------------------------------------------------


class WorkerVecEnv(MultiAgentEnv):
    """``num_envs`` copies of the registered env ``name``, stepped in ``num_workers`` processes.

    Args:
        name: a registry name or ``module:attr`` factory (rebuilt in each worker; the factory
            must take ``copy_offset``, see the module docstring).
        num_workers: worker processes (at most ``num_envs``).
        num_envs: copies in all.
        seed: the default seed of the first :meth:`reset` (``None``: fresh entropy, drawn once
            here and shared by every worker).
        **kwargs: the env's own keywords.
    """

    def __init__(
        self,
        name: str,
        num_workers: int,
        num_envs: int,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        from kl_alloc.envs.registry import accepted_kwargs, get_env_entry, takes_num_envs

        # (a factory without num_envs is a PettingZoo env's: the wrapper takes copy_offset)
        accepted = accepted_kwargs(name)
        if (
            accepted is not None
            and "copy_offset" not in accepted
            and takes_num_envs(get_env_entry(name).load_factory())
        ):
            raise ValueError(
                f"num_workers: env {name!r} cannot be split across worker processes: its factory "
                "takes no copy_offset (the index of its first copy, see kl_alloc.envs.workers)"
            )
        self.num_envs = int(num_envs)
        self.bounds = copy_slices(self.num_envs, num_workers)
        self.num_workers = len(self.bounds)
        self.name = str(name)
        self.spec = {"name": self.name, "kwargs": {**kwargs, "num_envs": self.num_envs}}
        self._kwargs = dict(kwargs)
        self._seed = seed
        self._seeded = False
        self._closed = False
        self._procs: list = []
        self._conns: list[Connection] = []
        self._buf: list[mmap.mmap] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, self._buf)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], num_workers: int, seed: int | None = None
    ) -> WorkerVecEnv:
        """The worker version of an env made by ``make_env`` (its ``env.spec``)."""
        kwargs = dict(spec["kwargs"])
        num_envs = kwargs.pop("num_envs", None)
        if num_envs is None:
            raise ValueError(f"env {spec['name']!r}: its spec has no num_envs to split")
        return cls(spec["name"], num_workers, num_envs, seed=seed, **kwargs)

    def _describe(self, w: int) -> str:
        lo, hi = self.bounds[w]
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"env worker {w} (copies {lo}..{hi - 1} of env {self.name!r}({kwargs}))"

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        with _one_thread():
            for w, (lo, hi) in enumerate(self.bounds):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(w, self.name, self._kwargs, lo, hi, self._seed, child_end, os.getpid()),
                    name=f"kl_alloc-env-worker-{w}",
                    daemon=True,
                )
                proc.start()
                child_end.close()
                self._procs.append(proc)
                self._conns.append(parent_end)
        metas = [self._recv(w) for w in range(self.num_workers)]
        self.n_agents, obs_sizes, self.state_size, specs, self._masked, self._active = metas[0]
        self.obs_sizes, self.action_specs = list(obs_sizes), list(specs)
        for w, meta in enumerate(metas[1:], 1):
            if meta[:3] != metas[0][:3] or meta[4:] != metas[0][4:]:
                raise EnvWorkerError(f"{self._describe(w)} built a different env: {meta}")
        fields = _fields(self.num_envs, self.obs_sizes, self.state_size, self.action_specs,
                         self._masked, self._active)  # fmt: skip
        layout, size = _layout(fields)
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="kl_alloc-env-", dir=shm_dir)
        try:
            os.ftruncate(fd, size)
            self._buf.append(mmap.mmap(fd, size))
            os.close(fd)
            for conn in self._conns:
                conn.send(("attach", (path, layout, size)))
            for w in range(self.num_workers):
                self._recv(w)
        finally:
            os.unlink(path)  # every worker has mapped it (or failed): nothing to leak
        self._views = _views(self._buf[0], layout)

    # -- talking to the workers ---------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("env: this WorkerVecEnv is closed")

    def _recv(self, w: int) -> Any:
        conn, proc = self._conns[w], self._procs[w]
        ready = wait([conn, proc.sentinel])
        try:
            if conn not in ready:
                raise EOFError
            status, payload = conn.recv()
        except (EOFError, OSError):
            proc.join(timeout=5)
            code = proc.exitcode
            self.close()
            raise EnvWorkerError(
                f"{self._describe(w)} died (exit code {code}); the env workers are stopped. "
                "A run continues from its last checkpoint (--resume)"
            ) from None
        if status == "error":
            self.close()
            raise EnvWorkerError(f"{self._describe(w)} raised:\n{payload}")
        return payload

    def _all(self, cmd: str, args: list[Any] | None = None) -> list[Any]:
        """Send ``cmd`` to every worker (``args[w]`` each), then collect every reply."""
        self._check_open()
        try:
            for w, conn in enumerate(self._conns):
                conn.send((cmd, None if args is None else args[w]))
            return [self._recv(w) for w in range(self.num_workers)]
        except BaseException:  # Ctrl-C or a dead worker: the pipes are out of step
            self.close()
            raise

    # -- the interface --------------------------------------------------------------------------
    def _obs_state(self) -> tuple[list[np.ndarray], np.ndarray]:
        v = self._views
        return [v[f"obs{i}"].copy() for i in range(self.n_agents)], v["state"].copy()

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Reset every copy. The first reset without a seed uses the constructor's, and without
        one draws a single entropy here (so all workers derive their copies' seeds from it)."""
        if seed is None and not self._seeded:
            seed = self._seed if self._seed is not None else np.random.SeedSequence().entropy
        self._all("reset", [seed] * self.num_workers)
        self._seeded = True
        return self._obs_state()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        self._check_open()
        actions = check_actions(self, actions)
        v = self._views
        for i, a in enumerate(actions):
            v[f"act{i}"][...] = a
        infos = self._all("step")
        obs, state = self._obs_state()
        return StepResult(
            obs=obs,
            state=state,
            reward=v["reward"].copy(),
            terminated=v["terminated"].copy(),
            truncated=v["truncated"].copy(),
            final_obs=[v[f"final_obs{i}"].copy() for i in range(self.n_agents)],
            final_state=v["final_state"].copy(),
            info=self._merge_info(infos),
        )

    def _merge_info(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-copy arrays are concatenated in copy order; anything else becomes a list with
        one entry per worker."""
        merged: dict[str, Any] = {}
        for key in infos[0] if infos and infos[0] else ():
            values = [info.get(key) for info in infos]
            if all(
                isinstance(x, np.ndarray) and x.ndim and len(x) == hi - lo
                for x, (lo, hi) in zip(values, self.bounds, strict=True)
            ):
                merged[key] = np.concatenate(values)
            else:
                merged[key] = values
        return merged

    def expected_reward(self, policy_probs: Any) -> float | None:
        return self._call(0, "expected_reward", policy_probs)

    def action_masks(self) -> list[np.ndarray | None] | None:
        """The env's action masks of the current observations (from the shared block)."""
        self._check_open()
        if self._masked is None:
            return None
        v = self._views
        return [v[f"mask{i}"].copy() if has else None for i, has in enumerate(self._masked)]

    def active_agents(self) -> np.ndarray | None:
        """The env's active agents (from the shared block), or None if it does not say."""
        self._check_open()
        return self._views["active"].copy() if self._active else None

    def native_spaces(self) -> list[dict[str, Any]] | None:
        return self._call(0, "native_spaces")

    def _call(self, w: int, method: str, *args: Any) -> Any:
        self._check_open()
        try:
            self._conns[w].send(("call", (method, args)))
            return self._recv(w)
        except BaseException:
            self.close()
            raise

    # -- checkpointing ----------------------------------------------------------------------------
    def _env_class(self) -> Any:
        from kl_alloc.envs.registry import get_env_entry

        return get_env_entry(self.name).load_factory()

    def state_dict(self) -> dict[str, Any]:
        """The in-process env's format if its class can merge states (any worker count loads
        it), else one state per worker with the slicing."""
        states = self._all("state_dict")
        cls = self._env_class()
        if hasattr(cls, "merge_state_dicts"):
            return cls.merge_state_dicts(states)
        return {"env_workers": {"bounds": self.bounds, "states": states}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cls = self._env_class()
        if "env_workers" in state:
            saved = state["env_workers"]
            if [tuple(b) for b in saved["bounds"]] != self.bounds:
                raise ValueError(
                    f"state: saved by env workers owning copies {saved['bounds']}, but these "
                    f"own {self.bounds}; resume with the same num_workers"
                )
            states = saved["states"]
        elif hasattr(cls, "split_state_dict"):
            states = cls.split_state_dict(state, self.bounds)
        else:
            raise ValueError(
                f"state: env {self.name!r} has no split_state_dict, so a state saved in one "
                "process cannot be loaded into worker processes; resume with num_workers=1"
            )
        self._all("load_state_dict", states)
        self._seeded = True

    def close(self) -> None:
        """Stop the workers; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._views = {}
        self._finalizer()
