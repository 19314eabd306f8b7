"""Figures and the metrics behind them (kl_alloc.analysis) on tiny real runs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from kl_alloc import analysis
from kl_alloc.analysis import choose_metric, seed_statistics
from kl_alloc.analysis.figures import (
    new_figure,
    output_path,
    plot_allocation_heatmaps,
    plot_learning_curves,
    plot_runs,
    plot_trajectories,
)
from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rundir import load_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for algo in ("hatrpo", "hatrpo-w"):
        for seed in (0, 1):
            Trainer(
                "matrix", algo=algo, seed=seed, out_dir=root / "matrix" / f"{algo}-{seed}"
            ).learn(3 * 4000, progress=False)
    cfg = TrainerConfig.for_env("differential", num_envs=200)
    for algo in ("hatrpo", "hatrpo-g"):
        out = root / "differential" / f"{algo}-0"
        Trainer("differential", algo=algo, config=cfg, seed=0, out_dir=out).learn(
            1200, progress=False
        )
    return root


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- plot_runs (what `kl-alloc plot` calls) -------------------------------------------------------


def test_plot_runs_writes_every_figure_per_env(runs_root, tmp_path):
    written = plot_runs([runs_root], tmp_path / "all")
    names = sorted(p.name for p in written)
    assert names == [
        "all_differential_allocation.png", "all_differential_curves.png",
        "all_differential_trajectories.png", "all_matrix_allocation.png", "all_matrix_curves.png",
    ]  # fmt: skip
    for path in written:
        assert is_png(path)
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 250 and image.shape[1] > 500


def test_plot_runs_single_env_and_directory_prefix(runs_root, tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    written = plot_runs([runs_root / "matrix"], out, heatmaps="all")
    assert sorted(p.name for p in written) == [
        "allocation_hatrpo-w.png", "allocation_hatrpo.png", "curves.png"
    ]  # fmt: skip
    assert output_path("x/y", "curves") == Path("x/y_curves.png")
    assert output_path("x/", "curves") == Path("x/curves.png")


def test_plot_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        plot_runs([tmp_path / "missing"], tmp_path / "p")
    with pytest.raises(ValueError, match="no run directories"):
        plot_runs([tmp_path], tmp_path / "p")
    with pytest.raises(ValueError, match="heatmaps"):
        plot_runs([tmp_path], tmp_path / "p", heatmaps="some")


# -- the individual figures draw the data they claim to --------------------------------------------


def test_learning_curves_plot_the_mean_over_seeds(runs_root):
    runs = [load_run(d) for d in analysis.find_runs([runs_root / "matrix"])]
    assert choose_metric(runs) == "expected_reward"
    fig = new_figure(6, 4)
    ax = fig.subplots()
    plot_learning_curves(ax, runs, threshold=0.99)
    lines = {line.get_label(): line for line in ax.get_lines()}
    w = [r for r in runs if analysis.run_algo(r) == "hatrpo-w"]
    line = lines["HATRPO-W (mean of 2)"]
    np.testing.assert_allclose(line.get_xdata(), w[0].env_steps)
    np.testing.assert_allclose(line.get_ydata(), (w[0].expected_reward + w[1].expected_reward) / 2)


def test_seed_statistics_interpolates_without_extrapolating():
    a = (np.array([0.0, 2.0, 4.0]), np.array([0.0, 2.0, 4.0]))
    b = (np.array([1.0, 3.0]), np.array([10.0, 30.0]))
    x, mean, std, count = seed_statistics([a, b])
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(count, [1, 2, 2, 2, 1])
    np.testing.assert_allclose(mean, [0, (1 + 10) / 2, (2 + 20) / 2, (3 + 30) / 2, 4])
    np.testing.assert_allclose(std[1], 4.5)


def test_allocation_heatmap_shows_delta_alloc(runs_root):
    run = load_run(runs_root / "matrix" / "hatrpo-w-0")
    fig = plot_allocation_heatmaps([run])
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_array_equal(shown, run.delta_alloc.T)  # agent x iteration
    assert shown.shape == (4, 3)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["agent 0 (K=2)", "agent 1 (K=3)", "agent 2 (K=5)", "agent 3 (K=8)"]


def test_trajectories_start_at_the_initial_mean_and_end_at_the_final_one(runs_root):
    runs = [load_run(d) for d in analysis.find_runs([runs_root / "differential"])]
    fig = plot_trajectories(runs)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == [
        "HATRPO: 0/1 end in the global basin", "HATRPO-G: 0/1 end in the global basin"
    ]  # fmt: skip
    for ax, run in zip(axes, runs, strict=True):
        xy = ax.get_lines()[0].get_xydata()
        np.testing.assert_allclose(xy[0], [1.5, 1.5])
        np.testing.assert_allclose(xy[-1], run.policy_mean[-1])
        assert len(xy) == run.iteration.size + 1


def test_trajectories_need_a_continuous_two_agent_game(runs_root):
    runs = [load_run(d) for d in analysis.find_runs([runs_root / "matrix"])]
    with pytest.raises(ValueError, match="mean actions"):
        plot_trajectories(runs)


# -- analysis: the metrics -------------------------------------------------------------------------


def test_samples_to_reach_and_truncate(runs_root):
    run = load_run(runs_root / "matrix" / "hatrpo-0")
    fake = dataclasses.replace(run, expected_reward=np.array([0.5, 0.995, 0.2]))
    assert analysis.samples_to_reach(fake, 0.99) == 8000
    assert analysis.samples_to_reach(fake, 0.999) is None
    assert analysis.samples_to_reach(analysis.truncate(fake, 4000), 0.99) is None
    cut = analysis.truncate(run, 8000)
    assert cut.iteration.tolist() == [1, 2] and cut.delta_alloc.shape == (2, 4)
    assert cut.time["solver"].shape == (2,)


def test_spread_counts_never_as_infinite():
    s = analysis.spread([4.0, 2.0, None, 8.0])
    assert s["n"] == 4 and s["n_valid"] == 3
    assert s["min"] == 2.0 and s["max"] is None and s["mean"] is None
    assert s["median"] in (4.0, 8.0)  # an order statistic, never interpolated towards inf
    full = analysis.spread([1.0, 2.0, 3.0, 4.0])
    assert full["median"] == 2.5 and full["q25"] == 1.75 and full["mean"] == 2.5
    assert analysis.spread([None, None])["median"] is None


def test_wilson_interval():
    lo, hi = analysis.wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-3)
    lo, hi = analysis.wilson_interval(10, 20)
    assert lo == pytest.approx(0.2993, abs=1e-3) and hi == pytest.approx(0.7007, abs=1e-3)
    assert all(math.isnan(v) for v in analysis.wilson_interval(0, 0))


def test_basin_and_final_action(runs_root):
    run = load_run(runs_root / "differential" / "hatrpo-0")
    traj = analysis.mean_action_trajectory(run)
    assert traj.shape == (7, 2)
    np.testing.assert_array_equal(analysis.final_mean_action(run), run.policy_mean[-1])
    assert analysis.in_basin((5.0, 6.4)) and not analysis.in_basin((5.0, 6.6))
    assert analysis.in_basin((1.0, 1.0), analysis.LOCAL_CENTRE)


def test_format_table_aligns_columns():
    text = analysis.format_table(["a", "bb"], [["xxx", 1], ["y", 22]])
    lines = text.splitlines()
    assert lines[0] == "| a   | bb |"
    assert lines[1] == "|-----|----|"
    assert len({len(line) for line in lines}) == 1
