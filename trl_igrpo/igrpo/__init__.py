"""iGRPO (Hatamizadeh et al., arXiv 2602.09000): best-of-N drafts, then GRPO on draft-conditioned refinements.

- :mod:`~trl_igrpo.igrpo.config`: :class:`IGRPOConfig`;
- :mod:`~trl_igrpo.igrpo.trainer`: :class:`IGRPOTrainer` (the only change to GRPO is the rollout);
- :mod:`~trl_igrpo.igrpo.drafts`: the pure functions (draft selection, Stage-2 prompt, the template guard).
"""

from .config import IGRPOConfig
from .drafts import (
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    IGRPO_SYSTEM_PROMPT,
    build_refinement_prompt,
    drafts_missing_from_prompts,
    select_drafts,
)
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
