"""Pure iGRPO functions: draft selection, prompt building, the draft-survival check, reasoning stripping."""

import pytest
import torch

from trl_igrpo.igrpo.drafts import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    build_refinement_prompt,
    drafts_missing_from_prompts,
    select_drafts,
    template_placeholders,
)
from trl_igrpo.reasoning.think import strip_reasoning

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


def test_plain_prompt_template():
    assert build_refinement_prompt("Q?", "my draft", template="{prompt}|{draft}") == "Q?|my draft"


def test_conversational_default_appends_the_draft_to_the_last_user_message():
    prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q?"}]
    refined = build_refinement_prompt(prompt, "<think>r</think>d")
    assert refined == [
        prompt[0],
        {"role": "user", "content": DEFAULT_REFINEMENT_TEMPLATE.format(prompt="Q?", draft="<think>r</think>d")},
    ]
    assert prompt[1]["content"] == "Q?"


def test_append_to_user_extends_the_last_text_block_of_typed_content():
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    refined = build_refinement_prompt(prompt, "d", template="{prompt}|{draft}")
    assert refined[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Q?|d"}]
    assert prompt[0]["content"][1]["text"] == "Q?"
    with pytest.raises(ValueError, match="needs a prompt with a user message"):
        build_refinement_prompt([{"role": "system", "content": "s"}], "d")


def test_conversational_assistant_turn_does_not_mutate_input():
    prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q?"}]
    refined = build_refinement_prompt(prompt, "d", conversational_style="assistant_turn")
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
        ("<think>all reasoning, truncated", ""),
        ("reasoning after a pre-filled opener</think> final", "final"),
        ("no reasoning", "no reasoning"),
    ],
)
def test_strip_reasoning_keeps_the_answer(text, expected):
    assert strip_reasoning(text) == expected


def test_template_placeholders():
    assert template_placeholders("{prompt} and {draft} {{literal}}") == {"prompt", "draft"}


def test_drafts_missing_from_prompts_ignores_whitespace_and_unicode_form():
    rendered = ["<|im_start|>user\nQ?\n\nPrior draft:\n<think>\nstep  one\n</think>  4", "user: Q? draft: 4"]
    drafts = ["<think> step one </think>\n4", "<think>lost</think>4"]
    assert drafts_missing_from_prompts(rendered, drafts) == [1]
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert drafts_missing_from_prompts([f"x {composed} y"], [decomposed]) == []
    assert drafts_missing_from_prompts(["anything"], [""]) == []  # an empty draft is trivially present
