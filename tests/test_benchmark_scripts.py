"""The benchmark scripts run both ways the docs show: `python -m benchmarks.X` from the root and `python benchmarks/X.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script",
    [
        "gpu_check",
        "igrpo_vs_grpo",
        "igrpo_vs_grpo_chained",
        "step_profile",
        "generation",
        "rewards",
        "agent_igrpo_vs_grpo",
    ],
)
def test_benchmark_scripts_import_their_report_helpers_when_run_as_files(script, tmp_path):
    """Run as `python benchmarks/X.py` (not `-m`), a script that imports `benchmarks._report` only when it writes its
    tables would fail after the whole run: each puts the repository root on sys.path first."""
    code = (
        "import runpy, sys\n"
        f"sys.path[0] = {str(ROOT / 'benchmarks')!r}  # what `python benchmarks/X.py` gives\n"
        f"runpy.run_path({str(ROOT / 'benchmarks' / (script + '.py'))!r}, run_name='not_main')\n"
        "import benchmarks._report\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
