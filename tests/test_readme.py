"""Every Python snippet in README.md runs as written, on CPU and offline, so the quick start cannot rot.

A fenced block whose info string is exactly ``python`` is executed, each in a fresh interpreter in an empty working
directory with no GPU visible. Blocks meant only to be read (a real run on a Hub model) are marked ```` ```python notest ````.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Printed after each snippet: how many optimizer steps a `trainer` it defines has done (None without a trainer).
EPILOGUE = (
    '\nprint("README-SNIPPET-STEPS", getattr(getattr(globals().get("trainer"), "state", None), "global_step", None))\n'
)


def _blocks() -> list[tuple[str, str, int]]:
    """(info string, code, line number) of every fenced block in README.md."""
    text = README.read_text()
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def _python_snippets() -> list[tuple[str, int]]:
    return [(code, line) for info, code, line in _blocks() if info == "python"]


def test_python_blocks_are_either_run_or_explicitly_notest():
    """A Python block with any other info string would be skipped silently; only ``python notest`` may be."""
    infos = [(info, line) for info, _, line in _blocks() if info.split()[:1] == ["python"] or info == "py"]
    assert infos, "README.md has no Python block"
    assert all(info in ("python", "python notest") for info, _ in infos), infos
    assert _python_snippets(), "README.md must keep at least one executed Python snippet (the quick start)"


@pytest.mark.slow
@pytest.mark.parametrize(("code", "line"), [pytest.param(c, n, id=f"line{n}") for c, n in _python_snippets()])
def test_readme_python_snippet_runs_on_cpu(code, line, tmp_path):
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code + EPILOGUE)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "CUDA_VISIBLE_DEVICES": "",  # as on a CPU-only machine
    }
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"README.md line {line}:\n{result.stderr[-3000:]}"
    steps = re.search(r"^README-SNIPPET-STEPS (\S+)$", result.stdout, re.MULTILINE).group(1)
    if "trainer.train()" in code:
        assert steps != "None" and int(steps) > 0, f"README.md line {line}: the snippet's trainer did not train"
