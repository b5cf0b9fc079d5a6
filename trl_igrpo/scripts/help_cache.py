"""A cache for the ``--help`` text of the training subcommands, so ``trl-igrpo igrpo --help`` answers at once.

Building a training script's parser imports its config dataclasses, and with them TRL's and transformers'
``TrainingArguments`` (transformers imports torch, PEFT and bitsandbytes on the way): 10-20 s on a small CPU before a
line of help appears. The help text is a pure function of the command line, the installed versions of the packages
that define the flags, this package's source files, the terminal width and whether a GPU is visible (the ``bf16`` /
``use_cpu`` defaults), so the first ``--help`` stores it under ``~/.cache/trl-igrpo/help/`` (``$XDG_CACHE_HOME``) keyed
by all of those, and later ones print it without importing anything heavy. A ``--config`` file (whose keys become the
defaults shown) bypasses the cache; a cache that cannot be read or written is skipped silently, since the slow path
gives the same text. ``TRL_IGRPO_HELP_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from pathlib import Path

__all__ = ["cached_help", "help_requested", "store_help"]

_PACKAGES = ("trl-igrpo", "trl", "transformers", "torch", "peft", "accelerate")


def help_requested(argv: list[str]) -> bool:
    """Whether `argv` asks for help without a ``--config`` file (only then is the text cacheable)."""
    wants = any(token in ("-h", "--help") for token in argv)
    return wants and "--config" not in argv and os.environ.get("TRL_IGRPO_HELP_CACHE", "1") != "0"


def _source_signature() -> str:
    root = Path(__file__).resolve().parents[1]  # the trl_igrpo package
    parts = []
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        parts.append(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def _versions() -> str:
    found = []
    for name in _PACKAGES:
        try:
            found.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}=none")
    return ",".join(found)


def _gpu_hint() -> str:
    """What decides ``torch.cuda.is_available()`` without importing torch: the visible devices and the driver."""
    driver = os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")
    return f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}:{driver}"


def _path(command: str, argv: list[str]) -> Path:
    key = "\0".join(
        [command, *argv, _versions(), _source_signature(), str(shutil.get_terminal_size().columns), _gpu_hint()]
    )
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "trl-igrpo" / "help" / f"{command}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.txt"


def cached_help(command: str, argv: list[str]) -> str | None:
    """The stored help text of ``trl-igrpo COMMAND ARGV``, or None."""
    try:
        return _path(command, argv).read_text(encoding="utf-8")
    except (OSError, RuntimeError):  # RuntimeError: no home directory
        return None


def store_help(command: str, argv: list[str], text: str) -> None:
    """Store the help text of ``trl-igrpo COMMAND ARGV`` (best effort)."""
    try:
        path = _path(command, argv)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except (OSError, RuntimeError):
        pass
