r"""The warm start of the chained-arithmetic benchmark: a tiny model that solves some multi-step problems and slips
on individual steps.

:func:`build_chained_warm_start` builds a tiny Qwen2 (:func:`~trl_igrpo.testing.build_tiny_model`, 3 layers) and
fine-tunes it (supervised, loss on the completion only) on worked solutions of
:mod:`~trl_igrpo.demo.chained_arithmetic` written by an imperfect teacher that forgets a carry or borrow with
probability ``carry_slip_rate`` (:func:`~trl_igrpo.demo.chained_arithmetic.teacher_results`); the steps after a slip
continue from the wrong value. A share ``refinement_fraction`` of the SFT prompts are iGRPO Stage-2 prompts
(:func:`~trl_igrpo.igrpo.drafts.build_refinement_prompt`, default template) holding a prior draft from the same teacher;
their targets copy the draft up to its first slip, fix that step and continue as the teacher does
(:func:`~trl_igrpo.demo.chained_arithmetic.refine_chain`). So the model learns the refinement interface iGRPO's Stage 2
uses, and a draft's correct prefix is worth copying.

The model learns the format and the single steps, and copies the teacher's habit: at ``carry_slip_rate=0.5`` it
forgets about half of its carries, a behaviour that nothing in the demonstrations marks as wrong, so held-out accuracy
starts low (a chain has 1-2 carries on average) with errors at the level of single steps, and a verifiable reward can
remove them, step by step. Both GRPO and iGRPO start from this same checkpoint. It is cached with ``save_pretrained`` and reused when the
settings match (``chained_warm_start.json``). The SFT problems come from their own seed
(:data:`CHAINED_SFT_DATA_SEED`), disjoint in expectation from the RL and held-out problems.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

__all__ = ["CHAINED_SFT_DATA_SEED", "CHAINED_SFT_STEPS", "build_chained_warm_start"]

#: Supervised steps of the warm start (batch 64): the 3-layer model learns the one-digit steps after about 600.
CHAINED_SFT_STEPS = 1200
CHAINED_SFT_DATA_SEED = 20_000
_STAMP = "chained_warm_start.json"


def _sft_pairs(
    tokenizer, pool_size: int, rng: random.Random, carry_slip_rate: float, refinement_fraction: float,
    draft_carry_slip_rate: float,
) -> tuple[list, list]:  # fmt: skip
    from ..igrpo.drafts import build_refinement_prompt
    from .chained_arithmetic import (
        chain_solution,
        make_chained_examples,
        parse_chain_question,
        refine_chain,
        teacher_results,
    )

    plain: list[tuple[list[int], list[int]]] = []
    refinement: list[tuple[list[int], list[int]]] = []
    for row in make_chained_examples(pool_size, seed=CHAINED_SFT_DATA_SEED):
        chain = parse_chain_question(row["question"])
        prompt = row["prompt"]
        if rng.random() < refinement_fraction:
            draft = teacher_results(chain, rng, draft_carry_slip_rate)
            prompt = build_refinement_prompt(prompt, chain_solution(chain, draft))
            completion = chain_solution(chain, refine_chain(chain, draft, rng, carry_slip_rate))
            bucket = refinement
        else:
            completion = chain_solution(chain, teacher_results(chain, rng, carry_slip_rate))
            bucket = plain
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if hasattr(prompt_ids, "keys"):
            prompt_ids = prompt_ids["input_ids"]
        completion_ids = tokenizer(completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        bucket.append((list(prompt_ids), completion_ids))
    return plain, refinement


def build_chained_warm_start(
    output_dir: str | os.PathLike,
    sft_steps: int = CHAINED_SFT_STEPS,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    num_layers: int = 3,
    hidden_size: int = 128,
    seed: int = 0,
    carry_slip_rate: float = 0.5,
    refinement_fraction: float = 0.3,
    draft_carry_slip_rate: float = 0.5,
    pool_size: int = 8192,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Build (or reuse) the chained-arithmetic warm start in ``output_dir`` and return the directory.

    Args:
        output_dir: Where the model and tokenizer are saved; reused as is when ``chained_warm_start.json`` records
            the same settings.
        sft_steps: AdamW steps (cosine decay) of supervised fine-tuning.
        batch_size: Examples per step, drawn from a fixed pool of ``pool_size`` problems.
        learning_rate: Peak learning rate.
        num_layers: Decoder layers of the tiny Qwen2 model.
        hidden_size: Hidden size (multiple of 64).
        seed: Seeds the initialisation, the teacher's slips and the batches.
        carry_slip_rate: Probability that a demonstration forgets a carry or borrow.
        refinement_fraction: Share of SFT examples whose prompt holds a prior draft (iGRPO Stage-2 format).
        draft_carry_slip_rate: The same for those prior drafts.
        pool_size: Number of distinct SFT problems.
        overwrite: Rebuild even if a matching warm start exists.
        progress: Show a progress bar.

    Returns:
        ``str(output_dir)``, loadable with ``from_pretrained`` or usable as a trainer's ``model`` argument.
    """
    for name, value in (
        ("carry_slip_rate", carry_slip_rate),
        ("refinement_fraction", refinement_fraction),
        ("draft_carry_slip_rate", draft_carry_slip_rate),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")
    if sft_steps < 0 or batch_size < 1 or pool_size < 1:
        raise ValueError("sft_steps must be >= 0, batch_size and pool_size >= 1.")
    output_dir = Path(output_dir)
    settings = dict(
        sft_steps=sft_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        num_layers=num_layers,
        hidden_size=hidden_size,
        seed=seed,
        carry_slip_rate=carry_slip_rate,
        refinement_fraction=refinement_fraction,
        draft_carry_slip_rate=draft_carry_slip_rate,
        pool_size=pool_size,
        data_seed=CHAINED_SFT_DATA_SEED,
        format=2,
    )
    stamp = output_dir / _STAMP
    if not overwrite and stamp.exists() and json.loads(stamp.read_text()).get("settings") == settings:
        return str(output_dir)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..testing import build_tiny_model
    from .warm_start import run_sft_steps

    start = time.perf_counter()
    build_tiny_model(output_dir, seed=seed, num_layers=num_layers, hidden_size=hidden_size, overwrite=True)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    rng = random.Random(seed)
    plain, refinement = _sft_pairs(
        tokenizer, pool_size, rng, carry_slip_rate, refinement_fraction, draft_carry_slip_rate
    )  # batches come from one kind at a time: similar lengths, little padding

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    warmup = max(1, sft_steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + torch.cos(torch.tensor((step - warmup) / max(sft_steps - warmup, 1) * torch.pi)).item())

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    run_sft_steps(
        model, tokenizer.pad_token_id, plain, refinement, refinement_fraction,
        steps=sft_steps, batch_size=batch_size, generator=generator, optimizer=optimizer, scheduler=scheduler,
        progress="chained warm start (SFT)" if progress else None,
    )  # fmt: skip

    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    stamp.write_text(json.dumps({"settings": settings, "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    return str(output_dir)
