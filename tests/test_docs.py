"""The documentation's code is the code that runs: the worked PettingZoo module and the
allocation rules of docs/ are extracted from their pages and trained for a few iterations, and
docs/cli.md's generated help matches the parser. (`mkdocs build --strict` in .ci/run checks the
links and the API symbols.)"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of a docs page, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def block_starting(page: str, first_line: str) -> str:
    found = [b for b in python_blocks(page) if b.startswith(first_line)]
    assert len(found) == 1, f"{page}: expected one python block starting {first_line!r}"
    return found[0]


@pytest.fixture
def doc_pkg(tmp_path, monkeypatch):
    """docs/own-env.md's my_pkg/envs.py, written out as a package on sys.path."""
    pytest.importorskip("pettingzoo")
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text(block_starting("own-env.md", '"""my_pkg/envs.py'))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_pkg", "my_pkg.envs"):
        sys.modules.pop(name, None)
    yield pkg
    for name in ("my_pkg", "my_pkg.envs"):
        sys.modules.pop(name, None)


def test_the_worked_pettingzoo_example_trains_and_evaluates(doc_pkg, tmp_path):
    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    env = make_env("my_pkg.envs:make_env", num_envs=2, seed=0, episode_length=20)
    assert env.obs_sizes == [2, 3] and env.state_size == 5  # as the page says
    trainer = Trainer("my_pkg.envs:make_env", algo="hatrpo-w", seed=0, out_dir=tmp_path / "run")
    assert (trainer.config.num_envs, trainer.config.delta) == (16, 0.05)  # the module's preset
    trainer.learn(2_400)  # 3 iterations
    result = trainer.evaluate(2)
    assert result["episodes"] == 2 and -60.0 < result["return_mean"] <= 10.0


def test_the_allocation_rules_page_rules_allocate_the_budget(tmp_path):
    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    path = tmp_path / "doc_rules.py"
    path.write_text(block_starting("allocation-rules.md", "# my_rules.py"))
    spec = importlib.util.spec_from_file_location("doc_rules", path)
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    for rule in (rules.LopsidedSplit(), rules.ProportionalToUtility()):
        trainer = Trainer(make_env("matrix", num_envs=500), algo="hatrpo", seed=0, allocator=rule)
        trainer.learn(1_000)  # 2 iterations
        assert trainer.iteration == 2


def test_cli_reference_matches_the_parser():
    proc = subprocess.run(
        [sys.executable, str(DOCS / "_tools" / "gen_cli.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
