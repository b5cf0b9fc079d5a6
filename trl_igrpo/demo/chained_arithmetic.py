r"""Chained arithmetic: multi-step problems whose worked solutions are chains of steps, so a draft's partial reasoning
can help a refinement. The offline benchmark task of ``benchmarks/igrpo_vs_grpo.py``.

A problem is ``What is 47+8-5+9?`` (a two-digit start and 3 or 4 additions and subtractions of one-digit numbers,
evaluated left to right, every intermediate value kept in ``[0, max_value]``; about half the steps carry or borrow),
and a worked solution keeps a running total, one step per operation:

    <think>47+8=55, -5=50, +9=59</think><answer>\boxed{59}</answer>

Compact on purpose: every digit is one token of the tiny model, each step copies its operation from the question
token for token and continues from the total just before it, and spaces would add a quarter to the length.

A **slip** is a carry mistake in one step: the step's result is off by 10 (``47+8=45``), and the steps after it
are computed correctly *from the wrong value*, so the final answer is wrong while every other step is right. That is
what makes a draft useful to a refinement here: a wrong draft usually holds a correct prefix, and fixing it means
finding the slipped step and recomputing from there (:func:`refine_chain`).

Unlike :mod:`~trl_igrpo.demo.arithmetic` (one operation, where an answer is one choice), the answer depends on 3-4
steps in a row, and a tiny model makes genuine step-level errors besides the teacher's slips. (One-digit operands
keep each step learnable by the tiny model in a short warm start: with two-digit operands it stays near 0 %.)
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..igrpo.drafts import IGRPO_SYSTEM_PROMPT
from .arithmetic import ARITHMETIC_INSTRUCTION

__all__ = [
    "CHAIN_INSTRUCTION",
    "Chain",
    "chain_solution",
    "make_chained_dataset",
    "make_chained_examples",
    "parse_chain_question",
    "refine_chain",
    "sample_chain",
    "sample_slips",
]

CHAIN_INSTRUCTION = ARITHMETIC_INSTRUCTION


@dataclass(frozen=True)
class Chain:
    """A start value and the operations applied to it left to right: ``start op_1 operand_1 op_2 operand_2 ...``."""

    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def question(self) -> str:
        """``What is 47+8-5?``"""
        return "What is " + "".join([str(self.start), *(f"{op}{n}" for op, n in self.steps)]) + "?"

    @property
    def values(self) -> list[int]:
        """The correct value after each step."""
        values, value = [], self.start
        for op, operand in self.steps:
            value = value + operand if op == "+" else value - operand
            values.append(value)
        return values

    @property
    def answer(self) -> int:
        """The correct final value."""
        return self.values[-1]


def sample_chain(
    rng: random.Random,
    num_ops: int,
    min_operand: int = 2,
    max_operand: int = 9,
    min_start: int = 10,
    max_value: int = 99,
) -> Chain:
    """A random chain: a start in ``[min_start, max_value]``, then ``num_ops`` additions/subtractions of operands in
    ``[min_operand, max_operand]``, the running value kept in ``[0, max_value]`` (each step picks an operation that
    can keep it there)."""
    if num_ops < 1:
        raise ValueError(f"num_ops must be >= 1, got {num_ops}.")
    if not 0 <= min_operand <= max_operand <= max_value or not 0 <= min_start <= max_value:
        raise ValueError("need 0 <= min_operand <= max_operand <= max_value and 0 <= min_start <= max_value.")
    value = rng.randint(min_start, max_value)
    start, steps = value, []
    for _ in range(num_ops):
        options = []
        if value + min_operand <= max_value:
            options.append("+")
        if value - min_operand >= 0:
            options.append("-")
        op = rng.choice(options)
        high = min(max_operand, max_value - value) if op == "+" else min(max_operand, value)
        operand = rng.randint(min_operand, high)
        value = value + operand if op == "+" else value - operand
        steps.append((op, operand))
    return Chain(start, tuple(steps))


def parse_chain_question(question: str) -> Chain:
    """The :class:`Chain` of a question written by :attr:`Chain.question` (``What is 47+8-5?``)."""
    match = _QUESTION.fullmatch(question.strip())
    if match is None:
        raise ValueError(f"not a chain question: {question!r}")
    steps = tuple((op, int(number)) for op, number in _STEP.findall(match.group(2)))
    return Chain(int(match.group(1)), steps)


_QUESTION = re.compile(r"What is (\d+)((?:[+-]\d+)+)\?")
_STEP = re.compile(r"([+-])(\d+)")


def _slip(value: int, delta: int) -> int:
    """A carry slip: off by ``delta`` (+-10), mirrored when that would go negative."""
    return value + delta if value + delta >= 0 else value - delta


def chain_solution(chain: Chain, slips: Mapping[int, int] | None = None, prefix: Sequence[int] | None = None) -> str:
    """A worked solution: ``start+b=c`` for the first step, then ``-d=e``, ``+f=g``... (the running total) inside
    ``<think>``, then ``<answer>\\boxed{final}</answer>``.

    ``slips`` maps a step index to a carry slip (+10 or -10) applied to that step's result; later steps continue from
    the slipped value. ``prefix`` forces the first results (a refinement copying a draft's steps).
    """
    slips = dict(slips or {})
    prefix = list(prefix or [])
    value, lines = chain.start, []
    for index, (op, operand) in enumerate(chain.steps):
        result = value + operand if op == "+" else value - operand
        if index < len(prefix):
            result = prefix[index]
        elif index in slips:
            result = _slip(result, slips[index])
        lines.append(f"{value}{op}{operand}={result}" if index == 0 else f"{op}{operand}={result}")
        value = result
    return f"<think>{', '.join(lines)}</think><answer>\\boxed{{{value}}}</answer>"


def sample_slips(rng: random.Random, num_steps: int, slip_rate: float) -> dict[int, int]:
    """Independent carry slips: each step slips with probability ``slip_rate``, by +10 or -10."""
    return {i: rng.choice((10, -10)) for i in range(num_steps) if rng.random() < slip_rate}


def _draft_results(chain: Chain, draft_slips: Mapping[int, int]) -> list[int]:
    value, results = chain.start, []
    for index, (op, operand) in enumerate(chain.steps):
        value = value + operand if op == "+" else value - operand
        if index in draft_slips:
            value = _slip(value, draft_slips[index])
        results.append(value)
    return results


def refine_chain(
    chain: Chain, draft_slips: Mapping[int, int], rng: random.Random | None = None, slip_rate: float = 0.0
) -> str:
    """The teacher's refinement of a draft that made ``draft_slips``: copy the draft's steps up to its first slip,
    recompute from there (each recomputed step slipping with ``slip_rate``). A correct draft is copied whole."""
    first_wrong = min(draft_slips) if draft_slips else len(chain.steps)
    prefix = _draft_results(chain, draft_slips)[:first_wrong]
    slips = {}
    if rng is not None and slip_rate > 0:
        slips = {i: d for i, d in sample_slips(rng, len(chain.steps), slip_rate).items() if i >= first_wrong}
    return chain_solution(chain, slips, prefix=prefix)


def make_chained_examples(
    num_examples: int,
    seed: int = 0,
    num_ops: Sequence[int] = (3, 4),
    min_operand: int = 2,
    max_operand: int = 9,
    min_start: int = 10,
    max_value: int = 99,
    conversational: bool = True,
    system_prompt: str | None = None,
) -> list[dict]:
    """Chained-arithmetic problems: ``{"prompt", "solution", "question", "num_ops"}`` rows (``solution``: the exact
    integer answer as a string). ``system_prompt="igrpo"`` adds the paper's system prompt to conversational prompts."""
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
    rng = random.Random(seed)
    rows = []
    for _ in range(num_examples):
        chain = sample_chain(rng, rng.choice(list(num_ops)), min_operand, max_operand, min_start, max_value)
        if conversational:
            prompt = [{"role": "user", "content": f"{chain.question} {CHAIN_INSTRUCTION}"}]
            if system_prompt:
                text = IGRPO_SYSTEM_PROMPT if system_prompt == "igrpo" else system_prompt
                prompt = [{"role": "system", "content": text}] + prompt
        else:
            prompt = f"Question: {chain.question} {CHAIN_INSTRUCTION}\nAnswer:"
        rows.append(
            {"prompt": prompt, "solution": str(chain.answer), "question": chain.question, "num_ops": len(chain.steps)}
        )
    return rows


def make_chained_dataset(num_examples: int = 256, seed: int = 0, **kwargs):
    """:func:`make_chained_examples` as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(make_chained_examples(num_examples, seed=seed, **kwargs))
