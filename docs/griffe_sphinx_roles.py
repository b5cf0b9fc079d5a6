"""Griffe extension for the docs build: render the Sphinx roles and HF-style docstrings found in our package.

Docstrings in ``trl_igrpo`` are read by humans in editors and by ``help()`` as much as by mkdocstrings, and several use
Sphinx roles (``:func:`name```, ``:class:`~pkg.Name```) or the Hugging Face doc-builder form (``[`~trl.GRPOConfig`]``).
Markdown shows both literally, so this extension rewrites them into plain inline code before rendering:
``:func:`~a.b.c``` -> ``c``, ``:class:`a.B``` -> ``a.B``, ``[`~trl.GRPOConfig`]`` -> ``GRPOConfig``.

The config classes document their fields as TRL's do (``trl/trainer/grpo_config.py``): a ``Parameters:`` section in
groups introduced by ``> Parameters that control ...`` lines, each field as ``name (`type`, *optional*, defaults to
`value`):``. Griffe's Google parser reads neither the group lines nor that type form, so each group becomes its own
parameters section titled with the group's line, and the type keeps only the type (the table's Default column shows
the default). Only the text shown in the docs changes; the source docstrings are untouched.
"""

from __future__ import annotations

import re

import griffe

_SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")
_HF_REFERENCE = re.compile(r"\[`(~?)([A-Za-z_][\w.]*)`\](?![\[(])")
_PARAMETERS_HEADER = re.compile(r"^(?:Parameters|Args|Arguments):\s*$")
_GROUP_LINE = re.compile(r"^\s+>\s*(?P<title>\S.*?)\s*$")
_HF_ITEM = re.compile(r"^(?P<indent> {4})(?P<name>\w+) \((?P<type>.*)\):\s*$")


def _code(match: re.Match) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rewrite_references(text: str) -> str:
    """Replace Sphinx roles and HF doc-builder references in ``text`` with inline code."""
    return _HF_REFERENCE.sub(_code, _SPHINX_ROLE.sub(_code, text))


def _plain_type(hf_type: str) -> str:
    """The type alone, without backticks: ``int or None`` for TRL's ``int`` or ``None``, optional, defaults to ..."""
    return hf_type.split(", *optional*")[0].split(", defaults to")[0].replace("`", "").strip()


def rewrite_parameter_groups(text: str) -> str:
    """Turn TRL's grouped ``Parameters:`` section into one Google-style section per group, titled with the group's
    ``> Parameters that control ...`` line, and reduce each ``name (`type`, *optional*, defaults to ...)`` to
    ``name (type)``."""
    lines, out, in_section = text.splitlines(), [], False
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if _PARAMETERS_HEADER.match(line):
            in_section = True
            following = next((later for later in lines[index:] if later.strip()), "")
            if _GROUP_LINE.match(following):
                continue  # each group opens its own titled section
        elif in_section and line.strip() and not line.startswith(" "):
            in_section = False
        elif in_section and (group := _GROUP_LINE.match(line)):
            if out and out[-1].strip():
                out.append("")
            out.append(f"Parameters: {group.group('title')}")
            while index < len(lines) and not lines[index].strip():
                index += 1  # no blank line between a section title and its first item
            continue
        elif in_section and (item := _HF_ITEM.match(line)):
            line = f"{item.group('indent')}{item.group('name')} ({_plain_type(item.group('type'))}):"
        out.append(line)
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite every loaded object's docstring with :func:`rewrite_references` and
    :func:`rewrite_parameter_groups`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite_parameter_groups(rewrite_references(obj.docstring.value))
