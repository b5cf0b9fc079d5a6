"""Generative-judge reward: an LLM grades each completion against the reference answer, returning a score in [0, 1].

Llama-Nemotron's reasoning RL (arXiv 2505.00949 §5) and iGRPO's judge ablation (arXiv 2602.09000, Table 3) score with an
LLM judge; neither publishes its prompt, so the prompts here are our own. :class:`GenerativeJudgeReward` is an
``async`` TRL reward function over a backend: :class:`OpenAIChatJudge` (any OpenAI-compatible endpoint; key read from an
environment variable) or :class:`TransformersJudge` (a local model). The completion goes into the prompt as fenced
*data* and the reply is parsed strictly, so prompt injection gains nothing unless the judge obeys it in the exact
format. No silent failure: failures are counted by kind and logged, ``batch_timeout`` bounds a hung judge, and a batch
in which every request fails raises :class:`JudgeUnscorableBatchError` (``max_unscorable_batches`` tolerates a few).
Details: docs/judge.md.

One idea per module, everything importable from here:

- :mod:`~trl_igrpo.rewards.judge.errors`: the failure kinds and their exceptions;
- :mod:`~trl_igrpo.rewards.judge.prompts`: the default prompts and the fenced judge conversation;
- :mod:`~trl_igrpo.rewards.judge.verdicts`: the strict reply parsers;
- :mod:`~trl_igrpo.rewards.judge.backend_openai`, :mod:`~trl_igrpo.rewards.judge.backend_transformers`: the two
  backends;
- :mod:`~trl_igrpo.rewards.judge.reward`: the reward function and :func:`make_judge_reward`.
"""

from .backend_openai import OpenAIChatJudge
from .backend_transformers import TransformersJudge
from .errors import (
    FAILURE_KINDS,
    JudgeConnectionError,
    JudgeError,
    JudgeReplyError,
    JudgeTimeoutError,
    JudgeUnavailableError,
    JudgeUnscorableBatchError,
)
from .prompts import DEFAULT_JUDGE_SYSTEM_PROMPT, DEFAULT_JUDGE_USER_TEMPLATE
from .reward import GenerativeJudgeReward, make_judge_reward
from .verdicts import parse_numeric_verdict, parse_yes_no_verdict

__all__ = [
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_JUDGE_USER_TEMPLATE",
    "FAILURE_KINDS",
    "GenerativeJudgeReward",
    "JudgeConnectionError",
    "JudgeError",
    "JudgeReplyError",
    "JudgeTimeoutError",
    "JudgeUnavailableError",
    "JudgeUnscorableBatchError",
    "OpenAIChatJudge",
    "TransformersJudge",
    "make_judge_reward",
    "parse_numeric_verdict",
    "parse_yes_no_verdict",
]
