"""TRL-compatible reward functions: ``(completions, **kwargs) -> list[float | None]``."""

from .format import think_answer_format_reward
from .gold import UnreadableGoldError
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
from .math import Grade, MathAccuracyReward, extract_answer_region, math_accuracy_reward
from .reasoning_format import (
    ReasoningModeConflictError,
    make_reasoning_format_reward,
    reasoning_format_reward,
    reasoning_format_score,
)
from .registry import REWARD_FUNCS, resolve_reward_funcs

__all__ = [
    "FAILURE_KINDS",
    "REWARD_FUNCS",
    "GenerativeJudgeReward",
    "Grade",
    "JudgeConnectionError",
    "JudgeError",
    "JudgeReplyError",
    "JudgeTimeoutError",
    "JudgeUnavailableError",
    "JudgeUnscorableBatchError",
    "MathAccuracyReward",
    "OpenAIChatJudge",
    "ReasoningModeConflictError",
    "TransformersJudge",
    "UnreadableGoldError",
    "extract_answer_region",
    "make_judge_reward",
    "make_reasoning_format_reward",
    "math_accuracy_reward",
    "reasoning_format_reward",
    "reasoning_format_score",
    "resolve_reward_funcs",
    "think_answer_format_reward",
]
