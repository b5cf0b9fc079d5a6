"""Configuration for :class:`~trl_igrpo.IGRPOTrainer` (iGRPO, arXiv 2602.09000)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from .curriculum.config import CurriculumConfigMixin
from .igrpo_utils import DEFAULT_REFINEMENT_INSTRUCTION, DEFAULT_REFINEMENT_TEMPLATE, template_placeholders

#: Loss types TRL 1.16's GRPOTrainer implements (TRL itself only checks this inside the first loss computation).
SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
DRAFT_SELECTION_STRATEGIES = ("best", "random")
CONVERSATIONAL_DRAFT_STYLES = ("assistant_turn", "append_to_user")


@dataclass
class IGRPOConfig(CurriculumConfigMixin, GRPOConfig):
    r"""Configuration for iGRPO: two-stage GRPO with best-draft self-conditioning (Hatamizadeh et al., 2026).

    Every step, Stage 1 samples ``num_drafts`` (N) drafts per prompt from the current policy without gradient, scores
    them with the training reward functions and weights, and keeps one (the best). Stage 2 appends that draft to the
    prompt and runs TRL's normal GRPO update on ``num_generations`` (G) refinements of the longer prompt: log-probs,
    the ratio, KL and advantages are all conditioned on prompt + draft, and only refinement tokens are trained. At test
    time the model answers in one pass from the original prompt.

    Only the iGRPO-specific fields are listed; everything else is [`~trl.GRPOConfig`]. Defaults that differ from
    GRPOConfig follow the paper: ``loss_type="grpo"`` (Eq. 5, per-sequence token mean then group mean; TRL defaults to
    ``"dapo"``), ``num_generations=4`` and ``temperature=0.7``.

    Paper settings (§4.1, App. C, Table S.2), for a matched budget of N + G = 8 rollouts per prompt against GRPO with
    G = 8: ``num_drafts=4``, ``num_generations=4``, ``loss_type="grpo"``, ``beta=0.0`` (no reference model),
    ``temperature=0.7``, ``learning_rate=1e-6``, ``lr_scheduler_type="cosine_with_min_lr"`` with
    ``lr_scheduler_kwargs={"min_lr_rate": 0.1}``, ``warmup_steps=0.1`` (a fraction of the steps: transformers 5 replaced ``warmup_ratio``), ``max_completion_length=4096``, one epoch,
    accuracy + format rewards with ``reward_weights=[1.0, 1.0]``, bf16 and vLLM generation. The paper does not give the
    clip ε (TRL's 0.2 is kept) nor the text that joins prompt and draft (ours is configurable below).

    Batch arithmetic: each process's generation batch (``per_device_train_batch_size * steps_per_generation``
    completions) must hold whole groups of G, so that a prompt's group never splits across processes and Stage 1 sees
    each unique prompt once (``inputs[::G]``). Stage 1 then generates ``N * local_batch / G`` drafts per process.

    Args:
        num_drafts (`int`, defaults to `4`):
            N, drafts sampled per unique prompt in Stage 1 (>= 1). The paper's main setting is N = G = 4.
        max_draft_length (`int` or `None`, defaults to `None`):
            Maximum new tokens per draft; `None` uses `max_completion_length` (the paper uses one cap for both).
        draft_selection (`str`, defaults to `"best"`):
            `"best"`: argmax of the weighted reward sum (first index on ties; unscorable drafts rank last) as in the
            paper. `"random"`: a uniformly random draft, for ablations.
        strip_draft_think (`bool`, defaults to `False`):
            Remove the draft's `<think>...</think>` block before appending it (the paper does not say; off keeps the
            literal Concat(q, d̂)).
        refinement_template (`str`):
            For plain-text prompts, a `str.format` template with exactly the placeholders `{prompt}` and `{draft}`.
        refinement_instruction (`str`):
            For conversational prompts with `conversational_draft_style="assistant_turn"`, the user message that
            follows the draft (given as an assistant turn).
        conversational_draft_style (`str`, defaults to `"assistant_turn"`):
            `"assistant_turn"` or `"append_to_user"` (render `refinement_template` into the last user message).
        draft_success_threshold (`float`, defaults to `0.0`):
            A draft "succeeds" when its weighted reward is above this; `igrpo/all_drafts_failed_frac` reports prompts
            where no draft did. With accuracy + format rewards at weights 1/1, 1.0 means "correct answer".
        two_stage_eval (`bool`, defaults to `False`):
            Evaluate with draft -> refine instead of the paper's single-pass protocol.
        vllm_weight_sync (`str`, defaults to `"auto"`):
            How policy weights reach vLLM after each optimizer step (one sync serves both stages): `"nccl"` (TRL's
            path, needs CUDA), `"reload"` (colocate: vLLM's model runner reloads the weights in place) or
            `"filesystem"` (server: safetensors written to `vllm_weight_sync_dir`, then the server reloads them).
            `"auto"` picks `"nccl"` on CUDA and a reload path otherwise. See `trl_igrpo.vllm_sync`.
        vllm_weight_sync_dir (`str` or `None`, defaults to `None`):
            `"filesystem"` only: a directory the server can read (a shared path when it runs on another node);
            `None` uses a temporary directory.
        vllm_engine_kwargs (`dict`, `str` or `None`, defaults to `None`):
            Extra `vllm.LLM(...)` arguments in colocate mode, e.g. `{"quantization": "fp8"}` for FP8 rollouts as in
            Llama-Nemotron, or `{"dtype": "float32"}`. A JSON string works on the command line. Server mode: pass
            them to `trl-igrpo serve` instead.

    The pass-rate curriculum and dynamic-sampling fields of
    [`~trl_igrpo.curriculum.CurriculumConfigMixin`] (`progressive_batching`, `dynamic_sampling`, ...) are available too,
    all off by default; with `dynamic_sampling=True` a refill re-runs both stages for the new prompts.
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
        default=False, metadata={"help": "Strip the draft's <think>...</think> block before conditioning on it."}
    )
    refinement_template: str = field(
        default=DEFAULT_REFINEMENT_TEMPLATE,
        metadata={"help": "Plain-text Stage-2 prompt template with {prompt} and {draft}."},
    )
    refinement_instruction: str = field(
        default=DEFAULT_REFINEMENT_INSTRUCTION,
        metadata={"help": "Conversational prompts: the user turn that follows the draft (an assistant turn)."},
    )
    conversational_draft_style: str = field(
        default="assistant_turn", metadata={"help": "'assistant_turn' or 'append_to_user'."}
    )
    draft_success_threshold: float = field(
        default=0.0, metadata={"help": "A draft succeeds when its weighted reward exceeds this (for metrics only)."}
    )
    two_stage_eval: bool = field(
        default=False, metadata={"help": "Evaluate draft -> refine instead of single pass (paper: single pass)."}
    )
    vllm_weight_sync: str = field(
        default="auto",
        metadata={
            "help": "vLLM weight sync: 'auto' (nccl on CUDA, else reload/filesystem), 'nccl', 'reload', 'filesystem'."
        },
    )
    vllm_weight_sync_dir: str | None = field(
        default=None, metadata={"help": "Directory the vLLM server reloads weights from ('filesystem' sync)."}
    )
    vllm_engine_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": 'Extra vllm.LLM kwargs in colocate mode (JSON string on the CLI), e.g. \'{"quantization": "fp8"}\'.'
        },
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

    def __post_init__(self):
        self._validate_igrpo_fields()
        super().__post_init__()
        self._validate_curriculum()
        self._validate_igrpo_batch_layout()

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["vllm_engine_kwargs"]

    def _validate_igrpo_fields(self) -> None:
        from .vllm_sync import WEIGHT_SYNC_BACKENDS

        if self.vllm_weight_sync not in WEIGHT_SYNC_BACKENDS:
            raise ValueError(f"vllm_weight_sync must be one of {WEIGHT_SYNC_BACKENDS}, got {self.vllm_weight_sync!r}.")
        if isinstance(
            self.vllm_engine_kwargs, str
        ):  # usually already parsed by TrainingArguments (_VALID_DICT_FIELDS)
            import json

            try:
                self.vllm_engine_kwargs = json.loads(self.vllm_engine_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(f"vllm_engine_kwargs must be a dict or a JSON object string: {error}") from error
        if self.vllm_engine_kwargs is not None and not isinstance(self.vllm_engine_kwargs, dict):
            raise ValueError(f"vllm_engine_kwargs must be a dict, got {type(self.vllm_engine_kwargs).__name__}.")
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
        try:
            placeholders = template_placeholders(self.refinement_template)
        except ValueError as error:
            raise ValueError(f"refinement_template is not a valid format string: {error}") from error
        if placeholders != {"prompt", "draft"}:
            raise ValueError(
                "refinement_template must contain exactly the placeholders {prompt} and {draft} (escape other braces "
                f"as {{{{ }}}}), found {sorted(placeholders)}."
            )
        if not self.refinement_instruction or not self.refinement_instruction.strip():
            raise ValueError("refinement_instruction must be a non-empty string.")
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
