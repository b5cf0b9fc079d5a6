"""Inference helpers for evaluation scripts: iGRPO's single-pass test-time mode and a two-pass draft -> refine mode.

The paper evaluates single-pass (§3.2.1): the self-conditioning is a training device only. The two-pass mode reuses the
training prompt construction (:func:`~trl_igrpo.igrpo.drafts.build_refinement_prompt`) for diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .igrpo.drafts import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    build_refinement_prompt,
    is_conversational_prompt,
)
from .reasoning.think import strip_reasoning

__all__ = ["evaluate_accuracy", "generate_draft_then_refine", "generate_single_pass"]


def _render(tokenizer, prompt, chat_template_kwargs: dict | None) -> str:
    if is_conversational_prompt(prompt):
        return tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
        )
    return prompt


@torch.no_grad()
def generate_single_pass(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict[str, Any]]],
    max_new_tokens: int = 256,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 0.6,
    top_p: float = 0.95,
    chat_template_kwargs: dict | None = None,
) -> list[str]:
    """Generate one completion per prompt (plain strings or chat messages); returns decoded texts.

    Greedy by default (``do_sample=False``); the paper's evaluation samples at temperature 0.6, top-p 0.95.
    """
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [_render(tokenizer, p, chat_template_kwargs) for p in prompts[start : start + batch_size]]
            conversational = is_conversational_prompt(prompts[start])
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not conversational)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
            )
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return outputs


def generate_draft_then_refine(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict[str, Any]]],
    max_new_tokens: int = 256,
    refinement_template: str = DEFAULT_REFINEMENT_TEMPLATE,
    refinement_instruction: str = DEFAULT_REFINEMENT_INSTRUCTION,
    conversational_draft_style: str = "append_to_user",
    strip_draft_think: bool = False,
    **generate_kwargs,
) -> tuple[list[str], list[str]]:
    """Two passes: a draft per prompt, then a refinement conditioned on it exactly as in iGRPO's Stage 2.

    Returns ``(drafts, refinements)``.
    """
    drafts = generate_single_pass(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    refined_prompts = [
        build_refinement_prompt(
            prompt,
            strip_reasoning(draft) if strip_draft_think else draft,
            template=refinement_template,
            instruction=refinement_instruction,
            conversational_style=conversational_draft_style,
        )
        for prompt, draft in zip(prompts, drafts)
    ]
    refinements = generate_single_pass(
        model, tokenizer, refined_prompts, max_new_tokens=max_new_tokens, **generate_kwargs
    )
    return drafts, refinements


def evaluate_accuracy(
    model,
    tokenizer,
    dataset,
    reward_func: Callable | None = None,
    two_pass: bool = False,
    max_new_tokens: int = 256,
    **generate_kwargs,
) -> float:
    """Mean reward (accuracy for a 0/1 reward) of single-pass (or draft -> refine) answers on ``dataset``.

    ``dataset`` rows need ``prompt`` plus the columns ``reward_func`` reads (default: ``math_accuracy_reward`` and
    ``solution``). Rows the reward cannot score (None) count as wrong.
    """
    if reward_func is None:
        from .rewards import math_accuracy_reward as reward_func
    rows = list(dataset)
    prompts = [row["prompt"] for row in rows]
    if two_pass:
        _, completions = generate_draft_then_refine(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs
        )
    else:
        completions = generate_single_pass(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    rewards = reward_func(completions=completions, prompts=prompts, **columns)  # type: ignore[misc]
    return sum(float(r) for r in rewards if r is not None) / len(rows)
