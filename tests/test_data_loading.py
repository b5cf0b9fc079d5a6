"""The package's one data loader and one prompt builder (trl_igrpo.data), shared by every command."""

import json

import pytest
from datasets import Dataset, DatasetDict

from trl_igrpo.data import DataError, add_prompt_column, build_chat_prompt, load_data, load_rows, tokenize_prompts

ROWS = [{"problem": f"What is {i} + {i}?", "solution": str(2 * i)} for i in range(6)]


def _write_every_format(folder):
    """The same rows as .jsonl, .json, .csv, .parquet, a save_to_disk Dataset and a save_to_disk DatasetDict."""
    data = Dataset.from_list(ROWS)
    paths = {}
    paths["jsonl"] = folder / "data.jsonl"
    paths["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    paths["json"] = folder / "data.json"
    paths["json"].write_text(json.dumps(ROWS))
    paths["csv"] = folder / "data.csv"
    data.to_csv(str(paths["csv"]), index=False)
    paths["parquet"] = folder / "data.parquet"
    data.to_parquet(str(paths["parquet"]))
    paths["saved"] = folder / "saved"
    data.save_to_disk(str(paths["saved"]))
    paths["saved_dict"] = folder / "saved_dict"
    DatasetDict({"train": data, "test": data.select(range(2))}).save_to_disk(str(paths["saved_dict"]))
    return paths


def test_every_local_format_loads_the_same_rows(tmp_path):
    for kind, path in _write_every_format(tmp_path).items():
        data = load_data(str(path))
        as_text = [{key: str(value) for key, value in row.items()} for row in data.to_list()]
        assert as_text == ROWS, kind  # CSV columns get types inferred (solution 0, 2, ...); the reward reads str()
    assert len(load_data(str(tmp_path / "saved_dict"), split="test")) == 2


def test_a_bare_relative_folder_name_is_local_not_a_hub_id(tmp_path, monkeypatch):
    """`grpo --dataset_name kept` after `pass-rate --filtered-output kept` (a name without `./`)."""
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "kept"))
    monkeypatch.chdir(tmp_path)
    assert load_data("kept").to_list() == ROWS


def test_missing_paths_and_wrong_splits_are_errors_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"dataset '\./nope\.jsonl' does not exist.*save_to_disk"):
        load_data("./nope.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        load_data("missing.parquet")  # a data-file suffix is local even without ./
    paths = _write_every_format(tmp_path)
    with pytest.raises(DataError, match=r"single file, so it has one split; --dataset_train_split 'test'"):
        load_data(str(paths["jsonl"]), split="test", flag="--dataset_train_split")
    with pytest.raises(DataError, match=r"has no split 'validation'; its splits are \['train', 'test'\]"):
        load_data(str(paths["saved_dict"]), split="validation")
    with pytest.raises(DataError, match="unknown file type"):
        (tmp_path / "data.txt").write_text("x")
        load_data(str(tmp_path / "data.txt"))


def test_eval_rows_keep_mixed_types(tmp_path):
    """Evaluation reads files without a schema: a column mixing numbers and text (benchmark copies) loads."""
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"problem": "a", "answer": 142}) + "\n" + json.dumps({"problem": "b", "answer": "x"}))
    assert [row["answer"] for row in load_rows(str(path))] == [142, "x"]


def test_prompts_are_built_one_way():
    data = Dataset.from_list(ROWS)
    built = add_prompt_column(data)
    assert built[0]["prompt"] == [{"role": "user", "content": "What is 0 + 0?"}]
    with_system = add_prompt_column(data, system_prompt="Be brief.")
    assert with_system[1]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1 + 1?"},
    ]
    assert add_prompt_column(data, system_prompt="igrpo")[0]["prompt"][0]["content"].startswith("You are a helpful")
    # an existing prompt column is used as it is; a system prompt goes first in chat prompts
    chat = add_prompt_column(built, system_prompt="S")
    assert chat[0]["prompt"][0] == {"role": "system", "content": "S"} and len(chat[0]["prompt"]) == 2
    text = Dataset.from_list([{"prompt": "plain", "solution": "1"}])
    assert add_prompt_column(text)[0]["prompt"] == "plain"
    with pytest.raises(DataError, match="plain text, which has no chat turns"):
        add_prompt_column(text, system_prompt="S")
    with pytest.raises(DataError, match=r"needs a 'prompt' column .* or a 'problem' column"):
        add_prompt_column(Dataset.from_list([{"question": "q"}]))
    assert build_chat_prompt([{"role": "user", "content": "hi"}], "S")[0]["role"] == "system"


@pytest.mark.slow
def test_pass_rate_tokenizes_prompts_exactly_as_the_trainer(tiny_model_dir, tmp_path):
    """The prompt ids pass-rate generates from are the ids TRL's GRPOTrainer generates from (chat template, the
    generation prompt, chat_template_kwargs), for the prompts built from a `problem` column."""
    from trl_igrpo import CurriculumGRPOConfig, CurriculumGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs

    data = add_prompt_column(Dataset.from_list(ROWS * 2), system_prompt="Be brief.")
    kwargs = {"enable_thinking": False}
    trainer = CurriculumGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=CurriculumGRPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=4,
            chat_template_kwargs=kwargs,
            **cpu_training_kwargs(),
        ),  # fmt: skip
        train_dataset=data,
    )
    prompts = [row["prompt"] for row in data.select(range(4))]
    trainer_ids, _, _ = trainer._tokenize_prompts(prompts)
    assert tokenize_prompts(trainer.processing_class, prompts, kwargs) == [list(ids) for ids in trainer_ids]
    texts = ["plain text prompt", "another"]
    assert tokenize_prompts(trainer.processing_class, texts) == [
        list(ids) for ids in trainer._tokenize_prompts(texts)[0]
    ]
