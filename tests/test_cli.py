"""The installed `trl-igrpo` console script (subprocesses, offline)."""

import os
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


def _run(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([*_executable(), *args], capture_output=True, text=True, timeout=timeout, env=env)


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
    assert out.startswith("usage: trl-igrpo igrpo")
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


def test_bad_flag_fails_before_training(capsys, tmp_path, monkeypatch):
    """An unknown flag is handed to `accelerate launch`, whose parser rejects it; nothing is trained or written."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, _, err = _main(capsys, "igrpo", "--num_draftz", "2", "--output_dir", str(tmp_path / "out"))
    assert code != 0
    assert "--num_draftz" in err
    assert not (tmp_path / "out").exists()
