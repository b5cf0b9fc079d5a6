"""Measurements of ``benchmarks/evidence.py`` that run inside a training process.

- :func:`stage2_mechanism_probe`: a zero-weight reward function that logs what iGRPO's Stage 2 sees (TRL passes
  reward functions ``log_metric`` and the rows' columns, and iGRPO adds the ``draft`` column to Stage-2 rows);
- :func:`validation_point`: validation accuracy (greedy, pass@1 over k samples) through ``trl_igrpo.eval`` (the code of
  ``trl-igrpo eval``) plus the policy entropy, on a forked RNG so that training is unchanged;
- :func:`policy_entropy`: mean per-token entropy of the policy over given completions of given prompts.
"""

from __future__ import annotations

from statistics import mean

__all__ = ["policy_entropy", "stage2_mechanism_probe", "validation_point"]


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def stage2_mechanism_probe(completions, solution, draft=None, log_metric=None, **kwargs) -> list[None]:
    """Returns no reward (``None`` for every row; train it with weight 0). On iGRPO's Stage-2 rows (they carry the
    ``draft`` placed in the prompt) it logs, per rollout:

    - ``mechanism/draft_correct``: share of rows whose selected (best-of-N) draft is correct;
    - ``mechanism/refinement_correct``: share of refinements that are correct;
    - ``mechanism/gain``: the two above subtracted (refinement minus draft);
    - ``mechanism/copy_rate``: share of refinements whose text equals the draft's (stripped);
    - ``mechanism/answer_copy_rate``: share of refinements whose final answer equals the draft's;
    - ``mechanism/fix_rate`` / ``mechanism/break_rate``: correct refinements of wrong drafts / wrong refinements of
      correct drafts (logged when such drafts exist).

    Stage-1 calls (drafts, no ``draft`` column) and GRPO log nothing.
    """
    if draft is None or log_metric is None:
        return [None] * len(completions)
    from trl_igrpo.eval.metrics import extract_final_answer
    from trl_igrpo.rewards import math_accuracy_reward

    texts = [_text(c) for c in completions]
    refined = [score == 1.0 for score in math_accuracy_reward(completions=texts, solution=solution)]
    unique = sorted(set(zip(draft, solution)))
    verdicts = dict(
        zip(unique, math_accuracy_reward(completions=[d for d, _ in unique], solution=[s for _, s in unique]))
    )
    drafted = [verdicts[(d, s)] == 1.0 for d, s in zip(draft, solution)]
    log_metric("mechanism/draft_correct", mean(drafted))
    log_metric("mechanism/refinement_correct", mean(refined))
    log_metric("mechanism/gain", mean(refined) - mean(drafted))
    log_metric("mechanism/copy_rate", mean(t.strip() == d.strip() for t, d in zip(texts, draft)))
    answers = [(extract_final_answer(t), extract_final_answer(d)) for t, d in zip(texts, draft)]
    log_metric("mechanism/answer_copy_rate", mean(a is not None and a == b for a, b in answers))
    fixes = [r for r, d in zip(refined, drafted) if not d]
    if fixes:
        log_metric("mechanism/fix_rate", mean(fixes))
    breaks = [not r for r, d in zip(refined, drafted) if d]
    if breaks:
        log_metric("mechanism/break_rate", mean(breaks))
    return [None] * len(completions)


_GRADER = None


def _grader():
    global _GRADER
    if _GRADER is None:
        from trl_igrpo.rewards.math import MathAccuracyReward

        _GRADER = MathAccuracyReward(num_workers=1)
    return _GRADER


def validation_point(model, tokenizer, rows: list[dict], config) -> dict:
    """Greedy accuracy, pass@1 and maj@k over ``config.val_samples`` samples (T = 0.6, top-p 0.95, fixed seed) and
    the policy entropy over those samples, on the validation ``rows``; the caller's RNG state is left untouched."""
    import torch

    from trl_igrpo.eval.data import BenchmarkProblem
    from trl_igrpo.eval.runner import EvalSettings, evaluate

    problems = [BenchmarkProblem(i, row["prompt"], row["solution"]) for i, row in enumerate(rows)]
    common = dict(max_new_tokens=config.max_completion_length, batch_size=config.eval_batch_size)
    greedy = EvalSettings(num_samples=1, temperature=0.0, **common)
    sampled = EvalSettings(num_samples=config.val_samples, temperature=0.6, top_p=0.95, seed=1234, **common)
    with torch.random.fork_rng(devices=[]):
        greedy_result = evaluate(model, tokenizer, problems, greedy, grader=_grader(), progress=False)
        sampled_result = evaluate(model, tokenizer, problems, sampled, grader=_grader(), progress=False)
    samples = sampled_result.samples
    metrics = sampled_result.results["metrics"]
    return {
        "greedy": greedy_result.results["metrics"]["pass@1"],
        "pass@1": metrics["pass@1"],
        "maj@k": metrics[f"maj@{config.val_samples}"],
        "entropy": policy_entropy(
            model, tokenizer, [rows[s["problem_index"]]["prompt"] for s in samples], [s["completion"] for s in samples]
        ),
    }


def policy_entropy(model, tokenizer, prompts: list, completions: list[str]) -> float:
    """Mean per-token entropy (nats, temperature 1) of the policy at the positions that predict the completions."""
    from benchmarks.igrpo_vs_grpo import _completion_entropy

    return _completion_entropy(model, tokenizer, prompts, completions)
