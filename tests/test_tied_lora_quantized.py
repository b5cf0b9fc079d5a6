"""Tied-LoRA on bitsandbytes-quantized base models: every factor trains, in float32, whatever TRL casts.

TRL's SFT, GRPO and DPO trainers cast all trainable parameters of a 4-/8-bit model to bfloat16 (``_is_quantized_model``
branch: ``param.data = param.data.to(torch.bfloat16)``). Tied-LoRA's u and v start at 1.0, where the bfloat16 spacing is
2^-7, so Adam steps of ~lr would round away and TL6 would silently train as TL5.
"""

import copy
import pickle
import warnings

import pytest
import torch
from datasets import Dataset
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from trl_igrpo.testing import cpu_training_kwargs
from trl_igrpo.tied_lora import Float32Parameter, TiedLoraConfig, TiedLoraLayer

QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _bnb():
    return pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)")


def _quantized(tiny_model_dir, bits=4):
    _bnb()
    if bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=config, device_map="cpu")


def _trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _cast_trainable_like_trl(model):
    """What TRL's trainers do to a quantized model's trainable parameters (trl/trainer/sft_trainer.py)."""
    for param in _trainable(model).values():
        param.data = param.data.to(torch.bfloat16)


@pytest.fixture
def input_ids():
    return torch.randint(0, 400, (2, 10), generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------------------- Float32Parameter
def test_float32_parameter_refuses_lower_precision_data_with_a_warning():
    param = Float32Parameter(torch.full((4,), 1.0 + 2**-10), requires_grad=True)
    with pytest.warns(UserWarning, match=r"ignored a cast to torch\.bfloat16.*u and v.*would silently stop training"):
        param.data = param.data.to(torch.bfloat16)
    assert param.dtype == torch.float32 and param.requires_grad
    assert torch.equal(param, torch.full((4,), 1.0))  # the values were rounded by the caller's cast, then upcast

    module = torch.nn.Linear(2, 2)
    module.weight = Float32Parameter(module.weight.detach().clone())
    with pytest.warns(UserWarning, match="float16"):
        module.half()
    assert module.weight.dtype == torch.float32 and module.bias.dtype == torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.to("cpu")  # device moves and float32 data pass without a warning
        module.weight.data = torch.zeros(2, 2)
    for clone in (copy.deepcopy(module.weight), pickle.loads(pickle.dumps(module.weight))):
        assert type(clone) is Float32Parameter and clone.requires_grad and clone.dtype == torch.float32


def test_unquantized_models_keep_plain_parameters_that_follow_casts(tiny_model_dir):
    """The guard is for quantized bases only: TRL keeps bf16 adapters of unquantized models under ZeRO-3 on purpose."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), TiedLoraConfig(r=2))
    trainable = _trainable(model)
    assert trainable and not any(isinstance(p, Float32Parameter) for p in trainable.values())
    model.to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in trainable.values())


# ------------------------------------------------------------------------------------------------ quantized models
@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_base_gets_float32_adapter_parameters_that_survive_trl_cast(tiny_model_dir, input_ids, bits):
    base = _quantized(tiny_model_dir, bits)
    with torch.no_grad():
        expected = base(input_ids).logits
    model = get_peft_model(base, TiedLoraConfig(r=4, target_modules=QKVO))
    layers = [m for m in model.modules() if isinstance(m, TiedLoraLayer)]
    assert len(layers) == 8
    assert {m.quantization_backend.backend_name for m in layers} == {f"bnb {bits}bit"}
    trainable = _trainable(model)
    for factor in ("tiedlora_A", "tiedlora_B", "tiedlora_u", "tiedlora_v"):
        assert any(factor in n for n in trainable), factor
    with pytest.warns(UserWarning, match="keeps its adapter parameters in float32"):
        _cast_trainable_like_trl(model)
    assert all(type(p) is Float32Parameter and p.dtype == torch.float32 for p in trainable.values())
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, expected)  # still the exact no-op at init


def test_quantized_reload_with_low_cpu_mem_usage_keeps_float32_parameters(tiny_model_dir, tmp_path):
    """PEFT's low_cpu_mem_usage load assigns fresh plain parameters; the tuner makes them Float32Parameter again."""
    model = get_peft_model(_quantized(tiny_model_dir), TiedLoraConfig(r=4, init_weights=False))
    saved = {n: p.detach().clone() for n, p in _trainable(model).items()}
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(_quantized(tiny_model_dir), tmp_path, is_trainable=True, low_cpu_mem_usage=True)
    trainable = _trainable(loaded)
    assert set(trainable) == set(saved)
    assert all(type(p) is Float32Parameter and torch.equal(p, saved[n]) for n, p in trainable.items())


def test_merge_into_8bit_layers_requantizes_with_a_warning(tiny_model_dir, input_ids):
    """merge/unmerge go through PEFT's quantization backend (dequantize, add, requantize), not the packed int8 data."""
    base = _quantized(tiny_model_dir, 8)
    with torch.no_grad():
        base_logits = base(input_ids).logits
    model = get_peft_model(base, TiedLoraConfig(r=4, target_modules=QKVO, init_weights=False))
    with torch.no_grad():
        adapted = model(input_ids).logits
    effect = (adapted - base_logits).abs().max().item()
    assert effect > 0.5
    with pytest.warns(UserWarning, match="requantizes the base weight"):
        model.merge_adapter()
    with torch.no_grad():
        merged = model(input_ids).logits
    assert (merged - adapted).abs().max().item() < 0.1 * effect  # int8 rounding only (measured ~0.02 vs 1.19)
    with pytest.warns(UserWarning, match="requantizes the base weight"):
        model.unmerge_adapter()
    with torch.no_grad():
        assert (model(input_ids).logits - adapted).abs().max().item() < 0.1 * effect


@pytest.mark.slow
def test_sft_trainer_on_4bit_model_trains_every_tied_lora_tensor_in_float32(tiny_model_dir, tmp_path):
    """TL6 through TRL's SFTTrainer on a bitsandbytes 4-bit model, at an lr below bfloat16's resolution at 1.0."""
    _bnb()
    from trl import SFTConfig, SFTTrainer

    lr = 1e-4
    # the learning rate is small enough that a bfloat16 u or v at 1.0 cannot move: without the float32 guard this
    # test fails (measured before the fix: u and v changed by 0.0, A and B by ~1e-4)
    one = torch.tensor(1.0, dtype=torch.bfloat16)
    assert one + 4 * lr == one
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
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=lr, max_length=48,
        **cpu_training_kwargs(),
    )  # fmt: skip
    base = _quantized(tiny_model_dir)
    assert base.is_loaded_in_4bit  # TRL's test for its bfloat16 cast of trainable parameters
    with pytest.warns(UserWarning, match="keeps its adapter parameters in float32"):  # TRL's cast, refused
        trainer = SFTTrainer(
            model=base, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
            peft_config=TiedLoraConfig.from_configuration("TL6", r=4),
        )  # fmt: skip
    before = {n: p.detach().clone() for n, p in _trainable(trainer.model).items()}
    assert all(p.dtype == torch.float32 for p in before.values())
    for factor in ("tiedlora_A", "tiedlora_B", "tiedlora_u", "tiedlora_v"):
        assert any(factor in n for n in before), factor
    trainer.train()

    after = _trainable(trainer.model)
    assert set(after) == set(before)
    unchanged = [n for n, p in after.items() if torch.equal(p.detach(), before[n])]
    assert unchanged == []
    assert all(type(p) is Float32Parameter and p.dtype == torch.float32 for p in after.values())
    u_change = max((p.detach() - before[n]).abs().max().item() for n, p in after.items() if "tiedlora_u" in n)
    assert u_change > lr / 2  # Adam moves every element by about lr per step
