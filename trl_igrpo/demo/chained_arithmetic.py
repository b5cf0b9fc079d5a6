r"""Chained arithmetic: multi-step problems whose worked solutions are chains of steps, so a draft's partial reasoning
can help a refinement. The offline benchmark task of ``benchmarks/igrpo_vs_grpo_chained.py``.

A problem is ``What is 47+8-5+9?`` (a two-digit start and 3 or 4 additions and subtractions of one-digit numbers,
evaluated left to right, every intermediate value kept in ``[0, max_value]``; about half the steps carry or borrow),
and a worked solution keeps a running total, one step per operation:

    <think>47+8=55, -5=50, +9=59</think><answer>\boxed{59}</answer>

Compact on purpose: every digit is one token of the tiny model, each step copies its operation from the question
token for token and continues from the total just before it, and spaces would add a quarter to the length.

A **slip** is a forgotten carry or borrow: in a step whose result crosses a multiple of ten, the tens digit is left
unchanged (``47+8=45``, ``50-5=55``), and the steps after it are computed correctly *from the wrong value*, so the
final answer is wrong while every other step is right. The warm start's teacher forgets a carry with probability
``carry_slip_rate`` (:func:`teacher_results`); steps without a carry never slip. That is what makes a draft useful to a
refinement here: a wrong draft holds a correct prefix up to its first slip, and the teacher's refinement copies that
prefix, fixes the slipped step and carries on from there (:func:`refine_chain`).

Unlike :mod:`~trl_igrpo.demo.arithmetic` (one operation, where an answer is one choice), the answer depends on 3-4
steps in a row, and a tiny model makes genuine step-level errors besides the teacher's slips. (One-digit operands
keep each step learnable by the tiny model in a short warm start: with two-digit operands it stays near 0 %.)
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .arithmetic import ARITHMETIC_INSTRUCTION, format_prompt

__all__ = [
    "CHAIN_INSTRUCTION",
    "Chain",
    "apply_step",
    "chain_solution",
    "first_wrong_step",
    "has_carry",
    "make_chained_dataset",
    "make_chained_examples",
    "parse_chain_question",
    "refine_chain",
    "sample_chain",
    "teacher_results",
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


def apply_step(value: int, op: str, operand: int, forget_carry: bool = False) -> int:
    """``value op operand``; with ``forget_carry`` a carry or borrow is dropped (the tens digit does not change)."""
    result = value + operand if op == "+" else value - operand
    if forget_carry and result // 10 != value // 10:
        result += -10 if op == "+" else 10
    return result


def has_carry(value: int, op: str, operand: int) -> bool:
    """Whether ``value op operand`` carries or borrows (crosses a multiple of ten)."""
    return apply_step(value, op, operand) // 10 != value // 10


def teacher_results(
    chain: Chain, rng: random.Random | None = None, carry_slip_rate: float = 0.0, prefix: Sequence[int] = ()
) -> list[int]:
    """The step results an imperfect teacher writes: ``prefix`` copied, then each step computed from the running
    value, a carry or borrow forgotten with probability ``carry_slip_rate``."""
    results = list(prefix)
    value = results[-1] if results else chain.start
    for op, operand in chain.steps[len(results) :]:
        forget = rng is not None and carry_slip_rate > 0 and has_carry(value, op, operand)
        value = apply_step(value, op, operand, forget and rng.random() < carry_slip_rate)
        results.append(value)
    return results


def first_wrong_step(chain: Chain, results: Sequence[int]) -> int | None:
    """Index of the first step whose result is wrong *given the value before it*; ``None`` if every step is right."""
    value = chain.start
    for index, ((op, operand), result) in enumerate(zip(chain.steps, results)):
        if result != apply_step(value, op, operand):
            return index
        value = result
    return None


def chain_solution(chain: Chain, results: Sequence[int] | None = None) -> str:
    """A worked solution: ``start+b=c`` for the first step, then ``-d=e``, ``+f=g``... (the running total) inside
    ``<think>``, then ``<answer>\\boxed{final}</answer>``. ``results`` are the written step results (default: the
    correct ones, :attr:`Chain.values`)."""
    results = list(chain.values if results is None else results)
    if len(results) != len(chain.steps):
        raise ValueError(f"need one result per step ({len(chain.steps)}), got {len(results)}.")
    lines = [
        f"{chain.start}{op}{operand}={result}" if index == 0 else f"{op}{operand}={result}"
        for index, ((op, operand), result) in enumerate(zip(chain.steps, results))
    ]
    return f"<think>{', '.join(lines)}</think><answer>\\boxed{{{results[-1]}}}</answer>"


def refine_chain(
    chain: Chain, draft_results: Sequence[int], rng: random.Random | None = None, carry_slip_rate: float = 0.0
) -> list[int]:
    """The teacher's refinement of a draft: copy the draft's steps up to its first wrong step, fix that step, then
    continue as the teacher does (later carries forgotten with ``carry_slip_rate``). A correct draft is copied whole."""
    wrong = first_wrong_step(chain, draft_results)
    if wrong is None:
        return list(draft_results)
    prefix = list(draft_results[:wrong])
    value = prefix[-1] if prefix else chain.start
    op, operand = chain.steps[wrong]
    return teacher_results(chain, rng, carry_slip_rate, prefix=[*prefix, apply_step(value, op, operand)])


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
        prompt = format_prompt(chain.question, CHAIN_INSTRUCTION, conversational, system_prompt)
        rows.append(
            {"prompt": prompt, "solution": str(chain.answer), "question": chain.question, "num_ops": len(chain.steps)}
        )
    return rows


def make_chained_dataset(num_examples: int = 256, seed: int = 0, **kwargs):
    """:func:`make_chained_examples` as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(make_chained_examples(num_examples, seed=seed, **kwargs))
