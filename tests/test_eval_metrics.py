"""Pure metrics of `trl-igrpo eval` against hand computations: pass@k, majority voting and its tie rule, answer
extraction and unparseable answers, aggregation."""

import itertools
import math

import pytest

from trl_igrpo.eval.metrics import (
    ProblemResult,
    cluster_answers,
    extract_final_answer,
    last_boxed_content,
    majority_vote_credit,
    nemo_skills_majority,
    nemo_skills_metrics,
    normalize_answer,
    pass_at_k,
    pass_at_k_ladder,
    summarize,
    summarize_by_group,
)


# ------------------------------------------------------------------------------------------------------------- pass@k
@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (8, 2, 4, 1 - 15 / 70),  # 1 - C(6,4)/C(8,4)
        (10, 3, 2, 1 - 21 / 45),  # 1 - C(7,2)/C(10,2)
        (4, 1, 1, 0.25),  # pass@1 = c/n
        (5, 0, 3, 0.0),
        (5, 5, 1, 1.0),
        (8, 1, 8, 1.0),  # k = n: any correct sample
        (8, 6, 4, 1.0),  # n - c < k: every k-subset holds a correct sample
    ],
)
def test_pass_at_k_matches_hand_computation(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_the_binomial_formula_everywhere():
    for n in range(1, 13):
        for c, k in itertools.product(range(n + 1), range(1, n + 1)):
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)
    assert pass_at_k(64, 3, 1) == pytest.approx(3 / 64)  # pass@1 is the mean over the k samples
    assert 0 < pass_at_k(256, 1, 8) < 1  # large n: the product form does not overflow


@pytest.mark.parametrize("n, c, k", [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_ladder():
    assert pass_at_k_ladder(1) == [1]
    assert pass_at_k_ladder(8) == [1, 2, 4, 8]
    assert pass_at_k_ladder(64) == [1, 2, 4, 8, 16, 32, 64]
    assert pass_at_k_ladder(6) == [1, 2, 4, 6]


# -------------------------------------------------------------------------------------------------------------- maj@k
def test_majority_vote_plain_winner():
    # correct cluster 0 has 3 votes against 2 for the wrong cluster 1
    assert majority_vote_credit([1, 1, 0, 0, 0], [False, False, True, True, True]) == 1.0
    assert majority_vote_credit([1, 1, 1, 0, 0], [False, False, False, True, True]) == 0.0


def test_majority_vote_ties_score_the_expected_random_tie_break():
    assert majority_vote_credit([0, 0, 1, 1], [True, True, False, False]) == 0.5
    assert majority_vote_credit([0, 1, 2], [True, False, False]) == pytest.approx(1 / 3)
    # the rule does not depend on which answer came first (Counter.most_common would)
    for order in itertools.permutations(range(4)):
        clusters = [[0, 0, 1, 1][i] for i in order]
        correct = [[True, True, False, False][i] for i in order]
        assert majority_vote_credit(clusters, correct) == 0.5


def test_unparseable_samples_do_not_vote():
    # three unparseable samples outnumber each answer but cast no vote: 1 vs 1 tie
    assert majority_vote_credit([None, None, None, 1, 0], [False, False, False, False, True]) == 0.5
    assert majority_vote_credit([None, None], [False, False]) == 0.0


def test_majority_vote_rejects_a_cluster_mixing_right_and_wrong():
    with pytest.raises(ValueError, match="both correct and wrong"):
        majority_vote_credit([0, 0], [True, False])
    with pytest.raises(ValueError):
        majority_vote_credit([0], [True, False])


def test_cluster_answers_merges_correct_answers_and_equivalent_wrong_ones():
    answers = ["1/2", "0.5", "3", "3", None, "\\frac{5}{2}", "2.5"]
    correct = [False, False, False, False, False, True, True]
    same = {frozenset(("1/2", "0.5"))}
    clusters = cluster_answers(answers, correct, lambda a, b: frozenset((a, b)) in same)
    assert clusters[0] == clusters[1] != clusters[2] == clusters[3]
    assert clusters[4] is None  # unparseable
    assert clusters[5] == clusters[6] == 0  # correct answers: one cluster whatever their spelling
    assert 0 not in clusters[:4]
    # without the equivalence check, "3" (2 votes) ties "\\frac{5}{2}"/"2.5" (2 votes); with it, 1/2 ~ 0.5 ties too
    assert majority_vote_credit(clusters, correct) == pytest.approx(1 / 3)
    plain = cluster_answers(answers, correct)
    assert plain[0] != plain[1]
    assert majority_vote_credit(plain, correct) == 0.5


def test_cluster_answers_is_transitive():
    answers = ["a", "b", "c"]
    pairs = {frozenset(("a", "b")), frozenset(("b", "c"))}
    clusters = cluster_answers(answers, [False] * 3, lambda x, y: frozenset((x, y)) in pairs)
    assert len(set(clusters)) == 1


def test_a_correct_sample_without_an_extractable_answer_still_counts_as_correct():
    assert cluster_answers([None, "7"], [True, False]) == [0, 1]


# ------------------------------------------------------------------------------------------------------ extraction
@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>maybe \\boxed{4}</think><answer>\\boxed{5}</answer>", "5"),
        ("<answer>42</answer>", "42"),
        ("<answer>first</answer> then <answer> 7 </answer>", "7"),
        ("So the value is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
        ("\\fbox{9}", "9"),
        ("the answer is $7$", "7"),
        ("first $1$ and finally \\(x+1\\)", "x+1"),
        ("no answer here", None),
        ("cut off \\boxed{12", None),
        ("<answer></answer>", None),
        ("\\boxed{}", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_last_boxed_content_matches_nested_braces():
    assert last_boxed_content("x \\boxed{\\frac{a}{b^{2}}} y") == "\\frac{a}{b^{2}}"
    assert last_boxed_content("\\boxed {3}") == "3"
    assert last_boxed_content("nothing") is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("$ 3 $.", "3"),
        ("\\left( 1, 2 \\right]", "(1,2]"),
        ("90^\\circ", "90"),
        ("\\text{(B)}", "(B)"),
        ("x \\, + \\! 1", "x+1"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# ------------------------------------------------------------------------------------------------------ aggregation
def _problem(correct, unparseable=None, lengths=None, truncated=None, credit=0.0, **groups):
    n = len(correct)
    return ProblemResult(
        correct=tuple(correct),
        unparseable=tuple(unparseable or [False] * n),
        lengths=tuple(lengths or [10] * n),
        truncated=tuple(truncated or [False] * n),
        majority_credit=credit,
        groups=groups,
    )


def test_summarize_hand_made_set():
    problems = [
        _problem([True, False, False, False], [False, True, False, False], [10, 20, 30, 40], credit=0.5, level=1),
        _problem([True, True, True, True], lengths=[5, 5, 5, 5], truncated=[True, False, False, False], credit=1.0,
                 level=2),
        _problem([False] * 4, [True] * 4, credit=0.0, level=2),
    ]  # fmt: skip
    metrics = summarize(problems)
    assert metrics["num_problems"] == 3 and metrics["num_samples"] == 4
    assert metrics["pass@1"] == pytest.approx((1 / 4 + 1 + 0) / 3)
    assert metrics["pass@k"]["1"] == pytest.approx(metrics["pass@1"])
    assert metrics["pass@k"]["2"] == pytest.approx(((1 - 3 / 6) + 1 + 0) / 3)  # 1 - C(3,2)/C(4,2) for problem 1
    assert metrics["pass@k"]["4"] == pytest.approx(2 / 3)
    assert metrics["maj@4"] == pytest.approx(0.5)
    assert metrics["mean_length"] == pytest.approx((100 + 20 + 40) / 12)
    assert metrics["unparseable_frac"] == pytest.approx(5 / 12)
    assert metrics["truncated_frac"] == pytest.approx(1 / 12)

    by_level = summarize_by_group(problems, ["level"])["level"]
    assert list(by_level) == ["1", "2"]
    assert by_level["1"]["pass@1"] == pytest.approx(0.25)
    assert by_level["2"]["pass@1"] == pytest.approx(0.5) and by_level["2"]["num_problems"] == 2


def test_summarize_needs_problems_with_equal_sample_counts():
    with pytest.raises(ValueError, match="same number of samples"):
        summarize([_problem([True]), _problem([True, False])])
    with pytest.raises(ValueError):
        summarize([])


def test_group_values_sort_naturally():
    problems = [_problem([True], level=f"Level {i}") for i in (10, 2, 1)]
    assert list(summarize_by_group(problems, ["level"])["level"]) == ["Level 1", "Level 2", "Level 10"]


# ------------------------------------------------------------------------------------------- NeMo-Skills' definitions
def test_nemo_skills_majority_votes_by_string_with_a_sorted_tie_break():
    assert nemo_skills_majority(["5", "", "", ""], [True, False, False, False]) == 0.0  # three empty boxes win
    assert nemo_skills_majority(["5", None, None, None], [True, False, False, False]) == 1.0  # no box: no vote
    assert nemo_skills_majority([None, None], [False, False]) == 0.0
    # a 1-1 tie: the smaller (answer, correct) pair wins, whatever the order: "10" < "9" as strings
    for answers, correct in ((["9", "10"], [True, False]), (["10", "9"], [False, True])):
        assert nemo_skills_majority(answers, correct) == 0.0
    assert nemo_skills_majority(["9", "10"], [False, True]) == 1.0
    # strings that mean the same value do not merge (ours merge them through math-verify)
    assert nemo_skills_majority(["0.5", "1/2", "7", "7"], [True, True, False, False]) == 0.0


def test_nemo_skills_metrics_use_the_first_k_samples():
    problems = [
        ProblemResult((False, False, True, True), (False,) * 4, (1,) * 4, (False,) * 4, 1.0, boxed_answers=("1", "2", "3", "3")),
        ProblemResult((True, False, False, False), (False,) * 4, (1,) * 4, (False,) * 4, 0.0, boxed_answers=("3", "4", "4", "4")),
    ]  # fmt: skip
    nemo = nemo_skills_metrics(problems)
    assert nemo["pass@k"] == {"1": 0.5, "2": 0.5, "4": 1.0}  # ours (unbiased over all 4) would give pass@1 = 3/8
    assert nemo["pass@1[k]"]["4"] == pytest.approx(3 / 8) and nemo["pass@1[k]"]["1"] == 0.5
    # k=2: problem 1 ties "1"/"2" -> "1" (wrong); problem 2 ties "3"/"4" -> "3" (correct)
    assert nemo["majority@k"] == {"2": 0.5, "4": 0.5}
    with pytest.raises(ValueError, match="boxed answer recorded"):
        nemo_skills_metrics([_problem([True, False])])
