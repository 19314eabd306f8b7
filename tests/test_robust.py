"""Robust metrics (final score, IQM, probability of improvement, profiles, variance ratio) on
synthetic run directories, checked against numpy and against rliable's own functions."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

rliable = pytest.importorskip("rliable")
from rliable import metrics as rl_metrics  # noqa: E402

from kl_alloc.analysis import robust  # noqa: E402
from kl_alloc.analysis.report import build_report  # noqa: E402
from kl_alloc.rundir import load_run  # noqa: E402

STEP = 1000  # env steps per iteration; an evaluation every 10 iterations


def write_run(root, task, method, seed, evals, total, finished=True):
    """A tiny run directory: config/spec/trial JSON, progress.jsonl up to ``total`` steps,
    ``evals`` = [(env_steps, return), ...] in eval.jsonl, done.json when finished."""
    d = root / task / method / f"seed-{seed}"
    d.mkdir(parents=True)
    env = {"name": "toy", "kwargs": {}, "n_agents": 2}
    (d / "config.json").write_text(json.dumps({"algo": method, "seed": seed, "env": env}))
    (d / "spec.json").write_text(json.dumps({"env": "toy", "algo": method, "seed": seed}))
    trial = {"task": task, "method": method, "algo": method, "params": {}}
    (d / "trial.json").write_text(json.dumps(trial))
    agents = [{"agent": i, "kl": 0.001} for i in range(2)]
    with open(d / "progress.jsonl", "w") as f:
        for it in range(1, total // STEP + 1):
            rec = {"iteration": it, "env_steps": it * STEP, "seconds_per_iter": 0.1}
            f.write(json.dumps(rec | {"agents": agents}) + "\n")
    with open(d / "eval.jsonl", "w") as f:
        for steps, ret in evals:
            f.write(json.dumps({"env_steps": steps, "return_mean": ret, "episodes": 10}) + "\n")
    if finished:
        (d / "done.json").write_text(json.dumps({"env_steps": total}))
    return d


def curve(final, total=100 * STEP, every=10 * STEP, seed=0):
    """Evaluations rising linearly to ``final`` with a little noise."""
    rng = np.random.default_rng(seed)
    xs = np.arange(every, total + 1, every)
    return [(int(x), float(final * x / total + rng.normal(0, 0.01))) for x in xs]


def test_final_score_is_the_mean_of_the_last_tenth(tmp_path):
    evals = [(s, float(s)) for s in range(5000, 100_001, 5000)]  # 20 evaluations
    run = load_run(write_run(tmp_path, "t", "hatrpo", 0, evals, 100_000))
    # last 10% of 100k steps: evaluations at 90k, 95k, 100k
    assert robust.final_score(run, "eval_return") == pytest.approx(np.mean([90e3, 95e3, 100e3]))
    assert robust.final_score(run, "eval_return", 0.25) == pytest.approx(
        np.mean([s for s in range(75_000, 100_001, 5000)])
    )
    assert robust.steps_reached(run) == 100_000
    with pytest.raises(ValueError, match="fraction"):
        robust.final_score(run, "eval_return", 0.0)


def test_iqm_poi_profile_against_numpy_and_rliable():
    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 1.0, (8, 3)), rng.normal(0.0, 1.0, (6, 3))
    flat = np.sort(x.ravel())
    cut = int(0.25 * flat.size)
    assert robust.iqm(x) == pytest.approx(flat[cut : flat.size - cut].mean())
    assert robust.iqm(x) == pytest.approx(rl_metrics.aggregate_iqm(x))
    est = robust.iqm_interval(x, 500, seed=1)
    assert est["lo"] < est["value"] < est["hi"]
    assert est == robust.iqm_interval(x, 500, seed=1)  # seeded
    # P(X > Y): per task the share of pairs with x > y (no ties here), averaged over tasks
    direct = np.mean([(x[:, t, None] > y[None, :, t]).mean() for t in range(3)])
    p = robust.probability_of_improvement(x, y, 500)
    assert p["value"] == pytest.approx(direct)
    assert p["value"] == pytest.approx(rl_metrics.probability_of_improvement(x, y))
    assert p["lo"] <= p["value"] <= p["hi"]
    prof = robust.performance_profile({"x": x}, [0.0, 1.0], 200)["x"]
    assert prof["value"] == pytest.approx([(x > 0).mean(), (x > 1).mean()])
    assert all(
        lo <= v <= hi for lo, v, hi in zip(prof["lo"], prof["value"], prof["hi"], strict=True)
    )


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "ties", "nan", "equal"]),
)
def test_numpy_statistics_are_rliables_bit_for_bit(n, m, tasks, seed, kind):
    """The per-resample statistics (numpy) give rliable's values exactly: the bootstrap
    intervals are the ones rliable's own functions would give."""
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values: ties within and across methods
        x, y = rng.integers(0, 3, (n, tasks)) * 0.5, rng.integers(0, 3, (m, tasks)) * 0.5
    else:
        x, y = rng.normal(0, 1, (n, tasks)), rng.normal(0.3, 1, (m, tasks))
    if kind == "nan":
        x[rng.integers(n), rng.integers(tasks)] = np.nan
    if kind == "equal":
        y = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_iqm = float(rl_metrics.aggregate_iqm(x))
        want_poi = float(rl_metrics.probability_of_improvement(x, y))
    np.testing.assert_array_equal(robust.aggregate_iqm(x), want_iqm)
    np.testing.assert_array_equal(robust.aggregate_poi(x, y), want_poi)


def test_variance_ratio_and_normalisation():
    a, b = [1.0, 3.0, 2.0, 5.0, 4.0], [2.0, 2.5, 3.0, 2.2, 2.7]
    r = robust.variance_ratio(a, b, 1000)
    assert r["value"] == pytest.approx(np.var(a, ddof=1) / np.var(b, ddof=1))
    assert r["lo"] < r["value"] < r["hi"]
    assert math.isnan(robust.variance_ratio([1.0], b)["value"])
    norm = robust.minmax_normalise({"a": [1.0, 3.0], "b": [2.0, 5.0]})
    assert norm["a"].tolist() == [0.0, 0.5] and norm["b"].tolist() == [0.25, 1.0]


@pytest.fixture()
def sweep_runs(tmp_path):
    """Two tasks x 3 methods x 5 seeds (G: 4 finished + 1 unfinished on task a)."""
    finals = {"hatrpo": 1.0, "hatrpo-w": 1.3, "hatrpo-g": 1.2}
    for t, task in enumerate(("a", "b")):
        for method, final in finals.items():
            for seed in range(5):
                unfinished = task == "a" and method == "hatrpo-g" and seed == 4
                total = 60 * STEP if unfinished else 100 * STEP
                evals = [e for e in curve(final * (1 + t), seed=seed) if e[0] <= total]
                write_run(tmp_path, task, method, seed, evals, total, finished=not unfinished)
    return tmp_path


def test_report_robust_numbers(sweep_runs):
    report = build_report([sweep_runs], resamples=100, profile_resamples=50)
    json.dumps(report, allow_nan=False)
    task = {t["task"]: t for t in report["tasks"]}["a"]
    rows = {r["method"]: r for r in task["rows"]}
    assert rows["hatrpo-g"]["n"] == 4 and rows["hatrpo-g"]["found"] == 5
    status = [r for r in task["runs"] if r["method"] == "hatrpo-g" and r["seed"] == 4][0]
    assert status == status | {"finished": False, "steps": 60 * STEP, "used": False}
    # every row's final scores: the mean of the evaluations at >= 90k steps (90k, 100k)
    for method, row in rows.items():
        expect = []
        for seed in row["seeds"]:
            run = load_run(sweep_runs / "a" / method / f"seed-{seed}")
            keep = run.eval_env_steps >= 90 * STEP
            expect.append(run.eval_return_mean[keep].mean())
        assert row["final"] == pytest.approx(expect)
        assert row["iqm"]["value"] == pytest.approx(rl_metrics.aggregate_iqm(np.array(expect)))
    pairs = [(c["x"], c["y"]) for c in task["comparisons"]]
    assert pairs == [("hatrpo-w", "hatrpo"), ("hatrpo-g", "hatrpo"), ("hatrpo-w", "hatrpo-g")]
    assert task["comparisons"][0]["poi"]["value"] == 1.0  # every W run beats every HATRPO run
    var = {(v["x"], v["y"]): v for v in task["variance"]}
    g, w = rows["hatrpo-g"]["final"], rows["hatrpo-w"]["final"]
    assert var[("hatrpo-g", "hatrpo-w")]["ratio"]["value"] == pytest.approx(
        np.var(g, ddof=1) / np.var(w, ddof=1)
    )
    agg = report["aggregate"]
    assert agg["tasks"] == ["a", "b"]
    g_agg = [x for x in agg["groups"] if x["method"] == "hatrpo-g"][0]
    assert g_agg["runs"] == 4  # task a has 4 finished G seeds: 4 per task


def test_report_include_unfinished_and_common_steps(sweep_runs):
    inc = build_report([sweep_runs], resamples=100, include_unfinished=True, robust=False)
    row = [r for r in inc["tasks"][0]["rows"] if r["method"] == "hatrpo-g"][0]
    assert row["n"] == 5 and row["unfinished"] == 1 and max(row["steps_reached"]) == 100 * STEP
    common = build_report([sweep_runs], resamples=100, common_steps=50 * STEP, robust=False)
    row = [r for r in common["tasks"][0]["rows"] if r["method"] == "hatrpo-g"][0]
    assert row["n"] == 5 and row["steps_reached"] == [50 * STEP] * 5
    run = load_run(sweep_runs / "a" / "hatrpo-g" / "seed-0")
    keep = (run.eval_env_steps >= 45 * STEP) & (run.eval_env_steps <= 50 * STEP)
    assert row["final"][0] == pytest.approx(run.eval_return_mean[keep].mean())


def test_rliable_missing_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("rliable"):
            raise ImportError("no rliable")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"kl_alloc\[analysis\]"):
        robust.require_rliable()
    assert not robust.has_rliable()


def test_evidence_script_writes_summary_figures_and_readme(sweep_runs, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.py"
    spec = importlib.util.spec_from_file_location("evidence", path)
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    readme = tmp_path / "README.md"
    start, end = evidence.markers("own-envs")
    readme.write_text(f"# x\n{start}\nold\n{end}\nafter\n")
    out = tmp_path / "out"
    argv = ["--runs", str(sweep_runs), "--out", str(out), "--readme", str(readme)]
    argv += ["--marker", "own-envs"]
    assert evidence.main([*argv, "--resamples", "50"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    g4 = [r for r in summary["runs"] if r["task"] == "a" and r["method"] == "hatrpo-g"][-1]
    assert g4 == g4 | {"seed": 4, "finished": False, "env_steps": 60 * STEP}
    run = load_run(sweep_runs / "a" / "hatrpo-g" / "seed-4")
    keep = run.eval_env_steps >= 54 * STEP  # last 10% of the 60k steps it reached
    assert g4["final_score"] == pytest.approx(run.eval_return_mean[keep].mean())
    assert summary["main_tasks"] == ["a", "b"] and summary["control_tasks"] == []
    assert {p.name for p in out.glob("*.png")} == {"curves.png", "profiles.png", "poi.png"}
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{end}\nafter\n")
    assert "evidence.py --runs" in text and "--marker own-envs" in text  # how to regenerate it
    assert "29 of 30 runs finished" in text and "a/hatrpo-g/seed-4 (0.06M)" in text
    assert "HATRPO-W > HATRPO" in text
    # with the sweep's sweep.json: the trial count it plans, and how many have not started
    (sweep_runs / "sweep.json").write_text(json.dumps({"sweep": {"trials": 36}}))
    assert evidence.main([*argv, "--resamples", "50"]) == 0
    text = readme.read_text()
    assert "29 of 36 trials finished" in text and "; 6 not started." in text
    assert json.loads((out / "summary.json").read_text())["planned_trials"] == 36
    # a fresh clone has no sweep.json (not committed): the sweep file gives the count instead
    (sweep_runs / "sweep.json").unlink()
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[sweep]\nname = "s"\nseeds = [0, 1, 2, 3]\nsteps = 1000\n'
        '[tasks.matrix]\nenv = "matrix"\n[methods.hatrpo]\nalgo = "hatrpo"\n'
    )
    assert evidence.main([*argv, "--resamples", "50", "--sweep", str(sweep)]) == 0
    assert json.loads((out / "summary.json").read_text())["planned_trials"] == 4
    sweep.write_text("[sweep]\nnope = 1\n")
    with pytest.raises(SystemExit):  # a broken sweep file is an argument error, not a traceback
        evidence.main([*argv, "--sweep", str(sweep)])
    from kl_alloc.analysis.evidence import control_tasks

    assert control_tasks(["ant-2x4", "ant-2x4-damping", "hc"]) == {"ant-2x4-damping"}


def test_evidence_script_before_any_run(tmp_path):
    """A sweep whose runs have not started yet: summary.json with no runs, a README block
    saying so (not a traceback, not the previous numbers)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.py"
    spec = importlib.util.spec_from_file_location("evidence", path)
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    runs, out, readme = tmp_path / "runs", tmp_path / "out", tmp_path / "README.md"
    runs.mkdir()
    start, end = evidence.markers()
    readme.write_text(f"{start}\nold numbers\n{end}\n")
    assert evidence.main(["--runs", str(runs), "--out", str(out), "--readme", str(readme)]) == 0
    assert json.loads((out / "summary.json").read_text())["runs"] == []
    text = readme.read_text()
    assert "old numbers" not in text and "has started yet" in text


def test_evidence_control_attribution(tmp_path):
    """A control task (a-carry: HATRPO with carry = true, 3 seeds x 60k steps) against its base
    task (a: HATRPO and W, 5 seeds x 100k): every run cut at 60k, the groups' final scores,
    and P(X > Y) for the setting, for W against HATRPO with the setting, and for W against
    HATRPO; a base run short of 60k is left out."""
    from kl_alloc.analysis import evidence

    def run(task, method, seed, final, total, planned, carry, finished=True):
        evals = [e for e in curve(final, total=planned, seed=seed) if e[0] <= total]
        d = write_run(tmp_path, task, method, seed, evals, total, finished=finished)
        cfg = json.loads((d / "config.json").read_text())
        cfg["config"] = {"carry": carry, "cg_damping": 0.1, "env_kwargs": {}}
        (d / "config.json").write_text(json.dumps(cfg))
        sp = json.loads((d / "spec.json").read_text()) | {"steps": planned}
        (d / "spec.json").write_text(json.dumps(sp))

    for seed in range(5):  # base: at 60k, HATRPO ~0.6, W ~0.78 (W seed 4 stopped at 50k)
        run("a", "hatrpo", seed, 1.0, 100 * STEP, 100 * STEP, False)
        short = seed == 4
        run("a", "hatrpo-w", seed, 1.3, (50 if short else 100) * STEP, 100 * STEP, True, not short)
    for seed in range(3):  # the control: HATRPO carrying, ~1.2 at 60k
        run("a-carry", "hatrpo", seed, 1.2, 60 * STEP, 60 * STEP, True)

    from kl_alloc.analysis.runs import summarize_runs

    summaries = summarize_runs([tmp_path])
    (entry,) = evidence.control_attribution(summaries, 0.1, resamples=200)
    assert entry["control"] == "a-carry" and entry["base"] == "a" and entry["steps"] == 60 * STEP
    assert entry["setting"] == {"carry": True}
    groups = {g["label"]: g for g in entry["groups"]}
    assert set(groups) == {"HATRPO", "HATRPO-W", "HATRPO (carry=true)"}
    assert groups["HATRPO-W"]["seeds"] == [0, 1, 2, 3]  # seed 4 never reached 60k
    # a group's final score: its evaluation at 60k (the last 10% of 60k steps: >= 54k)
    h0 = load_run(tmp_path / "a" / "hatrpo" / "seed-0")
    assert groups["HATRPO"]["final"][0] == pytest.approx(
        h0.eval_return_mean[h0.eval_env_steps == 60 * STEP][0]
    )
    poi = {(c["x"], c["y"]): c["poi"]["value"] for c in entry["comparisons"]}
    assert poi == {
        ("HATRPO (carry=true)", "HATRPO"): 1.0,  # what carrying does to HATRPO
        ("HATRPO-W", "HATRPO (carry=true)"): 0.0,  # W beyond the re-use
        ("HATRPO-W", "HATRPO"): 1.0,
    }
    text = "\n".join(evidence.attribution_lines([entry]))
    assert "Control a-carry (carry = true) against a, both at 60k steps" in text
    assert "HATRPO-W > HATRPO (carry=true)" in text


def test_evidence_script_with_a_run_not_evaluated_yet(sweep_runs, tmp_path):
    """A run that has iterated but not evaluated yet (its final score is unknown) is listed
    with final_score None; summary.json stays valid JSON (it used to fail on NaN)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.py"
    spec = importlib.util.spec_from_file_location("evidence", path)
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    write_run(sweep_runs, "b", "hatrpo-w", 7, [], 2 * STEP, finished=False)
    out = tmp_path / "out"
    argv = ["--runs", str(sweep_runs), "--out", str(out), "--readme", "", "--resamples", "50"]
    assert evidence.main(argv) == 0
    rows = json.loads((out / "summary.json").read_text())["runs"]
    (row,) = [r for r in rows if r["task"] == "b" and r["seed"] == 7]
    assert row == row | {"finished": False, "env_steps": 2 * STEP, "final_score": None}


def test_evidence_claims_table(sweep_runs, tmp_path):
    """The generated claims table: per main task, W and G against HATRPO (mean final score in
    %, P(X > HATRPO) and what its interval says), var(G) / var(W); from summary.json."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.py"
    spec = importlib.util.spec_from_file_location("evidence", path)
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    out, readme = tmp_path / "out", tmp_path / "README.md"
    start, end = evidence.markers()
    gstart, gend = evidence.markers("evidence-glance")
    readme.write_text(f"## glance\n{gstart}\nold\n{gend}\nhand table\n{start}\n{end}\n")
    argv = ["--runs", str(sweep_runs), "--out", str(out), "--readme", str(readme)]
    assert evidence.main([*argv, "--resamples", "200", "--claim-envs", "toy"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task_envs"] == {"a": "toy", "b": "toy"}
    claims = {c["task"]: c for c in summary["claims"]}
    assert claims["a"]["env"] == "toy"
    assert set(claims) == {"a", "b"}
    a = claims["a"]
    assert a["runs"] == {"hatrpo": 5, "hatrpo-w": 5, "hatrpo-g": 4}  # G seed 4 unfinished
    w = a["methods"]["hatrpo-w"]
    # finals ~1.0 (H) and ~1.3 (W), noise 0.01: +30%, every W run above every H run
    assert w["improvement"]["value"] == pytest.approx(0.3, abs=0.02)
    assert w["improvement"]["lo"] < w["improvement"]["value"] < w["improvement"]["hi"]
    assert w["poi"]["value"] == 1.0 and w["verdict"] == "higher"
    assert a["var_g_over_w"]["value"] > 0
    text = readme.read_text()
    assert "**W and G against HATRPO, per task**" in text
    row = [ln for ln in text.splitlines() if ln.startswith("| a ") and "HATRPO-W vs" in ln][0]
    assert "| 5/5/4 " in row and "+30." in row and "higher" in row
    var = [ln for ln in text.splitlines() if ln.startswith("| a ") and "var(G) / var(W)" in ln][0]
    assert any(s in var for s in ("1.39 inside", "1.39 above it", "1.39 below it")), var
    # the glance block: one row per published claim, over the main tasks a and b
    glance = text.split(gstart)[1].split(gend)[0]
    assert "old" not in glance and "\nhand table\n" in text
    assert "29 of 30 runs finished" in glance and "**in progress**" in glance  # G seed 4
    (gain,) = [ln for ln in glance.splitlines() if ln.startswith("| final score above HATRPO")]
    assert "a (5/5/4 seeds H/W/G, 0.1M): W +30." in gain
    # finals W ~1.3, G ~1.2 against H ~1.0 on both tasks (noise 0.01): both higher on both;
    # G's +20% interval lies below the claimed 25%, W's +30% does not lie below 22.5%
    assert "**W**: higher than HATRPO on 2 of 2 tasks (a, b);" in gain
    assert "W's gain interval lies above its claimed 22.5% on 2 of 2" in gain
    assert "**G**: higher than HATRPO on 2 of 2 tasks (a, b); G's gain interval lies below" in gain
    assert "its claimed 25% on 2 of 2" in gain
    (var_row,) = [ln for ln in glance.splitlines() if ln.startswith("| G's variance")]
    assert "a: var(G)/var(W)" in var_row and "b: var(G)/var(W)" in var_row
    # the gain claim judged on the claim's envs only: b on another env is shown beside it,
    # its verdict apart and not set against the claimed size
    summary["claims"][[c["task"] for c in summary["claims"]].index("b")]["env"] = "mpe"
    (gain,) = [ln for ln in evidence.glance_block(summary, claim_envs=["toy"]).splitlines()
               if ln.startswith("| final score above HATRPO")]  # fmt: skip
    assert "b (mpe, beside the claim; 5/5/5 seeds H/W/G" in gain, gain
    judged, beside = gain.split("beside the claim (mpe): ")
    assert "**W**: higher than HATRPO on 1 of 1 task (a); W's gain interval lies above" in judged
    assert "**G**: higher than HATRPO on 1 of 1 task (b)" in beside
    assert "claimed" not in beside
    # the script's default: MaMuJoCo only; here no task is on it
    (gain,) = [ln for ln in evidence.glance_block(summary, claim_envs=["mamujoco"]).splitlines()
               if ln.startswith("| final score above HATRPO")]  # fmt: skip
    assert "beside the claim (mpe, toy): **W**: higher than HATRPO on 2 of 2" in gain, gain
    from kl_alloc.analysis.tables import separation  # what the verdict column uses

    assert separation({"value": 0.6, "lo": 0.3, "hi": 0.9}) == "no separation"
    assert separation({"value": 0.1, "lo": 0.0, "hi": 0.4}) == "lower"
    assert separation({"value": 0.5, "lo": None, "hi": None}) == "too few runs"


def test_robust_figures_give_a_method_one_colour(sweep_runs):
    """Every figure of a report draws a method in its registered colour, in one legend order
    (the curves drew G in W's colour beside profiles that did not), and says how many of a
    group's curves are part-way."""
    import matplotlib.colors as mcolors

    from kl_alloc.analysis import robust_figures
    from kl_alloc.analysis.runs import summarize_runs
    from kl_alloc.methods import method_color

    report = build_report([sweep_runs], resamples=50, profile_resamples=20)
    summaries = summarize_runs([sweep_runs])
    figs = {
        "curves": robust_figures.plot_curves_ci(report, summaries, resamples=50),
        "profiles": robust_figures.plot_profiles(report),
    }
    want = {m: mcolors.to_rgba(method_color(m)) for m in ("hatrpo", "hatrpo-w", "hatrpo-g")}
    for name, fig in figs.items():
        ax = fig.axes[0]
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        labels = [ln.get_label() for ln in lines]
        assert [lb.split(" (")[0] for lb in labels] == ["HATRPO", "HATRPO-W", "HATRPO-G"], name
        for ln, m in zip(lines, want, strict=True):
            assert mcolors.to_rgba(ln.get_color()) == want[m], (name, m)
        if name == "curves":  # task a: G seed 4 has not finished
            assert labels[2] == "HATRPO-G (n=5, 1 part-way)" and labels[0] == "HATRPO (n=5)"
    # kl-alloc report's own curves: the same colours (they were tab10 by position)
    from kl_alloc.analysis import sweep_figures
    from kl_alloc.methods import method_label

    ax = sweep_figures.plot_curves(report, summaries, include_unfinished=False).axes[0]
    by_label = {method_label(m): c for m, c in want.items()}
    drawn = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert len(drawn) == 3
    for ln in drawn:
        assert mcolors.to_rgba(ln.get_color()) == by_label[ln.get_label().split(" (")[0]]


def test_a_report_gives_one_interval_per_variance_ratio(sweep_runs):
    """A row's var(X) / var(baseline) and the robust variance table's entry for the same pair
    are the same numbers (the row's numpy bootstrap gave a second interval for the ratio)."""
    report = build_report([sweep_runs], resamples=200, profile_resamples=20)
    for task in report["tasks"]:
        rows = {r["method"]: r for r in task["rows"] if not r["params"]}
        for v in task["variance"]:
            if v["y"] != "hatrpo":
                continue
            r = rows[v["x"]]
            got = (r["var_ratio"], r["var_lo"], r["var_hi"])
            assert got == (v["ratio"]["value"], v["ratio"]["lo"], v["ratio"]["hi"])
            assert v["ratio"]["lo"] is not None


def _control_run(root, task, method, seed, final, total, config, params=None, env="toy"):
    """A run of write_run with trainer settings (config.json's config), swept values
    (trial.json's params, in the sweep's KEY=VALUE folder) and an env name."""
    sub = method + "".join(f"/{k}={v}" for k, v in (params or {}).items())
    d = write_run(root, task, sub, seed, curve(final, total=total, seed=seed), total)
    cfg = json.loads((d / "config.json").read_text())
    # a real run keeps its swept values in config.json's config as well
    cfg |= {"algo": method, "env": cfg["env"] | {"name": env}, "config": config | (params or {})}
    (d / "config.json").write_text(json.dumps(cfg))
    trial = {"task": task, "method": method, "algo": method, "params": params or {}}
    (d / "trial.json").write_text(json.dumps(trial))
    sp = json.loads((d / "spec.json").read_text()) | {"algo": method, "steps": total, "env": env}
    (d / "spec.json").write_text(json.dumps(sp))


def test_evidence_controls_pair_swept_values_and_need_the_same_env(tmp_path):
    """A control is compared with the base group of the same method AND swept values (it met
    whichever group came last); a task that only shares the name prefix (another env) is no
    control; a control group of one run gives None bounds in summary.json, not a crash."""
    from kl_alloc.analysis import evidence

    for damping in (0.001, 0.1):  # the control's first run (0.001) differs from a base run
        for m, final in (("hatrpo", 1.0 if damping == 0.1 else 2.0), ("hatrpo-w", 3.0)):
            for seed in range(3):
                _control_run(tmp_path, "a", m, seed, final, 100 * STEP,
                             {"carry": False}, {"cg_damping": damping})  # fmt: skip
        # the control: HATRPO carrying, one run at 0.1 (no interval) and none at 0.001 (it
        # sweeps a subset of the base's values: the base's first run, 0.001, differs from it)
        for seed in range(1 if damping == 0.1 else 0):
            _control_run(tmp_path, "a-carry", "hatrpo", seed, 5.0 if damping == 0.1 else 0.5,
                         100 * STEP, {"carry": True}, {"cg_damping": damping})  # fmt: skip
    for seed in range(2):  # another game named like a control of "a"
        _control_run(tmp_path, "a-3-4", "hatrpo", seed, 1.0, 100 * STEP, {"carry": False},
                     env="other")  # fmt: skip
    summary, _ = evidence.build_summary(tmp_path, resamples=100)
    json.dumps(summary, allow_nan=False)  # what the script writes
    assert summary["control_tasks"] == ["a-carry"] and summary["main_tasks"] == ["a", "a-3-4"]
    assert evidence.find_controls(evidence.summarize_runs([tmp_path])) == {"a-carry": "a"}
    (entry,) = summary["attribution"]
    poi = {(c["x"], c["y"]): c["poi"]["value"] for c in entry["comparisons"]}
    assert entry["setting"] == {"carry": True}  # not the swept cg_damping
    # carrying at 0.1 (5.0) against plain 0.1 (1.0), never against 0.001
    assert poi[("HATRPO (carry=true, cg_damping=0.1)", "HATRPO (cg_damping=0.1)")] == 1.0
    assert ("HATRPO (carry=true, cg_damping=0.1)", "HATRPO (cg_damping=0.001)") not in poi
    assert poi[("HATRPO-W (cg_damping=0.1)", "HATRPO (carry=true, cg_damping=0.1)")] == 0.0
    assert ("HATRPO-W (cg_damping=0.001)", "HATRPO (cg_damping=0.001)") in poi
    one = [g for g in entry["groups"] if len(g["final"]) == 1]
    assert one and one[0]["iqm"]["lo"] is None  # NaN -> None
    # the claims use unswept groups only, and the glance says why "a" has none
    glance = evidence.glance_block(summary)
    assert "a: swept groups only" in glance
    assert glance.startswith(f"Generated from `{summary['runs_dir']}`")  # no script named


def test_evidence_variance_verdict_with_an_open_upper_end():
    """Few seeds: resamples where var(W) = 0 leave the ratio's interval without an upper end;
    the claimed 1.39 can still lie below it (it said "too few runs")."""
    from kl_alloc.analysis.evidence import _variance_says

    assert _variance_says({"value": 5.0, "lo": 2.0, "hi": None}) == "1.39 below it"
    assert _variance_says({"value": 5.0, "lo": 0.5, "hi": None}) == "1.39 inside (no upper end)"
    assert _variance_says({"value": 5.0, "lo": None, "hi": None}) == "too few runs"
    assert _variance_says({"value": 1.0, "lo": 0.2, "hi": 1.2}) == "1.39 above it"


def test_evidence_script_keeps_no_stale_output(sweep_runs, tmp_path):
    """A README's glance block and figures from an earlier state do not survive a rerun that
    has nothing to put there; a missing --runs is an argument error."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence.py"
    spec = importlib.util.spec_from_file_location("evidence", path)
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    readme, out = tmp_path / "README.md", tmp_path / "out"
    (start, end), (gstart, gend) = evidence.markers(), evidence.markers("evidence-glance")
    readme.write_text(f"{gstart}\n{gend}\n{start}\n{end}\n")
    argv = ["--out", str(out), "--readme", str(readme), "--resamples", "50"]
    assert evidence.main(["--runs", str(sweep_runs), *argv]) == 0
    assert "HATRPO" in readme.read_text().split(gstart)[1].split(gend)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evidence.main(["--runs", str(empty), *argv]) == 0
    assert "HATRPO" not in readme.read_text() and not list(out.glob("*.png"))
    # runs with no evaluation at all: a summary, and no figure left from before
    assert evidence.main(["--runs", str(sweep_runs), *argv]) == 0
    assert list(out.glob("*.png"))
    noeval = tmp_path / "noeval"
    write_run(noeval, "a", "hatrpo", 0, [], 10 * STEP)
    assert evidence.main(["--runs", str(noeval), *argv]) == 0
    assert not (out / "curves.png").exists()
    with pytest.raises(SystemExit):
        evidence.main(["--runs", str(tmp_path / "nope"), *argv])


def test_variance_ratio_upper_end_among_infinite_resamples():
    """Resamples with var(y) = 0 have an infinite ratio: an end that lies among them is inf
    (numpy's interpolation gave NaN and warned on every report)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = robust.variance_ratio([0.0235, 0.02351, 0.023494], [1.0, 1.0, 1.0 + 1e-6], 500, 0)
    assert r["hi"] == math.inf and r["lo"] == 0.0
    r = robust.variance_ratio([1.0, 2, 3, 4, 5], [2.0, 3, 1, 5, 4], 500, 0)
    assert 0 < r["lo"] < 1 < r["hi"] < math.inf


def test_a_task_with_no_finished_run_keeps_its_metric(tmp_path):
    """Part-way runs only: the task's metric is still the one its runs have (eval_return
    here), so their final scores in a summary mean what they will mean once runs finish."""
    for seed in range(2):
        write_run(tmp_path, "t", "hatrpo", seed, curve(1.0, total=50 * STEP, seed=seed),
                  50 * STEP, finished=False)  # fmt: skip
    write_run(tmp_path, "t", "hatrpo-w", 0, [], 2 * STEP, finished=False)  # just started
    (task,) = build_report([tmp_path], resamples=50, profile_resamples=20)["tasks"]
    assert task["metric"] == "eval_return"


def test_status_line_names_a_grid_sweeps_groups_by_their_swept_values():
    """Two groups of one task and method that differ only in a swept value are told apart
    (they used to read as the same run twice)."""
    from kl_alloc.analysis.evidence import status_line

    def run(seed, damping, finished, steps=1_000_000):
        return {"task": "ant", "method": "hatrpo", "config": {"cg_damping": damping},
                "seed": seed, "env_steps": steps, "finished": finished}  # fmt: skip

    runs = [run(0, 0.1, True), run(0, 0.001, True), run(1, 0.001, True),
            run(1, 0.1, False, 250_000), run(2, 0.001, False, 500_000)]  # fmt: skip
    line = status_line(runs, planned=8)
    assert line.startswith("3 of 8 trials finished (ant/hatrpo (cg_damping=0.001): 2, "
                           "ant/hatrpo (cg_damping=0.1): 1)")  # fmt: skip
    assert "ant/hatrpo (cg_damping=0.1)/seed-1 (0.25M)" in line
    assert "ant/hatrpo (cg_damping=0.001)/seed-2 (0.50M)" in line
    assert line.endswith("; 3 not started.")
    plain = status_line([{**runs[0], "config": {}}])
    assert plain == "1 of 1 runs finished (ant/hatrpo: 1)."
