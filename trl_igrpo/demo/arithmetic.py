"""Built-in synthetic, verifiable math data: offline stand-in for MATH-style datasets (``prompt`` + ``solution``)."""

from __future__ import annotations

import random

from ..data.prompts import resolve_system_prompt

__all__ = ["ARITHMETIC_INSTRUCTION", "format_prompt", "make_arithmetic_dataset", "make_arithmetic_examples"]

ARITHMETIC_INSTRUCTION = "Think, then answer inside <answer></answer> with \\boxed{}."


def format_prompt(
    question: str, instruction: str, conversational: bool, system_prompt: str | None
) -> str | list[dict[str, str]]:
    """The built-in tasks' prompt: a user message (after an optional system message; ``"igrpo"`` means the paper's
    iGRPO system prompt), or ``Question: ... Answer:`` text for standard-format datasets."""
    if not conversational:
        return f"Question: {question} {instruction}\nAnswer:"
    prompt = [{"role": "user", "content": f"{question} {instruction}"}]
    if system_prompt:
        prompt = [{"role": "system", "content": resolve_system_prompt(system_prompt) or system_prompt}] + prompt
    return prompt


def make_arithmetic_examples(
    num_examples: int,
    seed: int = 0,
    max_operand: int = 20,
    operations: str = "+-",
    conversational: bool = True,
    system_prompt: str | None = None,
) -> list[dict]:
    """Small arithmetic problems with exact integer answers: ``{"prompt", "solution", "question"}`` rows.

    ``system_prompt`` adds a system turn to conversational prompts (``"igrpo"`` uses the paper's system prompt).
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
    rng = random.Random(seed)
    rows = []
    for _ in range(num_examples):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        op = rng.choice(operations)
        answer = {"+": a + b, "-": a - b, "*": a * b}[op]
        question = f"What is {a} {op} {b}?"
        prompt = format_prompt(question, ARITHMETIC_INSTRUCTION, conversational, system_prompt)
        rows.append({"prompt": prompt, "solution": str(answer), "question": question})
    return rows


def make_arithmetic_dataset(num_examples: int = 256, seed: int = 0, **kwargs):
    """:func:`make_arithmetic_examples` as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(make_arithmetic_examples(num_examples, seed=seed, **kwargs))
