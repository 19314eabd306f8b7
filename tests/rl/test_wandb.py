"""The W&B logger (kl_alloc.rl.callbacks.WandbLogger, kl-alloc train --wandb): the scalars equal
TensorBoard's. Our side is checked with a stand-in ``wandb`` module (what we pass to
``wandb.init`` / ``run.log``); where the real wandb is installed, one offline run is read back
from its own ``.wandb`` file."""

from __future__ import annotations

import glob
import json
import struct
import sys
import types
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.cli import main
from kl_alloc.rl.callbacks import WandbLogger, eval_scalars, iteration_scalars

STEPS = 8000  # two matrix-game iterations of 4000 plays


class FakeRun:
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.id = kwargs.get("id") or f"fake{len(kwargs)}"
        self.logged: list[dict] = []
        self.defined: list[tuple] = []
        self.finished = False

    def define_metric(self, name: str, **kwargs) -> None:
        self.defined.append((name, kwargs))

    def log(self, data: dict) -> None:
        self.logged.append(dict(data))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def train(out: Path, *extra: str, steps: int = STEPS) -> int:
    return main(["train", "--env", "matrix", "--algo", "hatrpo-w", "--steps", str(steps),
                 "--out", str(out), "--no-progress", *extra])  # fmt: skip


def by_tag(logged: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(env_steps, value), ...]} of a W&B run's log calls."""
    out = defaultdict(list)
    for row in logged:
        for tag, value in row.items():
            if tag != "env_steps":
                out[tag].append((row["env_steps"], value))
    return dict(out)


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_cli_wandb_logs_the_tensorboard_scalars(tmp_path, fake_wandb):
    out = tmp_path / "run"
    assert train(out, "--tensorboard", "--wandb", "--wandb-project", "proj") == 0
    (run,) = fake_wandb.runs
    assert run.kwargs["project"] == "proj" and run.kwargs["name"] == "run"
    assert run.kwargs["dir"] == str(out) and run.finished
    assert run.kwargs["config"]["algo"] == "hatrpo-w"
    assert run.kwargs["config"] == json.loads((out / "config.json").read_text())
    assert ("*", {"step_metric": "env_steps"}) in run.defined
    assert "mode" not in run.kwargs  # WANDB_MODE is wandb's own to read

    wb, tb = by_tag(run.logged), tensorboard_scalars(out / "tb")
    assert set(wb) == set(tb) and {"reward/expected", "agent_3/kl", "eval/return_mean"} <= set(wb)
    for tag, points in tb.items():
        steps, values = zip(*wb[tag], strict=True)
        assert list(steps) == [s for s, _ in points], tag
        np.testing.assert_allclose(values, [v for _, v in points], rtol=1e-6, err_msg=tag)
    assert [s for s, _ in wb["reward/expected"]] == [4000, 8000]

    # --resume continues the same W&B run; the run directory stays a run directory
    assert json.loads((out / "wandb" / "kl_alloc_run.json").read_text()) == {"id": run.id}
    assert train(out, "--wandb", "--resume", steps=12000) == 0
    again = fake_wandb.runs[-1]
    assert again.kwargs["id"] == run.id and again.kwargs["resume"] == "allow"
    assert [r["env_steps"] for r in again.logged if "reward/expected" in r] == [12000]
    # --force starts a new W&B run
    assert train(out, "--wandb", "--force") == 0
    assert "id" not in fake_wandb.runs[-1].kwargs


SWEEP = """
[sweep]
name = "wb_sweep"
seeds = 1
steps = 8000

[methods.hatrpo]
[methods."hatrpo-w"]

[tasks.matrix]
env = "matrix"
"""


def test_sweep_wandb_makes_one_run_per_trial_and_continues_it(tmp_path, fake_wandb):
    (tmp_path / "s.toml").write_text(SWEEP)
    out = tmp_path / "runs"

    def sweep(*extra: str) -> int:
        return main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--executor",
                     "inline", "--no-report", "--no-progress", *extra])  # fmt: skip

    assert sweep("--wandb", "--wandb-project", "proj", "--tensorboard") == 0
    runs = {r.kwargs["name"]: r for r in fake_wandb.runs}
    assert set(runs) == {"matrix/hatrpo/seed-0", "matrix/hatrpo-w/seed-0"}
    for name, run in runs.items():
        task, method, _ = name.split("/")
        run_dir = out / name
        assert run.kwargs["project"] == "proj" and run.kwargs["group"] == "wb_sweep"
        assert run.kwargs["tags"] == [task, method] and run.kwargs["dir"] == str(run_dir)
        assert run.kwargs["config"]["algo"] == method and run.finished
        wb, tb = by_tag(run.logged), tensorboard_scalars(run_dir / "tb")
        assert set(wb) == set(tb) and [s for s, _ in wb["reward/expected"]] == [4000, 8000]
        assert json.loads((run_dir / "wandb" / "kl_alloc_run.json").read_text()) == {"id": run.id}
    # a finished sweep starts nothing; a longer one continues each trial's own W&B run
    assert sweep("--wandb") == 0 and len(fake_wandb.runs) == 2
    (tmp_path / "s.toml").write_text(SWEEP.replace("steps = 8000", "steps = 12000"))
    assert sweep("--wandb", "--wandb-group", "g2") == 0
    for again in fake_wandb.runs[2:]:
        first = runs[again.kwargs["name"]]
        assert again.kwargs["id"] == first.id and again.kwargs["resume"] == "allow"
        assert again.kwargs["group"] == "g2"
        assert [r["env_steps"] for r in again.logged if "reward/expected" in r] == [12000]
    assert len(fake_wandb.runs) == 4


def test_sweep_without_wandb_refuses_before_any_trial(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    (tmp_path / "s.toml").write_text(SWEEP)
    code = main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "runs"),
                 "--executor", "inline", "--wandb", "--no-progress"])  # fmt: skip
    assert code == 2 and 'pip install "kl_alloc[wandb]"' in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_shared_scalars_leave_out_missing_and_non_finite_values():
    record = {"env_steps": 10, "mean_reward": 0.5, "expected_reward": None, "critic_loss": np.nan,
              "time": {"rollout": 1.0}, "agents": [{"agent": 0, "kl": 0.01, "delta_alloc": 0.02,
                                                    "actual_improvement": np.inf}]}  # fmt: skip
    assert iteration_scalars(record) == {
        "reward/mean_step": 0.5,
        "time/rollout": 1.0,
        "agent_0/delta_alloc": 0.02,
        "agent_0/kl": 0.01,
    }
    assert iteration_scalars(record, per_agent=False) == {"reward/mean_step": 0.5,
                                                          "time/rollout": 1.0}  # fmt: skip
    assert eval_scalars({"return_mean": 2.0, "return_std": None}) == {"eval/return_mean": 2.0}


def test_without_wandb_the_error_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ImportError, match=r'pip install "kl_alloc\[wandb\]"'):
        WandbLogger()
    with pytest.raises(SystemExit) as exc:
        train(tmp_path / "run", "--wandb")
    assert exc.value.code == 2
    assert 'pip install "kl_alloc[wandb]"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def wandb_history(run_file: str) -> list[dict]:
    """The history rows of a wandb run file (a LevelDB-style log of ``Record`` protobufs: 32 KiB
    blocks of records with a 7-byte header, crc32 / length / type FULL 1, FIRST 2, MIDDLE 3,
    LAST 4; the file starts with a 7-byte ``:W&B`` header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(run_file).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, rows = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # the padding at a block's end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            if rec.WhichOneof("record_type") == "history":
                items = rec.history.item
                rows.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
    return rows


def test_real_wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason='needs the extra: pip install "kl_alloc[wandb]"')
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert train(out, "--tensorboard", "--wandb") == 0
    wandb.teardown()  # the wandb service writes the run file out when it stops
    (run_file,) = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in wandb_history(run_file)]
    wb, tb = by_tag(rows), tensorboard_scalars(out / "tb")
    assert set(wb) == set(tb)
    for tag, points in tb.items():
        np.testing.assert_allclose([v for _, v in wb[tag]], [v for _, v in points], rtol=1e-6)
        assert [s for s, _ in wb[tag]] == [s for s, _ in points], tag
