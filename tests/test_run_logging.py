"""What a run shows: the compact console line, answers in the completions table, TensorBoard / W&B, model cards."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from trl_igrpo.core.run_logging import completions_markdown, final_answer, format_log_line

IGRPO_LOGS = {
    "loss": 0.0123, "grad_norm": 0.41, "learning_rate": 1e-4, "reward": 1.25, "reward_std": 0.3,
    "igrpo/draft_reward_mean": 0.8, "igrpo/best_draft_reward_mean": 1.1, "igrpo/refinement_reward_mean": 1.25,
    "completions/mean_length": 40.0, "entropy": 0.7, "epoch": 0.1,
}  # fmt: skip


def test_one_compact_line_per_step():
    line = format_log_line(IGRPO_LOGS, step=3, max_steps=40, seconds_per_step=2.14)
    assert line == (
        "step 3/40 | loss 0.0123 | reward 1.250 | draft 0.800 -> best 1.100 -> refinement 1.250 | grad_norm 0.41 | "
        "lr 1.00e-04 | 2.1 s/step"
    )
    grpo = format_log_line({"loss": 0.5, "reward": 0.25, "grad_norm": 1.0}, 1, 2, None)
    assert grpo == "step 1/2 | loss 0.5 | reward 0.250 | grad_norm 1"
    evaluation = format_log_line({"eval_loss": 0.2, "eval_reward": 0.5, "epoch": 1.0}, 10, 40, 1.0)
    assert evaluation == "eval at step 10 | loss 0.2 | reward 0.500"
    end = format_log_line({"train_runtime": 12.34, "train_loss": 0.01, "epoch": 1.0}, 4, 4, None)
    assert end == "training done: 4 steps in 12.3 s (mean loss 0.01)"
    assert "reward nan" in format_log_line({"loss": 0.0, "reward": float("nan")}, 1, 1, None)


def test_final_answers_as_the_math_reward_reads_them():
    assert final_answer("<think>2+2</think><answer>\\boxed{4}</answer>") == "4"
    assert final_answer("<think>x</think><answer> 7 </answer>") == "7"
    assert final_answer([{"role": "assistant", "content": "so \\boxed{\\frac{1}{2}} done"}]) == "\\frac{1}{2}"
    assert final_answer("no answer here") == "(none)"


def test_completions_markdown_puts_draft_and_refinement_answers_side_by_side():
    from collections import deque

    logs = {
        "prompt": deque([[{"role": "user", "content": "What is 1+1?"}]]),
        "completion": deque([[{"role": "assistant", "content": "<answer>2</answer>"}]]),
        "rewards": {"math_accuracy_reward": deque([1.0])},
        "extra": {
            "draft": deque(["<answer>3</answer>"]),
            "draft_answer": deque(["3"]),
            "refinement_answer": deque(["2"]),
        },
        "advantages": deque([0.5]),
    }
    table = completions_markdown(logs, num_rows=None).splitlines()
    assert table[0] == "| prompt | completion | draft | draft_answer | refinement_answer | math_accuracy_reward |"
    assert table[2] == "| What is 1+1? | <answer>2</answer> | <answer>3</answer> | 3 | 2 | 1.000 |"


def test_model_cards_name_only_hub_ids(tmp_path):
    from trl.trainer.utils import generate_model_card

    from trl_igrpo.hub import hub_id_or_none, sanitize_model_card

    assert hub_id_or_none("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B" and hub_id_or_none("gpt2") == "gpt2"
    for local in (None, "None", "/home/me/model", "./kept", "outputs/run/ckpt", str(tmp_path)):
        assert hub_id_or_none(local) is None, local
    for base_model, dataset in (
        (None, None),
        ("/home/me/warm-start", "/data/kept"),
        ("Qwen/Qwen2.5-Math-1.5B", "org/math"),
    ):
        card = generate_model_card(
            base_model=base_model, model_name="run", hub_model_id=None, dataset_name=dataset, tags=["trl"],
            wandb_url=None, trackio_url=None, trainer_name="iGRPO",
        )  # fmt: skip
        path = tmp_path / "README.md"
        card.save(path)
        sanitize_model_card(path)
        text = path.read_text()
        header = text.split("---")[1]
        assert (
            "[None]" not in text and "huggingface.co//" not in text and "/home/me" not in text and "/data/" not in text
        )
        assert 'model="None"' not in text
        if base_model and base_model.startswith("Qwen"):
            assert (
                "base_model: Qwen/Qwen2.5-Math-1.5B" in header
                and "[org/math](https://huggingface.co/datasets/org/math)" in text
            )
        else:
            assert "base_model" not in header and "datasets" not in header
            assert "fine-tuned version of a local model" in text


def test_negated_flags_read_the_right_way_round(capsys):
    from trl_igrpo.cli import main

    assert main(["igrpo", "--help"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert (
        "--no_verify_draft_in_prompt, --no-verify-draft-in-prompt Turn off --verify_draft_in_prompt (on by default)."
        in flat
    )
    assert "--no_share_prompt_prefill, --no-share-prompt-prefill Turn off --share_prompt_prefill" in flat


# --------------------------------------------------------------------------------------------------------------------
# End to end: a local Parquet file, held-out rows, TensorBoard and W&B (offline), the card
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_igrpo_on_local_data_logs_to_tensorboard_and_wandb(tmp_path):
    """A local Parquet file with `problem`/`solution`, held-out rows split off it, `report_to` TensorBoard (and W&B,
    offline, where wandb is installed) with `log_completions`: the compact console line, the full metrics as scalars,
    the completions table with draft and refinement answers, a card without local paths."""
    import importlib.util

    pytest.importorskip("tensorboard")
    with_wandb = importlib.util.find_spec("wandb") is not None  # not in [dev]: TRL imports it on every `import trl`
    import pandas as pd
    from datasets import Dataset
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [{"problem": f"What is {i} + {i + 1}?", "solution": str(2 * i + 1)} for i in range(12)]
    Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    loggers = "[tensorboard, wandb]" if with_wandb else "[tensorboard]"
    (tmp_path / "recipe.yaml").write_text(f"report_to: {loggers}\nlog_completions: true\n")
    out = tmp_path / "out"
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
        "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
    }  # fmt: skip
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "trl_igrpo", "igrpo", "--dataset_name", str(tmp_path / "train.parquet"),
            "--num_eval_examples", "4", "--output_dir", str(out), "--tiny_model_dir", str(tmp_path / "tiny"),
            "--warm_start_steps", "0", "--max_steps", "2", "--max_completion_length", "6",
            "--per_device_train_batch_size", "4", "--num_generations", "2", "--num_drafts", "2",
            "--config", str(tmp_path / "recipe.yaml"), "--run_name", "t",
        ],
        capture_output=True, text=True, timeout=420, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # held-out rows come from the data and are never trained on; the output says so
    assert f"4 rows split off {tmp_path / 'train.parquet'} before training (never trained on)" in result.stdout
    assert "training on the other 8 rows" in result.stdout
    # the console: one line per step, not transformers' dict
    assert re.search(
        r"^step 2/2 \| loss \S+ \| reward \S+ \| draft \S+ -> best \S+ -> refinement \S+ \|", result.stdout, re.M
    )
    assert "{'loss'" not in result.stdout + result.stderr
    # TensorBoard: the full metrics dict as scalars, and the completions table with the answers as text
    (events,) = glob.glob(str(out / "runs" / "*" / "events.out.tfevents.*"))
    accumulator = EventAccumulator(events, size_guidance={"tensors": 0, "scalars": 0}).Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {
        "train/loss",
        "train/reward",
        "train/igrpo/draft_mean_length",
        "train/igrpo/refinement_reward_mean",
    } <= scalars
    texts = [accumulator.Tensors(tag) for tag in accumulator.Tags()["tensors"] if tag.startswith("completions")]
    table = texts[0][-1].tensor_proto.string_val[0].decode()
    assert "| draft | draft_answer | refinement_answer |" in table
    # TRL's Parquet files of the completions table, and W&B (offline) when installed: the same answer columns
    parquet = pd.read_parquet(sorted(glob.glob(str(out / "completions" / "completions_*.parquet")))[-1])
    assert {"draft", "draft_answer", "refinement_answer", "completion"} <= set(parquet.columns)
    if with_wandb:
        pattern = str(tmp_path / "wandb" / "offline-run-*" / "files" / "media" / "table" / "completions_*.table.json")
        tables = glob.glob(pattern)
        assert tables, os.listdir(tmp_path / "wandb")
        columns = json.loads(open(tables[-1]).read())["columns"]
        assert {"draft", "draft_answer", "refinement_answer", "completion"} <= set(columns)
    # every output folder has a card naming no local path
    card = (out / "README.md").read_text()
    assert "[None]" not in card and str(tmp_path) not in card and "a local model" in card
