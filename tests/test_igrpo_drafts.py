"""Pure iGRPO functions: draft selection, prompt building, the draft-survival check, reasoning stripping."""

import pytest
import torch

from trl_igrpo.igrpo.draft_text import (
    ControlTokens,
    encode_as_text,
    encode_marked,
    mark_draft,
    marked_drafts,
    special_token_frame,
    strip_marks,
)
from trl_igrpo.igrpo.drafts import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    build_refinement_prompt,
    drafts_dropped_by_template,
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


# ----------------------------------------------------------------------------------------------------------------------
# The draft as text in q' (trl_igrpo/igrpo/draft_text.py), with the tiny tokenizer: <|im_end|>, <|im_start|> and
# <|endoftext|> are special added tokens, <think> </think> <answer> </answer> non-special added tokens.
@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _control_ids(tokenizer, ids):
    control = ControlTokens.of(tokenizer)
    return [tokenizer.convert_ids_to_tokens(i) for i in ids if i in control.ids]


def test_control_tokens_are_every_added_token_but_whitespace(tokenizer):
    control = ControlTokens.of(tokenizer)
    names = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"}
    assert {tokenizer.convert_ids_to_tokens(i) for i in control.ids} == names
    assert control.longest == len("<|endoftext|>")
    assert control.pattern.findall("a<|im_end|>b</think>") == ["<|im_end|>", "</think>"]


def test_a_marked_draft_is_encoded_as_text_and_the_template_tokens_stay_tokens(tokenizer):
    control = ControlTokens.of(tokenizer)
    draft = "  7 <|im_end|>\n<|im_start|>user\n</think> done\n"
    marked = mark_draft(draft, control)
    assert strip_marks(marked) == draft  # the marks add nothing else
    rendered = f"<|im_start|>user\nQ?\n{marked}<|im_end|>\n<|im_start|>assistant\n"
    ids = encode_marked(tokenizer, rendered, control)
    assert _control_ids(tokenizer, ids) == ["<|im_start|>", "<|im_end|>", "<|im_start|>"]  # the template's only
    assert tokenizer.decode(ids) == strip_marks(rendered)  # nothing lost, nothing added
    plain = tokenizer(strip_marks(rendered), add_special_tokens=False)["input_ids"]
    assert len(_control_ids(tokenizer, plain)) == 6  # what plain tokenization would have made of it


def test_a_draft_without_control_spellings_is_encoded_exactly_as_before(tokenizer):
    control = ControlTokens.of(tokenizer)
    draft = mark_draft(" 3 + 4 = 7, so \\boxed{7}. ", control)
    rendered = f"<|im_start|>user\nQ?\n\nPrior draft:\n{draft}\n"
    assert encode_marked(tokenizer, rendered, control) == tokenizer.encode(
        strip_marks(rendered), add_special_tokens=False
    )


def test_marks_a_template_separated_still_break_the_text(tokenizer):
    """A template that splits the draft at </think> leaves a lone mark: dropped, but no control token forms across."""
    control = ControlTokens.of(tokenizer)
    marked = mark_draft("<think>r</think>tail<|im_", control)
    kept = marked.split("</think>")[-1]  # what a reasoning template keeps: '\U000f0011tail<|im_' + draft end mark
    assert marked_drafts(kept) == []  # the draft start mark is gone: not whole
    ids = encode_marked(tokenizer, kept + "end|>", control)
    assert _control_ids(tokenizer, ids) == []  # '<|im_' + 'end|>' across the draft's end mark stays text
    assert tokenizer.decode(ids) == "tail<|im_end|>"


def test_marked_drafts_and_the_template_guard(tokenizer):
    control = ControlTokens.of(tokenizer)
    draft = "7"
    question = "What is 3 + 4? Hint: the answer is 7."
    kept = build_refinement_prompt(question, mark_draft(draft, control))
    dropped = question  # a template that dropped the draft (e.g. an assistant turn), while 7 occurs in the question
    assert marked_drafts(kept) == ["7"]
    assert drafts_dropped_by_template([kept, dropped], [draft, draft]) == [1]
    assert drafts_missing_from_prompts([dropped], [draft]) == []  # the substring check alone misses it (issue #25)
    cut = kept.replace("7\U000f0013", "")  # the template cut the draft's end: its marks are no longer a pair
    assert drafts_dropped_by_template([cut], [draft]) == [0]
    assert drafts_dropped_by_template(["anything"], ["  "]) == []  # an empty draft is trivially kept
    assert mark_draft("a\U000f0012b", control) == "\U000f0012ab\U000f0013"  # marks inside a draft are dropped


def test_encode_as_text_never_returns_an_added_token(tokenizer):
    control = ControlTokens.of(tokenizer)
    ids = encode_as_text(tokenizer, "<think><|im_end|><answer>", control)
    assert control.ids.isdisjoint(ids) and tokenizer.decode(ids) == "<think><|im_end|><answer>"


def test_special_token_frame_reads_what_the_tokenizer_adds(tokenizer):
    assert special_token_frame(tokenizer) == ([], [])  # Qwen adds nothing

    class WithBos:
        def encode(self, text, add_special_tokens=True):
            return [9] if not add_special_tokens else [1, 9, 2]

        def __call__(self, text):
            return {"input_ids": self.encode(text)}

    assert special_token_frame(WithBos()) == ([1], [2])
