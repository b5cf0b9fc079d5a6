"""``"pkg.module.name"`` strings to the objects they name (reward functions on the command line and in configs)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_dotted"]


def import_dotted(path: str) -> Any:
    """The object ``path`` names: ``"pkg.module.func"`` imports ``pkg.module`` and returns its ``func``.

    Raises ``ValueError`` for a string without a module part, ``ImportError`` / ``AttributeError`` when the module or
    the attribute does not exist (callers turn them into their own one-line messages).
    """
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not a dotted path 'pkg.module.name'")
    return getattr(importlib.import_module(module_name), attribute)
