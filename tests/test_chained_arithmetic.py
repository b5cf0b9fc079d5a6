"""The chained-arithmetic benchmark task: problems, worked solutions, carry slips, the teacher's refinements, and the
warm start's argument checks."""

import random

import pytest

from trl_igrpo.demo.chained_arithmetic import (
    Chain,
    apply_step,
    chain_solution,
    first_wrong_step,
    has_carry,
    make_chained_examples,
    parse_chain_question,
    refine_chain,
    sample_chain,
    teacher_results,
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


def test_steps_carries_and_forgotten_carries():
    assert apply_step(47, "+", 8) == 55 and apply_step(47, "+", 8, forget_carry=True) == 45
    assert apply_step(50, "-", 5) == 45 and apply_step(50, "-", 5, forget_carry=True) == 55
    assert apply_step(41, "+", 8, forget_carry=True) == 49  # no carry: nothing to forget
    assert has_carry(47, "+", 8) and has_carry(50, "-", 5) and not has_carry(41, "+", 8)


def test_worked_solution_and_a_slip_that_propagates():
    assert chain_solution(CHAIN) == "<think>47+38=85, -19=66, +56=122</think><answer>\\boxed{122}</answer>"
    small = Chain(47, (("+", 8), ("-", 5), ("+", 9)))
    assert chain_solution(small) == "<think>47+8=55, -5=50, +9=59</think><answer>\\boxed{59}</answer>"
    # a forgotten carry in step 0; the later steps are right *from the wrong value*
    slipped = [45, 40, 49]
    assert chain_solution(small, slipped) == "<think>47+8=45, -5=40, +9=49</think><answer>\\boxed{49}</answer>"
    assert extract_final_answer(chain_solution(small, slipped)) == "49"
    assert first_wrong_step(small, slipped) == 0 and first_wrong_step(small, small.values) is None
    assert first_wrong_step(small, [55, 50, 69]) == 2
    with pytest.raises(ValueError):
        chain_solution(small, [55])


def test_teacher_forgets_only_carries_at_its_rate():
    rng = random.Random(0)
    chain = Chain(47, (("+", 8), ("+", 1), ("-", 5)))  # carry, no carry, borrow (on the correct path)
    runs = [teacher_results(chain, rng, 0.5) for _ in range(4000)]
    assert all(r[1] - r[0] == 1 for r in runs)  # the step without a carry never slips
    forgot_first = sum(r[0] == 45 for r in runs) / len(runs)
    assert 0.45 < forgot_first < 0.55
    assert teacher_results(chain) == chain.values and teacher_results(chain, rng, 0.0) == chain.values


def test_refinement_copies_the_correct_prefix_and_fixes_the_first_slip():
    small = Chain(47, (("+", 8), ("-", 5), ("+", 9)))
    assert refine_chain(small, small.values) == small.values  # a correct draft is copied whole
    assert refine_chain(small, [45, 40, 49]) == small.values  # step 0 fixed, the rest recomputed
    assert refine_chain(small, [55, 50, 69]) == small.values  # steps 0-1 copied, step 2 fixed
    # a slipping teacher may slip again later, never before or at the fixed step
    rng = random.Random(0)
    chain = Chain(47, (("+", 8), ("-", 5), ("+", 9), ("+", 3)))  # 59 + 3 = 62 carries
    outcomes = {tuple(refine_chain(chain, [45, 40, 49, 52], rng, 0.5)) for _ in range(200)}
    assert outcomes == {(55, 50, 59, 62), (55, 50, 59, 52)}


def test_sampled_chains_stay_in_range_and_carry_about_half_the_time():
    rng = random.Random(1)
    chains = [sample_chain(rng, rng.choice([3, 4])) for _ in range(1000)]
    for chain in chains:
        assert 10 <= chain.start <= 99 and all(2 <= n <= 9 for _, n in chain.steps)
        assert all(0 <= v <= 99 for v in chain.values)
    steps = [(before // 10 != after // 10) for c in chains for before, after in zip([c.start, *c.values], c.values)]
    assert 0.3 < sum(steps) / len(steps) < 0.7  # a carry or borrow changes the tens digit


def test_examples_are_graded_by_the_package_rewards():
    rows = make_chained_examples(12, seed=3)
    assert {r["num_ops"] for r in rows} <= {3, 4}
    assert rows == make_chained_examples(12, seed=3)  # deterministic for a seed
    completions = [[{"role": "assistant", "content": chain_solution(parse_chain_question(r["question"]))}]
                   for r in rows]  # fmt: skip
    solutions = [r["solution"] for r in rows]
    assert math_accuracy_reward(completions, solution=solutions) == [1.0] * 12
    assert think_answer_format_reward(completions) == [1.0] * 12
    wrong = []
    for r in rows:
        chain = parse_chain_question(r["question"])
        wrong.append([{"role": "assistant", "content": chain_solution(chain, [v + 10 for v in chain.values])}])
    assert math_accuracy_reward(wrong, solution=solutions) == [0.0] * 12
    assert rows[0]["prompt"][-1]["content"].startswith(rows[0]["question"])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"carry_slip_rate": 1.5}, "carry_slip_rate"), ({"draft_carry_slip_rate": -0.1}, "draft_carry_slip_rate")],
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
