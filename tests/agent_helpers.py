"""Shared pieces of the agent tests (tools, environments, rollout_func): scripted generation as TRL's own tool tests
mock it (``model.generate`` patched to return fixed turns), the tools and environments they use, and a config."""

from __future__ import annotations

import torch

VALID_CALL = '<tool_call>\n{"name": "multiply_tool", "arguments": {"a": 3, "b": 4}}\n</tool_call><|im_end|>'
BAD_ARGUMENT_CALL = '<tool_call>\n{"name": "multiply_tool", "arguments": {"a": 3, "c": 4}}\n</tool_call><|im_end|>'
NO_CALL = "I don't know any tool<|im_end|>"
DONE = "Done!<|im_end|>"


def multiply_tool(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


async def async_multiply_tool(a: int, b: int) -> int:
    """
    Asynchronously multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


def failing_multiply_tool(a: int, b: int) -> int:
    """
    Multiplies two integers, but the service is down.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        Never returns.
    """
    raise ConnectionError("calculator service unavailable")


class ScriptedGeneration:
    """A stand-in for ``model.generate``: a fresh turn gets ``first_turns[row % len(first_turns)]``, a turn after a tool
    result gets ``after_tool``. Records the batch size of every call (``calls``) and every turn it wrote."""

    def __init__(self, tokenizer, first_turns: list[str], after_tool: str = DONE):
        self.tokenizer = tokenizer
        self.first = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in first_turns]
        self.after_tool = tokenizer(after_tool, add_special_tokens=False)["input_ids"]
        self.calls: list[int] = []

    def __call__(self, input_ids, **kwargs):
        self.calls.append(int(input_ids.shape[0]))
        rows = []
        for row, ids in enumerate(input_ids):
            tail = self.tokenizer.decode(ids[-12:], skip_special_tokens=False)
            rows.append(self.after_tool if "</tool_response>" in tail else self.first[row % len(self.first)])
        width = max(len(row) for row in rows)
        padded = [row + [self.tokenizer.pad_token_id] * (width - len(row)) for row in rows]
        return torch.cat([input_ids, torch.tensor(padded, device=input_ids.device)], dim=1)


def tool_success_reward(completions, **kwargs) -> list[float]:
    """1.0 for a trajectory with a tool result that is not an error, 0.5 for one with a failed call, else 0.0 (so the
    valid tool call is the best draft)."""
    rewards = []
    for completion in completions:
        results = [m["content"] for m in completion if m.get("role") == "tool"]
        rewards.append(1.0 if any("error" not in r for r in results) else 0.5 if results else 0.0)
    return rewards
