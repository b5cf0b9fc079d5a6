"""How many tokens a rollout needs, and whether they fit: the context budget shared by the trainers and vLLM.

A rollout row is ``prompt (+ iGRPO's draft) + completion`` tokens; beyond the model's context a model either fails or
(RoPE models) silently produces garbage, and vLLM rejects the request. The trainers check the budget when they are
built (longest training prompt) and on every tokenized batch; the vLLM engine checks it against ``max_model_len``.
"""

from __future__ import annotations

import itertools

__all__ = ["check_context_budget", "longest_prompt_tokens", "model_context_length"]


def model_context_length(model, override: int | None = None) -> int | None:
    """The number of positions the policy can attend to: ``override`` if given, else the model config's
    ``max_position_embeddings`` (``None`` when the architecture has no such limit, e.g. pure state-space models)."""
    if override is not None:
        return override
    config = getattr(model, "config", None)
    length = getattr(config, "max_position_embeddings", None) if config is not None else None
    return int(length) if isinstance(length, int) and length > 0 else None


def check_context_budget(
    context_length: int | None,
    prompt_length: int,
    completion_length: int,
    draft_length: int = 0,
    where: str = "the model",
    completion_name: str = "max_completion_length",
    fix: str = "",
) -> None:
    """Raise a ``ValueError`` naming every term when ``prompt + draft + completion > context_length``.

    Beyond the context a model either fails or (RoPE models) silently produces garbage, and vLLM rejects the request.
    iGRPO's Stage-2 prompt is the original prompt plus a Stage-1 draft, so its budget is
    ``len(prompt) + max_draft_length + max_completion_length`` (iGRPO paper §3.2.2). ``context_length=None`` skips.
    """
    if context_length is None:
        return
    required = prompt_length + draft_length + completion_length
    if required <= context_length:
        return
    parts = f"prompt {prompt_length}"
    if draft_length:
        parts += f" + draft {draft_length} (max_draft_length)"
    parts += f" + completion {completion_length} ({completion_name})"
    raise ValueError(
        f"{where} holds {context_length} tokens but a rollout needs {parts} = {required}. "
        + (fix or "Shorten the prompts, or lower max_completion_length (and, for iGRPO, max_draft_length).")
    )


def longest_prompt_tokens(dataset, tokenizer, chat_template_kwargs: dict | None = None, limit: int = 2048) -> int:
    """Token length of the longest prompt among the first ``limit`` rows of ``dataset`` (chat template applied)."""
    if dataset is None or "prompt" not in (getattr(dataset, "column_names", None) or []):
        return 0
    if hasattr(dataset, "__len__") and hasattr(dataset, "select"):
        prompts = dataset.select(range(min(len(dataset), limit)))["prompt"]
    else:  # IterableDataset
        prompts = [row["prompt"] for row in itertools.islice(iter(dataset), limit)]
    longest = 0
    for prompt in prompts:
        if isinstance(prompt, list):  # conversational
            ids = tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, tokenize=True, **(chat_template_kwargs or {})
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        longest = max(longest, len(ids))
    return longest
