"""Shared prompt prefill: each distinct prompt of a GRPO group is encoded once, and completions do not change."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from helpers import snapshot_trainable, varied_reward
from transformers import AutoModelForCausalLM, GenerationConfig

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.core.prefill import prefill_unsupported_reason, prompt_runs, shared_prompt_prefill
from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.testing import cpu_training_kwargs


def test_prompt_runs_groups_consecutive_identical_rows():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [0, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [0, 1, 1]])
    first, run = prompt_runs(ids, mask)
    assert first.tolist() == [0, 2, 3] and run.tolist() == [0, 0, 1, 2]  # only *consecutive* rows share
    assert prompt_runs(ids[1:3], mask[1:3]) is None
    other_mask = mask.clone()
    other_mask[1, 0] = 1
    assert prompt_runs(ids[:2], other_mask[:2]) is None  # same ids, different padding: not the same prompt


def _batch(tokenizer, texts, repeats):
    ids = [tokenizer(text)["input_ids"] for text in texts for _ in range(repeats)]
    width = max(map(len, ids))
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    return input_ids, mask


@pytest.mark.parametrize(
    ("architecture", "sample"),
    [("tiny_model_dir", False), ("tiny_llama_dir", False), ("warm_start", False), ("warm_start", True)],
)
def test_completions_are_identical_and_prompts_encoded_once(request, architecture, sample):
    """Greedy: the same tokens. Sampled: the same tokens on a trained model; on a random model, whose next-token
    distribution is nearly flat, a rounding-level difference in the prompt encoding can flip a draw (see below)."""
    from transformers import AutoTokenizer

    from trl_igrpo.demo.warm_start import SHIPPED_WARM_START

    model_dir = SHIPPED_WARM_START if architecture == "warm_start" else request.getfixturevalue(architecture)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    input_ids, mask = _batch(tokenizer, ["What is 1 + 2?", "Solve 12 x = 144 then add the digits."], repeats=3)
    config = GenerationConfig(
        max_new_tokens=12, do_sample=sample, temperature=0.9, pad_token_id=tokenizer.pad_token_id, eos_token_id=None
    )
    torch.manual_seed(0)
    plain = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    prefill_rows = []
    forward = model.forward

    def counting_forward(*args, **kwargs):
        prefill_rows.append(kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    model.forward = counting_forward
    torch.manual_seed(0)
    with shared_prompt_prefill(model):
        shared = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    assert "generate" not in vars(model)  # the class's method is back
    assert torch.equal(plain, shared)
    # the first forward encodes the 2 distinct prompts (minus their last token), not the 6 rows
    assert prefill_rows[0] == (2, input_ids.size(1) - 1)
    assert all(shape[0] == 6 and shape[1] == 1 for shape in prefill_rows[1:])


def _with_adapter(model, adapter: str):
    from peft import LoraConfig, get_peft_model

    from trl_igrpo.tied_lora import TiedLoraConfig

    if adapter == "none":
        return model
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"]) if adapter == "lora" else TiedLoraConfig(r=4)
    return get_peft_model(model, config)


@pytest.mark.parametrize("adapter", ["none", "lora", "tied-lora"])
def test_the_prefill_forward_computes_logits_for_one_position_only(tiny_model_dir, adapter):
    """The prefill keeps only the cache: full logits would cost rows x length x vocabulary of memory for nothing. Under
    PEFT the setting is read from the wrapped model (PeftModel.forward takes **kwargs and declares nothing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = _with_adapter(base, adapter).eval()
    input_ids, mask = _batch(tokenizer, ["What is 1 + 2?", "Solve 12 x = 144 then add the digits."], repeats=3)
    config = GenerationConfig(
        max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None
    )
    head_inputs, logits = [], []
    base.lm_head.register_forward_hook(lambda module, inputs, output: head_inputs.append(tuple(inputs[0].shape)))
    base.register_forward_hook(lambda module, args, output: logits.append(tuple(output.logits.shape)))
    plain = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    head_inputs.clear(), logits.clear()
    with shared_prompt_prefill(model):
        shared = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    assert torch.equal(plain, shared)
    assert head_inputs[0] == (2, 1, base.config.hidden_size)  # the prefill: 2 distinct prompts, 1 position each
    assert logits[0] == (2, 1, base.config.vocab_size)  # what the prefill forward returns
    assert all(shape[1] == 1 for shape in head_inputs + logits)


def test_the_prefill_steps_aside_for_settings_it_cannot_share(tiny_model_dir):
    """Each reason names the setting; the model's own generation_config counts like the caller's."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    reason = prefill_unsupported_reason
    assert reason(model, {"generation_config": GenerationConfig(num_beams=2)}) is None
    assert reason(model, {"generation_config": GenerationConfig(use_cache=False)}) == "use_cache=False"
    assert reason(model, {"generation_config": GenerationConfig(prompt_lookup_num_tokens=2)}) == (
        "the assisted_generation decoding mode"
    )
    assert reason(model, {"generation_config": GenerationConfig(penalty_alpha=0.6, top_k=4)}) == (
        "the contrastive_search decoding mode"
    )
    assert "pixel_values" in reason(model, {"pixel_values": torch.zeros(1)})
    model.generation_config.cache_implementation = "static"
    assert reason(model, {"generation_config": GenerationConfig()}) == "cache_implementation='static'"


def test_next_token_scores_agree_to_rounding_on_a_random_model(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    input_ids, mask = _batch(tokenizer, ["What is 1 + 2?", "Solve 12 x = 144 then add the digits."], repeats=3)
    config = GenerationConfig(
        max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    plain = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    with shared_prompt_prefill(model):
        shared = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    for a, b in zip(plain.scores, shared.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_models_without_a_plain_kv_cache_keep_the_normal_path(tiny_nemotron_h_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_nemotron_h_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_nemotron_h_dir).eval()
    input_ids, mask = _batch(tokenizer, ["What is 1 + 2?"], repeats=2)
    config = GenerationConfig(max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    plain = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    with shared_prompt_prefill(model):
        shared = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    assert torch.equal(plain, shared)


@pytest.mark.slow
def test_igrpo_trains_identically_with_and_without_shared_prefill(tmp_path):
    from trl_igrpo.demo.warm_start import SHIPPED_WARM_START

    weights = []
    for share in (True, False):
        args = IGRPOConfig(
            output_dir=str(tmp_path / str(share)),
            **cpu_training_kwargs(max_steps=2, learning_rate=1e-2, seed=0),
            per_device_train_batch_size=4,
            num_drafts=2,
            num_generations=2,
            max_completion_length=24,
            share_prompt_prefill=share,
        )
        trainer = IGRPOTrainer(
            model=str(SHIPPED_WARM_START),
            reward_funcs=[varied_reward],
            args=args,
            train_dataset=Dataset.from_list(make_arithmetic_examples(16, seed=0, max_operand=12)),
        )
        trainer.train()
        weights.append(snapshot_trainable(trainer.model))
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
