"""Benchmark loading for `trl-igrpo eval`: local files, columns, gold-answer formats, presets, prompts, and the errors
for each way the data can be wrong."""

import json

import pytest

from trl_igrpo.eval.data import (
    PRESETS,
    DataError,
    build_prompt,
    gold_answer,
    load_problems,
    load_rows,
    resolve_columns,
)

ROWS = [
    {"problem": "What is 2+3?", "answer": "5", "subject": "Algebra", "level": 1},
    {"problem": "Half of one?", "answer": "\\frac{1}{2}", "subject": "Prealgebra", "level": 2},
    {"problem": "What is 7-9?", "answer": "-2", "subject": "Algebra", "level": 2},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_every_local_format_loads_the_same_rows(tmp_path, suffix):
    path = tmp_path / f"bench{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, ROWS)
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
            writer.writeheader()
            writer.writerows(ROWS)
    problems, info = load_problems(str(path))
    assert [p.answer for p in problems] == ["5", "\\frac{1}{2}", "-2"]
    assert [p.problem for p in problems] == [r["problem"] for r in ROWS]
    assert info["group_columns"] == ["subject", "level"]  # picked automatically when present
    assert [str(p.groups["level"]) for p in problems] == ["1", "2", "2"]


def test_column_oriented_json_loads(tmp_path):
    path = tmp_path / "cols.json"
    path.write_text(json.dumps({"problem": ["a?", "b?"], "answer": ["1", "2"]}))
    assert [p.answer for p in load_problems(str(path))[0]] == ["1", "2"]


def test_a_saved_datasets_directory_loads(tmp_path):
    from datasets import Dataset

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert len(load_problems(str(tmp_path / "saved"))[0]) == 3


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="does not exist") as error:
        load_rows(str(tmp_path / "nope.jsonl"))
    assert "nope.jsonl" in str(error.value)
    with pytest.raises(DataError, match="does not exist"):
        load_rows("./missing/bench")


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": oops}\n')
    with pytest.raises(DataError, match="line 2"):
        load_rows(str(path))
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1 is a JSON list"):
        load_rows(str(path))


def test_unreachable_hub_dataset_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load the Hub dataset") as error:
        load_rows("no-such-org/no-such-benchmark")
    assert "HF_HUB_OFFLINE" in str(error.value) and "--dataset_name" in str(error.value)


def test_missing_columns_list_the_columns_and_the_flag(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"question": "a?", "target": "1"}])
    with pytest.raises(DataError, match="no problem column 'problem'") as error:
        load_problems(path)
    assert "['question', 'target']" in str(error.value) and "--problem_column" in str(error.value)
    with pytest.raises(DataError, match="no answer column 'answer'.*--answer_column"):
        load_problems(path, problem_column="question")
    problems, info = load_problems(path, problem_column="question", answer_column="target")
    assert problems[0].answer == "1" and info["answer_format"] == "plain"
    with pytest.raises(DataError, match="breakdown"):
        load_problems(path, problem_column="question", answer_column="target", group_columns=["subject"])


def test_answer_falls_back_to_the_boxed_answer_of_solution(tmp_path):
    path = _jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": "So $x = \\boxed{\\frac{1}{4}}$."}])
    problems, info = load_problems(path)
    assert problems[0].answer == "\\frac{1}{4}"
    assert (info["answer_column"], info["answer_format"]) == ("solution", "boxed")


def test_unreadable_gold_answers_are_an_error_naming_the_rows(tmp_path):
    rows = [{"problem": "p", "solution": "no box here"}, {"problem": "q", "solution": "\\boxed{3}"}]
    with pytest.raises(DataError, match="1 gold answer.*row 0.*no box here"):
        load_problems(_jsonl(tmp_path / "m.jsonl", rows))
    with pytest.raises(DataError, match="row 1"):
        load_problems(_jsonl(tmp_path / "e.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q", "answer": " "}]))
    with pytest.raises(DataError, match="empty or non-text 'problem'"):
        load_problems(_jsonl(tmp_path / "p.jsonl", [{"problem": "", "answer": "1"}]))


@pytest.mark.parametrize(
    "value, answer_format, expected",
    [
        ("Natalia sold 48 clips... #### 72", "gsm8k", "72"),
        ("... #### 1,234", "gsm8k", "1234"),
        ("no marker", "gsm8k", None),
        ("so \\boxed{\\dfrac{3}{4}} is it", "boxed", "\\dfrac{3}{4}"),
        (" 204 ", "plain", "204"),
        (142.0, "plain", "142"),
        (0.25, "plain", "0.25"),
        (7, "plain", "7"),
        (float("nan"), "plain", None),
        (None, "plain", None),
    ],
)
def test_gold_answer_formats(value, answer_format, expected):
    assert gold_answer(value, answer_format) == expected


def test_gsm8k_rows_through_the_loader(tmp_path):
    path = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": "How many?", "answer": "3 + 4 = 7\n#### 7"}])
    p = PRESETS["gsm8k"]
    problems, _ = load_problems(path, problem_column=p.problem_column, answer_column=p.answer_column,
                                answer_format=p.answer_format)  # fmt: skip
    assert problems[0].answer == "7" and problems[0].problem == "How many?"


def test_limit_and_its_bounds(tmp_path):
    path = _jsonl(tmp_path / "b.jsonl", ROWS)
    assert len(load_problems(path, limit=2)[0]) == 2
    with pytest.raises(DataError, match="--limit"):
        load_problems(path, limit=0)


def test_presets_follow_the_papers_protocol():
    assert PRESETS["aime24"].num_samples == PRESETS["aime25"].num_samples == 64
    assert {PRESETS[name].num_samples for name in ("math500", "amc23", "gsm8k", "minerva")} == {8}
    assert PRESETS["math500"].group_columns == ("subject", "level")
    assert PRESETS["gsm8k"].answer_format == "gsm8k" and PRESETS["gsm8k"].dataset_config == "main"
    for preset in PRESETS.values():
        resolve_columns([preset.problem_column, preset.answer_column], preset.problem_column, preset.answer_column,
                        preset.answer_format)  # fmt: skip


def test_build_prompt():
    assert build_prompt("What is 1+1?") == [{"role": "user", "content": "What is 1+1?"}]
    with_system = build_prompt("x", "Solve: {problem}\nPut the answer in \\boxed{}.", system_prompt="be brief")
    assert with_system == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Solve: x\nPut the answer in \\boxed{}."},
    ]
    assert build_prompt("x", conversational=False) == "x"
    messages = [{"role": "user", "content": "hi"}]
    assert build_prompt(messages, system_prompt="s") == [{"role": "system", "content": "s"}, *messages]
    with pytest.raises(DataError, match="{problem}"):
        build_prompt("x", "no placeholder")


def test_chat_message_problems_are_used_as_the_conversation(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "What is 2+2?"}], "solution": "4"}]
    path = _jsonl(tmp_path / "trl.jsonl", rows)
    problems, info = load_problems(path, problem_column="prompt", answer_column="solution", answer_format="plain")
    assert problems[0].problem == rows[0]["prompt"] and problems[0].answer == "4"
