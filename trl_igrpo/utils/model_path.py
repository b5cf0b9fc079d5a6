"""What a ``model_name_or_path`` names, checked before anything heavy loads it (nothing here loads a model).

``from_pretrained("./out/ckpt")`` on a directory that does not exist treats the string as a Hugging Face Hub id and
fails, after a long traceback, with ``OSError: Repo id must be in the form 'repo_name' or 'namespace/repo_name'`` --
which names neither the missing directory nor the fix. :func:`check_model_path` turns that into one line.

The rule (:func:`looks_like_local_path`) -- a string is taken as a *local path* when it

- exists on disk (then it is fine, whatever it looks like), or
- starts with ``.``, ``/``, ``~`` (or ``\\``, or a drive such as ``C:`` on Windows), or
- contains a path separator and is not a Hub id: more than one ``/`` (``out/run1/ckpt``), or the platform's own
  separator when it is not ``/`` (``out\\ckpt`` on Windows).

Everything else is a Hub id and is left to ``transformers``: ``Qwen/Qwen2.5-Math-1.5B`` (``org/name``) and ``gpt2``
(``name``). A relative ``out/ckpt`` that does not exist is therefore read as the Hub repo ``out/ckpt``, exactly as
``transformers`` reads it; write ``./out/ckpt`` to mean the directory.
"""

from __future__ import annotations

import os
import re

__all__ = ["check_model_path", "default_output_dir", "looks_like_local_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")


def looks_like_local_path(name_or_path: str) -> bool:
    """Whether `name_or_path` is meant as a local path rather than a Hub id (see the module docstring for the rule)."""
    if name_or_path.startswith((".", "/", "~", "\\")) or _DRIVE.match(name_or_path):
        return True
    if os.sep != "/" and os.sep in name_or_path:
        return True
    return name_or_path.count("/") > 1


def check_model_path(name_or_path: str | os.PathLike | None, what: str = "model path") -> str | None:
    """Return `name_or_path` (``~`` expanded) if it is a Hub id or an existing path; raise otherwise.

    Raises:
        FileNotFoundError: `name_or_path` looks like a local path (:func:`looks_like_local_path`) and does not
            exist. The one-line message starts with ``{what} '<path>' does not exist`` and says what to pass instead.

    ``None`` and loaded model objects are returned unchanged, so it can guard any ``model=`` argument.
    """
    if name_or_path is None or not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path
    name = os.fspath(name_or_path)
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded):
        return expanded
    if not (isinstance(name_or_path, os.PathLike) or looks_like_local_path(name)):
        return name
    raise FileNotFoundError(
        f"{what} {name!r} does not exist (looked for {os.path.abspath(expanded)!r}); pass an existing local model "
        "directory (with config.json, as written by save_pretrained) or a Hugging Face Hub id such as "
        "'Qwen/Qwen2.5-Math-1.5B'."
    )


def default_output_dir(model, method: str) -> str:
    """TRL's ``output_dir`` for a trainer built without a config: ``<model name>-<method>`` (``Qwen2.5-Math-1.5B-iGRPO``
    for ``"Qwen/Qwen2.5-Math-1.5B"``; a loaded model's ``config._name_or_path`` is used)."""
    name = model if isinstance(model, str) else model.config._name_or_path
    return f"{str(name).rstrip('/').split('/')[-1]}-{method.replace(' ', '')}"
