"""``evidence.md`` of ``benchmarks/evidence.py``: every figure comes from ``results.json`` and its analysis."""

from __future__ import annotations

from benchmarks._report import markdown_table

__all__ = ["render_markdown"]

METRIC_LABELS = {
    "pass@1": "test pass@1 (k samples, T=0.6)",
    "maj@k": "test maj@k",
    "pass@k": "test pass@k",
    "greedy": "test greedy",
    "pass@1_hard": "test pass@1, hard problems",
    "pass@1_easy": "test pass@1, easy problems",
}


def _value(stats: dict, digits: int = 3, signed: bool = False) -> str:
    if stats["mean"] is None:
        return "-"
    text = f"{stats['mean']:+.{digits}f}" if signed else f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['half_width']:.{digits}f}" if stats["half_width"] is not None else "")


def _p(difference: dict) -> str:
    return "-" if difference["p_value"] is None else f"{difference['p_value']:.3f}"


def _row(label: str, comparison: dict, digits: int = 3) -> list[str]:
    difference = comparison["difference"]
    return [label, _value(comparison["grpo"], digits), _value(comparison["igrpo"], digits),
            _value(difference, digits, signed=True), _p(difference),
            f"{difference['wins']}/{difference['n']}"]  # fmt: skip


HEADERS = ["", "GRPO G=8", "iGRPO N=4+G=4", "iGRPO − GRPO (paired)", "p (paired t)", "seeds iGRPO ahead"]


def _claim_table(analysis: dict, arms: list[str], metrics: tuple[str, ...], k: int) -> str:
    rows = []
    for arm in arms:
        if arm not in analysis["arms"]:
            continue
        for metric in metrics:
            label = METRIC_LABELS[metric].replace("k samples", f"k={k}").replace("maj@k", f"maj@{k}")
            rows.append(_row(f"{arm}: {label.replace('@k', f'@{k}')}", analysis["arms"][arm]["comparisons"][metric]))
    return markdown_table(HEADERS, rows) if rows else "_No finished runs yet._"


def _verdicts(analysis: dict, k: int) -> str:
    arms = analysis["arms"]
    rows = []
    for claim, arm, what in (
        ("1. iGRPO beats GRPO at a matched budget (single pass)", "hard/grpo", "pass@1, hard regime (the paper's)"),
        ("1. (same, unfiltered prompts)", "unfiltered/grpo", "pass@1, unfiltered regime"),
        ("2. the wrapper generalises: DAPO", "hard/dapo", "pass@1, hard regime, loss dapo"),
        ("2. the wrapper generalises: GSPO", "hard/gspo", "pass@1, hard regime, GSPO"),
    ):
        if arm in arms:
            difference = arms[arm]["comparisons"]["pass@1"]["difference"]
            rows.append([claim, what.replace("pass@1", f"pass@1 (k={k})"), _value(difference, signed=True),
                         _p(difference), arms[arm]["verdict"]])  # fmt: skip
    if "hard/grpo" in arms:
        difference = arms["hard/grpo"]["comparisons"]["entropy_validation"]["difference"]
        rows.append(["3. it delays entropy collapse", "held-out entropy over training, hard regime",
                     _value(difference, 4, signed=True), _p(difference), arms["hard/grpo"]["entropy_verdict"]])  # fmt: skip
    rows.append(["4. it benefits from a generative judge", "-", "-", "-", "not testable here (no offline judge)"])
    return markdown_table(["claim", "measured as", "iGRPO − GRPO (95 % interval)", "p", "verdict"], rows)


def _entropy_table(analysis: dict) -> str:
    rows = []
    for arm, data in analysis["arms"].items():
        c = data["comparisons"]
        rows += [
            _row(f"{arm}: held-out entropy, mean over training", c["entropy_validation"], 4),
            _row(f"{arm}: held-out entropy, final (test samples)", c["entropy_test"], 4),
            _row(f"{arm}: training entropy, first 10 % of steps", c["entropy_train_first"], 4),
            _row(f"{arm}: training entropy, last 10 % of steps", c["entropy_train_last"], 4),
        ]
    return markdown_table(HEADERS, rows) if rows else "_No finished runs yet._"


def _mechanism_table(analysis: dict) -> str:
    labels = {
        "frac_reward_zero_std": "Stage-2 groups with zero reward spread",
        "draft_correct": "selected (best-of-4) draft correct",
        "refinement_correct": "refinement correct",
        "gain": "draft → refinement gain (accuracy)",
        "copy_rate": "refinement = draft, verbatim",
        "answer_copy_rate": "refinement repeats the draft's answer",
        "fix_rate": "wrong draft → correct refinement",
        "break_rate": "correct draft → wrong refinement",
    }
    rows = []
    for arm, data in analysis["arms"].items():
        for key, label in labels.items():
            stats = data["mechanism"][key]
            rows.append([arm, label, _value(stats["first"]), _value(stats["last"]), _value(stats["all"])])
        rows.append([arm, "GRPO groups with zero reward spread (for comparison)", "", "",
                     _value(data["comparisons"]["zero_spread"]["grpo"])])  # fmt: skip
    if not rows:
        return "_No finished runs yet._"
    return markdown_table(["arm", "iGRPO, during training", "first 10 % of steps", "last 10 %", "whole run"], rows)


def _refine_table(analysis: dict) -> str:
    rows = []
    for arm, data in analysis["arms"].items():
        c = data["comparisons"]
        rows.append([arm, _value(c["draft_greedy"]["grpo"]) + " → " + _value(c["refine_greedy"]["grpo"]),
                     _value(c["draft_greedy"]["igrpo"]) + " → " + _value(c["refine_greedy"]["igrpo"])])  # fmt: skip
    return markdown_table(["arm", "GRPO policy: draft → refinement", "iGRPO policy: draft → refinement"], rows)


def _compute(results: dict) -> str:
    from statistics import median

    protocol, runs = results["protocol"], results["runs"]
    per_method = []
    for method, label in (("grpo", "GRPO"), ("igrpo", "iGRPO")):
        steps = [
            r["metrics"]["seconds_per_step"]
            for r in runs
            if r["method"] == method and r["metrics"]["seconds_per_step"]
        ]
        if steps:
            per_method.append(f"{label} {median(steps):.2f} s")
    hours = sum(r["metrics"]["train_seconds"] for r in runs) / 3600
    machine = protocol.get("machine") or "this machine"
    code = protocol.get("code_version")
    return (
        f"{machine}, one thread per run, runs strictly one after another, the machine shared with other jobs "
        f"(so times vary with their load). Median optimizer step: {', '.join(per_method) or '-'}; training "
        f"(with the validation curve) {hours:.1f} h over the {len(runs)} finished runs, evaluation and the sweep "
        f"besides." + (f" Runs made by commit `{code}`." if code else "")
    )


def _protocol(results: dict) -> str:
    protocol = results["protocol"]
    config = protocol["config"]
    sweep_rows = []
    for method, sweep in protocol["sweep"].items():
        if sweep:
            scores = ", ".join(f"{float(lr):g}: {score:.3f}" for lr, score in sorted(sweep["scores"].items(),
                                                                                    key=lambda kv: float(kv[0])))  # fmt: skip
            sweep_rows.append([method, scores, f"{sweep['selected']:g}"])
    sweep_table = markdown_table(["method", "lr: validation pass@1", "selected"], sweep_rows) if sweep_rows else ""
    train_rates = protocol["train_pass_rates"]
    kept = sum(count for rate, count in train_rates.items() if float(rate) < config["max_pass_rate"])
    kept_at_paper = sum(count for rate, count in train_rates.items() if float(rate) < 0.75)
    total = sum(train_rates.values())
    rates_table = markdown_table(
        ["warm-start pass rate", *train_rates], [["training pool", *train_rates.values()],
                                                 ["test split", *(protocol["test_pass_rates"].get(r, 0) for r in train_rates)]]
    )  # fmt: skip
    warm = protocol.get("warm_start_test") or {}
    check = protocol.get("prompt_check") or {}
    k = config["test_samples"]
    return f"""- **Task.** Chained arithmetic (`trl_igrpo.demo.chained_arithmetic`), {"/".join(map(str, config["num_ops"]))} \
operations per problem, answered as a running total inside `<think>`, then `<answer>\\boxed{{}}</answer>`. Splits \
(unique problems, none in the warm start's SFT data): {total} training prompts, {config["num_val"]} validation \
(learning rates, curves), {config["num_test"]} test (final numbers only).
- **Warm start.** `trl_igrpo.demo.chained_warm_start` with its defaults (3-layer Qwen2, SFT on a teacher that forgets \
half its carries, 30 % of examples in iGRPO's refinement format); built once \
({protocol["warm_start"]["build_seconds"]} s) and cached. On the test split: pass@1 {warm.get("pass@1", float("nan")):.3f}, \
maj@{k} {warm.get("maj@k", float("nan")):.3f}, greedy {warm.get("greedy", float("nan")):.3f}, greedy draft → \
refinement {warm.get("draft_greedy", float("nan")):.3f} → {warm.get("refine_greedy", float("nan")):.3f}.
- **Regimes.** *hard*: the training prompts whose warm-start pass rate (`trl-igrpo pass-rate`, \
{config["pass_rate_samples"]} samples at the training temperature {config["temperature"]}) is below \
{config["max_pass_rate"]}: {kept} of {total} kept. Llama-Nemotron drops pass rate ≥ 0.75, which would keep \
{kept_at_paper} of {total} here, and the best of 4 drafts would usually be right (the unfiltered regime's problem); \
the lower threshold makes the best-of-4 draft wrong about half of the time at the start (mechanism table). \
*unfiltered*: all {total}. The test split is not filtered; its problems are labelled hard/easy by the same rule for \
the breakdown. Before any pass rate is computed the pipeline checks that `trl-igrpo pass-rate` and `trl-igrpo eval` \
generate from exactly the token ids the trainer generates from ({check.get("rows", "?")} rows: pass-rate \
{check.get("pass_rate_equal")}, eval {check.get("eval_equal")}).

{rates_table}

- **Matched budget.** Per prompt GRPO samples G = 8; iGRPO N = 4 drafts + G = 4 refinements (the paper's split). \
{config["prompts_per_step"]} prompts per optimizer step, {config["steps"]} steps, completions ≤ \
{config["max_completion_length"]} tokens, temperature {config["temperature"]}, beta 0, reward accuracy + format \
(weights 1/1), lr schedule cosine to 0.1x with 10 % warmup (the paper's). Losses: `grpo` (Eq. 5); `dapo` \
(token-level, clip-higher 0.28, truncated completions masked; no dynamic sampling); GSPO \
(`importance_sampling_level="sequence"`, clip 3e-4/4e-4, each generation batch split over 4 optimizer steps so \
the sequence ratio is not identically 1; the rollouts per step are unchanged).
- **Learning rates**, chosen per method the same way: grid {", ".join(f"{lr:g}" for lr in config["sweep_lrs"])} \
(plus one point beyond an edge that wins), hard regime, loss grpo, seed {config["sweep_seed"]} (not a test seed), \
{config["steps"]} steps; score: validation pass@1 (k={config["val_samples"]}), mean of the last two curve points. \
The same lr is used for every arm of that method.

{sweep_table}

- **Evaluation.** `trl-igrpo eval` on each run's saved final model, test split: pass@1 averaged over k = {k} \
samples (T = 0.6, top-p 0.95, the paper's protocol), pass@{k}, maj@{k}, greedy; a greedy draft → refinement \
diagnostic (`--mode draft_refine`); held-out entropy: mean per-token entropy of the policy over its own test samples. \
Curves: validation greedy, pass@1 (k={config["val_samples"]}) and entropy every {config["eval_every"]} steps \
(in process, same code, forked RNG); TRL's training entropy, zero-spread fraction; iGRPO's Stage-2 mechanism \
through a zero-weight probe reward (`benchmarks/_evidence_probe.py`).
- **Compute.** {_compute(results)}
- **Statistics.** Seeds {list(config["seeds"])}; a seed gives both methods the same initial model and the same \
prompts in the same order, so differences are paired by seed. Mean ± 95 % Student-t interval over seeds; paired \
t-test (two-sided). A claim *holds at this scale* when the paired difference's 95 % interval lies above 0."""


def _reproduce(results: dict) -> str:
    from pathlib import Path

    from benchmarks.evidence import StudyConfig, eval_command, pass_rate_command

    config = StudyConfig(**{**results["protocol"]["config"], "arms": ()})
    pass_rate = pass_rate_command(config, "warm_start", Path("data/train_pool.jsonl"),
                                  Path("pass_rate/train_scored.jsonl"), Path("pass_rate/train_hard.jsonl"))  # fmt: skip
    evals = [eval_command(name, "runs/RUN/model", "pass_rate/test.jsonl", f"runs/RUN/eval-{name}", config)
             for name in ("sampled", "greedy", "draft_refine")]  # fmt: skip
    commands = "\n".join("trl-igrpo " + " ".join(command) for command in [pass_rate, *evals])
    return f"""```bash
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
python benchmarks/evidence.py --output_dir outputs/evidence             # every stage; resumes, skips finished runs
python benchmarks/evidence.py --output_dir outputs/evidence --only hard-grpo-igrpo-seed3   # one run (delete its dir first)
python benchmarks/evidence.py --output_dir outputs/evidence --reeval    # `trl-igrpo eval` again on the saved models
python benchmarks/evidence.py --output_dir outputs/evidence --report_only --publish   # this page, from the runs
python benchmarks/evidence.py --from_results benchmarks/results/evidence/results.json --output_dir /tmp/e --publish
python benchmarks/evidence.py --smoke --output_dir /tmp/evidence-smoke  # the pipeline at toy scale (minutes)
```

The commands the stages run, as a user would type them (paths relative to `outputs/evidence/`; RUN is a run's name, \
e.g. `hard-grpo-igrpo-seed3`):

```bash
{commands}
```"""


def _runs_table(results: dict) -> str:
    rows = []
    for r in sorted(results["runs"], key=lambda r: (r["regime"], r["loss_type"], r["method"], r["seed"])):
        m = r["metrics"]
        rows.append([r["regime"], r["loss_type"], r["method"], r["seed"], f"{m['learning_rate']:g}",
                     f"{m['pass@1']:.3f}", f"{m['maj@k']:.3f}", f"{m['greedy']:.3f}",
                     f"{m['draft_greedy']:.3f} → {m['refine_greedy']:.3f}", f"{m['entropy']:.4f}",
                     f"{m['seconds_per_step']:.2f}" if m["seconds_per_step"] else "-"])  # fmt: skip
    k = results["protocol"]["config"]["test_samples"]
    return markdown_table(["regime", "loss", "method", "seed", "lr", "pass@1", f"maj@{k}", "greedy",
                           "draft → refine (greedy)", "held-out entropy", "s / step"], rows)  # fmt: skip


def _interval(difference: dict, digits: int = 3) -> str:
    if difference["mean"] is None:
        return "-"
    if difference["half_width"] is None:
        return f"{difference['mean']:+.{digits}f}"
    low, high = difference["mean"] - difference["half_width"], difference["mean"] + difference["half_width"]
    return f"{difference['mean']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _reading(results: dict, analysis: dict) -> str:
    """What the numbers say, as sentences generated from them (one bullet per finding)."""
    arms, bullets = analysis["arms"], []
    for arm, what in (("hard/grpo", "hard regime"), ("unfiltered/grpo", "unfiltered regime"),
                      ("hard/dapo", "hard regime, loss `dapo`"), ("hard/gspo", "hard regime, GSPO")):  # fmt: skip
        if arm not in arms:
            continue
        c = arms[arm]["comparisons"]
        d = c["pass@1"]["difference"]
        text = (f"**{what}**: test pass@1 GRPO {_value(c['pass@1']['grpo'])}, iGRPO {_value(c['pass@1']['igrpo'])}; "
                f"iGRPO − GRPO {_interval(d)} (p {_p(d)}, iGRPO ahead on {d['wins']} of {d['n']} seeds): "
                f"{arms[arm]['verdict']}.")  # fmt: skip
        if c["pass@1_hard"]["difference"]["mean"] is not None:
            text += (f" On the test problems the warm start finds hard: {_interval(c['pass@1_hard']['difference'])}; "
                     f"on the easy ones: {_interval(c['pass@1_easy']['difference'])}.")  # fmt: skip
        bullets.append(text)
    for arm in ("hard/grpo", "unfiltered/grpo"):
        if arm not in arms or arms[arm]["mechanism"]["draft_correct"]["first"]["mean"] is None:
            continue
        m, c = arms[arm]["mechanism"], arms[arm]["comparisons"]
        bullets.append(
            f"**Stage 2, {arm.split('/')[0]} regime** (iGRPO, first → last 10 % of steps): the selected best-of-4 draft "
            f"is correct {_value(m['draft_correct']['first'], 2)} → {_value(m['draft_correct']['last'], 2)}; "
            f"{_value(m['frac_reward_zero_std']['all'], 2)} of Stage-2 groups have zero reward spread over the run "
            f"(GRPO's groups: {_value(c['zero_spread']['grpo'], 2)}); refinements repeat the draft verbatim "
            f"{_value(m['copy_rate']['first'], 2)} → {_value(m['copy_rate']['last'], 2)}, fix a wrong draft "
            f"{_value(m['fix_rate']['all'], 2)} and break a correct one {_value(m['break_rate']['all'], 2)} of the time; "
            f"draft → refinement accuracy gain {_value(m['gain']['all'], 3, signed=True)}."
        )
        bullets.append(
            f"**Refinement as a skill, {arm.split('/')[0]} regime** (test, greedy): given its own draft, the iGRPO "
            f"policy goes {_value(c['draft_greedy']['igrpo'])} → {_value(c['refine_greedy']['igrpo'])}, the GRPO "
            f"policy {_value(c['draft_greedy']['grpo'])} → {_value(c['refine_greedy']['grpo'])}."
        )
    if "hard/grpo" in arms:
        c = arms["hard/grpo"]["comparisons"]
        start = (results["protocol"].get("val_at_start") or {}).get("entropy")
        bullets.append(
            f"**Entropy, hard regime**: held-out single-pass entropy starts at "
            f"{'-' if start is None else f'{start:.4f}'} nats/token (the warm start); at the end GRPO "
            f"{_value(c['entropy_test']['grpo'], 4)}, iGRPO {_value(c['entropy_test']['igrpo'], 4)}; mean over training "
            f"iGRPO − GRPO {_interval(c['entropy_validation']['difference'], 4)}: "
            f"{arms['hard/grpo']['entropy_verdict']}."
        )
    return "\n".join(f"- {bullet}" for bullet in bullets) if bullets else "_No finished runs yet._"


def render_markdown(results: dict, analysis: dict, images: dict[str, str]) -> str:
    """The whole page."""
    config = results["protocol"]["config"]
    k = config["test_samples"]
    planned = len(config["arms"]) * len(config["seeds"]) * 2
    status = (
        f"All {planned} planned runs are finished."
        if analysis["finished_runs"] >= planned
        else f"**Partial results: {analysis['finished_runs']} of {planned} planned runs are finished**; the study "
        "stopped for time, a verdict below names how many seeds it rests on, and rerunning the study's command "
        "(finished runs are skipped) completes it and regenerates this page."
    )
    failed = results["protocol"].get("failed_runs")
    if failed:
        status += f" **Failed runs (see their log.txt): {', '.join(failed)}.**"
    figure = "\n".join(f"![{name}](img/{file})" for name, file in images.items())
    return f"""# Evidence: the iGRPO paper's claims at CPU scale

Generated by `benchmarks/evidence.py` from `benchmarks/results/evidence/results.json`; do not edit by hand. \
It tests each claim of the iGRPO paper (arXiv 2602.09000) that the package's own tools can test on a CPU: \
`GRPOTrainer` vs `IGRPOTrainer` at a matched rollout budget, prompts filtered with `trl-igrpo pass-rate`, \
learning rates chosen on a validation split, final models scored with `trl-igrpo eval`. A tiny model on chained \
arithmetic is not a 7B model on MATH: a verdict below says what happens **at this scale**, not whether the paper is \
right at its own. {status}

## Verdicts

{_verdicts(analysis, k)}

{_reading(results, analysis)}

## Claim 1: iGRPO beats GRPO at a matched rollout budget

Single-pass evaluation, as in the paper. *hard* is the paper's setting (prompts the starting policy usually fails).

{_claim_table(analysis, ["hard/grpo", "unfiltered/grpo"], tuple(METRIC_LABELS), k)}

## Claim 2: the refinement wrapper generalises beyond GRPO

The same comparison with other TRL losses, hard regime.

{_claim_table(analysis, ["hard/grpo", "hard/dapo", "hard/gspo"], ("pass@1", "maj@k", "greedy"), k)}

## Claim 3: iGRPO delays entropy collapse

Held-out entropy is the single-pass policy on held-out prompts (the same quantity for both methods). TRL's training \
entropy is over the trained completions: GRPO's samples, but iGRPO's *refinements*, which see a draft and are not \
comparable. Higher entropy is not better by itself: a policy that learns less also keeps its entropy.

{_entropy_table(analysis)}

## Claim 4: iGRPO benefits from a generative judge

Not testable here. The paper's judge is GPT-5 scoring solutions in [0, 1]; offline, the only generative judges are \
models of this size, whose scores would measure the judge, not the method. (`trl_igrpo.rewards.judge` runs any \
OpenAI-compatible judge; a GPU run with a served 7B+ judge is what would settle it.)

## Mechanism: what iGRPO's Stage 2 trains on

During training (iGRPO runs, means over seeds), from the probe reward and TRL's `frac_reward_zero_std`. A group with \
zero reward spread gives no gradient. The paper's argument needs drafts that are often wrong and refinements that fix \
them.

{_mechanism_table(analysis)}

Held-out greedy draft → refinement (`trl-igrpo eval --mode draft_refine`, test split), after training:

{_refine_table(analysis)}

## Figures

{figure}

## Protocol

{_protocol(results)}

## Reproduce

{_reproduce(results)}

## Every run

{_runs_table(results)}
"""
