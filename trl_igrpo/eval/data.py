r"""Benchmark data for ``trl-igrpo eval``: loading local files or Hub datasets, column presets, gold answers, prompts.

A benchmark is rows with a problem and a gold answer. Where they live differs between copies of the same benchmark,
so :data:`PRESETS` records the usual layouts of the iGRPO paper's benchmarks (Table 1) on the Hugging Face Hub; every
field can be overridden from the command line (a local copy with the same columns: ``--preset math500
--dataset_name ./math500.jsonl``).

Gold answers come in three formats (``--answer_format``):

- ``plain``: the column holds the answer itself (``"\frac{1}{4}"``, ``"204"``, ``142.0``);
- ``boxed``: the column holds a worked solution; the answer is its last ``\boxed{}`` (MATH's ``solution``);
- ``gsm8k``: the column holds GSM8K's rationale ending in ``#### 72``; the answer is the text after the last
  ``####`` with thousands separators removed.

Every failure is reported before any generation: a missing file, a column that is not there (with the columns that
are), a row whose gold answer cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..data import DataError, build_chat_prompt, is_conversational_prompt, load_rows
from .metrics import last_boxed_content

__all__ = [
    "ANSWER_FORMATS",
    "DEFAULT_PROMPT_TEMPLATE",
    "PRESETS",
    "BenchmarkPreset",
    "BenchmarkProblem",
    "DataError",
    "build_prompt",
    "gold_answer",
    "load_problems",
    "load_rows",
    "resolve_columns",
]

ANSWER_FORMATS = ("plain", "boxed", "gsm8k")

#: The problem as the user message, exactly what ``trl-igrpo igrpo`` trains on for a ``problem`` column. For base
#: models that need an output instruction, pass e.g. ``--prompt_template "{problem}\n\nPut the final answer inside
#: \boxed{}."``.
DEFAULT_PROMPT_TEMPLATE = "{problem}"


@dataclass(frozen=True)
class BenchmarkPreset:
    """The usual location and column layout of a benchmark; ``trl-igrpo eval --preset NAME`` fills these flags."""

    dataset_name: str
    split: str
    problem_column: str
    answer_column: str
    answer_format: str = "plain"
    num_samples: int = 8
    dataset_config: str | None = None
    group_columns: tuple[str, ...] = ()
    description: str = ""


#: The iGRPO paper's evaluation suite (Table 1) with the sample counts of its protocol: 64 samples per problem on
#: AIME, 8 elsewhere. Hub copies are common community ones (the paper does not name its copies); check that a copy's
#: columns match, or override ``--problem_column`` / ``--answer_column``.
PRESETS: dict[str, BenchmarkPreset] = {
    "math500": BenchmarkPreset(
        "HuggingFaceH4/MATH-500", "test", "problem", "answer", group_columns=("subject", "level"),
        description="MATH-500 (500 problems; subject and level breakdown)",
    ),
    "aime24": BenchmarkPreset(
        "HuggingFaceH4/aime_2024", "train", "problem", "answer", num_samples=64,
        description="AIME 2024 I+II (30 problems)",
    ),
    "aime25": BenchmarkPreset(
        "math-ai/aime25", "test", "problem", "answer", num_samples=64, description="AIME 2025 I+II (30 problems)"
    ),
    "amc23": BenchmarkPreset(
        "math-ai/amc23", "test", "question", "answer", description="AMC 2023 (40 problems; numeric answers)"
    ),
    "gsm8k": BenchmarkPreset(
        "openai/gsm8k", "test", "question", "answer", answer_format="gsm8k", dataset_config="main",
        description="GSM8K test (1,319 problems; '#### answer' format)",
    ),
    "minerva": BenchmarkPreset(
        "math-ai/minervamath", "test", "question", "answer", description="Minerva Math (272 problems)"
    ),
}  # fmt: skip
PRESETS["amc"] = PRESETS["amc23"]


@dataclass(frozen=True)
class BenchmarkProblem:
    """One problem: its row index in the source, the problem (text or chat messages), the gold answer as a string,
    and the values of the breakdown columns."""

    index: int
    problem: str | list[dict[str, Any]]
    answer: str
    groups: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------------
# Loading rows: the package's one loader (trl_igrpo.data), shared with the training commands and pass-rate.


# ----------------------------------------------------------------------------------------------------------------------
# Columns and gold answers


def resolve_columns(
    column_names: Sequence[str], problem_column: str, answer_column: str, answer_format: str | None
) -> tuple[str, str, str]:
    """``(problem_column, answer_column, answer_format)`` checked against the data's columns.

    ``answer_format=None`` means automatic: ``boxed`` for a column named ``solution``, else ``plain``. When the
    default ``answer`` column is missing and a ``solution`` column exists, the boxed answer of ``solution`` is used.
    Raises :class:`DataError` naming the missing column, the columns that exist and the flag to set.
    """
    columns = list(column_names)
    if problem_column not in columns:
        raise DataError(
            f"no problem column {problem_column!r}; the data has columns {columns}. Set --problem_column "
            "(or a --preset whose layout matches)."
        )
    if answer_column not in columns:
        if answer_column == "answer" and "solution" in columns and answer_format in (None, "boxed"):
            answer_column, answer_format = "solution", "boxed"
        else:
            raise DataError(
                f"no answer column {answer_column!r}; the data has columns {columns}. Set --answer_column "
                "(a worked solution with a final \\boxed{} answer works too: --answer_format boxed)."
            )
    if answer_format is None:
        answer_format = "boxed" if answer_column == "solution" else "plain"
    if answer_format not in ANSWER_FORMATS:
        raise DataError(f"unknown --answer_format {answer_format!r}; use one of {ANSWER_FORMATS}.")
    return problem_column, answer_column, answer_format


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def gold_answer(value: Any, answer_format: str) -> str | None:
    r"""The gold answer string of one row, or ``None`` when it cannot be read (empty, no ``\boxed{}``, no ``####``).

    Integral floats print as integers (``142.0`` -> ``"142"``), as AMC copies store numeric answers as floats.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value:  # NaN: a missing cell in Parquet/pandas
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return None
    if answer_format == "boxed":
        answer = last_boxed_content(value)
    elif answer_format == "gsm8k":
        answer = value.rsplit("####", 1)[1] if "####" in value else None
        answer = _THOUSANDS.sub("", answer).strip() if answer is not None else None
    elif answer_format == "plain":
        answer = value.strip()
    else:
        raise DataError(f"unknown answer format {answer_format!r}; use one of {ANSWER_FORMATS}.")
    return answer or None


def load_problems(
    dataset_name: str,
    dataset_config: str | None = None,
    split: str | None = None,
    problem_column: str = "problem",
    answer_column: str = "answer",
    answer_format: str | None = None,
    group_columns: Sequence[str] | None = None,
    limit: int | None = None,
) -> tuple[list[BenchmarkProblem], dict[str, Any]]:
    """Load a benchmark as :class:`BenchmarkProblem` rows, plus a description of what was read.

    ``group_columns=None`` picks the usual breakdown columns present in the data (``subject``, ``level``, ``type``);
    named columns must exist. A problem cell may hold text or a list of chat messages (TRL's conversational
    ``prompt`` format), which is then used as the conversation as is.

    Raises :class:`DataError` for missing columns, empty data, empty problems and gold answers that cannot be read
    (listing the first offending rows).
    """
    rows = load_rows(dataset_name, dataset_config, split)
    if not rows:
        raise DataError(f"{dataset_name} has no rows.")
    columns = list(rows[0].keys())
    problem_column, answer_column, answer_format = resolve_columns(
        columns, problem_column, answer_column, answer_format
    )
    if group_columns is None:
        group_columns = [c for c in ("subject", "level", "type") if c in columns]
    missing = [c for c in group_columns if c not in columns]
    if missing:
        raise DataError(f"no breakdown column(s) {missing}; the data has columns {columns} (--group_columns).")
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be >= 1, got {limit}.")
        rows = rows[:limit]
    problems, bad_gold, empty = [], [], []
    for index, row in enumerate(rows):
        problem = row.get(problem_column)
        if not (is_conversational_prompt(problem) or (isinstance(problem, str) and problem.strip())):
            empty.append(index)
            continue
        answer = gold_answer(row.get(answer_column), answer_format)
        if answer is None:
            bad_gold.append((index, row.get(answer_column)))
            continue
        problems.append(BenchmarkProblem(index, cast(Any, problem), answer, {c: row.get(c) for c in group_columns}))
    if empty:
        raise DataError(
            f"{len(empty)} row(s) have an empty or non-text {problem_column!r} (first rows: {empty[:5]}); fix the data "
            "or choose another --problem_column."
        )
    if bad_gold:
        shown = ", ".join(f"row {i}: {str(v)[:60]!r}" for i, v in bad_gold[:5])
        raise DataError(
            f"{len(bad_gold)} gold answer(s) in {answer_column!r} cannot be read as {answer_format!r} ({shown}); set "
            f"--answer_format (one of {ANSWER_FORMATS}) or --answer_column."
        )
    info = {
        "dataset_name": dataset_name,
        "dataset_config": dataset_config,
        "split": split,
        "problem_column": problem_column,
        "answer_column": answer_column,
        "answer_format": answer_format,
        "group_columns": list(group_columns),
        "num_rows": len(rows),
    }
    return problems, info


# ----------------------------------------------------------------------------------------------------------------------
# Prompts


def build_prompt(
    problem: str | list[dict[str, Any]],
    template: str = DEFAULT_PROMPT_TEMPLATE,
    system_prompt: str | None = None,
    conversational: bool = True,
) -> str | list[dict[str, Any]]:
    """The model input for one problem: ``template`` with ``{problem}`` filled in, as one user message (plus a system
    message if ``system_prompt``), or as plain text when ``conversational=False`` (models without a chat template).

    A problem that already is a list of chat messages is returned as is (with ``system_prompt`` prepended when it
    has no system message).
    """
    if is_conversational_prompt(problem) or conversational:
        return build_chat_prompt(problem, system_prompt, template)  # the trainers' builder (trl_igrpo.data)
    if "{problem}" not in template:
        raise DataError(f"--prompt_template must contain '{{problem}}', got {template!r}.")
    text = template.replace("{problem}", str(problem))
    return f"{system_prompt}\n\n{text}" if system_prompt else text
