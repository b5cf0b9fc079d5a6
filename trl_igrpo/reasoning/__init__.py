"""Reasoning ON/OFF (Llama-Nemotron "detailed thinking on/off", ``enable_thinking`` templates) and ``<think>`` parsing.

- :mod:`~trl_igrpo.reasoning.modes`: the two modes, the two styles of applying them, the bundled reasoning template;
- :mod:`~trl_igrpo.reasoning.conversations`: a mode applied to one conversation, and read back from it;
- :mod:`~trl_igrpo.reasoning.training_data`: one example formatted ON or OFF, paired and mixed ON/OFF data, GRPO's
  template arguments;
- :mod:`~trl_igrpo.reasoning.sampling`: generation with each mode's sampling defaults;
- :mod:`~trl_igrpo.reasoning.think`: splitting and stripping ``<think>`` blocks (the package's only think parser).

Everything is importable from here (``import trl_igrpo.reasoning as R``).
"""

from . import conversations, modes, sampling, think, training_data
from .conversations import *  # noqa: F403
from .modes import *  # noqa: F403
from .sampling import *  # noqa: F403
from .think import *  # noqa: F403
from .training_data import *  # noqa: F403

__all__ = sorted([*modes.__all__, *conversations.__all__, *training_data.__all__, *sampling.__all__, *think.__all__])
