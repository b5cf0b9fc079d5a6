"""Resuming a run, and never overwriting checkpoints nobody asked to overwrite.

The training scripts (``trl-igrpo igrpo|grpo|rpo``, ``examples/*.py``) call :func:`prepare_run_dir` before they load
anything:

- ``--resume_from_checkpoint PATH`` must name a checkpoint folder (one with ``trainer_state.json``);
  ``--resume_from_checkpoint true`` means the latest ``checkpoint-N`` in ``--output_dir``. Anything else is an error
  naming the path and what was expected. The resolved folder is what the scripts pass to ``trainer.train()``, which
  restores the weights, optimizer, scheduler, RNG state and step counter, so the run continues at the saved step.
- A run that does not resume refuses an ``--output_dir`` that already holds ``checkpoint-N`` folders: it would write
  its own ``checkpoint-N`` over them. The message names both fixes: resume, or a fresh ``--output_dir`` /
  ``--overwrite_output_dir`` (which deletes the old checkpoint folders first, and says so).
- A resumed run refuses an ``--output_dir`` holding checkpoints *later* than the one it resumes from, which it would
  overwrite step by step (same fixes; ``--overwrite_output_dir`` deletes only those later folders).
- Other files in ``--output_dir`` (a final model of an earlier run) are overwritten at the end; the notice says which.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

__all__ = ["ResumeError", "checkpoint_step", "list_checkpoints", "prepare_run_dir", "resolve_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TRUE = ("true", "yes", "1", "last", "latest")
_FALSE = ("false", "no", "0", "none", "")


class ResumeError(ValueError):
    """A ``--resume_from_checkpoint`` / ``--output_dir`` combination that would lose or misread work."""


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders in `output_dir`, by step (none if it does not exist)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and _CHECKPOINT.match(path.name)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The global step a ``checkpoint-N`` folder was saved at (from ``trainer_state.json``, else from its name)."""
    path = Path(checkpoint)
    state = path / "trainer_state.json"
    if state.is_file():
        import json

        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else 0


def resolve_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint folder ``--resume_from_checkpoint VALUE`` means, or None (no resume).

    ``true`` (also ``last``/``latest``, or ``True``) is the latest ``checkpoint-N`` of `output_dir`; a path must be a
    folder with ``trainer_state.json``. Raises :class:`ResumeError` naming the path and the fix otherwise.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in _TRUE):
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise ResumeError(
                f"--resume_from_checkpoint true: there is no checkpoint-N folder in --output_dir {str(output_dir)!r} "
                "to resume from. Pass the --output_dir of the run to resume, or a checkpoint folder "
                "(--resume_from_checkpoint OUT/checkpoint-N), or start without --resume_from_checkpoint."
            )
        return str(checkpoints[-1])
    path = Path(os.path.expanduser(str(value)))
    if not path.is_dir():
        raise ResumeError(
            f"--resume_from_checkpoint {str(value)!r}: no such folder (looked for {str(path.absolute())!r}). Pass a "
            "checkpoint folder such as OUT/checkpoint-100, or `true` for the latest checkpoint in --output_dir."
        )
    if not (path / "trainer_state.json").is_file():
        inner = list_checkpoints(path)
        hint = f" It holds {', '.join(p.name for p in inner)}: pass one of them, or" if inner else " Pass"
        raise ResumeError(
            f"--resume_from_checkpoint {str(value)!r} is not a checkpoint (it has no trainer_state.json).{hint} a "
            "checkpoint-N folder written during training, or `true` for the latest one in --output_dir."
        )
    return str(path)


def _is_local_main_process() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0"


def prepare_run_dir(
    output_dir: str | os.PathLike, checkpoint: str | None, overwrite: bool = False, delete: bool = True
) -> list[str]:
    """Check `output_dir` against the run about to start (`checkpoint`: the resolved resume folder or None); return
    the notices to print. Raises :class:`ResumeError` where the run would overwrite checkpoints unasked.

    With `overwrite` the checkpoints in the way are deleted (when `delete`, on each node's first process) and the
    notice lists them; ``delete=False`` only checks (the command line's early check).
    """
    output = Path(output_dir)
    checkpoints = list_checkpoints(output)
    resumed_from = Path(checkpoint).resolve() if checkpoint else None
    if resumed_from is None:
        in_the_way = checkpoints
    else:
        step = checkpoint_step(resumed_from)
        in_the_way = [p for p in checkpoints if checkpoint_step(p) > step and p.resolve() != resumed_from]
    notices = []
    if in_the_way:
        names = ", ".join(p.name for p in in_the_way)
        if not overwrite:
            raise ResumeError(_refusal(output, names, resumed_from))
        if delete and _is_local_main_process():
            for path in in_the_way:
                shutil.rmtree(path, ignore_errors=True)
        notices.append(
            f"--overwrite_output_dir: {'deleted' if delete else 'deleting'} {len(in_the_way)} old checkpoint "
            f"folder(s) in {output}: {names}"
        )
    if resumed_from is not None:
        notices.append(f"resuming from {resumed_from} (step {checkpoint_step(resumed_from)})")
    final_files = [
        name for name in ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")
        if (output / name).exists()
    ]  # fmt: skip
    if final_files:
        notices.append(
            f"{output} already holds a saved model ({', '.join(final_files)}); this run saves over it at the end"
        )
    return notices


def _refusal(output: Path, names: str, resumed_from: Path | None) -> str:
    if resumed_from is None:
        return (
            f"--output_dir {str(output)!r} already holds checkpoints ({names}) and this run does not resume, so it "
            "would write its own checkpoints over them. To continue that run, add --resume_from_checkpoint true (or "
            "a checkpoint path); to start a new one, pass a fresh --output_dir, or --overwrite_output_dir to delete "
            "the old checkpoints first."
        )
    return (
        f"--output_dir {str(output)!r} holds checkpoints later than {resumed_from.name} ({names}), which the resumed "
        "run would overwrite as it reaches those steps. Resume from the latest (--resume_from_checkpoint true), pass "
        "a fresh --output_dir, or --overwrite_output_dir to delete those later checkpoints first."
    )
