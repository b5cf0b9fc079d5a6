"""Generation for evaluation: k samples per prompt with token counts, iGRPO's single-pass test-time mode and a
two-pass draft -> refine mode.

The paper evaluates single-pass (§3.2.1): the self-conditioning is a training device only. The two-pass mode reuses the
training prompt construction (:func:`~trl_igrpo.igrpo.drafts.build_refinement_prompt`) for diagnostics.

Sampling follows the evaluation protocol literally: ``temperature`` and ``top_p`` only. The checkpoint's own
``generation_config`` defaults (a ``top_k``, a ``repetition_penalty``, transformers' global ``top_k=50``) are switched
off, so two checkpoints are compared under the same sampler. ``temperature=0`` decodes greedily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.prompts import is_conversational_prompt
from ..igrpo.drafts import DEFAULT_REFINEMENT_INSTRUCTION, DEFAULT_REFINEMENT_TEMPLATE, build_refinement_prompt
from ..reasoning.think import strip_reasoning

__all__ = [
    "GeneratedSample",
    "evaluate_accuracy",
    "generate_draft_then_refine",
    "generate_samples",
    "generate_single_pass",
    "render_prompt",
    "sampling_kwargs",
]


@dataclass(frozen=True)
class GeneratedSample:
    """One generated completion: its decoded text (special tokens skipped), the number of generated tokens up to and
    including EOS, and whether generation stopped at ``max_new_tokens`` before any EOS."""

    text: str
    num_tokens: int
    truncated: bool


def render_prompt(tokenizer, prompt, chat_template_kwargs: dict | None = None) -> str:
    """The text a prompt is generated from: chat messages through the tokenizer's chat template (with the generation
    prompt), plain strings unchanged."""
    if is_conversational_prompt(prompt):
        return tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
        )
    return prompt


_render = render_prompt


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict[str, Any]:
    """``generate`` kwargs for the protocol's sampler: greedy at ``temperature == 0``, else temperature + nucleus
    sampling with top-k and repetition penalty off (overriding any checkpoint defaults)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
    if temperature == 0:
        return {"do_sample": False, "repetition_penalty": 1.0}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0, "repetition_penalty": 1.0}


def _eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


@torch.no_grad()
def generate_samples(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict[str, Any]]],
    num_samples: int = 1,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    chat_template_kwargs: dict | None = None,
    progress: bool = False,
    description: str = "generating",
) -> list[list[GeneratedSample]]:
    """``num_samples`` completions per prompt (plain strings or chat messages), ``batch_size`` sequences per
    ``generate`` call; returns one list of :class:`GeneratedSample` per prompt, in prompt order.

    The random state is the caller's (seed with ``torch.manual_seed`` for reproducible samples).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    sampling = sampling_kwargs(temperature, top_p)
    conversational = {is_conversational_prompt(p) for p in prompts}
    if len(conversational) > 1:
        raise ValueError("Prompts mix chat messages and plain strings; render them one way.")
    add_special_tokens = not conversational.pop() if prompts else True
    rendered = [render_prompt(tokenizer, p, chat_template_kwargs) for p in prompts]
    jobs = [index for index in range(len(prompts)) for _ in range(num_samples)]
    eos = _eos_ids(model, tokenizer)
    eos_tensor = torch.tensor(eos or [-1])
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else None)
    results: list[list[GeneratedSample]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=description, unit="sample")
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            batch = tokenizer(
                [rendered[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
            )
            batch = {k: v.to(model.device) for k, v in batch.items()}
            generated = model.generate(
                **batch, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id, eos_token_id=eos or None, **sampling
            )
            new_tokens = generated[:, batch["input_ids"].shape[1] :].cpu()
            is_eos = torch.isin(new_tokens, eos_tensor)
            for row, index in enumerate(chunk):
                hits = is_eos[row].nonzero()
                if len(hits):
                    length, truncated = int(hits[0]) + 1, False
                else:
                    length, truncated = int(new_tokens.shape[1]), True
                text = tokenizer.decode(new_tokens[row, :length], skip_special_tokens=True)
                results[index].append(GeneratedSample(text, length, truncated))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return results


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
    samples = generate_samples(
        model,
        tokenizer,
        prompts,
        num_samples=1,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        temperature=temperature if do_sample else 0.0,
        top_p=top_p,
        chat_template_kwargs=chat_template_kwargs,
    )
    return [per_prompt[0].text for per_prompt in samples]


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
    ``solution``). A row the reward cannot score (``None``: an unparseable gold answer) raises ``ValueError`` naming
    it, rather than counting as wrong. Greedy by default; for the paper's protocol (k samples, pass@k, maj@k) use
    :func:`trl_igrpo.eval.runner.evaluate`.
    """
    if reward_func is None:
        from ..rewards import math_accuracy_reward

        reward_func = math_accuracy_reward
    rows = list(dataset)
    prompts = [row["prompt"] for row in rows]
    if two_pass:
        _, completions = generate_draft_then_refine(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs
        )
    else:
        completions = generate_single_pass(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    rewards = reward_func(completions=completions, prompts=prompts, **columns)
    scores = [float(reward) for reward in rewards if reward is not None]
    if len(scores) != len(rows):
        unscorable = [index for index, reward in enumerate(rewards) if reward is None]
        raise ValueError(
            f"The reward could not score {len(unscorable)} row(s) (first: {unscorable[:5]}); their gold answers are "
            "probably unparseable. Fix the gold column rather than counting them as wrong."
        )
    return sum(scores) / len(rows)
