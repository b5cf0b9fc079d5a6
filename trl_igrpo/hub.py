"""Hugging Face Hub integration: model cards that cite every method a run used, and a token check before any push.

:class:`HubMixin` goes first in the bases of each ``trl-igrpo`` trainer. It extends TRL's own hook rather than
replacing it: ``create_model_card`` first lets TRL render its card (``_tag_names``/``_name``/``_paper`` of the trainer,
framework versions, TRL citation), then adds

- tags for every method in use (``trl``, ``trl-igrpo``, the trainer's method, ``tied-lora``, ``pass-rate-curriculum``,
  ``dynamic-sampling``),
- a *Methods* section naming each method with a link to its paper, and BibTeX for the methods beyond the trainer's own,
- a *Training configuration* section with the arguments that differ from the config class defaults (secrets are never
  written: ``TrainingArguments.to_dict`` masks every ``*_token`` field and :data:`CARD_EXCLUDED_FIELDS` are skipped),

and names only Hugging Face Hub ids (:func:`sanitize_model_card`): a base model or dataset that is a local path is left
out of the metadata, and the text says "a local model" / "a local dataset" instead of TRL's "fine-tuned version of
[None]" or a link to ``https://huggingface.co//home/...``. :func:`write_model_card` gives any trainer's output folder
this card (the training scripts call it after the final save, so every output folder has one).

``push_to_hub`` (and ``init_hf_repo``, which ``Trainer.__init__`` calls when ``args.push_to_hub=True``) fail with a
:class:`HubTokenError` before any save, upload or repository creation when no token is available, instead of a network
error after training. ``save_model`` writes ``training_args.json`` instead of the pickled ``training_args.bin`` so a
pushed folder holds safetensors, JSON and text only.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import yaml

from .citations import IGRPO, LORA, RPO, TIED_LORA, MethodCitation

__all__ = [
    "CARD_EXCLUDED_FIELDS",
    "HubMixin",
    "HubTokenError",
    "hub_id_or_none",
    "methods_section",
    "non_default_args",
    "require_hub_token",
    "sanitize_model_card",
    "write_model_card",
]


#: Trainer `_paper` ids that map onto one of the citations above (the trainer's own method).
_BY_ARXIV_ID = {method.arxiv_id: method for method in (IGRPO, RPO)}

#: Argument fields never written to a card: machine-local paths and run bookkeeping (secrets are masked anyway).
CARD_EXCLUDED_FIELDS = frozenset(
    {"output_dir", "logging_dir", "run_name", "hub_token", "push_to_hub_token", "hub_model_id", "vllm_weight_sync_dir"}
)


class HubTokenError(RuntimeError):
    """Raised before any upload when no Hugging Face token is available."""


def require_hub_token(token: str | None = None) -> str:
    """The token a push would use (`token`, else `HF_TOKEN` / the `hf auth login` token file); raise if there is none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubTokenError(
            "No Hugging Face token was found, so nothing was pushed to the Hub. Log in with `hf auth login` "
            "(or `huggingface-cli login`), set the HF_TOKEN environment variable, or pass `hub_token=` in the "
            "training arguments; the token needs write access."
        )
    return token


def hub_id_or_none(name: str | None) -> str | None:
    """`name` if it can be a Hub repo id (``org/name`` or ``name``), None for a local path or nothing."""
    from .model_loading import looks_like_local_path

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


def _plain(value):
    """A YAML-safe version of an argument value (enums by value, tuples as lists, unknown objects as strings)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
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
        value = _plain(as_dict[spec.name])
        if default is dataclasses.MISSING or value != _plain(default):
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


def _active_peft_types(model) -> set[str]:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict):
        return set()
    return {
        str(getattr(getattr(config, "peft_type", None), "value", getattr(config, "peft_type", "")))
        for config in configs.values()
    }


if TYPE_CHECKING:  # the mixin is only ever used with TRL's trainers; type-check it as one
    from trl.trainer.base_trainer import _BaseTrainer as _TrainerBase
else:
    _TrainerBase = object


class HubMixin(_TrainerBase):
    """Model-card and push behaviour shared by ``IGRPOTrainer``, ``RPOTrainer`` and ``OnlineRPOTrainer``.

    Put it first in the bases; it relies on TRL's ``_BaseTrainer`` (``create_model_card``, ``_paper``, ``_name``) and
    transformers' ``Trainer`` (``push_to_hub``, ``init_hf_repo``, ``save_model``).
    """

    def methods_used(self) -> list[MethodCitation]:
        """The trainer's own method first, then the adapter and data-ordering methods this run switched on."""
        paper = getattr(self, "_paper", {}) or {}
        own = _BY_ARXIV_ID.get(str(paper.get("id")))
        if own is None and paper:
            own = MethodCitation(
                self._name, self._name.lower(), paper["title"], paper["id"], paper.get("citation", "")
            )
        elif own is not None and own.name != self._name and self._name not in own.name:
            own = dataclasses.replace(own, name=f"{self._name} ({own.name})")
        methods = [own] if own is not None else []
        from .tied_lora.config import TIED_LORA_PEFT_TYPE

        peft_types = _active_peft_types(self.model)
        if TIED_LORA_PEFT_TYPE in peft_types:
            methods.append(TIED_LORA)
        if "LORA" in peft_types:
            methods.append(LORA)
        return methods + self._data_methods_used()

    def _data_methods_used(self) -> list[MethodCitation]:
        """Hook: methods that shape the training data (curriculum, dynamic sampling); none by default."""
        return []

    def create_model_card(  # type: ignore[override]  # TRL's signature (_BaseTrainer), not transformers'
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        """TRL's card plus method tags, a *Methods* section with citations and the non-default training config."""
        methods = self.methods_used()
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        tags += [tag for tag in ("trl", "trl-igrpo", *(m.tag for m in methods)) if tag not in tags]
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(str(self.args.output_dir), "README.md")
        with open(path, encoding="utf-8") as handle:
            card = handle.read()
        section = methods_section(methods, non_default_args(self.args))
        anchor = card.find("## Citations")
        card = card.rstrip() + "\n\n" + section if anchor < 0 else card[:anchor] + section + "\n" + card[anchor:]
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(card)
        sanitize_model_card(path)
        if TIED_LORA in methods:
            # TRL's card replaced PEFT's README.md and the loading note the adapter config appended to it
            from .tied_lora.config import add_loading_note_to_model_card

            add_loading_note_to_model_card(str(self.args.output_dir))

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """``Trainer.init_hf_repo`` (run at start-up when ``push_to_hub=True``), after checking that a token exists."""
        require_hub_token(token if token is not None else self.args.hub_token)  # every rank, so all stop together
        return super().init_hf_repo(token=token, private=private)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """``Trainer.push_to_hub``, after checking that a token exists (nothing is saved or uploaded otherwise)."""
        require_hub_token(token if token is not None else self.args.hub_token)  # every rank, before any save
        return super().push_to_hub(
            commit_message=commit_message, blocking=blocking, token=token, revision=revision, private=private, **kwargs
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model`` with the training arguments as JSON (``training_args.json``), not a pickle."""
        super().save_model(output_dir, _internal_call=_internal_call)
        output_dir = str(output_dir if output_dir is not None else self.args.output_dir)
        pickled = os.path.join(output_dir, "training_args.bin")
        if self.args.should_save and os.path.isfile(pickled):
            os.remove(pickled)
            with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as handle:
                handle.write(self.args.to_json_string())
