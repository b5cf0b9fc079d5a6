"""The prompt every command builds from a dataset row, and its token ids exactly as TRL's ``GRPOTrainer`` builds them.

The trainers and ``trl-igrpo pass-rate`` build a row's prompt the same way (:func:`add_prompt_column`): a ``prompt``
column is used as it is (text, or chat messages); otherwise the ``problem`` column becomes one user message (after an
optional system message; :data:`SYSTEM_PROMPTS` names the built-in ones). The chat template then renders it with the
run's ``chat_template_kwargs`` exactly as TRL's ``GRPOTrainer`` tokenizes prompts (:func:`tokenize_prompts`), so a pass
rate is measured on the prompts the trainer trains on.
"""

from __future__ import annotations

from typing import Any, cast

from .loading import DataError

__all__ = [
    "IGRPO_SYSTEM_PROMPT",
    "SYSTEM_PROMPTS",
    "add_prompt_column",
    "build_chat_prompt",
    "is_conversational_prompt",
    "resolve_system_prompt",
    "tokenize_prompts",
]

#: The training system prompt of the iGRPO paper (App. C), shared by both stages. Opt-in: never injected silently.
IGRPO_SYSTEM_PROMPT = (
    "You are a helpful AI Assistant that provides well-reasoned and detailed responses. First think through your "
    "reasoning as an internal monologue, then give the answer: <think>...</think><answer>...</answer>. If the prompt "
    "contains feedback or a prior draft, treat it as guidance, not as ground truth. Use it to produce a strictly "
    "improved final answer: fix mistakes, fill gaps, strengthen justification, and improve clarity. Do not repeat the "
    "draft verbatim. If the feedback is wrong or incomplete, correct it and proceed."
)

#: System prompts a command line may name instead of spelling them out (``--system_prompt igrpo``).
SYSTEM_PROMPTS = {"igrpo": IGRPO_SYSTEM_PROMPT}


def resolve_system_prompt(system_prompt: str | None) -> str | None:
    """`system_prompt` itself, or the text of a named one (:data:`SYSTEM_PROMPTS`: ``"igrpo"``); None for none."""
    return SYSTEM_PROMPTS.get(system_prompt, system_prompt) if system_prompt else None


def is_conversational_prompt(prompt: Any) -> bool:
    """True for a non-empty list of ``{"role": ..., "content": ...}`` messages (a chat prompt, TRL's conversational
    format), False for text and anything else."""
    return isinstance(prompt, list) and bool(prompt) and all(isinstance(m, dict) and "role" in m for m in prompt)


def build_chat_prompt(
    problem: str | list[dict[str, Any]], system_prompt: str | None = None, template: str = "{problem}"
) -> list[dict[str, Any]]:
    """The chat prompt of one problem: ``template`` with ``{problem}`` filled in as one user message, after a system
    message when `system_prompt` is set. A problem that already is a list of chat messages is kept (with the system
    message put first when it has none)."""
    if is_conversational_prompt(problem):
        messages = [dict(m) for m in cast(list, problem)]
        if system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages
    if "{problem}" not in template:
        raise DataError(f"the prompt template (--prompt_template) must contain '{{problem}}', got {template!r}.")
    messages = [{"role": "user", "content": template.replace("{problem}", str(problem))}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def add_prompt_column(dataset, system_prompt: str | None = None, problem_column: str = "problem"):
    """`dataset` with the ``prompt`` column the trainers train on, built the one way every command builds it.

    - A ``prompt`` column is kept: text prompts as they are, chat prompts with the system message (if any) first.
    - Otherwise ``problem_column`` becomes a chat prompt (:func:`build_chat_prompt`).

    Raises :class:`DataError` when neither column exists, or for a system prompt on text prompts (there is no chat
    turn to put it in).
    """
    system_prompt = resolve_system_prompt(system_prompt)
    columns = list(dataset.column_names)
    if "prompt" in columns:
        if not system_prompt:
            return dataset
        if not is_conversational_prompt(dataset[0]["prompt"]):
            raise DataError(
                "the dataset's 'prompt' column holds plain text, which has no chat turns to put a system prompt in; "
                "drop --system_prompt, or give chat-message prompts (or a 'problem' column instead of 'prompt')."
            )
        return dataset.map(lambda row: {"prompt": build_chat_prompt(row["prompt"], system_prompt)})
    if problem_column not in columns:
        raise DataError(
            f"the dataset needs a 'prompt' column (text or chat messages) or a {problem_column!r} column to build one "
            f"from; it has {columns}."
        )
    return dataset.map(lambda row: {"prompt": build_chat_prompt(row[problem_column], system_prompt)})


def tokenize_prompts(tokenizer, prompts: list, chat_template_kwargs: dict | None = None) -> list[list[int]]:
    """Token ids of `prompts` exactly as TRL's ``GRPOTrainer._tokenize_prompts`` builds them for generation: chat
    prompts through the chat template with the generation prompt and ``chat_template_kwargs``, text prompts through
    the tokenizer (special tokens added)."""
    if prompts and is_conversational_prompt(prompts[0]):
        tokenized = tokenizer.apply_chat_template(
            conversation=prompts,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **(chat_template_kwargs or {}),
        )
        return [list(ids) for ids in tokenized["input_ids"]]
    return [list(ids) for ids in tokenizer(text=list(prompts))["input_ids"]]
