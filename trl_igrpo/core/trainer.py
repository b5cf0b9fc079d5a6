"""``GRPOBaseTrainer``: TRL's ``GRPOTrainer`` plus what every GRPO-based trainer of trl-igrpo shares.

A rollout round is one overridable method, :meth:`GRPOBaseTrainer._rollout` (TRL's generation, rewards and advantages
for a batch of rows). Subclasses change what reaches TRL (iGRPO: prompts conditioned on a draft) and call
``super()._rollout(rows)``; every optional behaviour is a helper object switched on by a config field, not a base class
whose position in the MRO matters.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from trl import GRPOTrainer

from ..curriculum.dynamic_sampling import DynamicSampler, RefillPosition
from ..curriculum.sampler import build_progressive_sampler, curriculum_batch_index, read_pass_rates
from ..hub.citations import DAPO, LLAMA_NEMOTRON, MethodCitation
from ..hub.mixin import HubMixin
from ..rewards.registry import resolve_reward_funcs
from ..utils.context import check_context_budget, longest_prompt_tokens, model_context_length
from ..utils.distributed import check_requested_engine
from ..utils.extras import require_vllm_package
from ..utils.model_path import check_model_path, default_output_dir
from ..vllm.engine import WeightSyncVLLMGeneration, use_vllm_engine
from .checks import (
    NoOptimizerStepCallback,
    UnscorableBatchCounter,
    check_dataset_fills_a_batch,
    check_generation_settings,
    checked_reward_funcs,
    run_reward_data_checks,
)
from .config import GRPOBaseConfig
from .prefill import effective_generation_config, shared_prompt_prefill
from .run_logging import log_answer_column, use_compact_console
from .run_settings import RunSettingsCallback, check_resumed_settings

__all__ = ["GRPOBaseTrainer"]


class GRPOBaseTrainer(HubMixin, GRPOTrainer):
    """[`~trl.GRPOTrainer`] with the package's checks, vLLM weight sync, curriculum, dynamic sampling and Hub cards.

    Takes the arguments of ``GRPOTrainer`` with a [`GRPOBaseConfig`] (or a subclass). What it adds, each behind one
    switch of that config:

    - **checks** (always on): an empty or too small dataset, prompts + completions beyond the model context (at
      construction and on every tokenized batch), data a reward function refuses (its ``check_dataset`` hook on the
      first 256 rows: mostly unreadable gold answers, contradicting reasoning modes), a reward function that returns
      anything but one number or None per completion, and batches that no reward function could score
      (``max_unscorable_reward_batches``) stop the run with an error naming the problem and the fix; a run that ends
      without an optimizer step raises. String ``reward_funcs`` name the package's rewards (``"math_accuracy"``)
      before TRL would read them as Hub reward models (:mod:`trl_igrpo.rewards.registry`);
    - **vLLM** (``use_vllm``): weight sync with or without CUDA and context checks (:mod:`trl_igrpo.vllm`);
    - **pass-rate curriculum** (``progressive_batching``) and **dynamic sampling** (``dynamic_sampling``), see
      :mod:`trl_igrpo.curriculum`;
    - **Hub cards** citing every method used, and a token check before any push (:class:`~trl_igrpo.hub.HubMixin`).

    Subclasses change one rollout round by overriding :meth:`_rollout` (and :meth:`_extra_prompt_tokens` when their
    prompts grow). TRL methods overridden here, and why:

    - ``__init__``: reward names, the checks above, generation settings TRL's transformers rollout cannot use
      (``num_return_sequences``, ``stop_strings``) refused before any compute, the vLLM generation class, the helper
      objects;
    - ``_generate_and_score_completions``: one :meth:`_rollout`, or dynamic sampling around it;
    - ``_calculate_rewards``: reward outputs validated per function, the unscorable-batch check and per-function
      ``unscorable_frac``, and the rewards of the final rollouts for dynamic sampling;
    - ``_tokenize_prompts``: every tokenized batch must fit the context with its completion budget;
    - ``_get_train_sampler``: the curriculum sampler when ``progressive_batching=True``;
    - ``_generate_single_turn``: with transformers generation, each distinct prompt is encoded once for its whole
      group (``share_prompt_prefill``; same completions, less compute);
    - ``train`` (transformers' Trainer): on resume, the run's settings recorded in the checkpoint are compared with
      the new ones before the first step (:mod:`trl_igrpo.core.run_settings`: an error where a change breaks the run, a
      warning listing every other change);
    - from ``HubMixin``: ``create_model_card``, ``init_hf_repo``, ``push_to_hub``, ``save_model``.
    """

    args: GRPOBaseConfig
    _tag_names = ["trl", "grpo", "trl-igrpo"]
    config_class: type[GRPOBaseConfig] = GRPOBaseConfig
    #: The completions-table column with each trained completion's final answer (``log_completions=True``).
    _answer_column = "answer"

    def __init__(self, model, reward_funcs=None, args: GRPOBaseConfig | None = None, train_dataset=None, **kwargs):
        model = check_model_path(model)  # a missing local directory: one line naming it, not a Hub-id error
        if args is None:
            args = self.config_class(default_output_dir(model, self._name))
        if not isinstance(args, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__} (it carries the curriculum, dynamic "
                f"sampling, vLLM sync and check fields), got {type(args).__name__}."
            )
        self._check_train_dataset(train_dataset, args)
        # "math_accuracy" means the package's reward, not a Hub model id (TRL reads every string as one)
        reward_funcs = resolve_reward_funcs(reward_funcs, revision=(args.model_init_kwargs or {}).get("revision"))
        if args.use_vllm:
            require_vllm_package("use_vllm=True")  # TRL's own error names trl[vllm], not this package's extra
        self._max_new_tokens = int(args.max_completion_length or 0)  # the completion budget of the batch tokenized
        self._max_new_tokens_field = "max_completion_length"
        self._capturing_rollout_rewards = False
        self._longest_prompt: int | None = None
        self.last_rollout_rewards: torch.Tensor | None = None
        self.curriculum_sampler = None
        with use_vllm_engine(type(self), self._make_vllm_generation):
            super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        check_requested_engine(self.accelerator)  # FSDP/DeepSpeed requested but DDP set up: stop, naming the fix
        if not self.use_vllm:  # settings TRL's transformers rollout cannot use: stop now, not inside the first step
            policy = self.accelerator.unwrap_model(self.model)
            check_generation_settings(effective_generation_config(policy, self.generation_config))
        self.unscorable_batches = UnscorableBatchCounter(args.max_unscorable_reward_batches)
        self.dynamic_sampler = None
        if args.dynamic_sampling:
            self.dynamic_sampler = DynamicSampler(
                args, self.train_dataset, self.accelerator, self.reward_weights, self._tokenizer.pad_token_id
            )
        if args.progressive_batching:
            if self.train_dataset is None:
                raise ValueError("`progressive_batching=True` needs a train dataset with a pass-rate column")
            read_pass_rates(self.train_dataset, args.pass_rate_column)  # fail before any compute
        self.context_length = model_context_length(self.accelerator.unwrap_model(self.model), args.context_length)
        check_context_budget(
            self.context_length,
            self._longest_train_prompt(),
            int(args.max_completion_length or 0),
            draft_length=self._extra_prompt_tokens(),
            where=self._context_description(),
            fix=self._context_fix(),
        )
        # rewards refuse data they cannot score (mostly unreadable gold answers, contradicting reasoning modes)
        run_reward_data_checks(
            self.reward_funcs, self.train_dataset, chat_template_kwargs=self.chat_template_kwargs or None
        )
        self.add_callback(NoOptimizerStepCallback())
        self.add_callback(RunSettingsCallback(self))  # recorded in each checkpoint, compared on resume
        use_compact_console(self)

    # ------------------------------------------------------------------------------------------------------------------
    # Hooks for subclasses.
    def _rollout(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """One rollout round: TRL's generation, rewards and advantages for ``inputs`` (G consecutive rows per prompt).

        The gathered rewards of these rows are left in :attr:`last_rollout_rewards` (dynamic sampling reads them).
        """
        self.last_rollout_rewards = None
        self._capturing_rollout_rewards = True
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._capturing_rollout_rewards = False

    def _scored_rollout(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor | None]:
        """:meth:`_rollout` and the gathered rewards of its final rollouts (what dynamic sampling judges groups by)."""
        output = self._rollout(inputs)
        return output, self.last_rollout_rewards

    def _extra_prompt_tokens(self) -> int:
        """Tokens a rollout adds to a dataset prompt before generation (iGRPO: the draft); 0 here."""
        return 0

    def _check_train_dataset(self, dataset, args: GRPOBaseConfig) -> None:
        """Refuse data that cannot train: no ``prompt`` column, no rows, fewer rows than one generation batch."""
        columns = getattr(dataset, "column_names", None)
        if isinstance(columns, list) and "prompt" not in columns:
            raise ValueError(f"train_dataset needs a 'prompt' column (str or list of messages); found {columns}.")
        check_dataset_fills_a_batch(dataset, args.generation_batch_size // args.num_generations)

    # ------------------------------------------------------------------------------------------------------------------
    # TRL / transformers overrides.
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            check_resumed_settings(self, resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.dynamic_sampler is None or not self.model.training:
            return self._rollout(inputs)
        position = RefillPosition(
            global_step=self.state.global_step,
            accumulation_position=self._step % self.args.gradient_accumulation_steps,
            curriculum=self.curriculum_sampler,
            curriculum_batch=self.curriculum_batch_index(),
        )
        output, metrics = self.dynamic_sampler.fill(inputs, self._scored_rollout, position)
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        with checked_reward_funcs(self):  # a string or a list per completion fails naming the function
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        stage = "final rollouts" if self._capturing_rollout_rewards else "drafts"
        fraction = self.unscorable_batches.check(rewards, self.reward_func_names, stage=stage)
        prefix = "rewards" if self._capturing_rollout_rewards else "rewards/drafts"
        self._metrics[mode][f"{prefix}/unscorable_frac"].append(fraction)
        for name, column in zip(self.reward_func_names, rewards.unbind(dim=1)):  # e.g. rows with an unreadable gold
            self._metrics[mode][f"{prefix}/{name}/unscorable_frac"].append(torch.isnan(column).float().mean().item())
        self._metrics[mode]["rewards/unscorable_batches"] = [float(self.unscorable_batches.count)]
        if self._capturing_rollout_rewards:
            self.last_rollout_rewards = rewards
            log_answer_column(self, self._answer_column, completions)  # log_completions: each sample's final answer
        return rewards

    def _tokenize_prompts(self, prompts: list):
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        self._check_prompts_fit(prompt_ids)
        return prompt_ids, images, multimodal_fields

    def _check_prompts_fit(self, prompt_ids: list[list[int]]) -> None:
        """Every tokenized prompt of a batch must fit the context with the completion budget being generated."""
        if self.context_length is not None and len(prompt_ids):
            check_context_budget(
                self.context_length,
                max(len(ids) for ids in prompt_ids),
                self._max_new_tokens,
                where=self._context_description(),
                completion_name=self._max_new_tokens_field,
                fix=self._context_fix(),
            )

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        generate = super()._generate_single_turn
        if (
            self.use_vllm
            or self.use_transformers_continuous_batching
            or not self.args.share_prompt_prefill
            or images is not None
            or multimodal_fields
        ):
            return generate(prompt_ids, images, multimodal_fields, num_generations, **kwargs)
        with shared_prompt_prefill(self.accelerator.unwrap_model(self.model_wrapped)):
            return generate(prompt_ids, images, multimodal_fields, num_generations, **kwargs)

    def _get_train_sampler(self, dataset=None):
        if not self.args.progressive_batching:
            return super()._get_train_sampler(dataset)
        self.curriculum_sampler = build_progressive_sampler(
            self.args, self.train_dataset, self.num_generations, self.num_iterations
        )
        return self.curriculum_sampler

    # ------------------------------------------------------------------------------------------------------------------
    # Helpers.
    def curriculum_batch_index(self) -> int:
        """Index (within the epoch) of the curriculum batch the current optimizer step trains on."""
        return curriculum_batch_index(self.state.global_step, self.args, self.num_iterations, self.curriculum_sampler)

    @contextlib.contextmanager
    def _completion_budget(self, max_new_tokens: int, field_name: str):
        """Generate at most ``max_new_tokens`` per completion inside the block, on every generation backend.

        TRL's ``_generate_single_turn`` takes no length argument: it reads the budget from ``generation_config``
        (transformers), ``vllm_generation.max_completion_length`` (vLLM) and ``generation_kwargs``, so those are set
        for the block and restored on exit (with this trainer's own ``_max_new_tokens``, which the context check reads).
        """
        targets: list[tuple[Any, str]] = [(self, "_max_new_tokens"), (self, "_max_new_tokens_field")]
        values: list[Any] = [max_new_tokens, field_name]
        if getattr(self, "generation_config", None) is not None:
            targets.append((self.generation_config, "max_new_tokens"))
            values.append(max_new_tokens)
        if getattr(self, "vllm_generation", None) is not None:
            targets.append((self.vllm_generation, "max_completion_length"))
            values.append(max_new_tokens)
        saved = [getattr(obj, name) for obj, name in targets]
        kwargs = self.generation_kwargs if isinstance(getattr(self, "generation_kwargs", None), dict) else None
        saved_kwarg = kwargs.get("max_new_tokens") if kwargs is not None else None
        try:
            for (obj, name), value in zip(targets, values):
                setattr(obj, name, value)
            if kwargs is not None:
                kwargs["max_new_tokens"] = max_new_tokens
            yield
        finally:
            for (obj, name), value in zip(targets, saved):
                setattr(obj, name, value)
            if kwargs is not None:
                kwargs["max_new_tokens"] = saved_kwarg

    def _longest_train_prompt(self) -> int:
        """Tokens in the longest of the first 2048 training prompts (chat template applied); computed once."""
        if self._longest_prompt is None:
            self._longest_prompt = longest_prompt_tokens(
                self.train_dataset,
                self._tokenizer,
                self.chat_template_kwargs or None,  # type: ignore[arg-type]
            )
        return self._longest_prompt

    def _context_description(self) -> str:
        source = "context_length" if self.args.context_length is not None else "max_position_embeddings"
        return f"The policy's context ({source}={self.context_length})"

    def _context_fix(self) -> str:
        return (
            "Shorten the prompts or lower max_completion_length"
            + (" / max_draft_length" if self._extra_prompt_tokens() else "")
            + "; set context_length only if the model really attends further (e.g. RoPE scaling)."
        )

    def _make_vllm_generation(self, **generation_kwargs):
        """Builds the package's ``VLLMGeneration`` inside ``GRPOTrainer.__init__`` (:mod:`trl_igrpo.vllm.engine`)."""
        args = self.args
        return WeightSyncVLLMGeneration(
            weight_sync=args.vllm_weight_sync,
            weight_sync_dir=args.vllm_weight_sync_dir,
            context_budget=(self._longest_train_prompt(), self._extra_prompt_tokens()),
            engine_kwargs=args.vllm_engine_kwargs,
            **generation_kwargs,
        )

    def _data_methods_used(self) -> list[MethodCitation]:
        """Hub card: the curriculum and DAPO dynamic sampling when switched on."""
        return ([LLAMA_NEMOTRON] if self.args.progressive_batching else []) + (
            [DAPO] if self.args.dynamic_sampling else []
        )
