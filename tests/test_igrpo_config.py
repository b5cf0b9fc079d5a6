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
