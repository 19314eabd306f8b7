"""One carry-over field (``TrainerConfig.carry``) and the two flags older runs stored."""

import json

import pytest

from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rl import checkpoint as ckpt_io

# the allocation fields of a config.json as runs wrote them before ``carry``
FIRST_VERSION = {"rescore": True, "carry_leftover": True, "utility": "natural_gradient"}
WITH_CONTROL = {**FIRST_VERSION, "uniform_carry_leftover": False}


def _old(**fields):
    data = json.loads(json.dumps(TrainerConfig.for_env("matrix").to_dict()))
    del data["carry"]
    return {**data, **fields}


@pytest.mark.parametrize(
    "stored,carry",
    [
        (FIRST_VERSION, None),  # W and G carried, HATRPO did not: each method's default
        ({**FIRST_VERSION, "carry_leftover": False}, False),
        (WITH_CONTROL, None),
        ({**WITH_CONTROL, "uniform_carry_leftover": True}, True),
        ({**WITH_CONTROL, "carry_leftover": False}, False),
    ],
)
def test_old_stored_configs_load_and_compare_equal(stored, carry):
    data = _old(**stored)
    cfg = TrainerConfig.from_dict(data)
    assert cfg.carry is carry and cfg == TrainerConfig.for_env("matrix", carry=carry)
    # a run directory written before the change matches the same settings made today
    want = json.loads(json.dumps(TrainerConfig.for_env("matrix", carry=carry).to_dict()))
    assert TrainerConfig.stored_as(data) == TrainerConfig.stored_as(want)


def test_the_inexpressible_old_combination_is_a_clear_error():
    data = _old(carry_leftover=False, uniform_carry_leftover=True)
    with pytest.raises(ValueError, match="cannot be expressed.*carry=true or carry=false"):
        TrainerConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown fields"):
        TrainerConfig.from_dict({**TrainerConfig().to_dict(), "uniform": True})


def test_an_old_run_directory_resumes_bit_for_bit(tmp_path):
    def trainer(out, **kw):
        cfg = TrainerConfig.for_env("matrix", num_envs=200, checkpoint_every=1, **kw)
        return Trainer("matrix", algo="hatrpo", config=cfg, seed=0, out_dir=out)

    straight = trainer(tmp_path / "straight", carry=True).learn(4 * 200, progress=False)
    run = tmp_path / "old"
    trainer(run, carry=True).learn(2 * 200, progress=False).close()
    # rewrite the run as the old code stored it: HATRPO with the carry-over control
    old = {**_old(**WITH_CONTROL), "uniform_carry_leftover": True, "num_envs": 200}
    old["checkpoint_every"] = 1
    config = json.loads((run / "config.json").read_text())
    config["config"] = old
    (run / "config.json").write_text(json.dumps(config))
    state = ckpt_io.load(run / "checkpoint.pt")
    state["config"] = old
    ckpt_io.save_atomic(state, run / "checkpoint.pt")

    resumed = Trainer.resume(run)
    assert resumed.config.carry is True and resumed.allocator.carry_leftover
    resumed.learn(4 * 200, progress=False)
    assert resumed.history[-1]["expected_reward"] == straight.history[-1]["expected_reward"]
    assert [r["agents"] for r in resumed.history] == [r["agents"] for r in straight.history[2:]]
