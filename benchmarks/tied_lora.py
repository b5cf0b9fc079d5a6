"""Tied-LoRA vs LoRA at equal rank on one model: trainable parameters, adapter file size and training step time.

Run from the repo root: ``.venv/bin/python -m benchmarks.tied_lora`` (CPU friendly; ``--help`` for sizes). Every
configuration adapts q/k/v of the same randomly initialised LLaMA-style model built offline. A training step is
forward + backward + AdamW step on a fixed batch. Steps of all configurations are interleaved round-robin and the
median per configuration is reported, so drift of a shared machine affects them alike. The table goes to
``docs/benchmarks.md`` (section ``tied_lora``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks._report import machine_description, markdown_table, update_section
from trl_igrpo.testing import build_tiny_model
from trl_igrpo.tied_lora import TiedLoraConfig

QKV = ["q_proj", "k_proj", "v_proj"]


def peft_configs(rank: int) -> dict[str, object]:
    """LoRA baseline and the Tied-LoRA settings compared, all on q/k/v at the same rank."""
    return {
        "LoRA (PEFT, separate q/k/v)": LoraConfig(r=rank, lora_alpha=rank, target_modules=QKV),
        "TL6 fused QKV (A, B, u, v)": TiedLoraConfig(r=rank, target_modules=QKV),
        "TL5 fused QKV (A, B)": TiedLoraConfig.from_configuration("TL5", r=rank, target_modules=QKV),
        "VeRA-like fused QKV (u, v)": TiedLoraConfig(r=rank, target_modules=QKV, train_A=False, train_B=False),
        "TL6 tied by shape": TiedLoraConfig(r=rank, target_modules=QKV, fused_module_groups=None),
    }


def adapter_file_bytes(model, directory: str) -> int:
    model.save_pretrained(directory)
    return os.path.getsize(os.path.join(directory, "adapter_model.safetensors"))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per configuration (after 2 warm-up steps)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: CPU time is robust to load)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    work = tempfile.mkdtemp(prefix="tied-lora-bench-")
    model_dir = build_tiny_model(
        os.path.join(work, "model"), architecture="llama", hidden_size=args.hidden_size, num_layers=args.num_layers
    )
    generator = torch.Generator().manual_seed(0)
    vocab_size = AutoConfig.from_pretrained(model_dir).vocab_size
    input_ids = torch.randint(0, vocab_size, (args.batch_size, args.seq_len), generator=generator)

    runs = {}
    for name, config in peft_configs(args.rank).items():
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        runs[name] = {
            "model": model,
            "optimizer": torch.optim.AdamW(params, lr=1e-4),
            "trainable": sum(p.numel() for p in params),
            "file_bytes": adapter_file_bytes(model, os.path.join(work, name.split()[0] + str(len(runs)))),
            "times": [],
            "cpu_times": [],
        }

    def step(run) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        loss = run["model"](input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        run["optimizer"].step()
        run["optimizer"].zero_grad(set_to_none=True)
        run["times"].append(time.perf_counter() - wall)
        run["cpu_times"].append(time.process_time() - cpu)

    for run in runs.values():  # warm-up, then discard
        step(run), step(run)
        run["times"].clear(), run["cpu_times"].clear()
    for _ in range(args.steps):  # round-robin so machine-load drift hits every configuration alike
        for run in runs.values():
            step(run)

    lora = runs["LoRA (PEFT, separate q/k/v)"]
    lora_median = statistics.median(lora["times"])
    lora_cpu = statistics.median(lora["cpu_times"])
    rows = []
    for name, run in runs.items():
        median = statistics.median(run["times"])
        cpu = statistics.median(run["cpu_times"])
        rows.append([
            name,
            f"{run['trainable']:,}",
            f"{100 * run['trainable'] / lora['trainable']:.1f}%",
            f"{run['file_bytes'] / 1024:.1f}",
            f"{1000 * median:.1f}",
            f"{median / lora_median:.3f}x",
            f"{1000 * cpu:.1f}",
            f"{cpu / lora_cpu:.3f}x",
        ])  # fmt: skip
    table = markdown_table(
        [
            "configuration",
            "trainable params",
            "vs LoRA",
            "adapter file (KiB)",
            "step time (ms, median)",
            "step / LoRA",
            "CPU time (ms, median)",
            "CPU / LoRA",
        ],
        rows,
    )
    d, L, r = args.hidden_size, args.num_layers, args.rank
    markdown = (
        "## Tied-LoRA vs LoRA (`benchmarks/tied_lora.py`)\n\n"
        f"Random LLaMA-style model, hidden {d}, {L} layers, q/k/v adapted at rank {r} (alpha = r), batch "
        f"{args.batch_size} x {args.seq_len} tokens, forward + backward + AdamW step, median of {args.steps} "
        f"interleaved steps after 2 warm-up steps, {args.threads} torch thread(s); wall-clock and process CPU "
        f"time per step (CPU time is the robust figure on a loaded machine). Machine: {machine_description()}.\n\n"
        f"{table}\n\n"
        "Baseline: PEFT's LoRA on the separate q/k/v modules at the same rank. The model uses grouped-query attention "
        f"(k/v project {d} -> {d // 2}), so every count is below the multi-head formulas (LoRA 6Ldr, TL6 on fused QKV "
        "4dr + L(r + 3d)); the LLaMA-2-7B check of those formulas is `tests/test_tied_lora.py::"
        "test_llama2_7b_tl6_is_12_5_percent_of_fused_qkv_lora`. The VeRA-like row saves its frozen random A/B too "
        "(same file size as TL6). Target: Tied-LoRA step time within 1.10x of LoRA's; timings on a shared 2-core "
        "machine are noisy, compare rows within one run only."
    )
    print(markdown)
    if not args.no_write:
        update_section("tied_lora", markdown)
    return markdown


if __name__ == "__main__":
    main()
