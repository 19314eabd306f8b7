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
