"""Data for every command: one loader for local files, saved datasets and Hub ids, and one prompt builder.

- :mod:`~trl_igrpo.data.loading`: ``--dataset_name`` to rows (local files, ``save_to_disk`` folders, Hub ids);
- :mod:`~trl_igrpo.data.prompts`: the prompt column every command builds, named system prompts, TRL's tokenization.
"""

from .loading import DataError, load_data, load_rows
from .prompts import (
    IGRPO_SYSTEM_PROMPT,
    SYSTEM_PROMPTS,
    add_prompt_column,
    build_chat_prompt,
    is_conversational_prompt,
    resolve_system_prompt,
    tokenize_prompts,
)

__all__ = [
    "IGRPO_SYSTEM_PROMPT",
    "SYSTEM_PROMPTS",
    "DataError",
    "add_prompt_column",
    "build_chat_prompt",
    "is_conversational_prompt",
    "load_data",
    "load_rows",
    "resolve_system_prompt",
    "tokenize_prompts",
]
