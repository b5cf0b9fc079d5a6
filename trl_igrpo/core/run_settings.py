"""The settings a resumed run must keep: recorded in every checkpoint, compared when the run resumes.

A checkpoint restores the weights, optimizer, scheduler, RNG state and step counter, but the arguments of a resumed
run come from its new command line. :class:`RunSettingsCallback` writes the run's rollout settings (the package's
config fields, the TRL fields that shape a rollout batch, the reward functions, the number of processes) to
``trl_igrpo_run_settings.json`` in each checkpoint; :func:`check_resumed_settings` compares them with the resumed
run's before its first step. Per setting:

- **error** where the change breaks the run: a setting that state saved in the checkpoint was made for (the config's
  ``_pinned_settings`` hook; iGRPO: ``num_drafts`` or ``max_draft_length`` while the checkpoint holds prefetched drafts,
  which were sampled for the old value: a changed ``num_drafts`` crashed at the first step with "Got 4 completions but
  6 solutions"). The message names the setting and both fixes.
- **warning** (one block, every change with its old and new value and what it affects) for every other recorded
  setting: the run continues, but it is no longer the run the checkpoint started (a new group size, reward, curriculum
  or batch layout; the last also changes which rows the resumed data loader skips).
- nothing for the config's operational fields (``_OPERATIONAL_FIELDS``: engine, check and logging settings that do not
  change what is trained).

A checkpoint without the file (written by another tool, or before this file existed) gets a one-line warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from transformers import TrainerCallback

__all__ = ["SETTINGS_FILE", "RunSettingsCallback", "check_resumed_settings", "run_settings"]

logger = logging.getLogger(__name__)

SETTINGS_FILE = "trl_igrpo_run_settings.json"

#: TRL / transformers fields recorded besides the package's own config fields: they shape a rollout batch or its loss.
TRL_FIELDS = (
    "num_generations",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "num_iterations",
    "max_completion_length",
    "temperature",
    "top_p",
    "loss_type",
    "beta",
    "scale_rewards",
    "reward_weights",
    "chat_template_kwargs",
    "seed",
)

_LAYOUT = {
    "num_generations",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "world_size",
}


def run_settings(trainer) -> dict:
    """The settings of `trainer`'s run that :func:`check_resumed_settings` compares (JSON-ready)."""
    from trl import GRPOConfig

    from ..hub.cards import plain_value

    args = trainer.args
    inherited = {field.name for field in dataclasses.fields(GRPOConfig)}
    own = [field.name for field in dataclasses.fields(args) if field.name not in inherited]
    operational: frozenset[str] = getattr(args, "_OPERATIONAL_FIELDS", frozenset())
    names = [name for name in own if name not in operational] + [n for n in TRL_FIELDS if hasattr(args, n)]
    settings = {name: plain_value(getattr(args, name)) for name in names}
    settings["trainer"] = type(trainer).__name__
    settings["reward_funcs"] = list(getattr(trainer, "reward_func_names", []) or [])
    settings["world_size"] = int(trainer.accelerator.num_processes)
    return settings


class RunSettingsCallback(TrainerCallback):
    """Writes :func:`run_settings` into every checkpoint the trainer saves (main process)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        """Called after Trainer saved ``checkpoint-<global_step>``."""
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            with open(os.path.join(folder, SETTINGS_FILE), "w", encoding="utf-8") as handle:
                json.dump(run_settings(self.trainer), handle, indent=2, sort_keys=True)


def _effect(name: str) -> str:
    if name in _LAYOUT:
        return "batch layout: the resumed data loader skips a different set of rows"
    if name in ("progressive_batching", "pass_rate_column") or name.startswith("curriculum_"):
        return "curriculum order"
    if name in ("reward_funcs", "reward_weights", "trainer", "loss_type", "beta", "scale_rewards"):
        return "objective"
    return "rollouts"


def check_resumed_settings(trainer, checkpoint: str | bool | None) -> list[str]:
    """Compare the settings recorded in `checkpoint` (True: the latest in ``output_dir``) with `trainer`'s; raise
    ``ValueError`` for a change that breaks the run, log one warning listing every other change. Returns the names of
    the changed settings."""
    if checkpoint is True:
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(trainer.args.output_dir) if os.path.isdir(trainer.args.output_dir) else None
    if not checkpoint or not isinstance(checkpoint, str):
        return []
    path = os.path.join(checkpoint, SETTINGS_FILE)
    if not os.path.isfile(path):
        if trainer.accelerator.is_main_process:
            logger.warning("%s has no %s, so the resumed run's settings cannot be checked.", checkpoint, SETTINGS_FILE)
        return []
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    current = run_settings(trainer)
    changed = [name for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]
    pinned = trainer.args._pinned_settings(checkpoint)
    breaking = [name for name in changed if pinned is not None and name in pinned.names]
    if pinned is not None and breaking:
        was = ", ".join(f"{name}={saved.get(name)!r}" for name in breaking)
        now = ", ".join(f"{name}={current.get(name)!r}" for name in breaking)
        raise ValueError(
            f"Cannot resume from {checkpoint} with {now}: it holds {pinned.state} with {was}, which the first step "
            f"would use. Resume with {was}, or {pinned.discard}."
        )
    if changed and trainer.accelerator.is_main_process:
        lines = [f"  {name}: {saved.get(name)!r} -> {current.get(name)!r}  ({_effect(name)})" for name in changed]
        logger.warning(
            "Resuming from %s with %d setting(s) changed since that checkpoint was saved; the run continues, but it "
            "is no longer the run the checkpoint started:\n%s",
            checkpoint,
            len(changed),
            "\n".join(lines),
        )
    return changed
