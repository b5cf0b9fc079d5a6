"""Training data in a reasoning mode: one example formatted ON or OFF, Llama-Nemotron's paired ON/OFF data, a fixed
ON/OFF mix, and the single ``chat_template_kwargs`` GRPO can apply.

Llama-Nemotron (arXiv 2505.00949, §2) teaches the toggle with *paired* SFT data: the same prompt with a reasoning and a
non-reasoning response, each tagged with its system prompt, mixed in the same batches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .conversations import apply_reasoning_mode, copy_messages, strip_history_reasoning
from .modes import (
    ENABLE_THINKING_STYLE,
    OFF,
    ON,
    SYSTEM_PROMPT_STYLE,
    chat_template_kwargs_for_mode,
    normalize_reasoning_mode,
)
from .think import format_reasoning_response, split_reasoning, strip_reasoning

__all__ = [
    "format_reasoning_example",
    "grpo_chat_template_kwargs",
    "make_paired_reasoning_examples",
    "mix_reasoning_modes",
]


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else copy_messages(value)


def format_reasoning_example(
    example: Mapping[str, Any],
    mode: Any,
    style: str = SYSTEM_PROMPT_STYLE,
    *,
    reasoning_column: str | None = None,
    off_completion_column: str | None = None,
    mode_column: str = "reasoning_mode",
) -> dict[str, Any]:
    """Turn one example with a reasoning trace into a conversational SFT example in ``mode``.

    Input: ``prompt`` + ``completion`` (strings or messages), or ``messages`` ending with the assistant response. The
    reasoning is the response's leading ``<think>`` block, or ``reasoning_column`` when given. Output keeps the input
    layout (always conversational) with the mode applied in ``style`` and ``mode_column`` set:

    - ON: the response is ``<think>\\nreasoning\\n</think>\\nanswer``. A row without reasoning raises ``ValueError``.
    - OFF: the response is the answer alone, or ``off_completion_column`` (a separately written non-reasoning
      response, as in the paper's paired data).
    - Earlier assistant turns lose their reasoning (:func:`strip_history_reasoning`).
    - ``enable_thinking`` style: a ``chat_template_kwargs`` column carries ``enable_thinking`` (read per row by
      TRL's ``SFTTrainer``).
    """
    mode = normalize_reasoning_mode(mode, field=mode_column)
    out = dict(example)
    if "messages" in example:
        conversation = _as_messages(example["messages"], "user")
        if not conversation or conversation[-1]["role"] != "assistant":
            raise ValueError("`messages` must end with the assistant response to format.")
        prompt, response = conversation[:-1], conversation[-1]
    elif "prompt" in example and "completion" in example:
        prompt = _as_messages(example["prompt"], "user")
        completion = _as_messages(example["completion"], "assistant")
        if len(completion) != 1 or completion[0]["role"] != "assistant":
            raise ValueError("`completion` must be a string or a single assistant message.")
        response = completion[0]
    else:
        raise ValueError(f"An example needs `messages` or `prompt` + `completion` columns, got {sorted(example)}.")

    text = response.get("content") or ""
    if reasoning_column is not None:
        if reasoning_column not in example:
            raise ValueError(f"`reasoning_column={reasoning_column!r}` is not a column of the example.")
        reasoning, answer = example[reasoning_column], strip_reasoning(text)
    elif isinstance(response.get("reasoning_content"), str):
        reasoning, answer = response["reasoning_content"], strip_reasoning(text)
    else:
        reasoning, answer = split_reasoning(text)
    response = {k: v for k, v in response.items() if k != "reasoning_content"}
    if mode == ON:
        if reasoning is None or not str(reasoning).strip():
            raise ValueError(
                "A reasoning-ON example needs a reasoning trace (a leading <think> block or `reasoning_column`)."
            )
        response["content"] = format_reasoning_response(str(reasoning), answer)
    else:
        if off_completion_column is not None:
            if off_completion_column not in example:
                raise ValueError(f"`off_completion_column={off_completion_column!r}` is not a column of the example.")
            off = example[off_completion_column]
            answer = off if isinstance(off, str) else _as_messages(off, "assistant")[-1]["content"]
        response["content"] = strip_reasoning(answer)

    prompt, kwargs = apply_reasoning_mode(
        strip_history_reasoning(prompt), mode, style, example.get("chat_template_kwargs") or None
    )
    if "messages" in example:
        out["messages"] = [*prompt, response]
    else:
        out["prompt"], out["completion"] = prompt, [response]
    if style == ENABLE_THINKING_STYLE:
        out["chat_template_kwargs"] = kwargs
    out[mode_column] = mode
    return out


def _map_rows(dataset: Any, rows_fn: Callable[[list[dict[str, Any]], list[int]], list[dict[str, Any]]]) -> Any:
    """Apply ``rows_fn(rows, indices) -> new_rows`` to a list of dicts or (batched) to a ``datasets.Dataset``."""
    if isinstance(dataset, list):
        return rows_fn([dict(r) for r in dataset], list(range(len(dataset))))

    def batched(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        new_rows = rows_fn(rows, indices)
        return {key: [row[key] for row in new_rows] for key in (new_rows[0] if new_rows else {})}

    return dataset.map(batched, batched=True, with_indices=True, remove_columns=dataset.column_names)


def make_paired_reasoning_examples(dataset: Any, style: str = SYSTEM_PROMPT_STYLE, **format_kwargs: Any) -> Any:
    """Two examples per input row, ON then OFF, from data with reasoning traces (Llama-Nemotron's paired SFT data).

    ``dataset`` is a ``datasets.Dataset`` or a list of dicts; ``format_kwargs`` go to :func:`format_reasoning_example`.
    """
    return _map_rows(
        dataset,
        lambda rows, _: [format_reasoning_example(r, m, style, **format_kwargs) for r in rows for m in (ON, OFF)],
    )


def mix_reasoning_modes(
    dataset: Any, on_fraction: float, *, seed: int = 0, style: str = SYSTEM_PROMPT_STYLE, **format_kwargs: Any
) -> Any:
    """Assign each row a mode, exactly ``round(on_fraction * n)`` of them ON, chosen deterministically from ``seed``.

    Rows keep their order (shuffle in the trainer); the same ``(n, on_fraction, seed)`` always selects the same rows.
    ``format_kwargs`` go to :func:`format_reasoning_example`.
    """
    if not 0.0 <= on_fraction <= 1.0:
        raise ValueError(f"`on_fraction` must be in [0, 1], got {on_fraction}.")
    n = len(dataset)
    on_rows = set(random.Random(seed).sample(range(n), round(on_fraction * n)))
    return _map_rows(
        dataset,
        lambda rows, idx: [
            format_reasoning_example(r, ON if i in on_rows else OFF, style, **format_kwargs) for r, i in zip(rows, idx)
        ],
    )


def grpo_chat_template_kwargs(
    modes: Iterable[Any], base: Mapping[str, Any] | None = None, *, column: str = "reasoning_mode"
) -> dict[str, Any]:
    """``GRPOConfig.chat_template_kwargs`` for the ``enable_thinking`` style, checking that all prompts share one mode.

    GRPO (and iGRPO) render every prompt with the same global kwargs and ignore a per-row ``chat_template_kwargs``
    column, so a dataset that mixes modes would silently be rendered in one mode. Mixed modes raise ``ValueError``:
    use the ``"system_prompt"`` style, which carries the mode inside each prompt.
    """
    distinct = {normalize_reasoning_mode(m, field=column) for m in modes}
    if len(distinct) != 1:
        raise ValueError(
            f"`{column}` holds {sorted(distinct) or 'no'} modes; GRPO applies one global `chat_template_kwargs`, so "
            "mix modes with style='system_prompt' instead."
        )
    return chat_template_kwargs_for_mode(distinct.pop(), base)
