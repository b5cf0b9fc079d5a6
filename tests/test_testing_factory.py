"""The offline model factory: reload, identical tokenization, determinism, vLLM-compatible shapes."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_igrpo.testing import REASONING_TAGS, build_tiny_model

SAMPLES = [
    "What is 12 + 7? <think> 12 plus 7 is 19 </think><answer>\\boxed{19}</answer>",
    "Solve 3x = 12. Then x = \\frac{12}{3} = 4 ; unicode café ünïcödé 数学",
    "  leading spaces\n\nand newlines\t tabs",
]


@pytest.mark.parametrize("architecture", ["qwen2", "llama", "nemotron_h"])
def test_reload_and_identical_tokenization(tmp_path, architecture):
    path = build_tiny_model(tmp_path / architecture, architecture=architecture, num_layers=3)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == architecture
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    # The in-memory tokenizer (before saving) and the reloaded one agree token for token.
    from trl_igrpo.testing import _build_tokenizer

    fresh = _build_tokenizer(architecture, 1024)
    for text in SAMPLES:
        assert tokenizer(text).input_ids == fresh(text).input_ids
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    # Reasoning tags are single, non-special tokens that survive skip_special_tokens decoding.
    for tag in REASONING_TAGS:
        ids = tokenizer(tag, add_special_tokens=False).input_ids
        assert len(ids) == 1, tag
        assert tokenizer.decode(ids, skip_special_tokens=True) == tag
    # head_dim is one vLLM's CPU attention accepts.
    config = json.loads((tmp_path / architecture / "config.json").read_text())
    assert config.get("head_dim", config["hidden_size"] // config["num_attention_heads"]) >= 32
    assert (tmp_path / architecture / "model.safetensors").exists()
    # The reloaded model runs a forward pass on its own tokenizer's output.
    batch = tokenizer(SAMPLES[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()


def test_deterministic_for_a_seed(tmp_path):
    a = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "a", seed=3))
    b = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b", seed=3))
    c = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "c", seed=4))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_nemotron_h_is_hybrid(tiny_nemotron_h_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_nemotron_h_dir)
    mixers = {type(layer.mixer).__name__ for layer in model.model.layers}
    assert mixers == {"NemotronHMamba2Mixer", "NemotronHAttention", "NemotronHMoE"}


def test_unknown_architecture_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        build_tiny_model(tmp_path, architecture="gpt5")
