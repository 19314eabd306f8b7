"""The training loop: HATRPO, HATRPO-W and HATRPO-G behind one small API.

    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    trainer = Trainer(make_env("matrix", num_envs=4000), algo="hatrpo-g", seed=0, out_dir="runs/g")
    trainer.learn(200_000)                 # absolute target: env steps since the run started
    trainer.evaluate(10)                   # deterministic policy (mode / mean action)
    trainer.predict(obs)                   # per-agent actions (kl_alloc.rl.export)
    trainer.export_policy("policy.pt")     # kl_alloc.load_policy("policy.pt"): torch only
    trainer.save("g.pt"); Trainer.load("g.pt")
    Trainer.resume("runs/g").learn(400_000)   # continue a killed or finished run, bit-for-bit

One iteration: rollout -> critic values -> GAE -> normalised advantages -> the sequential
trust-region update driven by the allocator (:mod:`kl_alloc.rl.update`) -> critic fit -> logs.

Checkpoints (``out_dir/checkpoint.pt``, every ``checkpoint_every`` iterations and at the end,
written atomically) hold the policies, critic and its optimizer, observation/value normalisers,
the torch generator and numpy RNG states, ``env.state_dict()``, the collector's current
observations and episode accumulators, the iteration counters and the byte offsets of the
telemetry files. A resumed run truncates the telemetry back to its checkpoint and replays from
there to the same numbers as an uninterrupted run (wall-clock fields aside). An env that cannot
save its state (``env.exact_state`` False: PettingZoo envs) is instead reset from a seed derived
from the run seed and the checkpoint's iteration, with a warning: the continuation is
reproducible but differs from an uninterrupted run (episodes in flight are cut).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kl_alloc.envs.base import MultiAgentEnv
from kl_alloc.methods import make_allocator
from kl_alloc.rl import checkpoint as ckpt_io
from kl_alloc.rl.allocators import Allocator
from kl_alloc.rl.build import (
    build_networks,
    env_spec,
    in_workers,
    make_named_env,
    torch_device,
    wrap_parallel_env,
)
from kl_alloc.rl.callbacks import Callback, ProgressBar, chain
from kl_alloc.rl.config import EXECUTION_FIELDS, TrainerConfig
from kl_alloc.rl.evaluation import default_eval_seed, deterministic_returns
from kl_alloc.rl.export import PolicyPredictor, save_policy, trainer_payload, trainer_predictor
from kl_alloc.rl.gae import compute_gae, normalize_advantages
from kl_alloc.rl.rollout import RolloutCollector
from kl_alloc.rl.update import AgentBatch, SequentialUpdate, TRPOSettings
from kl_alloc.rundir import (
    CHECKPOINT,
    DONE,
    FORMAT_VERSION,
    RunWriter,
    read_progress,
    write_progress_csv,
)

logger = logging.getLogger(__name__)


def allocator_class(allocator: Any) -> str:
    """``module:QualName`` of an allocator's class: what a run records of its rule."""
    cls = type(allocator)
    return f"{cls.__module__}:{cls.__qualname__}"


class Trainer:
    """Trains one policy per agent and a centralised critic on a :class:`MultiAgentEnv`.

    Args:
        env: an env instance, or a registered name (built with ``config.num_envs`` copies), or
            a PettingZoo ``ParallelEnv`` (wrapped: ``config.num_envs`` deep copies of it).
        algo: "hatrpo" (uniform split, random order; the default), "hatrpo-w" (water-filling),
            "hatrpo-g" (greedy, re-scored), or any method name / ``module:attr`` rule. With
            ``allocator`` given it only names the run (default: the allocator's class,
            ``module:QualName``).
        config: a :class:`TrainerConfig`; default: the env's preset if there is one
            (``TrainerConfig.for_env``), else the plain defaults.
        seed: seeds network initialisation, action sampling, the update order and the env.
        out_dir: the run directory (see :mod:`kl_alloc.rundir`); None = write nothing.
        allocator: a custom :class:`~kl_alloc.rl.allocators.Allocator`. The run records its
            class; resuming needs an allocator of that class (``Trainer.resume(run_dir,
            allocator=...)``), or one that ``algo`` builds.
        eval_env: the env :meth:`evaluate` plays on. Default: a fresh copy from the registry
            spec (envs made by ``make_env``), else a deep copy of ``env``.

    Sets ``torch.set_num_threads(1)``: on a shared CPU, more threads make TRPO's many small
    ops far slower (run seeds as separate processes instead).
    """

    def __init__(
        self,
        env: MultiAgentEnv | str,
        algo: str | None = None,
        config: TrainerConfig | None = None,
        seed: int = 0,
        out_dir: str | Path | None = None,
        allocator: Allocator | None = None,
        eval_env: MultiAgentEnv | None = None,
    ) -> None:
        torch.set_num_threads(1)
        if isinstance(env, str):
            if config is None:
                config = TrainerConfig.for_env(env)
            self.device = torch_device(config.device)
            env = make_named_env(
                env, config.num_workers, num_envs=config.num_envs, seed=seed, **config.env_kwargs
            )
        env = wrap_parallel_env(env, config, seed)
        spec = env_spec(env)
        if config is None:
            config = TrainerConfig.for_env(spec["name"]) if spec else TrainerConfig()
        self.device = torch_device(config.device)
        env = in_workers(env, config.num_workers)
        self.env = env
        self.config = config
        self.seed = int(seed)
        self.out_dir = None if out_dir is None else Path(out_dir)
        if allocator is None:
            algo = "hatrpo" if algo is None else algo
            try:
                allocator = make_allocator(algo, config)
            except ValueError as exc:  # unknown name or a plug-in that does not load
                raise ValueError(f"algo: {exc}") from None
        elif algo is None:  # the run is named after its rule, not filed under HATRPO
            algo = allocator_class(allocator)
        self.algo = algo
        self.allocator = allocator
        self.n_agents = env.n_agents
        self.delta_total = config.budget(self.n_agents)

        self.policies, self.critic = build_networks(env, config, self.seed)
        for net in (*self.policies, self.critic):
            net.to(self.device)
        self.generator = torch.Generator().manual_seed(self.seed)  # on the CPU, any device
        self.rng = np.random.default_rng(self.seed)
        self.collector = RolloutCollector(
            env, self.policies, config.normalize_obs, config.obs_clip, device=self.device
        )
        # a sibling update (another per-agent step) comes with its allocator: update_class
        update_class = getattr(self.allocator, "update_class", None) or SequentialUpdate
        self.updater = update_class(
            self.policies,
            self.allocator,
            TRPOSettings(
                cg_iters=config.cg_iters,
                cg_damping=config.cg_damping,
                ls_steps=config.ls_steps,
                ls_backtrack=config.ls_backtrack,
                accept_ratio=config.accept_ratio,
                fvp=config.fvp,
                cg_warm_iters=config.cg_warm_iters,
            ),
        )
        self.iteration = 0
        self.env_steps = 0
        self.wall_time = 0.0
        self.history: list[dict[str, Any]] = []
        self._started = False
        self._writer: RunWriter | None = None
        self._telemetry_offsets: tuple[int, int] | None = None
        self._eval_env: MultiAgentEnv | None = eval_env
        self._last_eval_iteration = -1
        self._inexact_resume: str | None = None  # the warning of _restart_env, said by learn
        self._last_eval: dict[str, Any] | None = None
        self._predictor: PolicyPredictor | None = None

    # -- properties ----------------------------------------------------------------------------
    @property
    def steps_per_iteration(self) -> int:
        return self.env.num_envs * self.config.rollout_length

    @property
    def stateless(self) -> bool:
        return all(p.obs_size == 0 for p in self.policies)

    def expected_reward(self) -> float | None:
        """The env's exact expected reward of the current joint policy (stateless games)."""
        if not self.stateless:
            return None
        value = self.env.expected_reward([p.summary() for p in self.policies])
        return None if value is None else float(value)

    # -- one iteration -------------------------------------------------------------------------
    def advantages(self, rollout) -> tuple[np.ndarray, np.ndarray]:
        """GAE advantages and returns (horizon, num_envs) of a rollout under the current critic:
        truncated steps bootstrap from V(final state), terminated ones do not (not normalised)."""
        cfg = self.config
        horizon, n = rollout.rewards.shape
        values = self.critic.values(rollout.states).reshape(horizon, n)
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = self.critic.values(rollout.last_states)
        if len(rollout.truncated_at):
            t, j = rollout.truncated_at[:, 0], rollout.truncated_at[:, 1]
            next_values[t, j] = self.critic.values(rollout.truncated_states)
        return compute_gae(
            rollout.rewards,
            values,
            next_values,
            rollout.terminated,
            rollout.truncated,
            cfg.gamma,
            cfg.gae_lambda,
        )

    def _iteration(self) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        rollout = self.collector.collect(cfg.rollout_length, self.generator)
        t1 = time.perf_counter()
        adv, returns = self.advantages(rollout)
        if cfg.normalize_advantages:
            adv = normalize_advantages(adv)
        t2 = time.perf_counter()

        with torch.no_grad():
            batches = []
            for i, (policy, obs, act, logp) in enumerate(
                zip(self.policies, rollout.obs, rollout.actions, rollout.log_probs, strict=True)
            ):
                mask = None if rollout.action_masks is None else rollout.action_masks[i]
                valid = None if rollout.valid is None else rollout.valid[i]
                batch = AgentBatch(obs, act, logp, None, mask, valid)  # type: ignore[arg-type]
                batch.old_dist = batch.dist(policy).detach()
                batches.append(batch)
        adv_t = torch.as_tensor(adv.reshape(-1), dtype=torch.float32, device=self.device)
        result = self.updater.run(batches, adv_t, self.delta_total, self.rng)
        t3 = time.perf_counter()
        critic_loss = self.critic.fit(
            rollout.states,
            returns.reshape(-1),
            cfg.critic_epochs,
            cfg.critic_minibatches,
            self.generator,
        )
        t4 = time.perf_counter()

        self.iteration += 1
        self.env_steps += rollout.num_samples
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "mean_reward": float(rollout.rewards.mean()),
            "expected_reward": self.expected_reward(),
            "episode_return": (
                float(np.mean(rollout.episode_returns)) if rollout.episode_returns else None
            ),
            "episodes": len(rollout.episode_returns),
            "critic_loss": critic_loss,
            "delta_total": result.delta_total,
            "budget_used": result.budget_used,
            "order": result.order,
            "agents": [r.to_json() for r in result.records],
        }
        if self.stateless:
            record["policy"] = [p.summary_json() for p in self.policies]
        t5 = time.perf_counter()
        record["time"] = {
            "rollout": t1 - t0,
            "critic": (t2 - t1) + (t4 - t3),
            "actor": result.actor_seconds,
            "solver": result.solver_seconds,
            "other": t5 - t4,
        }
        record["seconds_per_iter"] = t5 - t0
        return record

    # -- the loop ------------------------------------------------------------------------------
    def learn(
        self,
        total_steps: int,
        progress: bool = True,
        callback: Callback | None = None,
        resume: bool = False,
    ) -> Trainer:
        """Train until ``env_steps`` (counted from the start of the run) reaches ``total_steps``.

        ``callback(trainer, record)`` runs after every iteration (see
        :mod:`kl_alloc.rl.callbacks`); returning ``False`` stops. The record is the iteration's
        ``progress.jsonl`` line; an iteration that ends with an evaluation (every
        ``eval_every`` iterations, and the last one) carries it as ``record["eval"]``.
        ``progress=True`` shows a :class:`~kl_alloc.rl.callbacks.ProgressBar`.
        ``resume=True`` first loads ``out_dir/checkpoint.pt`` if there is one.
        """
        torch.set_num_threads(1)
        if resume:
            if self.out_dir is None:
                raise ValueError("resume: needs an out_dir with a checkpoint")
            path = self.out_dir / CHECKPOINT
            if path.exists():
                self._load_state(ckpt_io.load(path), telemetry=True)
            elif not self._started:
                self._restart_logs()
        if not self._started:
            self.collector.reset(self.seed)
            self._started = True
        if self._inexact_resume:
            logger.warning("%s", self._inexact_resume)
            self._inexact_resume = None
        self._open_writer()
        if self._writer is not None:  # one process trains a run at a time (released below)
            self._writer.acquire()
        cfg = self.config
        bar = (
            ProgressBar(total_steps, self.env_steps, f"{self.algo} s{self.seed}")
            if progress
            else None
        )
        callbacks = chain(bar, callback)
        logger.info(
            "%s on %s: %d agents, %d samples/iteration, delta_total %.4g, from iteration %d",
            self.algo,
            type(self.env).__name__,
            self.n_agents,
            self.steps_per_iteration,
            self.delta_total,
            self.iteration,
        )
        clock = time.perf_counter()
        base_wall = self.wall_time
        stopped = False
        try:
            while self.env_steps < total_steps:
                record = self._iteration()
                self.wall_time = base_wall + time.perf_counter() - clock
                record["wall_time"] = self.wall_time
                last = self.env_steps >= total_steps
                if last or (cfg.eval_every and self.iteration % cfg.eval_every == 0):
                    record["eval"] = self._evaluate_and_log()
                self.history.append(record)
                if self._writer is not None:
                    self._writer.progress(record)
                if self.out_dir is not None and (
                    cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0
                ):
                    self.save(self.out_dir / CHECKPOINT)
                    write_progress_csv(self.out_dir)
                logger.debug("iteration %d: %s", self.iteration, record)
                if callbacks(self, record) is False:
                    stopped = not last  # stopped at the target: the run is done all the same
                    break
            if self._last_eval_iteration != self.iteration:  # stopped early, or nothing to do
                self._evaluate_and_log()
            if self.out_dir is not None:
                self.save(self.out_dir / CHECKPOINT)
                write_progress_csv(self.out_dir)
                if not stopped and self._writer is not None:
                    self._writer.done(self._summary())
        finally:
            if bar is not None:
                bar.close()
            if self._writer is not None:
                self._writer.release()
        return self

    @property
    def last_eval(self) -> dict[str, Any] | None:
        """The latest evaluation of the run (an ``eval.jsonl`` line), ``None`` before any."""
        return self._last_eval

    def _summary(self) -> dict[str, Any]:
        # the whole run's iterations: a resumed trainer's history starts at the resume
        records = read_progress(self.out_dir) if self.out_dir is not None else self.history
        spi = [r["seconds_per_iter"] for r in records if r.get("seconds_per_iter") is not None]
        last_eval = self._last_eval
        return {
            "iterations": self.iteration,
            "env_steps": self.env_steps,
            "wall_time": self.wall_time,
            "final_expected_reward": self.expected_reward(),
            "final_eval": last_eval,
            "seconds_per_iter": float(np.mean(spi)) if spi else None,
        }

    # -- evaluation ----------------------------------------------------------------------------
    def _make_eval_env(self, episodes: int) -> MultiAgentEnv:
        spec = env_spec(self.env)
        if spec is not None:
            kwargs = dict(spec["kwargs"])
            kwargs["num_envs"] = max(1, min(int(episodes), self.env.num_envs))
            return make_named_env(spec["name"], **kwargs)
        try:
            return copy.deepcopy(self.env)
        except Exception as err:
            raise TypeError(
                f"evaluate: cannot copy {type(self.env).__name__} for evaluation ({err}); build "
                "the env with make_env(...) or pass eval_env= to the Trainer"
            ) from err

    def evaluate(self, episodes: int = 10, seed: int | None = None) -> dict[str, Any]:
        """Run the deterministic policy (mode / mean action) for ``episodes`` episodes on a
        separate env copy; training state and RNGs are untouched. Every copy plays the same
        number of episodes (no bias toward short ones)."""
        if self._eval_env is None:
            self._eval_env = self._make_eval_env(episodes)
        if seed is None:
            seed = default_eval_seed(self.seed, self.iteration)
        flat = deterministic_returns(
            self._eval_env, self.policies, self.collector.policy_obs, int(episodes), seed
        )
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "return_mean": float(np.mean(flat)),
            "return_std": float(np.std(flat)),
            "episodes": len(flat),
            "expected_reward": self.expected_reward(),
        }

    def _evaluate_and_log(self) -> dict[str, Any]:
        result = self.evaluate(self.config.eval_episodes)
        self._last_eval = result
        self._last_eval_iteration = self.iteration
        if self._writer is not None:
            self._writer.eval(result)
        return result

    # -- acting and exporting ------------------------------------------------------------------
    def predictor(self) -> PolicyPredictor:
        """A :class:`~kl_alloc.rl.export.PolicyPredictor` on this trainer's live policies and
        observation statistics (it follows further training; its sampling generator is its own,
        so predictions never touch the training RNGs)."""
        if self._predictor is None:
            self._predictor = trainer_predictor(self)
        return self._predictor

    def predict(self, obs: Any, deterministic: bool = True, action_masks: Any = None) -> Any:
        """Per-agent actions for per-agent observations, as the env takes them.

        ``obs``: a list with one array per agent, ``(obs_size_i,)`` or ``(B, obs_size_i)``
        (returns a list: int64 indices ``()`` / ``(B,)``, float32 ``(dim,)`` / ``(B, dim)``
        clipped to the action bounds), or a PettingZoo ``{agent: observation}`` dict for a
        PettingZoo env (returns ``{agent: action}`` for its ``step``). ``deterministic``: the
        mode / mean action (what :meth:`evaluate` plays), else a sample. Observation
        normalisation is applied with the current statistics, not updated. Details:
        :mod:`kl_alloc.rl.export`.
        """
        return self.predictor().predict(obs, deterministic, action_masks)

    def export_policy(self, path: str | Path) -> Path:
        """Write the policies, the observation statistics and the action spaces to one file
        that :func:`kl_alloc.load_policy` loads with torch only (no env, no trainer)."""
        return save_policy(trainer_payload(self), path)

    # -- run directory -------------------------------------------------------------------------
    def _run_config(self) -> dict[str, Any]:
        from kl_alloc import __version__

        env = self.env
        spec = env_spec(env) or {"name": type(env).__name__, "kwargs": {}}
        return {
            "format": FORMAT_VERSION,
            "algo": self.algo,
            "allocator": self.allocator.name,
            "allocator_class": allocator_class(self.allocator),
            "seed": self.seed,
            "env": {
                "name": spec["name"],
                "kwargs": spec["kwargs"],
                "n_agents": env.n_agents,
                "num_envs": env.num_envs,
                "obs_sizes": list(env.obs_sizes),
                "state_size": env.state_size,
                "actions": [{"kind": s.kind, "n": s.n, "dim": s.dim} for s in env.action_specs],
            },
            "config": self.config.to_dict(),
            "delta_total": self.delta_total,
            "version": __version__,
        }

    def _restart_logs(self) -> None:
        """``resume`` of a run killed before its first checkpoint: if ``out_dir`` holds this
        very run (same config.json settings), its logs are cut and it starts again from 0."""
        stored_path = self.out_dir / "config.json"
        if stored_path.exists():
            # config.json holds the keys a checkpoint is compared on (algo, seed, config, ...)
            differ = self._differences(json.loads(stored_path.read_text()))
            if differ:
                raise ValueError(
                    f"resume: {self.out_dir} holds another run (it differs in {'; '.join(differ)})"
                    " and has no checkpoint: choose another out_dir"
                )
        for name in ("progress.jsonl", "eval.jsonl", "done.json"):
            (self.out_dir / name).unlink(missing_ok=True)
        logger.warning("%s: no checkpoint yet: restarting the run from its start", self.out_dir)

    def _open_writer(self) -> None:
        if self.out_dir is None or self._writer is not None:
            return
        writer = RunWriter(self.out_dir)
        if self._telemetry_offsets is None:
            if (self.out_dir / CHECKPOINT).exists() or (
                writer.progress_path.exists() and writer.progress_path.stat().st_size > 0
            ):
                raise FileExistsError(
                    f"{self.out_dir} already holds a run: pass resume=True (or use "
                    "Trainer.resume) to continue it, or choose a new out_dir"
                )
            writer.open()  # a loaded trainer given a new directory starts fresh logs there
        else:
            writer.open(*self._telemetry_offsets)
        (self.out_dir / DONE).unlink(missing_ok=True)
        writer.write_config(self._run_config())
        self._writer = writer

    def close(self) -> None:
        """Close the run's files, and the env if it runs in worker processes."""
        from kl_alloc.envs.workers import WorkerVecEnv

        self._close_writer()
        if isinstance(self.env, WorkerVecEnv):
            self.env.close()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit."""
        offsets = self._writer.positions() if self._writer is not None else None
        return {
            "format": FORMAT_VERSION,
            "algo": self.algo,
            "allocator_class": allocator_class(self.allocator),
            "seed": self.seed,
            "config": self.config.to_dict(),
            "env_spec": env_spec(self.env),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_time": self.wall_time,
            "started": self._started,
            "last_eval_iteration": self._last_eval_iteration,
            "last_eval": self._last_eval,
            "policies": [p.state_dict() for p in self.policies],
            "critic": self.critic.full_state_dict(),
            "collector": self.collector.state_dict(),
            "torch_generator": self.generator.get_state(),
            "numpy_rng": self.rng.bit_generator.state,
            "env": self.env.state_dict(),
            "telemetry_offsets": offsets,
        }

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (tmp file + os.replace)."""
        ckpt_io.save_atomic(self.state_dict(), path)
        logger.debug("checkpoint written to %s at iteration %d", path, self.iteration)

    def _load_state(self, state: dict[str, Any], telemetry: bool) -> None:
        differ = self._differences(state)
        if differ and telemetry:  # continuing a run's own logs: it must be this very run
            raise ValueError(
                f"resume: the checkpoint in {self.out_dir} is not this trainer's run (they differ "
                f"in {'; '.join(differ)}): continue a run with Trainer.resume(run_dir) (a rule "
                "passed as an object: allocator=<an instance of its class>), or choose another "
                "out_dir"
            )
        if differ:  # Trainer.load: a checkpoint as the start of a new run
            logger.warning("the checkpoint differs from this trainer in %s", "; ".join(differ))
        for policy, sd in zip(self.policies, state["policies"], strict=True):
            policy.load_state_dict(sd)
        self.critic.load_full_state_dict(state["critic"])
        self.collector.load_state_dict(state["collector"])
        self.generator.set_state(state["torch_generator"])
        self.rng.bit_generator.state = state["numpy_rng"]
        if getattr(self.env, "exact_state", True):
            self.env.load_state_dict(state["env"])
        elif state["started"]:
            self._restart_env(int(state["iteration"]))
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.wall_time = float(state["wall_time"])
        self._started = bool(state["started"])
        self._last_eval_iteration = int(state["last_eval_iteration"])
        self._last_eval = state.get("last_eval")
        if telemetry:  # continuing in the checkpoint's own run directory
            self._close_writer()
            offsets = state.get("telemetry_offsets")
            self._telemetry_offsets = (0, 0) if offsets is None else tuple(offsets)

    def _differences(self, state: dict[str, Any]) -> list[str]:
        """What of algo, seed, allocator class and config (but the execution fields) differs
        between a checkpoint and this trainer."""

        def norm(config: dict[str, Any]) -> dict[str, Any]:
            plain = json.loads(json.dumps(config, default=list))
            return {k: v for k, v in plain.items() if k not in EXECUTION_FIELDS}

        out = [
            f"{k} ({state[k]!r} there, {getattr(self, k)!r} here)"
            for k in ("algo", "seed")
            if state[k] != getattr(self, k)
        ]
        mine = allocator_class(self.allocator)
        if state.get("allocator_class", mine) != mine:  # older checkpoints do not record it
            out.append(f"allocator class ({state['allocator_class']} there, {mine} here)")
        # through from_dict: an older checkpoint's config is migrated as when it is loaded
        theirs = norm(TrainerConfig.from_dict(state["config"]).to_dict())
        ours = norm(self.config.to_dict())
        keys = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        if keys:
            out.append("config " + ", ".join(f"{k} ({theirs.get(k)!r} there)" for k in keys))
        return out

    def _restart_env(self, iteration: int) -> None:
        """Resume an env that cannot save its state (``env.exact_state`` False): reset its
        copies from ``SeedSequence([seed, iteration, 0x5E5E]).generate_state(1)[0]`` and start
        fresh episodes; policies, critic, normalisers and RNGs continue from the checkpoint."""
        seed = int(np.random.SeedSequence([self.seed, iteration, 0x5E5E]).generate_state(1)[0])
        # said when training continues (learn), not when the checkpoint is only evaluated
        self._inexact_resume = (
            f"{type(self.env).__name__} cannot save its state: resuming at iteration {iteration} "
            f"with its copies reset from seed {seed}; the continuation differs from an "
            "uninterrupted run"
        )
        self.collector.reset(seed)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: MultiAgentEnv | None = None,
        out_dir: str | Path | None = None,
        allocator: Allocator | None = None,
        eval_env: MultiAgentEnv | None = None,
    ) -> Trainer:
        """Rebuild a trainer from a checkpoint. Without ``env``, the env is rebuilt from the
        registry spec stored in the checkpoint. With ``out_dir``, logs start afresh there."""
        return cls._from_state(ckpt_io.load(path), env, out_dir, allocator, eval_env, False)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        env: MultiAgentEnv | None = None,
        allocator: Allocator | None = None,
        eval_env: MultiAgentEnv | None = None,
        num_workers: int | None = None,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from its checkpoint (logs are cut back to it).
        ``num_workers`` may differ from the run's own: the numbers do not depend on it."""
        run_dir = Path(run_dir)
        path = run_dir / CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"run_dir: no checkpoint.pt in {run_dir}")
        state = ckpt_io.load(path)
        if num_workers is not None:
            state["config"] = {**state["config"], "num_workers": int(num_workers)}
        trainer = cls._from_state(state, env, run_dir, allocator, eval_env, True)
        logger.info("resuming %s at iteration %d", run_dir, trainer.iteration)
        return trainer

    @classmethod
    def _from_state(
        cls,
        state: dict[str, Any],
        env: MultiAgentEnv | None,
        out_dir: str | Path | None,
        allocator: Allocator | None,
        eval_env: MultiAgentEnv | None,
        telemetry: bool,
    ) -> Trainer:
        if env is None:
            spec = state.get("env_spec")
            if spec is None:
                raise ValueError("env: this checkpoint's env was not made by make_env; pass env")
            num_workers = int(state["config"].get("num_workers", 1))
            env = make_named_env(spec["name"], num_workers, **spec["kwargs"])
        config = TrainerConfig.from_dict(state["config"])
        if allocator is None:
            try:
                allocator = make_allocator(state["algo"], config)
            except ValueError as exc:  # a rule passed as an object, or a plug-in gone
                what = state.get("allocator_class") or state["algo"]
                if telemetry:
                    raise ValueError(
                        f"resume: the run's rule cannot be rebuilt from its algo ({exc}): pass "
                        f"allocator=<an instance of {what}>"
                    ) from None
                # a checkpoint loaded to evaluate or to start a new run: said by _load_state
                allocator = make_allocator("hatrpo", config)
        trainer = cls(
            env,
            state["algo"],
            config,
            seed=state["seed"],
            out_dir=out_dir,
            allocator=allocator,
            eval_env=eval_env,
        )
        trainer._load_state(state, telemetry=telemetry)
        return trainer
