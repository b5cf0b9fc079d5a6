"""Every invalid IGRPOConfig fails at construction with a message naming the field."""

import pytest

from trl_igrpo import IGRPOConfig

BASE = dict(output_dir="unused", use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=4)


def make(**overrides):
    return IGRPOConfig(**{**BASE, **overrides})


def test_paper_defaults():
    config = make()
    assert (config.num_drafts, config.num_generations, config.loss_type, config.beta, config.temperature) == (
        4,
        4,
        "grpo",
        0.0,
        0.7,
    )
    assert config.draft_selection == "best"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(num_drafts=0), "num_drafts"),
        (dict(num_drafts=-2), "num_drafts"),
        (dict(max_draft_length=0), "max_draft_length"),
        (dict(draft_selection="worst"), "draft_selection"),
        (dict(conversational_draft_style="sideways"), "conversational_draft_style"),
        (dict(refinement_template="{prompt} only"), "refinement_template"),
        (dict(refinement_template="{prompt} {draft} {extra}"), "refinement_template"),
        (dict(refinement_template="{prompt {draft}"), "refinement_template"),
        (dict(refinement_instruction="  "), "refinement_instruction"),
        (dict(loss_type="ppo"), "loss_type"),
        (dict(per_device_train_batch_size=3, num_generations=2), "num_generations"),
        (dict(per_device_train_batch_size=2, num_generations=4, gradient_accumulation_steps=1), "num_generations"),
    ],
)
def test_invalid_fields(overrides, field):
    with pytest.raises(ValueError, match=field):
        make(**overrides)


def test_steps_per_generation_can_complete_groups():
    # 2 per device x 2 steps per generation = 4 completions = whole groups of 4.
    config = make(per_device_train_batch_size=2, num_generations=4, steps_per_generation=2)
    assert config.generation_batch_size == 4


def test_vllm_fields_default_to_auto_sync_and_accept_json_engine_kwargs():
    config = make()
    assert config.vllm_weight_sync == "auto" and config.vllm_weight_sync_dir is None
    assert config.vllm_engine_kwargs is None
    config = make(vllm_engine_kwargs='{"quantization": "fp8", "dtype": "float32"}')  # as given on the command line
    assert config.vllm_engine_kwargs == {"quantization": "fp8", "dtype": "float32"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"vllm_weight_sync": "gloo"}, "vllm_weight_sync must be one of"),
        ({"vllm_engine_kwargs": "{not json"}, "vllm_engine_kwargs"),
        ({"vllm_engine_kwargs": ["fp8"]}, "vllm_engine_kwargs must be a dict"),
    ],
)
def test_bad_vllm_fields_fail_at_construction(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)
