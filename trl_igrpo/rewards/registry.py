"""Reward functions by name: ``reward_funcs=["math_accuracy"]`` in Python means the package's function, as on the CLI.

TRL's ``GRPOTrainer`` reads every string in ``reward_funcs`` as the id of a sequence-classification reward model and
downloads it, so a package reward name would be sent to the Hub (and fail with a Hub error far from the cause). The
package's trainers resolve strings first (:func:`resolve_reward_funcs`), in this order:

1. a name of :data:`REWARD_FUNCS` (``"math_accuracy"``) or the ``__name__`` of one (``"math_accuracy_reward"``);
2. a dotted path ``"pkg.module.func"`` that imports (as ``trl grpo --reward_funcs`` accepts);
3. a reward model: a local directory, or a Hub id whose config loads; TRL then loads the model as usual.

Anything else raises a ``ValueError`` listing the names and the loading error.

The command lines (``--reward_funcs`` of the training scripts, ``pass-rate --reward-funcs``) take the first two only,
through :func:`load_reward_func`, which names the closest known name or the import error in one line.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import Any

from ..utils.imports import import_dotted
from .format import think_answer_format_reward
from .math import math_accuracy_reward
from .reasoning_format import make_reasoning_format_reward, reasoning_format_reward

__all__ = ["REWARD_FUNCS", "load_reward_func", "resolve_reward_func", "resolve_reward_funcs"]

#: The package's reward functions by short name (the names ``trl-igrpo igrpo|grpo --reward_funcs`` take).
REWARD_FUNCS: dict[str, Callable] = {
    "math_accuracy": math_accuracy_reward,
    "think_answer_format": think_answer_format_reward,
    "reasoning_format": reasoning_format_reward,
    "reasoning_format_on": make_reasoning_format_reward(mode="on"),
    "reasoning_format_off": make_reasoning_format_reward(mode="off"),
}


def _by_name(name: str, registry: dict[str, Callable]) -> Callable | None:
    if name in registry:
        return registry[name]
    return next((func for func in registry.values() if getattr(func, "__name__", None) == name), None)


def _import_dotted(name: str) -> Callable | None:
    if "." not in name or "/" in name or os.path.exists(name):
        return None
    try:
        func = import_dotted(name)
    except (ImportError, AttributeError, ValueError):
        return None
    return func if callable(func) else None


def load_reward_func(name: str, registry: dict[str, Callable] | None = None, flag: str = "--reward_funcs") -> Callable:
    """The reward function a command line names: a name of ``registry`` (default :data:`REWARD_FUNCS`) or of one of
    its functions, or a dotted path ``"pkg.module.func"``. Raises ``ValueError`` in one line: an unknown name with the
    closest known one (`flag` is the option that took it), or why a dotted path did not import."""
    registry = REWARD_FUNCS if registry is None else registry
    func = _by_name(name, registry)
    if func is not None:
        return func
    if "." not in name:
        close = difflib.get_close_matches(name, sorted(registry), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown reward function {name!r}{hint}; {flag} takes {', '.join(sorted(registry))} or a dotted path "
            "'pkg.module.func'."
        )
    try:
        func = import_dotted(name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot import reward function {name!r}: {error}") from None
    if not callable(func):
        raise ValueError(f"reward function {name!r} is a {type(func).__name__}, not a function.")
    return func


def resolve_reward_func(
    name: str, registry: dict[str, Callable] | None = None, revision: str | None = None
) -> Callable | str:
    """The reward function ``name`` stands for, or ``name`` itself when it is a loadable reward model (see module)."""
    registry = REWARD_FUNCS if registry is None else registry
    func = _by_name(name, registry) or _import_dotted(name)
    if func is not None:
        return func
    if os.path.isdir(name):
        return name
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=False)
    except Exception as error:  # OSError (not found, offline), ValueError (bad id), EnvironmentError...
        raise ValueError(
            f"reward_funcs entry {name!r} is not one of the package's reward names ({', '.join(sorted(registry))}), "
            "not an importable 'pkg.module.func', and not a reward model: no such local directory, and loading it "
            f"from the Hub failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}). Pass a name above, "
            "a callable, or the path/id of a sequence-classification reward model."
        ) from error
    return name


def resolve_reward_funcs(reward_funcs: Any, revision: str | None = None) -> Any:
    """``reward_funcs`` (one entry or a list) with every string resolved by :func:`resolve_reward_func`."""
    if isinstance(reward_funcs, str):
        return resolve_reward_func(reward_funcs, revision=revision)
    if isinstance(reward_funcs, (list, tuple)):
        return [
            resolve_reward_func(func, revision=revision) if isinstance(func, str) else func for func in reward_funcs
        ]
    return reward_funcs
