"""Pure functions of iGRPO for agents: the transcript, q' for a trajectory, the guard's pieces, per-trajectory counts."""

import pytest
import torch

from trl_igrpo.igrpo.trajectories import (
    DEFAULT_TRAJECTORY_TEMPLATE,
    TrajectoryDraft,
    build_trajectory_prompt,
    count_tool_calls,
    missing_trajectory_pieces,
    render_transcript,
    trajectory_pieces,
    trajectory_token_counts,
)

CALL = {"type": "function", "function": {"name": "multiply", "arguments": {"a": 4817, "b": 293}}}
TRAJECTORY = [
    {"role": "assistant", "content": "I will use the calculator.", "reasoning_content": "too long to do by hand",
     "tool_calls": [CALL]},
    {"role": "tool", "name": "multiply", "content": "1411381"},
    {"role": "assistant", "content": "The answer is \\boxed{1411381}."},
]  # fmt: skip
PROMPT = [{"role": "system", "content": "sys"}, {"role": "user", "content": "What is 4817 * 293?"}]


def test_transcript_shows_every_turn_tool_call_and_result_in_order():
    assert render_transcript(TRAJECTORY) == (
        "Assistant (reasoning): too long to do by hand\n"
        "Assistant: I will use the calculator.\n"
        'Tool call: multiply({"a": 4817, "b": 293})\n'
        "Tool result (multiply): 1411381\n"
        "Assistant: The answer is \\boxed{1411381}."
    )


def test_transcript_without_reasoning_drops_reasoning_content_and_think_blocks():
    trajectory = [dict(TRAJECTORY[0], content="<think>hidden</think>I will use the calculator.")] + TRAJECTORY[1:]
    text = render_transcript(trajectory, keep_reasoning=False)
    assert "too long" not in text and "hidden" not in text
    assert text.splitlines()[0] == "Assistant: I will use the calculator."
    assert render_transcript("<think>r</think>42", keep_reasoning=False) == "42"
    assert render_transcript("plain text draft") == "plain text draft"


def test_flat_tool_calls_string_arguments_and_failed_calls():
    trajectory = [
        {"role": "assistant", "content": "", "tool_calls": [{"name": "lookup", "arguments": '{"key": "x"}'}]},
        {"role": "tool", "name": "lookup", "content": "{'error': \"unexpected keyword argument 'c'\"}"},
    ]
    assert render_transcript(trajectory) == (
        'Tool call: lookup({"key": "x"})\nTool result (lookup): {\'error\': "unexpected keyword argument \'c\'"}'
    )
    assert count_tool_calls(trajectory) == 1 and count_tool_calls(TRAJECTORY) == 1 and count_tool_calls("x") == 0


def test_typed_text_blocks_are_joined_and_images_refused():
    trajectory = [
        {"role": "tool", "name": "t", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert render_transcript(trajectory) == "Tool result (t): ab"
    with pytest.raises(ValueError, match="vision-language"):
        render_transcript([{"role": "tool", "name": "t", "content": [{"type": "image", "image": None}]}])
    with pytest.raises(TypeError, match="string or a list of messages"):
        render_transcript(42)  # type: ignore[arg-type]


def test_append_to_user_puts_the_transcript_before_the_task_in_the_last_user_message():
    refined, transcript = build_trajectory_prompt(PROMPT, TRAJECTORY)
    assert refined[0] == PROMPT[0] and len(refined) == 2
    assert refined[1]["content"] == DEFAULT_TRAJECTORY_TEMPLATE.format(prompt="What is 4817 * 293?", draft=transcript)
    assert refined[1]["content"].endswith("What is 4817 * 293?")  # an environment observation follows the task
    assert PROMPT[1]["content"] == "What is 4817 * 293?"  # input untouched


def test_plain_text_prompt_and_custom_template():
    refined, transcript = build_trajectory_prompt("Q?", "draft text", template="{prompt}|{draft}")
    assert (refined, transcript) == ("Q?|draft text", "draft text")


def test_assistant_turn_replays_the_messages_then_the_instruction():
    refined, _ = build_trajectory_prompt(
        PROMPT, TRAJECTORY, instruction="Try again.", conversational_style="assistant_turn"
    )
    assert refined[:2] == PROMPT
    assert refined[2] == {"role": "assistant", "content": "I will use the calculator.",
                          "reasoning_content": "too long to do by hand", "tool_calls": [CALL]}  # fmt: skip
    assert refined[3] == {"role": "tool", "name": "multiply", "content": "1411381"}
    assert refined[4]["content"] == "The answer is \\boxed{1411381}."
    assert refined[5] == {"role": "user", "content": "Try again."}
    stripped, _ = build_trajectory_prompt(
        PROMPT, TRAJECTORY, conversational_style="assistant_turn", keep_reasoning=False
    )
    assert "reasoning_content" not in stripped[2]
    with pytest.raises(ValueError, match="conversational_style"):
        build_trajectory_prompt(PROMPT, TRAJECTORY, conversational_style="sideways")


def test_pieces_are_found_in_order_and_a_lost_tool_result_is_reported():
    pieces = trajectory_pieces(TRAJECTORY)
    assert pieces == ["too long to do by hand", "I will use the calculator.", "multiply", '{"a": 4817, "b": 293}',
                      "1411381", "The answer is \\boxed{1411381}."]  # fmt: skip
    refined, transcript = build_trajectory_prompt(PROMPT, TRAJECTORY)
    assert missing_trajectory_pieces(refined[1]["content"], pieces) == []
    # whitespace and spacing of JSON do not matter (templates re-space); a dropped result does
    assert missing_trajectory_pieces('too long to do by hand I will use the calculator. multiply {"a":4817,"b":293} '
                                     "1411381 The answer is \\boxed{1411381}.", pieces) == []  # fmt: skip
    assert missing_trajectory_pieces(transcript.replace("too long to do by hand", ""), pieces) == [0]
    # the result also appears in the final answer: the greedy in-order match still detects its loss
    assert missing_trajectory_pieces(transcript.replace("1411381\n", "\n"), pieces) != []


def test_order_matters_so_a_short_result_is_not_matched_by_earlier_text():
    trajectory = [
        {"role": "assistant", "content": "", "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]},
        {"role": "tool", "name": "add", "content": "4"},
    ]
    pieces = trajectory_pieces(trajectory)
    assert missing_trajectory_pieces('Task: 4 plus... add {"a": 2, "b": 2}', pieces) == [2]


def test_token_counts_turns_model_and_tool_tokens():
    completion_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    tool_mask = torch.tensor([[1, 1, 0, 0, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    counts = trajectory_token_counts(completion_mask, tool_mask)
    assert counts["turns"].tolist() == [3.0, 1.0]
    assert counts["model_tokens"].tolist() == [4.0, 3.0]
    assert counts["tool_tokens"].tolist() == [3.0, 0.0]
    single = trajectory_token_counts(completion_mask, None)
    assert single["turns"].tolist() == [1.0, 1.0] and single["tool_tokens"].tolist() == [0.0, 0.0]


def test_mark_applies_to_the_drafts_text_only():
    def mark(text):
        return f"<<{text}>>"

    refined, transcript = build_trajectory_prompt(PROMPT, TRAJECTORY, template="{prompt}|{draft}", mark=mark)
    assert refined[1]["content"] == f"What is 4817 * 293?|<<{transcript}>>"  # the transcript marked as one
    call = {"type": "function", "function": {"name": "lookup", "arguments": {"key": "x", "n": 3}}}
    trajectory = [
        {"role": "assistant", "content": "c", "tool_calls": [call]},
        {"role": "tool", "name": "lookup", "content": "r"},
    ]
    replayed, _ = build_trajectory_prompt(
        PROMPT, trajectory, instruction="Again.", conversational_style="assistant_turn", mark=mark
    )
    assert replayed[2]["content"] == "<<c>>" and replayed[3] == {"role": "tool", "name": "lookup", "content": "<<r>>"}
    assert replayed[2]["tool_calls"] == [
        {"type": "function", "function": {"name": "lookup", "arguments": {"key": "<<x>>", "n": 3}}}
    ]
    assert replayed[4] == {"role": "user", "content": "Again."} and call["function"]["arguments"]["key"] == "x"


def test_trajectory_draft_is_the_drafts_transcript_pieces_and_prompt():
    draft = TrajectoryDraft(TRAJECTORY, keep_reasoning=False)
    assert draft.transcript == render_transcript(TRAJECTORY, keep_reasoning=False)
    assert draft.pieces() == trajectory_pieces(TRAJECTORY, keep_reasoning=False) and "too long" not in draft.pieces()
    assert draft.prompt(PROMPT, DEFAULT_TRAJECTORY_TEMPLATE, "", "append_to_user")[1]["content"].startswith("Here is")
