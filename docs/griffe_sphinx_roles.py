"""Griffe extension for the docs build: render the Sphinx roles and HF-style references found in our docstrings.

Docstrings in ``trl_igrpo`` are read by humans in editors and by ``help()`` as much as by mkdocstrings, and several use
Sphinx roles (``:func:`name```, ``:class:`~pkg.Name```) or the Hugging Face doc-builder form (``[`~trl.GRPOConfig`]``).
Markdown shows both literally, so this extension rewrites them into plain inline code before rendering:
``:func:`~a.b.c``` -> ``c``, ``:class:`a.B``` -> ``a.B``, ``[`~trl.GRPOConfig`]`` -> ``GRPOConfig``. Only the text
shown in the docs changes; the source docstrings are untouched.
"""

from __future__ import annotations

import re

import griffe

_SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")
_HF_REFERENCE = re.compile(r"\[`(~?)([A-Za-z_][\w.]*)`\](?![\[(])")


def _code(match: re.Match) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rewrite_references(text: str) -> str:
    """Replace Sphinx roles and HF doc-builder references in ``text`` with inline code."""
    return _HF_REFERENCE.sub(_code, _SPHINX_ROLE.sub(_code, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every loaded object's docstring with :func:`rewrite_references`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite_references(obj.docstring.value)
