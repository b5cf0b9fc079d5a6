"""Pure iGRPO functions: draft selection, reward combination, prompt building, think stripping."""

import pytest
import torch

from trl_igrpo.igrpo_utils import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    build_refinement_prompt,
    combine_reward_columns,
    select_drafts,
    strip_think,
    template_placeholders,
)

nan = float("nan")


def test_best_is_argmax_with_first_index_on_ties():
    scores = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.5, 3.0, 3.0]])
    assert select_drafts(scores).tolist() == [1, 0, 1]


def test_all_drafts_failed_still_picks_a_draft():
    assert select_drafts(torch.zeros(2, 4)).tolist() == [0, 0]
    assert select_drafts(torch.tensor([[-1.0, -0.5, -2.0]])).tolist() == [1]


def test_unscorable_drafts_rank_last():
    assert select_drafts(torch.tensor([[nan, 0.0, nan]])).tolist() == [1]
    assert select_drafts([[None, -3.0], [None, None]]).tolist() == [1, 0]


def test_random_selection_is_seeded_and_in_range():
    scores = torch.zeros(200, 4)
    a = select_drafts(scores, "random", generator=torch.Generator().manual_seed(0))
    b = select_drafts(scores, "random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and set(a.tolist()) == {0, 1, 2, 3}


def test_selection_errors():
    with pytest.raises(ValueError, match="strategy"):
        select_drafts(torch.zeros(1, 2), "worst")
    with pytest.raises(ValueError, match="num_drafts"):
        select_drafts(torch.zeros(3))


def test_combine_reward_columns_weighted_nan_aware():
    rewards = torch.tensor([[1.0, 1.0], [1.0, nan], [nan, nan], [0.0, 1.0]])
    combined = combine_reward_columns(rewards, torch.tensor([2.0, 0.5]))
    assert combined[:2].tolist() == [2.5, 2.0] and torch.isnan(combined[2]) and combined[3].item() == 0.5


def test_plain_prompt_template():
    assert build_refinement_prompt("Q?", "my draft", template="{prompt}|{draft}") == "Q?|my draft"


def test_conversational_assistant_turn_does_not_mutate_input():
    prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q?"}]
    refined = build_refinement_prompt(prompt, "d")
    assert refined == prompt + [
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": DEFAULT_REFINEMENT_INSTRUCTION},
    ]
    assert len(prompt) == 2


def test_conversational_append_to_user():
    prompt = [{"role": "user", "content": "Q?"}]
    refined = build_refinement_prompt(
        prompt, "d", template="{prompt} [draft: {draft}]", conversational_style="append_to_user"
    )
    assert refined == [{"role": "user", "content": "Q? [draft: d]"}] and prompt[0]["content"] == "Q?"
    with pytest.raises(ValueError, match="conversational_style"):
        build_refinement_prompt(prompt, "d", conversational_style="other")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>reason</think><answer>4</answer>", "<answer>4</answer>"),
        ("<think>a</think>\n<think>b</think> final", "final"),
        ("answer first <think>unclosed reasoning", "answer first"),
        ("no reasoning", "no reasoning"),
    ],
)
def test_strip_think(text, expected):
    assert strip_think(text) == expected


def test_template_placeholders():
    assert template_placeholders("{prompt} and {draft} {{literal}}") == {"prompt", "draft"}
