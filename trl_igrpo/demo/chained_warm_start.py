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

import os
import random

from .warm_start import SFTPairs, build_sft_warm_start, sft_pair

__all__ = ["CHAINED_SFT_DATA_SEED", "CHAINED_SFT_STEPS", "build_chained_warm_start"]

#: Supervised steps of the warm start (batch 64): the 3-layer model learns the one-digit steps after about 600.
CHAINED_SFT_STEPS = 1200
CHAINED_SFT_DATA_SEED = 20_000
_STAMP = "chained_warm_start.json"


def _sft_pairs(
    tokenizer, rng: random.Random, pool_size: int, carry_slip_rate: float, refinement_fraction: float,
    draft_carry_slip_rate: float,
) -> tuple[SFTPairs, SFTPairs]:  # fmt: skip
    """(plain, refinement) token pairs: the teacher's chains, slipping on carries; a share ``refinement_fraction`` of
    the prompts carry a prior draft from the same teacher, whose first slip the target fixes."""
    from ..igrpo.drafts import build_refinement_prompt
    from .chained_arithmetic import (
        chain_solution,
        make_chained_examples,
        parse_chain_question,
        refine_chain,
        teacher_results,
    )

    plain: SFTPairs = []
    refinement: SFTPairs = []
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
        bucket.append(sft_pair(tokenizer, prompt, completion))
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

    def sft_pairs(tokenizer, rng: random.Random) -> tuple[SFTPairs, SFTPairs]:
        return _sft_pairs(tokenizer, rng, pool_size, carry_slip_rate, refinement_fraction, draft_carry_slip_rate)

    return build_sft_warm_start(
        output_dir,
        stamp_name=_STAMP,
        settings=settings,
        sft_pairs=sft_pairs,
        tiny_model={"num_layers": num_layers, "hidden_size": hidden_size},
        sft_steps=sft_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        refinement_fraction=refinement_fraction,
        warmup_steps=max(1, sft_steps // 20),
        overwrite=overwrite,
        progress="chained warm start (SFT)" if progress else None,
    )
