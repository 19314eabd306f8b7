"""Short learning runs on the registered VMAS scenarios: HATRPO from the entry's preset, seed 0,
one torch thread; the mean episode return of the last iterations must clearly beat the first.

Measured (the runs these tests repeat, longer): balance with ``delta=0.05`` went from -10.3 (first
iteration) to +4.0 at 32k env steps; het_mass from -7.4 to +16.5 at 28k env steps.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vmas", reason='needs the vmas extra: pip install "kl_alloc[vmas]"')
pytest.importorskip("torch")

from kl_alloc.rl import Trainer, TrainerConfig  # noqa: E402
from kl_alloc.rundir import read_progress  # noqa: E402

pytestmark = pytest.mark.slow


def learn(tmp_path, scenario: str, steps: int, **overrides) -> list[float]:
    cfg = TrainerConfig.for_env(
        "vmas", env_kwargs={"scenario": scenario}, eval_every=0, eval_episodes=1, **overrides
    )
    trainer = Trainer("vmas", config=cfg, seed=0, out_dir=tmp_path / scenario)
    trainer.learn(steps, progress=False)
    trainer.close()
    return [row["episode_return"] for row in read_progress(tmp_path / scenario)]


def test_balance_learns_to_carry_the_package(tmp_path):
    # 5 iterations of 20 copies x 100 steps: the package stops falling (-10 each time)
    returns = learn(tmp_path, "balance", 10_000, delta=0.05)
    assert len(returns) == 5
    assert np.mean(returns[-2:]) > returns[0] + 3.0, returns


def test_het_mass_learns(tmp_path):
    # 8 iterations of 20 copies x 100 steps: the light agent speeds up, the heavy one rests
    returns = learn(tmp_path, "het_mass", 16_000, delta=0.05)
    assert len(returns) == 8
    assert np.mean(returns[-3:]) > returns[0] + 10.0, returns
