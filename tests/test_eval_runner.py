"""The evaluation protocol end to end with scripted generations (known answers, real math-verify grading): gold-answer
checks, grading and voting, both modes, the reasoning toggle, sampling settings, the vLLM backend's request mapping."""

import json
import sys
import types

import pytest
from transformers import AutoTokenizer

from trl_igrpo.eval.data import BenchmarkProblem, DataError
from trl_igrpo.eval.generation import GeneratedSample, sampling_kwargs
from trl_igrpo.eval.grading import GoldAnswerError, check_gold_answers, grade_samples
from trl_igrpo.eval.results import format_markdown, write_results
from trl_igrpo.eval.runner import EvalSettings, apply_reasoning, evaluate
from trl_igrpo.rewards.math import MathAccuracyReward


@pytest.fixture(scope="module")
def grader():
    reward = MathAccuracyReward(num_workers=1)
    yield reward
    reward.close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _samples(*texts):
    return [GeneratedSample(text, 10 + i, False) for i, text in enumerate(texts)]


PROBLEMS = [
    BenchmarkProblem(0, "What is 1/2 + 1/4?", "\\frac{3}{4}", {"level": 1}),
    BenchmarkProblem(1, "What is 2 + 2?", "4", {"level": 2}),
]


# --------------------------------------------------------------------------------------------------------- gold answers
def test_unparseable_gold_answers_stop_the_run_naming_the_rows(grader):
    problems = [BenchmarkProblem(7, "p", "}{"), BenchmarkProblem(8, "q", "3")]
    with pytest.raises(GoldAnswerError, match="row 7.*cannot parse.*--on_bad_gold skip"):
        check_gold_answers(problems, grader)
    kept, skipped = check_gold_answers(problems, grader, on_bad_gold="skip")
    assert [p.index for p in kept] == [8]
    assert skipped == [{"index": 7, "answer": "}{", "reason": "math-verify cannot parse it"}]
    with pytest.raises(GoldAnswerError, match="no problem"):
        check_gold_answers(problems[:1], grader, on_bad_gold="skip")


@pytest.mark.parametrize(
    "gold, reason",
    [
        ("see the textbook", "prose"),
        ("The answer is 5", "prose"),
        ("N/A", "placeholder"),
        ("TODO", "placeholder"),
        ("\\frac{1}{", "cannot parse"),
        ("Monday", "prose"),
    ],
)
def test_the_pre_check_really_detects_unreadable_golds(grader, gold, reason):
    """Each of these used to pass: graded against \\boxed{gold}, math-verify "parses" it as itself."""
    problems = [BenchmarkProblem(3, "p", gold), BenchmarkProblem(4, "q", "5")]
    with pytest.raises(GoldAnswerError, match=f"row 3: .*{reason}"):
        check_gold_answers(problems, grader)
    kept, skipped = check_gold_answers(problems, grader, on_bad_gold="skip")
    assert [p.index for p in kept] == [4] and skipped[0]["index"] == 3 and reason in skipped[0]["reason"]


@pytest.mark.parametrize("gold", ["\\text{Evelyn}", "5 inches", "2 and 3", "(1, 2]", "10\\%", "x \\in [-2,7]", "5."])
def test_the_pre_check_keeps_golds_math_verify_reads(grader, gold):
    kept, skipped = check_gold_answers([BenchmarkProblem(0, "p", gold)], grader)
    assert len(kept) == 1 and skipped == []


def test_a_gold_answer_that_does_not_match_itself_is_refused():
    class NeverMatches:
        def gold_problems(self, golds):
            return [None] * len(golds)

        def score(self, golds, texts):
            return [0.0] * len(golds)

    with pytest.raises(GoldAnswerError, match="does not verify against itself"):
        check_gold_answers(PROBLEMS, NeverMatches())


# -------------------------------------------------------------------------------------------------- grading and votes
def test_grading_a_hand_made_set(grader):
    samples = [
        # gold 3/4: two correct spellings, two wrong answers equal to each other (0.5 = 1/2), one unparseable
        _samples("<answer>\\frac{3}{4}</answer>", "\\boxed{0.75}", "\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "hmm"),
        # gold 4: three wrong answers that differ (5, 5, 6) and two correct -> 5 wins the vote
        _samples("\\boxed{5}", "\\boxed{5}", "\\boxed{4}", "<answer>4</answer>", "$6$"),
    ]
    results, records, string_only = grade_samples(PROBLEMS, samples, grader)
    assert string_only == 0
    assert results[0].correct == (True, True, False, False, False)
    assert results[0].unparseable == (False, False, False, False, True)
    assert results[0].majority_credit == 0.5  # {3/4: 2} ties {0.5 = 1/2: 2}; without the equivalence check: 1.0
    assert results[1].correct == (False, False, True, True, False)
    assert results[1].majority_credit == 0.5  # {5: 2} ties {4: 2}
    assert records[1][4]["extracted_answer"] == "6" and records[0][4]["extracted_answer"] is None
    assert [r["num_tokens"] for r in records[0]] == [10, 11, 12, 13, 14]


def test_votes_and_grades_come_from_the_same_reader(grader):
    problems = [BenchmarkProblem(i, "p", "5") for i in range(4)]
    samples = [
        # one correct + three empty boxes: the empty answers are one (wrong) answer with three votes
        _samples("\\boxed{5}", "\\boxed{}", "\\boxed{}", "\\boxed{}"),
        # one correct + three samples with no final answer at all (cut off): they do not vote
        _samples("\\boxed{5}", "let me think", "so far 2 + 3", "hmm"),
        # "\\boxed{5.}" is read as 5: graded correct and voting with "5" (it was graded wrong but voted as "5")
        _samples("\\boxed{5.}", "\\boxed{5}", "\\boxed{7}", "\\boxed{7}"),
        # malformed LaTeX in a box is an answer, unreadable and wrong; equal texts vote together
        _samples("\\boxed{5}", "\\boxed{\\frac{1}{", "\\boxed{\\frac{1}{", "\\boxed{6}"),
    ]
    results, records, _ = grade_samples(problems, samples, grader)
    assert results[0].correct == (True, False, False, False) and results[0].majority_credit == 0.0
    assert results[0].unparseable == (False, True, True, True)
    assert results[1].majority_credit == 1.0 and results[1].unparseable == (False, True, True, True)
    assert results[2].correct == (True, True, False, False) and results[2].majority_credit == 0.5  # 5 ties 7
    assert records[2][0]["extracted_answer"] == "5" and records[2][0]["answer_readable"]
    assert results[3].majority_credit == 0.0  # two votes for the unreadable "\\frac{1}{" beat one correct
    assert [r["answer_readable"] for r in records[3]] == [True, False, False, True]
    # NeMo-Skills votes with the \\boxed{} strings: empty boxes vote, samples without one do not
    assert [p.boxed_answers for p in results[:2]] == [("5", "", "", ""), ("5", None, None, None)]


def _scripted(answer_for):
    """A generate backend that answers from the prompt text and records what it was asked."""
    calls = []

    def generate(prompts, num_samples, description):
        calls.append((description, prompts, num_samples))
        return [
            [GeneratedSample(answer_for(json.dumps(prompt), i), 5, False) for i in range(num_samples)]
            for prompt in prompts
        ]

    generate.calls = calls
    return generate


def _answer_by_problem(text, sample_index):
    if "Prior draft" in text:  # refinements fix the answer
        return "<answer>\\boxed{4}</answer>" if "2 + 2" in text else "<answer>\\frac{3}{4}</answer>"
    if "2 + 2" in text:
        return ["\\boxed{4}", "\\boxed{5}", "\\boxed{5}", "no idea"][sample_index]
    return "\\boxed{0.75}"


def test_single_pass_metrics(tokenizer, grader):
    generate = _scripted(_answer_by_problem)
    result = evaluate(None, tokenizer, PROBLEMS, EvalSettings(num_samples=4), generate=generate, grader=grader)
    metrics = result.results["metrics"]
    assert metrics["pass@1"] == pytest.approx((1 + 1 / 4) / 2)
    assert metrics["pass@k"]["2"] == pytest.approx((1 + 0.5) / 2)  # 1 - C(3,2)/C(4,2) = 0.5 for 2 + 2
    assert metrics["pass@k"]["4"] == 1.0
    assert metrics["maj@4"] == pytest.approx((1 + 0) / 2)  # 5 (two votes) beats 4 (one vote)
    assert metrics["unparseable_frac"] == pytest.approx(1 / 8)
    assert result.results["by_group"]["level"]["2"]["pass@1"] == pytest.approx(0.25)
    assert [call[0] for call in generate.calls] == ["single pass"]
    assert generate.calls[0][1][0] == [{"role": "user", "content": "What is 1/2 + 1/4?"}]  # the original prompt
    assert len(result.samples) == 8 and "drafts" not in result.results
    # NeMo-Skills' definitions beside ours: 2 + 2's first sample is the correct one, 5 wins its vote by string too
    nemo = result.results["nemo_skills"]
    assert nemo["pass@k"] == {"1": 1.0, "2": 1.0, "4": 1.0} and nemo["majority@k"]["4"] == pytest.approx(0.5)
    assert "| 4 | 100.00 | 62.50 | 50.00 |" in format_markdown(result.results)


def test_draft_refine_scores_refinements_and_reports_drafts(tokenizer, grader):
    generate = _scripted(_answer_by_problem)
    settings = EvalSettings(num_samples=4, mode="draft_refine")
    result = evaluate(None, tokenizer, PROBLEMS, settings, generate=generate, grader=grader)
    assert [(c[0], len(c[1]), c[2]) for c in generate.calls] == [("drafts", 2, 4), ("refinements", 8, 1)]
    refinement_prompt = generate.calls[1][1][4][-1]["content"]  # problem 2, sample 0: its own draft appended
    assert refinement_prompt.startswith("What is 2 + 2?") and "Prior draft:\n\\boxed{4}" in refinement_prompt
    assert result.results["metrics"]["pass@1"] == 1.0
    assert result.results["drafts"]["pass@1"] == pytest.approx((1 + 1 / 4) / 2)
    assert result.results["refinement_minus_draft_pass@1"] == pytest.approx(1 - 0.625)
    assert result.samples[5]["draft"] == "\\boxed{5}" and result.samples[5]["draft_correct"] is False
    assert "Drafts (draft_refine mode" in format_markdown(result.results)


def test_results_files(tmp_path, tokenizer, grader):
    result = evaluate(None, tokenizer, PROBLEMS, EvalSettings(num_samples=4), generate=_scripted(_answer_by_problem),
                      grader=grader)  # fmt: skip
    paths = write_results(result, tmp_path / "out", title="t")
    saved = json.loads(paths["results"].read_text())
    assert saved["metrics"]["pass@1"] == pytest.approx(0.625)
    assert saved["protocol"]["temperature"] == 0.6 and saved["protocol"]["top_p"] == 0.95
    assert len(paths["samples"].read_text().splitlines()) == 8
    table = paths["markdown"].read_text()
    assert "| 2 | 62.50 | 75.00 | 100.00 | 50.00 |" in table and "### By level" in table


# ------------------------------------------------------------------------------------------------------- the toggle
def test_reasoning_toggle_in_the_system_prompt_style(tokenizer, grader):
    generate = _scripted(lambda text, i: "\\boxed{4}")
    evaluate(None, tokenizer, PROBLEMS[1:], EvalSettings(num_samples=1, temperature=0, reasoning="off"),
             generate=generate, grader=grader)  # fmt: skip
    assert generate.calls[0][1][0][0] == {"role": "system", "content": "detailed thinking off"}
    prompts, kwargs = apply_reasoning([[{"role": "system", "content": "Be exact."}, {"role": "user", "content": "q"}]],
                                      tokenizer, "on")  # fmt: skip
    assert prompts[0][0]["content"] == "detailed thinking on\n\nBe exact." and kwargs == {}
    assert apply_reasoning([[{"role": "user", "content": "q"}]], tokenizer, None) == (
        [[{"role": "user", "content": "q"}]],
        {},
    )


def test_reasoning_toggle_in_the_enable_thinking_style(tiny_model_dir):
    from trl_igrpo.reasoning import install_reasoning_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    install_reasoning_template(tokenizer, overwrite=True)
    prompts, kwargs = apply_reasoning([[{"role": "user", "content": "q"}]], tokenizer, "off")
    assert prompts == [[{"role": "user", "content": "q"}]] and kwargs == {"enable_thinking": False}
    rendered = tokenizer.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True, **kwargs)
    assert rendered.endswith("<think>\n</think>\n")  # thinking off pre-fills an empty think block


def test_reasoning_needs_chat_prompts(tokenizer):
    with pytest.raises(ValueError, match="chat template"):
        apply_reasoning(["plain text"], tokenizer, "on")


# ------------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0, "num_samples": 8}, "identical"),
        ({"num_samples": 0}, "num_samples"),
        ({"top_p": 0}, "top_p"),
        ({"mode": "refine"}, "mode"),
        ({"reasoning": "maybe"}, "reasoning"),
        ({"on_bad_gold": "ignore"}, "on_bad_gold"),
    ],
)
def test_settings_that_cannot_run_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvalSettings(**kwargs).validate()


def test_sampler_is_the_protocol_not_the_checkpoint_defaults():
    assert sampling_kwargs(0.6, 0.95) == {
        "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "repetition_penalty": 1.0,
    }  # fmt: skip
    assert sampling_kwargs(0.0)["do_sample"] is False


@pytest.mark.slow
def test_transformers_sampling_with_the_tiny_model(tiny_model_dir):
    """k samples per prompt, token counts up to EOS, truncation, and reproducibility under a seed."""
    import torch
    from transformers import AutoModelForCausalLM

    from trl_igrpo.eval.generation import generate_samples

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "What is 3 + 1?"}]]

    def run():
        torch.manual_seed(0)
        return generate_samples(model, tokenizer, prompts, num_samples=3, max_new_tokens=12, batch_size=4,
                                temperature=0.6, top_p=0.95)  # fmt: skip

    first, second = run(), run()
    assert [len(per_prompt) for per_prompt in first] == [3, 3]
    assert first == second
    for sample in (s for per_prompt in first for s in per_prompt):
        assert 1 <= sample.num_tokens <= 12 and sample.truncated == (sample.num_tokens == 12)
    greedy = generate_samples(model, tokenizer, prompts, num_samples=1, max_new_tokens=12, temperature=0)
    assert greedy == generate_samples(model, tokenizer, prompts, num_samples=1, max_new_tokens=12, temperature=0)


# ---------------------------------------------------------------------------------------------------------- vLLM
def test_vllm_backend_sends_the_protocol_and_token_ids(monkeypatch, tokenizer):
    """With a stand-in `vllm` module: one n=k request per prompt, the HF tokenizer's token ids, the sampler, and the
    outputs mapped to samples (text, token count, truncation)."""
    created, requests = {}, []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            created.update(kwargs)

        def generate(self, prompts, params, use_tqdm=True):
            requests.append((prompts, params.kwargs))
            output = types.SimpleNamespace
            return [
                output(outputs=[output(text="\\boxed{4}", token_ids=[1, 2, 3], finish_reason="stop"),
                                output(text="\\boxed{", token_ids=[1] * 9, finish_reason="length")])
                for _ in prompts
            ]  # fmt: skip

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from trl_igrpo.eval.vllm_backend import vllm_backend

    settings = EvalSettings(num_samples=2, max_new_tokens=9, seed=3)
    generate = vllm_backend("some/model", tokenizer, settings, tensor_parallel_size=2)
    samples = generate([[{"role": "user", "content": "What is 2 + 2?"}]], 2, "single pass")
    assert created["model"] == "some/model" and created["seed"] == 3 and created["tensor_parallel_size"] == 2
    prompts, params = requests[0]
    expected_ids = tokenizer(
        tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], tokenize=False,
                                      add_generation_prompt=True), add_special_tokens=False)["input_ids"]  # fmt: skip
    assert prompts == [{"prompt_token_ids": expected_ids}]
    assert params == {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 9}
    assert samples == [[GeneratedSample("\\boxed{4}", 3, False), GeneratedSample("\\boxed{", 9, True)]]


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    from trl_igrpo.eval.vllm_backend import require_vllm

    with pytest.raises(ImportError, match="trl-igrpo\\[vllm\\].*make install-vllm.*--backend transformers"):
        require_vllm()


def test_problems_as_chat_messages_need_a_chat_template(tiny_model_dir, grader):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    problems = [BenchmarkProblem(0, [{"role": "user", "content": "What is 2 + 2?"}], "4")]
    with pytest.raises(DataError, match="no chat template"):
        evaluate(None, tokenizer, problems, EvalSettings(num_samples=1, temperature=0),
                 generate=_scripted(lambda t, i: "4"), grader=grader)  # fmt: skip


def test_evaluate_accuracy_refuses_rows_the_reward_cannot_score(tiny_model_dir):
    """The greedy helper of the demo and scripts: an unparseable gold answer is an error, not a wrong answer."""
    from transformers import AutoModelForCausalLM

    from trl_igrpo.eval.generation import evaluate_accuracy

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"prompt": [{"role": "user", "content": "2+2?"}], "solution": s} for s in ("4", "}{")]

    def reward(completions, solution, **kwargs):
        return [None if gold == "}{" else 1.0 for gold in solution]

    with pytest.raises(ValueError, match="could not score 1 row.*\\[1\\]"):
        evaluate_accuracy(model, tokenizer, rows, reward_func=reward, max_new_tokens=2)
    assert evaluate_accuracy(model, tokenizer, rows[:1], reward_func=reward, max_new_tokens=2) == 1.0


def test_the_runner_still_exports_what_moved_to_grading_and_results():
    from trl_igrpo.eval import grading, results, runner

    assert runner.check_gold_answers is grading.check_gold_answers and runner.GoldAnswerError is GoldAnswerError
    assert runner.grade_samples is grading.grade_samples and runner.EvalResult is results.EvalResult
    assert runner.write_results is write_results and runner.format_markdown is format_markdown
