"""TrainerConfig.device: the learner's torch device (only the CPU is available to test here)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from kl_alloc.envs import make_env  # noqa: E402
from kl_alloc.rl import Trainer, TrainerConfig  # noqa: E402


def test_the_learner_lives_on_the_configured_device():
    config = TrainerConfig.for_env("differential", device="cpu", num_envs=50)
    trainer = Trainer(make_env("differential", num_envs=50), "hatrpo-w", config, seed=0)
    trainer.learn(100, progress=False)
    params = [p for net in (*trainer.policies, trainer.critic) for p in net.parameters()]
    assert {p.device for p in params} == {torch.device("cpu")}
    assert trainer.collector.device == torch.device("cpu")


def test_a_bad_device_is_named():
    with pytest.raises(ValueError, match="device: 'gpu0' is not a torch device"):
        Trainer("matrix", config=TrainerConfig.for_env("matrix", device="gpu0"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_says_so():
    with pytest.raises(ValueError, match="device: 'cuda' asked for, but torch.cuda"):
        Trainer("matrix", config=TrainerConfig.for_env("matrix", device="cuda"))
