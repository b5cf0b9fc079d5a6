"""Model cards and Hub pushes from trl-igrpo trainers (offline: nothing reaches the network)."""

import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers import varied_reward

from trl_igrpo import (
    CurriculumGRPOConfig,
    CurriculumGRPOTrainer,
    IGRPOConfig,
    IGRPOTrainer,
    RPOConfig,
    RPOTrainer,
    TiedLoraConfig,
)
from trl_igrpo.demo.rpo_preferences import build_synthetic_preference_dataset
from trl_igrpo.hub import HubTokenError, non_default_args, require_hub_token
from trl_igrpo.testing import cpu_training_kwargs

CPU = cpu_training_kwargs()


def _prompts(n):
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(n)],
            "pass_rate": [(i % 4) / 4 for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def tied_lora_igrpo_run(tiny_model_dir, tmp_path_factory):
    """One iGRPO step with a Tied-LoRA adapter and the pass-rate curriculum, then save_model (module-scoped: ~5 s)."""
    output_dir = tmp_path_factory.mktemp("igrpo-tied-lora")
    args = IGRPOConfig(
        output_dir=str(output_dir), **CPU, per_device_train_batch_size=4, num_generations=4, num_drafts=2,
        max_completion_length=8, max_steps=1, learning_rate=1e-2, progressive_batching=True, seed=0,
    )  # fmt: skip
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=varied_reward,
        args=args,
        train_dataset=_prompts(8),
        peft_config=TiedLoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    trainer.save_model()
    trainer.create_model_card(model_name="tiny-igrpo", dataset_name="my/arithmetic")
    return trainer, output_dir


@pytest.mark.slow
def test_card_names_every_method_with_citations_tags_and_config(tied_lora_igrpo_run):
    trainer, output_dir = tied_lora_igrpo_run
    assert trainer.state.global_step == 1
    card = (output_dir / "README.md").read_text()
    header = card.split("---")[1]  # the YAML metadata block the Hub indexes
    for tag in ("trl", "trl-igrpo", "igrpo", "tied-lora", "pass-rate-curriculum"):
        assert f"- {tag}\n" in header, tag
    assert "dynamic-sampling" not in header  # off in this run
    for method, arxiv_id in (("iGRPO", "2602.09000"), ("Tied-LoRA", "2311.09578"), ("Llama-Nemotron", "2505.00949")):
        assert method in card and f"https://huggingface.co/papers/{arxiv_id}" in card and f"arXiv:{arxiv_id}" in card
    assert "iGRPO: Self-Feedback-Driven LLM Reasoning" in card
    assert "Tied-LoRA: Enhancing parameter efficiency of LoRA with Weight Tying" in card
    # the training configuration: non-default fields, secrets and local paths left out
    assert "## Training configuration" in card
    for line in ("num_drafts: 2", "progressive_batching: true", "learning_rate: 0.01", "max_completion_length: 8"):
        assert line in card, line
    assert "output_dir" not in card.split("## Training configuration")[1].split("```")[1]
    assert card.index("## Methods") < card.index("## Citations")  # TRL's own sections are kept


@pytest.mark.slow
def test_saved_folder_is_exactly_what_a_push_uploads(tied_lora_igrpo_run):
    _, output_dir = tied_lora_igrpo_run
    files = {p.name for p in output_dir.iterdir() if p.is_file() and not p.name.startswith("_")}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md", "training_args.json"} <= files  # fmt: skip
    forbidden = {name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))}
    assert not forbidden, f"pickle files would be uploaded: {forbidden}"
    import json

    assert json.loads((output_dir / "training_args.json").read_text())["num_drafts"] == 2  # the args, as JSON


@pytest.mark.slow
def test_tied_lora_adapter_reloads_with_identical_outputs(tied_lora_igrpo_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer, output_dir = tied_lora_igrpo_run
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(output_dir)).eval()
    trained = trainer.accelerator.unwrap_model(trainer.model).eval()
    input_ids = torch.tensor([[1, 5, 9, 17, 33, 2]])
    with torch.no_grad():
        expected = trained(input_ids=input_ids).logits
        actual = reloaded(input_ids=input_ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=input_ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(actual, base), "the adapter was trained, so it must change the outputs"


@pytest.mark.slow
def test_rpo_card_cites_rpo(tiny_model_dir, tmp_path):
    args = RPOConfig(output_dir=str(tmp_path), **CPU, per_device_train_batch_size=4, max_length=64, max_steps=1)
    trainer = RPOTrainer(model=tiny_model_dir, args=args, train_dataset=build_synthetic_preference_dataset(8, 2))
    trainer.train()
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "- rpo\n" in card and "- trl-igrpo\n" in card
    assert "https://huggingface.co/papers/2502.00203" in card and "Reward-aware Preference Optimization" in card
    assert "Tied-LoRA" not in card and "pass-rate-curriculum" not in card


@pytest.mark.slow
def test_curriculum_grpo_card_cites_grpo_curriculum_and_dynamic_sampling(tiny_model_dir, tmp_path):
    args = CurriculumGRPOConfig(
        output_dir=str(tmp_path), **CPU, per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
        max_steps=1, progressive_batching=True, dynamic_sampling=True,
    )  # fmt: skip
    trainer = CurriculumGRPOTrainer(
        model=tiny_model_dir, reward_funcs=varied_reward, args=args, train_dataset=_prompts(8)
    )
    trainer.create_model_card(model_name="tiny-grpo")
    card = (tmp_path / "README.md").read_text()
    header = card.split("---")[1]
    for tag in ("trl", "trl-igrpo", "grpo", "pass-rate-curriculum", "dynamic-sampling"):
        assert f"- {tag}\n" in header, tag
    assert "igrpo" not in header.replace("trl-igrpo", "") and "tied-lora" not in header
    methods = card.split("## Methods")[1]
    for arxiv_id in ("2402.03300", "2505.00949", "2503.14476"):  # GRPO, Llama-Nemotron, DAPO
        assert f"https://huggingface.co/papers/{arxiv_id}" in methods, arxiv_id
    assert "dynamic_sampling: true" in methods and "progressive_batching: true" in methods


def _no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    called = []

    def forbidden(*args, **kwargs):
        called.append(args)
        raise AssertionError("an upload function was called without credentials")

    for name in ("upload_folder", "create_repo", "create_commit", "upload_file"):
        monkeypatch.setattr(f"huggingface_hub.HfApi.{name}", forbidden)
    return called


def test_require_hub_token_message(monkeypatch, tmp_path):
    _no_credentials(monkeypatch, tmp_path)
    with pytest.raises(HubTokenError, match="No Hugging Face token was found.*hf auth login"):
        require_hub_token()
    assert require_hub_token("hf_explicit") == "hf_explicit"


@pytest.mark.slow
def test_push_without_token_fails_before_saving_or_uploading(tied_lora_igrpo_run, monkeypatch, tmp_path):
    trainer, _ = tied_lora_igrpo_run
    called = _no_credentials(monkeypatch, tmp_path)
    monkeypatch.setattr(trainer.args, "output_dir", str(tmp_path / "push-dir"))
    monkeypatch.setattr(trainer.args, "hub_token", None)
    with pytest.raises(HubTokenError, match="No Hugging Face token was found"):
        trainer.push_to_hub()
    assert not called
    assert not os.path.exists(tmp_path / "push-dir"), "nothing may be saved before the token check"


def test_push_to_hub_config_fails_at_construction_without_token(tiny_model_dir, monkeypatch, tmp_path):
    """`push_to_hub=True` makes Trainer.__init__ create the repo; the token check runs first, before any training."""
    called = _no_credentials(monkeypatch, tmp_path)
    args = RPOConfig(output_dir=str(tmp_path / "out"), **CPU, max_length=64, max_steps=1, push_to_hub=True)
    with pytest.raises(HubTokenError):
        RPOTrainer(model=tiny_model_dir, args=args, train_dataset=build_synthetic_preference_dataset(4, 2))
    assert not called


def test_non_default_args_masks_secrets(tmp_path):
    args = RPOConfig(output_dir=str(tmp_path), **CPU, hub_token="hf_secret", beta=0.03)
    changed = non_default_args(args)
    assert changed["beta"] == 0.03 and changed["use_cpu"] is True
    assert "hf_secret" not in repr(changed) and "output_dir" not in changed
    assert Path(tmp_path).name not in repr(changed)
