"""iGRPO (Hatamizadeh et al., arXiv 2602.09000): best-of-N drafts, then GRPO on draft-conditioned refinements.

- :mod:`~trl_igrpo.igrpo.config`: :class:`IGRPOConfig`;
- :mod:`~trl_igrpo.igrpo.trainer`: :class:`IGRPOTrainer` (the only change to GRPO is the rollout: draft, rank,
  condition, refine);
- :mod:`~trl_igrpo.igrpo.draft_source`: Stage 1 behind one question, "the N drafts of these prompts";
- :mod:`~trl_igrpo.igrpo.prefetch`: the draft source of ``prefetch_drafts=True`` and everything it keeps;
- :mod:`~trl_igrpo.igrpo.drafts`: the pure functions (draft selection, Stage-2 prompt, the template guard);
- :mod:`~trl_igrpo.igrpo.draft_text`: the draft in q' as text, never control tokens.
"""

from typing import TYPE_CHECKING

from ..data.prompts import IGRPO_SYSTEM_PROMPT
from .config import IGRPOConfig
from .drafts import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    build_refinement_prompt,
    drafts_missing_from_prompts,
    select_drafts,
)

if TYPE_CHECKING:
    from .trainer import IGRPOTrainer

__all__ = [
    "DEFAULT_REFINEMENT_INSTRUCTION",
    "DEFAULT_REFINEMENT_TEMPLATE",
    "IGRPO_SYSTEM_PROMPT",
    "IGRPOConfig",
    "IGRPOTrainer",
    "build_refinement_prompt",
    "drafts_missing_from_prompts",
    "select_drafts",
]


def __getattr__(name: str):
    if name == "IGRPOTrainer":  # imported lazily, so building the CLI parser (IGRPOConfig) does not load the trainer
        from .trainer import IGRPOTrainer

        return IGRPOTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
