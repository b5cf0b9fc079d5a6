"""Pure functions behind iGRPO for agents: a Stage-1 draft is a whole trajectory, and q' shows all of it.

With ``tools``, ``environment_factory`` or ``rollout_func``, a draft is what TRL's ``GRPOTrainer`` calls a completion:
for conversational prompts a list of messages (assistant turns, with their parsed ``tool_calls`` and
``reasoning_content``, and the ``tool`` messages holding each result), for plain-text prompts a string. This module
turns the selected trajectory into the Stage-2 prompt q' = Concat(q, d̂) (iGRPO, arXiv 2602.09000, §3.2.2), lists what
of it must survive the chat template (the runtime guard), and counts turns and tokens per trajectory for the metrics.
Nothing here needs a model; every function is unit-tested (``tests/test_igrpo_trajectories.py``).

Two renderings, chosen by ``conversational_draft_style`` as for single-turn drafts:

- ``"append_to_user"`` (default): a plain-text transcript (:func:`render_transcript`) inside the last user message,
  through ``trajectory_template``. Every chat template shows user text verbatim, so every turn, tool call and tool
  result reaches the model, including the draft's reasoning, which templates of reasoning models drop from earlier
  assistant turns. The default template puts the task *last*: an environment's ``reset`` observation, which TRL
  appends to the end of the last user message, then follows the task exactly as it does in GRPO.
- ``"assistant_turn"``: the trajectory's own messages as earlier turns (the template renders the tool calls and tool
  results in the model's native format), then a user turn with ``refinement_instruction``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.prompts import is_conversational_prompt
from ..reasoning.think import strip_reasoning
from .drafts import _append_to_last_user_message, _comparable

__all__ = [
    "DEFAULT_TRAJECTORY_TEMPLATE",
    "TrajectoryDraft",
    "build_trajectory_prompt",
    "count_tool_calls",
    "missing_trajectory_pieces",
    "render_transcript",
    "trajectory_messages",
    "trajectory_pieces",
    "trajectory_token_counts",
]

#: q' for a trajectory under ``"append_to_user"``: ``{draft}`` is the transcript, ``{prompt}`` the last user message.
#: The task comes last so that an environment observation (appended by TRL after the last user message) follows it.
DEFAULT_TRAJECTORY_TEMPLATE = (
    "Here is a prior attempt at the task below, with every turn, tool call and tool result:\n\n{draft}\n\n"
    "Treat it as guidance, not as ground truth: fix its mistakes, call tools where they help, and solve the task "
    "again.\n\n{prompt}"
)


def trajectory_messages(completion: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A TRL completion as a list of messages: conversational completions as they are, a string as one assistant
    message (plain-text prompts, e.g. with ``rollout_func``)."""
    if isinstance(completion, str):
        return [{"role": "assistant", "content": completion}]
    if not isinstance(completion, list) or not all(isinstance(message, dict) for message in completion):
        raise TypeError(f"A trajectory is a string or a list of messages, got {type(completion).__name__}.")
    return completion


def _text(content: Any, where: str) -> str:
    """A message's content as text: strings as they are, typed blocks joined; images are refused (out of scope)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict) and block.get("type") in ("image", "image_url", "video"):
                raise ValueError(
                    f"iGRPO cannot show a {where} with an image to Stage 2: vision-language trajectories are not "
                    "supported. Return text from the tool, or train with GRPOTrainer."
                )
            else:
                parts.append(str(block))
        return "".join(parts)
    return str(content)


def _tool_call_parts(tool_call: dict[str, Any]) -> tuple[str, str]:
    """``(name, arguments as JSON text)`` of a tool call in TRL's ``{"type", "function": {...}}`` or flat form."""
    function = tool_call.get("function", tool_call)
    name = str(function.get("name", "unknown"))
    arguments = function.get("arguments", {})
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return name, text


def _visible_parts(message: dict[str, Any], keep_reasoning: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(label, text, pieces)`` of one message, in the order the model produced or received them; ``pieces`` are
    the substrings any rendering shows verbatim (a tool call: its name and its arguments)."""
    role = message.get("role")
    if role == "tool":
        name = message.get("name")
        result = _text(message.get("content"), "tool result")
        return [(f"Tool result ({name})" if name else "Tool result", result, (result,))]
    parts: list[tuple[str, str, tuple[str, ...]]] = []
    reasoning = message.get("reasoning_content")
    if keep_reasoning and isinstance(reasoning, str) and reasoning.strip():
        parts.append(("Assistant (reasoning)", reasoning.strip(), (reasoning.strip(),)))
    content = _text(message.get("content"), f"{role} message")
    if not keep_reasoning:
        content = strip_reasoning(content)
    if content.strip():
        label = "Assistant" if role == "assistant" else str(role).capitalize()
        parts.append((label, content.strip(), (content.strip(),)))
    for tool_call in message.get("tool_calls") or []:
        name, arguments = _tool_call_parts(tool_call)
        parts.append(("Tool call", f"{name}({arguments})", (name, arguments)))
    return parts


def render_transcript(completion: str | list[dict[str, Any]], keep_reasoning: bool = True) -> str:
    """A trajectory as plain text, one labelled part per line group, e.g.::

        Assistant: I will use the calculator.
        Tool call: multiply({"a": 4817, "b": 293})
        Tool result (multiply): 1411381
        Assistant: The answer is \\boxed{1411381}.

    A string completion (plain-text prompts) is returned as it is. ``keep_reasoning=False`` drops the reasoning
    (``reasoning_content``, ``<think>`` blocks), as ``strip_draft_think=True`` does for single-turn drafts.
    """
    if isinstance(completion, str):
        return completion if keep_reasoning else strip_reasoning(completion)
    lines: list[str] = []
    for message in trajectory_messages(completion):
        lines.extend(f"{label}: {text}" for label, text, _ in _visible_parts(message, keep_reasoning))
    return "\n".join(lines)


def _replayable(message: dict[str, Any], keep_reasoning: bool, mark: Callable[[str], str]) -> dict[str, Any]:
    """A trajectory message as an earlier turn of q' (``"assistant_turn"``): the fields chat templates render, every
    text the model or a tool produced passed through ``mark``."""
    if message.get("role") == "tool":
        result = _text(message.get("content"), "tool result")
        return {"role": "tool", "name": message.get("name"), "content": mark(result)}
    content = _text(message.get("content"), "assistant message")
    replay: dict[str, Any] = {"role": message.get("role", "assistant"), "content": content}
    if not keep_reasoning:
        replay["content"] = strip_reasoning(content)
    elif isinstance(message.get("reasoning_content"), str):
        replay["reasoning_content"] = mark(message["reasoning_content"])
    replay["content"] = mark(replay["content"])
    if message.get("tool_calls"):
        replay["tool_calls"] = [_marked_values(call, mark) for call in message["tool_calls"]]
    return replay


def _marked_values(value: Any, mark: Callable[[str], str], key: str | None = None) -> Any:
    """``value`` with ``mark`` applied to every string inside it but the structural ``type`` and ``name`` fields."""
    if isinstance(value, dict):
        return {k: _marked_values(v, mark, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked_values(v, mark) for v in value]
    if isinstance(value, str) and key not in ("type", "name"):
        return mark(value)
    return value


def _unmarked(text: str) -> str:
    return text


def build_trajectory_prompt(
    prompt: str | list[dict[str, Any]],
    completion: str | list[dict[str, Any]],
    template: str = DEFAULT_TRAJECTORY_TEMPLATE,
    instruction: str = "",
    conversational_style: str = "append_to_user",
    keep_reasoning: bool = True,
    mark: Callable[[str], str] = _unmarked,
) -> tuple[str | list[dict[str, Any]], str]:
    """q' = Concat(q, d̂) for a whole trajectory ``completion``; returns ``(q', transcript)``.

    Args:
        prompt: The original prompt: a string or a list of chat messages.
        completion: The selected trajectory, as TRL returns completions.
        template: ``str.format`` template with ``{prompt}`` (plain prompt or last user message) and ``{draft}`` (the
            transcript); used by plain-text prompts and ``"append_to_user"``.
        instruction: ``"assistant_turn"`` only: the user message after the replayed trajectory.
        conversational_style: ``"append_to_user"`` or ``"assistant_turn"`` (see the module docstring).
        keep_reasoning: False drops the draft's reasoning (``strip_draft_think=True``).
        mark: Applied to the draft's text inside q' (the transcript, or each text the replayed messages carry): the
            trainer marks it so that it is encoded as text, never as control tokens
            (:func:`~trl_igrpo.igrpo.draft_text.mark_draft`).

    Returns:
        The Stage-2 prompt (same type as ``prompt``; the input is not modified) and the transcript text, which
        Stage-2 rows carry in their ``draft`` column.
    """
    transcript = render_transcript(completion, keep_reasoning)
    shown = mark(transcript)
    if not is_conversational_prompt(prompt):
        return template.format(prompt=prompt, draft=shown), transcript
    messages = [dict(message) for message in prompt if isinstance(message, dict)]
    if conversational_style == "append_to_user":
        render = lambda text: template.format(prompt=text, draft=shown)  # noqa: E731
        return _append_to_last_user_message(messages, render), transcript
    if conversational_style == "assistant_turn":
        replay = [_replayable(message, keep_reasoning, mark) for message in trajectory_messages(completion)]
        return messages + replay + [{"role": "user", "content": instruction}], transcript
    raise ValueError(
        f"Unknown conversational_style {conversational_style!r}; use 'append_to_user' or 'assistant_turn'."
    )


def trajectory_pieces(completion: str | list[dict[str, Any]], keep_reasoning: bool = True) -> list[str]:
    """What of a trajectory the Stage-2 prompt must show, in order: every assistant text (and its reasoning when
    kept), every tool call's name and arguments, every tool result. Under either rendering each piece appears
    verbatim (up to whitespace), so the runtime guard can look for them in the decoded Stage-2 prompt."""
    if isinstance(completion, str):
        text = render_transcript(completion, keep_reasoning)
        return [text] if text.strip() else []
    pieces = [
        piece
        for message in trajectory_messages(completion)
        for _, _, message_pieces in _visible_parts(message, keep_reasoning)
        for piece in message_pieces
    ]
    return [piece for piece in pieces if _comparable(piece)]


def missing_trajectory_pieces(rendered_prompt: str, pieces: Sequence[str]) -> list[int]:
    """Indices of ``pieces`` that the rendered prompt does not show *in order* (whitespace and Unicode normalisation
    ignored): each piece is searched after the end of the previous one found, so a short tool result such as ``4``
    cannot be matched by text that comes before the turn it belongs to. Earliest matches decide exactly whether all
    pieces occur in order (empty result); when one is lost, the index reported is the first piece that no longer
    fits, which may be a later piece if the lost text also occurs further on (e.g. a result repeated in the answer)."""
    text = _comparable(rendered_prompt)
    missing, position = [], 0
    for index, piece in enumerate(pieces):
        found = text.find(_comparable(piece), position)
        if found < 0:
            missing.append(index)
        else:
            position = found + len(_comparable(piece))
    return missing


def count_tool_calls(completion: str | list[dict[str, Any]]) -> int:
    """Tool calls the assistant made in a trajectory (parsed ``tool_calls`` of its assistant messages)."""
    if isinstance(completion, str):
        return 0
    return sum(len(message.get("tool_calls") or []) for message in completion if message.get("role") == "assistant")


def trajectory_token_counts(completion_mask: torch.Tensor, tool_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-trajectory counts from TRL's masks, each of shape ``(rows,)``.

    ``completion_mask`` marks the completion's tokens and ``tool_mask`` (TRL: 1 for model tokens, 0 for tool results
    and environment feedback; ``None`` for single-turn rollouts) which of them the model produced:

    - ``model_tokens``: tokens the model generated (the ones GRPO trains);
    - ``tool_tokens``: tool-result / environment tokens inside the completion (masked out of the loss);
    - ``turns``: assistant turns, i.e. maximal runs of model tokens (a tool result between two runs splits them).
    """
    completion_mask = completion_mask.bool()
    model = completion_mask if tool_mask is None else completion_mask & tool_mask.bool()
    starts = model.clone()
    starts[:, 1:] &= ~model[:, :-1]
    return {
        "model_tokens": model.sum(dim=1).float(),
        "tool_tokens": (completion_mask & ~model).sum(dim=1).float(),
        "turns": starts.sum(dim=1).float(),
    }


@dataclass(frozen=True)
class TrajectoryDraft:
    """A selected Stage-1 trajectory as iGRPO's draft d̂: the completion TRL returned (messages, or text for
    plain-text prompts) and whether q' shows its reasoning (``strip_draft_think=False``)."""

    completion: str | list[dict[str, Any]]
    keep_reasoning: bool = True

    @property
    def transcript(self) -> str:
        """The trajectory as text (:func:`render_transcript`): the ``draft`` column of the Stage-2 rows."""
        return render_transcript(self.completion, self.keep_reasoning)

    def pieces(self) -> list[str]:
        """What the Stage-2 prompt must show, in order (:func:`trajectory_pieces`)."""
        return trajectory_pieces(self.completion, self.keep_reasoning)

    def prompt(self, prompt, template: str, instruction: str, style: str, mark: Callable[[str], str] = _unmarked):
        """q' for this trajectory (:func:`build_trajectory_prompt`)."""
        return build_trajectory_prompt(
            prompt, self.completion, template, instruction, style, self.keep_reasoning, mark
        )[0]
