"""Moved to :mod:`trl_igrpo.eval.generation` (the evaluation package); this module re-exports it for old imports."""

from .eval.generation import evaluate_accuracy, generate_draft_then_refine, generate_single_pass

__all__ = ["evaluate_accuracy", "generate_draft_then_refine", "generate_single_pass"]
