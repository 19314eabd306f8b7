"""Noisy utility signals: how robust are HATRPO-W and HATRPO-G to a badly measured utility?

:class:`NoisyUtilityAllocator` wraps any allocator and perturbs the signal it allocates from,
multiplicatively, before the inner allocator sees it:

    u_i  ->  u_i * (1 + level * xi_i),   xi_i ~ Uniform(-1, 1) independently per agent and call

- HATRPO-W: ``utility`` (q_i = g_i^T F_i^-1 g_i);
- HATRPO-G: ``improvement`` (the probe's actual surrogate gain L_j; the measured KL D_j is left
  exact, so the noise only moves the ranking L_j / (D_j + eps), never the budget accounting).

With ``level < 1`` the factor stays in (0, 2): a signal keeps its sign, so noise never turns an
agent with nothing to gain into one that gets budget. Everything else (what is measured, the
order, what is committed when, leftover carrying) is the inner allocator's: the wrapper
measures with the inner ``measure`` and perturbs the measured signal in ``allocate``.

The noise is drawn from the trainer's allocation RNG (``signals.rng``, seeded by the run's
seed and saved in checkpoints), so a noisy run is reproducible and resumes bit-for-bit.
HATRPO's uniform split has no signal: wrapping it changes nothing but that RNG's stream.

    from kl_alloc.rl import Trainer, TrainerConfig, make_allocator
    cfg = TrainerConfig.for_env("matrix")
    noisy = NoisyUtilityAllocator(make_allocator("hatrpo-w", cfg), level=0.3)
    Trainer("matrix", algo="hatrpo-w", config=cfg, allocator=noisy).learn(200_000)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kl_alloc.rl.allocators import Allocation, AllocationSignals, Allocator


class NoisyUtilityAllocator(Allocator):
    """``inner`` with multiplicative noise of relative size ``level`` (0 <= level < 1) on its
    utility signal (W: ``utility``; G: ``improvement``)."""

    def __init__(self, inner: Allocator, level: float) -> None:
        level = float(level)
        if not (np.isfinite(level) and 0 <= level < 1):
            raise ValueError(f"level: expected a number in [0, 1), got {level}")
        self.inner = inner
        self.level = level
        self.name = f"noisy-{inner.name}"
        self.carry_leftover = inner.carry_leftover

    def measure(self, context) -> AllocationSignals:
        """The inner allocator's measurement, exact (it is what the telemetry logs)."""
        return self.inner.measure(context)

    def factors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """One multiplicative factor per agent (always n draws, so the stream does not depend
        on how many candidates are left)."""
        return 1.0 + self.level * rng.uniform(-1.0, 1.0, size=n)

    def allocate(self, signals: AllocationSignals) -> Allocation | tuple[np.ndarray, np.ndarray]:
        noisy = dataclasses.replace(signals)  # the caller's arrays stay exact (telemetry)
        factor = self.factors(signals.rng, signals.n_agents)
        if signals.utility is not None:
            noisy.utility = np.asarray(signals.utility, dtype=np.float64) * factor
        if signals.improvement is not None:
            noisy.improvement = np.asarray(signals.improvement, dtype=np.float64) * factor
        return self.inner.allocate(noisy)


__all__ = ["NoisyUtilityAllocator"]
