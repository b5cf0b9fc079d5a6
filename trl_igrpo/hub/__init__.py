"""Hugging Face Hub integration: model cards that cite every method a run used, and a token check before any push.

- :mod:`~trl_igrpo.hub.mixin`: :class:`HubMixin`, the Hub behaviour every trainer of the package inherits;
- :mod:`~trl_igrpo.hub.cards`: the model card (methods, non-default arguments, Hub ids only);
- :mod:`~trl_igrpo.hub.citations`: every method the package implements or composes, with its paper.
"""

from .cards import (
    CARD_EXCLUDED_FIELDS,
    hub_id_or_none,
    methods_section,
    non_default_args,
    plain_value,
    sanitize_model_card,
    write_model_card,
)
from .citations import MethodCitation
from .mixin import HubMixin, HubTokenError, require_hub_token

__all__ = [
    "CARD_EXCLUDED_FIELDS",
    "HubMixin",
    "HubTokenError",
    "MethodCitation",
    "hub_id_or_none",
    "methods_section",
    "non_default_args",
    "plain_value",
    "require_hub_token",
    "sanitize_model_card",
    "write_model_card",
]
