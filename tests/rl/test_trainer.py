"""The Trainer end to end: learning, determinism, resume after a crash, the run directory."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kl_alloc.envs import make_env
from kl_alloc.rl import Allocator, Trainer, TrainerConfig, UniformAllocator
from kl_alloc.rundir import load_run, read_eval, read_progress

TIMING = {"wall_time", "seconds_per_iter", "time"}


def _strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _params(trainer):
    return [p.detach().clone() for pol in trainer.policies for p in pol.parameters()]


@pytest.mark.parametrize("algo", ["hatrpo", "hatrpo-w", "hatrpo-g"])
def test_each_method_learns_the_matrix_game(algo):
    """From the uniform policy (expected reward 1/240) to well above it in 10 iterations of
    4000 plays (about a second)."""
    trainer = Trainer(make_env("matrix", num_envs=4000), algo=algo, seed=0)
    assert trainer.expected_reward() == pytest.approx(1 / 240)
    trainer.learn(40_000, progress=False)
    rewards = [r["expected_reward"] for r in trainer.history]
    assert len(rewards) == 10
    assert rewards[-1] > 0.2  # 48x the uniform policy's
    assert rewards[-1] > rewards[4] > rewards[0]
    # the deterministic policy picks the paying joint action
    assert trainer.evaluate(episodes=3)["return_mean"] == 1.0


def test_differential_game_improves_expected_reward():
    trainer = Trainer("differential", algo="hatrpo-w", seed=0)
    start = trainer.expected_reward()
    trainer.learn(400 * 15, progress=False)
    assert trainer.expected_reward() > start + 0.1
    mean = np.array([p["mean"][0] for p in trainer.history[-1]["policy"]])
    ev = trainer.evaluate(episodes=2)
    assert ev["return_mean"] == pytest.approx(float(trainer.env.reward_at(mean)), rel=1e-5)


def test_same_seed_same_run_and_different_seed_differs():
    runs = []
    for seed in (5, 5, 6):
        t = Trainer(make_env("matrix", num_envs=500), algo="hatrpo", seed=seed)
        t.learn(2500, progress=False)
        runs.append((_strip(t.history), _params(t)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert runs[0][0] != runs[2][0]


def _game(name):
    if name == "matrix":
        return make_env("matrix", num_envs=500)
    return make_env("differential", num_envs=200)


def _config(name):
    return TrainerConfig.for_env(name, checkpoint_every=2, eval_every=3)


class Crash(Exception):
    pass


@pytest.mark.parametrize("game,algo", [("matrix", "hatrpo"), ("differential", "hatrpo-g")])
def test_resume_after_crash_equals_uninterrupted(tmp_path, game, algo):
    total = 9 * (500 if game == "matrix" else 200)
    full = Trainer(_game(game), algo=algo, config=_config(game), seed=1, out_dir=tmp_path / "a")
    full.learn(total, progress=False)

    def crash(trainer, record):
        if record["iteration"] == 5:  # progress line 5 written, last checkpoint at 4
            raise Crash

    broken = Trainer(_game(game), algo=algo, config=_config(game), seed=1, out_dir=tmp_path / "b")
    with pytest.raises(Crash):
        broken.learn(total, progress=False, callback=crash)
    assert len(read_progress(tmp_path / "b")) == 5
    assert not (tmp_path / "b" / "done.json").exists()
    with pytest.raises(FileExistsError):
        Trainer(_game(game), algo=algo, config=_config(game), seed=1, out_dir=tmp_path / "b").learn(
            total, progress=False
        )

    if game == "matrix":
        resumed = Trainer.resume(tmp_path / "b")
        assert resumed.iteration == 4
        resumed.learn(total, progress=False)
    else:  # the other spelling: a fresh trainer with the same arguments, learn(resume=True)
        resumed = Trainer(_game(game), algo, _config(game), seed=1, out_dir=tmp_path / "b")
        resumed.learn(total, progress=False, resume=True)
    assert _strip(read_progress(tmp_path / "a")) == _strip(read_progress(tmp_path / "b"))
    assert read_eval(tmp_path / "a") == read_eval(tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(resumed), strict=True))
    assert (tmp_path / "b" / "done.json").exists()


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    """A real kill -9 in the middle of a run (no cleanup code runs), then resume."""
    total = 9 * 500
    full = Trainer(
        make_env("matrix", num_envs=500),
        algo="hatrpo-g",
        config=_config("matrix"),
        seed=2,
        out_dir=tmp_path / "a",
    )
    full.learn(total, progress=False)
    script = textwrap.dedent(f"""
        import os, signal
        from kl_alloc.envs import make_env
        from kl_alloc.rl import Trainer, TrainerConfig
        def die(trainer, record):
            if record["iteration"] == 7:
                os.kill(os.getpid(), signal.SIGKILL)
        cfg = TrainerConfig.for_env("matrix", checkpoint_every=2, eval_every=3)
        Trainer(make_env("matrix", num_envs=500), algo="hatrpo-g", config=cfg, seed=2,
                out_dir={str(tmp_path / "b")!r}).learn({total}, progress=False, callback=die)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(read_progress(tmp_path / "b")) == 7
    resumed = Trainer.resume(tmp_path / "b")
    assert resumed.iteration == 6
    resumed.learn(total, progress=False)
    assert _strip(read_progress(tmp_path / "a")) == _strip(read_progress(tmp_path / "b"))
    assert read_eval(tmp_path / "a") == read_eval(tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(resumed), strict=True))


def test_save_load_roundtrip(tmp_path):
    t = Trainer("differential", algo="hatrpo", seed=0)
    t.learn(400 * 3, progress=False)
    t.save(tmp_path / "c.pt")
    loaded = Trainer.load(tmp_path / "c.pt")
    assert loaded.iteration == 3 and loaded.algo == "hatrpo"
    assert loaded.expected_reward() == t.expected_reward()
    assert loaded.evaluate(2) == t.evaluate(2)
    # both continue identically
    t.learn(400 * 5, progress=False)
    loaded.learn(400 * 5, progress=False)
    assert _strip(t.history[3:]) == _strip(loaded.history)
    # a loaded trainer given a new run directory logs there from its own iteration on
    fresh = Trainer.load(tmp_path / "c.pt", out_dir=tmp_path / "new")
    fresh.learn(400 * 4, progress=False)
    assert [r["iteration"] for r in read_progress(tmp_path / "new")] == [4]
    with pytest.raises(FileExistsError):
        Trainer.load(tmp_path / "c.pt", out_dir=tmp_path / "new").learn(400 * 5, progress=False)


def test_run_directory_format(tmp_path):
    cfg = TrainerConfig.for_env("matrix", eval_every=2)
    t = Trainer(
        make_env("matrix", num_envs=300), algo="hatrpo-w", config=cfg, seed=0, out_dir=tmp_path
    )
    t.learn(300 * 4, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["algo"] == "hatrpo-w" and config["seed"] == 0
    assert config["env"]["name"] == "matrix" and config["env"]["kwargs"]["num_envs"] == 300
    assert config["config"]["delta"] == 0.01 and "version" in config
    assert TrainerConfig.from_dict(config["config"]) == cfg
    recs = read_progress(tmp_path)
    assert [r["iteration"] for r in recs] == [1, 2, 3, 4]
    keys = {
        "iteration",
        "env_steps",
        "wall_time",
        "seconds_per_iter",
        "time",
        "mean_reward",
        "expected_reward",
        "episode_return",
        "episodes",
        "agents",
        "order",
        "delta_total",
        "budget_used",
        "policy",
    }
    assert keys <= set(recs[0])
    assert set(recs[0]["time"]) == {"rollout", "critic", "actor", "solver", "other"}
    agent_keys = {
        "delta_alloc",
        "kl",
        "predicted_improvement",
        "actual_improvement",
        "accepted",
        "position",
    }
    assert agent_keys <= set(recs[0]["agents"][0])
    assert [e["iteration"] for e in read_eval(tmp_path)] == [2, 4]
    # the record of an iteration that ended with an evaluation carries it (nothing re-reads)
    assert [r["eval"] for r in recs if "eval" in r] == read_eval(tmp_path)
    assert [r["iteration"] for r in recs if "eval" in r] == [2, 4]
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["iterations"] == 4 and done["env_steps"] == 1200
    run = load_run(tmp_path)
    assert run.delta_alloc.shape == (4, 4) and run.kl.shape == (4, 4)
    informative = np.nansum(run.utility, axis=1) > 0  # no paying play seen: no gradient at all
    assert informative.sum() >= 2
    np.testing.assert_allclose(run.delta_alloc.sum(axis=1)[informative], 0.04, rtol=1e-9)
    assert np.all(run.delta_alloc.sum(axis=1)[~informative] == 0)
    assert run.expected_reward[-1] == pytest.approx(t.expected_reward())
    assert run.env_steps.tolist() == [300, 600, 900, 1200]
    # a line cut short by a crash is ignored
    with open(tmp_path / "progress.jsonl", "a") as f:
        f.write('{"iteration": 5, "env_st')
    assert len(read_progress(tmp_path)) == 4


def test_trainer_from_name_uses_preset_and_validates_algo():
    t = Trainer("matrix", algo="hatrpo", seed=0)
    assert t.config.rollout_length == 1 and t.env.num_envs == 4000
    with pytest.raises(ValueError, match="algo"):
        Trainer("matrix", algo="hatrpo-x")


def test_resume_with_networks_normalisers_and_time_limits(tmp_path):
    """MLP policies and critic, running obs/value normalisation, truncation bootstrap, an env
    not made by the registry (evaluation on a deep copy; resume is given the env)."""
    from tests.rl.test_gae import TimeLimitEnv

    cfg = TrainerConfig(
        num_envs=4,
        rollout_length=6,
        hidden=(8,),
        critic_hidden=(8,),
        normalize_obs=True,
        normalize_values=True,
        checkpoint_every=2,
        eval_every=2,
        eval_episodes=3,
    )
    total = 7 * 24
    full = Trainer(TimeLimitEnv(4, limit=4), "hatrpo-w", cfg, seed=0, out_dir=tmp_path / "a")
    full.learn(total, progress=False)

    def crash(trainer, record):
        if record["iteration"] == 5:
            raise Crash

    with pytest.raises(Crash):
        Trainer(TimeLimitEnv(4, limit=4), "hatrpo-w", cfg, seed=0, out_dir=tmp_path / "b").learn(
            total, progress=False, callback=crash
        )
    resumed = Trainer.resume(tmp_path / "b", env=TimeLimitEnv(4, limit=4))
    resumed.learn(total, progress=False)
    recs = read_progress(tmp_path / "a")
    assert any(r["episodes"] for r in recs)
    assert _strip(recs) == _strip(read_progress(tmp_path / "b"))
    assert read_eval(tmp_path / "a") == read_eval(tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(resumed), strict=True))
    norm_a, norm_b = full.collector.obs_norms[0], resumed.collector.obs_norms[0]
    assert norm_a.count == norm_b.count and np.array_equal(norm_a.mean, norm_b.mean)


def test_progress_csv_mirrors_the_jsonl(tmp_path):
    import csv

    cfg = TrainerConfig.for_env("matrix", checkpoint_every=2)
    t = Trainer(
        make_env("matrix", num_envs=300), algo="hatrpo-g", config=cfg, seed=1, out_dir=tmp_path
    )
    t.learn(300 * 5, progress=False)
    recs = read_progress(tmp_path)
    with open(tmp_path / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [r["iteration"] for r in recs] == [1, 2, 3, 4, 5]
    for row, rec in zip(rows, recs, strict=True):
        assert float(row["budget_used"]) == pytest.approx(rec["budget_used"])
        assert float(row["time_rollout"]) == pytest.approx(rec["time"]["rollout"])
        for a in rec["agents"]:
            assert float(row[f"agent{a['agent']}_kl"]) == pytest.approx(a["kl"])
            assert row[f"agent{a['agent']}_accepted"] == str(a["accepted"])


class _Lopsided(Allocator):
    """A rule passed as an object: 1.5x the even share to the first candidate."""

    def allocate(self, signals):
        cand = signals.candidates
        deltas = np.zeros(signals.n_agents)
        deltas[cand] = signals.budget / len(cand)
        deltas[cand[0]] *= 1.5
        deltas[cand[1:]] *= 1 - 0.5 / max(len(cand) - 1, 1)
        return cand, deltas


def test_a_rule_passed_as_an_object_names_the_run_and_must_come_back_to_resume(tmp_path):
    class Local(_Lopsided):  # no module:attr name imports it
        pass

    t = Trainer(make_env("matrix", num_envs=200), allocator=Local(), seed=0, out_dir=tmp_path)
    t.learn(200 * 2, progress=False)
    name = f"{__name__}:{Local.__qualname__}"
    config = json.loads((tmp_path / "config.json").read_text())
    assert t.algo == config["algo"] == config["allocator_class"] == name  # not "hatrpo"
    # its algo cannot rebuild it: resume asks for the object instead of switching to HATRPO
    with pytest.raises(ValueError, match=r"pass allocator=<an instance of .*Local>"):
        Trainer.resume(tmp_path)
    with pytest.raises(ValueError, match=r"allocator class \(.*Local there, .*Uniform"):
        Trainer.resume(tmp_path, allocator=UniformAllocator())
    resumed = Trainer.resume(tmp_path, allocator=Local())
    resumed.learn(200 * 3, progress=False)
    last = read_progress(tmp_path)[-1]
    alloc = [a["delta_alloc"] for a in last["agents"]]
    assert alloc[0] == pytest.approx(1.5 * last["delta_total"] / 4)  # still the rule's split
    # loading it to evaluate needs no rule (a warning says what it runs with)
    assert Trainer.load(tmp_path / "checkpoint.pt").evaluate(1) == resumed.evaluate(1)


def test_a_rule_class_with_an_importable_name_resumes_by_that_name(tmp_path):
    t = Trainer(make_env("matrix", num_envs=200), allocator=_Lopsided(), out_dir=tmp_path)
    t.learn(200 * 2, progress=False)
    assert t.algo.endswith("test_trainer:_Lopsided")
    resumed = Trainer.resume(tmp_path)
    assert type(resumed.allocator).__name__ == "_Lopsided"


def test_learn_resume_refuses_another_runs_checkpoint(tmp_path):
    cfg = TrainerConfig.for_env("matrix", num_envs=200)
    Trainer("matrix", algo="hatrpo-w", config=cfg, seed=0, out_dir=tmp_path).learn(
        400, progress=False
    )
    before = (tmp_path / "progress.jsonl").read_text()
    for kwargs, what in (
        ({"algo": "hatrpo", "seed": 0, "config": cfg}, "algo ('hatrpo-w' there, 'hatrpo' here)"),
        ({"algo": "hatrpo-w", "seed": 7, "config": cfg}, "seed (0 there, 7 here)"),
        (
            {
                "algo": "hatrpo-w",
                "seed": 0,
                "config": TrainerConfig.for_env("matrix", num_envs=200, delta=0.05),
            },
            "config delta (0.01 there)",
        ),
    ):
        t = Trainer("matrix", out_dir=tmp_path, **kwargs)
        with pytest.raises(ValueError, match="not this trainer's run") as info:
            t.learn(800, progress=False, resume=True)
        assert what in str(info.value)
    assert (tmp_path / "progress.jsonl").read_text() == before  # nothing written
    # the same settings continue it
    same = TrainerConfig.for_env("matrix", num_envs=200)
    Trainer("matrix", algo="hatrpo-w", config=same, seed=0, out_dir=tmp_path).learn(
        800, progress=False, resume=True
    )
    assert [r["iteration"] for r in read_progress(tmp_path)] == [1, 2, 3, 4]
