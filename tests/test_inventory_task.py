"""The inventory task (a tool the answer depends on), its environment, reward and warm start; the tiny Qwen3 factory."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from trl_igrpo.demo.inventory import (
    CITIES,
    InventoryEnv,
    inventory_accuracy_reward,
    make_inventory_examples,
    tool_call_rate,
    vocabulary_corpus,
)
from trl_igrpo.demo.inventory_warm_start import (
    build_inventory_warm_start,
    environment_tools,
    render_stage2_example,
    teacher_trajectory,
)
from trl_igrpo.testing import TOOL_TAGS, build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_rows_hide_the_answer_in_the_environment_only():
    rows = make_inventory_examples(50, seed=3)
    assert rows == make_inventory_examples(50, seed=3) and rows != make_inventory_examples(50, seed=4)
    for row in rows:
        inventory = json.loads(row["inventory"])
        assert row["solution"] == inventory[row["item"]] and row["solution"] in CITIES
        assert row["solution"] not in row["prompt"][0]["content"] and f'"{row["item"]}"' in row["prompt"][0]["content"]
    with pytest.raises(ValueError, match="num_examples"):
        make_inventory_examples(0)


def test_environment_serves_the_rows_inventory_and_records_lookups():
    row = make_inventory_examples(1, seed=0)[0]
    env = InventoryEnv()
    assert env.reset(**row) is None
    assert env.locate(row["item"]) == row["solution"] and env.locate("dragon") == "unknown item: dragon"
    assert env.lookups == [row["item"], "dragon"]
    env.reset(**make_inventory_examples(1, seed=1)[0])
    assert env.lookups == []
    with pytest.raises(ValueError, match="'inventory' column"):
        env.reset(prompt="no inventory here")
    assert [tool.__name__ for tool in environment_tools(env)] == ["locate"]  # what GRPOTrainer exposes


def test_reward_reads_the_last_boxed_answer_of_the_assistant_only():
    logged = []
    completions = [
        [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "locate", "arguments": {}}}]},
         {"role": "tool", "name": "locate", "content": "\\boxed{Oslo}"},
         {"role": "assistant", "content": "The answer is \\boxed{Oslo}."}],
        [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "locate", "arguments": {}}}]},
         {"role": "tool", "name": "locate", "content": "\\boxed{Oslo}"}],  # the tool's text is not an answer
        [{"role": "assistant", "content": "\\boxed{Lima} no, \\boxed{Oslo}"}],
        [{"role": "assistant", "content": "Oslo"}],
    ]  # fmt: skip
    rewards = inventory_accuracy_reward(completions, ["Oslo"] * 4, log_metric=lambda n, v: logged.append((n, v)))
    assert rewards == [1.0, 0.0, 1.0, 0.0]
    assert logged == [("inventory/tool_call_rate", 0.5)] and tool_call_rate(completions) == 0.5


def test_teacher_calls_the_tool_at_the_given_rate_and_slips_as_told():
    rng, rows = random.Random(0), make_inventory_examples(400, seed=1)
    trajectories = [teacher_trajectory(row, rng, tool_rate=0.5, item_slip_rate=0.2) for row in rows]
    called = [t for t in trajectories if len(t) == 3]
    assert 0.4 < len(called) / len(rows) < 0.6
    right = [t for t, row in zip(trajectories, rows) if len(t) == 3 and t[1]["content"] == row["solution"]]
    assert all(t[2]["content"] == f"The answer is \\boxed{{{t[1]['content']}}}." for t in right)
    assert 0.7 < len(right) / len(called) < 0.9  # item_slip_rate 0.2: a wrong item, "unknown item", a guess
    assert all(t[1]["content"].startswith("unknown item:") for t in called if t not in right)


def test_tiny_qwen3_uses_trls_qwen3_template_and_single_token_tool_tags(tmp_path):
    from trl.chat_template_utils import add_response_schema, parse_response, qwen3_chat_template

    path = build_tiny_model(tmp_path, architecture="qwen3", chat_template="qwen3", hidden_size=64, num_layers=1,
                            extra_corpus=vocabulary_corpus())  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template == qwen3_chat_template  # TRL recognises it and attaches its response schema
    for tag in TOOL_TAGS:
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1
    for word in ("falcon", "Oslo", "locate"):  # copied words are one token each
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1
    call = '<tool_call>\n{"name": "locate", "arguments": {"item": "falcon"}}\n</tool_call><|im_end|>'
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"]  # fmt: skip
    ids = tokenizer(call, add_special_tokens=False)["input_ids"]
    parsed = parse_response(add_response_schema(tokenizer), ids, prefix=prefix)
    assert parsed["tool_calls"] == [
        {"type": "function", "function": {"name": "locate", "arguments": {"item": "falcon"}}}
    ]
    with pytest.raises(ValueError, match="chat_template"):
        build_tiny_model(tmp_path / "x", chat_template="llama9")


def test_stage2_example_shows_the_trajectory_and_masks_the_tool_result(tmp_path):
    path = build_tiny_model(tmp_path, architecture="qwen3", chat_template="qwen3", hidden_size=64, num_layers=1,
                            extra_corpus=vocabulary_corpus())  # fmt: skip
    parts = render_stage2_example(AutoTokenizer.from_pretrained(path))
    assert "Tool call: locate" in parts["transcript"] and "Tool result (locate):" in parts["transcript"]
    assert parts["transcript"] in parts["stage2_prompt"] and "<tools>" in parts["stage2_prompt"]
    assert parts["stage2_prompt"].endswith("<|im_start|>assistant\n")
    masked = parts["refinement"].split("[masked: tool result (tool_mask=0)]\n")[1].split("[trained]")[0]
    assert "<tool_response>" in masked and "<tool_call>" not in masked


def test_docs_example_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "render_agents_example.py"), "--check"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_warm_start_is_built_once_and_reused(tmp_path):
    path = build_inventory_warm_start(tmp_path / "ws", sft_steps=2, batch_size=2, hidden_size=64, num_layers=1)
    stamp = json.loads((Path(path) / "warm_start.json").read_text())
    assert stamp["settings"]["sft_steps"] == 2 and stamp["settings"]["recipe"] >= 1
    mtime = (Path(path) / "model.safetensors").stat().st_mtime_ns
    assert build_inventory_warm_start(tmp_path / "ws", sft_steps=2, batch_size=2, hidden_size=64, num_layers=1) == path
    assert (Path(path) / "model.safetensors").stat().st_mtime_ns == mtime  # same settings: not rebuilt
    with pytest.raises(ValueError, match="tool_rate"):
        build_inventory_warm_start(tmp_path / "bad", tool_rate=1.5)
