r"""One loader for every command: local files, saved datasets and Hub ids.

Every ``trl-igrpo`` command that takes a dataset (``igrpo``, ``grpo``, ``rpo``, ``pass-rate``, ``eval``) reads it
through this module, so the same ``--dataset_name`` works everywhere:

- a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file (a file is one split);
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (what ``trl-igrpo pass-rate`` writes);
- any other local folder of data files that ``datasets.load_dataset`` reads;
- a Hugging Face Hub dataset id.

A name that looks like a local path (:func:`~trl_igrpo.utils.model_path.looks_like_local_path`) or ends in a data-file
suffix but does not exist is an error naming the path, not a Hub lookup.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DataError", "load_data", "load_rows"]

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


class DataError(ValueError):
    """Data that cannot be used as given (the message names the problem and the fix)."""


# ----------------------------------------------------------------------------------------------------------------------
# Where the data is


def _local_path(dataset_name: str) -> Path | None:
    """The local file or folder `dataset_name` names, None for a Hub id; raise for a local path that does not exist."""
    from ..utils.model_path import looks_like_local_path

    path = Path(os.path.expanduser(dataset_name))
    if path.exists():
        return path
    if looks_like_local_path(dataset_name) or dataset_name.endswith(LOCAL_SUFFIXES):
        raise DataError(
            f"dataset {dataset_name!r} does not exist (looked for {str(path.absolute())!r}); pass an existing "
            ".jsonl/.json/.csv/.parquet file, a dataset folder (save_to_disk output, e.g. from `trl-igrpo "
            "pass-rate`), or a Hub dataset id such as 'HuggingFaceH4/MATH-500'."
        )
    return None


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in _SAVED_DATASET_FILES)


def _pick_split(data, split: str | None, name: str, flag: str):
    """One split of a ``DatasetDict`` (a ``Dataset`` is returned as is); `split=None` is fine when there is one."""
    if not hasattr(data, "keys"):
        return data
    splits = list(data.keys())
    if split is None:
        if len(splits) != 1:
            raise DataError(f"{name} has splits {splits}; choose one with {flag}.")
        split = splits[0]
    if split not in data:
        raise DataError(f"{name} has no split {split!r}; its splits are {splits} ({flag}).")
    return data[split]


def _hub_error(dataset_name: str, dataset_config: str | None, error: Exception) -> DataError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    hint = (
        "HF_HUB_OFFLINE is set, so only datasets already in the local cache load; "
        if offline
        else "the Hub may be unreachable from here; "
    )
    return DataError(
        f"could not load the Hub dataset {dataset_name!r}"
        f"{f' (config {dataset_config!r})' if dataset_config else ''}: {type(error).__name__}: {error}\n"
        f"{hint}download it where the Hub is reachable (datasets.load_dataset(...).to_json('data.jsonl')) and pass "
        "the file with --dataset_name."
    )


# ----------------------------------------------------------------------------------------------------------------------
# Training data: a datasets.Dataset


def load_data(
    dataset_name: str, dataset_config: str | None = None, split: str | None = "train", flag: str = "--split"
):
    """One split of a local file, a saved dataset folder, another local data folder, or a Hub dataset, as a
    ``datasets.Dataset``.

    A local file is a single split: asking it for any split other than ``train`` raises rather than being ignored.
    `flag` is the option that sets `split`, for the error messages.
    """
    import datasets

    path = _local_path(dataset_name)
    if path is not None and path.is_file():
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}.")
        if split not in (None, "train"):
            raise DataError(
                f"{path} is a single file, so it has one split; {flag} {split!r} does not apply (leave it at 'train', "
                "or pass the file of that split)."
            )
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path is not None and _is_saved_dataset(path):
        return _pick_split(datasets.load_from_disk(str(path)), split, str(path), flag)
    if path is not None:
        return _pick_split(datasets.load_dataset(str(path), dataset_config), split, str(path), flag)
    try:
        data = datasets.load_dataset(dataset_name, dataset_config)
    except Exception as error:
        raise _hub_error(dataset_name, dataset_config, error) from None
    return _pick_split(data, split, dataset_name, flag)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation data: plain rows (a column may mix numbers and text, as benchmark copies do)


def load_rows(dataset_name: str, dataset_config: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a local JSONL/JSON/Parquet/CSV file, a local dataset folder, or a Hub dataset (``split``), as dicts.

    Files are read without a schema, so a column holding ``142`` in one row and ``"\\frac{1}{4}"`` in the next (as
    benchmark copies do) loads; the split of a file is ignored (evaluation presets name the Hub split).
    """
    path = _local_path(dataset_name)
    if path is not None and path.is_file():
        return _read_file(path)
    return load_data(dataset_name, dataset_config, split, flag="--dataset_split").to_list()


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}: line {number} is not valid JSON ({error.msg}).") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object.")
                rows.append(row)
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}).") from None
        if isinstance(data, dict):  # {"data": [...]} or column-oriented {"problem": [...], "answer": [...]}
            lists = {k: v for k, v in data.items() if isinstance(v, list)}
            if len(lists) == 1:
                data = next(iter(lists.values()))
            elif lists and len({len(v) for v in lists.values()}) == 1:
                data = [dict(zip(lists, values)) for values in zip(*lists.values())]
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise DataError(f"{path}: expected a list of objects (one per problem); use JSONL for one per line.")
        return data
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    raise DataError(f"{path}: unknown file type {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}.")
