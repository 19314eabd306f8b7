"""The sweep report: grouping, bootstrap statistics, baseline comparison, files written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kl_alloc.analysis.metrics import bootstrap_improvement, bootstrap_mean_ci
from kl_alloc.analysis.report import build_report, make_report, summarize_runs
from kl_alloc.cli import main as cli_main
from kl_alloc.rl import Trainer, TrainerConfig


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Plain trainer runs (no trial.json): HATRPO x 3 seeds, W x 3 seeds at two deltas, and one
    unfinished run."""
    root = tmp_path_factory.mktemp("runs")
    for algo, deltas in (("hatrpo", (0.01,)), ("hatrpo-w", (0.01, 0.02))):
        for delta in deltas:
            for seed in range(3):
                cfg = TrainerConfig.for_env("matrix", num_envs=400, delta=delta)
                out = root / f"{algo}-{delta}-{seed}"
                Trainer("matrix", algo=algo, config=cfg, seed=seed, out_dir=out).learn(
                    4000, progress=False
                )
    cfg = TrainerConfig.for_env("matrix", num_envs=400)
    t = Trainer("matrix", algo="hatrpo-g", config=cfg, seed=0, out_dir=root / "unfinished")
    t.learn(800, progress=False, callback=lambda tr, rec: tr.iteration < 1)
    return root


def test_bootstrap_mean_ci_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(3.0, 1.0, 20)
    lo, hi = bootstrap_mean_ci(x, 2000, seed=0)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_mean_ci(x, 2000, seed=0)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([2.0], 100))  # one run: no interval
    assert all(math.isnan(v) for v in bootstrap_mean_ci([], 100))


def test_bootstrap_improvement_point_values():
    a, b = [1.2, 1.4, 1.0], [1.0, 0.8, 1.2]
    out = bootstrap_improvement(a, b, 2000, seed=0)
    assert out["improvement"] == pytest.approx((np.mean(a) - 1.0) / 1.0)
    assert out["imp_lo"] < out["improvement"] < out["imp_hi"]
    assert out["var_ratio"] == pytest.approx(np.var(a, ddof=1) / np.var(b, ddof=1))
    # a negative baseline: the improvement is still relative to its magnitude
    neg = bootstrap_improvement([-1.0, -1.0], [-2.0, -2.0], 100)
    assert neg["improvement"] == pytest.approx(0.5)
    # one run on either side: the point, but no interval (it would be zero-width on one run)
    for x, y in (([1.1], [1.0, 0.9]), ([1.1, 1.2], [1.0])):
        one = bootstrap_improvement(x, y, 100)
        assert math.isfinite(one["improvement"])
        assert math.isnan(one["imp_lo"]) and math.isnan(one["imp_hi"])


def test_summaries_guess_swept_fields_without_trial_json(runs):
    summaries = summarize_runs([runs])
    w = [s for s in summaries if s.method == "hatrpo-w"]
    assert len(w) == 6 and {s.params["delta"] for s in w} == {0.01, 0.02}
    assert all(s.params == {} for s in summaries if s.method == "hatrpo")
    assert sum(not s.finished for s in summaries) == 1


def test_report_groups_compares_and_counts(runs):
    report = build_report([runs], resamples=500)
    json.dumps(report, allow_nan=False)
    (task,) = report["tasks"]
    assert task["task"] == "matrix" and task["metric"] == "expected_reward"
    assert task["threshold"] == pytest.approx(0.99)
    rows = {(r["method"], json.dumps(r["params"])): r for r in task["rows"]}
    base = rows[("hatrpo", "{}")]
    assert base["is_baseline"] and base["n"] == 3
    w = rows[("hatrpo-w", '{"delta": 0.02}')]
    assert w["n"] == 3 and w["seeds"] == [0, 1, 2]
    assert w["improvement"] == pytest.approx(
        (w["final_mean"] - base["final_mean"]) / abs(base["final_mean"])
    )
    assert w["final_ci"][0] <= w["final_mean"] <= w["final_ci"][1]
    assert w["seconds_per_iter"] > 0 and 0 <= w["time_share"]["solver"] < 1
    # the unfinished G run is found but not aggregated
    g = rows[("hatrpo-g", "{}")]
    assert g["n"] == 0 and g["found"] == 1
    assert report["runs"] == 10 and report["finished"] == 9


def test_make_report_writes_markdown_json_and_figures(runs, tmp_path):
    report, files = make_report([runs], tmp_path / "rep", resamples=200, title="t")
    names = {f.name for f in files}
    assert {"report.md", "report.json", "curves.png", "allocation.png", "sweep.png"} <= names
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| HATRPO-W" in md and "(baseline)" in md and "delta=0.02" in md
    assert "vs HATRPO [95% CI]" in md and "x HATRPO" in md


def test_the_tables_name_the_baseline_the_report_uses(runs):
    from kl_alloc.analysis.tables import render_markdown

    md = render_markdown(build_report([runs], baseline="hatrpo-w", resamples=50))
    assert "vs HATRPO-W [95% CI]" in md and "x HATRPO-W" in md and "Baseline: HATRPO-W" in md
    assert "vs HATRPO [" not in md and "mean_HATRPO" not in md


def test_report_command(runs, tmp_path, capsys):
    code = cli_main(
        ["report", str(runs), "--out", str(tmp_path / "r"), "--resamples", "100", "--no-heatmaps"]
    )
    assert code == 0
    assert "final expected_reward" in capsys.readouterr().out
    assert not (tmp_path / "r" / "allocation.png").exists()
    assert cli_main(["report", str(tmp_path / "missing")]) == 2


def test_what_an_interval_of_p_says():
    from kl_alloc.analysis.tables import poi_table, separation

    assert separation({"value": 0.9, "lo": 0.6, "hi": 1.0}) == "higher"
    assert separation({"value": 0.1, "lo": 0.0, "hi": 0.45}) == "lower"
    assert separation({"value": 0.8, "lo": 0.5, "hi": 1.0}) == "no separation"  # touches 0.5
    assert separation({"value": 1.0, "lo": math.nan, "hi": math.nan}) == "too few runs"
    assert separation(None) == "too few runs"
    table = poi_table(
        [{"x": "hatrpo-w", "y": "hatrpo", "params": {}, "poi": {"value": 0.9, "lo": 0.6, "hi": 1}}]
    )
    assert "| HATRPO-W > HATRPO | -     | 0.9 [0.6, 1] | higher" in table


def test_params_label_writes_values_as_set_does():
    """Group labels: booleans and None as ``--set`` writes them, floats short, sorted keys."""
    from kl_alloc.analysis.tables import group_label, params_label

    label = params_label({"carry": True, "eps": None, "cg_damping": 0.001, "K": [2, 3]})
    assert label == "K=(2,3), carry=true, cg_damping=0.001, eps=none"
    assert group_label("hatrpo", {"carry": False}) == "HATRPO (carry=false)"
