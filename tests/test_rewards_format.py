"""think_answer_format_reward edge cases."""

import pytest

from trl_igrpo.rewards import think_answer_format_reward

CASES = [
    ("<think>reason</think><answer>42</answer>", 1.0),
    ("<think>reason</think>\n<answer>42</answer>\n", 1.0),
    ("  <think>multi\nline</think>  <answer>\\boxed{1}</answer>", 1.0),
    ("<think></think><answer>42</answer>", 1.0),  # empty reasoning is still the format
    ("<think>r</think><answer>  </answer>", 0.0),  # empty answer
    ("<answer>42</answer><think>r</think>", 0.0),  # wrong order
    ("<think>r</think>", 0.0),  # no answer
    ("<answer>42</answer>", 0.0),  # no think
    ("<think>a</think><think>b</think><answer>42</answer>", 0.0),  # duplicate think
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0),  # duplicate answer
    ("<think>a <think>b</think> c</think><answer>1</answer>", 0.0),  # nested
    ("<think>a<answer>1</answer></think><answer>1</answer>", 0.0),  # answer inside think
    ("<think>a</think><answer>1", 0.0),  # unclosed
    ("<think>a<answer>1</answer>", 0.0),  # unclosed think
    ("text before <think>a</think><answer>1</answer>", 0.0),
    ("<think>a</think> text between <answer>1</answer>", 0.0),
    ("<think>a</think><answer>1</answer> trailing", 0.0),
    ("", 0.0),
]


@pytest.mark.parametrize(("completion", "expected"), CASES)
def test_plain_text(completion, expected):
    assert think_answer_format_reward([completion]) == [expected]


def test_conversational_and_batch():
    completions = [[{"role": "assistant", "content": text}] for text, _ in CASES]
    assert think_answer_format_reward(completions, solution=["x"] * len(CASES)) == [e for _, e in CASES]
