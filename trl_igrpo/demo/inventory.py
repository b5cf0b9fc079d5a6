r"""A task that needs a tool, offline: where is an item stored? Only the environment knows.

Each row carries a hidden inventory (four items, each stored in a city drawn at random for that row) and asks
``Which city stores the "falcon"? Answer with \boxed{}.``. The inventory is not in the prompt, so without the tool the
best a model can do is guess one of the 24 cities (about 4 %); with it the task is two copies: the item into the
call, the returned city into the answer. A rollout is a trajectory through TRL's tool loop:

    assistant:  <tool_call>{"name": "locate", "arguments": {"item": "falcon"}}</tool_call>
    tool:       Oslo
    assistant:  The answer is \boxed{Oslo}.

:class:`InventoryEnv` is a TRL environment: ``reset(**row)`` loads the row's inventory (environment-owned data) and
its public method ``locate`` is the tool. :func:`inventory_accuracy_reward` scores the last ``\boxed{}`` of the
assistant's text against the row's ``solution``.

The warm start (:mod:`~trl_igrpo.demo.inventory_warm_start`) teaches a tiny Qwen3 the tool-call format from a teacher
that looks the item up only half of the time (and then sometimes asks for the wrong item) and otherwise guesses, so RL
has something to find. ``examples/train_igrpo_agent.py`` trains it with ``IGRPOTrainer(...,
environment_factory=InventoryEnv)``; ``benchmarks/agent_igrpo_vs_grpo.py`` compares GRPO and iGRPO on it.
"""

from __future__ import annotations

import json
import random
from typing import Any

from ..rewards._text import completion_text, last_boxed_content

__all__ = [
    "CITIES",
    "INVENTORY_INSTRUCTION",
    "ITEMS",
    "InventoryEnv",
    "inventory_accuracy_reward",
    "make_inventory_dataset",
    "make_inventory_examples",
    "tool_call_rate",
    "vocabulary_corpus",
]

ITEMS = (
    "falcon", "otter", "badger", "heron", "walrus", "lynx", "bison", "gecko", "marmot", "pelican", "puffin", "tapir",
    "beaver", "condor", "ferret", "iguana", "jackal", "koala", "lemur", "magpie", "newt", "osprey", "panda", "quail",
    "raven", "salmon", "toucan", "urchin", "viper", "weasel", "yak", "zebra",
)  # fmt: skip
CITIES = (
    "Oslo", "Lima", "Cairo", "Dakar", "Quito", "Hanoi", "Minsk", "Sofia", "Tunis", "Riga", "Bern", "Dhaka",
    "Accra", "Baku", "Doha", "Kyiv", "Lagos", "Male", "Nuuk", "Paris", "Rome", "Seoul", "Tokyo", "Vienna",
)  # fmt: skip
INVENTORY_INSTRUCTION = "Answer with \\boxed{}."
ITEMS_PER_INVENTORY = 4


class InventoryEnv:
    """The inventory, as a TRL environment: ``reset(**row)`` loads the row's hidden ``inventory`` column (a JSON
    object item -> city); the public method ``locate`` is the tool. ``lookups`` records the episode's calls."""

    def __init__(self) -> None:
        self.inventory: dict[str, str] = {}
        self.lookups: list[str] = []

    def reset(self, inventory: str | None = None, **kwargs) -> None:
        """Start an episode for one dataset row: its ``inventory`` column becomes the environment's data."""
        if inventory is None:
            raise ValueError("InventoryEnv needs rows with an 'inventory' column (make_inventory_dataset makes them).")
        self.inventory = json.loads(inventory)
        self.lookups = []

    def locate(self, item: str) -> str:
        """
        Looks up the city where an item is stored.

        Args:
            item: The item's name, e.g. "falcon".

        Returns:
            The city, or a message saying the item is not in the inventory.
        """
        self.lookups.append(item)
        return self.inventory.get(str(item).strip(), f"unknown item: {item}")


def make_inventory_examples(num_examples: int, seed: int = 0) -> list[dict[str, Any]]:
    """Rows ``{"prompt", "solution", "item", "inventory"}``: a question about one item of a random four-item
    inventory (cities drawn with replacement), the item's city as ``solution``."""
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
    rng = random.Random(seed)
    rows = []
    for _ in range(num_examples):
        items = rng.sample(ITEMS, ITEMS_PER_INVENTORY)
        inventory = {item: rng.choice(CITIES) for item in items}
        item = rng.choice(items)
        rows.append(
            {
                "prompt": [{"role": "user", "content": f'Which city stores the "{item}"? {INVENTORY_INSTRUCTION}'}],
                "solution": inventory[item],
                "item": item,
                "inventory": json.dumps(inventory),
            }
        )
    return rows


def make_inventory_dataset(num_examples: int = 256, seed: int = 0):
    """:func:`make_inventory_examples` as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(make_inventory_examples(num_examples, seed=seed))


def inventory_accuracy_reward(completions: list, solution: list[str], log_metric=None, **kwargs) -> list[float]:
    r"""1.0 when the last ``\boxed{}`` of the trajectory's assistant text is the row's city, else 0.0.

    Tool results are not assistant text: a trajectory that looks the item up but never states the city scores 0.
    Every row has an answer, so nothing is unscorable. When TRL passes ``log_metric``, the batch's tool-call rate
    (:func:`tool_call_rate`) is logged as ``inventory/tool_call_rate`` (``eval_inventory/tool_call_rate`` in
    evaluation; iGRPO logs it for the trained Stage-2 rollouts only).
    """
    rewards = []
    for completion, gold in zip(completions, solution, strict=True):
        boxed = last_boxed_content(completion_text(completion))
        rewards.append(1.0 if boxed is not None and boxed.strip() == str(gold).strip() else 0.0)
    if log_metric is not None:
        log_metric("inventory/tool_call_rate", tool_call_rate(completions))
    return rewards


def tool_call_rate(completions: list) -> float:
    """Fraction of trajectories with at least one parsed tool call."""
    from ..igrpo.trajectories import count_tool_calls

    if not completions:
        raise ValueError("tool_call_rate needs at least one completion.")
    return sum(count_tool_calls(completion) > 0 for completion in completions) / len(completions)


def vocabulary_corpus() -> list[str]:
    """Text that makes every item, city and the tool's name a single token where the task copies them: the item
    from the question (``"falcon"``) into the call, the city from the tool result into ``\\boxed{}``. Added to the
    tiny tokenizer's corpus by the warm start."""
    texts = []
    for index, item in enumerate(ITEMS):
        city = CITIES[index % len(CITIES)]
        texts.extend([f'locate "{item}" {{"name": "locate", "arguments": {{"item": "{item}"}}}}\n{city}\n'] * 20)
    return texts
