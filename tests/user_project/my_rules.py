"""A user's own allocation rule, outside the package: 70% of the budget to the agent whose
index is lowest, the rest split evenly, updated in index order. Plugged in as
``--algo my_rules:LopsidedSplit`` (no registration, no package edit)."""

import numpy as np

from kl_alloc.rl.allocators import AllocationSignals, Allocator


class LopsidedSplit(Allocator):
    name = "lopsided"
    label = "Lopsided"

    def __init__(self, share: float = 0.7) -> None:
        self.share = share

    @classmethod
    def from_config(cls, config):
        return cls(share=0.7)

    def allocate(self, signals: AllocationSignals):
        cand = np.asarray(signals.candidates)
        deltas = np.zeros(signals.n_agents)
        if len(cand) == 1:
            deltas[cand] = signals.budget
        else:
            deltas[cand[0]] = self.share * signals.budget
            deltas[cand[1:]] = (1 - self.share) * signals.budget / (len(cand) - 1)
        return cand, deltas


# -- a sibling algorithm: another per-agent step under the same measure -> allocate -> commit --

from kl_alloc.rl.allocators import UniformAllocator  # noqa: E402
from kl_alloc.rl.update import SequentialUpdate  # noqa: E402


class HalfRadiusUpdate(SequentialUpdate):
    """Each agent steps to half its allocated KL radius (a stand-in for a HAPPO-style sibling:
    only the per-agent step differs)."""

    def agent_step(self, context, i, radius):
        return super().agent_step(context, i, 0.5 * radius)


class HalfRadiusUniform(UniformAllocator):
    """HATRPO's uniform split, run by :class:`HalfRadiusUpdate`."""

    update_class = HalfRadiusUpdate


# -- mistakes a user can make, which must be one clear line, not a traceback or a silent wrong
# update (tests/test_plugins.py) --


class TwiceListed(Allocator):
    """Lists agent 0 twice: the second step would overwrite the record of the first."""

    def allocate(self, signals: AllocationSignals):
        cand = np.asarray(signals.candidates)
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = signals.budget / (2 * len(cand))
        return np.concatenate([cand, cand[:1]]), deltas


def not_a_rule(config):
    """A factory that returns something other than an allocator."""
    return 42
