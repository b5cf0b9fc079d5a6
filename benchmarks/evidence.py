"""Evidence: test the iGRPO paper's claims (arXiv 2602.09000) at CPU scale with the package's own tools.

One entry point, staged and resumable; every stage caches its output under ``--output_dir`` and a rerun (after a kill,
or with more seeds) skips what is finished:

1. **data**: chained-arithmetic problems (:mod:`trl_igrpo.demo.chained_arithmetic`) split into a training pool, a
   validation split (learning rates and curves) and a test split (final numbers only), disjoint from each other and
   from the warm start's SFT problems; one ``prompt`` column (chat messages) serves the trainer, ``trl-igrpo
   pass-rate`` and ``trl-igrpo eval`` alike;
2. **warm start**: :func:`~trl_igrpo.demo.chained_warm_start.build_chained_warm_start` (built once, cached);
3. **prompt check**: on a few rows, the token ids ``trl-igrpo pass-rate`` and ``trl-igrpo eval`` generate from must
   equal the ids the trainer generates from; the run stops otherwise;
4. **pass rates**: ``trl-igrpo pass-rate`` with the warm start on the training pool (the hard regime keeps the prompts
   under ``max_pass_rate``, Llama-Nemotron's filter at a lower threshold) and on the test split (the hard/easy
   breakdown of every test number);
5. **learning-rate sweep**: per method, the same grid and the same rule, chosen on the validation split;
6. **runs**: GRPO G=8 vs iGRPO N=4 + G=4 (matched rollout budget), per arm (regime x loss) and seed; each run trains,
   saves its final model and is evaluated with ``trl-igrpo eval`` on the test split (pass@1 over k samples, maj@k,
   pass@k, greedy, and a draft -> refine diagnostic); curves: validation accuracy and entropy, TRL's training
   entropy and zero-spread fraction, and iGRPO's Stage-2 mechanism (draft correct, copy rate, draft -> refinement gain);
7. **report**: ``results.json`` (one record per run), plots and ``evidence.md`` (tables per claim, generated).

    python benchmarks/evidence.py --output_dir outputs/evidence                 # the full study (hours, 1 thread)
    python benchmarks/evidence.py --smoke --output_dir /tmp/evidence-smoke      # the whole pipeline in minutes
    python benchmarks/evidence.py --output_dir outputs/evidence --report_only --publish   # docs/evidence.md
    python benchmarks/evidence.py --output_dir outputs/evidence --reeval        # re-run `trl-igrpo eval` only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/evidence.py` from anywhere
    sys.path.insert(0, str(ROOT))

METHODS = ("grpo", "igrpo")
#: Loss variants of claim 2. GSPO's sequence-level ratio equals 1 on the first update of a generation batch, so the
#: GSPO arm splits each generation batch over 4 optimizer steps (TRL's GSPO example: steps_per_generation=4, clip
#: range 3e-4/4e-4); the rollouts per optimizer step are unchanged.
LOSS_VARIANTS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_type": "grpo"},
    "dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True},
    "gspo": {
        "loss_type": "grpo",
        "importance_sampling_level": "sequence",
        "epsilon": 3e-4,
        "epsilon_high": 4e-4,
        "steps_per_generation": 4,
    },
}
DATA_SEED = 30_000


@dataclasses.dataclass
class StudyConfig:
    """The study's settings; :data:`SMOKE` shrinks every size so the pipeline runs in minutes."""

    num_test: int = 256
    num_val: int = 128
    pool_size: int = 6144
    num_ops: tuple[int, ...] = (4,)
    warm_start: dict = dataclasses.field(default_factory=dict)  # overrides of build_chained_warm_start
    pass_rate_samples: int = 8
    pass_rate_batch: int = 32
    max_pass_rate: float = 0.25  # hard regime: keep training prompts whose warm-start pass rate is below this
    prompts_per_step: int = 8
    steps: int = 150
    eval_every: int = 30
    val_samples: int = 4
    test_samples: int = 8
    max_completion_length: int = 64
    temperature: float = 0.7
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sweep_seed: int = 100
    sweep_lrs: tuple[float, ...] = (1e-5, 3e-5, 1e-4)
    sweep_extend: bool = True  # one more grid point (x3 or /3) when a method's best lr is at the grid's edge
    #: (regime, loss) arms, most important first: runs execute in this order, seed by seed, GRPO then iGRPO.
    arms: tuple[tuple[str, str], ...] = (("hard", "grpo"), ("unfiltered", "grpo"), ("hard", "dapo"), ("hard", "gspo"))
    eval_batch_size: int = 256
    subprocess_runs: bool = True  # one process per run (isolation); the smoke test runs them in this process
    report_every_run: bool = True  # regenerate the report after each run (partial results are always reportable)


SMOKE = StudyConfig(
    num_test=6, num_val=4, pool_size=32, warm_start=dict(sft_steps=8, num_layers=1, hidden_size=64, pool_size=64),
    pass_rate_samples=2, pass_rate_batch=16, prompts_per_step=2, steps=2, eval_every=2, val_samples=2,
    test_samples=2, max_completion_length=12, seeds=(0,), sweep_lrs=(1e-5, 1e-4), sweep_extend=False,
    arms=(("hard", "grpo"), ("unfiltered", "gspo")), eval_batch_size=64, subprocess_runs=False,
    report_every_run=False,
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1-2: data and warm start


def build_data(config: StudyConfig, out: Path) -> dict[str, Path]:
    """Training pool, validation and test splits as JSON lines (``prompt``, ``solution``, ``question``, ``num_ops``);
    unique questions, none of them among the warm start's SFT problems."""
    from trl_igrpo.demo.chained_arithmetic import make_chained_examples
    from trl_igrpo.demo.chained_warm_start import CHAINED_SFT_DATA_SEED

    data_dir = out / "data"
    paths = {name: data_dir / f"{name}.jsonl" for name in ("test", "val", "train_pool")}
    if all(path.exists() for path in paths.values()):
        return paths
    sft_pool = config.warm_start.get("pool_size", 8192)
    seen = {row["question"] for row in make_chained_examples(sft_pool, seed=CHAINED_SFT_DATA_SEED)}
    wanted = config.num_test + config.num_val + config.pool_size
    rows: list[dict] = []
    for row in make_chained_examples(3 * wanted, seed=DATA_SEED, num_ops=config.num_ops):
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    if len(rows) < wanted:
        raise RuntimeError(f"only {len(rows)} distinct problems for {wanted}; lower the split sizes.")
    splits = {
        "test": rows[: config.num_test],
        "val": rows[config.num_test : config.num_test + config.num_val],
        "train_pool": rows[config.num_test + config.num_val : wanted],
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        _write_jsonl(paths[name], split)
    return paths


def build_warm_start(config: StudyConfig, out: Path) -> str:
    from trl_igrpo.demo.chained_warm_start import build_chained_warm_start

    return build_chained_warm_start(out / "warm_start", progress=False, **config.warm_start)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------------------------------
# Stage 3: the prompts pass-rate and eval generate from are the trainer's


class _RecordingModel:
    """A model whose ``generate`` records the unpadded input ids it is given (then generates as usual)."""

    def __init__(self, model):
        self._model, self.inputs = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def eval(self):
        self._model.eval()
        return self

    def generate(self, *args, **kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        for row in range(input_ids.size(0)):
            ids = input_ids[row] if mask is None else input_ids[row][mask[row].bool()]
            self.inputs.append(ids.tolist())
        return self._model.generate(*args, **kwargs)


def check_prompts(config: StudyConfig, out: Path, model_dir: str, data: dict[str, Path], rows: int = 6) -> dict:
    """Token ids generated from, per tool, on the first ``rows`` validation prompts: the trainer's
    (``_tokenize_prompts``, what TRL generates from), ``trl-igrpo pass-rate``'s and ``trl-igrpo eval``'s (both
    recorded at ``model.generate``). Raises if any differs; writes ``checks/prompt_check.json``."""
    path = out / "checks" / "prompt_check.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_igrpo.curriculum.pass_rate import compute_pass_rates
    from trl_igrpo.eval.data import load_problems
    from trl_igrpo.eval.runner import EvalSettings, evaluate

    sample = _read_jsonl(data["val"])[:rows]
    trainer = make_trainer("grpo", "grpo", model_dir, Dataset.from_list(sample), 1e-5, 0, out / "checks", config, 1)
    trainer_ids = [list(map(int, ids)) for ids in trainer._tokenize_prompts([r["prompt"] for r in sample])[0]]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = _RecordingModel(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    compute_pass_rates(Dataset.from_list(sample), model, tokenizer, num_samples=1, max_new_tokens=2, batch_size=rows)
    pass_rate_ids, model.inputs = model.inputs, []
    problems, _ = load_problems(
        str(data["val"]), problem_column="prompt", answer_column="solution", answer_format="plain", limit=rows
    )
    evaluate(model, tokenizer, problems, EvalSettings(num_samples=1, temperature=0, max_new_tokens=2), progress=False)
    eval_ids = model.inputs
    report = {
        "rows": rows,
        "trainer_prompt_text": tokenizer.decode(trainer_ids[0]),
        "pass_rate_equal": pass_rate_ids == trainer_ids,
        "eval_equal": eval_ids == trainer_ids,
    }
    if not (report["pass_rate_equal"] and report["eval_equal"]):
        first = next(i for i in range(rows) if pass_rate_ids[i] != trainer_ids[i] or eval_ids[i] != trainer_ids[i])
        raise RuntimeError(
            "trl-igrpo pass-rate or eval generates from other tokens than the trainer on row "
            f"{first}:\ntrainer:   {tokenizer.decode(trainer_ids[first])!r}\npass-rate: "
            f"{tokenizer.decode(pass_rate_ids[first])!r}\neval:      {tokenizer.decode(eval_ids[first])!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


# ----------------------------------------------------------------------------------------------------------------------
# Stage 4: pass rates with `trl-igrpo pass-rate`


def pass_rate_command(config: StudyConfig, model_dir: str, dataset: Path, output: Path, filtered: Path | None) -> list:
    """The exact ``trl-igrpo pass-rate`` arguments: the warm start's samples at the training temperature."""
    command = ["pass-rate", "--model", model_dir, "--dataset", str(dataset), "--output", str(output),
               "--num-samples", str(config.pass_rate_samples), "--temperature", str(config.temperature),
               "--max-new-tokens", str(config.max_completion_length), "--batch-size", str(config.pass_rate_batch),
               "--seed", "0"]  # fmt: skip
    if filtered is not None:
        command += ["--filtered-output", str(filtered), "--max-pass-rate", str(config.max_pass_rate)]
    return command


def score_pass_rates(config: StudyConfig, out: Path, model_dir: str, data: dict[str, Path]) -> dict[str, Path]:
    """Warm-start pass rates of the training pool (and its hard subset) and of the test split; the test file gains a
    ``difficulty`` column (hard: pass rate below ``max_pass_rate``) that every test evaluation breaks down by."""
    from trl_igrpo.cli import main as trl_igrpo

    pass_dir = out / "pass_rate"
    pass_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "train_scored": pass_dir / "train_scored.jsonl",
        "hard": pass_dir / "train_hard.jsonl",
        "test_scored": pass_dir / "test_scored.jsonl",
        "test": pass_dir / "test.jsonl",
    }
    if not paths["hard"].exists():
        command = pass_rate_command(config, model_dir, data["train_pool"], paths["train_scored"], paths["hard"])
        _status(f"trl-igrpo {' '.join(command)}")
        if trl_igrpo(command) != 0:
            raise RuntimeError("trl-igrpo pass-rate failed on the training pool")
    if not paths["test"].exists():
        command = pass_rate_command(config, model_dir, data["test"], paths["test_scored"], None)
        _status(f"trl-igrpo {' '.join(command)}")
        if trl_igrpo(command) != 0:
            raise RuntimeError("trl-igrpo pass-rate failed on the test split")
        rows = _read_jsonl(paths["test_scored"])
        for row in rows:
            row["difficulty"] = "hard" if row["pass_rate"] < config.max_pass_rate else "easy"
        _write_jsonl(paths["test"], rows)
    if not _read_jsonl(paths["hard"]):
        raise RuntimeError(f"no training prompt has a pass rate below {config.max_pass_rate}; raise max_pass_rate.")
    return paths


# ----------------------------------------------------------------------------------------------------------------------
# Training one run (in a worker process, or in process for --smoke)


def make_trainer(method, loss, model_dir, train, learning_rate, seed, run_dir: Path, config: StudyConfig, steps):
    """GRPO (G = 8) or iGRPO (N = 4 drafts, G = 4 refinements) with ``config.prompts_per_step`` prompts per optimizer
    step: the paper's budget split, loss variant and schedule (cosine to 0.1x, 10 % warmup), beta 0."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from benchmarks._evidence_probe import stage2_mechanism_probe
    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward

    common = dict(
        output_dir=str(run_dir / "trainer"), use_cpu=not torch.cuda.is_available(), bf16=False, report_to="none",
        save_strategy="no", logging_steps=1, gradient_checkpointing=False, dataloader_num_workers=0,
        max_completion_length=config.max_completion_length, max_steps=steps, learning_rate=learning_rate,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1}, warmup_steps=0.1,
        beta=0.0, temperature=config.temperature, seed=seed, disable_tqdm=True, **LOSS_VARIANTS[loss],
    )  # fmt: skip
    rewards: list[Any] = [math_accuracy_reward, think_answer_format_reward]
    rows = config.prompts_per_step
    if method == "grpo":
        args = GRPOConfig(num_generations=8, per_device_train_batch_size=8 * rows, **common)
        return GRPOTrainer(model=model_dir, reward_funcs=rewards, args=args, train_dataset=train)
    args = IGRPOConfig(
        num_drafts=4,
        num_generations=4,
        per_device_train_batch_size=4 * rows,
        reward_weights=[1.0, 1.0, 0.0],
        **common,
    )  # the zero-weight probe only logs Stage-2 metrics; it changes no reward
    return IGRPOTrainer(
        model=model_dir, reward_funcs=[*rewards, stage2_mechanism_probe], args=args, train_dataset=train
    )


def train_run(spec: dict) -> None:
    """Train one run, evaluating on the validation split every ``eval_every`` steps; writes ``train.json`` and the
    final model (``model/``). Then, for test runs, ``trl-igrpo eval`` on that model (:func:`evaluate_model`)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from benchmarks._evidence_probe import validation_point

    config = StudyConfig(**{**spec["config"], "arms": tuple(map(tuple, spec["config"]["arms"]))})
    run_dir = Path(spec["run_dir"])
    if not (run_dir / "train.json").exists():
        torch.set_num_threads(1)
        train = Dataset.from_list(_read_jsonl(Path(spec["train_file"])))
        trainer = make_trainer(spec["method"], spec["loss_type"], spec["model"], train, spec["learning_rate"],
                               spec["seed"], run_dir, config, config.steps)  # fmt: skip
        val_rows = _read_jsonl(Path(spec["val_file"]))
        curve = [dict(spec["val_at_start"], step=0)]

        class ValidationCurve(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % config.eval_every == 0:
                    point = validation_point(trainer.model, trainer.processing_class, val_rows, config)
                    curve.append(dict(point, step=state.global_step))
                    _status(f"  {spec['name']} step {state.global_step}: val {_brief(point)}")

        trainer.add_callback(ValidationCurve())
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        if curve[-1]["step"] != trainer.state.global_step:
            point = validation_point(trainer.model, trainer.processing_class, val_rows, config)
            curve.append(dict(point, step=trainer.state.global_step))
        tmp = run_dir / "model.tmp"
        trainer.save_model(str(tmp))
        trainer.processing_class.save_pretrained(str(tmp))
        shutil.rmtree(run_dir / "model", ignore_errors=True)
        tmp.replace(run_dir / "model")
        logged = [entry for entry in trainer.state.log_history if "entropy" in entry]
        step_times = [entry["step_time"] for entry in logged if "step_time" in entry]
        result = {"log": logged, "val_curve": curve, "train_seconds": seconds,
                  "seconds_per_step": sorted(step_times)[len(step_times) // 2] if step_times else None}  # fmt: skip
        (run_dir / "train.json").write_text(json.dumps(result))
        del trainer
    if spec["test_file"]:
        evaluate_model(run_dir, str(run_dir / "model"), spec["test_file"], config)


def _brief(point: dict) -> str:
    return f"greedy {point['greedy']:.3f} pass@1 {point['pass@1']:.3f} entropy {point['entropy']:.3f}"


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation with `trl-igrpo eval` on the saved final model


EVALUATIONS = {  # name -> `trl-igrpo eval` protocol flags (k = test_samples for "sampled")
    "sampled": ["--temperature", "0.6", "--top_p", "0.95"],
    "greedy": ["--num_samples", "1", "--temperature", "0"],
    "draft_refine": ["--num_samples", "1", "--temperature", "0", "--mode", "draft_refine"],
}


def eval_command(name: str, model_dir: str, test_file: str, output_dir: str, config: StudyConfig) -> list[str]:
    """The exact ``trl-igrpo eval`` arguments of one evaluation of a saved model on the test split."""
    command = ["eval", "--model_name_or_path", model_dir, "--dataset_name", test_file, "--problem_column", "prompt",
               "--answer_column", "solution", "--answer_format", "plain", "--group_columns", "difficulty", "--max_new_tokens",
               str(config.max_completion_length), "--batch_size", str(config.eval_batch_size), "--seed", "1234",
               "--output_dir", output_dir, "--no_progress", *EVALUATIONS[name]]  # fmt: skip
    if name == "sampled":
        command += ["--num_samples", str(config.test_samples)]
    return command


def evaluate_model(run_dir: Path, model_dir: str, test_file: str, config: StudyConfig) -> None:
    """``trl-igrpo eval`` (the CLI's entry point, in this process) on a saved model: sampled, greedy and
    draft -> refine, into ``run_dir/eval-*``; evaluations whose ``results.json`` exists are skipped. Then the held-out
    policy entropy over the sampled completions (``eval_entropy.json``, written last: the run's completion mark)."""
    import torch

    from benchmarks._evidence_probe import policy_entropy
    from trl_igrpo.cli import main as trl_igrpo

    torch.set_num_threads(1)
    for name in EVALUATIONS:
        target = run_dir / f"eval-{name}"
        if (target / "results.json").exists():
            continue
        command = eval_command(name, model_dir, test_file, str(target), config)
        if trl_igrpo(command) != 0:
            raise RuntimeError(f"trl-igrpo {' '.join(command)} failed")
    entropy_file = run_dir / "eval_entropy.json"
    if not entropy_file.exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        rows = _read_jsonl(Path(test_file))
        samples = _read_jsonl(run_dir / "eval-sampled" / "samples.jsonl")
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prompts = [rows[s["problem_index"]]["prompt"] for s in samples]
        value = policy_entropy(model, tokenizer, prompts, [s["completion"] for s in samples])
        entropy_file.write_text(json.dumps({"entropy": value}))


# ----------------------------------------------------------------------------------------------------------------------
# Orchestration


def _status(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def execute(spec: dict, config: StudyConfig) -> None:
    """One run, in a worker process (its log in ``run_dir/log.txt``) or in this process."""
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    if not config.subprocess_runs:
        train_run(spec)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with open(run_dir / "log.txt", "a") as log:
        result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(run_dir / "spec.json")],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"run {spec['name']} failed (exit {result.returncode}); see {run_dir / 'log.txt'}")


def run_spec(config, out, name, method, regime, loss, seed, lr, files, model_dir, val_start, test: bool) -> dict:
    return {
        "name": name, "method": method, "regime": regime, "loss_type": loss, "seed": seed, "learning_rate": lr,
        "run_dir": str(out / ("runs" if test else "sweep") / name), "model": model_dir,
        "train_file": str(files["hard"] if regime == "hard" else files["train_pool"]), "val_file": str(files["val"]),
        "test_file": str(files["test"]) if test else None, "val_at_start": val_start,
        "config": dataclasses.asdict(config),
    }  # fmt: skip


def validation_at_start(config: StudyConfig, out: Path, model_dir: str, val_file: Path) -> dict:
    """The warm start's validation point (step 0 of every curve; computed once)."""
    path = out / "checks" / "val_at_start.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks._evidence_probe import validation_point

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    point = validation_point(model, AutoTokenizer.from_pretrained(model_dir), _read_jsonl(val_file), config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(point))
    return point


def sweep(config: StudyConfig, out: Path, files: dict, model_dir: str, val_start: dict) -> dict[str, float]:
    """Per method, train at each grid lr (hard regime, loss grpo, one seed not used by the test runs) and pick the lr
    with the best validation pass@1 (mean of the last two curve points); one grid point is added beyond an edge that
    wins. The same grid and rule for both methods; the test split is never read."""
    from benchmarks._evidence_report import sweep_score

    selected = {}
    for method in METHODS:
        lrs = sorted(config.sweep_lrs)
        scores: dict[float, float] = {}
        while True:
            for lr in lrs:
                if lr in scores:
                    continue
                name = f"{method}-lr{lr:g}-seed{config.sweep_seed}"
                spec = run_spec(config, out, name, method, "hard", "grpo", config.sweep_seed, lr, files, model_dir,
                                val_start, test=False)  # fmt: skip
                if not (Path(spec["run_dir"]) / "train.json").exists():
                    _status(f"sweep {name}")
                    execute(spec, config)
                scores[lr] = sweep_score(json.loads((Path(spec["run_dir"]) / "train.json").read_text()))
                _status(f"sweep {name}: validation pass@1 {scores[lr]:.3f}")
            best = max(scores, key=lambda lr: scores[lr])
            if not config.sweep_extend or len(lrs) > len(config.sweep_lrs):
                break
            if best == max(lrs):
                lrs.append(best * 3)
            elif best == min(lrs):
                lrs.insert(0, best / 3)
            else:
                break
        selected[method] = best
        (out / "sweep").mkdir(parents=True, exist_ok=True)
        (out / "sweep" / f"{method}.json").write_text(json.dumps({"scores": scores, "selected": best}, indent=1))
    return selected


def main_runs(config: StudyConfig, out: Path, files: dict, model_dir: str, val_start: dict, lrs: dict, only=None):
    """Every (arm, seed, method) in priority order; finished runs (``record`` files present) are skipped."""
    from benchmarks._evidence_report import write_report

    for regime, loss in config.arms:
        for seed in config.seeds:
            for method in METHODS:
                name = f"{regime}-{loss}-{method}-seed{seed}"
                if only and name not in only:
                    continue
                spec = run_spec(config, out, name, method, regime, loss, seed, lrs[method], files, model_dir,
                                val_start, test=True)  # fmt: skip
                run_dir = Path(spec["run_dir"])
                if (run_dir / "eval_entropy.json").exists():
                    continue
                _status(f"run {name} (lr {lrs[method]:g})")
                start = time.perf_counter()
                (run_dir / "FAILED").unlink(missing_ok=True)
                try:
                    execute(spec, config)
                except Exception as error:  # one broken run must not stall the others; the report lists it
                    if not config.subprocess_runs:
                        raise
                    (run_dir / "FAILED").write_text(str(error))
                    _status(f"run {name} FAILED: {error}")
                    continue
                _status(f"run {name} done in {time.perf_counter() - start:.0f} s")
                if config.report_every_run:
                    write_report(out, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(ROOT / "outputs" / "evidence"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes: the whole pipeline in a few minutes")
    parser.add_argument("--report_only", action="store_true", help="regenerate results.json, plots and evidence.md")
    parser.add_argument("--publish", action="store_true", help="copy the report to docs/ and benchmarks/results/")
    parser.add_argument("--reeval", action="store_true", help="delete and redo every run's `trl-igrpo eval` outputs")
    parser.add_argument("--stop_after", choices=("pass_rate", "sweep"), help="stop after this stage")
    parser.add_argument("--only", nargs="+", help="run only these run names (e.g. hard-grpo-igrpo-seed3)")
    parser.add_argument("--from_results", help="render plots and evidence.md from this results.json (no runs needed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train_run(json.loads(Path(args.worker).read_text()))
        return
    if args.from_results:
        from benchmarks._evidence_report import dump_results, publish, render_report

        out = Path(args.output_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        results = json.loads(Path(args.from_results).read_text())
        (out / "results.json").write_text(dump_results(results))
        render_report(results, out)
        if args.publish:
            publish(out)
        return
    from benchmarks._evidence_report import publish, write_report

    out = Path(args.output_dir).resolve()
    config = SMOKE if args.smoke else StudyConfig()
    if not args.report_only:
        run_pipeline(config, out, args)
    write_report(out, config)
    if args.publish:
        publish(out)


def _record_code_version(out: Path) -> None:
    """``code_version.txt``: the commit the runs are made with (``+dirty`` with uncommitted changes); kept as is when
    the code is not a git checkout (a frozen copy of a commit, which writes the file itself)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks", "trl_igrpo"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return
    (out / "code_version.txt").write_text(commit + ("+dirty" if dirty else "") + "\n")


def run_pipeline(config: StudyConfig, out: Path, args) -> None:
    import torch

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    _record_code_version(out)
    start = time.perf_counter()
    data = build_data(config, out)
    model_dir = build_warm_start(config, out)
    _status(f"warm start ready: {model_dir}")
    check_prompts(config, out, model_dir, data)
    files = {**data, **score_pass_rates(config, out, model_dir, data)}
    _status(f"pass rates ready: {len(_read_jsonl(files['hard']))} of {config.pool_size} training prompts are hard")
    if args.stop_after == "pass_rate":
        return
    val_start = validation_at_start(config, out, model_dir, files["val"])
    evaluate_model(out / "baseline", model_dir, str(files["test"]), config)  # the warm start on the test split
    lrs = sweep(config, out, files, model_dir, val_start)
    _status(f"selected learning rates: {lrs}")
    if args.stop_after == "sweep":
        return
    if args.reeval:
        for run_dir in (out / "runs").glob("*"):
            for stale in [*run_dir.glob("eval-*"), run_dir / "eval_entropy.json"]:
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    main_runs(config, out, files, model_dir, val_start, lrs, args.only)
    (out / "pipeline_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
