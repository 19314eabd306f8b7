"""The analysis side (run-directory format, metrics, reports, figures) never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kl_alloc


def test_analysis_and_rundir_do_not_import_torch():
    code = (
        "import sys\n"
        "import kl_alloc.analysis, kl_alloc.analysis.report, kl_alloc.analysis.figures\n"
        "import kl_alloc.analysis.sweep_figures, kl_alloc.rundir\n"
        "kl_alloc.rundir.provenance()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = str(Path(kl_alloc.__file__).resolve().parents[1])  # this checkout, not another one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
