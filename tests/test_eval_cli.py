"""`trl-igrpo eval` on CPU, offline: real runs on a tiny local JSONL (full model, LoRA and Tied-LoRA adapters), the
one-line errors for each way the input can be wrong, presets, and a --help that imports nothing heavy."""

import json
import subprocess
import sys

import pytest
import torch

from trl_igrpo.eval.cli import _apply_preset, build_parser, main, prepare

ROWS = [
    {"problem": "What is 2 + 3?", "answer": "5", "level": 1},
    {"problem": "What is 1 + 1?", "answer": "2", "level": 2},
    {"problem": "What is 4 - 1?", "answer": "3", "level": 2},
]


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return str(path)


def _main(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_is_light_and_lists_the_protocol_flags():
    code = (
        "import sys, trl_igrpo.cli, trl_igrpo.eval.cli\n"
        "text = trl_igrpo.eval.cli.build_parser().format_help()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert all(flag in text for flag in ('--num_samples', '--preset', '--reasoning', '--mode', '--backend'))\n"
        "assert any(c.name == 'eval' for c in trl_igrpo.cli.COMMANDS)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_list_presets_through_both_entry_points():
    for argv in (["-m", "trl_igrpo", "eval", "--list_presets"], ["-m", "trl_igrpo.eval", "--list_presets"]):
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "| math500 | HuggingFaceH4/MATH-500 | test | problem | answer | plain | 8 |" in result.stdout
        assert "| aime24 |" in result.stdout and "| 64 |" in result.stdout


# ------------------------------------------------------------------------------------------------------------- errors
def test_missing_model_path_is_one_line(capsys, bench, tmp_path):
    code, _, err = _main(capsys, "--model_name_or_path", tmp_path / "no-ckpt", "--dataset_name", bench)
    assert code == 2 and "no-ckpt" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_required_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--dataset_name", "x.jsonl"])
    assert exit_.value.code == 2 and "--model_name_or_path" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--problem_column", "question"], "no problem column 'question'"),
        (["--temperature", "0", "--num_samples", "4"], "identical"),
        (["--backend", "vllm"], "needs the vllm package"),
        (["--dataset_name", "./nowhere/bench.jsonl"], "does not exist"),
    ],
)
def test_usage_errors_exit_2_before_loading_the_model(capsys, bench, tiny_model_dir, extra, message):
    if "vllm" in extra:
        try:
            import vllm  # noqa: F401
        except ImportError:
            pass  # the case checks the error of an environment without vllm (this one)
        else:
            pytest.skip("vllm is installed here")
    argv = ["--model_name_or_path", tiny_model_dir, "--dataset_name", bench, *extra]
    code, _, err = _main(capsys, *argv)
    assert code == 2 and message in err


def test_unparseable_gold_exits_2_naming_the_row(capsys, tmp_path, tiny_model_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "p", "answer": "3"}) + "\n" + json.dumps({"problem": "q", "answer": "}{"}))
    code, _, err = _main(capsys, "--model_name_or_path", tiny_model_dir, "--dataset_name", path)
    assert code == 2 and "row 1" in err and "cannot parse" in err


def test_golds_math_verify_cannot_read_exit_2_from_the_command_line(tmp_path, tiny_model_dir):
    """As a user runs it: placeholders, prose and broken LaTeX stop the run before the model loads (docs promise)."""
    golds = ["3", "see the textbook", "N/A", "TODO", "\\frac{1}{", "The answer is 5"]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps({"problem": f"q{i}", "answer": gold}) + "\n" for i, gold in enumerate(golds)))
    result = subprocess.run(
        [sys.executable, "-m", "trl_igrpo.eval", "--model_name_or_path", tiny_model_dir, "--dataset_name", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "5 gold answer(s) cannot be graded" in result.stderr
    for row, reason in ((1, "prose"), (2, "placeholder"), (3, "placeholder"), (4, "cannot parse"), (5, "prose")):
        assert f"row {row}: " in result.stderr and reason in result.stderr
    assert "row 0" not in result.stderr and "--on_bad_gold skip" in result.stderr


def test_presets_fill_columns_and_k_and_flags_override_them(tmp_path, tiny_model_dir):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"question": "How many?", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    args = build_parser().parse_args(["--model_name_or_path", tiny_model_dir, "--preset", "gsm8k",
                                      "--dataset_name", str(path)])  # fmt: skip
    _apply_preset(args)
    assert (args.problem_column, args.answer_format, args.num_samples) == ("question", "gsm8k", 8)
    settings, problems, _, grader = prepare(args)
    grader.close()
    assert problems[0].answer == "4" and settings.num_samples == 8
    args = build_parser().parse_args(["--model_name_or_path", "m", "--preset", "aime24", "--num_samples", "4"])
    _apply_preset(args)
    assert args.num_samples == 4 and args.dataset_name == "HuggingFaceH4/aime_2024" and args.dataset_split == "train"


# ----------------------------------------------------------------------------------------------------------- real runs
def _samples(output_dir):
    return [json.loads(line) for line in (output_dir / "samples.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_real_run_on_a_tiny_jsonl(capsys, bench, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = _main(capsys, "--model_name_or_path", tiny_model_dir, "--dataset_name", bench,
                            "--num_samples", 4, "--max_new_tokens", 8, "--output_dir", out, "--no_progress",
                            "--reasoning", "on", "--seed", 1)  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    samples = _samples(out)
    assert len(samples) == 12 and {s["sample"] for s in samples} == {0, 1, 2, 3}
    metrics = results["metrics"]
    assert (metrics["num_problems"], metrics["num_samples"]) == (3, 4)
    assert list(metrics["pass@k"]) == ["1", "2", "4"] and "maj@4" in metrics
    # the summary is the samples' own statistics
    assert metrics["pass@1"] == pytest.approx(sum(s["correct"] for s in samples) / 12)
    assert metrics["mean_length"] == pytest.approx(sum(s["num_tokens"] for s in samples) / 12)
    assert metrics["truncated_frac"] == pytest.approx(sum(s["truncated"] for s in samples) / 12)
    unparseable = sum(s["extracted_answer"] is None and not s["correct"] for s in samples) / 12
    assert metrics["unparseable_frac"] == pytest.approx(unparseable)
    assert all(1 <= s["num_tokens"] <= 8 for s in samples)
    assert set(results["by_group"]["level"]) == {"1", "2"}
    assert results["protocol"]["reasoning"] == "on" and results["protocol"]["temperature"] == 0.6
    assert results["model"]["adapter"] is None and results["data"]["answer_column"] == "answer"
    assert "| problems | pass@1 | pass@2 | pass@4 | maj@4 |" in stdout
    assert (out / "results.md").read_text().startswith("## bench:")


def _adapter(tiny_model_dir, tmp_path, kind):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_igrpo.tied_lora import TiedLoraConfig

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if kind == "lora":
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    else:
        config = TiedLoraConfig(r=4, init_weights=False)
    torch.manual_seed(0)
    model = get_peft_model(base, config)
    path = tmp_path / kind
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        return str(path), model(input_ids=ids).logits, base


@pytest.mark.slow
@pytest.mark.parametrize("kind, peft_type", [("lora", "LORA"), ("tied_lora", "TIEDLORA")])
def test_adapters_load_merged_onto_their_base(capsys, bench, tiny_model_dir, tmp_path, kind, peft_type):
    from transformers import AutoModelForCausalLM

    from trl_igrpo.eval.models import load_model_and_tokenizer

    path, adapted_logits, _ = _adapter(tiny_model_dir, tmp_path, kind)
    model, tokenizer, info = load_model_and_tokenizer(path, device="cpu")
    assert info == {"model": path, "adapter": path, "base_model": tiny_model_dir, "peft_type": peft_type}
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        merged = model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted_logits, atol=1e-4, rtol=1e-4)  # the adapter is applied ...
    assert not torch.allclose(merged, plain, atol=1e-3)  # ... and it changes the model
    assert not hasattr(model, "peft_config")  # merged: a plain transformers model generates

    out = tmp_path / "out"
    code, _, _ = _main(capsys, "--model_name_or_path", path, "--dataset_name", bench, "--num_samples", 2,
                       "--max_new_tokens", 6, "--output_dir", out, "--no_progress")  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["adapter"] == path and results["model"]["peft_type"] == peft_type
    assert len(_samples(out)) == 6


def test_adapter_without_a_recorded_base_is_a_clear_error(capsys, bench, tmp_path):
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": None}))
    code, _, err = _main(capsys, "--model_name_or_path", path, "--dataset_name", bench)
    assert code == 2 and "--base_model_name_or_path" in err
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "./gone"}))
    code, _, err = _main(capsys, "--model_name_or_path", path, "--dataset_name", bench)
    assert code == 2 and "base model path" in err and "'./gone' does not exist" in err


@pytest.mark.slow
def test_draft_refine_mode_through_the_cli(capsys, bench, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, _ = _main(capsys, "--model_name_or_path", tiny_model_dir, "--dataset_name", bench, "--num_samples", 2,
                       "--max_new_tokens", 6, "--mode", "draft_refine", "--output_dir", out, "--no_progress")  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["mode"] == "draft_refine" and results["drafts"]["num_samples"] == 2
    assert all("draft" in s and "draft_correct" in s for s in _samples(out))


# ------------------------------------------------------------------------------------------------- the Table 1 recipe
def _recipe_commands(**env):
    import os
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        ["bash", str(root / "examples" / "recipes" / "igrpo_math_7b.sh")],
        env={**os.environ, "DRY_RUN": "1", **env},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, [shlex.split(line) for line in result.stdout.splitlines()]


def test_recipe_trains_then_evaluates_with_the_papers_protocol():
    result, commands = _recipe_commands(VLLM_HOST="10.0.0.2")
    assert result.returncode == 0, result.stderr
    assert [c[:2] for c in commands] == [["trl-igrpo", "igrpo"]] + [["trl-igrpo", "eval"]] * 3
    train = commands[0]
    assert train[train.index("--config") + 1] == "examples/recipes/igrpo_math_7b.yaml"
    assert train[train.index("--vllm_server_host") + 1] == "10.0.0.2"
    trained = train[train.index("--output_dir") + 1]
    presets = []
    for command in commands[1:]:
        args = build_parser().parse_args(command[2:])
        _apply_preset(args)
        presets.append(args.preset)
        assert args.model_name_or_path == trained and args.backend == "vllm" and args.mode == "single"
        assert (args.temperature, args.top_p) == (0.6, 0.95)
        assert args.num_samples == (64 if args.preset.startswith("aime") else 8)
        assert args.prompt_template == "{problem}"  # the format the recipe trains on
    assert presets == ["math500", "aime24", "aime25"]
    assert "--resume_from_checkpoint" not in train
    _, resumed = _recipe_commands(VLLM_HOST="10.0.0.2", RESUME="1")
    assert resumed[0][-2:] == ["--resume_from_checkpoint", "true"]  # continues the stopped run


def test_recipe_needs_the_vllm_host_to_train_and_can_evaluate_the_base_alone():
    result, _ = _recipe_commands(VLLM_HOST="")
    assert result.returncode != 0 and "VLLM_HOST" in result.stderr
    result, commands = _recipe_commands(BASE_ONLY="1")
    assert result.returncode == 0 and all(c[1] == "eval" for c in commands)
    assert all(c[c.index("--model_name_or_path") + 1] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" for c in commands)
