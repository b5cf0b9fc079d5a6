"""TRL-compatible reward functions: ``(completions, **kwargs) -> list[float | None]``."""

from .format import think_answer_format_reward
from .judge import (
    FAILURE_KINDS,
    GenerativeJudgeReward,
    JudgeConnectionError,
    JudgeError,
    JudgeReplyError,
    JudgeTimeoutError,
    JudgeUnavailableError,
    JudgeUnscorableBatchError,
    OpenAIChatJudge,
    TransformersJudge,
    make_judge_reward,
)
from .math import MathAccuracyReward, extract_answer_region, math_accuracy_reward
from .reasoning_format import make_reasoning_format_reward, reasoning_format_reward, reasoning_format_score

__all__ = [
    "FAILURE_KINDS",
    "GenerativeJudgeReward",
    "JudgeConnectionError",
    "JudgeError",
    "JudgeReplyError",
    "JudgeTimeoutError",
    "JudgeUnavailableError",
    "JudgeUnscorableBatchError",
    "MathAccuracyReward",
    "OpenAIChatJudge",
    "TransformersJudge",
    "extract_answer_region",
    "make_judge_reward",
    "make_reasoning_format_reward",
    "math_accuracy_reward",
    "reasoning_format_reward",
    "reasoning_format_score",
    "think_answer_format_reward",
]
