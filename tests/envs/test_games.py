"""The matrix game, the differential game and the env registry."""

import numpy as np
import pytest

from kl_alloc.envs import available_envs, env_spec, make_env, register
from kl_alloc.envs.differential_game import DifferentialGame, Peak
from kl_alloc.envs.matrix_game import MatrixGame

# -- matrix game ----------------------------------------------------------------------


def test_matrix_game_pays_only_the_paying_joint_action():
    env = MatrixGame(num_envs=6)
    obs, state = env.reset(seed=0)
    assert [o.shape for o in obs] == [(6, 0)] * 4 and state.shape == (6, 0)
    assert env.obs_sizes == [0, 0, 0, 0] and env.state_size == 0
    actions = [
        np.array([0, 0, 1, 0, 0, 0]),
        np.array([0, 0, 0, 2, 0, 0]),
        np.array([0, 4, 0, 0, 0, 0]),
        np.array([0, 0, 0, 0, 7, 0]),
    ]
    res = env.step(actions)
    np.testing.assert_array_equal(res.reward, [1, 0, 0, 0, 0, 1])
    assert res.terminated.all() and not res.truncated.any()


def test_matrix_game_parameters():
    env = MatrixGame(num_envs=2, action_counts=(3, 3), paying_action=(2, 1), payoff=5.0)
    res = env.step([np.array([2, 2]), np.array([1, 1])])
    np.testing.assert_array_equal(res.reward, [5.0, 5.0])
    res = env.step([np.array([0, 2]), np.array([1, 0])])
    np.testing.assert_array_equal(res.reward, [0.0, 0.0])
    with pytest.raises(ValueError, match="paying_action"):
        MatrixGame(action_counts=(2, 3), paying_action=(0, 3))
    with pytest.raises(ValueError, match="action_counts"):
        MatrixGame(action_counts=())


def test_matrix_game_expected_reward_is_exact():
    env = MatrixGame(num_envs=200_000)
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.ones(k)) + 0.0 for k in env.action_counts]
    probs = [p / p.sum() for p in probs]
    exact = env.expected_reward(probs)
    assert exact == pytest.approx(np.prod([p[0] for p in probs]))
    uniform = [np.full(k, 1.0 / k) for k in env.action_counts]
    assert env.expected_reward(uniform) == pytest.approx(1 / 240)
    actions = [rng.choice(len(p), size=env.num_envs, p=p) for p in probs]
    mc = env.step(actions).reward.mean()
    assert mc == pytest.approx(exact, abs=4 * np.sqrt(exact / env.num_envs))
    with pytest.raises(ValueError, match="policy_probs"):
        env.expected_reward(probs[:3])


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda a: a[:3], "expected 4 agents"),
        (lambda a: [a[0][:2]] + a[1:], r"actions\[0\].*shape"),
        (lambda a: [a[0].astype(float) + 0.5] + a[1:], r"actions\[0\].*integers"),
        (lambda a: [a[0], a[1], a[2], np.full(4, np.nan)], r"actions\[3\].*integers"),
        (lambda a: [a[0], a[1] + 3] + a[2:], r"actions\[1\].*range"),
        (lambda a: [a[0], a[1], a[2] - 1, a[3]], r"actions\[2\].*range"),
        (lambda a: [a[0].astype(str)] + a[1:], r"actions\[0\]"),
    ],
)
def test_matrix_game_rejects_bad_actions(bad, match):
    env = MatrixGame(num_envs=4)
    good = [np.zeros(4, np.int64) for _ in range(4)]
    env.step(good)
    with pytest.raises(ValueError, match=match):
        env.step(bad(good))


# -- differential game ----------------------------------------------------------------------


def test_differential_game_published_surface():
    env = DifferentialGame(num_envs=3)
    r = env.reward_at(np.array([[5.2, 5.0], [1.1, 1.0]]))
    assert r[0] == pytest.approx(1.04, abs=0.01)
    assert r[1] == pytest.approx(0.95, abs=0.01)
    # the global maximum on a grid is near (5.2, 5.0) and worth about 1.04
    g = np.linspace(0, 7, 141)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    values = env.reward_at(grid)
    i, j = np.unravel_index(values.argmax(), values.shape)
    assert abs(g[i] - 5.2) < 0.2 and abs(g[j] - 5.0) < 0.2
    assert values.max() == pytest.approx(1.04, abs=0.01)
    # actions are clipped to [0, 7] before the reward
    assert env.reward_at(np.array([[-3.0, 9.0]]))[0] == env.reward_at(np.array([[0.0, 7.0]]))[0]


def test_differential_game_step_and_parameters():
    env = DifferentialGame(num_envs=2, peaks=[((2.0, 2.0), (1.0, 1.0), 1.0)], tilt=(0.0, 0.5))
    res = env.step([np.array([[2.0], [2.0]]), np.array([[2.0], [3.0]])])
    peak = 1.0 / (2 * np.pi)
    np.testing.assert_allclose(res.reward, [peak + 1.0, peak * np.exp(-0.5) + 1.5])
    assert res.terminated.all()
    env = DifferentialGame(n_agents=3, peaks=[Peak((1, 1, 1), (1, 2, 3), 2.0)])
    assert env.n_agents == 3 and env.tilt == (0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="peaks"):
        DifferentialGame(peaks=[((1.0,), (1.0,), 1.0)])
    with pytest.raises(ValueError, match="peaks"):
        DifferentialGame(peaks=[((1.0, 1.0), (0.0, 1.0), 1.0)])
    with pytest.raises(ValueError, match="tilt"):
        DifferentialGame(tilt=(0.1,))


@pytest.mark.parametrize(
    "mu,sd",
    [((1.5, 1.5), (0.5, 0.5)), ((6.5, 0.3), (1.0, 2.0)), ((3.0, 4.0), (0.0, 0.7))],
)
def test_differential_expected_reward_matches_monte_carlo(mu, sd):
    env = DifferentialGame()
    exact = env.expected_reward([(mu[0], sd[0]), (mu[1], sd[1])])
    a = np.random.default_rng(0).normal(mu, sd, size=(400_000, 2))
    samples = env.reward_at(a)
    se = samples.std() / np.sqrt(len(samples))
    assert exact == pytest.approx(samples.mean(), abs=5 * se + 1e-12)
    # dict form, and a deterministic policy gives the reward at the (clipped) mean
    same = env.expected_reward([{"mean": [mu[0]], "std": [sd[0]]}, {"mean": mu[1], "std": sd[1]}])
    assert same == exact
    assert env.expected_reward([(mu[0], 0.0), (mu[1], 0.0)]) == pytest.approx(
        float(env.reward_at(np.array(mu)))
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda a: a[:1], "expected 2 agents"),
        (lambda a: [a[0].reshape(-1), a[1]], r"actions\[0\].*shape"),
        (lambda a: [a[0], np.full((3, 1), np.nan)], r"actions\[1\].*NaN"),
        (lambda a: [a[0], np.full((3, 1), np.inf)], r"actions\[1\].*NaN or inf"),
        (lambda a: [np.zeros((3, 2)), a[1]], r"actions\[0\].*shape"),
    ],
)
def test_differential_game_rejects_bad_actions(bad, match):
    env = DifferentialGame(num_envs=3)
    good = [np.ones((3, 1), np.float32), np.ones((3, 1), np.float32)]
    env.step(good)
    with pytest.raises(ValueError, match=match):
        env.step(bad(good))


def test_differential_expected_reward_validates():
    env = DifferentialGame()
    with pytest.raises(ValueError, match="policy_probs"):
        env.expected_reward([(1.0, 0.5)])
    with pytest.raises(ValueError, match="policy_probs"):
        env.expected_reward([(1.0, -0.5), (1.0, 0.5)])


# -- registry ----------------------------------------------------------------------


def test_registry_makes_games_and_records_spec():
    assert {"matrix", "differential"} <= set(available_envs())
    env = make_env("matrix", num_envs=7, seed=3, action_counts=(2, 2))
    assert isinstance(env, MatrixGame) and env.num_envs == 7 and env.action_counts == [2, 2]
    assert env_spec(env) == {"name": "matrix", "kwargs": {"num_envs": 7, "action_counts": (2, 2)}}
    assert env_spec(MatrixGame()) is None
    with pytest.raises(ValueError, match="unknown environment"):
        make_env("no-such-game")
    with pytest.raises(ValueError, match="already registered"):
        register("matrix", "kl_alloc.envs.matrix_game:MatrixGame")
    with pytest.raises(ValueError, match="lazy"):
        register("bad-entry", "not_a_module_path")
