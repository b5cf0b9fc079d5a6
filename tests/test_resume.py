"""Resuming a run: --resume_from_checkpoint reaches train(), checkpoints are never overwritten unasked, and a resume
with changed settings raises (where that breaks the run) or says so (trl_igrpo.scripts.resume, trl_igrpo.core.run_settings)."""

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from trl_igrpo.core.run_settings import SETTINGS_FILE, check_resumed_settings, run_settings
from trl_igrpo.scripts.resume import ResumeError, prepare_run_dir, resolve_checkpoint


def _checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


# --------------------------------------------------------------------------------------------------------------------
# trl_igrpo.scripts.resume
# --------------------------------------------------------------------------------------------------------------------
def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint("false", tmp_path) is None
    with pytest.raises(ResumeError, match=r"no checkpoint-N folder in --output_dir"):
        resolve_checkpoint("true", tmp_path)
    _checkpoint(tmp_path, 2)
    latest = _checkpoint(tmp_path, 10)  # by step, not by name
    for value in ("true", "True", True, "latest"):
        assert resolve_checkpoint(value, tmp_path) == str(latest)
    assert resolve_checkpoint(str(latest), tmp_path / "elsewhere") == str(latest)
    with pytest.raises(ResumeError, match=r"no such folder"):
        resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path)
    with pytest.raises(ResumeError, match=r"is not a checkpoint .* It holds checkpoint-2, checkpoint-10: pass one"):
        resolve_checkpoint(str(tmp_path), tmp_path)


def test_output_dir_guard(tmp_path):
    assert prepare_run_dir(tmp_path / "new", None) == []
    old = [_checkpoint(tmp_path, step) for step in (1, 2, 3)]
    with pytest.raises(ResumeError) as caught:
        prepare_run_dir(tmp_path, None)
    message = str(caught.value)
    assert "checkpoint-1, checkpoint-2, checkpoint-3" in message
    for fix in ("--resume_from_checkpoint true", "fresh --output_dir", "--overwrite_output_dir"):
        assert fix in message
    assert all(path.is_dir() for path in old)  # refusing deletes nothing
    # resuming from the latest is fine; from an earlier one, the later checkpoints are in the way
    assert any("resuming from" in n for n in prepare_run_dir(tmp_path, str(old[2])))
    with pytest.raises(ResumeError, match=r"later than checkpoint-1 \(checkpoint-2, checkpoint-3\)"):
        prepare_run_dir(tmp_path, str(old[0]))
    assert prepare_run_dir(tmp_path, str(old[0]), overwrite=True, delete=False)[0].startswith("--overwrite_output_dir")
    assert old[1].is_dir()  # delete=False (the CLI's early check) deletes nothing
    notices = prepare_run_dir(tmp_path, str(old[0]), overwrite=True)
    assert "deleted 2 old checkpoint folder(s)" in notices[0]
    assert old[0].is_dir() and not old[1].exists() and not old[2].exists()  # never the one resumed from
    prepare_run_dir(tmp_path, None, overwrite=True)
    assert not old[0].exists()
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert "saves over it at the end" in prepare_run_dir(tmp_path, None)[-1]


# --------------------------------------------------------------------------------------------------------------------
# trl_igrpo.core.run_settings
# --------------------------------------------------------------------------------------------------------------------
def _fake_trainer(output_dir, **overrides):
    from trl_igrpo import IGRPOConfig
    from trl_igrpo.testing import cpu_training_kwargs

    args = IGRPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=8, **cpu_training_kwargs(),
        **{"num_generations": 4, "num_drafts": 4, "prefetch_drafts": True, **overrides},
    )  # fmt: skip
    accelerator = SimpleNamespace(num_processes=1, is_main_process=True)
    return SimpleNamespace(args=args, reward_func_names=["math_accuracy_reward"], accelerator=accelerator)


def test_changed_settings_raise_where_they_break_the_run_and_warn_otherwise(tmp_path, caplog):
    checkpoint = _checkpoint(tmp_path, 2)
    (checkpoint / SETTINGS_FILE).write_text(json.dumps(run_settings(_fake_trainer(tmp_path))))
    assert check_resumed_settings(_fake_trainer(tmp_path), str(checkpoint)) == []  # unchanged: silent
    # drafts prefetched for N=4 are in the checkpoint: N=6 would crash at the first step ("Got 4 completions but 6")
    (checkpoint / "igrpo_prefetched_drafts_rank0.json").write_text("{}")
    with pytest.raises(ValueError) as caught:
        check_resumed_settings(_fake_trainer(tmp_path, num_drafts=6), True)  # True: the latest in output_dir
    message = str(caught.value)
    assert "num_drafts=6" in message and "Resume with num_drafts=4" in message
    assert "delete its igrpo_prefetched_drafts_rank*.json" in message
    # the same change without prefetching, and any other change: one warning listing each, the run goes on
    with caplog.at_level(logging.WARNING, logger="trl_igrpo.core.run_settings"):
        changed = check_resumed_settings(
            _fake_trainer(tmp_path, num_drafts=6, prefetch_drafts=False, num_generations=2), str(checkpoint)
        )
    assert changed == ["num_drafts", "num_generations", "prefetch_drafts"]
    warning = caplog.text
    assert "3 setting(s) changed" in warning and "num_drafts: 4 -> 6" in warning
    assert "num_generations: 4 -> 2  (batch layout" in warning
    # operational settings change freely
    assert check_resumed_settings(_fake_trainer(tmp_path, verify_draft_in_prompt=False), str(checkpoint)) == []


# --------------------------------------------------------------------------------------------------------------------
# The command line, in this process: errors before anything loads
# --------------------------------------------------------------------------------------------------------------------
def _main(capsys, *args):
    from trl_igrpo.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code or 0, captured.out, captured.err


@pytest.mark.parametrize("command", ["igrpo", "grpo", "rpo"])
def test_cli_resume_and_output_dir_errors_are_one_line(capsys, tmp_path, monkeypatch, command):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "out"
    code, _, err = _main(capsys, command, "--output_dir", str(out), "--resume_from_checkpoint", str(tmp_path / "x"))
    assert code == 2 and f"trl-igrpo {command}: error: --resume_from_checkpoint" in err and "no such folder" in err
    code, _, err = _main(capsys, command, "--output_dir", str(out), "--resume_from_checkpoint", "true")
    assert code == 2 and "no checkpoint-N folder in --output_dir" in err
    _checkpoint(out, 5)
    code, _, err = _main(capsys, command, "--output_dir", str(out), "--max_steps", "1")
    assert code == 2 and "already holds checkpoints (checkpoint-5)" in err
    assert len(err.strip().splitlines()) == 1 and (out / "checkpoint-5").is_dir()


# --------------------------------------------------------------------------------------------------------------------
# End to end, as a user runs it: train, stop, resume
# --------------------------------------------------------------------------------------------------------------------
def _cli(*args, timeout=420):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [sys.executable, "-m", "trl_igrpo", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _hashes(*folders: Path) -> dict:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_igrpo_resumes_at_the_saved_step_without_rewriting_earlier_checkpoints(tmp_path):
    """2 steps with a checkpoint each step (and prefetched drafts saved), then: a resume with a changed num_drafts
    stops before its first step (a plain rerun refuses: test_cli_resume_and_output_dir_errors_are_one_line); `--resume_from_checkpoint true` continues at step 3 to 4, and
    checkpoint-1/2 are byte-identical afterwards."""
    out = tmp_path / "out"
    common = [
        "igrpo", "--output_dir", str(out), "--tiny_model_dir", str(tmp_path / "tiny"), "--warm_start_steps", "0",
        "--num_train_examples", "16", "--num_eval_examples", "2", "--max_completion_length", "6",
        "--per_device_train_batch_size", "4", "--num_generations", "2", "--num_drafts", "2", "--prefetch_drafts",
        "--save_strategy", "steps", "--save_steps", "1",
    ]  # fmt: skip
    first = _cli(*common, "--max_steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "checkpoint-2" / SETTINGS_FILE).is_file()
    assert (out / "checkpoint-2" / "igrpo_prefetched_drafts_rank0.json").is_file()
    before = _hashes(out / "checkpoint-1", out / "checkpoint-2")

    changed = _cli(*common, "--max_steps", "4", "--resume_from_checkpoint", "true", "--num_drafts", "3")
    assert changed.returncode != 0
    assert "Cannot resume from" in changed.stderr and "num_drafts=3" in changed.stderr
    assert not (out / "checkpoint-3").exists()  # stopped before the first step

    resumed = _cli(*common, "--max_steps", "4", "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint-2'} (step 2)" in resumed.stdout
    steps = re.findall(r"^step (\d+)/4 \| loss", resumed.stdout, re.MULTILINE)
    assert steps == ["3", "4"]  # continues at the saved step
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert _hashes(out / "checkpoint-1", out / "checkpoint-2") == before
    assert "optimizer steps done: 4" in resumed.stdout
