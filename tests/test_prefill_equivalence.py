"""The shared prompt prefill (on by default) equals the plain path for every generation setting TRL accepts.

The matrix: generation settings (greedy; sampling with a seed; beam search, sampled and not; repetition_penalty;
min_new_tokens; top_k/top_p/min_p; the model's own generation_config, including one the prefill must step aside for)
x models (full, LoRA, Tied-LoRA, LoRA on a 4-bit bitsandbytes base). In each cell one iGRPO rollout (Stage 1 drafts and
Stage 2 refinements, both generated through the prefill) runs with ``share_prompt_prefill`` on and off from the same
seed: prompts (with the chosen drafts), completions and old log-probs must be identical, the prefill must have run
(or stepped aside, where expected), and no generation forward may return logits for more than one position.

Settings TRL's rollout cannot use (``num_return_sequences``, ``stop_strings``) are refused at construction; at the
``generate`` level the prefill gives the same tokens for them too.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from datasets import Dataset
from helpers import varied_reward
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, GenerationConfig

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.core.prefill import (
    _transformers_model,
    effective_generation_config,
    prefill_unsupported_reason,
    shared_prompt_prefill,
)
from trl_igrpo.testing import cpu_training_kwargs
from trl_igrpo.tied_lora import TiedLoraConfig

ROWS = [
    {"prompt": [{"role": "user", "content": text}], "solution": "7"}
    for text in ("What is 3 + 4?", "Solve 12 x = 144 then add the digits.")
]
BATCH = [row for row in ROWS for _ in range(2)]  # G = 2 consecutive copies per prompt

#: id -> (IGRPOConfig fields, the model's own generation_config fields, why the prefill steps aside or None).
SETTINGS = {
    "greedy": ({"generation_kwargs": {"do_sample": False}}, {}, None),
    "sampling": ({"temperature": 0.9}, {}, None),
    "num_beams-trl-test": (
        {"generation_kwargs": {"do_sample": True, "top_k": 50, "num_beams": 2, "length_penalty": -0.1}},
        {},
        None,
    ),
    "beam-search": ({"generation_kwargs": {"do_sample": False, "num_beams": 3}}, {}, None),
    "repetition_penalty": ({"repetition_penalty": 1.5}, {}, None),
    "min_new_tokens": ({"generation_kwargs": {"min_new_tokens": 4}}, {}, None),
    "top_k-top_p-min_p": ({"top_k": 8, "top_p": 0.9, "min_p": 0.05}, {}, None),
    "model-generation_config": ({}, {"num_beams": 2, "no_repeat_ngram_size": 2}, None),
    "model-static-cache": ({}, {"cache_implementation": "static"}, "cache_implementation='static'"),
}
MODELS = ("full", "lora", "tied-lora", "4bit-lora")


def _model_and_adapter(kind: str, model_dir: str):
    if kind == "4bit-lora":
        pytest.importorskip("bitsandbytes")
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization, device_map="cpu")
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    adapter = {
        "full": None,
        "lora": LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        "tied-lora": TiedLoraConfig(r=4, init_weights=False),
        "4bit-lora": LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    }[kind]
    return model, adapter


def _trainer(kind: str, model_dir: str, output_dir, config_fields: dict, model_generation: dict) -> IGRPOTrainer:
    model, adapter = _model_and_adapter(kind, model_dir)
    for name, value in model_generation.items():
        setattr(model.generation_config, name, value)
    args = IGRPOConfig(
        output_dir=str(output_dir),
        **cpu_training_kwargs(seed=0),
        per_device_train_batch_size=2,
        steps_per_generation=2,  # generation every 2 micro-steps, accumulation 1: TRL computes old log-probs
        num_generations=2,
        num_drafts=2,
        max_completion_length=4,
        **config_fields,
    )
    return IGRPOTrainer(
        model=model,
        reward_funcs=[varied_reward],
        args=args,
        train_dataset=Dataset.from_list(ROWS * 4),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=adapter,
    )


def _rollout(trainer: IGRPOTrainer, share: bool):
    """One rollout from seed 0, and every generation forward it made: (rows, positions fed, positions of logits)."""
    trainer.args.share_prompt_prefill = share
    forwards = []

    def record(module, args, kwargs, output):
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:  # generation, not log-probs
            forwards.append((*kwargs["input_ids"].shape, output.logits.size(1)))

    policy = _transformers_model(trainer.accelerator.unwrap_model(trainer.model))
    handle = policy.register_forward_hook(record, with_kwargs=True)
    try:
        torch.manual_seed(0)
        trainer.model.train()
        output = trainer._generate_and_score_completions(copy.deepcopy(BATCH))
    finally:
        handle.remove()
    return output, forwards


@pytest.mark.slow
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_prefill_equals_the_plain_path(tiny_model_dir, tmp_path, setting, kind):
    config_fields, model_generation, step_aside = SETTINGS[setting]
    trainer = _trainer(kind, tiny_model_dir, tmp_path, config_fields, model_generation)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    reason = prefill_unsupported_reason(policy, {"generation_config": trainer.generation_config})
    assert reason == step_aside
    if model_generation.get("num_beams"):  # the model's own settings fill what TRL's config leaves unset
        assert trainer.generation_config.num_beams is None

    shared, shared_forwards = _rollout(trainer, share=True)
    plain, plain_forwards = _rollout(trainer, share=False)

    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask"):
        assert torch.equal(shared[key], plain[key]), key
    assert shared["old_per_token_logps"] is not None
    assert torch.equal(shared["old_per_token_logps"], plain["old_per_token_logps"])

    # Stage 1 (4 draft rows) and Stage 2 (4 refinement rows), each row expanded to its beams: the prefill encodes the
    # 2 distinct prompts once each
    rows = 4 * (effective_generation_config(policy, trainer.generation_config).num_beams or 1)
    assert [rows for rows, length, _ in plain_forwards if length > 1] == [rows, rows]
    assert [rows for rows, length, _ in shared_forwards if length > 1] == ([rows, rows] if step_aside else [2, 2])
    assert all(kept == 1 for *_, kept in shared_forwards + plain_forwards)  # never the logits of every position


# ----------------------------------------------------------------------------------------------------------------------
# What TRL refuses (it fails inside the first step): refused at construction; equal at the generate level.
@pytest.mark.parametrize(
    ("generation_kwargs", "message"),
    [
        ({"num_return_sequences": 2}, "num_return_sequences=2"),
        ({"stop_strings": ["the"]}, "stop_strings=\\['the'\\]"),
    ],
)
def test_settings_trl_cannot_use_are_refused_at_construction(tiny_model_dir, tmp_path, generation_kwargs, message):
    with pytest.raises(ValueError, match=message):
        _trainer("full", tiny_model_dir, tmp_path, {"generation_kwargs": generation_kwargs}, {})


def test_the_models_own_num_return_sequences_is_refused_too(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="the model's generation_config"):
        _trainer("full", tiny_model_dir, tmp_path, {}, {"num_return_sequences": 2})


def _batch(tokenizer):
    ids = [tokenizer(text)["input_ids"] for text in ("What is 1 + 2?", "Solve it now please") for _ in range(3)]
    width = max(map(len, ids))
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    return input_ids, torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])


@pytest.mark.parametrize(
    "settings",
    [
        {"num_return_sequences": 2, "do_sample": True},
        {"num_beams": 3, "num_return_sequences": 2},
        {"stop_strings": ["the", "2"], "do_sample": False},
    ],
    ids=["num_return_sequences", "beams-and-return-sequences", "stop_strings"],
)
def test_generate_level_settings_trl_does_not_reach(tiny_model_dir, settings):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    input_ids, mask = _batch(tokenizer)
    config = GenerationConfig(max_new_tokens=6, pad_token_id=tokenizer.pad_token_id, eos_token_id=None, **settings)
    extra = {"tokenizer": tokenizer} if "stop_strings" in settings else {}
    assert prefill_unsupported_reason(model, {"generation_config": config, **extra}) is None
    torch.manual_seed(0)
    plain = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config, **extra)
    rows = []
    model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    torch.manual_seed(0)
    with shared_prompt_prefill(model):
        shared = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config, **extra)
    assert rows[0] == (2, input_ids.size(1) - 1)  # the prefill ran: 2 distinct prompts
    assert torch.equal(plain, shared)


# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trl_train_with_generation_kwargs_with_igrpo_swapped_in(tiny_model_dir, tmp_path):
    """TRL's own ``test_train_with_generation_kwargs`` (tests/test_grpo_trainer.py) with ``IGRPOTrainer``: offline, a
    tiny sequence-classification reward model built from the tiny policy, two plain-text prompts (two steps). It crashed with a
    tensor size mismatch (the prefill's cache was not expanded for the beams)."""
    from transformers import AutoModelForSequenceClassification

    reward_model_dir = tmp_path / "reward-model"
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).save_pretrained(reward_model_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(reward_model_dir)
    dataset = Dataset.from_list([{"prompt": f"The sky is {word}."} for word in ("blue", "grey")])
    training_args = IGRPOConfig(
        output_dir=str(tmp_path / "out"),
        **cpu_training_kwargs(),
        learning_rate=0.1,  # use higher lr because gradients are tiny and default lr can stall updates
        per_device_train_batch_size=3,  # reduce the batch size to reduce memory usage
        num_generations=3,  # reduce the number of generations to reduce memory usage
        max_completion_length=8,  # reduce the completion length to reduce memory usage
        # Pass gen kwargs
        generation_kwargs={"do_sample": True, "top_k": 50, "num_beams": 2, "length_penalty": -0.1},
    )
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=str(reward_model_dir),
        args=training_args,
        train_dataset=dataset,
    )
    assert trainer.args.share_prompt_prefill  # the default path, which crashed

    previous_trainable_params = {n: param.clone() for n, param in trainer.model.named_parameters()}

    trainer.train()

    assert trainer.state.log_history[-1]["train_loss"] is not None

    # Check that the params have changed
    for n, param in previous_trainable_params.items():
        new_param = trainer.model.get_parameter(n)
        assert not torch.equal(param, new_param), f"Parameter {n} has not changed."
