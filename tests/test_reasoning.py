"""Reasoning ON/OFF module: exact template renderings, style detection, <think> helpers, datasets, generation, SFT."""

from __future__ import annotations

import os

import pytest

from trl_igrpo import reasoning as R
from trl_igrpo.testing import cpu_training_kwargs

USER = {"role": "user", "content": "What is 2 + 3?"}
SYSTEM = {"role": "system", "content": "You are a terse math tutor."}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert R.detect_reasoning_style(tok) is None  # plain ChatML: neither toggle
    assert R.install_reasoning_template(tok) is True
    return tok


def _trl_template(name: str) -> str:
    import trl

    with open(os.path.join(os.path.dirname(trl.__file__), "chat_templates", f"{name}.jinja"), encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------------------------------------------------
# Exact renderings on the bundled template
# --------------------------------------------------------------------------------------------------------------------
RENDERINGS = [
    # (style, mode, messages, expected prompt with the generation prompt)
    (
        "system_prompt",
        "on",
        [USER],
        "<|im_start|>system\ndetailed thinking on<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "system_prompt",
        "off",
        [USER],
        "<|im_start|>system\ndetailed thinking off<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "system_prompt",
        "on",
        [SYSTEM, USER],
        "<|im_start|>system\ndetailed thinking on\n\nYou are a terse math tutor.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "system_prompt",
        "off",
        [SYSTEM, USER],
        "<|im_start|>system\ndetailed thinking off\n\nYou are a terse math tutor.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    ),
    ("enable_thinking", "on", [USER], "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"),
    (
        "enable_thinking",
        "off",
        [USER],
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n<think>\n</think>\n",
    ),
    (
        "enable_thinking",
        "on",
        [SYSTEM, USER],
        "<|im_start|>system\nYou are a terse math tutor.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "enable_thinking",
        "off",
        [SYSTEM, USER],
        "<|im_start|>system\nYou are a terse math tutor.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n</think>\n",
    ),
]


@pytest.mark.parametrize(("style", "mode", "messages", "expected"), RENDERINGS)
def test_bundled_template_renders_each_mode_and_style_exactly(tokenizer, style, mode, messages, expected):
    assert R.render_with_reasoning_mode(tokenizer, messages, mode, style) == expected


HISTORY = [
    SYSTEM,
    {"role": "user", "content": "What is 1 + 1?"},
    {"role": "assistant", "content": "<think>\none plus one\n</think>\nThe answer is 2."},
    {"role": "user", "content": "And 2 + 3?"},
]


@pytest.mark.parametrize(
    ("style", "mode", "head", "tail"),
    [
        ("system_prompt", "on", "detailed thinking on\n\n", ""),
        ("system_prompt", "off", "detailed thinking off\n\n", ""),
        ("enable_thinking", "on", "", ""),
        ("enable_thinking", "off", "", "<think>\n</think>\n"),
    ],
)
def test_earlier_turn_reasoning_is_stripped_in_both_styles(tokenizer, style, mode, head, tail):
    expected = (
        f"<|im_start|>system\n{head}You are a terse math tutor.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n"
        "<|im_start|>assistant\nThe answer is 2.<|im_end|>\n"
        "<|im_start|>user\nAnd 2 + 3?<|im_end|>\n"
        f"<|im_start|>assistant\n{tail}"
    )
    assert R.render_with_reasoning_mode(tokenizer, HISTORY, mode, style) == expected
    # The Python helper strips exactly what the template strips.
    stripped = R.strip_history_reasoning(HISTORY)
    assert stripped[2]["content"] == "The answer is 2." and HISTORY[2]["content"].startswith("<think>")


@pytest.mark.parametrize(
    ("mode", "content", "expected_turn"),
    [
        ("on", "<think>\n2 plus 3\n</think>\n5", "<think>\n2 plus 3\n</think>\n5"),
        ("off", "5", "<think>\n</think>\n5"),  # OFF targets carry the pre-fill so the prompt stays a prefix
    ],
)
def test_final_assistant_turn_keeps_reasoning_and_prompt_is_a_prefix(tokenizer, mode, content, expected_turn):
    kwargs = R.chat_template_kwargs_for_mode(mode)
    prompt = tokenizer.apply_chat_template([USER], tokenize=False, add_generation_prompt=True, **kwargs)
    full = tokenizer.apply_chat_template([USER, {"role": "assistant", "content": content}], tokenize=False, **kwargs)
    assert full == f"<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n{expected_turn}<|im_end|>\n"
    assert full.startswith(prompt)


def test_reasoning_content_field_is_rendered_as_a_think_block(tokenizer):
    message = {"role": "assistant", "content": "5", "reasoning_content": " 2 plus 3 "}
    full = tokenizer.apply_chat_template([USER, message], tokenize=False)
    assert full.endswith("<|im_start|>assistant\n<think>\n2 plus 3\n</think>\n5<|im_end|>\n")


def test_bundled_template_supports_assistant_only_loss(tokenizer):
    out = tokenizer.apply_chat_template(
        [USER, {"role": "assistant", "content": "5"}],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(masked) == "5<|im_end|>"


# --------------------------------------------------------------------------------------------------------------------
# Style detection and installation
# --------------------------------------------------------------------------------------------------------------------
def test_style_detection_on_real_templates(tiny_model_dir):
    from transformers import AutoTokenizer

    assert R.detect_reasoning_style(_trl_template("qwen3")) == "enable_thinking"
    assert R.detect_reasoning_style(_trl_template("nemotron_3_nano")) == "enable_thinking"
    assert R.detect_reasoning_style(_trl_template("llama3_1")) is None
    llama_nemotron_v1 = (
        "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
        "{%- else %}{%- set system_message = 'detailed thinking on' %}{%- endif %}"
    )
    assert R.detect_reasoning_style(llama_nemotron_v1) == "system_prompt"
    assert R.detect_reasoning_style(R.load_reasoning_template()) == "enable_thinking"
    assert R.detect_reasoning_style({"default": _trl_template("qwen3")}) == "enable_thinking"

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)  # plain ChatML
    assert R.resolve_reasoning_style(tok) == "system_prompt"  # works with any template
    assert R.resolve_reasoning_style(tok, "enable_thinking") == "enable_thinking"
    with pytest.raises(ValueError, match="style"):
        R.resolve_reasoning_style(tok, "reasoning_effort")

    tok.chat_template = _trl_template("qwen3")
    assert R.install_reasoning_template(tok) is False and tok.chat_template == _trl_template("qwen3")
    assert R.install_reasoning_template(tok, overwrite=True) is True
    assert tok.chat_template == R.REASONING_TEMPLATE_PATH.read_text()


def test_enable_thinking_style_on_nemotron_3_template_ends_off_prompts_with_the_empty_block(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = _trl_template("nemotron_3_nano")
    assert R.resolve_reasoning_style(tok) == "enable_thinking"
    assert R.render_with_reasoning_mode(tok, [USER], "off").endswith("<|im_start|>assistant\n<think></think>")
    assert R.render_with_reasoning_mode(tok, [USER], "on").endswith("<|im_start|>assistant\n<think>\n")


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------------------
def test_system_prompt_merging_preserves_replaces_and_does_not_mutate():
    messages = [SYSTEM, USER]
    on = R.set_system_reasoning_mode(messages, "on")
    assert on[0] == {"role": "system", "content": "detailed thinking on\n\nYou are a terse math tutor."}
    assert messages[0] == SYSTEM  # input untouched
    off = R.set_system_reasoning_mode(on, False)
    assert off[0]["content"] == "detailed thinking off\n\nYou are a terse math tutor."  # replaced, not stacked
    assert R.set_system_reasoning_mode(off, "off") == off  # idempotent
    assert R.set_system_reasoning_mode([{"role": "system", "content": "Detailed Thinking ON"}, USER], "off")[0] == {
        "role": "system",
        "content": "detailed thinking off",
    }
    assert R.set_system_reasoning_mode([USER], "on") == [{"role": "system", "content": "detailed thinking on"}, USER]
    assert R.reasoning_mode_from_messages(off) == "off" and R.reasoning_mode_from_messages([USER]) is None
    assert R.reasoning_mode_from_messages("plain prompt") is None


@pytest.mark.parametrize("bad", ["yes", "", None, 1, "detailed thinking maybe"])
def test_bad_modes_are_rejected_naming_the_field(bad):
    with pytest.raises(ValueError, match="`reasoning_mode`"):
        R.normalize_reasoning_mode(bad)


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<think>r</think>a", "r", "a"),
        ("  <think>\n step \n</think>\n\n The answer is 5. ", "step", "The answer is 5."),
        ("<think></think>5", "", "5"),
        ("5", None, "5"),
        ("<think>r", None, "<think>r"),  # unclosed
        ("<think>a<think>b</think>c</think>d", None, "<think>a<think>b</think>c</think>d"),  # nested
        ("<think>a</think>b<think>c</think>d", None, "<think>a</think>b<think>c</think>d"),  # two blocks
        ("x <think>r</think>a", None, "x <think>r</think>a"),  # text before the block
    ],
)
def test_split_reasoning(text, reasoning, answer):
    assert R.split_reasoning(text) == (reasoning, answer)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("<think>r</think> a ", "a"), ("a", "a"), ("<think>r", ""), ("<think>a</think>b</think> c", "c"), ("", "")],
)
def test_strip_reasoning_keeps_text_after_the_last_close_tag(text, expected):
    assert R.strip_reasoning(text) == expected


# --------------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------------
TRACES = [
    {"prompt": f"What is {i} + {i}?", "completion": f"<think>\n{i} plus {i}\n</think>\nThe answer is {2 * i}."}
    for i in range(10)
]


def test_paired_examples_system_prompt_style():
    pairs = R.make_paired_reasoning_examples(TRACES[:2])
    assert len(pairs) == 4 and [p["reasoning_mode"] for p in pairs] == ["on", "off", "on", "off"]
    assert pairs[0]["prompt"] == [
        {"role": "system", "content": "detailed thinking on"},
        {"role": "user", "content": "What is 0 + 0?"},
    ]
    assert pairs[0]["completion"] == [
        {"role": "assistant", "content": "<think>\n0 plus 0\n</think>\nThe answer is 0."}
    ]
    assert pairs[1]["prompt"][0] == {"role": "system", "content": "detailed thinking off"}
    assert pairs[1]["completion"] == [{"role": "assistant", "content": "The answer is 0."}]
    assert "chat_template_kwargs" not in pairs[0]


def test_paired_examples_enable_thinking_style_on_a_datasets_dataset_with_separate_columns():
    from datasets import Dataset

    rows = [
        {
            "messages": [SYSTEM, USER, {"role": "assistant", "content": "5"}],
            "trace": "2 plus 3",
            "direct": "Five.",
        }
    ]
    pairs = R.make_paired_reasoning_examples(
        Dataset.from_list(rows), style="enable_thinking", reasoning_column="trace", off_completion_column="direct"
    )
    assert pairs.num_rows == 2
    on, off = pairs[0], pairs[1]
    assert on["messages"] == [SYSTEM, USER, {"role": "assistant", "content": "<think>\n2 plus 3\n</think>\n5"}]
    assert off["messages"] == [SYSTEM, USER, {"role": "assistant", "content": "Five."}]
    assert on["chat_template_kwargs"] == {"enable_thinking": True}
    assert off["chat_template_kwargs"] == {"enable_thinking": False}


def test_formatting_strips_history_reasoning_and_validates_rows():
    row = {"messages": [*HISTORY, {"role": "assistant", "content": "<think>two plus three</think>5"}]}
    off = R.format_reasoning_example(row, "off")
    assert off["messages"][2]["content"] == "The answer is 2."
    assert off["messages"][0]["content"] == "detailed thinking off\n\nYou are a terse math tutor."
    assert off["messages"][-1]["content"] == "5"
    with pytest.raises(ValueError, match="reasoning trace"):
        R.format_reasoning_example({"prompt": "q", "completion": "no trace"}, "on")
    with pytest.raises(ValueError, match="`messages` or `prompt` \\+ `completion`"):
        R.format_reasoning_example({"text": "x"}, "on")
    with pytest.raises(ValueError, match="`reasoning_column='trace'`"):
        R.format_reasoning_example(TRACES[0], "on", reasoning_column="trace")


@pytest.mark.parametrize("on_fraction", [0.0, 0.3, 0.5, 1.0])
def test_mixing_hits_the_exact_ratio_deterministically(on_fraction):
    from datasets import Dataset

    mixed = R.mix_reasoning_modes(TRACES, on_fraction, seed=3)
    modes = [row["reasoning_mode"] for row in mixed]
    assert modes.count("on") == round(on_fraction * len(TRACES))
    assert modes == [
        row["reasoning_mode"] for row in R.mix_reasoning_modes(Dataset.from_list(TRACES), on_fraction, seed=3)
    ]
    for row in mixed:
        has_think = "<think>" in row["completion"][0]["content"]
        assert has_think == (row["reasoning_mode"] == "on")
        assert R.reasoning_mode_from_messages(row["prompt"]) == row["reasoning_mode"]


def test_mixing_depends_on_the_seed_and_validates_the_fraction():
    a = [r["reasoning_mode"] for r in R.mix_reasoning_modes(TRACES, 0.5, seed=0)]
    b = [r["reasoning_mode"] for r in R.mix_reasoning_modes(TRACES, 0.5, seed=1)]
    assert a != b and a.count("on") == b.count("on") == 5
    with pytest.raises(ValueError, match="on_fraction"):
        R.mix_reasoning_modes(TRACES, 1.5)


def test_grpo_chat_template_kwargs_refuses_mixed_modes():
    assert R.grpo_chat_template_kwargs(["off", "off"], {"low_effort": True}) == {
        "low_effort": True,
        "enable_thinking": False,
    }
    with pytest.raises(ValueError, match="style='system_prompt'"):
        R.grpo_chat_template_kwargs(["on", "off"])


# --------------------------------------------------------------------------------------------------------------------
# Generation defaults
# --------------------------------------------------------------------------------------------------------------------
def test_generation_defaults_per_mode():
    assert R.generation_kwargs_for_mode("on") == {"do_sample": True, "temperature": 0.6, "top_p": 0.95}
    assert R.generation_kwargs_for_mode("off") == {"do_sample": False}
    assert R.generation_kwargs_for_mode(True, max_new_tokens=8)["max_new_tokens"] == 8
    on = R.generation_config_for_mode("on")
    assert (on.do_sample, on.temperature, on.top_p) == (True, 0.6, 0.95)
    off = R.generation_config_for_mode("off")
    assert off.do_sample is False and off.temperature is None and off.top_p is None


def test_generate_with_reasoning_mode_off_is_greedy_from_the_mode_prompt(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    out = R.generate_with_reasoning_mode(model, tokenizer, [[USER], [SYSTEM, USER]], "off", max_new_tokens=5)
    text = R.render_with_reasoning_mode(tokenizer, [SYSTEM, USER], "off")
    assert text.endswith("<think>\n</think>\n")  # bundled template, enable_thinking style
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ref = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out[1] == tokenizer.decode(ref[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    torch.manual_seed(0)
    on_a = R.generate_with_reasoning_mode(model, tokenizer, [[USER]] * 4, "on", max_new_tokens=5)
    torch.manual_seed(0)
    on_b = R.generate_with_reasoning_mode(model, tokenizer, [[USER]] * 4, "on", max_new_tokens=5)
    assert on_a == on_b and len(set(on_a)) > 1  # ON samples (T = 0.6), reproducibly for a seed


# --------------------------------------------------------------------------------------------------------------------
# SFTTrainer end to end
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("style", ["system_prompt", "enable_thinking"])
def test_sft_trains_on_mode_carrying_paired_data(tiny_model_dir, tmp_path, style):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    R.install_reasoning_template(tokenizer)
    dataset = R.make_paired_reasoning_examples(Dataset.from_list(TRACES[:4]), style=style)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        **cpu_training_kwargs(),
        max_length=64,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)

    # Tokenisation honoured the mode: the trained tokens (labels != -100) are the mode's response, and in the
    # enable_thinking style OFF prompts end with the pre-filled empty think block (from the per-row kwargs).
    for row, source in zip(trainer.train_dataset, dataset):
        ids, mask = row["input_ids"], [label != -100 for label in row["labels"]]
        prompt = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
        completion = tokenizer.decode([t for t, m in zip(ids, mask) if m])
        expected = source["completion"][0]["content"]
        if source["reasoning_mode"] == "off":
            assert "<think>" not in completion
            assert prompt.endswith("<think>\n</think>\n") == (style == "enable_thinking")
        assert completion == expected + "<|im_end|>\n"
        assert ("detailed thinking " + source["reasoning_mode"] in prompt) == (style == "system_prompt")

    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach().cpu())]
    assert len(changed) == len(before)
    assert trainer.state.log_history[0]["loss"] > trainer.state.log_history[-2]["loss"]
