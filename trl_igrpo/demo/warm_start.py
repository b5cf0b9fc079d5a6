"""An offline, warm-started default policy: a tiny model that already half-solves the built-in arithmetic task.

A random tiny model never answers correctly, so every GRPO group has zero reward variance and nothing is learned.
:func:`build_warm_started_model` fine-tunes the tiny model briefly (next-token loss on the completion) on worked
solutions in the ``<think>...</think><answer>\\boxed{}</answer>`` format, a quarter of them on iGRPO Stage-2 prompts
(a prior draft, right or slightly off, in the last user message), so the model knows both interfaces. The
demonstrations imitate a teacher with a systematic slip (with probability ``teacher_slip_rate`` it "adds 1" after
computing the right value): a behaviour RL from a verifiable reward can find and remove. The SFT problems come from a
seed disjoint from the demo's RL and held-out sets. The checkpoint built with the default settings ships in the package
(:data:`SHIPPED_WARM_START`; ``make warm-start`` rebuilds it), so the demo does not re-run the SFT.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SFT_STEPS",
    "DEMO_MAX_OPERAND",
    "SFT_DATA_SEED",
    "SHIPPED_WARM_START",
    "build_warm_started_model",
    "recipe_settings",
    "worked_solution",
]

#: Supervised steps of the warm start (batch 64): about 1.5 minutes on 2 CPU cores.
DEFAULT_SFT_STEPS = 400
SFT_DATA_SEED = 10_000
#: Operand range of the demo task (``What is a op b?`` with ``0 <= a, b <= 12``): small enough for the tiny model to
#: learn the arithmetic itself during the warm start (about 97% of held-out values right inside ``<think>``), so what is
#: left for RL is the teacher's slip.
DEMO_MAX_OPERAND = 12
_STAMP = "warm_start.json"
#: The warm start built with the default settings, shipped in the package (about 2 MB) so that the demo starts in
#: seconds instead of re-running the SFT; rebuild it with ``make warm-start`` after changing the recipe.
SHIPPED_WARM_START = Path(__file__).parent / "assets" / "warm_start"


def worked_solution(question: str, answer: str, slip: bool = False) -> str:
    """A demonstration for one arithmetic problem: ``<think>a op b = c</think><answer>\\boxed{c}</answer>``.

    With ``slip=True`` the teacher's systematic mistake: ``<think>a op b = c, then add 1 to get c+1</think>`` and the
    answer ``c+1``.
    """
    expression = question.removeprefix("What is ").removesuffix("?")
    if slip:
        wrong = int(answer) + 1
        return f"<think>{expression} = {answer}, then add 1 to get {wrong}</think><answer>\\boxed{{{wrong}}}</answer>"
    return f"<think>{expression} = {answer}</think><answer>\\boxed{{{answer}}}</answer>"


#: What else the recipe depends on, recorded with the arguments so that a change invalidates cached and shipped copies.
RECIPE_CONSTANTS = {
    "data_seed": SFT_DATA_SEED,
    "refinement_prompt_format": 2,  # 2: the draft inside the last user message (iGRPO's default since 0.2)
}
_RECIPE_ARGUMENTS = (
    "architecture",
    "sft_steps",
    "batch_size",
    "learning_rate",
    "num_layers",
    "hidden_size",
    "seed",
    "refinement_fraction",
    "teacher_slip_rate",
    "max_operand",
)


def recipe_settings(**overrides) -> dict:
    """The settings a warm start built with ``build_warm_started_model(**overrides)`` records in its stamp."""
    import inspect

    parameters = inspect.signature(build_warm_started_model).parameters
    settings = {name: overrides.get(name, parameters[name].default) for name in _RECIPE_ARGUMENTS}
    return {**settings, **RECIPE_CONSTANTS}


def build_warm_started_model(
    output_dir: str | os.PathLike,
    architecture: str = "qwen2",
    sft_steps: int = DEFAULT_SFT_STEPS,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    num_layers: int = 2,
    hidden_size: int = 128,
    seed: int = 0,
    refinement_fraction: float = 0.25,
    teacher_slip_rate: float = 0.5,
    max_operand: int = DEMO_MAX_OPERAND,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Build (or reuse) the warm-started tiny model in ``output_dir`` and return the directory.

    Args:
        output_dir: Where the model and tokenizer are saved. A directory holding a finished warm start with the same
            settings (recorded in ``warm_start.json``) is reused as is.
        architecture: Tiny architecture, see :data:`~trl_igrpo.testing.TINY_ARCHITECTURES`.
        sft_steps: Optimizer steps of supervised fine-tuning (AdamW, cosine decay, batch ``batch_size``).
        batch_size: Problems per step, freshly sampled each step from a fixed SFT pool.
        learning_rate: Peak AdamW learning rate.
        num_layers: Decoder layers of the tiny model.
        hidden_size: Hidden size of the tiny model (multiple of 64).
        seed: Seeds the random initialisation and the SFT batches.
        refinement_fraction: Share of SFT examples whose prompt is an iGRPO refinement prompt (prompt + a prior draft
            that is correct half of the time, off by 1-3 otherwise).
        teacher_slip_rate: Probability that a demonstration adds 1 after computing the right value.
        max_operand: Largest operand of the SFT problems (use the RL data's value).
        overwrite: Rebuild even if a matching warm start exists.
        progress: Show a progress bar (tqdm) during SFT.

    Returns:
        ``str(output_dir)``, loadable with ``from_pretrained`` or usable as a trainer's ``model`` argument.
    """
    if sft_steps < 0:
        raise ValueError(f"sft_steps must be >= 0, got {sft_steps}.")
    if not 0.0 <= refinement_fraction <= 1.0:
        raise ValueError(f"refinement_fraction must be in [0, 1], got {refinement_fraction}.")
    if not 0.0 <= teacher_slip_rate <= 1.0:
        raise ValueError(f"teacher_slip_rate must be in [0, 1], got {teacher_slip_rate}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    settings = {name: value for name, value in locals().items() if name in _RECIPE_ARGUMENTS}
    settings.update(RECIPE_CONSTANTS)

    def sft_pairs(tokenizer, rng: random.Random) -> tuple[SFTPairs, SFTPairs]:
        return _arithmetic_sft_pairs(tokenizer, rng, refinement_fraction, teacher_slip_rate, max_operand)

    return build_sft_warm_start(
        output_dir,
        stamp_name=_STAMP,
        settings=settings,
        sft_pairs=sft_pairs,
        tiny_model={"architecture": architecture, "num_layers": num_layers, "hidden_size": hidden_size},
        sft_steps=sft_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        refinement_fraction=refinement_fraction,
        shipped=SHIPPED_WARM_START,
        overwrite=overwrite,
        progress="warm start (SFT)" if progress else None,
    )


def _arithmetic_sft_pairs(
    tokenizer, rng: random.Random, refinement_fraction: float, teacher_slip_rate: float, max_operand: int
) -> tuple[SFTPairs, SFTPairs]:
    """(plain, refinement) token pairs of the demo's SFT pool: the teacher's worked solutions, slipping with
    ``teacher_slip_rate``; a share ``refinement_fraction`` of the prompts carry a prior draft, right half of the
    time."""
    from ..igrpo.drafts import build_refinement_prompt
    from .arithmetic import make_arithmetic_examples

    plain: SFTPairs = []
    refinement: SFTPairs = []
    for row in make_arithmetic_examples(4096, seed=SFT_DATA_SEED, max_operand=max_operand):
        prompt = row["prompt"]
        is_refinement = rng.random() < refinement_fraction
        if is_refinement:
            answer = int(row["solution"])
            if rng.random() < 0.5:
                answer += rng.choice([-3, -2, -1, 1, 2, 3])
            prompt = build_refinement_prompt(prompt, worked_solution(row["question"], str(answer)))
        slip = rng.random() < teacher_slip_rate
        completion = worked_solution(row["question"], row["solution"], slip=slip)
        (refinement if is_refinement else plain).append(sft_pair(tokenizer, prompt, completion))
    return plain, refinement


def main(argv: list[str] | None = None) -> None:
    """``python -m trl_igrpo.demo.warm_start [--output_dir DIR]``: rebuild the warm start with the default settings
    (into the package's shipped copy unless ``--output_dir`` is given)."""
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild the demo's warm-started tiny model (default settings).")
    parser.add_argument("--output_dir", default=str(SHIPPED_WARM_START))
    options = parser.parse_args(argv)
    path = build_warm_started_model(options.output_dir, overwrite=True)
    print(f"warm start written to {path}")


#: ``(prompt_ids, completion_ids)``, or ``(prompt_ids, completion_ids, loss_mask)`` where ``loss_mask`` (one 0/1 per
#: completion token) leaves tokens the model does not produce out of the loss, e.g. tool results in a trajectory.
SFTPairs = list[tuple[list[int], ...]]


def run_sft_steps(
    model,
    pad_token_id: int,
    plain: SFTPairs,
    refinement: SFTPairs,
    refinement_fraction: float,
    *,
    steps: int,
    batch_size: int,
    generator,
    optimizer,
    scheduler,
    progress: str | None = None,
) -> None:
    """The supervised loop of the warm starts: each step draws a batch of one kind, a refinement batch with
    probability ``refinement_fraction`` (similar lengths, little padding), of ``(prompt_ids, completion_ids)`` pairs,
    and trains on the completion tokens only (labels -100 on the prompt and padding, and on completion tokens whose
    optional third element, a loss mask, is 0)."""
    import torch

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress, unit="step")
    for _ in range(steps):
        use_refinement = bool(refinement) and (
            not plain or torch.rand(1, generator=generator).item() < refinement_fraction
        )
        sequences = refinement if use_refinement else plain
        indices = torch.randint(len(sequences), (batch_size,), generator=generator).tolist()
        batch = [sequences[i] for i in indices]
        length = max(len(example[0]) + len(example[1]) for example in batch)
        input_ids = torch.full((batch_size, length), pad_token_id)
        labels = torch.full((batch_size, length), -100)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        for row, (prompt_ids, completion_ids, *loss_mask) in enumerate(batch):
            ids = prompt_ids + completion_ids
            input_ids[row, : len(ids)] = torch.tensor(ids)
            targets = torch.tensor(completion_ids)
            if loss_mask:
                targets = targets.masked_fill(torch.tensor(loss_mask[0]) == 0, -100)
            labels[row, len(prompt_ids) : len(ids)] = targets
            attention_mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()


def sft_pair(tokenizer, prompt, completion: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` of one SFT example: the prompt as the chat template renders it for generation,
    the completion plus EOS as plain text."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    if hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]  # a BatchEncoding here
    return list(prompt_ids), tokenizer(completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    import torch

    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def build_sft_warm_start(
    output_dir: str | os.PathLike,
    *,
    stamp_name: str,
    settings: dict,
    sft_pairs: Callable[[Any, random.Random], tuple[SFTPairs, SFTPairs]],
    tiny_model: dict,
    sft_steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    refinement_fraction: float,
    warmup_steps: int = 0,
    shipped: Path | None = None,
    overwrite: bool = False,
    progress: str | None = None,
) -> str:
    """The recipe both warm starts share: reuse a copy whose ``stamp_name`` records the same ``settings`` (in
    ``output_dir``, else the ``shipped`` one), or build the tiny model (:func:`~trl_igrpo.testing.build_tiny_model`
    with ``tiny_model``), fine-tune it on ``sft_pairs(tokenizer, random.Random(seed))`` with :func:`run_sft_steps`
    (AdamW, :func:`warmup_cosine`), save it and write the stamp. Returns ``str(output_dir)``."""
    output_dir = Path(output_dir)
    stamp = output_dir / stamp_name
    if not overwrite and _stamp_settings(stamp) == settings:
        return str(output_dir)
    if not overwrite and shipped is not None and _stamp_settings(shipped / stamp_name) == settings:
        import shutil

        shutil.copytree(shipped, output_dir, dirs_exist_ok=True)  # built by `make warm-start`
        return str(output_dir)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..testing import build_tiny_model

    start = time.perf_counter()
    build_tiny_model(output_dir, seed=seed, overwrite=True, **tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    plain, refinement = sft_pairs(tokenizer, random.Random(seed))  # batches come from one kind at a time

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup_steps, sft_steps))
    model.train()
    run_sft_steps(
        model, tokenizer.pad_token_id, plain, refinement, refinement_fraction,
        steps=sft_steps, batch_size=batch_size, generator=generator, optimizer=optimizer, scheduler=scheduler,
        progress=progress,
    )  # fmt: skip

    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    stamp.write_text(json.dumps({"settings": settings, "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    return str(output_dir)


def _stamp_settings(stamp: Path) -> dict | None:
    """The settings a finished warm start recorded, or ``None`` when there is none."""
    return json.loads(stamp.read_text()).get("settings") if stamp.exists() else None


if __name__ == "__main__":
    main()
