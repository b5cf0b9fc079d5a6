"""Every ``trl_igrpo.…`` name the package's docstrings and the docs mention exists: a module that imports, or an
object reachable from one (``:class:`~trl_igrpo.core.GRPOBaseTrainer```, ```trl_igrpo.data.load_data```, ...).

A rename or a move that leaves a reference behind fails here, naming the file and the reference.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where references are read: the package's source (docstrings, comments, messages), the docs and the README.
SOURCES = sorted([*ROOT.joinpath("trl_igrpo").rglob("*.py"), *ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"])
#: A dotted name under the package, optionally with Sphinx's ``~`` (show the last part only).
REFERENCE = re.compile(r"~?\b(trl_igrpo(?:\.[A-Za-z_]\w*)+)")


def resolves(reference: str) -> bool:
    """Whether ``reference`` is an importable module or an attribute path below the longest importable prefix."""
    parts = reference.split(".")
    for end in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for name in parts[end:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def _references() -> list[tuple[str, str]]:
    found = set()
    for path in SOURCES:
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8")):
            found.add((str(path.relative_to(ROOT)), match.group(1)))
    return sorted(found)


def test_references_are_found():
    references = {reference for _, reference in _references()}
    assert "trl_igrpo.core.GRPOBaseTrainer" in references and len(references) > 100


@pytest.mark.parametrize(("where", "reference"), _references())
def test_reference_resolves(where, reference):
    assert resolves(reference), f"{where} mentions {reference}, which does not exist"


def test_the_resolver_refuses_what_does_not_exist():
    assert resolves("trl_igrpo.igrpo.drafts.select_drafts") and resolves("trl_igrpo.core")
    assert not resolves("trl_igrpo.core.GRPOTrainerBase") and not resolves("trl_igrpo.no_such_module")
