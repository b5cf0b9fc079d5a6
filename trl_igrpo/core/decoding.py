"""Decoding completions exactly as TRL's ``GRPOTrainer._generate`` does, for rollouts the trainer makes itself."""

from __future__ import annotations

from typing import Any

__all__ = ["decode_completions"]


def decode_completions(trainer, prompts: list, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list:
    """Turn sampled ids into what reward functions receive, by TRL 1.16's rule.

    Conversational prompts give ``[message]`` per completion: parsed with TRL's ``parse_response`` (reasoning in
    ``reasoning_content``, tool calls) when the tokenizer has a response template or schema, else
    ``{"role": "assistant", "content": batch_decode(ids)}``. Plain-text prompts give the decoded string.
    ``skip_special_tokens=True`` everywhere, as TRL does.
    """
    from trl.chat_template_utils import parse_response
    from trl.data_utils import is_conversational

    if not is_conversational({"prompt": prompts[0]}):
        return trainer.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
    tokenizer = trainer._tokenizer
    if (
        getattr(tokenizer, "response_template", None) is not None
        or getattr(tokenizer, "response_schema", None) is not None
    ):
        return [
            [parse_response(tokenizer, ids, prefix=prompt_ids[i], tools=trainer.tools)]
            for i, ids in enumerate(completion_ids)
        ]
    contents: list[Any] = trainer.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
    return [[{"role": "assistant", "content": content}] for content in contents]
