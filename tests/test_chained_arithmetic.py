"""The chained-arithmetic benchmark task: problems, worked solutions, carry slips, the teacher's refinements, and the
warm start's argument checks."""

import random

import pytest

from trl_igrpo.demo.chained_arithmetic import (
    Chain,
    chain_solution,
    make_chained_examples,
    parse_chain_question,
    refine_chain,
    sample_chain,
    sample_slips,
)
from trl_igrpo.demo.chained_warm_start import build_chained_warm_start
from trl_igrpo.eval.metrics import extract_final_answer
from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward

CHAIN = Chain(47, (("+", 38), ("-", 19), ("+", 56)))


def test_chain_values_and_question():
    assert CHAIN.question == "What is 47+38-19+56?"
    assert CHAIN.values == [85, 66, 122] and CHAIN.answer == 122
    assert parse_chain_question(CHAIN.question) == CHAIN
    assert parse_chain_question("What is 12+3-4?") == Chain(12, (("+", 3), ("-", 4)))
    for bad in ("What is 3*4?", "What is 12?", "What is 47 + 8?"):
        with pytest.raises(ValueError):
            parse_chain_question(bad)


def test_worked_solution_and_a_slip_that_propagates():
    assert chain_solution(CHAIN) == "<think>47+38=85, -19=66, +56=122</think><answer>\\boxed{122}</answer>"
    # a dropped carry in step 0; the later steps are right *from the wrong value*
    slipped = chain_solution(CHAIN, {0: -10})
    assert slipped == "<think>47+38=75, -19=56, +56=112</think><answer>\\boxed{112}</answer>"
    assert extract_final_answer(slipped) == "112"


def test_refinement_copies_the_correct_prefix_and_recomputes_from_the_slip():
    assert refine_chain(CHAIN, {}) == chain_solution(CHAIN)  # a correct draft is copied whole
    refined = refine_chain(CHAIN, {1: 10})
    assert refined == chain_solution(CHAIN)  # step 0 copied (right), steps 1-2 recomputed
    # with a slipping teacher only recomputed steps can slip: step 0 comes from the draft
    rng = random.Random(0)
    for _ in range(50):
        text = refine_chain(CHAIN, {1: 10}, rng, slip_rate=0.5)
        assert text.startswith("<think>47+38=85, -19=")


def test_sampled_chains_stay_in_range_and_carry_about_half_the_time():
    rng = random.Random(1)
    chains = [sample_chain(rng, rng.choice([3, 4])) for _ in range(1000)]
    for chain in chains:
        assert 10 <= chain.start <= 99 and all(2 <= n <= 9 for _, n in chain.steps)
        assert all(0 <= v <= 99 for v in chain.values)
    steps = [(before // 10 != after // 10) for c in chains for before, after in zip([c.start, *c.values], c.values)]
    assert 0.3 < sum(steps) / len(steps) < 0.7  # a carry or borrow changes the tens digit


def test_slips_are_per_step_and_plus_or_minus_ten():
    rng = random.Random(2)
    slips = [sample_slips(rng, 4, 0.25) for _ in range(4000)]
    rate = sum(len(s) for s in slips) / (4 * len(slips))
    assert 0.22 < rate < 0.28
    assert {d for s in slips for d in s.values()} == {10, -10}


def test_examples_are_graded_by_the_package_rewards():
    rows = make_chained_examples(12, seed=3)
    assert {r["num_ops"] for r in rows} <= {3, 4}
    assert rows == make_chained_examples(12, seed=3)  # deterministic for a seed
    completions = [[{"role": "assistant", "content": chain_solution(parse_chain_question(r["question"]))}]
                   for r in rows]  # fmt: skip
    solutions = [r["solution"] for r in rows]
    assert math_accuracy_reward(completions, solution=solutions) == [1.0] * 12
    assert think_answer_format_reward(completions) == [1.0] * 12
    wrong = [[{"role": "assistant", "content": chain_solution(parse_chain_question(r["question"]), {0: 10})}]
             for r in rows]  # fmt: skip
    assert math_accuracy_reward(wrong, solution=solutions) == [0.0] * 12
    assert rows[0]["prompt"][-1]["content"].startswith(rows[0]["question"])


@pytest.mark.parametrize(
    "kwargs, name", [({"teacher_slip_rate": 1.5}, "teacher_slip_rate"), ({"draft_slip_rate": -0.1}, "draft_slip")]
)
def test_warm_start_checks_its_settings_before_building(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_chained_warm_start(tmp_path / "m", progress=False, **kwargs)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_warm_start_is_cached_for_equal_settings(tmp_path):
    settings = dict(sft_steps=2, batch_size=4, pool_size=32, progress=False)
    path = build_chained_warm_start(tmp_path / "m", **settings)
    weights = tmp_path / "m" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert build_chained_warm_start(tmp_path / "m", **settings) == path
    assert weights.stat().st_mtime_ns == mtime
    build_chained_warm_start(tmp_path / "m", **{**settings, "sft_steps": 3})
    assert weights.stat().st_mtime_ns != mtime  # other settings: rebuilt
