"""Pure functions behind iGRPO's Stage 1 (draft scoring and selection) and the Stage-2 prompt (arXiv 2602.09000, §3.2).

Nothing here needs a model: each function is unit-tested on its own.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "DEFAULT_REFINEMENT_INSTRUCTION",
    "DEFAULT_REFINEMENT_TEMPLATE",
    "IGRPO_SYSTEM_PROMPT",
    "build_refinement_prompt",
    "combine_reward_columns",
    "is_conversational_prompt",
    "select_drafts",
    "strip_think",
    "template_placeholders",
]

#: The training system prompt of the iGRPO paper (App. C), shared by both stages. Opt-in: never injected silently.
IGRPO_SYSTEM_PROMPT = (
    "You are a helpful AI Assistant that provides well-reasoned and detailed responses. First think through your "
    "reasoning as an internal monologue, then give the answer: <think>...</think><answer>...</answer>. If the prompt "
    "contains feedback or a prior draft, treat it as guidance, not as ground truth. Use it to produce a strictly "
    "improved final answer: fix mistakes, fill gaps, strengthen justification, and improve clarity. Do not repeat the "
    "draft verbatim. If the feedback is wrong or incomplete, correct it and proceed."
)

#: Plain-text prompts: q' = Concat(q, d̂) with a fixed header (the paper's template text is not published).
DEFAULT_REFINEMENT_TEMPLATE = "{prompt}\n\nPrior draft:\n{draft}\n\nRevised solution:\n"

#: Conversational prompts: the draft becomes an assistant turn, followed by this user turn.
DEFAULT_REFINEMENT_INSTRUCTION = (
    "Above is a prior draft. Treat it as guidance, not as ground truth: fix mistakes, fill gaps and give a strictly "
    "improved final answer."
)

_THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
_UNCLOSED_THINK = re.compile(r"<think>.*\Z", re.DOTALL)


def is_conversational_prompt(prompt: Any) -> bool:
    """True for a list of ``{"role", "content"}`` messages, False for a plain string."""
    return isinstance(prompt, list) and (len(prompt) == 0 or isinstance(prompt[0], dict))


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks (and a trailing unclosed ``<think>``) from a draft, keeping the rest.

    Shortens Stage-2 prompts when only the draft's answer should condition the refinement.
    """
    text = _THINK_BLOCK.sub("", text)
    text = _UNCLOSED_THINK.sub("", text)
    return text.strip()


def template_placeholders(template: str) -> set[str]:
    """Names of the ``{placeholders}`` in a ``str.format`` template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def build_refinement_prompt(
    prompt: str | list[dict[str, Any]],
    draft: str,
    template: str = DEFAULT_REFINEMENT_TEMPLATE,
    instruction: str = DEFAULT_REFINEMENT_INSTRUCTION,
    conversational_style: str = "assistant_turn",
) -> str | list[dict[str, Any]]:
    """Build the Stage-2 prompt q' = Concat(q, d̂) of iGRPO (§3.2.2).

    Args:
        prompt: The original prompt: a string, or a list of chat messages.
        draft: The selected draft's text (already stripped of ``<think>`` if requested).
        template: For plain-text prompts, a ``str.format`` template with ``{prompt}`` and ``{draft}``.
        instruction: For conversational prompts, the user turn that follows the draft.
        conversational_style: ``"assistant_turn"`` appends ``{"role": "assistant", "content": draft}`` and a user turn
            with ``instruction``; ``"append_to_user"`` renders ``template`` into the last user message instead.

    Returns:
        A new prompt of the same type; the input is not modified.
    """
    if not is_conversational_prompt(prompt):
        return template.format(prompt=prompt, draft=draft)
    messages = [dict(message) for message in prompt]
    if conversational_style == "assistant_turn":
        return messages + [{"role": "assistant", "content": draft}, {"role": "user", "content": instruction}]
    if conversational_style == "append_to_user":
        for message in reversed(messages):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                message["content"] = template.format(prompt=message["content"], draft=draft)
                return messages
        raise ValueError("conversational_style='append_to_user' needs a prompt with a text user message.")
    raise ValueError(
        f"Unknown conversational_style {conversational_style!r}; use 'assistant_turn' or 'append_to_user'."
    )


def combine_reward_columns(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted, NaN-aware sum of per-function rewards: the scalar that ranks drafts (the same one Stage 2 uses).

    ``rewards_per_func`` is (num_completions, num_funcs) with NaN where a function returned None. A row where every
    function returned None is NaN (unscorable); otherwise NaN entries count as 0, as in TRL's ``sum_then_normalize``.
    """
    weighted = rewards_per_func * weights.to(rewards_per_func).unsqueeze(0)
    total = torch.nansum(weighted, dim=1)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    return torch.where(unscorable, torch.full_like(total, float("nan")), total)


def select_drafts(
    scores: torch.Tensor | Sequence[Sequence[float | None]],
    strategy: str = "best",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one draft per prompt from a (num_prompts, N) score matrix; returns the chosen column per row.

    - ``"best"`` (paper): argmax of the score, first maximal index on ties (deterministic, identical on every rank).
      Unscorable drafts (NaN or None) rank below every scored draft; if all are unscorable the first is taken. When
      every draft failed, the best (wrong) draft is still used, as in the paper.
    - ``"random"`` (ablation): uniform over the N drafts, from ``generator``.
    """
    if not isinstance(scores, torch.Tensor):
        scores = torch.tensor([[float("nan") if s is None else float(s) for s in row] for row in scores])
    if scores.dim() != 2 or scores.size(1) < 1:
        raise ValueError(
            f"scores must be (num_prompts, num_drafts) with num_drafts >= 1, got shape {tuple(scores.shape)}."
        )
    if strategy == "best":
        filled = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores.float())
        return torch.argmax(filled, dim=1)  # torch.argmax returns the first maximal index
    if strategy == "random":
        return torch.randint(0, scores.size(1), (scores.size(0),), generator=generator)
    raise ValueError(f"Unknown draft selection strategy {strategy!r}; use 'best' or 'random'.")
