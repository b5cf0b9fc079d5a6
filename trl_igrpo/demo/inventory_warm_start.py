r"""The warm start of the inventory task: a tiny Qwen3 that knows Qwen3's tool-call format, so tool calls happen.

A random tiny model never writes a parseable ``<tool_call>``, so TRL's tool loop never runs. This SFT teaches the
format TRL's Qwen3 support reads (``trl/chat_templates/qwen3.jinja``, parsed by TRL's response schema): the tiny model
(:func:`~trl_igrpo.testing.build_tiny_model` with ``chat_template="qwen3"``) is trained on whole trajectories rendered
by TRL's training variant of the template (the one ``GRPOTrainer`` renders prompts and tool results with), on the
assistant tokens only (its ``{% generation %}`` mask: tool results are not trained, as in RL).

The SFT has two phases (:func:`build_inventory_warm_start`): first the task's trajectories without the tool-schema
system block, from a teacher that always looks the right item up, where the two copies the task needs (the item into
the call, the city into the answer) are learned; then the real format, from a teacher that is imperfect on purpose, so
RL has something to find: it looks the item up with probability ``tool_rate`` (and asks for a wrong item with
probability ``item_slip_rate``, gets "unknown item" and guesses), otherwise it guesses a city
(:func:`teacher_trajectory`). A share ``refinement_fraction`` of the phase-2 examples carry an iGRPO Stage-2 prompt (a
prior attempt's transcript before the task), so both interfaces are known; the teacher behaves the same there.
Problems come from a seed disjoint from the RL and held-out sets. The tokenizer's corpus includes the task's words
(:func:`~trl_igrpo.demo.inventory.vocabulary_corpus`), so an item or a city is one token where it is copied.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from .inventory import CITIES, ITEMS, InventoryEnv, make_inventory_examples, vocabulary_corpus

__all__ = [
    "INVENTORY_SFT_SEED",
    "build_inventory_warm_start",
    "default_inventory_warm_start",
    "environment_tools",
    "teacher_trajectory",
]

INVENTORY_SFT_SEED = 20_000
_STAMP = "warm_start.json"
_RECIPE_VERSION = 2  # bump when the teacher, the rendering or the tokenizer corpus changes


def environment_tools(environment: Any) -> list:
    """An environment's tools exactly as ``GRPOTrainer`` exposes them: its public methods but ``reset`` and
    ``get_reward``, in ``inspect.getmembers`` order (by name), bound to the instance."""
    return [
        getattr(environment, name)
        for name, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


def teacher_trajectory(
    row: dict[str, Any], rng: random.Random, tool_rate: float = 0.5, item_slip_rate: float = 0.1
) -> list[dict[str, Any]]:
    r"""One demonstration for an inventory row, as TRL completions look (assistant messages with ``tool_calls``,
    ``tool`` messages): with probability ``tool_rate`` a ``locate`` call (for a wrong item with probability
    ``item_slip_rate``), its result and ``The answer is \boxed{Oslo}.``; otherwise a guessed city."""
    item, inventory = row["item"], json.loads(row["inventory"])
    if rng.random() >= tool_rate:
        return [{"role": "assistant", "content": f"The answer is \\boxed{{{rng.choice(CITIES)}}}."}]
    asked = rng.choice([other for other in ITEMS if other not in inventory]) if rng.random() < item_slip_rate else item
    result = inventory.get(asked, f"unknown item: {asked}")
    answer = result if asked == item else rng.choice(CITIES)
    call = {"type": "function", "function": {"name": "locate", "arguments": {"item": asked}}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "locate", "content": result},
        {"role": "assistant", "content": f"The answer is \\boxed{{{answer}}}."},
    ]


def _render(tokenizer, chat_template: str, prompt: Any, trajectory: list, tools: list | None) -> tuple[list[int], ...]:
    """``(prompt_ids, completion_ids, loss_mask)`` of one trajectory, rendered as GRPO renders it."""
    rendered = tokenizer.apply_chat_template(
        prompt + trajectory,
        tools=tools,
        chat_template=chat_template,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = list(rendered["input_ids"]), list(rendered["assistant_masks"])
    start = mask.index(1)
    return ids[:start], ids[start:], mask[start:]


def build_inventory_warm_start(
    output_dir: str | os.PathLike,
    copy_steps: int = 200,
    sft_steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    num_layers: int = 2,
    hidden_size: int = 128,
    seed: int = 0,
    tool_rate: float = 0.5,
    item_slip_rate: float = 0.1,
    refinement_fraction: float = 0.25,
    overwrite: bool = False,
    progress: bool = False,
) -> str:
    """Build (or reuse) the inventory warm start in ``output_dir`` and return the directory.

    Two supervised phases (AdamW, next-token loss on the assistant tokens only), on one CPU thread:

    1. ``copy_steps`` on the task's trajectories *without* the tool-schema system block, from a teacher that always
       looks the right item up: the two copies the task needs (the item into the call, the city into the answer) are
       learned here. On the real prompts, whose tool block is 200+ tokens, a tiny model does not learn them in 400
       steps; on the short ones it does in about 150, and the skill carries over (docs/agents.md, "Warm start").
    2. ``sft_steps`` (cosine decay) on the real format (the tool block as ``GRPOTrainer`` renders it), from the
       imperfect teacher of :func:`teacher_trajectory`, a share ``refinement_fraction`` with iGRPO Stage-2 prompts.

    A directory whose ``warm_start.json`` records the same settings is reused as is.

    Args:
        output_dir: Where the model and tokenizer are saved.
        copy_steps: Steps of phase 1 (constant learning rate).
        sft_steps: Steps of phase 2 (cosine decay from ``learning_rate``).
        batch_size: Trajectories per step.
        learning_rate: Peak learning rate.
        num_layers: Decoder layers of the tiny Qwen3.
        hidden_size: Hidden size (multiple of 64).
        seed: Seeds the weights and the SFT batches.
        tool_rate: Phase 2: probability that the teacher looks the item up (else it guesses a city).
        item_slip_rate: Phase 2: probability that a teacher's lookup asks for a wrong item.
        refinement_fraction: Phase 2: share of examples with an iGRPO Stage-2 prompt (a prior attempt, then the task).
        overwrite: Rebuild even if a matching warm start exists.
        progress: Show progress bars.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..testing import build_tiny_model
    from .warm_start import run_sft_steps, warmup_cosine

    for name, value in (("tool_rate", tool_rate), ("item_slip_rate", item_slip_rate),
                        ("refinement_fraction", refinement_fraction)):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")
    if copy_steps < 0 or sft_steps < 0 or batch_size < 1:
        raise ValueError(f"copy_steps and sft_steps must be >= 0 and batch_size >= 1, got {copy_steps}, {sft_steps}, "
                         f"{batch_size}.")  # fmt: skip
    settings = {
        "copy_steps": copy_steps, "sft_steps": sft_steps, "batch_size": batch_size, "learning_rate": learning_rate,
        "num_layers": num_layers, "hidden_size": hidden_size, "seed": seed, "tool_rate": tool_rate,
        "item_slip_rate": item_slip_rate, "refinement_fraction": refinement_fraction, "recipe": _RECIPE_VERSION,
    }  # fmt: skip
    output_dir = Path(output_dir)
    stamp = output_dir / _STAMP
    if not overwrite and stamp.exists() and json.loads(stamp.read_text()).get("settings") == settings:
        return str(output_dir)

    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_tiny_model(output_dir, architecture="qwen3", chat_template="qwen3", seed=seed, num_layers=num_layers,
                         hidden_size=hidden_size, overwrite=True, extra_corpus=vocabulary_corpus())  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
        model = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
        copy, plain, refinement = _sft_examples(tokenizer, random.Random(seed), tool_rate, item_slip_rate,
                                                refinement_fraction)  # fmt: skip
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
        constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        model.train()
        run_sft_steps(
            model, tokenizer.pad_token_id, copy, [], 0.0, steps=copy_steps, batch_size=batch_size,
            generator=generator, optimizer=optimizer, scheduler=constant,
            progress="inventory warm start, 1/2: copying" if progress else None,
        )  # fmt: skip
        cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, 0, sft_steps))
        run_sft_steps(
            model, tokenizer.pad_token_id, plain, refinement, refinement_fraction, steps=sft_steps,
            batch_size=batch_size, generator=generator, optimizer=optimizer, scheduler=cosine,
            progress="inventory warm start, 2/2: the tool format" if progress else None,
        )  # fmt: skip
        model.save_pretrained(output_dir, safe_serialization=True)
        tokenizer.save_pretrained(output_dir)
    finally:
        torch.set_num_threads(threads)
    stamp.write_text(json.dumps({"settings": settings, "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    return str(output_dir)


def _sft_examples(tokenizer, rng: random.Random, tool_rate: float, item_slip_rate: float, refinement_fraction: float):
    """``(copy, plain, refinement)`` lists of ``(prompt_ids, completion_ids, loss_mask)``: phase 1's short prompts
    with a perfect teacher; phase 2's real prompts (plain or Stage-2) with the imperfect one."""
    from trl.chat_template_utils import get_training_chat_template

    from ..igrpo.trajectories import build_trajectory_prompt

    template = str(get_training_chat_template(tokenizer))  # what GRPOTrainer renders tool prompts with
    tools = environment_tools(InventoryEnv())
    copy: list[tuple[list[int], ...]] = []
    plain: list[tuple[list[int], ...]] = []
    refinement: list[tuple[list[int], ...]] = []
    for row in make_inventory_examples(2048, seed=INVENTORY_SFT_SEED):
        copy.append(_render(tokenizer, template, row["prompt"], teacher_trajectory(row, rng, 1.0, 0.0), None))
        prompt = row["prompt"]
        is_refinement = rng.random() < refinement_fraction
        if is_refinement:
            prompt, _ = build_trajectory_prompt(prompt, teacher_trajectory(row, rng, tool_rate, item_slip_rate))
        trajectory = teacher_trajectory(row, rng, tool_rate, item_slip_rate)
        (refinement if is_refinement else plain).append(_render(tokenizer, template, prompt, trajectory, tools))
    return copy, plain, refinement


def default_inventory_warm_start(cache_dir: str | os.PathLike | None = None) -> str:
    """The warm start with the default settings, built once and cached: in ``cache_dir``, else
    ``$TRL_IGRPO_CACHE/inventory_warm_start`` (default ``~/.cache/trl_igrpo``)."""
    root = Path(cache_dir or os.environ.get("TRL_IGRPO_CACHE") or Path.home() / ".cache" / "trl_igrpo")
    return build_inventory_warm_start(root / "inventory_warm_start")


def render_stage2_example(tokenizer) -> dict[str, str]:
    """What iGRPO's Stage 2 sees on the inventory task, rendered by ``tokenizer``'s template as ``GRPOTrainer``
    renders tool prompts (TRL's training variant of Qwen3's template): the selected draft trajectory, the Stage-2
    prompt q' as text, and a refinement with the tokens GRPO trains and the tool result it masks. For docs/agents.md
    (``docs/render_agents_example.py`` writes it there and checks it is current)."""
    from trl.chat_template_utils import get_training_chat_template

    from ..igrpo.trajectories import build_trajectory_prompt

    template = str(get_training_chat_template(tokenizer))
    tools = environment_tools(InventoryEnv())
    row = make_inventory_examples(1, seed=7)[0]
    draft = teacher_trajectory(row, random.Random(0), tool_rate=1.0, item_slip_rate=0.0)
    prompt, transcript = build_trajectory_prompt(row["prompt"], draft)
    rendered = tokenizer.apply_chat_template(
        prompt, tools=tools, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    refinement = "".join(
        f"[{'trained' if trained else 'masked: tool result (tool_mask=0)'}]\n{tokenizer.decode(ids)}\n"
        for trained, ids in _grpo_completion_spans(tokenizer, template, prompt, draft, tools)
    )
    return {"transcript": transcript, "stage2_prompt": rendered, "refinement": refinement}


def _grpo_completion_spans(tokenizer, template: str, prompt: Any, trajectory: list, tools: list) -> list:
    """``(trained, ids)`` spans of a trajectory's completion as ``GRPOTrainer`` assembles it: each assistant turn as
    generated (up to its end-of-turn token), joined by the tool-result suffix TRL's own ``_get_tool_suffix_ids``
    renders (``tool_mask`` 0)."""
    from types import SimpleNamespace

    from trl import GRPOTrainer

    _, completion_ids, loss_mask = _render(tokenizer, template, prompt, trajectory, tools)
    runs, run = [], []  # maximal runs of assistant tokens, each cut after its end-of-turn token
    for token, trained in zip(completion_ids, loss_mask):
        if trained:
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    eos = tokenizer.eos_token_id
    turns = [turn[: turn.index(eos) + 1] if eos in turn else turn for turn in runs + ([run] if run else [])]
    renderer = SimpleNamespace(processing_class=tokenizer, _tokenizer=tokenizer, chat_template=template,
                               chat_template_kwargs={}, _is_vlm=False)  # fmt: skip
    results = [message for message in trajectory if message["role"] == "tool"]
    spans: list[tuple[bool, list[int]]] = []
    for index, turn in enumerate(turns):
        spans.append((True, turn))
        if index < len(results):
            spans.append((False, GRPOTrainer._get_tool_suffix_ids(renderer, [results[index]])))  # type: ignore[arg-type]
    return spans
