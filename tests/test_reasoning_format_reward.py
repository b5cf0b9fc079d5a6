"""Mode-aware think-format reward: edge-case tables per mode, mode resolution, TRL signature, GRPO end to end."""

from __future__ import annotations

import pytest

from trl_igrpo.rewards.reasoning_format import (
    ReasoningModeConflictError,
    make_reasoning_format_reward,
    reasoning_format_reward,
    reasoning_format_score,
)
from trl_igrpo.testing import cpu_training_kwargs

# (completion, expected score) in reasoning-ON mode: exactly one well-formed, non-empty think block, then an answer.
ON_CASES = [
    ("<think>2 plus 3 is 5</think>The answer is 5.", 1.0),
    ("<think>\nstep\n</think>\n\\boxed{5}", 1.0),
    ("  \n<think>step</think> 5", 1.0),  # leading whitespace is fine
    ("<think>step</think><answer>5</answer>", 1.0),  # other tags after the block are the answer
    ("<think>a < b and b > c</think>so 5", 1.0),  # angle brackets that are not think tags
    ("The answer is 5.", 0.0),  # no reasoning
    ("", 0.0),  # empty
    ("<think>step</think>", 0.0),  # no answer after the block
    ("<think>step</think>   \n", 0.0),  # whitespace-only answer
    ("<think></think>5", 0.0),  # empty reasoning
    ("<think>  \n </think>5", 0.0),  # whitespace-only reasoning
    ("<think>step 5", 0.0),  # unclosed
    ("step</think>5", 0.0),  # close without open
    ("</think>step<think>5", 0.0),  # wrong order
    ("<think>a<think>b</think>c</think>5", 0.0),  # nested
    ("<think>a</think>b<think>c</think>5", 0.0),  # duplicated blocks
    ("<think>a</think>5</think>", 0.0),  # extra close tag
    ("Sure! <think>step</think>5", 0.0),  # text before the block
    ("<Think>step</Think>5", 0.0),  # wrong case
    ("<thinking>step</thinking>5", 0.0),  # look-alike tags
    ("<think >step</think>5", 0.0),  # malformed tag
]

# ... in reasoning-OFF mode: no reasoning, but one empty think block at the start is accepted.
OFF_CASES = [
    ("The answer is 5.", 1.0),
    ("\\boxed{5}", 1.0),
    ("<think></think>The answer is 5.", 1.0),  # pre-filled empty block
    ("<think>\n</think>\n5", 1.0),
    ("  <think> \n\n </think>5", 1.0),
    ("a < b, so 5", 1.0),  # angle brackets that are not think tags
    ("", 0.0),  # empty
    ("   \n", 0.0),  # whitespace only
    ("<think></think>", 0.0),  # empty block, no answer
    ("<think>2 plus 3</think>5", 0.0),  # reasoning
    ("<think>2 plus 3", 0.0),  # unclosed reasoning
    ("5 <think></think>", 0.0),  # empty block after text
    ("<think></think>5<think></think>", 0.0),  # duplicated empty blocks
    ("<think></think><think></think>5", 0.0),  # duplicated empty blocks at the start
    ("<think><think></think></think>5", 0.0),  # nested
    ("5</think>", 0.0),  # stray close tag
    ("<think>5", 0.0),  # stray open tag
    ("<thinking>hmm</thinking>5", 0.0),  # look-alike tags
    ("The tag <think> opens reasoning.", 0.0),  # any think tag outside the allowed empty block
    ("<THINK></THINK>5", 0.0),  # wrong case
]


@pytest.mark.parametrize(("completion", "expected"), ON_CASES)
def test_on_mode_table(completion, expected):
    assert reasoning_format_score(completion, "on") == expected


@pytest.mark.parametrize(("completion", "expected"), OFF_CASES)
def test_off_mode_table(completion, expected):
    assert reasoning_format_score(completion, "off") == expected


def test_tables_are_large_and_balanced():
    for cases in (ON_CASES, OFF_CASES):
        assert len(cases) >= 15 and {score for _, score in cases} == {0.0, 1.0}


def test_options_empty_reasoning_and_prefilled_think():
    assert reasoning_format_score("<think></think>5", "on", allow_empty_reasoning=True) == 1.0
    # Nemotron 3 ON prompts end with "<think>\n": the completion starts inside the block.
    assert reasoning_format_score("step</think>5", "on", think_prefilled=True) == 1.0
    assert reasoning_format_score("<think>step</think>5", "on", think_prefilled=True) == 0.0  # a second block
    assert reasoning_format_score("step 5", "on", think_prefilled=True) == 0.0  # never closed


def test_trl_signature_plain_and_conversational_completions_with_a_mode_column():
    completions = [
        "<think>r</think>5",
        "5",
        [{"role": "assistant", "content": "<think>r</think>5"}],
        [{"role": "assistant", "content": "5"}],
    ]
    modes = ["on", "off", "off", True]
    assert reasoning_format_reward(completions, prompts=["q"] * 4, reasoning_mode=modes, solution=["5"] * 4) == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]
    assert reasoning_format_reward.__name__ == "reasoning_format_reward"


def test_mode_from_system_prompt_or_chat_template_kwargs():
    prompts = [
        [{"role": "system", "content": "detailed thinking on\n\nBe brief."}, {"role": "user", "content": "q"}],
        [{"role": "system", "content": "detailed thinking off"}, {"role": "user", "content": "q"}],
    ]
    assert reasoning_format_reward(["<think>r</think>5", "<think>r</think>5"], prompts=prompts) == [1.0, 0.0]
    kwargs = [{"enable_thinking": False}, {"enable_thinking": True}]
    assert reasoning_format_reward(["5", "5"], prompts=["q", "q"], chat_template_kwargs=kwargs) == [1.0, 0.0]


def test_fixed_mode_factory_and_errors():
    on = make_reasoning_format_reward("on")
    assert on.__name__ == "reasoning_format_reward_on"
    assert on(["<think>r</think>5", "5"], reasoning_mode=["on", "on"]) == [1.0, 0.0]  # agreeing sources are fine
    with pytest.raises(ValueError, match="No reasoning mode for row 0"):
        reasoning_format_reward(["5"], prompts=["plain prompt"])
    with pytest.raises(ValueError, match="`reasoning_mode`"):
        reasoning_format_reward(["5"], reasoning_mode=["maybe"])
    with pytest.raises(ValueError, match="`mode`"):
        make_reasoning_format_reward("sometimes")
    with pytest.raises(ValueError, match="has 1 values for 2"):
        reasoning_format_reward(["5", "6"], reasoning_mode=["on"])


OFF_SYSTEM = [{"role": "system", "content": "detailed thinking off"}, {"role": "user", "content": "q"}]
ON_SYSTEM = [{"role": "system", "content": "detailed thinking on"}, {"role": "user", "content": "q"}]


@pytest.mark.parametrize(
    "reward, kwargs, sources",
    [
        # a reward fixed to ON on a "detailed thinking off" prompt
        (make_reasoning_format_reward("on"), {"prompts": [ON_SYSTEM, OFF_SYSTEM]}, ("fixed mode='on'", "'off'")),
        # a reasoning_mode column contradicting the system prompt
        (reasoning_format_reward, {"prompts": [ON_SYSTEM, ON_SYSTEM], "reasoning_mode": ["on", "off"]},
         ("column `reasoning_mode` says 'off'", "'detailed thinking on' says 'on'")),
        # a per-row enable_thinking contradicting the column
        (reasoning_format_reward, {"reasoning_mode": ["on", "on"],
                                   "chat_template_kwargs": [{"enable_thinking": True}, {"enable_thinking": False}]},
         ("enable_thinking=False says 'off'",)),
    ],
)  # fmt: skip
def test_contradicting_modes_of_a_row_raise_naming_the_row_and_every_source(reward, kwargs, sources):
    with pytest.raises(ReasoningModeConflictError, match="Row 1 states contradicting reasoning modes") as error:
        reward(["<think>r</think>5", "5"], **kwargs)
    for source in sources:
        assert source in str(error.value)


def test_the_dataset_check_flags_conflicts_before_training_including_the_trainers_enable_thinking():
    rows = [{"prompt": ON_SYSTEM, "reasoning_mode": "on"}, {"prompt": OFF_SYSTEM, "reasoning_mode": "off"}]
    reasoning_format_reward.check_dataset(rows)  # per-row modes that agree: fine
    with pytest.raises(ReasoningModeConflictError, match="Row 1.*fixed mode='on'"):
        make_reasoning_format_reward("on").check_dataset(rows)
    with pytest.raises(ReasoningModeConflictError, match="Row 0.*the trainer's enable_thinking=False says 'off'"):
        reasoning_format_reward.check_dataset(rows, chat_template_kwargs={"enable_thinking": False})
    bad_column = [{"prompt": OFF_SYSTEM, "reasoning_mode": "on"}]
    with pytest.raises(ReasoningModeConflictError, match="Row 0"):
        reasoning_format_reward.check_dataset(bad_column)


def test_truncated_completions_get_the_truncated_score():
    reward = make_reasoning_format_reward("on", eos_token_ids=[2], truncated_score=1.0)
    scores = reward(["<think>unfinished", "<think>r</think>5", "5"], completion_ids=[[7, 8], [7, 2], [5, 2]])
    assert scores == [1.0, 1.0, 0.0]
    assert make_reasoning_format_reward("on", eos_token_ids=[2])(["<think>x"], completion_ids=[[7]]) == [None]


@pytest.mark.slow
def test_grpo_trains_with_mode_carrying_prompts_and_the_format_reward(tiny_model_dir, tmp_path):
    """Per-example modes reach the prompts (system-prompt style) and the reward (column); parameters change."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from trl_igrpo.reasoning import set_system_reasoning_mode

    rows = []
    for i in range(4):
        mode = "on" if i % 2 == 0 else "off"
        prompt = set_system_reasoning_mode([{"role": "user", "content": f"What is {i} + {i}?"}], mode)
        rows.append({"prompt": prompt, "reasoning_mode": mode})
    seen = []

    def spy(completions, prompts, reasoning_mode, **kwargs):
        seen.extend(zip([p[0]["content"] for p in prompts], reasoning_mode))
        return [0.0] * len(completions)

    # Reward 1 for ON rows that happen to start with <think> is unlikely on a random model; add a length shaping
    # term so the group advantages are non-zero and parameters move.
    def length(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-2,
        **cpu_training_kwargs(),
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reasoning_format_reward, spy, length],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()
    assert seen and all(system == f"detailed thinking {mode}" for system, mode in seen)
    assert "rewards/reasoning_format_reward/mean" in trainer.state.log_history[0]
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach().cpu())]
    assert changed


@pytest.mark.slow
def test_igrpo_carries_the_mode_from_drafts_to_refinements(tiny_model_dir, tmp_path):
    """iGRPO: both stages see mode-carrying prompts; Stage-2 prompts keep the mode system message."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.reasoning import reasoning_mode_from_messages, set_system_reasoning_mode

    rows = []
    for i in range(4):
        mode = "on" if i % 2 == 0 else "off"
        rows.append(
            {
                "prompt": set_system_reasoning_mode([{"role": "user", "content": f"What is {i} + {i}?"}], mode),
                "reasoning_mode": mode,
            }
        )
    stages = {"draft": [], "refine": []}

    def spy(completions, prompts, reasoning_mode, **kwargs):
        stage = "refine" if "draft" in kwargs else "draft"
        stages[stage].extend(zip([reasoning_mode_from_messages(p) for p in prompts], reasoning_mode))
        return [float(len(c[0]["content"])) for c in completions]  # non-zero advantages so parameters move

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = IGRPOConfig(
        output_dir=str(tmp_path),
        num_drafts=2,
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        learning_rate=1e-2,
        **cpu_training_kwargs(),
    )
    trainer = IGRPOTrainer(
        model=model, reward_funcs=[reasoning_format_reward, spy], args=args, train_dataset=Dataset.from_list(rows)
    )
    trainer.train()
    assert stages["draft"] and stages["refine"]
    assert all(prompt_mode == column_mode for prompt_mode, column_mode in stages["draft"] + stages["refine"])
    assert "rewards/reasoning_format_reward/mean" in trainer.state.log_history[0]
    assert any(not torch.equal(before[n], p.detach().cpu()) for n, p in trainer.model.named_parameters())
