"""Offline tiny models for tests, examples and the demo.

The Hugging Face Hub is often unreachable (CI, air-gapped clusters), and TRL reloads reference models from
``config._name_or_path``, so every test model must live on disk. :func:`build_tiny_model` builds a random-weight causal LM
and a byte-level BPE tokenizer trained offline, saves both with ``save_pretrained`` (safetensors) and returns the
directory, which ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` reload unchanged.

Design constraints:

- **Deterministic for a seed**: the tokenizer corpus is fixed text and the weights come from ``torch.manual_seed(seed)``.
- **Tokenizes identically after reload**: for ``qwen2`` the reloaded ``Qwen2Tokenizer`` re-applies Qwen's NFC normaliser
  and regex pre-tokenizer, so we train with exactly those.
- **vLLM CPU compatible**: head_dim 32 (vLLM's CPU attention accepts 32, 64, 80, ...; it derives Qwen2's head_dim from
  hidden / heads, so hidden 128 with 4 heads).
- ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` are single, non-special added tokens, so they survive
  ``skip_special_tokens=True`` decoding exactly as the format rewards expect.
- ``chat_template="qwen3"`` gives the tokenizer Qwen3's chat template exactly as TRL ships it
  (``trl/chat_templates/qwen3.jinja``), so TRL recognises it, attaches its response schema and parses tool calls
  (``parse_response``); Qwen3's tool tags are single added tokens, as in Qwen3's own tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CHATML_TEMPLATE",
    "CHAT_TEMPLATES",
    "REASONING_TAGS",
    "TINY_ARCHITECTURES",
    "TOOL_TAGS",
    "build_tiny_model",
    "cpu_training_kwargs",
]

TINY_ARCHITECTURES = ("qwen2", "qwen3", "llama", "nemotron_h")
#: ``"chatml"``: a minimal ChatML template (no tools). ``"qwen3"``: TRL's copy of Qwen3's template (tool calling).
CHAT_TEMPLATES = ("chatml", "qwen3")
REASONING_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
#: Qwen3's tool-calling tags (single added tokens in Qwen3's tokenizer; added with ``chat_template="qwen3"``).
TOOL_TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def cpu_training_kwargs(**overrides) -> dict:
    """``TrainingArguments`` keyword arguments for small runs on a CPU (tests, demos, examples), plus `overrides`.

    CPU and fp32 (``use_cpu=True``, ``bf16=False``: TRL's configs default to bf16), no reporting integrations, no
    checkpoints, no gradient checkpointing (TRL's GRPO/DPO configs switch it on; it only costs time on tiny models), a
    log line every step so tests can read ``trainer.state.log_history``, and no dataloader worker processes. Pass the
    result to any TRL or trl-igrpo config: ``IGRPOConfig(output_dir=..., **cpu_training_kwargs(max_steps=2))``.
    """
    return {
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        **overrides,
    }


# ChatML, as used by Qwen2 and Nemotron 3. Supports a system turn and the generation prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tokenizer_corpus() -> list[str]:
    """Fixed, varied text: arithmetic, LaTeX answers, reasoning tags and chat markup."""
    words = (
        "the answer is what compute solve find value of sum difference product think step first then so we get "
        "draft refine improve prior check final result number equation problem let total each"
    ).split()
    texts = []
    for i in range(400):
        a, b = (i * 37) % 97, (i * 53) % 89
        w = " ".join(words[(i + k) % len(words)] for k in range(6))
        texts.append(
            f"What is {a} + {b}? <think> {w} {a} plus {b} is {a + b} </think> <answer> \\boxed{{{a + b}}} </answer>"
        )
        texts.append(f"Solve {a}x = {a * b}. Then x = \\frac{{{a * b}}}{{{a}}} = {b}. $\\sqrt{{{b}}}$ (1, 2] {{1, 2}}")
        texts.append(f"<|im_start|>user\n{w}?<|im_end|>\n<|im_start|>assistant\n{a - b} * {b} = {(a - b) * b}")
    return texts


def _tool_corpus() -> list[str]:
    """Tool-calling text as Qwen3's template renders it (tool schemas, calls, results), so that BPE merges it."""
    preamble = (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
        "function signatures within <tools></tools> XML tags:\n<tools>\n</tools>\n\nFor each function call, return "
        "a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    names = ("multiply", "add", "subtract", "lookup", "increment", "calculator", "search", "get_value")
    texts = []
    for i in range(200):
        a, b, name = (i * 7919) % 9973, (i * 104729) % 997, names[i % len(names)]
        texts.append(preamble)
        texts.append(
            f'{{"type": "function", "function": {{"name": "{name}", "description": "Returns the {name} of two '
            f'integers.", "parameters": {{"type": "object", "properties": {{"a": {{"type": "integer", "description": '
            f'"The first integer."}}, "b": {{"type": "integer", "description": "The second integer."}}}}, '
            f'"required": ["a", "b"]}}, "return": {{"type": "integer", "description": "The result."}}}}}}'
        )
        texts.append(f'<tool_call>\n{{"name": "{name}", "arguments": {{"a": {a}, "b": {b}}}}}\n</tool_call>')
        texts.append(f"<tool_response>\n{a * b}\n</tool_response> The answer is \\boxed{{{a * b}}}. Done!")
        texts.append("<think>\n\n</think>\n\n{'error': \"unexpected keyword argument 'c'\"}")
    return texts


def _build_tokenizer(
    architecture: str, vocab_size: int, chat_template: str = "chatml", extra_corpus: Sequence[str] = ()
):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # The same split regex Qwen2Tokenizer applies on reload (also a sensible choice for the other architectures).
    pretokenize_regex = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pretokenize_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _tokenizer_corpus() + (_tool_corpus() if chat_template == "qwen3" else []) + list(extra_corpus)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=_chat_template_text(chat_template),
        model_max_length=2048,
    )
    fast.add_tokens(list(REASONING_TAGS) + (list(TOOL_TAGS) if chat_template == "qwen3" else []))
    return fast


def _chat_template_text(chat_template: str) -> str:
    if chat_template == "chatml":
        return CHATML_TEMPLATE
    if chat_template == "qwen3":
        from trl.chat_template_utils import qwen3_chat_template  # TRL's copy: TRL recognises it by equality

        return qwen3_chat_template
    raise ValueError(f"Unknown chat_template {chat_template!r}; choose one of {CHAT_TEMPLATES}.")


def _build_config(architecture: str, vocab_size: int, tokenizer, hidden_size: int, num_layers: int):
    from transformers import LlamaConfig, NemotronHConfig, Qwen2Config, Qwen3Config

    heads = hidden_size // 32  # head_dim 32 for vLLM's CPU attention
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_attention_heads=heads,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    if architecture == "qwen2":
        return Qwen2Config(
            intermediate_size=2 * hidden_size, num_hidden_layers=num_layers, num_key_value_heads=heads // 2, **common
        )
    if architecture == "qwen3":  # tied input/output embeddings, as Qwen3's small models (0.6B-4B) have
        return Qwen3Config(
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_key_value_heads=heads // 2,
            head_dim=32,
            **{**common, "tie_word_embeddings": True},
        )
    if architecture == "llama":
        return LlamaConfig(
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_key_value_heads=heads // 2,
            head_dim=32,
            **common,
        )
    if architecture == "nemotron_h":
        # Hybrid Mamba2 / attention / MoE, like Nemotron-H and Nemotron 3. Without mamba_ssm/causal_conv1d installed,
        # transformers picks its pure-PyTorch path, which runs on CPU. At least one layer of each kind.
        block_types = ["mamba", "attention", "moe"]
        while len(block_types) < num_layers:
            block_types.append(("mamba", "moe", "attention")[len(block_types) % 3])
        return NemotronHConfig(
            layers_block_type=block_types[: max(num_layers, 3)],
            num_key_value_heads=heads // 2,
            head_dim=32,
            intermediate_size=2 * hidden_size,
            ssm_state_size=16,
            mamba_num_heads=hidden_size // 16,
            mamba_head_dim=32,
            n_groups=1,
            expand=2,
            chunk_size=16,
            n_routed_experts=4,
            n_shared_experts=1,
            num_experts_per_tok=2,
            moe_intermediate_size=hidden_size,
            moe_shared_expert_intermediate_size=hidden_size,
            **common,
        )
    raise ValueError(f"Unknown architecture {architecture!r}; choose one of {TINY_ARCHITECTURES}.")


def build_tiny_model(
    output_dir: str | os.PathLike,
    architecture: str = "qwen2",
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 128,
    num_layers: int = 2,
    overwrite: bool = False,
    chat_template: str = "chatml",
    extra_corpus: Sequence[str] = (),
) -> str:
    """Build and save a tiny random causal LM plus an offline-trained fast tokenizer.

    Args:
        output_dir: Directory to write ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
            tokenizer files to. If it already holds a model and ``overwrite`` is False, it is reused as is.
        architecture: ``"qwen2"``, ``"qwen3"``, ``"llama"`` or ``"nemotron_h"`` (hybrid Mamba-attention-MoE; at least
            3 layers).
        seed: Seeds the weights; the tokenizer is deterministic regardless.
        vocab_size: BPE vocabulary size before the four reasoning tags are added.
        hidden_size: Multiple of 32 (head_dim is 32 for vLLM's CPU backend).
        num_layers: Decoder layers.
        overwrite: Rebuild even if ``output_dir`` already holds a model.
        chat_template: ``"chatml"`` (default) or ``"qwen3"``: Qwen3's template as TRL ships it, with Qwen3's tool tags
            as added tokens and tool-calling text in the tokenizer corpus, for tool and environment training.
        extra_corpus: More text for the tokenizer's BPE training (e.g. a task's vocabulary, so its words become
            single tokens).

    Returns:
        ``str(output_dir)``, ready for ``from_pretrained`` or as the ``model`` argument of TRL trainers.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {TINY_ARCHITECTURES}.")
    if chat_template not in CHAT_TEMPLATES:
        raise ValueError(f"Unknown chat_template {chat_template!r}; choose one of {CHAT_TEMPLATES}.")
    if hidden_size % 64:
        raise ValueError(f"hidden_size must be a multiple of 64 (head_dim 32, even GQA split), got {hidden_size}.")
    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and (output_dir / "model.safetensors").exists() and not overwrite:
        return str(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(architecture, vocab_size, chat_template, extra_corpus)
    config = _build_config(architecture, len(tokenizer), tokenizer, hidden_size, num_layers)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    tokenizer.save_pretrained(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    return str(output_dir)
