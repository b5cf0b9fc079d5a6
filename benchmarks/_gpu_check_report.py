"""Reading and rendering the records of ``benchmarks/gpu_check.py``: its variants and comparisons, the per-variant
summary (medians, peaks, ratios), the Markdown tables and the docs/benchmarks.md section.

Kept apart from the script that runs the variants so that saved records (``benchmarks/results/gpu_check_*.json``) are
re-read by the same code, including :func:`flag_liger_leaks` for records of the earlier single-process kit.
"""

from __future__ import annotations

import statistics

#: name -> (method, liger, adapter)
VARIANTS = {
    "grpo": ("grpo", False, None),
    "igrpo": ("igrpo", False, None),
    "igrpo_no_prefill": ("igrpo", False, None),
    "igrpo_prefetch": ("igrpo", False, None),
    "grpo_liger": ("grpo", True, None),
    "igrpo_liger": ("igrpo", True, None),
    "lora": ("grpo", False, "lora"),
    "tied_lora": ("grpo", False, "tied_lora"),
}
LABELS = {
    "grpo": "GRPO G=8",
    "igrpo": "iGRPO N=4, G=4",
    "igrpo_no_prefill": "iGRPO N=4, G=4, no shared prompt prefill",
    "igrpo_prefetch": "iGRPO N=4, G=4, prefetched drafts",
    "grpo_liger": "GRPO G=8, Liger",
    "igrpo_liger": "iGRPO N=4, G=4, Liger",
    "lora": "GRPO G=8, LoRA q/k/v",
    "tied_lora": "GRPO G=8, Tied-LoRA q/k/v",
}
#: (label, numerator, denominator)
COMPARISONS = (
    ("iGRPO / GRPO", "igrpo", "grpo"),
    ("iGRPO without shared prefill / GRPO", "igrpo_no_prefill", "grpo"),
    ("iGRPO prefetched drafts / GRPO", "igrpo_prefetch", "grpo"),
    ("iGRPO / GRPO, both with Liger", "igrpo_liger", "grpo_liger"),
    ("GRPO with / without Liger", "grpo_liger", "grpo"),
    ("iGRPO with / without Liger", "igrpo_liger", "igrpo"),
    ("Tied-LoRA / LoRA (GRPO)", "tied_lora", "lora"),
)

LIGER_LEAK = "ran after a Liger run in the same process (Liger layers leaked in)"


def flag_liger_leaks(results: dict) -> int:
    """Mark the runs of a single-process record (``settings.process_per_variant`` not set: the kit before issue 25)
    that ran after a Liger run: liger-kernel had patched transformers' module globals, so their "no Liger" model had
    Liger layers. Returns how many were marked; :func:`summarize` leaves them out."""
    if results.get("settings", {}).get("process_per_variant"):
        return 0
    liger_seen, marked = False, 0
    for run in results["runs"]:
        if VARIANTS[run["variant"]][1]:
            liger_seen = liger_seen or run["status"] != "skipped"  # a failed Liger run may have patched already
        elif liger_seen and run["status"] == "ok":
            run["liger_leak"] = True
            marked += 1
    return marked


def summarize(results: dict) -> None:
    flag_liger_leaks(results)
    summary = {}
    for variant in VARIANTS:
        runs = [r for r in results["runs"] if r["variant"] == variant]
        ok = [r for r in runs if r["status"] == "ok" and not r.get("liger_leak")]
        leaked = sum(1 for r in runs if r.get("liger_leak"))
        measured = [t for r in ok for t in r["measured_s"]]
        peaks = [r["peak_memory_bytes"] for r in ok if "peak_memory_bytes" in r]
        entry = {"label": LABELS[variant], "runs": len(ok), "steps_measured": len(measured)}
        entry["median_step_s"] = statistics.median(measured) if measured else None
        entry["peak_memory_gib"] = max(peaks) / 2**30 if peaks else None
        entry.update(_phase_peaks(ok))
        reasons = sorted({r["reason"] for r in runs if r["status"] not in ("ok",)})
        left_out = [f"{leaked} run(s) left out: {LIGER_LEAK}"] if leaked else []
        if measured:
            entry["status"] = "; ".join(["ok", *left_out])
        else:
            entry["status"] = "; ".join(left_out + reasons) or "not run"
        entry["runs_left_out"] = leaked
        summary[variant] = entry
    results["summary"] = summary
    comparisons = []
    for label, numerator, denominator in COMPARISONS:
        top, bottom = summary[numerator], summary[denominator]
        row = {"comparison": label, "numerator": numerator, "denominator": denominator}
        for key, out in (("median_step_s", "step_time_ratio"), ("peak_memory_gib", "peak_memory_ratio")):
            row[out] = top[key] / bottom[key] if top[key] is not None and bottom[key] else None
        comparisons.append(row)
    results["comparisons"] = comparisons


def _phase_peaks(runs: list[dict]) -> dict:
    """Per phase, the largest peak over ``runs`` (GiB), the phase of the variant's peak and what was measured
    (records older than issue 29 have no phases: empty)."""
    measured = [r for r in runs if r.get("phase_peak_bytes")]
    if not measured:
        return {"phase_peak_gib": {}, "peak_phase": None, "phase_memory": None}
    phases = {phase for r in measured for phase in r["phase_peak_bytes"]}
    peaks = {phase: max(r["phase_peak_bytes"].get(phase, 0) for r in measured) / 2**30 for phase in phases}
    return {
        "phase_peak_gib": peaks,
        "peak_phase": max(peaks, key=peaks.__getitem__),
        "phase_memory": measured[0].get("phase_memory"),
    }


def phase_markdown(results: dict) -> str:
    """Peak memory per phase and variant (GPU: tensor bytes allocated; CPU dry run: resident set), or "" when no run
    recorded phases. The phase holding each variant's peak is in bold."""
    from benchmarks._phases import PHASES
    from benchmarks._report import markdown_table

    columns = [v for v, s in results["summary"].items() if s.get("phase_peak_gib")]
    if not columns:
        return ""
    summary = results["summary"]
    rows = []
    for phase in PHASES:
        cells = []
        for variant in columns:
            value = summary[variant]["phase_peak_gib"].get(phase)
            text = "-" if value is None else f"{value:.2f}"
            cells.append(f"**{text}**" if phase == summary[variant]["peak_phase"] else text)
        rows.append([phase, *cells])
    memory = summary[columns[0]]["phase_memory"]
    unit = "GiB of tensors allocated (torch.cuda.max_memory_allocated)" if "GPU" in str(memory) else "GiB resident"
    return (
        f"Peak memory per phase ({unit}; largest over the measured steps of all runs; each variant's peak in "
        "bold). Phases are charged exclusively: weight sync inside generation is its own phase, and so on.\n\n"
        + markdown_table(["phase", *[summary[v]["label"] for v in columns]], rows)
    )


def _fmt(value, digits: int = 3, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def results_markdown(results: dict) -> str:
    from benchmarks._report import markdown_table

    info, settings = results["machine"], results["settings"]
    where = info.get("gpu") or f"CPU ({info['machine']}, {info['cpu_count']} cores)"
    versions = ", ".join(f"{k} {info[k]}" for k in ("torch", "transformers", "trl", "peft", "liger-kernel") if info[k])
    lines = [
        f"{where}; {versions}; Python {info['python']}. Model: {settings['model']}, {settings['dtype']}, sdpa, "
        f"gradient checkpointing. {settings['prompts_per_step']} prompts per step, {settings['completion_length']} "
        f"tokens per draft and completion, {settings['steps']} steps per run ({settings['warmup_steps']} warm-up "
        f"left out), {settings['rounds']} alternating run(s) per variant. Total {results['wall_s']:.0f} s."
        + ("" if info.get("gpu") else " No GPU: no memory figures."),
        "",
        markdown_table(
            ["variant", "runs", "steps measured", "median step (s)", "peak GPU memory (GiB)", "status"],
            [
                [
                    s["label"],
                    s["runs"],
                    s["steps_measured"],
                    _fmt(s["median_step_s"]),
                    _fmt(s["peak_memory_gib"], 2),
                    s["status"],
                ]
                for s in results["summary"].values()
            ],  # fmt: skip
        ),
        "",
        markdown_table(
            ["comparison", "step time ratio", "peak memory ratio"],
            [
                [c["comparison"], _fmt(c["step_time_ratio"], 2, "x"), _fmt(c["peak_memory_ratio"], 2, "x")]
                for c in results["comparisons"]
            ],
        ),
    ]
    phases = phase_markdown(results)
    return "\n".join(lines + (["", phases] if phases else []))


DOCS_INTRO = """\
## GPU check: iGRPO vs GRPO, Liger, Tied-LoRA on one H100/H200 (`benchmarks/gpu_check.py`)

One run of at most 8 minutes: a randomly initialised Qwen2.5-0.5B-shaped model (config only, no download; offline
tokenizer), bf16, sdpa, gradient checkpointing, transformers generation. Per prompt, GRPO samples G=8 completions and
iGRPO N=4 drafts + G=4 refinements (the same 8 rollouts); every draft and completion is exactly
`--completion_length` tokens. It reports the median step time and the peak GPU memory of each variant and their
ratios: iGRPO / GRPO (defaults; `share_prompt_prefill=False`; `prefetch_drafts=True`), the same with
`use_liger_kernel=True` (skipped, with the reason, when Liger cannot run), and Tied-LoRA / LoRA on q/k/v, and the
peak GPU memory of each phase of a step (Stage-1 generation, generation, loss forward, backward, ...: records from
issue 29 on) so the phase that holds the peak is known. Variants
alternate (GRPO, iGRPO, GRPO, ...) so noise hits both. Every run is its own Python process: liger-kernel
(`pip install "trl-igrpo[liger]"`, CUDA only) patches transformers' module globals for the whole process, so in one
process every later "no Liger" model gets Liger layers; each run records whether its model has Liger layers and fails
if that contradicts its variant. The two H200 records below come from the earlier single-process kit: their runs after
the first Liger run are left out (the status column counts them), which leaves few clean steps; see the reading.

Run it (the machine has torch, transformers, accelerate and peft but no network; `scripts/gpu_wheels.txt` lists the
~4 MB of wheels it lacks):

```bash
bash scripts/prepare_gpu_wheels.sh     # here: downloads them into the git-ignored .whl/
# on the GPU machine, from the repository root, with .whl/ carried along (device tool: carry [".whl"]):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py --output_dir $OUT
```

Duration, measured on an H200: with the defaults (8 prompts per step, 128-token drafts and completions, 4 steps per
run, 2 rounds) the 8 variants need about 7 minutes (run 1 below: 381 s of runs, the second LoRA round skipped by
`--time_budget_s 400`), plus about 30 s to start and install the wheels. A process per run adds its start-up (importing
torch and TRL, a CUDA context) to each of the 16 runs, outside the timed steps; it has not been timed on a GPU yet, so
expect `--time_budget_s` to skip more of the second round. `--time_budget_s` (default 420) skips, and
records, any run that would end later. It writes `gpu_check.json` and `gpu_check.md` to `--output_dir` after every run,
so partial results survive a time-out; `python benchmarks/gpu_check.py --from_json gpu_check.json --update_docs` puts
them here (the files behind the tables below are in `benchmarks/results/`). CI runs the same script as
`--cpu --tiny` (`tests/test_gpu_check.py`).
"""


def docs_markdown(results: list[dict] | None) -> str:
    """The docs section: the intro, then one table per saved run (oldest first), headed by its ``note``."""
    if not results:
        return (
            DOCS_INTRO
            + "\n**Not yet run on a GPU.** No GPU was available when the kit was written; the CPU dry run passes.\n"
        )
    parts = [DOCS_INTRO]
    for index, result in enumerate(results, start=1):
        parts.append(f"### Run {index}\n" + (f"\n{result['note']}\n" if result.get("note") else ""))
        parts.append(results_markdown(result) + "\n")
    return "\n".join(parts)
