"""Shared fixtures: tiny offline models built once per test session; the Hub is never touched."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

from trl_igrpo.testing import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Tiny Qwen2 (hidden 128, 2 layers, head_dim 32) with its offline tokenizer, on disk."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), architecture="qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    """Tiny Qwen3 (hidden 64, 1 layer) with TRL's Qwen3 chat template: TRL parses its tool calls."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-qwen3"),
        architecture="qwen3",
        chat_template="qwen3",
        hidden_size=64,
        num_layers=1,
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), architecture="llama")


@pytest.fixture(scope="session")
def tiny_nemotron_h_dir(tmp_path_factory):
    """Tiny hybrid Mamba-attention-MoE NemotronH (3 layers: mamba, attention, moe)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-nemotron-h"), architecture="nemotron_h", num_layers=3)
