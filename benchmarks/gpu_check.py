"""GPU check: iGRPO vs GRPO step time and peak GPU memory on a Qwen2.5-0.5B-shaped model, with and without Liger
kernels, and Tied-LoRA vs LoRA. One run of at most 8 minutes on one H100/H200; a ``--cpu --tiny`` dry run of the same
code runs in CI (``tests/test_gpu_check.py``) so the kit cannot rot.

What it trains: a randomly initialised model with Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 heads / 2 KV heads,
vocabulary 151,936, tied embeddings; config only, nothing downloaded) and the offline tokenizer of
``trl_igrpo.testing``, in bf16 with sdpa attention and gradient checkpointing, on the built-in arithmetic prompts,
generating with transformers (vLLM and flash-attn cannot be carried to the machine). Generation is restricted to the
tokenizer's ids (``suppress_tokens``: the random model would otherwise sample ids the tokenizer cannot decode, and
iGRPO's Stage-2 prompts would lose their drafts) and runs exactly ``--completion_length`` tokens (``min_new_tokens``:
a random model's EOS is meaningless), so both methods decode the same number of tokens per step:

- GRPO: G = 8 completions per prompt;
- iGRPO: N = 4 drafts, then G = 4 refinements per prompt (matched budget: 8 rollouts per prompt), with the defaults;
- iGRPO with ``share_prompt_prefill=True`` (each distinct prompt encoded once per generation call), and with that plus
  ``prefetch_drafts=True`` (the next batch's drafts ride along in this batch's Stage-2 call: one generation round per
  step instead of two; drafts one optimizer step old);
- the same two with ``use_liger_kernel=True`` (skipped, with the reason recorded, when Liger cannot run here);
- GRPO with a LoRA adapter and with a Tied-LoRA adapter on q/k/v (same rank).

Variants of a pair alternate (GRPO, iGRPO, GRPO, iGRPO, ...), each run on a fresh model of the same seed, so machine
noise hits both sides. **Every run is its own process** (``--_child``): liger-kernel patches transformers' module
globals (``Qwen2RMSNorm``, the MLP, RoPE) for the whole process, so in the single-process kit every "no Liger" run after
the first Liger run had Liger layers (the saved H200 record of 2026-11-27 shows it: GRPO's second round peaked at
exactly the Liger run's 4.298 GiB). Each run records whether its model had Liger layers and fails when that disagrees
with its variant; runs of single-process records that ran after a Liger run are left out of the summaries
(``flag_liger_leaks`` in ``benchmarks/_gpu_check_report.py``, which reads and renders the records). Reported per
variant: the median step time (wall clock from the start to the end of an optimizer step, generation included, after
``--warmup_steps`` warm-up steps of each run, CUDA synchronised) and the peak GPU memory of its runs
(``torch.cuda.max_memory_allocated`` minus what was allocated before the run); and the ratios of each pair. Each step
is also split into phases (``benchmarks/_phases.py``: Stage-1 generation and reward, generation, reward, old/ref
log-probs, loss forward, backward + optimizer + rest), each with its time and its own peak memory (the allocator's
peak is read and reset at every phase boundary), so the tables say which phase holds each variant's peak. Results go to ``--output_dir/gpu_check.{json,md}``, rewritten after every run, so a run stopped by the time
limit still leaves what it measured; ``--time_budget_s`` skips (and records) runs that would not fit.

On the device machine (no network; the wheels it lacks travel in ``.whl/``, see ``scripts/prepare_gpu_wheels.sh``):

    bash scripts/prepare_gpu_wheels.sh          # here: fills the git-ignored .whl/ (~4 MB)
    # there, from the repository root, with .whl carried along:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py --output_dir $OUT

CPU dry run (CI): ``python benchmarks/gpu_check.py --cpu --tiny --output_dir /tmp/gpu-check``. Put measured results
into docs/benchmarks.md with ``python benchmarks/gpu_check.py --from_json gpu_check.json --update_docs`` (several
files: one table each, oldest first, under the file's ``"note"`` field). The files behind the figures in
docs/benchmarks.md are kept in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file (python3 benchmarks/gpu_check.py): trl_igrpo and benchmarks importable
    sys.path.insert(0, str(ROOT))

from benchmarks._gpu_check_report import (  # noqa: E402  (the variants, and how their records are read)
    VARIANTS,
    docs_markdown,
    results_markdown,
    summarize,
)
from benchmarks._phases import phase_record  # noqa: E402

#: Qwen2.5-0.5B's shape (its config.json), without downloading anything.
QWEN25_05B_SHAPE = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
    vocab_size=151_936, max_position_embeddings=32_768, tie_word_embeddings=True, rms_norm_eps=1e-6,
)  # fmt: skip
#: The dry run's shape: vocabulary larger than the tokenizer's, so the id restriction is exercised too.
TINY_SHAPE = dict(
    hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=2048, max_position_embeddings=2048, tie_word_embeddings=True, rms_norm_eps=1e-6,
)  # fmt: skip

#: iGRPO options that change only how fast it runs: variant -> IGRPOConfig fields.
IGRPO_SPEED_OPTIONS = {
    "igrpo_no_prefill": {"share_prompt_prefill": False},
    "igrpo_prefetch": {"prefetch_drafts": True},
}
#: Run in this order, alternating inside each group, round after round; later groups are dropped first by the budget.
PAIRS = (
    ("grpo", "igrpo", "igrpo_no_prefill", "igrpo_prefetch"),
    ("grpo_liger", "igrpo_liger"),
    ("lora", "tied_lora"),
)
QKV = ["q_proj", "k_proj", "v_proj"]
JSON_NAME, MARKDOWN_NAME = "gpu_check.json", "gpu_check.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--output_dir", type=Path, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (fp32, no GPU memory figures)")
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch: the CI dry run of the same code")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="a subset (default: all)")
    parser.add_argument("--prompts_per_step", type=int, help="unique prompts per optimizer step (default 8; tiny 2)")
    parser.add_argument("--completion_length", type=int, help="tokens per draft and per completion (128; tiny 8)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run, warm-up included (default 4; tiny 2)")
    parser.add_argument("--warmup_steps", type=int, default=1, help="steps of each run left out of the median")
    parser.add_argument("--rounds", type=int, help="runs of each variant, alternating within a pair (2; tiny 1)")
    parser.add_argument("--lora_rank", type=int, help="rank of LoRA and Tied-LoRA (default 16; tiny 4)")
    parser.add_argument("--time_budget_s", type=float, default=420.0, help="skip runs that would end after this")
    parser.add_argument(
        "--from_json", type=Path, nargs="+", help="render these saved gpu_check.json files instead of running"
    )
    parser.add_argument("--update_docs", action="store_true", help="write the results into docs/benchmarks.md")
    # internal: one run in a fresh process (the parent passes the settings above plus these)
    parser.add_argument("--_child", nargs=2, metavar=("VARIANT", "ROUND"), help=argparse.SUPPRESS)
    parser.add_argument("--_record", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = dict(
        prompts_per_step=(2, 8), completion_length=(8, 128), steps=(2, 4), rounds=(1, 2), lora_rank=(4, 16)
    )
    for name, (tiny, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.steps <= args.warmup_steps:
        parser.error(f"--steps ({args.steps}) must exceed --warmup_steps ({args.warmup_steps}) to measure anything")
    if args._child is not None:
        if args._child[0] not in VARIANTS or args._record is None or args._workdir is None:
            parser.error("--_child VARIANT ROUND needs a known variant, --_record and --_workdir")
        return args
    if args.output_dir is None and not args.update_docs:
        parser.error("--output_dir is required (except with --update_docs, which renders --from_json or no results)")
    return args


# ----------------------------------------------------------------------------------------------------------------------
# Environment.
def machine_info(cpu: bool) -> dict:
    import importlib.metadata

    import torch

    info = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "liger-kernel", "triton"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    if not cpu and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def liger_unavailable(cpu: bool) -> str | None:
    """Why the Liger variants cannot run here, or None."""
    import torch

    if cpu or not torch.cuda.is_available():
        return "Liger's Triton kernels need a CUDA device (on CPU the first forward fails: '0 active drivers')"
    try:
        import liger_kernel.transformers  # noqa: F401
    except Exception as error:  # ImportError, or a Triton/torch mismatch raised at import
        return f"liger-kernel does not import: {type(error).__name__}: {error}"
    return None


# ----------------------------------------------------------------------------------------------------------------------
# One run.
def tokenizer_dir(workdir: Path) -> Path:
    """The offline tokenizer every run loads, built on first use (by the parent, before any run starts)."""
    path = workdir / "tokenizer"
    if not (path / "tokenizer_config.json").exists():
        from trl_igrpo.testing import build_tiny_model

        build_tiny_model(path, architecture="qwen2")
    return path


def liger_layers(model) -> bool:
    """Whether any module of ``model`` runs Liger code: a Liger class (what a patched transformers module global
    builds) or a forward bound from liger_kernel (how Liger patches an existing instance)."""
    for module in model.modules():
        forward = getattr(module, "forward", None)
        owner = getattr(getattr(forward, "__func__", forward), "__module__", None) or ""
        if type(module).__module__.startswith("liger_kernel") or owner.startswith("liger_kernel"):
            return True
    return False


class Setup:
    """Tokenizer, model shape and the training settings shared by every run."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        import torch
        from transformers import AutoTokenizer, Qwen2Config

        self.args = args
        self.cuda = not args.cpu and torch.cuda.is_available()
        if not args.cpu and not self.cuda:
            raise SystemExit("No CUDA device found: run with --cpu (and --tiny for the dry run).")
        self.device = "cuda" if self.cuda else "cpu"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        # The offline tokenizer of trl_igrpo.testing (byte-level BPE + ChatML, Qwen2Tokenizer on reload), built once by
        # the parent process into the shared work directory.
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(workdir))
        shape = TINY_SHAPE if args.tiny else QWEN25_05B_SHAPE
        if shape["vocab_size"] < len(self.tokenizer):
            raise ValueError(f"model vocabulary {shape['vocab_size']} < tokenizer size {len(self.tokenizer)}")
        self.config = Qwen2Config(
            **shape,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=None,
        )
        self.config._attn_implementation = "sdpa"
        length = args.completion_length
        self.generation_kwargs = {
            "suppress_tokens": list(range(len(self.tokenizer), shape["vocab_size"])),
            "min_new_tokens": length,
        }
        from trl_igrpo.demo.arithmetic import make_arithmetic_examples

        self.rows = make_arithmetic_examples(max(64, 4 * args.prompts_per_step * args.steps), seed=0)
        self.workdir = workdir

    def model(self, seed: int):
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        torch.manual_seed(seed)
        with torch.device(self.device):
            model = AutoModelForCausalLM.from_config(self.config, dtype=self.dtype, attn_implementation="sdpa")
        model.generation_config = GenerationConfig(
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id, bos_token_id=None
        )
        return model

    def trainer(self, variant: str, seed: int):
        from datasets import Dataset
        from peft import LoraConfig
        from trl import GRPOConfig, GRPOTrainer

        from trl_igrpo import IGRPOConfig, IGRPOTrainer
        from trl_igrpo.tied_lora import TiedLoraConfig

        method, liger, adapter = VARIANTS[variant]
        args, prompts = self.args, self.args.prompts_per_step
        common = dict(
            output_dir=str(self.workdir / variant), use_cpu=not self.cuda, bf16=self.cuda, report_to="none",
            save_strategy="no", logging_steps=1, dataloader_num_workers=0, disable_tqdm=True,
            gradient_checkpointing=True, max_completion_length=args.completion_length, max_steps=args.steps,
            learning_rate=1e-5 if adapter else 1e-6, beta=0.0, temperature=1.0, seed=seed,
            generation_kwargs=self.generation_kwargs, use_liger_kernel=liger,
        )  # fmt: skip
        peft_config = None
        if adapter == "lora":
            peft_config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, target_modules=QKV)
        elif adapter == "tied_lora":
            peft_config = TiedLoraConfig(r=args.lora_rank, target_modules=QKV)
        if method == "grpo":
            config, trainer_class = (
                GRPOConfig(num_generations=8, per_device_train_batch_size=8 * prompts, **common),
                GRPOTrainer,
            )
        else:
            config = IGRPOConfig(
                num_drafts=4, num_generations=4, per_device_train_batch_size=4 * prompts,
                max_draft_length=args.completion_length, **IGRPO_SPEED_OPTIONS.get(variant, {}), **common,
            )  # fmt: skip
            trainer_class = IGRPOTrainer
        return trainer_class(
            model=self.model(seed), reward_funcs=[_varied_reward], args=config,
            train_dataset=Dataset.from_list(self.rows), processing_class=self.tokenizer, peft_config=peft_config,
        )  # fmt: skip


def _varied_reward(completions, **kwargs) -> list[float]:
    """Cheap, deterministic and non-constant (every group gets advantages, so every step has a gradient)."""
    return [float(len(str(c)) % 7) for c in completions]


def _step_timer(cuda: bool):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (generation, scoring and update), CUDA synchronised at both ends."""

        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def _profile_phases(trainer, cuda: bool, igrpo: bool):
    """Charge each step's time and peak memory to its phases (``benchmarks/_phases.py``): peak GPU memory allocated
    on a GPU, the resident set on the CPU dry run. Returns the profiler and the list its per-step records go to."""
    import torch

    from benchmarks._phases import CudaProbe, PhaseProfiler, RssProbe, instrument, step_callback

    probe = CudaProbe() if cuda else RssProbe()
    profiler = PhaseProfiler(probe, synchronize=torch.cuda.synchronize if cuda else None)
    instrument(trainer, profiler, igrpo=igrpo)
    steps: list[dict] = []
    trainer.add_callback(step_callback(profiler, steps))
    return profiler, steps


def run_once(setup: Setup, variant: str, round_index: int) -> dict:
    import resource

    import torch

    record: dict = {"variant": variant, "round": round_index, "pid": os.getpid(), "load_avg_1m": os.getloadavg()[0]}
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        record["allocated_before_bytes"] = torch.cuda.memory_allocated()
    start = time.perf_counter()
    trainer = None
    try:
        trainer = setup.trainer(variant, seed=round_index)
        timer = _step_timer(setup.cuda)
        trainer.add_callback(timer)
        setup_peak = torch.cuda.max_memory_allocated() if setup.cuda else 0
        profiler, phase_steps = _profile_phases(trainer, setup.cuda, igrpo=VARIANTS[variant][0] == "igrpo")
        trainer.train()
        warmup = setup.args.warmup_steps
        record.update(status="ok", step_times_s=timer.times, measured_s=timer.times[warmup:])
        record.update(phase_record(phase_steps[warmup:], profiler.probe.name if profiler.probe else None))
        logs = [entry for entry in trainer.state.log_history if "completions/mean_length" in entry]
        for key in (
            "completions/mean_length",
            "igrpo/draft_mean_length",
            "igrpo/refinement_prompt_mean_length",
            "igrpo/draft_policy_lag",
        ):
            values = [entry[key] for entry in logs if key in entry]
            if values:
                record[key] = statistics.mean(values)
        if setup.cuda:  # the phase profiler resets the peak at every phase boundary: take the largest of them
            step_peaks = [peak for step in phase_steps for peak in step["peaks"].values()]
            run_peak = max([setup_peak, profiler.outside_peak, *step_peaks])
            record["peak_memory_bytes"] = run_peak - record["allocated_before_bytes"]
        record["liger_layers"] = liger_layers(trainer.model)
        if record["liger_layers"] != VARIANTS[variant][1]:
            raise RuntimeError(
                f"variant {variant} {'needs' if VARIANTS[variant][1] else 'must not have'} Liger layers, but its model "
                f"{'has none' if VARIANTS[variant][1] else 'has some'}: its figures would measure the other setting"
            )
    except Exception as error:  # record and go on: one broken variant must not cost the others their numbers
        record.update(status="failed", reason=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        print(record["traceback"], file=sys.stderr, flush=True)
    finally:
        del trainer
        gc.collect()
        if setup.cuda:
            torch.cuda.empty_cache()
    record["wall_s"] = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    record["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process: imports and model building included
    return record


def child_argv(args: argparse.Namespace, variant: str, round_index: int, record: Path, workdir: Path) -> list[str]:
    """The command line of one run in its own process: this script with the run settings and the ``--_child`` flags."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--_child", variant, str(round_index)]
    argv += ["--_record", str(record), "--_workdir", str(workdir)]
    for name in ("prompts_per_step", "completion_length", "steps", "warmup_steps", "lora_rank"):
        argv += [f"--{name}", str(getattr(args, name))]
    return argv + [flag for flag, on in (("--cpu", args.cpu), ("--tiny", args.tiny)) if on]


def run_in_subprocess(args: argparse.Namespace, variant: str, round_index: int, workdir: Path, timeout: float) -> dict:
    """One run of ``variant`` in a fresh Python process (so no run inherits another's patched modules); its record,
    or a failed record with the end of its stderr when it crashed or ran past ``timeout`` seconds."""
    import subprocess

    record_path = workdir / f"run-{variant}-{round_index}.json"
    stderr_path = workdir / f"run-{variant}-{round_index}.stderr"
    start = time.perf_counter()
    with stderr_path.open("w") as stderr:
        try:
            process = subprocess.run(
                child_argv(args, variant, round_index, record_path, workdir), stderr=stderr, timeout=timeout
            )
            returncode: int | str = process.returncode
        except subprocess.TimeoutExpired:
            returncode = f"killed after {timeout:.0f} s"
    if record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        tail = stderr_path.read_text()[-3000:]
        print(tail, file=sys.stderr, flush=True)
        record = {"variant": variant, "round": round_index, "status": "failed",
                  "reason": f"run process exited ({returncode}) without a record", "traceback": tail}  # fmt: skip
    record["process_wall_s"] = time.perf_counter() - start
    return record


def child_main(args: argparse.Namespace) -> int:
    """``--_child VARIANT ROUND``: one run in this process; its record goes to ``--_record`` (JSON)."""
    variant, round_index = args._child[0], int(args._child[1])
    record = run_once(Setup(args, args._workdir), variant, round_index)
    args._record.write_text(json.dumps(record))
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# The whole check.
def schedule(variants: list[str], rounds: int) -> list[tuple[str, int]]:
    """(variant, round) in run order: round after round, pair after pair, alternating inside a pair.

    Every pair gets its first round before any pair gets a second, so a run cut short by the time budget still has
    every comparison; the two sides of a pair always run back to back.
    """
    return [(v, r) for r in range(rounds) for pair in PAIRS for v in pair if v in variants]


def write_results(results: dict, output_dir: Path) -> None:
    summarize(results)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / JSON_NAME).write_text(json.dumps(results, indent=1))
    (output_dir / MARKDOWN_NAME).write_text("# GPU check\n\n" + results_markdown(results) + "\n")


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    variants = args.variants or list(VARIANTS)
    results: dict = {
        "machine": machine_info(args.cpu),
        "settings": {
            "model": "tiny Qwen2 (2 layers, hidden 128)" if args.tiny else "Qwen2.5-0.5B-shaped Qwen2, random init",
            "dtype": "float32" if args.cpu else "bfloat16",
            **{k: getattr(args, k) for k in ("prompts_per_step", "completion_length", "steps", "warmup_steps")},
            **{k: getattr(args, k) for k in ("rounds", "lora_rank", "time_budget_s", "cpu", "tiny")},
            "process_per_variant": True,
        },
        "runs": [],
        "wall_s": 0.0,
    }
    print(json.dumps(results["machine"]), flush=True)
    liger_reason = liger_unavailable(args.cpu)
    results["machine"]["load_avg_1m_at_start"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir_name:
        workdir = Path(workdir_name)
        tokenizer_dir(workdir)  # built once here; every run process loads it
        durations: dict[str, float] = {}
        for variant, round_index in schedule(variants, args.rounds):
            elapsed = time.perf_counter() - started
            # a variant not run yet is expected to take as long as the longest run so far
            expected = durations.get(variant) or max(durations.values(), default=0.0)
            if VARIANTS[variant][1] and liger_reason:
                record = {"variant": variant, "round": round_index, "status": "skipped", "reason": liger_reason}
            elif elapsed + expected > args.time_budget_s:
                reason = f"time budget: {elapsed:.0f} s spent + ~{expected:.0f} s > --time_budget_s {args.time_budget_s:.0f}"
                record = {"variant": variant, "round": round_index, "status": "skipped", "reason": reason}
            else:
                # a hung run must not eat the whole device lease: allow its expected time plus a margin past the budget
                timeout = max(120.0, args.time_budget_s - elapsed + 120.0)
                record = run_in_subprocess(args, variant, round_index, workdir, timeout)
                durations[variant] = max(durations.get(variant, 0.0), record["process_wall_s"])
            results["runs"].append(record)
            results["wall_s"] = time.perf_counter() - started
            print(json.dumps({k: v for k, v in record.items() if k != "traceback"}), flush=True)
            if args.output_dir is not None:
                write_results(results, args.output_dir)
    results["wall_s"] = time.perf_counter() - started
    summarize(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._child is not None:
        return child_main(args)
    if args.from_json is not None:
        all_results = [json.loads(path.read_text()) for path in args.from_json]
        for results in all_results:
            summarize(results)
    elif args.update_docs and args.output_dir is None:
        all_results = []
    else:
        all_results = [run(args)]
        write_results(all_results[0], args.output_dir)
        print((args.output_dir / MARKDOWN_NAME).read_text(), flush=True)
    if args.update_docs:
        from benchmarks._report import update_section

        update_section("gpu_check", docs_markdown(all_results))
    failed = [r for results in all_results for r in results.get("runs", []) if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
