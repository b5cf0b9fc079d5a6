"""The judge as a local ``transformers`` causal LM: chat template, greedy decoding, one request at a time."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["TransformersJudge"]


class TransformersJudge:
    """A local ``transformers`` causal LM as the judge: chat template, greedy decoding, one request at a time.

    Args:
        model: a loaded model or a local path (loaded with ``trust_remote_code=False`` and safetensors only).
        tokenizer: its tokenizer (loaded from ``model`` when it is a path).
        max_new_tokens: reply budget (a verdict needs a few tokens; raise it for reasoning judges).
        chat_template_kwargs: extra template arguments, e.g. ``{"enable_thinking": False}``.
    """

    max_concurrency = 1

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 16,
        chat_template_kwargs: Mapping | None = None,
    ):
        self.name_or_path = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        if isinstance(model, (str, os.PathLike)):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=False, use_safetensors=True)
        if tokenizer is None:
            raise ValueError("`tokenizer` is required when `model` is a loaded model.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="trl-igrpo-local-judge")

    def __repr__(self) -> str:
        return f"TransformersJudge(model={self.name_or_path!r})"

    def check(self) -> None:
        """A loaded local model is always available."""

    def close(self) -> None:
        """Shut down the single-thread executor that runs generation (pending requests are not waited for)."""
        self._executor.shutdown(wait=False)

    def _generate(self, messages: list[dict[str, str]]) -> str:
        import torch

        with self._lock, torch.no_grad():
            inputs = self.tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                **self.chat_template_kwargs,
            ).to(self.model.device)
            pad = (
                self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            )
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    async def chat(self, messages: list[dict[str, str]]) -> str:
        """Greedy-decode a reply to ``messages`` in the worker thread and return its text (special tokens removed)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._generate, messages)
