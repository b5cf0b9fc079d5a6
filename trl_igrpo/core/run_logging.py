"""What a run shows while it trains: one short console line per logging step, and sample tables with final answers.

transformers prints every log as a dict (about 1,500 characters a step for iGRPO, between progress-bar redraws).
:func:`use_compact_console` swaps its progress/printer callback for one that prints a single line per step instead::

    step 3/40 | loss 0.0123 | reward 1.250 | draft 0.800 -> best 1.100 -> refinement 1.250 | grad_norm 0.41 | lr 1.00e-04 | 2.1 s/step

(``reward`` is the mean total reward of the trained completions; for iGRPO those are the refinements, and the arrow
shows the mean draft, the selected draft and the refinement reward of the same step; ``s/step`` is wall time per
optimizer step since the previous line). The full metrics dict still reaches every logger (``report_to``: TensorBoard,
W&B, ...) and ``trainer.state.log_history`` / ``trainer_state.json``. ``TRL_IGRPO_CONSOLE=full`` restores the dict.

With ``log_completions=True`` each trained completion gets its final answer as a table column (``answer``; for iGRPO
``refinement_answer``, beside ``draft`` and ``draft_answer``), so TRL's console table, its W&B ``completions`` table
and the Parquet files under ``output_dir/completions/`` show what each draft answered next to what its refinement
answered; with ``report_to`` including ``tensorboard`` the same table goes to TensorBoard's Text tab
(:class:`CompletionsToTensorBoardCallback`).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

__all__ = [
    "CompactPrinterCallback",
    "CompactProgressCallback",
    "CompletionsToTensorBoardCallback",
    "final_answer",
    "format_log_line",
    "log_answer_column",
    "use_compact_console",
]

_NO_ANSWER = "(none)"


def _number(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return format(float(value), spec)


def format_log_line(logs: dict[str, Any], step: int, max_steps: int, seconds_per_step: float | None) -> str:
    """One console line for a log dict of transformers' Trainer (a training step, an evaluation, or the end)."""
    if "train_runtime" in logs:
        return (
            f"training done: {step} steps in {_number(logs['train_runtime'], '.1f')} s "
            f"(mean loss {_number(logs.get('train_loss'), '.4g')})"
        )
    evaluating = any(key.startswith("eval_") for key in logs)
    get = (lambda key: logs.get(f"eval_{key}")) if evaluating else logs.get  # noqa: E731
    parts = [f"{'eval at step' if evaluating else 'step'} {step}" + ("" if evaluating else f"/{max_steps}")]
    if get("loss") is not None:
        parts.append(f"loss {_number(get('loss'), '.4g')}")
    if get("reward") is not None:
        parts.append(f"reward {_number(get('reward'), '.3f')}")
    drafts = [get(f"igrpo/{key}") for key in ("draft_reward_mean", "best_draft_reward_mean", "refinement_reward_mean")]
    if all(value is not None for value in drafts):
        parts.append("draft {} -> best {} -> refinement {}".format(*(_number(v, ".3f") for v in drafts)))
    if get("rewards/margins") is not None:  # offline RPO / DPO
        parts.append(f"reward margin {_number(get('rewards/margins'), '.3f')}")
    if logs.get("grad_norm") is not None:
        parts.append(f"grad_norm {_number(logs['grad_norm'], '.3g')}")
    if logs.get("learning_rate") is not None:
        parts.append(f"lr {_number(logs['learning_rate'], '.2e')}")
    if seconds_per_step is not None and not evaluating:
        parts.append(f"{seconds_per_step:.1f} s/step")
    return " | ".join(parts)


class _CompactLines:
    """Turns each ``on_log`` into one line, timing the steps between two lines."""

    def _line(self, state, logs) -> str:
        now, step = time.perf_counter(), state.global_step
        last = getattr(self, "_last", None)
        seconds = None
        if last is not None and step > last[1]:
            seconds = (now - last[0]) / (step - last[1])
        if "train_runtime" not in logs and not any(key.startswith("eval_") for key in logs):
            self._last = (now, step)
        return format_log_line(logs, step, state.max_steps, seconds)

    def _start_clock(self, state) -> None:
        self._last = (time.perf_counter(), state.global_step)


class CompactProgressCallback(_CompactLines, ProgressCallback):
    """transformers' progress bar, with one compact line per log (:func:`format_log_line`) instead of the dict."""

    def on_train_begin(self, args, state, control, **kwargs):
        """Start the bar and the step clock."""
        super().on_train_begin(args, state, control, **kwargs)
        self._start_clock(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Write the line above the progress bar (main process)."""
        if state.is_world_process_zero and logs:
            line = self._line(state, logs)
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)


class CompactPrinterCallback(_CompactLines, PrinterCallback):
    """transformers' printer (``disable_tqdm=True``), with one compact line per log instead of the dict."""

    def on_train_begin(self, args, state, control, **kwargs):
        """Start the step clock."""
        self._start_clock(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Print the line (main process)."""
        if state.is_world_process_zero and logs:
            print(self._line(state, logs), flush=True)


def use_compact_console(trainer) -> None:
    """Give `trainer` the compact console line (unless ``TRL_IGRPO_CONSOLE=full``), and the TensorBoard completions
    table when it reports to TensorBoard."""
    if os.environ.get("TRL_IGRPO_CONSOLE", "compact").lower() != "full":
        for default, compact in (
            (ProgressCallback, CompactProgressCallback),
            (PrinterCallback, CompactPrinterCallback),
        ):
            found = trainer.pop_callback(default)
            if found is not None:
                trainer.add_callback(compact)
    report_to = trainer.args.report_to or []
    if "tensorboard" in report_to or "all" in report_to:
        trainer.add_callback(CompletionsToTensorBoardCallback(trainer))


# ----------------------------------------------------------------------------------------------------------------------
# Final answers in the completions table


def final_answer(completion: Any) -> str:
    r"""The final answer a completion gives, as the math reward reads it: the last ``<answer>`` block (its
    ``\boxed{}`` content if it has one), else the last ``\boxed{}`` of the text; ``(none)`` if neither exists."""
    from ..rewards._text import completion_text, last_boxed_content
    from ..rewards.math import extract_answer_region

    region, tagged = extract_answer_region(completion_text(completion))
    answer = last_boxed_content(region) or (region if tagged else None)
    answer = " ".join(answer.split()) if answer else ""
    return answer[:120] or _NO_ANSWER


def log_answer_column(trainer, column: str, completions: list) -> None:
    """Add `column` (each completion's :func:`final_answer`) to `trainer`'s completions table, when it logs one."""
    if getattr(trainer, "log_completions", False):
        trainer._log_completion_extra(column, [final_answer(completion) for completion in completions])


def _cell(value: Any, limit: int = 300) -> str:
    if isinstance(value, list):  # chat messages: the last message's text
        value = value[-1].get("content", "") if value and isinstance(value[-1], dict) else value
    text = value if isinstance(value, str) else (f"{value:.3f}" if isinstance(value, float) else str(value))
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def completions_markdown(logs: dict, num_rows: int | None) -> str:
    """A Markdown table of the latest completions of a GRPO-based trainer (TRL's ``_logs``): prompt, completion, its
    rewards and the extra columns (iGRPO: draft, draft answer, refinement answer)."""
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    columns: dict[str, list] = {"prompt": prompts, "completion": completions}
    columns.update({name: list(values) for name, values in sorted(logs["extra"].items())})
    columns.update({name: list(values) for name, values in logs["rewards"].items()})
    count = len(prompts) if num_rows is None else min(num_rows, len(prompts))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in range(count):
        cells = [_cell(values[row]) if row < len(values) else "" for values in columns.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class CompletionsToTensorBoardCallback(TrainerCallback):
    """With ``log_completions=True``, writes the latest completions table (:func:`completions_markdown`) to
    TensorBoard's Text tab (tag ``completions``) at every training log, next to TRL's W&B table."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Runs after transformers' TensorBoard callback has written the scalars of this log."""
        trainer = self.trainer
        if not (state.is_world_process_zero and getattr(trainer, "log_completions", False) and logs):
            return
        if "train_runtime" in logs or not getattr(trainer, "_logs", {}).get("prompt"):
            return
        from transformers.integrations import TensorBoardCallback

        writers = [
            callback.tb_writer
            for callback in trainer.callback_handler.callbacks
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None
        ]
        if writers:
            writers[0].add_text(
                "completions", completions_markdown(trainer._logs, trainer.num_completions_to_print), state.global_step
            )
            writers[0].flush()
