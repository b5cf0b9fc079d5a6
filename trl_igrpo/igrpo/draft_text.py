"""The draft enters the Stage-2 prompt q' as text: it can never become a control token (iGRPO §3.2.2, q' = Concat(q, d̂)).

A decoded draft can spell a control token with ordinary tokens (``<``, ``|``, ``im``, ``_end``, ``|>`` decode to
``<|im_end|>``), and tokenizing q' would turn that text into the real token: a turn boundary the policy itself could
forge. The chat template must still see the real draft text (templates split on ``</think>``, trim, ...), so the draft
is marked before the template runs and the marks are read after it. This is the design of transformers'
``apply_chat_template(sanitize_control_tokens=True)`` (transformers >= 5.25), applied to the draft alone:

- every spelling of an added token of the tokenizer inside the draft (special or not, whitespace tokens excepted) is
  wrapped in the private-use marks ``CONTROL_START`` ... ``CONTROL_END``, and the draft itself, without the edge
  whitespace templates trim, in ``DRAFT_START`` ... ``DRAFT_END`` (:func:`mark_draft`);
- the rendered prompt is encoded with marked spellings as plain text (the tokenizer's pipeline without its added
  tokens) and everything else as the tokenizer encodes it (:func:`encode_marked`). A mark that a template's string
  operations separated from its spelling is dropped but still breaks the text, so nothing joins into a control token
  across it (it can also keep whitespace the template would have stripped at that split point, e.g. the newlines after
  ``</think>`` in an assistant turn); draft marks are dropped without a break unless the text on both sides would join
  into one;
- the draft marks tell the guard where the draft landed and whether it arrived whole (:func:`marked_drafts`).

A prompt whose draft spells no control token is encoded with exactly the ids TRL's ``_tokenize_prompts`` gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ControlTokens",
    "encode_as_text",
    "encode_marked",
    "mark_draft",
    "marked_drafts",
    "special_token_frame",
    "strip_marks",
]

CONTROL_START, CONTROL_END = "\U000f0010", "\U000f0011"
DRAFT_START, DRAFT_END = "\U000f0012", "\U000f0013"
_MARKS = CONTROL_START + CONTROL_END + DRAFT_START + DRAFT_END
#: A marked spelling (group 1), or a control mark a template separated from its spelling (group 1 is None).
_CONTROL_PIECE = re.compile(f"{CONTROL_START}([^{_MARKS}]*){CONTROL_END}|[{CONTROL_START}{CONTROL_END}]")
_DRAFT_SPAN = re.compile(f"{DRAFT_START}([^{DRAFT_START}{DRAFT_END}]*){DRAFT_END}")


@dataclass(frozen=True)
class ControlTokens:
    """The strings a tokenizer encodes as something other than text: its added tokens (special or not), longest first
    so that a token takes priority over the tokens it contains; whitespace tokens are text."""

    pattern: re.Pattern
    longest: int
    ids: frozenset[int]

    @classmethod
    def of(cls, tokenizer) -> ControlTokens:
        """The control tokens of ``tokenizer`` (its ``added_tokens_decoder`` and special tokens)."""
        added = {token.content: index for index, token in tokenizer.added_tokens_decoder.items()}
        for token in getattr(tokenizer, "all_special_tokens", []):
            added.setdefault(token, tokenizer.convert_tokens_to_ids(token))
        contents = sorted((c for c in added if c and not c.isspace()), key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, contents)) or "(?!)")  # (?!) never matches
        ids = frozenset(added[c] for c in contents if isinstance(added[c], int))
        return cls(pattern=pattern, longest=max(map(len, contents), default=0), ids=ids)


def strip_marks(text: str) -> str:
    """``text`` without any of this module's marks (a draft could contain the characters: they are dropped)."""
    return text.translate({ord(mark): None for mark in _MARKS})


def mark_draft(draft: str, control: ControlTokens) -> str:
    """The draft with its control-token spellings marked, and its text (inside its edge whitespace) framed by draft
    marks; an empty or all-whitespace draft is returned as is."""
    draft = strip_marks(draft)
    core = draft.strip()
    if not core:
        return draft
    start = draft.index(core)
    marked = control.pattern.sub(lambda match: f"{CONTROL_START}{match.group(0)}{CONTROL_END}", core)
    return f"{draft[:start]}{DRAFT_START}{marked}{DRAFT_END}{draft[start + len(core) :]}"


def marked_drafts(rendered: str) -> list[str]:
    """The text of every whole marked draft in a rendered prompt (both draft marks survived), marks removed."""
    return [strip_marks(span) for span in _DRAFT_SPAN.findall(rendered)]


def encode_as_text(tokenizer, text: str, control: ControlTokens) -> list[int]:
    """``text`` encoded without matching any added token: the fast tokenizer's normalizer, pre-tokenizer and model
    (as transformers' ``_encode_without_added_tokens``), else ``split_special_tokens=True``; character by character
    if the model itself still produces a control token."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        splits = [normalized]
        if backend.pre_tokenizer is not None:
            splits = [split for split, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
        ids = [token.id for split in splits for token in backend.model.tokenize(split)]
    else:
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    if control.ids.isdisjoint(ids):
        return ids
    if len(text) > 1:
        return [index for character in text for index in encode_as_text(tokenizer, character, control)]
    raise ValueError(f"The tokenizer encodes {text!r} only as a control token; a draft cannot hold it as text.")


def encode_marked(tokenizer, text: str, control: ControlTokens) -> list[int]:
    """Encode a rendered prompt that holds a marked draft (without the tokenizer's own special tokens, as chat
    templates are encoded): marked spellings as text, the rest as the tokenizer encodes it, marks removed."""
    chunks = [""]
    for index, part in enumerate(re.split(f"[{DRAFT_START}{DRAFT_END}]", text)):
        if index and _joins_into_control_token(chunks[-1], part, control):
            chunks.append(part)  # keep the break: the two sides would spell a control token together
        else:
            chunks[-1] += part
    ids: list[int] = []
    for chunk in chunks:
        pieces = _CONTROL_PIECE.split(chunk)  # [text, spelling or None, text, ...]
        for position, piece in enumerate(pieces):
            if piece:
                ids += _encode_piece(tokenizer, piece, control, as_text=position % 2 == 1, first=not ids)
    return ids


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids ``tokenizer(text)`` puts before and after the text's own ids (BOS, EOS), for plain-text prompts, which
    TRL tokenizes with ``processing_class(text=prompts)``."""
    bare = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


def _joins_into_control_token(left: str, right: str, control: ControlTokens) -> bool:
    """Whether a control token would span the boundary between ``left`` and ``right`` if they were joined."""
    tail = re.split(f"[{_MARKS}]", left[-control.longest :] if control.longest else "")[-1]
    head = re.split(f"[{_MARKS}]", right[: control.longest])[0]
    return any(m.start() < len(tail) < m.end() for m in control.pattern.finditer(tail + head))


def _encode_piece(tokenizer, piece: str, control: ControlTokens, as_text: bool, first: bool) -> list[int]:
    """One piece of a rendered prompt; a piece after the start is encoded after a newline that is then removed, so a
    SentencePiece tokenizer does not add the word-start space it adds at the start of a string (transformers'
    ``encode_marked_chat`` does the same)."""

    def encode(text: str) -> list[int]:
        if as_text:
            return encode_as_text(tokenizer, text, control)
        return tokenizer.encode(text, add_special_tokens=False)

    if first:
        return encode(piece)
    newline = tokenizer.encode("\n", add_special_tokens=False)
    ids = encode("\n" + piece)
    return ids[len(newline) :] if ids[: len(newline)] == newline else encode(piece)
