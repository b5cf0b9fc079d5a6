"""The warm-started default policy: demonstrations, caching and a short SFT that actually teaches the format."""

import json

import pytest

from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.demo.warm_start import build_warm_started_model, worked_solution
from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward


def _as_completions(texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


def test_worked_solutions_are_well_formed_and_a_slip_is_wrong():
    rows = make_arithmetic_examples(20, seed=3)
    right = [worked_solution(r["question"], r["solution"]) for r in rows]
    slipped = [worked_solution(r["question"], r["solution"], slip=True) for r in rows]
    solutions = [r["solution"] for r in rows]
    assert think_answer_format_reward(_as_completions(right)) == [1.0] * 20
    assert think_answer_format_reward(_as_completions(slipped)) == [1.0] * 20
    assert math_accuracy_reward(_as_completions(right), solution=solutions) == [1.0] * 20
    assert math_accuracy_reward(_as_completions(slipped), solution=solutions) == [0.0] * 20
    assert worked_solution("What is 3 - 4?", "-1", slip=True) == (
        "<think>3 - 4 = -1, then add 1 to get 0</think><answer>\\boxed{0}</answer>"
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [({"sft_steps": -1}, "sft_steps"), ({"batch_size": 0}, "batch_size"), ({"teacher_slip_rate": 1.5}, "slip")],
)
def test_bad_settings_fail_before_building(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_warm_started_model(tmp_path / "m", progress=False, **kwargs)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_short_sft_teaches_the_format_and_the_result_is_cached(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_igrpo.eval.generation import generate_single_pass

    settings = dict(sft_steps=100, batch_size=32, learning_rate=3e-3, refinement_fraction=0.0, progress=False)
    path = build_warm_started_model(tmp_path / "m", **settings)
    stamp = json.loads((tmp_path / "m" / "warm_start.json").read_text())
    assert stamp["settings"]["sft_steps"] == 100
    weights = tmp_path / "m" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert build_warm_started_model(tmp_path / "m", **settings) == path
    assert weights.stat().st_mtime_ns == mtime  # same settings: reused, not retrained

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    prompts = [r["prompt"] for r in make_arithmetic_examples(16, seed=1, max_operand=12)]
    texts = generate_single_pass(model, tokenizer, prompts, max_new_tokens=40)
    # a random tiny model never closes <think>...</think><answer>...</answer>; 100 SFT steps do most of the time
    assert sum(think_answer_format_reward(_as_completions(texts))) >= 12, texts


def test_the_shipped_warm_start_is_the_one_the_default_recipe_builds(tmp_path):
    """`make warm-start` must be re-run whenever the recipe changes: the shipped stamp records its settings."""
    from trl_igrpo.demo.warm_start import SHIPPED_WARM_START, recipe_settings

    stamp = json.loads((SHIPPED_WARM_START / "warm_start.json").read_text())
    assert stamp["settings"] == recipe_settings(), (
        "the recipe changed: rebuild the shipped copy with `make warm-start`"
    )
    # a default build reuses the shipped checkpoint instead of training: instant, and the same weights
    path = build_warm_started_model(tmp_path / "demo-model", progress=False)
    shipped = (SHIPPED_WARM_START / "model.safetensors").read_bytes()
    assert (tmp_path / "demo-model" / "model.safetensors").read_bytes() == shipped
    assert path == str(tmp_path / "demo-model")
