"""The output of an evaluation: :class:`EvalResult`, and ``results.json``, ``results.md`` and ``samples.jsonl``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EvalResult", "format_markdown", "write_results"]


@dataclass
class EvalResult:
    """``results`` (what ``results.json`` holds) and ``samples`` (one record per generated sample)."""

    results: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _metrics_row(metrics: dict[str, Any], ks: Sequence[str]) -> list[str]:
    n = metrics["num_samples"]
    return [
        str(metrics["num_problems"]),
        *(_percent(metrics["pass@k"][k]) for k in ks),
        _percent(metrics[f"maj@{n}"]),
        f"{metrics['mean_length']:.1f}",
        _percent(metrics["unparseable_frac"]),
        _percent(metrics["truncated_frac"]),
    ]


def _nemo_skills_table(nemo: dict[str, Any]) -> str:
    rows = [
        f"| {k} | {_percent(nemo['pass@k'][k])} | {_percent(nemo['pass@1[k]'][k])} | "
        + (_percent(nemo["majority@k"][k]) if k in nemo["majority@k"] else "-")
        + " |"
        for k in nemo["pass@k"]
    ]
    return "\n".join(
        [
            "NeMo-Skills' definitions, same grades: pass@k = any of the first k samples correct; majority@k = most "
            "frequent (\\boxed{} string, correct) pair of the first k, sorted tie-break.",
            "",
            "| k | pass@k (first k) | pass@1[k] | majority@k |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def format_markdown(results: dict[str, Any], title: str | None = None) -> str:
    """The results as Markdown tables (percentages; lengths in tokens): overall, then one table per breakdown column,
    then the drafts of ``draft_refine`` mode."""
    metrics = results["metrics"]
    n = metrics["num_samples"]
    ks = list(metrics["pass@k"])
    headers = ["problems", *(f"pass@{k}" for k in ks), f"maj@{n}", "mean length", "unparseable %", "truncated %"]

    def table(first_header: str | None, rows: list[list[str]]) -> str:
        columns = ([first_header] if first_header else []) + headers
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])

    protocol = results.get("protocol", {})
    lines = [f"## {title}" if title else "## Evaluation", ""]
    if protocol:
        lines += [
            f"{protocol.get('mode', 'single')} pass, k = {n}, temperature {protocol.get('temperature')}, "
            f"top-p {protocol.get('top_p')}, max {protocol.get('max_new_tokens')} new tokens, reasoning "
            f"{protocol.get('reasoning') or 'unchanged'}; pass@1 is the mean over the k samples (percentages).",
            "",
        ]
    lines.append(table(None, [_metrics_row(metrics, ks)]))
    if "nemo_skills" in results:
        lines += ["", _nemo_skills_table(results["nemo_skills"])]
    for column, by_value in results.get("by_group", {}).items():
        lines += ["", f"### By {column}", "", table(column, [[v, *_metrics_row(m, ks)] for v, m in by_value.items()])]
    if "drafts" in results:
        lines += [
            "",
            "### Drafts (draft_refine mode: the first pass)",
            "",
            table(None, [_metrics_row(results["drafts"], ks)]),
            "",
            f"Refinement minus draft pass@1: {_percent(results['refinement_minus_draft_pass@1'])} points.",
        ]
    if results.get("skipped_problems"):
        lines += ["", f"{len(results['skipped_problems'])} problem(s) skipped for ungradeable gold answers."]
    return "\n".join(lines) + "\n"


def write_results(result: EvalResult, output_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``samples.jsonl`` into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": output_dir / "results.json",
        "markdown": output_dir / "results.md",
        "samples": output_dir / "samples.jsonl",
    }
    paths["results"].write_text(json.dumps(_finite(result.results), indent=2) + "\n")
    paths["markdown"].write_text(format_markdown(result.results, title))
    with paths["samples"].open("w", encoding="utf-8") as handle:
        for record in result.samples:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def _finite(value):
    """JSON without NaN/inf (not valid JSON): such floats become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
