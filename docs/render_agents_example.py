"""Write (or ``--check``) the rendered Stage-2 example of docs/agents.md from the code that produces it.

python docs/render_agents_example.py          # rewrite the block between the markers
python docs/render_agents_example.py --check  # exit 1 if the block is not current (tests/test_agents_docs.py)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PAGE = Path(__file__).parent / "agents.md"
START, END = "<!-- stage2-example:start -->", "<!-- stage2-example:end -->"


def example_block() -> str:
    from transformers import AutoTokenizer

    from trl_igrpo.demo.inventory import vocabulary_corpus
    from trl_igrpo.demo.inventory_warm_start import render_stage2_example
    from trl_igrpo.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as directory:  # the template is Qwen3's as TRL ships it; the weights are unused
        path = build_tiny_model(directory, architecture="qwen3", chat_template="qwen3", hidden_size=64, num_layers=1,
                                extra_corpus=vocabulary_corpus())  # fmt: skip
        parts = render_stage2_example(AutoTokenizer.from_pretrained(path))
    fence = "````"
    return (
        f"{START}\nThe selected draft, as a transcript (`draft` column of the Stage-2 rows):\n\n{fence}text\n"
        f"{parts['transcript']}\n{fence}\n\nThe Stage-2 prompt q', rendered by TRL's Qwen3 template (training variant, "
        f"as `GRPOTrainer` renders tool prompts) with the environment's tool schema:\n\n{fence}text\n"
        f"{parts['stage2_prompt']}{fence}\n\nA refinement (here with the same turns as the draft), as GRPO trains it (`tool_mask`):\n\n{fence}text\n"
        f"{parts['refinement']}{fence}\n{END}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args(argv)
    page = PAGE.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"{PAGE} has no {START} ... {END} block")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    updated = head + example_block() + tail
    if options.check:
        if updated != page:
            print(f"{PAGE} is out of date: run python docs/render_agents_example.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
