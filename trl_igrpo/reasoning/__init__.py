"""Reasoning ON/OFF (Llama-Nemotron "detailed thinking on/off", ``enable_thinking`` templates) and ``<think>`` parsing.

- :mod:`~trl_igrpo.reasoning.modes`: applying a mode to conversations and templates, paired ON/OFF data, per-mode
  generation defaults.
- :mod:`~trl_igrpo.reasoning.think`: splitting and stripping ``<think>`` blocks (the package's only think parser).
"""

from .modes import *  # noqa: F403
from .modes import __all__ as _modes_all
from .think import *  # noqa: F403
from .think import __all__ as _think_all

__all__ = sorted([*_modes_all, *_think_all])
