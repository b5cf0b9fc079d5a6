"""The model card (README.md) of a LoRA export: where it came from, why it is exact, how to load and serve it."""

from __future__ import annotations

import os

import torch
from peft import LoraConfig

from .config import TiedLoraConfig

#: First heading of every export's README.md (tests and tools recognise an export by it).
EXPORT_CARD_HEADING = "# LoRA export of a Tied-LoRA adapter"

#: vLLM's accepted ``max_lora_rank`` values (vLLM 0.32); the card names the smallest that fits the rank.
_VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _front_matter(base_model: str | None) -> str:
    lines = ["---", "library_name: peft", "tags:", "- lora", "- tied-lora", "- trl-igrpo"]
    if base_model and not os.path.exists(base_model):  # the Hub only accepts repo ids here, not local paths
        lines.append(f"base_model: {base_model}")
    return "\n".join([*lines, "---", ""])


def _layout(config: TiedLoraConfig) -> str:
    trained = [
        name for name, on in zip("ABuv", (config.train_A, config.train_B, config.train_u, config.train_v)) if on
    ]
    name = config.configuration_name
    groups = "; ".join("/".join(group) for group in config.fused_module_groups) or "none (tied by shape)"
    return f"{name + ', ' if name else ''}trained: {', '.join(trained)}; fused groups: {groups}"


def export_model_card(
    lora_config: LoraConfig,
    tied_config: TiedLoraConfig,
    source: str,
    tied_parameters: int,
    state: dict[str, torch.Tensor],
) -> str:
    """README.md of an export: provenance, the exactness argument, sizes, and PEFT / vLLM loading snippets."""
    base = lora_config.base_model_name_or_path or "<base model>"
    modules = sum(key.endswith(".lora_A.weight") for key in state)
    lora_parameters = sum(t.numel() for key, t in state.items() if ".lora_" in key)
    vllm_rank = next((rank for rank in _VLLM_MAX_LORA_RANKS if rank >= lora_config.r), lora_config.r)
    targets = lora_config.target_modules
    target_text = ", ".join(sorted(targets)) if not isinstance(targets, str) else targets
    if len(target_text) > 200:
        target_text = f"{len(targets)} modules by full name"
    extra = ""
    if lora_config.modules_to_save:
        extra = (
            f"\n`modules_to_save` ({', '.join(lora_config.modules_to_save)}) are copied as trained. vLLM accepts "
            "`modules_to_save` only for classification heads (`classifier`, `score`) and refuses other ones.\n"
        )
    return f"""{_front_matter(lora_config.base_model_name_or_path)}
{EXPORT_CARD_HEADING}

A standard PEFT LoRA adapter (`"peft_type": "LORA"`) that [trl-igrpo](https://github.com/trl-igrpo/trl-igrpo)'s
`export_lora` wrote from the [Tied-LoRA](https://arxiv.org/abs/2311.09578) adapter {source}. It loads with plain PEFT,
vLLM and other LoRA tools; `trl_igrpo` is not needed.

The export is exact. For every adapted module, `lora_A = diag(u_l) · A` and `lora_B = diag(v_l) · B`, and the rank
and alpha stay the same. So the LoRA update `lora_alpha / r · lora_B · lora_A` equals the Tied-LoRA update
`scaling · diag(v_l) · B · diag(u_l) · A`, up to float rounding.

| | Tied-LoRA source | This LoRA export |
|---|---|---|
| Stored parameters | {tied_parameters:,} | {lora_parameters:,} |
| Rank, alpha | r = {tied_config.r}, alpha = {_alpha_text(tied_config)} | r = {lora_config.r}, lora_alpha = {lora_config.lora_alpha} |
| Adapted modules | {modules} | {modules} ({target_text}) |
| Layout | {_layout(tied_config)} | one (lora_A, lora_B) pair per module |
{extra}
## Load with PEFT

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "path/or/repo-of-this-adapter")
```

## Serve with vLLM

```python
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

llm = LLM(model="{base}", enable_lora=True, max_lora_rank={vllm_rank})
outputs = llm.generate(["..."], SamplingParams(), lora_request=LoRARequest("tied-lora", 1, "path/to/this/adapter"))
```
"""


def _alpha_text(config: TiedLoraConfig) -> str:
    return f"r ({config.r})" if config.alpha is None else f"{config.alpha:g}"
