"""Model cards that cite every method a run used and name only Hugging Face Hub ids.

:class:`~trl_igrpo.hub.HubMixin` extends TRL's own card hook rather than replacing it: ``create_model_card`` first lets
TRL render its card (``_tag_names``/``_name``/``_paper`` of the trainer, framework versions, TRL citation), then adds

- tags for every method in use (``trl``, ``trl-igrpo``, the trainer's method, ``tied-lora``, ``pass-rate-curriculum``,
  ``dynamic-sampling``),
- a *Methods* section naming each method with a link to its paper, and BibTeX for the methods beyond the trainer's own
  (:func:`methods_section`),
- a *Training configuration* section with the arguments that differ from the config class defaults (secrets are never
  written: ``TrainingArguments.to_dict`` masks every ``*_token`` field and :data:`CARD_EXCLUDED_FIELDS` are skipped),

and names only Hugging Face Hub ids (:func:`sanitize_model_card`): a base model or dataset that is a local path is left
out of the metadata, and the text says "a local model" / "a local dataset" instead of TRL's "fine-tuned version of
[None]" or a link to ``https://huggingface.co//home/...``. :func:`write_model_card` gives any trainer's output folder
this card (the training scripts call it after the final save, so every output folder has one).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Sequence

import yaml

from .citations import MethodCitation

__all__ = [
    "CARD_EXCLUDED_FIELDS",
    "hub_id_or_none",
    "methods_section",
    "non_default_args",
    "plain_value",
    "sanitize_model_card",
    "write_model_card",
]

#: Argument fields never written to a card: machine-local paths and run bookkeeping (secrets are masked anyway).
CARD_EXCLUDED_FIELDS = frozenset(
    {"output_dir", "logging_dir", "run_name", "hub_token", "push_to_hub_token", "hub_model_id", "vllm_weight_sync_dir"}
)


def hub_id_or_none(name: str | None) -> str | None:
    """`name` if it can be a Hub repo id (``org/name`` or ``name``), None for a local path or nothing."""
    from ..utils.model_path import looks_like_local_path

    if not name or name == "None" or os.path.exists(os.path.expanduser(name)) or looks_like_local_path(name):
        return None
    if any(char.isspace() for char in name) or name.count("/") > 1:
        return None
    return name


_FINE_TUNED = re.compile(
    r"This model is a fine-tuned version of \[(?P<name>[^\]]*)\]\(https://huggingface\.co/(?P=name)\)"
)
_DATASET = re.compile(r" on the \[(?P<name>[^\]]*)\]\(https://huggingface\.co/datasets/(?P=name)\) dataset")
_PIPELINE_MODEL = re.compile(r'model="(None|/[^"]*)"')


def sanitize_model_card(path: str | os.PathLike) -> None:
    """Rewrite the card at `path` so that it names only Hub ids: a local (or missing) base model or dataset leaves the
    metadata and becomes "a local model" / "a local dataset" in the text; a quick start pointing at ``None`` or a local
    path points at ``PATH/TO/THIS/FOLDER``."""
    with open(path, encoding="utf-8") as handle:
        card = handle.read()
    if card.startswith("---\n") and "\n---\n" in card[4:]:
        end = card.index("\n---\n", 4)
        metadata = yaml.safe_load(card[4:end]) or {}
        if not hub_id_or_none(metadata.get("base_model")):
            metadata.pop("base_model", None)
        names = metadata.get("datasets")
        if names is not None:
            kept = [str(name) for name in (names if isinstance(names, list) else [names]) if hub_id_or_none(str(name))]
            metadata.pop("datasets")
            if kept:
                metadata["datasets"] = kept
        header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip()
        card = f"---\n{header}\n---\n" + card[end + 5 :]

    def model_sentence(match: re.Match) -> str:
        if hub_id_or_none(match.group("name")):
            return match.group(0)
        return "This model is a fine-tuned version of a local model (not a Hugging Face Hub id, so none is named)"

    def dataset_phrase(match: re.Match) -> str:
        return match.group(0) if hub_id_or_none(match.group("name")) else " on a local dataset"

    card = _FINE_TUNED.sub(model_sentence, card)
    card = _DATASET.sub(dataset_phrase, card)
    card = _PIPELINE_MODEL.sub('model="PATH/TO/THIS/FOLDER"', card)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(card)


def write_model_card(trainer, output_dir: str, dataset_name: str | None = None) -> None:
    """Write `trainer`'s model card into `output_dir` (main process), naming the dataset only if it is a Hub id.

    TRL writes a card at every checkpoint and push, but not on a plain ``save_model``; the scripts call this after the
    final save so that every output folder has one. Works for any TRL trainer (``create_model_card``)."""
    if not trainer.is_world_process_zero():
        return
    saved_output_dir = trainer.args.output_dir
    trainer.args.output_dir = output_dir
    try:
        trainer.create_model_card(
            model_name=os.path.basename(os.path.normpath(output_dir)), dataset_name=hub_id_or_none(dataset_name)
        )
    finally:
        trainer.args.output_dir = saved_output_dir
    card = os.path.join(output_dir, "README.md")
    if os.path.isfile(card):
        sanitize_model_card(card)


def plain_value(value):
    """A YAML-safe version of an argument value (enums by value, tuples as lists, unknown objects as strings)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def non_default_args(args) -> dict:
    """Fields of a training-arguments dataclass whose value differs from the class default (secrets masked).

    Values set by ``__post_init__`` (for example GRPO's computed ``steps_per_generation``) count as non-default.
    """
    as_dict = args.to_dict()  # masks *_token fields
    changed = {}
    for spec in dataclasses.fields(args):
        if spec.name.startswith("_") or spec.name in CARD_EXCLUDED_FIELDS or spec.name not in as_dict:
            continue
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = dataclasses.MISSING
        value = plain_value(as_dict[spec.name])
        if default is dataclasses.MISSING or value != plain_value(default):
            changed[spec.name] = value
    return changed


def methods_section(methods: Sequence[MethodCitation], config: dict) -> str:
    """Markdown for the card: the methods with paper links, the non-default config, BibTeX of the extra methods."""
    lines = ["## Methods", "", "Trained with [trl-igrpo](https://github.com/trl-igrpo/trl-igrpo) on TRL using:", ""]
    lines += [f"- **{m.name}**: [{m.title}]({m.paper_url}) (arXiv {m.arxiv_id})" for m in methods]
    lines += ["", "## Training configuration", "", "Arguments that differ from the config class defaults:", ""]
    lines += ["```yaml", yaml.safe_dump(config, sort_keys=True, default_flow_style=None).rstrip(), "```", ""]
    for method in methods[1:]:
        lines += [f"Cite {method.name} as:", "", "```bibtex", method.bibtex, "```", ""]
    return "\n".join(lines)
