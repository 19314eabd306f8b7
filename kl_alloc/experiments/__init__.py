"""Experiment sweeps and their reports: the paper's open questions as reproducible grids.

- :mod:`~kl_alloc.experiments.spec`: the sweep file (TOML) -> a list of :class:`Trial` s
  (tasks x methods x seeds x swept :class:`~kl_alloc.rl.TrainerConfig` fields).
- :mod:`~kl_alloc.experiments.runner`: the one run orchestrator (sweeps and benchmark scripts):
  runs through the lifecycle on an executor (inline, local worker processes, Ray), resumable:
  finished runs are skipped, killed ones resume from their checkpoint.

Reports of the runs (``kl-alloc report``) are made by :mod:`kl_alloc.analysis.report`.

    kl-alloc sweep benchmarks/sweeps/eps_sensitivity.toml
    kl-alloc report runs/sweeps/eps_sensitivity --out benchmarks/results/sweeps/eps_sensitivity
"""

from kl_alloc.experiments.spec import SpecError, SweepSpec, Trial, load_spec, parse_spec

__all__ = ["SpecError", "SweepSpec", "Trial", "load_spec", "parse_spec"]
