"""Throughput of math_accuracy_reward (worker processes) vs trl.rewards.accuracy_reward (serial), same 1,000 completions.

    python -m benchmarks.rewards            # prints a table and rewrites its section of docs/benchmarks.md

GRPO-shaped input: 125 problems x 8 completions, a mix of integers, fractions, square roots, intervals and sets, right
and wrong answers, all conversational (TRL's reward only accepts that form).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import machine_description, markdown_table, update_section  # noqa: E402

KINDS = [
    (lambda r: str(r.randint(-50, 200)), lambda g, ok: g if ok else str(int(g) + 1)),
    (lambda r: f"\\frac{{{r.randint(1, 9)}}}{{{r.randint(11, 19)}}}", lambda g, ok: g if ok else "\\frac{1}{2}"),
    (lambda r: f"{r.randint(2, 5)}\\sqrt{{{r.choice([2, 3, 5, 7])}}}", lambda g, ok: g if ok else "\\sqrt{11}"),
    (lambda r: f"({r.randint(0, 4)}, {r.randint(5, 9)}]", lambda g, ok: g if ok else "[0, 1]"),
    (lambda r: f"\\{{{r.randint(1, 4)}, {r.randint(5, 8)}\\}}", lambda g, ok: g if ok else "\\{0\\}"),
]


def make_batch(num_problems: int = 125, group: int = 8, seed: int = 0):
    rng = random.Random(seed)
    golds, completions = [], []
    for _ in range(num_problems):
        make_gold, make_answer = rng.choice(KINDS)
        gold = make_gold(rng)
        for _ in range(group):
            answer = make_answer(gold, rng.random() < 0.5)
            text = f"Let me think step by step about this problem. The result is therefore \\boxed{{{answer}}}."
            golds.append(gold)
            completions.append([{"role": "assistant", "content": text}])
    return golds, completions


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    import logging

    from trl.rewards import accuracy_reward

    from trl_igrpo.rewards import MathAccuracyReward

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    golds, completions = make_batch()
    ours = MathAccuracyReward()
    ours(completions[:4], golds[:4])  # start the worker processes outside the timed region
    trl_rewards, trl_seconds = timed(accuracy_reward, completions, golds)
    our_rewards, our_seconds = timed(ours, completions, golds)
    agree = sum(a == b for a, b in zip(trl_rewards, our_rewards)) / len(golds)
    n = len(golds)
    rows = [
        ["trl.rewards.accuracy_reward (serial)", f"{n / trl_seconds:.0f}", f"{trl_seconds:.2f}", "1.00x"],
        [
            f"trl_igrpo math_accuracy_reward ({ours.num_workers} workers)",
            f"{n / our_seconds:.0f}",
            f"{our_seconds:.2f}",
            f"{trl_seconds / our_seconds:.2f}x",
        ],
    ]
    table = markdown_table(["reward function", "completions/s", "seconds", "speed-up"], rows)
    print(table)
    print(f"agreement on the same 1,000 completions: {agree:.1%}")
    update_section(
        "rewards",
        "## Math reward throughput (`benchmarks/rewards.py`)\n\n"
        f"1,000 conversational completions (125 problems x 8; integers, fractions, roots, intervals, sets), one run, "
        f"{machine_description()}, {os.cpu_count()} worker processes max.\n\n"
        f"{table}\n\nThe two rewards agree on {agree:.1%} of the completions (ours also reads `<answer>` blocks and "
        "anchors bare gold answers; see `trl_igrpo/rewards/math.py`). Our speed-up comes from worker processes (one "
        "per core) plus a per-worker cache of parsed gold answers, which a GRPO batch repeats G times.",
    )
    ours.close()


if __name__ == "__main__":
    main()
