"""Pass-rate estimation: column written from real generations of the tiny model, resume after a crash, filtering."""

import json

import pytest
from datasets import Dataset, load_from_disk

from trl_igrpo.curriculum import compute_pass_rates, filter_by_pass_rate
from trl_igrpo.curriculum.pass_rate import main, pass_rate_from_rewards, read_shard

CALLS = []


def prompt_keyed_reward(prompts, completions, target, **kwargs):
    """Passes the first ``target`` of every prompt's 8 samples, so the expected pass rate is target / 8.

    It also checks that real completions arrived (strings from the model) and records which prompts it scored."""
    assert all(isinstance(c, str) for c in completions)
    CALLS.extend(prompts[::8])
    seen = {}
    out = []
    for prompt, t in zip(prompts, target):
        seen[prompt] = seen.get(prompt, 0) + 1
        out.append(1.0 if seen[prompt] <= t else 0.0)
    return out


def crash_after_first_batch(prompts, completions, target, **kwargs):
    crash_after_first_batch.calls += 1
    if crash_after_first_batch.calls > 1:
        raise KeyboardInterrupt("simulated crash")
    return prompt_keyed_reward(prompts, completions, target)


def _dataset(n=6):
    return Dataset.from_dict(
        {"prompt": [f"What is {i} + {i}?" for i in range(n)], "target": [i % 8 for i in range(n)]}
    )


def test_pass_rate_from_rewards_counts_none_as_failure():
    assert pass_rate_from_rewards([1.0, None, 0.0, float("nan")], 1.0) == (1, 0.25)
    assert pass_rate_from_rewards([0.6, 0.4], 0.5) == (1, 0.5)


def test_filter_by_pass_rate_paper_default_and_range():
    data = Dataset.from_dict({"pass_rate": [k / 8 for k in range(9)]})
    assert filter_by_pass_rate(data)["pass_rate"] == [k / 8 for k in range(6)]  # drop >= 0.75
    assert filter_by_pass_rate(data, 0.125, 0.75, max_inclusive=True)["pass_rate"] == [k / 8 for k in range(1, 7)]
    with pytest.raises(ValueError, match="'difficulty'"):
        filter_by_pass_rate(data, column="difficulty")


def test_a_custom_sampler_is_scored_with_trl_arguments_and_must_return_k_per_prompt():
    """generate_fn replaces the model; its k completions per prompt reach the reward as TRL passes them."""
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": "q0"}], [{"role": "user", "content": "q1"}]],
                              "target": [1, 3]})  # fmt: skip

    def reward(prompts, completions, target, completion_ids, trainer_state, **kwargs):
        assert completions[0] == [{"role": "assistant", "content": "a0"}] and completion_ids is None
        return [1.0 if int(c[0]["content"][1:]) < t else 0.0 for c, t in zip(completions, target)]

    def sampler(prompts, k):
        return [[f"a{i}" for i in range(k)] for _ in prompts]

    rates = compute_pass_rates(data, None, reward_funcs=reward, num_samples=4, generate_fn=sampler)
    assert rates["pass_rate"] == [0.25, 0.75]
    with pytest.raises(ValueError, match="num_samples=4 completions per prompt"):
        compute_pass_rates(data, None, reward_funcs=reward, num_samples=4, generate_fn=lambda p, k: [["a0"]] * len(p))


def test_compute_pass_rates_on_tiny_model_resumes_after_crash(tiny_model_dir, tmp_path):
    shard = tmp_path / "rates.jsonl"
    data = _dataset(6)
    crash_after_first_batch.calls = 0
    with pytest.raises(KeyboardInterrupt):
        compute_pass_rates(data, tiny_model_dir, reward_funcs=crash_after_first_batch, num_samples=8,
                           max_new_tokens=4, batch_size=2, shard_path=shard)  # fmt: skip
    finished = read_shard(shard)
    assert sorted(finished) == [0, 1]
    with shard.open("a") as handle:
        handle.write('{"index": 2, "pass_ra')  # a line cut off by the crash
    CALLS.clear()
    scored = compute_pass_rates(data, tiny_model_dir, reward_funcs=prompt_keyed_reward, num_samples=8,
                                max_new_tokens=4, batch_size=2, shard_path=shard)  # fmt: skip
    assert CALLS == data["prompt"][2:]  # finished rows were not recomputed; the torn line was
    assert scored["pass_rate"] == [t / 8 for t in data["target"]]
    assert read_shard(shard)[5]["num_passed"] == 5


def test_compute_pass_rates_samples_the_full_distribution_like_the_trainer(tiny_model_dir):
    """TRL samples training completions with top_k=0; transformers' generate defaults to top_k=50, which would cap a
    prompt's next token to 50 candidates. At a very high temperature (near-uniform over ~1,000 tokens) 300 one-token
    samples of one prompt show far more than 50 distinct tokens only when no top-k cut applies."""
    seen = []

    def record(completions, **kwargs):
        seen.extend(completions)
        return [0.0] * len(completions)

    compute_pass_rates(_dataset(1), tiny_model_dir, reward_funcs=record, num_samples=300, max_new_tokens=1,
                       temperature=50.0, batch_size=1)  # fmt: skip
    assert len(seen) == 300
    assert len(set(seen)) > 80


def test_cli_writes_column_resumes_and_filters(tiny_model_dir, tmp_path):
    source = tmp_path / "prompts.jsonl"
    _dataset(8).to_json(str(source))
    output, kept = tmp_path / "scored", tmp_path / "kept"
    shard = tmp_path / "scored.pass_rate.jsonl"
    # Pretend an earlier run finished rows 0 and 7 with different values: the CLI must keep them, not recompute.
    shard.write_text("".join(json.dumps({"index": i, "pass_rate": 0.875, "num_passed": 7, "num_samples": 8}) + "\n"
                             for i in (0, 7)))  # fmt: skip
    CALLS.clear()
    argv = ["--model", str(tiny_model_dir), "--dataset", str(source), "--output", str(output), "--filtered-output",
            str(kept), "--reward-funcs", f"{__name__}.prompt_keyed_reward", "--max-new-tokens", "4", "--batch-size", "3",
            "--min-pass-rate", "0.125"]  # fmt: skip
    main(argv)
    assert len(CALLS) == 6 and "What is 0 + 0?" not in CALLS and "What is 7 + 7?" not in CALLS
    scored = load_from_disk(str(output))
    assert scored["pass_rate"] == [0.875, 1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 0.875]
    assert load_from_disk(str(kept))["pass_rate"] == [1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8]  # [0.125, 0.75)
    with pytest.raises(ValueError, match="num_samples=8"):
        compute_pass_rates(_dataset(8), tiny_model_dir, reward_funcs=prompt_keyed_reward, num_samples=4,
                           shard_path=shard)  # fmt: skip
