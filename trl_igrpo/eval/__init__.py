"""Evaluation with the iGRPO paper's protocol: ``trl-igrpo eval`` and the functions behind it.

- :mod:`~trl_igrpo.eval.metrics`: pure metrics (pass@k estimator, majority voting and its tie rule, answer extraction);
- :mod:`~trl_igrpo.eval.data`: benchmark loading (local files, Hub datasets), column presets, gold answers, prompts;
- :mod:`~trl_igrpo.eval.generation`: k samples per prompt with transformers, single pass and draft -> refine;
- :mod:`~trl_igrpo.eval.models`: loading a checkpoint or an adapter (LoRA, Tied-LoRA) merged into its base;
- :mod:`~trl_igrpo.eval.grading`: gold-answer checks, each sample's grade and vote;
- :mod:`~trl_igrpo.eval.runner`: the protocol end to end (settings, prompts, generation, grading, metrics);
- :mod:`~trl_igrpo.eval.results`: ``results.json``, ``results.md`` and ``samples.jsonl``;
- :mod:`~trl_igrpo.eval.vllm_backend`: the optional vLLM backend;
- :mod:`~trl_igrpo.eval.cli`: the command line.

Importing this package loads only the pure modules; torch and transformers load with the generation code.
"""

from .data import PRESETS, BenchmarkProblem, DataError, load_problems
from .metrics import majority_vote_credit, pass_at_k

__all__ = ["PRESETS", "BenchmarkProblem", "DataError", "load_problems", "majority_vote_credit", "pass_at_k"]
