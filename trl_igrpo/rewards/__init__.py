"""TRL-compatible reward functions: ``(completions, **kwargs) -> list[float | None]``."""

from .format import think_answer_format_reward
from .math import MathAccuracyReward, extract_answer_region, math_accuracy_reward

__all__ = ["MathAccuracyReward", "extract_answer_region", "math_accuracy_reward", "think_answer_format_reward"]
