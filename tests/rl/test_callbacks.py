"""The progress bar and callback chaining (kl_alloc.rl.callbacks), fed by iteration records."""

from __future__ import annotations

import logging

from kl_alloc.rl.callbacks import ProgressBar, chain


def record(it: int, **extra) -> dict:
    return {"iteration": it, "env_steps": 100 * it, "mean_reward": 0.5, **extra}


def test_progress_bar_shows_expected_reward_or_the_latest_returns():
    bar = ProgressBar(1000, enabled=False)
    assert bar.postfix(record(1, expected_reward=0.25)) == {"it": 1, "E[R]": "0.2500"}
    assert bar.postfix(record(2)) == {"it": 2, "reward": "0.5"}
    assert bar.postfix(record(3, episode_return=12.0)) == {"it": 3, "return": "12.0"}
    evaluated = record(4, eval={"return_mean": 30.0, "env_steps": 400})
    assert bar.postfix(evaluated) == {"it": 4, "eval": "30.0", "return": "12.0"}
    assert bar.postfix(record(5)) == {"it": 5, "eval": "30.0", "return": "12.0"}


def test_progress_bar_without_a_bar_logs_every_tenth(caplog):
    bar = ProgressBar(1000, enabled=False)
    with caplog.at_level(logging.INFO, logger="kl_alloc.rl.callbacks"):
        for it in range(1, 11):
            bar(None, record(it))
    assert len(caplog.records) == 10
    assert "1000/1000 env steps" in caplog.records[-1].getMessage()


def test_chain_runs_every_callback_and_stops_if_any_says_so():
    seen = []
    stop = chain(lambda t, r: seen.append(1), None, lambda t, r: False, lambda t, r: seen.append(3))
    assert stop(None, record(1)) is False and seen == [1, 3]
    assert chain(lambda t, r: None)(None, record(1)) is None
