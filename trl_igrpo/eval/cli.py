"""``trl-igrpo eval`` / ``python -m trl_igrpo.eval``: evaluate a checkpoint on a math benchmark with the iGRPO paper's
protocol (pass@1 averaged over k samples at temperature 0.6, top-p 0.95, math-verify grading, single pass).

    trl-igrpo eval --model_name_or_path outputs/igrpo-math-7b --preset math500
    trl-igrpo eval --model_name_or_path outputs/igrpo-math-7b --preset aime24 --backend vllm
    trl-igrpo eval --model_name_or_path ./ckpt --dataset_name bench.jsonl --num_samples 4 --max_new_tokens 512
    trl-igrpo eval --list_presets

Writes ``results.json``, ``results.md`` and ``samples.jsonl`` into ``--output_dir`` and prints the Markdown table.
Building the parser imports nothing heavy, so ``--help`` is instant; torch and transformers load when a run starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .data import ANSWER_FORMATS, DEFAULT_PROMPT_TEMPLATE, PRESETS, DataError

__all__ = ["build_parser", "main", "prepare", "run", "settings_from_args"]

_DEFAULTS = {"problem_column": "problem", "answer_column": "answer", "num_samples": 8}


def build_parser(prog: str = "trl-igrpo eval") -> argparse.ArgumentParser:
    """The argument parser of ``trl-igrpo eval`` (flags in the style of TRL's scripts: ``--model_name_or_path``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a model on a math benchmark with the iGRPO paper's protocol: k samples per problem at "
        "temperature 0.6 / top-p 0.95, graded by math-verify (hard timeouts); reports pass@1 (mean over k), "
        "pass@k, maj@k, mean length and unparseable answers, overall and per subject/level.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", help="Local directory or Hub id; a PEFT/Tied-LoRA adapter works too.")
    model.add_argument(
        "--base_model_name_or_path", help="Base model of an adapter (default: the one adapter_config.json records)."
    )
    model.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32.")
    model.add_argument("--device", help="cuda, cpu, ... (default: cuda when available).")
    model.add_argument("--revision", help="Model revision on the Hub.")
    model.add_argument("--trust_remote_code", action="store_true", help="Allow the model's own code (Nemotron-NAS).")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="Column layout, Hub copy and k of a paper benchmark (--list_presets).",
    )
    data.add_argument("--list_presets", action="store_true", help="Print the presets and exit.")
    data.add_argument("--dataset_name", help="A .jsonl/.json/.parquet/.csv file, a dataset directory or a Hub id.")
    data.add_argument("--dataset_config", help="Hub dataset configuration (gsm8k: main).")
    data.add_argument("--dataset_split", help="Split to evaluate (a local file has one).")
    data.add_argument("--problem_column", help="Problem column (default: problem, or the preset's).")
    data.add_argument(
        "--answer_column", help="Gold answer column (default: answer; falls back to solution's last \\boxed{}).."
    )
    data.add_argument("--answer_format", choices=ANSWER_FORMATS, help="plain, boxed or gsm8k (default: automatic).")
    data.add_argument("--group_columns", nargs="*", help="Breakdown columns (default: subject/level/type if present).")
    data.add_argument("--limit", type=int, help="Evaluate only the first N problems.")
    data.add_argument(
        "--on_bad_gold",
        choices=("error", "skip"),
        default="error",
        help="Gold answers math-verify cannot use: stop (naming them) or leave those problems out.",
    )

    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--num_samples", type=int, help="k samples per problem (paper: 64 on AIME, 8 otherwise).")
    protocol.add_argument("--temperature", type=float, default=0.6, help="0 = greedy (with --num_samples 1).")
    protocol.add_argument("--top_p", type=float, default=0.95)
    protocol.add_argument(
        "--max_new_tokens", type=int, default=32768, help="Per sample (the paper's NeMo-Skills runs: 65000)."
    )
    protocol.add_argument(
        "--reasoning",
        choices=("on", "off", "none"),
        default="none",
        help="Llama-Nemotron reasoning toggle (detailed thinking on/off, or enable_thinking); none: prompts unchanged.",
    )
    protocol.add_argument("--reasoning_style", choices=("system_prompt", "enable_thinking"), help="Force a style.")
    protocol.add_argument(
        "--mode",
        choices=("single", "draft_refine"),
        default="single",
        help="single: one pass from the original prompt (the paper); draft_refine: diagnostic two-pass.",
    )
    protocol.add_argument("--strip_draft_think", action="store_true", help="draft_refine: drop the draft's <think>.")
    protocol.add_argument("--prompt_template", default=DEFAULT_PROMPT_TEMPLATE, help="User message with {problem}.")
    protocol.add_argument(
        "--system_prompt", help="A system message; 'igrpo' is the paper's training system prompt (App. C)."
    )
    protocol.add_argument("--seed", type=int, default=0)

    run = parser.add_argument_group("run")
    run.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    run.add_argument("--batch_size", type=int, default=16, help="Sequences per generate call (transformers).")
    run.add_argument("--tensor_parallel_size", type=int, default=1, help="vllm backend.")
    run.add_argument("--gpu_memory_utilization", type=float, default=0.9, help="vllm backend.")
    run.add_argument("--max_model_len", type=int, help="vllm backend (default: the model's).")
    run.add_argument("--output_dir", help="Where results go (default: outputs/eval/<benchmark>).")
    run.add_argument("--no_progress", action="store_true", help="No progress bar.")
    return parser


def settings_from_args(args: argparse.Namespace):
    """The :class:`~trl_igrpo.eval.runner.EvalSettings` the flags describe."""
    from ..data.prompts import resolve_system_prompt
    from .runner import EvalSettings

    system_prompt = resolve_system_prompt(args.system_prompt)
    return EvalSettings(
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        mode=args.mode,
        reasoning=None if args.reasoning == "none" else args.reasoning,
        reasoning_style=args.reasoning_style,
        prompt_template=args.prompt_template,
        system_prompt=system_prompt,
        batch_size=args.batch_size,
        seed=args.seed,
        on_bad_gold=args.on_bad_gold,
        strip_draft_think=args.strip_draft_think,
    )


def _apply_preset(args: argparse.Namespace) -> None:
    preset = PRESETS.get(args.preset) if args.preset else None
    if preset is not None:
        if args.dataset_name is None:
            args.dataset_name = preset.dataset_name
            args.dataset_config = args.dataset_config or preset.dataset_config
            args.dataset_split = args.dataset_split or preset.split
        args.problem_column = args.problem_column or preset.problem_column
        args.answer_column = args.answer_column or preset.answer_column
        args.answer_format = args.answer_format or preset.answer_format
        args.num_samples = args.num_samples or preset.num_samples
        if args.group_columns is None and preset.group_columns:
            args.group_columns = list(preset.group_columns)
    for name, value in _DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _list_presets() -> str:
    rows = ["| preset | Hub copy | split | problem | answer | format | k |", "|---|---|---|---|---|---|---|"]
    for name, p in sorted(PRESETS.items()):
        source = p.dataset_name + (f" ({p.dataset_config})" if p.dataset_config else "")
        rows.append(
            f"| {name} | {source} | {p.split} | {p.problem_column} | {p.answer_column} | {p.answer_format} | "
            f"{p.num_samples} |"
        )
    return "\n".join(rows)


def _benchmark_tag(args: argparse.Namespace) -> str:
    if args.preset:
        return args.preset
    return Path(args.dataset_name.rstrip("/")).stem.replace("/", "_") or "benchmark"


def prepare(args: argparse.Namespace):
    """Everything that can fail fast, before a model is loaded: settings, data, gold answers, model and base paths,
    the vLLM import. Returns ``(settings, problems, data_info, grader)``; errors are ``DataError``/``ValueError``/
    ``FileNotFoundError``/``ImportError`` with one-line messages."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..utils.model_path import check_model_path
    from .data import load_problems
    from .grading import check_gold_answers
    from .models import adapter_base_model, is_adapter

    settings = settings_from_args(args)
    settings.validate()
    args.model_name_or_path = check_model_path(args.model_name_or_path)
    if is_adapter(args.model_name_or_path):
        base = args.base_model_name_or_path or adapter_base_model(args.model_name_or_path)
        check_model_path(base, what="base model path (from the adapter's adapter_config.json)")
    if args.backend == "vllm":
        from .vllm_backend import require_vllm

        require_vllm()
    problems, data_info = load_problems(
        args.dataset_name,
        args.dataset_config,
        args.dataset_split,
        args.problem_column,
        args.answer_column,
        args.answer_format,
        args.group_columns,
        args.limit,
    )
    from ..rewards.math import MathAccuracyReward

    grader = MathAccuracyReward()
    try:
        check_gold_answers(problems, grader, settings.on_bad_gold)
    except BaseException:
        grader.close()
        raise
    return settings, problems, data_info, grader


def run(args: argparse.Namespace, settings, problems, data_info, grader) -> dict:
    """Load the model, evaluate, write and print the results; returns the ``results.json`` content."""
    from .results import format_markdown, write_results
    from .runner import evaluate

    try:
        progress = not args.no_progress
        if args.backend == "vllm":
            model, tokenizer, model_info, generate = _load_for_vllm(args, settings, progress)
        else:
            from .models import load_model_and_tokenizer

            model, tokenizer, model_info = load_model_and_tokenizer(
                args.model_name_or_path,
                args.base_model_name_or_path,
                dtype=args.dtype,
                device=args.device,
                revision=args.revision,
                trust_remote_code=args.trust_remote_code,
            )
            generate = None
        result = evaluate(model, tokenizer, problems, settings, generate=generate, grader=grader, progress=progress)
    finally:
        grader.close()
    result.results = {"model": model_info, "data": data_info, "backend": args.backend, **result.results}
    output_dir = Path(args.output_dir or Path("outputs") / "eval" / _benchmark_tag(args))
    title = f"{_benchmark_tag(args)}: {args.model_name_or_path}"
    paths = write_results(result, output_dir, title)
    print(format_markdown(result.results, title))
    print(f"results: {paths['results']}  table: {paths['markdown']}  samples: {paths['samples']}")
    return result.results


def _load_for_vllm(args, settings, progress):
    from transformers import AutoTokenizer

    from ..utils.model_path import check_model_path
    from .models import is_adapter, load_model_and_tokenizer
    from .runner import apply_reasoning
    from .vllm_backend import vllm_backend

    path = check_model_path(args.model_name_or_path)
    info = {"model": path, "adapter": None, "base_model": None, "peft_type": None}
    if is_adapter(path):  # vLLM loads full checkpoints: merge once, save next to the results
        model, tokenizer, info = load_model_and_tokenizer(
            path,
            args.base_model_name_or_path,
            dtype=args.dtype,
            device="cpu",
            trust_remote_code=args.trust_remote_code,
        )
        merged = Path(args.output_dir or Path("outputs") / "eval" / _benchmark_tag(args)) / "merged-model"
        model.save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        del model
        path = str(merged)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=args.revision, trust_remote_code=args.trust_remote_code)
    # the chat-template kwargs of the reasoning toggle are the same for every prompt
    _, chat_template_kwargs = apply_reasoning(
        [[{"role": "user", "content": "x"}]], tokenizer, settings.reasoning, settings.reasoning_style
    )
    engine_kwargs = {
        "tensor_parallel_size": args.tensor_parallel_size,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "trust_remote_code": args.trust_remote_code,
    }
    if args.max_model_len:
        engine_kwargs["max_model_len"] = args.max_model_len
    generate = vllm_backend(path, tokenizer, settings, chat_template_kwargs, args.dtype, progress, **engine_kwargs)
    return None, tokenizer, info, generate


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trl-igrpo eval`` and ``python -m trl_igrpo.eval``; returns the exit status (2: usage or data
    error, one line naming the problem)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        print(_list_presets())
        return 0
    missing = [flag for flag, value in (("--model_name_or_path", args.model_name_or_path),) if not value]
    if args.dataset_name is None and args.preset is None:
        missing.append("--dataset_name (or --preset)")
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    _apply_preset(args)
    if args.backend == "vllm":  # before anything heavy is imported or loaded
        from ..utils.extras import require_vllm_package

        try:
            require_vllm_package("--backend vllm")
        except ImportError as error:
            print(f"{parser.prog}: error: {error} Or use --backend transformers (the default).", file=sys.stderr)
            return 2
    try:
        plan = prepare(args)
    except (DataError, FileNotFoundError, ValueError, ImportError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    run(args, *plan)
    return 0
