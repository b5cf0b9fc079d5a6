"""Configuration for :class:`~trl_igrpo.IGRPOTrainer` (iGRPO, arXiv 2602.09000)."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from ..core.config import GRPOBaseConfig, PinnedSettings
from ..rewards.aggregation import AGGREGATIONS
from .drafts import (
    CONVERSATIONAL_DRAFT_STYLES,
    DEFAULT_REFINEMENT_INSTRUCTION,
    DEFAULT_REFINEMENT_TEMPLATE,
    template_placeholders,
)
from .trajectories import DEFAULT_TRAJECTORY_TEMPLATE

#: Loss types TRL 1.16's GRPOTrainer implements (TRL itself only checks this inside the first loss computation).
SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
DRAFT_SELECTION_STRATEGIES = ("best", "random")


@dataclass
class IGRPOConfig(GRPOBaseConfig):
    r"""
    Configuration class for the [`~trl_igrpo.IGRPOTrainer`]: two-stage GRPO with best-draft self-conditioning
    ([iGRPO](https://huggingface.co/papers/2602.09000), Hatamizadeh et al., 2026).

    Every step, Stage 1 samples `num_drafts` (N) drafts per prompt from the current policy without gradient, scores
    them with the training reward functions and weights, and keeps one (the best). Stage 2 appends that draft to the
    prompt and runs TRL's normal GRPO update on `num_generations` (G) refinements of the longer prompt: log-probs, the
    ratio, KL and advantages are all conditioned on prompt + draft, and only refinement tokens are trained. At test
    time the model answers in one pass from the original prompt.

    This class includes only the parameters that are specific to iGRPO, and the GRPO parameters whose defaults follow
    the paper; everything else is [`~trl.GRPOConfig`], and the fields every GRPO-based trainer of the package shares
    (checks, vLLM weight sync, pass-rate curriculum, dynamic sampling; all off by default) are those of
    [`~trl_igrpo.core.GRPOBaseConfig`]. With `dynamic_sampling=True` a refill re-runs both stages for the new prompts.

    Paper settings (§4.1, App. C, Table S.2), for a matched budget of N + G = 8 rollouts per prompt against GRPO with
    G = 8: `num_drafts=4`, `num_generations=4`, `loss_type="grpo"`, `beta=0.0` (no reference model),
    `temperature=0.7`, `learning_rate=1e-6`, `lr_scheduler_type="cosine_with_min_lr"` with
    `lr_scheduler_kwargs={"min_lr_rate": 0.1}`, `warmup_steps=0.1` (a fraction of the steps: transformers 5 replaced
    `warmup_ratio`), `max_completion_length=4096`, one epoch, accuracy + format rewards with
    `reward_weights=[1.0, 1.0]`, bf16 and vLLM generation. The paper does not give the clip ε (TRL's 0.2 is kept) nor
    the text that joins prompt and draft (ours is configurable below).

    Batch arithmetic: each process's generation batch (`per_device_train_batch_size * steps_per_generation`
    completions) must hold whole groups of G, so that a prompt's group never splits across processes and Stage 1 sees
    each unique prompt once (`inputs[::G]`). Stage 1 then generates `N * local_batch / G` drafts per process.

    Parameters:
        > Parameters that control the drafts (Stage 1)

        num_drafts (`int`, *optional*, defaults to `4`):
            N, drafts sampled per unique prompt in Stage 1 (>= 1). The paper's main setting is N = G = 4.
        max_draft_length (`int` or `None`, *optional*, defaults to `None`):
            Maximum new tokens per draft; `None` uses `max_completion_length` (the paper uses one cap for both).
        draft_selection (`str`, *optional*, defaults to `"best"`):
            `"best"`: argmax of the scalar Stage 2's advantage is monotone in (first index on ties; unscorable drafts
            rank last), as in the paper: the weighted reward sum under
            `multi_objective_aggregation="sum_then_normalize"`, or [GDPO](https://huggingface.co/papers/2601.05242)'s
            per-function z-scores within the N drafts under `"normalize_then_sum"`. `"random"`: a uniformly random
            draft, for ablations.
        draft_success_threshold (`float`, *optional*, defaults to `0.0`):
            A draft "succeeds" when its weighted reward is above this; `igrpo/all_drafts_failed_frac` reports prompts
            where no draft did. With accuracy + format rewards at weights 1/1, 1.0 means "correct answer". Metrics
            only.
        prefetch_drafts (`bool`, *optional*, defaults to `False`):
            Sample the *next* generation batch's drafts in the same generation call as this batch's refinements, so a
            step runs one generation round instead of two. Drafts are then one policy update older than the
            refinements they condition (logged as `igrpo/draft_policy_lag`; 0 within an optimizer step that
            generates several times); refinements, log-probs and the update stay on-policy. Works with any
            `gradient_accumulation_steps`. The paper samples both stages from the same policy, hence off by default.
            Recommended on a GPU where generation is latency-bound (transformers generation; vLLM with long drafts):
            on one H200 it took iGRPO's step from 1.85x to 0.98x of GRPO's at 1.02x its peak memory. No gain on CPU,
            where the engine is compute-bound (see the docs' "When to turn it on"). Needs
            `max_draft_length <= max_completion_length`, and `num_drafts == num_generations` in vLLM server mode.

        > Parameters that control the refinement prompt (Stage 2)

        strip_draft_think (`bool`, *optional*, defaults to `False`):
            Keep only the text after the draft's last `</think>` before appending it (the paper does not say; off
            keeps the literal Concat(q, d̂), reasoning included).
        refinement_template (`str`, *optional*, defaults to `DEFAULT_REFINEMENT_TEMPLATE`):
            A `str.format` template with exactly the placeholders `{prompt}` and `{draft}`: the whole plain-text
            prompt, or the last user message of a conversational prompt (`"append_to_user"`). The default is
            [`~trl_igrpo.igrpo.drafts.DEFAULT_REFINEMENT_TEMPLATE`].
        refinement_instruction (`str`, *optional*, defaults to `DEFAULT_REFINEMENT_INSTRUCTION`):
            `conversational_draft_style="assistant_turn"` only: the user message that follows the draft. The default
            is [`~trl_igrpo.igrpo.drafts.DEFAULT_REFINEMENT_INSTRUCTION`].
        trajectory_template (`str`, *optional*, defaults to `DEFAULT_TRAJECTORY_TEMPLATE`):
            With `tools`, `environment_factory` or `rollout_func` (a draft is a whole trajectory): the
            `refinement_template` of a trajectory, with `{draft}` its transcript (every turn, tool call and tool
            result) and `{prompt}` the last user message. The default,
            [`~trl_igrpo.igrpo.trajectories.DEFAULT_TRAJECTORY_TEMPLATE`], puts the task last, so an environment's
            `reset` observation, which TRL appends to the last user message, follows the task as in GRPO
            (docs/agents.md).
        conversational_draft_style (`str`, *optional*, defaults to `"append_to_user"`):
            Where a conversational prompt gets the draft. `"append_to_user"` renders `refinement_template` into the
            last user message, which every chat template shows verbatim, so the model sees the whole draft.
            `"assistant_turn"` adds the draft as an earlier assistant turn plus a user turn with
            `refinement_instruction`; the chat templates of reasoning models (DeepSeek-R1-Distill, Qwen3, Nemotron 3,
            ...) delete `<think>` reasoning from earlier assistant turns, so there the model would see only the
            draft's answer (the runtime guard below then stops the run).
        verify_draft_in_prompt (`bool`, *optional*, defaults to `True`):
            On every step, check that the rendered Stage-2 prompt of each prompt group holds the whole selected draft
            at its place, and that its tokens decode to it, and raise before generating refinements if a chat template
            dropped any of it. Costs one render, one tokenization and one decode per prompt group (see
            docs/igrpo.md). Whatever this says, the draft enters the prompt as text: a draft that spells a control
            token (`<|im_end|>`) never becomes one.

        > Parameters that control evaluation

        two_stage_eval (`bool`, *optional*, defaults to `False`):
            Evaluate with draft -> refine instead of the paper's single-pass protocol.

        > Parameters whose defaults follow the paper instead of GRPOConfig

        loss_type (`str`, *optional*, defaults to `"grpo"`):
            Loss aggregation; the paper's Eq. 5 (token mean per sequence, then group mean) is `"grpo"`, where TRL
            defaults to `"dapo"`. Every loss type TRL 1.16 implements works: see `SUPPORTED_LOSS_TYPES`.
        num_generations (`int`, *optional*, defaults to `4`):
            G, refinements per prompt in Stage 2 (the paper: 4, for a budget of N + G = 8).
        temperature (`float`, *optional*, defaults to `0.7`):
            Sampling temperature of both stages (the paper: 0.7). Must be > 0.
    """

    num_drafts: int = field(
        default=4,
        metadata={"help": "N: drafts per prompt in Stage 1 (paper: 4, with num_generations=4, budget N + G = 8)."},
    )
    max_draft_length: int | None = field(
        default=None, metadata={"help": "Max new tokens per draft; None uses max_completion_length."}
    )
    draft_selection: str = field(
        default="best", metadata={"help": "'best' (paper: argmax of the summed weighted reward) or 'random'."}
    )
    strip_draft_think: bool = field(
        default=False, metadata={"help": "Keep only the draft's text after its last </think> before conditioning."}
    )
    refinement_template: str = field(
        default=DEFAULT_REFINEMENT_TEMPLATE,
        metadata={"help": "Stage-2 template with {prompt} and {draft} (plain prompt, or last user message)."},
    )
    refinement_instruction: str = field(
        default=DEFAULT_REFINEMENT_INSTRUCTION,
        metadata={"help": "conversational_draft_style='assistant_turn': the user turn after the draft."},
    )
    trajectory_template: str = field(
        default=DEFAULT_TRAJECTORY_TEMPLATE,
        metadata={"help": "Multi-turn drafts: template with {draft} (the trajectory's transcript) and {prompt}."},
    )
    conversational_draft_style: str = field(
        default="append_to_user",
        metadata={
            "help": "'append_to_user' (the draft inside the last user message; every template keeps it) or "
            "'assistant_turn' (reasoning templates delete the draft's <think> part there)."
        },
    )
    verify_draft_in_prompt: bool = field(
        default=True,
        metadata={"help": "Raise if a rendered Stage-2 prompt does not contain the whole selected draft."},
    )
    draft_success_threshold: float = field(
        default=0.0, metadata={"help": "A draft succeeds when its weighted reward exceeds this (for metrics only)."}
    )
    prefetch_drafts: bool = field(
        default=False,
        metadata={
            "help": "Sample the next batch's drafts together with this batch's refinements (one generation round per "
            "step; drafts one policy update older)."
        },
    )
    two_stage_eval: bool = field(
        default=False, metadata={"help": "Evaluate draft -> refine instead of single pass (paper: single pass)."}
    )
    # Paper defaults that differ from GRPOConfig.
    loss_type: str = field(
        default="grpo",
        metadata={
            "help": "Paper Eq. 5 aggregation ('grpo'); any TRL loss type works: " + ", ".join(SUPPORTED_LOSS_TYPES)
        },
    )
    num_generations: int | None = field(
        default=4, metadata={"help": "G: refinements per prompt in Stage 2 (paper: 4)."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature for both stages (paper: 0.7)."})

    _OPERATIONAL_FIELDS = GRPOBaseConfig._OPERATIONAL_FIELDS | {
        "verify_draft_in_prompt",
        "draft_success_threshold",
        "two_stage_eval",
    }

    def __post_init__(self):
        self._validate_igrpo_fields()
        super().__post_init__()
        self._validate_igrpo_batch_layout()

    def _pinned_settings(self, checkpoint: str) -> PinnedSettings | None:
        """With ``prefetch_drafts``, a checkpoint holding prefetched drafts pins the settings they were sampled for."""
        from .prefetch import PREFETCH_FILE

        if not (self.prefetch_drafts and glob.glob(os.path.join(checkpoint, PREFETCH_FILE.format(rank="*")))):
            return None
        return PinnedSettings(
            names=("num_drafts", "max_draft_length"),
            state="drafts prefetched for the next batch (prefetch_drafts=True)",
            discard="delete its igrpo_prefetched_drafts_rank*.json files to sample that batch's drafts anew with the "
            "new setting",
        )

    def _validate_igrpo_fields(self) -> None:
        if not isinstance(self.num_drafts, int) or self.num_drafts < 1:
            raise ValueError(f"num_drafts (N) must be an integer >= 1, got {self.num_drafts!r}.")
        if self.max_draft_length is not None and self.max_draft_length < 1:
            raise ValueError(f"max_draft_length must be >= 1 or None, got {self.max_draft_length}.")
        if self.draft_selection not in DRAFT_SELECTION_STRATEGIES:
            raise ValueError(
                f"draft_selection must be one of {DRAFT_SELECTION_STRATEGIES}, got {self.draft_selection!r}."
            )
        if self.conversational_draft_style not in CONVERSATIONAL_DRAFT_STYLES:
            raise ValueError(
                f"conversational_draft_style must be one of {CONVERSATIONAL_DRAFT_STYLES}, "
                f"got {self.conversational_draft_style!r}."
            )
        for name in ("refinement_template", "trajectory_template"):
            try:
                placeholders = template_placeholders(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name} is not a valid format string: {error}") from error
            if placeholders != {"prompt", "draft"}:
                raise ValueError(
                    f"{name} must contain exactly the placeholders {{prompt}} and {{draft}} (escape other braces as "
                    f"{{{{ }}}}), found {sorted(placeholders)}."
                )
        if not self.refinement_instruction or not self.refinement_instruction.strip():
            raise ValueError("refinement_instruction must be a non-empty string.")
        if (
            self.prefetch_drafts
            and self.max_draft_length is not None
            and (self.max_draft_length > self.max_completion_length)
        ):
            raise ValueError(
                f"prefetch_drafts=True samples drafts inside the refinement generation call, capped at "
                f"max_completion_length ({self.max_completion_length}); max_draft_length ({self.max_draft_length}) "
                "cannot exceed it. Lower max_draft_length or turn prefetch_drafts off."
            )
        if self.multi_objective_aggregation not in AGGREGATIONS:
            raise ValueError(
                f"multi_objective_aggregation must be one of {AGGREGATIONS}, got {self.multi_objective_aggregation!r}."
            )
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {SUPPORTED_LOSS_TYPES}, got {self.loss_type!r}.")

    def _validate_igrpo_batch_layout(self) -> None:
        local_generation_batch = self.per_device_train_batch_size * self.steps_per_generation
        if local_generation_batch % self.num_generations != 0:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) * steps_per_generation "
                f"({self.steps_per_generation}) = {local_generation_batch} must be divisible by num_generations "
                f"({self.num_generations}): iGRPO needs every process to hold whole prompt groups so that Stage 1 "
                "sees each prompt once and a group never splits across processes."
            )
        if self.two_stage_eval and self.eval_strategy != "no":
            num_eval_generations = self.num_generations_eval or self.num_generations
            if self.per_device_eval_batch_size % num_eval_generations != 0:
                raise ValueError(
                    f"per_device_eval_batch_size ({self.per_device_eval_batch_size}) must be divisible by "
                    f"num_generations_eval ({num_eval_generations}) when two_stage_eval=True."
                )
