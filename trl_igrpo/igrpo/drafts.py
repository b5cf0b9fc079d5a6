"""Pure functions behind iGRPO's two stages (arXiv 2602.09000, §3.2): picking a draft, building q' = Concat(q, d̂),
and checking that the draft survived the chat template. Nothing here needs a model; each function is unit-tested.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from typing import Any

import torch

from ..data.prompts import is_conversational_prompt
from .draft_text import marked_drafts

__all__ = [
    "CONVERSATIONAL_DRAFT_STYLES",
    "DEFAULT_REFINEMENT_INSTRUCTION",
    "DEFAULT_REFINEMENT_TEMPLATE",
    "build_refinement_prompt",
    "drafts_dropped_by_template",
    "drafts_missing_from_prompts",
    "select_drafts",
    "template_placeholders",
]

#: q' = Concat(q, d̂) with a fixed header (the paper's template text is not published). Used for plain-text prompts and,
#: with the default ``conversational_draft_style="append_to_user"``, inside the last user message.
DEFAULT_REFINEMENT_TEMPLATE = "{prompt}\n\nPrior draft:\n{draft}\n\nRevised solution:\n"

#: ``conversational_draft_style="assistant_turn"`` only: the user turn that follows the draft (an assistant turn).
DEFAULT_REFINEMENT_INSTRUCTION = (
    "Above is a prior draft. Treat it as guidance, not as ground truth: fix mistakes, fill gaps and give a strictly "
    "improved final answer."
)

#: ``"append_to_user"`` (default): the draft goes into the last user message, which every chat template renders
#: verbatim. ``"assistant_turn"``: the draft becomes an earlier assistant turn, whose ``<think>`` reasoning templates
#: of reasoning models (DeepSeek-R1-Distill, Qwen3, Nemotron 3, ...) delete.
CONVERSATIONAL_DRAFT_STYLES = ("append_to_user", "assistant_turn")


def template_placeholders(template: str) -> set[str]:
    """Names of the ``{placeholders}`` in a ``str.format`` template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _append_to_last_user_message(messages: list[dict[str, Any]], render) -> list[dict[str, Any]]:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = render(content)
            return messages
        if isinstance(content, list):  # typed content blocks: extend the last text block (or add one)
            blocks = [dict(block) for block in content]
            texts = [i for i, block in enumerate(blocks) if block.get("type") == "text"]
            if texts:
                blocks[texts[-1]]["text"] = render(blocks[texts[-1]].get("text", ""))
            else:
                blocks.append({"type": "text", "text": render("")})
            message["content"] = blocks
            return messages
    raise ValueError("conversational_draft_style='append_to_user' needs a prompt with a user message.")


def build_refinement_prompt(
    prompt: str | list[dict[str, Any]],
    draft: str,
    template: str = DEFAULT_REFINEMENT_TEMPLATE,
    instruction: str = DEFAULT_REFINEMENT_INSTRUCTION,
    conversational_style: str = "append_to_user",
) -> str | list[dict[str, Any]]:
    """Build the Stage-2 prompt q' = Concat(q, d̂) of iGRPO (§3.2.2: the draft is "appended immediately after the
    original prompt").

    Args:
        prompt: The original prompt: a string, or a list of chat messages.
        draft: The selected draft's text (already stripped of reasoning if requested).
        template: A ``str.format`` template with ``{prompt}`` and ``{draft}``, rendered into a plain-text prompt or,
            for ``"append_to_user"``, into the last user message.
        instruction: For ``"assistant_turn"``, the user turn that follows the draft.
        conversational_style: ``"append_to_user"`` or ``"assistant_turn"`` (see :data:`CONVERSATIONAL_DRAFT_STYLES`).

    Returns:
        A new prompt of the same type; the input is not modified.
    """
    if not is_conversational_prompt(prompt):
        return template.format(prompt=prompt, draft=draft)
    messages = [dict(message) for message in prompt if isinstance(message, dict)]
    if conversational_style == "append_to_user":
        return _append_to_last_user_message(messages, lambda text: template.format(prompt=text, draft=draft))
    if conversational_style == "assistant_turn":
        return messages + [{"role": "assistant", "content": draft}, {"role": "user", "content": instruction}]
    raise ValueError(
        f"Unknown conversational_style {conversational_style!r}; use one of {CONVERSATIONAL_DRAFT_STYLES}."
    )


def _comparable(text: str) -> str:
    """``text`` in NFC with all whitespace removed: chat templates trim and re-space, tokenizers normalise."""
    return "".join(unicodedata.normalize("NFC", text).split())


def drafts_missing_from_prompts(rendered_prompts: Sequence[str], drafts: Sequence[str]) -> list[int]:
    """Indices ``i`` where ``drafts[i]`` does not occur in ``rendered_prompts[i]`` (whitespace and Unicode
    normalisation ignored). iGRPO's runtime guard: the rendered Stage-2 prompt must hold the whole selected draft."""
    return [
        index
        for index, (rendered, draft) in enumerate(zip(rendered_prompts, drafts, strict=True))
        if _comparable(draft) not in _comparable(rendered)
    ]


def drafts_dropped_by_template(rendered_prompts: Sequence[str], drafts: Sequence[str]) -> list[int]:
    """Indices ``i`` where the rendered Stage-2 prompt ``rendered_prompts[i]``, built from a draft marked by
    :func:`~trl_igrpo.igrpo.draft_text.mark_draft`, does not hold ``drafts[i]`` whole between its draft marks (the
    template dropped or cut it). The marks locate the draft itself, so its text elsewhere (a short answer that also
    occurs in the question) does not count; whitespace and Unicode normalisation are ignored."""
    return [
        index
        for index, (rendered, draft) in enumerate(zip(rendered_prompts, drafts, strict=True))
        if draft.strip() and not any(_comparable(kept) == _comparable(draft) for kept in marked_drafts(rendered))
    ]


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
