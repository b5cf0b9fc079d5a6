"""Rewards and gold answers (issue 25, items 6 and 9): unreadable gold answers are unscorable (None) and counted, not
wrong; mostly unreadable ones stop a run at construction; every reward output is validated per function; package
reward names resolve to the package's functions; greedy decoding and contradicting reasoning modes are refused.

Pure checks first (no model), then the same cases through real trainers.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch
from datasets import Dataset

from trl_igrpo import CurriculumGRPOConfig, CurriculumGRPOTrainer, IGRPOConfig, IGRPOTrainer
from trl_igrpo.core.checks import RewardOutputError, check_reward_output, first_rows
from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.rewards import (
    REWARD_FUNCS,
    MathAccuracyReward,
    ReasoningModeConflictError,
    UnreadableGoldError,
    make_reasoning_format_reward,
    math_accuracy_reward,
    resolve_reward_funcs,
    think_answer_format_reward,
)
from trl_igrpo.testing import cpu_training_kwargs


@pytest.fixture(scope="module")
def in_process():
    return MathAccuracyReward(num_workers=0)


# ------------------------------------------------------------------------------------------------------- gold answers
def test_unreadable_golds_score_none_not_zero(in_process):
    golds = [None, "see the worked solution", "The answer is 5", "N/A", "", "TODO", "\\frac{1}{", "5"]
    # before: None was read as the text "None" (N*o*n*e) and prose as a product of letters: every one scored 0.0
    assert in_process(["\\boxed{5}"] * len(golds), golds) == [None] * 7 + [1.0]
    assert math_accuracy_reward(["\\boxed{5}", "\\boxed{5}"], [None, "The answer is 5"]) == [None, None]  # workers


def test_each_unreadable_gold_gets_its_reason(in_process):
    reasons = in_process.gold_problems([None, "N/A", "see the textbook", "#### 72", "}{", ["5"], True, "5", 7])
    assert reasons[0] == "it is missing (None)" and "placeholder" in reasons[1]
    assert "prose" in reasons[2] and "'see'" in reasons[2] and "GSM8K" in reasons[3]
    assert reasons[4] == "math-verify cannot parse it" and "list" in reasons[5] and "boolean" in reasons[6]
    assert reasons[7:] == [None, None]


@pytest.mark.parametrize(
    "gold, completion",
    [
        (5, "\\boxed{5}"),  # numbers are read as their text
        (142.0, "\\boxed{142}"),
        ("5.", "\\boxed{5}"),  # a sentence's period is not part of the answer
        ("5", "\\boxed{5.}"),
        ("5 inches", "\\boxed{5}"),  # math-verify's own unit and connective handling is kept
        ("2 and 3", "\\boxed{2, 3}"),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}"),
        ("The answer is $5$", "\\boxed{5}"),  # an anchored final answer inside prose is read
    ],
)
def test_readable_golds_still_grade(in_process, gold, completion):
    assert in_process([completion], [gold]) == [1.0]


def test_a_solution_column_other_than_solution_is_the_one_read(in_process):
    reward = MathAccuracyReward(num_workers=0, solution_column="answer")
    assert reward(["\\boxed{5}"], solution=["7"], answer=["5"]) == [1.0]


def test_the_dataset_check_stops_mostly_unreadable_golds_and_names_column_rows_and_fix(in_process, caplog):
    rows = [{"prompt": "p", "solution": gold} for gold in ["see the worked solution", "N/A", None, "4"]]
    with pytest.raises(UnreadableGoldError) as error:
        in_process.check_dataset(rows)
    message = str(error.value)
    for fragment in ("3 of the first 4", "'solution' column", "row 0: 'see the worked solution'", "row 2: 'None'",
                     "solution_column=", "max_unreadable_gold_frac=0.5"):  # fmt: skip
        assert fragment in message, fragment
    with caplog.at_level(logging.WARNING, logger="trl_igrpo.rewards.math"):
        in_process.check_dataset(rows[1:2] + [{"prompt": "p", "solution": "4"}] * 3)  # 25%: tolerated, logged
    assert "1 of the first 4" in caplog.text and "unscorable_frac" in caplog.text
    with pytest.raises(UnreadableGoldError, match="1 of the first 4"):
        MathAccuracyReward(num_workers=0, max_unreadable_gold_frac=0.0).check_dataset(rows[1:2] + rows[3:] * 3)
    with pytest.raises(UnreadableGoldError, match=r"'solution' column, which the training data does not have"):
        in_process.check_dataset([{"prompt": "p", "answer": "4"}])
    with pytest.raises(ValueError, match="max_unreadable_gold_frac"):
        MathAccuracyReward(max_unreadable_gold_frac=1.5)


# ----------------------------------------------------------------------------------------------------- reward outputs
@pytest.mark.parametrize(
    "output, fragments",
    [
        (["1.0", "0.0"], ("returned '1.0' (str) for completion 0", "float(x)")),
        ([[1.0, 0.0], [0.5, 0.5]], ("[1.0, 0.0] (list) for completion 0", "a list per completion")),
        ("1.0", ("returned '1.0' (str);",)),
        ([1.0], ("returned 1 values for 2 completions",)),
        (torch.ones(2, 2), ("an array of shape (2, 2)",)),
        ([1.0, {"score": 1}], ("for completion 1", "a list per completion")),
    ],
)
def test_bad_reward_outputs_name_the_function_and_what_it_returned(output, fragments):
    with pytest.raises(RewardOutputError) as error:
        check_reward_output(output, "my_reward", 2)
    assert str(error.value).startswith("Reward function 'my_reward' returned")
    assert "one float (or None) per completion" in str(error.value)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_good_reward_outputs_become_floats_or_none():
    values = [1, True, None, math.nan, np.float32(0.5), torch.tensor(2.0), np.int64(3)]
    assert check_reward_output(values, "r", 7) == [1.0, 1.0, None, None, 0.5, 2.0, 3.0]
    assert check_reward_output(torch.tensor([0.5, 1.0]), "r", 2) == [0.5, 1.0]
    assert check_reward_output(np.array([0.0, 1.0]), "r", 2) == [0.0, 1.0]


def test_first_rows_reads_map_style_and_iterable_datasets():
    data = Dataset.from_list([{"prompt": str(i)} for i in range(5)])
    assert [row["prompt"] for row in first_rows(data, 3)] == ["0", "1", "2"]
    assert [row["prompt"] for row in first_rows(data.to_iterable_dataset(), 2)] == ["0", "1"]
    assert first_rows(None, 3) == [] and first_rows(object(), 3) == []


# ------------------------------------------------------------------------------------------------------ reward names
def test_reward_names_resolve_to_the_package_functions(tmp_path):
    resolved = resolve_reward_funcs(
        ["math_accuracy", "think_answer_format_reward", "trl_igrpo.rewards.math_accuracy_reward", len]
    )
    assert resolved[:3] == [math_accuracy_reward, think_answer_format_reward, math_accuracy_reward]
    assert resolved[3] is len
    assert resolve_reward_funcs("reasoning_format_on") is REWARD_FUNCS["reasoning_format_on"]
    assert resolve_reward_funcs([str(tmp_path)]) == [str(tmp_path)]  # a local directory: a reward model for TRL
    with pytest.raises(ValueError) as error:
        resolve_reward_funcs(["math_acuracy"])  # a typo, offline: no such model either
    message = str(error.value)
    assert "'math_acuracy' is not one of the package's reward names (math_accuracy, " in message
    assert "loading it from the Hub failed" in message


# ---------------------------------------------------------------------------------------------------- through trainers
def _args(tmp_path, **overrides):
    settings = dict(per_device_train_batch_size=4, num_drafts=2, num_generations=2, max_completion_length=8)
    return IGRPOConfig(output_dir=str(tmp_path), **cpu_training_kwargs(max_steps=1), **{**settings, **overrides})


def _rows(n=8, **columns):
    rows = make_arithmetic_examples(n, seed=0)
    for name, values in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    return rows


def test_a_trainer_takes_package_reward_names(tiny_model_dir, tmp_path):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=["math_accuracy", "think_answer_format"],
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(_rows()),
    )
    assert trainer.reward_funcs == [math_accuracy_reward, think_answer_format_reward]
    assert trainer.reward_func_names == ["math_accuracy_reward", "think_answer_format_reward"]
    with pytest.raises(ValueError, match="'math_acuracy' is not one of the package's reward names"):
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=["math_acuracy"],
            args=_args(tmp_path),
            train_dataset=Dataset.from_list(_rows()),
        )


def test_mostly_unreadable_golds_stop_the_trainer_at_construction(tiny_model_dir, tmp_path):
    golds = ["see the worked solution"] * 5 + ["3", "4", "5"]
    with pytest.raises(UnreadableGoldError, match=r"5 of the first 8 gold answers in the 'solution' column"):
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[math_accuracy_reward],
            args=_args(tmp_path),
            train_dataset=Dataset.from_list(_rows(solution=golds)),
        )


def test_contradicting_reasoning_modes_stop_the_trainer_at_construction(tiny_model_dir, tmp_path):
    from trl_igrpo.reasoning import set_system_reasoning_mode

    rows = [
        {"prompt": set_system_reasoning_mode(row["prompt"], "off"), "solution": row["solution"]} for row in _rows()
    ]
    with pytest.raises(ReasoningModeConflictError, match="Row 0.*fixed mode='on'.*'detailed thinking off'"):
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[make_reasoning_format_reward(mode="on")],
            args=_args(tmp_path),
            train_dataset=Dataset.from_list(rows),
        )


def test_reward_outputs_are_checked_where_trl_computes_rewards(tiny_model_dir, tmp_path):
    def labels_reward(completions, **kwargs):
        return ["correct"] * len(completions)

    async def per_token_reward(completions, **kwargs):
        return [[1.0, 0.0] for _ in completions]

    args = CurriculumGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2, **cpu_training_kwargs()
    )
    inputs = [{"prompt": "p", "solution": "5"}] * 2
    for func, fragment in ((labels_reward, "'correct' (str)"), (per_token_reward, "[1.0, 0.0] (list)")):
        trainer = CurriculumGRPOTrainer(
            model=tiny_model_dir, reward_funcs=[func], args=args, train_dataset=Dataset.from_list(_rows())
        )
        with pytest.raises(
            RewardOutputError, match=re.escape(f"Reward function '{func.__name__}' returned {fragment}")
        ):
            trainer._calculate_rewards(inputs, ["p", "p"], ["a", "b"], [[1], [2]])
        assert trainer.reward_funcs == [func]  # the user's functions are back in place


@pytest.mark.parametrize("config_cls", [IGRPOConfig, CurriculumGRPOConfig])
@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_greedy_temperature_is_refused_with_the_reason(tmp_path, config_cls, temperature):
    with pytest.raises(ValueError) as error:
        config_cls(output_dir=str(tmp_path), temperature=temperature, **cpu_training_kwargs())
    message = str(error.value)
    assert f"temperature must be > 0, got {temperature}" in message
    assert "identical completions" in message and "trl-igrpo eval --temperature 0" in message
    assert "do_sample" not in message
    config_cls(output_dir=str(tmp_path), temperature=0.1, **cpu_training_kwargs())


@pytest.mark.slow
def test_unreadable_golds_are_counted_in_unscorable_frac_during_training(tiny_model_dir, tmp_path):
    """One of four golds is prose: tolerated at construction, and exactly a quarter of the completions of every step
    are unscorable (every step draws all four prompts), logged overall and for the math reward."""
    rows = _rows(4, solution=["The answer is 5", "3", "4", "5"])
    args = CurriculumGRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=2,
        max_completion_length=8,
        **cpu_training_kwargs(max_steps=1),
    )
    trainer = CurriculumGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[MathAccuracyReward(num_workers=1)],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "rewards/unscorable_frac" in entry)
    assert logged["rewards/unscorable_frac"] == 0.25
    assert logged["rewards/math_accuracy_reward/unscorable_frac"] == 0.25


def test_offline_rpo_scoring_checks_reward_outputs_too():
    from trl_igrpo.rpo.explicit_rewards import score_completions

    def labels(completions, **kwargs):
        return ["1.0" for _ in completions]  # float("1.0") would have passed silently

    with pytest.raises(RewardOutputError, match="Reward function 'labels' returned '1.0' \\(str\\)"):
        score_completions([labels], ["p", "q"], ["a", "b"])
    assert score_completions([lambda completions, **kw: [1, None]], ["p", "q"], ["a", "b"])[0] == 1.0
