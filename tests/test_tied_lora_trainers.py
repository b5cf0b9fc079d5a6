"""Tied-LoRA as `peft_config` of TRL trainers (SFT, GRPO, iGRPO) and through TRL's vLLM weight-sync iterator."""

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from helpers import varied_reward
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_igrpo.testing import cpu_training_kwargs
from trl_igrpo.tied_lora import TiedLoraConfig, TiedLoraModel

CPU_ARGS = cpu_training_kwargs()


def _adapter_snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "tiedlora_" in n}


def _assert_every_factor_trained(model, before):
    after = {n: p.detach() for n, p in model.named_parameters() if "tiedlora_" in n}
    assert set(after) == set(before)
    changed = {n for n in before if not torch.equal(before[n], after[n].cpu())}
    for factor in ("tiedlora_A", "tiedlora_B", "tiedlora_u", "tiedlora_v"):
        assert any(factor in n for n in changed), f"no {factor} parameter changed"
    assert isinstance(model.base_model, TiedLoraModel)


def _prompt_dataset(n=4):
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(n)])


def test_trl_vllm_weight_iterator_sees_merged_base_weights_only(tiny_model_dir):
    """TRL's vLLM sync (`VLLMGeneration._iter_named_params`) merges the adapter, skips `tiedlora_` names and unmerges."""
    vllm_generation = pytest.importorskip("trl.generation.vllm_generation")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_state = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = get_peft_model(base, TiedLoraConfig(r=4, init_weights=False))
    expected = {}
    for name, module in model.base_model.model.named_modules():
        if hasattr(module, "get_delta_weight"):
            expected[f"{name}.weight"] = base_state[f"{name}.weight"] + module.get_delta_weight("default")

    generation = SimpleNamespace(
        model=model, _dist=SimpleNamespace(gather_params=lambda params: nullcontext(), is_fsdp=False)
    )
    generation._fix_param_name_to_vllm = vllm_generation.VLLMGeneration._fix_param_name_to_vllm.__get__(generation)
    synced = {name: tensor.clone() for name, tensor in vllm_generation.VLLMGeneration._iter_named_params(generation)}

    assert set(synced) == set(base_state)  # exactly the base model's names: no adapter tensor leaks to vLLM
    assert len(expected) == 6
    for name, tensor in synced.items():
        torch.testing.assert_close(tensor, expected.get(name, base_state[name]), rtol=1e-6, atol=1e-6)
    # unmerged again afterwards
    for module in model.base_model.model.modules():
        if hasattr(module, "get_delta_weight"):
            assert not module.merged


@pytest.mark.slow
def test_sft_trainer_trains_tied_lora(tiny_model_dir, tmp_path):
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"{i} + {i}?"}],
                "completion": [{"role": "assistant", "content": f"{2 * i}"}],
            }
            for i in range(8)
        ]
    )
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        max_length=48,
        **CPU_ARGS,
    )
    trainer = SFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=TiedLoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )  # fmt: skip
    before = _adapter_snapshot(trainer.model)
    assert before and all(p.requires_grad for n, p in trainer.model.named_parameters() if n in before)
    trainer.train()
    _assert_every_factor_trained(trainer.model, before)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_grpo_trainer_trains_tied_lora(tiny_model_dir, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=8, learning_rate=5e-2, beta=0.04, temperature=1.0, seed=0, **CPU_ARGS,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=tiny_model_dir, reward_funcs=varied_reward, args=args, train_dataset=_prompt_dataset(),
        peft_config=TiedLoraConfig(r=4),
    )  # fmt: skip
    before = _adapter_snapshot(trainer.model)
    trainer.train()
    _assert_every_factor_trained(trainer.model, before)


@pytest.mark.slow
def test_igrpo_trainer_trains_tied_lora(tiny_model_dir, tmp_path):
    from trl_igrpo import IGRPOConfig, IGRPOTrainer

    args = IGRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4, num_drafts=2,
        max_completion_length=8, learning_rate=5e-2, temperature=1.0, seed=0, **CPU_ARGS,
    )  # fmt: skip
    trainer = IGRPOTrainer(
        model=tiny_model_dir, reward_funcs=varied_reward, args=args, train_dataset=_prompt_dataset(),
        peft_config=TiedLoraConfig(r=4),
    )  # fmt: skip
    before = _adapter_snapshot(trainer.model)
    trainer.train()
    _assert_every_factor_trained(trainer.model, before)


@pytest.mark.slow
def test_rpo_trainer_trains_tied_lora(tiny_model_dir, tmp_path):
    from trl_igrpo.demo import rpo_preferences as rpo_data
    from trl_igrpo.rpo import config as rpo_config
    from trl_igrpo.rpo import trainer as rpo_trainer

    args = rpo_config.RPOConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, max_length=64, learning_rate=5e-2,
        **CPU_ARGS,
    )  # fmt: skip
    trainer = rpo_trainer.RPOTrainer(
        model=tiny_model_dir, args=args, train_dataset=rpo_data.build_synthetic_preference_dataset(12),
        peft_config=TiedLoraConfig(r=4),
    )  # fmt: skip
    before = _adapter_snapshot(trainer.model)
    trainer.train()
    _assert_every_factor_trained(trainer.model, before)


@pytest.mark.slow
def test_example_script_trains_and_saves_a_reloadable_adapter(monkeypatch, tmp_path):
    import importlib.util
    import pathlib
    import sys

    from peft import PeftModel

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "train_tied_lora.py"
    spec = importlib.util.spec_from_file_location("train_tied_lora", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)  # the demo writes to outputs/tied-lora-demo (and its tiny model) under the cwd
    trainer = example.main(["--max_steps", "2", "--tied_lora_configuration", "TL5", "--merge_adapter"])
    output_dir = trainer.args.output_dir
    assert trainer.model.peft_config["default"].configuration_name == "TL5"
    base = AutoModelForCausalLM.from_pretrained(trainer.model.peft_config["default"].base_model_name_or_path)
    reloaded = PeftModel.from_pretrained(base, output_dir)
    merged = AutoModelForCausalLM.from_pretrained(f"{output_dir}/merged")
    input_ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids).logits, merged(input_ids).logits, rtol=1e-5, atol=1e-5)
