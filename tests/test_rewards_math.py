"""math_accuracy_reward: a table of math-verify cases, timeouts from threads, conversational input."""

import threading
import time

import pytest

from trl_igrpo.rewards import MathAccuracyReward, extract_answer_region, math_accuracy_reward

# (gold solution, completion, expected reward)
CASES = [
    ("5", r"The answer is \boxed{5}.", 1.0),
    ("5", r"The final answer is $5$", 1.0),
    ("5", "<think>2 + 3</think><answer>5</answer>", 1.0),
    ("5", r"<answer>\boxed{4}</answer>", 0.0),
    ("5", "<answer>$5$</answer>", 1.0),
    ("5", "<answer>5</answer><answer>6</answer>", 0.0),  # the last answer block counts
    ("5", "<answer>6</answer><answer>5</answer>", 1.0),
    (r"\frac{1}{2}", r"\boxed{0.5}", 1.0),  # fraction vs decimal
    ("0.5", r"$\frac{1}{2}$", 1.0),
    ("1/2", r"\boxed{0.5}", 1.0),
    (r"\frac{1}{2}", "<answer>50\\%</answer>", 1.0),  # percent
    (r"10\%", r"\boxed{0.1}", 1.0),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\sqrt{3}/2}", 1.0),  # sqrt
    (r"\frac{\sqrt{3}}{2}", r"\boxed{0.87}", 0.0),  # too coarse
    (r"2\sqrt{2}", r"\boxed{\sqrt{8}}", 1.0),
    ("(1, 2]", r"\boxed{(1,2]}", 1.0),  # intervals
    ("(1, 2]", r"\boxed{[1,2]}", 0.0),
    (r"(3,4) \cup (1,2)", r"\boxed{(1,2) \cup (3,4)}", 1.0),
    (r"\{1,2\}", r"\boxed{\{2,1\}}", 1.0),  # sets are order-insensitive
    ("2x+1", r"\boxed{1+2x}", 1.0),
    ("3", "<answer>x = 3</answer>", 1.0),
    ("5", "The answer is 5", 0.0),  # no LaTeX, no answer block: nothing to extract
    ("5", "I do not know.", 0.0),  # missing answer
    ("5", "", 0.0),
    ("7", r"\boxed{8}", 0.0),  # plainly wrong
    ("5", r"First $3$, so the answer is $5$", 1.0),  # the final LaTeX expression counts
]


def test_case_table_plain_text():
    golds, completions, expected = zip(*CASES)
    assert math_accuracy_reward(list(completions), list(golds)) == list(expected)


def test_conversational_completions_and_kwargs():
    completions = [[{"role": "assistant", "content": r"\boxed{4}"}], [{"role": "assistant", "content": r"\boxed{5}"}]]
    rewards = math_accuracy_reward(completions, solution=["4", "4"], prompts=["p", "p"], trainer_state=None)
    assert rewards == [1.0, 0.0]


def test_unparseable_gold_gives_none():
    assert math_accuracy_reward([r"\boxed{1}", r"\boxed{1}"], ["", "1"]) == [None, 1.0]


def test_in_process_mode_matches_workers():
    golds, completions, expected = zip(*CASES[:10])
    assert MathAccuracyReward(num_workers=0)(list(completions), list(golds)) == list(expected)


def test_missing_solution_column_is_a_clear_error():
    with pytest.raises(ValueError, match="solution"):
        MathAccuracyReward()(["x"])
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathAccuracyReward(timeout_seconds=0)


def test_extract_answer_region():
    assert extract_answer_region("<think>a</think><answer> 42 </answer>") == ("42", True)
    assert extract_answer_region("<answer>1</answer> x <answer>2</answer>") == ("2", True)
    assert extract_answer_region(r"so \boxed{3}") == (r"so \boxed{3}", False)


@pytest.mark.timeout(60)
def test_pathological_answer_times_out_from_a_worker_thread():
    """A tower of exponents must score 0 within the hard timeout, even when called off the main thread."""
    reward = MathAccuracyReward(num_workers=1, timeout_seconds=1, hard_timeout_seconds=4)
    reward([r"\boxed{1}"], ["1"])  # start the worker outside the timed region
    result = {}

    def run():
        start = time.monotonic()
        result["rewards"] = reward([r"\boxed{9^{9^{9^{9^{9^{9}}}}}}", r"\boxed{2}"], ["1", "2"])
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "scoring hung"
    assert result["rewards"] == [0.0, 1.0]
    # Either math-verify's own 1 s timeouts or the 4 s hard deadline fired; both are well under 10 s.
    assert result["elapsed"] < 10.0
    reward.close()


@pytest.mark.timeout(60)
def test_hard_timeout_kills_a_stuck_worker(monkeypatch):
    """An item that ignores math-verify's timeouts (simulated with a tiny hard deadline) scores 0, others still score."""
    reward = MathAccuracyReward(num_workers=1, timeout_seconds=1, hard_timeout_seconds=0.01)
    # With a 10 ms deadline almost nothing completes: every item must come back as a float, none hangs or is dropped.
    rewards = reward([r"\boxed{(1,2] \cup [3, 4)}"] * 3, ["(1,2] \\cup [3,4)"] * 3)
    assert len(rewards) == 3 and all(r in (0.0, 1.0) for r in rewards)
    assert reward.num_hard_timeouts >= 1
    reward.close()
