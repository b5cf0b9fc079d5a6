"""The config every GRPO-based trainer of the package takes (``IGRPOConfig``, ``CurriculumGRPOConfig``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from trl import GRPOConfig

from ..curriculum.config import CurriculumConfigMixin
from ..vllm.config import VLLMSyncConfigMixin

__all__ = ["GRPOBaseConfig", "PinnedSettings"]


class PinnedSettings(NamedTuple):
    """Settings that state saved in a checkpoint was made for: resuming with another value raises (see
    :mod:`~trl_igrpo.core.run_settings`)."""

    names: tuple[str, ...]
    #: What the checkpoint holds, e.g. "drafts prefetched for the next batch (prefetch_drafts=True)".
    state: str
    #: How to drop that state instead of keeping the settings, e.g. "delete its ... files to ...".
    discard: str


@dataclass
class GRPOBaseConfig(CurriculumConfigMixin, VLLMSyncConfigMixin, GRPOConfig):
    r"""
    Configuration class shared by the package's GRPO-based trainers ([`~trl_igrpo.IGRPOConfig`],
    [`~trl_igrpo.CurriculumGRPOConfig`], [`~trl_igrpo.OnlineRPOConfig`]): [`~trl.GRPOConfig`] plus the fields below.

    GRPOConfig's `temperature` must be > 0 here: GRPO needs distinct sampled completions and divides logits by it for
    log-probabilities, so 0 (greedy) is refused at construction with the reason (greedy evaluation: `trl-igrpo eval`).

    The mixins only add fields (each validated by its own method, called below), so their order does not matter:
    [`~trl_igrpo.curriculum.CurriculumConfigMixin`] (pass-rate curriculum, dynamic sampling; off by default) and
    [`~trl_igrpo.vllm.VLLMSyncConfigMixin`] (vLLM weight sync); their pages list their fields.

    Parameters:
        > Parameters that control the early checks

        max_unscorable_reward_batches (`int`, *optional*, defaults to `0`):
            How many reward batches in which every reward function returned None/NaN for every completion a run
            tolerates (each one is a step without learning signal, counted in `rewards/unscorable_batches`) before it
            stops with an error naming the reward functions. 0 stops at the first.
        context_length (`int` or `None`, *optional*, defaults to `None`):
            Tokens the policy can attend to. `None` reads the model config's `max_position_embeddings`. Prompts
            (plus, for iGRPO, the draft) plus `max_completion_length` must fit: checked at construction on the
            longest of the first 2048 training prompts and again on every tokenized batch.

        > Parameters that control generation with transformers

        share_prompt_prefill (`bool`, *optional*, defaults to `True`):
            Encode each distinct prompt once for its whole group of completions and copy its key/value cache to every
            row and beam (:mod:`trl_igrpo.core.prefill`). Only the duplicated prompt encoding is skipped: next-token
            scores agree to rounding (about 1e-6); completions and old log-probs are tested identical to the plain
            path for greedy, sampling, beam search, `repetition_penalty`, `min_new_tokens`, `top_k`/`top_p`/`min_p`
            and the model's own `generation_config`, on full, LoRA, Tied-LoRA and 4-bit models. Settings whose cache
            it cannot share (static caches, assisted decoding, ...) get the plain path. vLLM does this itself (prefix
            caching).
    """

    max_unscorable_reward_batches: int = field(
        default=0,
        metadata={
            "help": "Reward batches with no score at all (every function None/NaN) tolerated before stopping; 0 stops "
            "at the first."
        },
    )
    share_prompt_prefill: bool = field(
        default=True,
        metadata={
            "help": "transformers generation: encode each distinct prompt once per group (scores equal to rounding)."
        },
    )
    context_length: int | None = field(
        default=None,
        metadata={"help": "Usable context of the policy; None reads max_position_embeddings from the model config."},
    )

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["vllm_engine_kwargs"]
    #: Fields a resumed run may change without a word: they change how, not what, the run trains
    #: (:mod:`~trl_igrpo.core.run_settings` compares every other field with the checkpoint's).
    _OPERATIONAL_FIELDS = frozenset(
        {
            "vllm_weight_sync",
            "vllm_weight_sync_dir",
            "vllm_engine_kwargs",
            "share_prompt_prefill",
            "max_unscorable_reward_batches",
            "context_length",
        }
    )

    def __post_init__(self):
        self._validate_temperature()
        self._validate_vllm_sync()
        super().__post_init__()
        self._validate_curriculum()
        if not isinstance(self.max_unscorable_reward_batches, int) or self.max_unscorable_reward_batches < 0:
            raise ValueError(
                f"max_unscorable_reward_batches must be an integer >= 0, got {self.max_unscorable_reward_batches!r}."
            )
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"context_length must be >= 1 or None, got {self.context_length}.")

    def _pinned_settings(self, checkpoint: str) -> PinnedSettings | None:
        """Settings that state saved in ``checkpoint`` was made for (a resume that changes one raises); none here."""
        return None

    def _validate_temperature(self) -> None:
        """Refuse ``temperature <= 0``: GRPO needs sampled, distinct completions and finite log-probs.

        TRL divides the policy's logits by the temperature to compute the log-probabilities it trains on, and GRPO's
        advantages compare several completions of one prompt: at 0 (greedy) they would be identical (advantage 0) and
        the log-probabilities infinite, and transformers would advise setting ``do_sample``, which the config does not
        expose. Greedy decoding belongs to evaluation (``trl-igrpo eval --temperature 0 --num_samples 1``).
        """
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(
                f"temperature must be > 0, got {temperature!r}. GRPO-based training samples several completions per "
                "prompt (iGRPO: its drafts too) and computes their log-probabilities from logits / temperature, so "
                "greedy decoding (0) would give identical completions with zero advantage and infinite "
                "log-probabilities. Use a small positive temperature for nearly greedy samples (e.g. 0.1); evaluate "
                "greedily with `trl-igrpo eval --temperature 0 --num_samples 1`."
            )
