"""The Hub behaviour of every trl-igrpo trainer: model cards that cite every method a run used, and a token check
before any push.

``push_to_hub`` (and ``init_hf_repo``, which ``Trainer.__init__`` calls when ``args.push_to_hub=True``) fail with a
:class:`HubTokenError` before any save, upload or repository creation when no token is available, instead of a network
error after training. ``save_model`` writes ``training_args.json`` instead of the pickled ``training_args.bin`` so a
pushed folder holds safetensors, JSON and text only. The card itself: :mod:`trl_igrpo.hub.cards`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from .cards import methods_section, non_default_args, sanitize_model_card
from .citations import IGRPO, LORA, RPO, TIED_LORA, MethodCitation

__all__ = ["HubMixin", "HubTokenError", "require_hub_token"]

#: Trainer `_paper` ids that map onto one of the citations above (the trainer's own method).
_BY_ARXIV_ID = {method.arxiv_id: method for method in (IGRPO, RPO)}


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
    """Model-card and push behaviour of every trainer of the package: a base of ``GRPOBaseTrainer`` (so of every
    GRPO-based trainer) and of ``RPOTrainer``.

    It comes before TRL's trainer class in their bases: each method here adds to TRL's ``_BaseTrainer``
    (``create_model_card``, ``_paper``, ``_name``) or transformers' ``Trainer`` (``push_to_hub``, ``init_hf_repo``,
    ``save_model``) and calls it with ``super()``.
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
        from ..tied_lora.config import TIED_LORA_PEFT_TYPE

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
            from ..tied_lora.config import add_loading_note_to_model_card

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
