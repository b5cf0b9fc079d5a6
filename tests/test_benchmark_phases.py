"""The per-phase instrumentation of the step benchmarks (`benchmarks/_phases.py`, used by `benchmarks/step_profile.py`
and `benchmarks/gpu_check.py`): time is charged to the innermost open phase, peak memory to the phase that was
running, and the step-profile tables rank variants against the first one. No model is trained here; the GPU kit's
CPU dry run (`tests/test_gpu_check.py`) runs the instrumentation on real trainers."""

from __future__ import annotations

import pytest

from benchmarks import _phases
from benchmarks._phases import REST, PhaseProfiler, phase_record


class FakeClock:
    """perf_counter/process_time under the test's control (CPU runs at half the wall rate)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def process_time(self):
        return self.now / 2


class FakeProbe:
    """A memory probe whose level the test sets; the peak since the last reset is the highest level seen."""

    name = "fake"
    available = True

    def __init__(self):
        self.level = self.high = 0
        self.resets = 0

    def set(self, level):
        self.level = level
        self.high = max(self.high, level)

    def reset(self):
        self.high = self.level
        self.resets += 1

    def peak(self):
        return self.high


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_phases, "time", fake)
    return fake


def test_nested_phases_are_charged_exclusively_and_add_up_to_the_step(clock):
    profiler = PhaseProfiler()
    profiler.begin_step()
    clock.now += 1.0  # rest
    profiler.enter("generation")
    clock.now += 2.0
    profiler.enter("weight sync")  # TRL syncs inside _generate_single_turn
    clock.now += 0.5
    profiler.exit()
    clock.now += 3.0
    profiler.exit()
    clock.now += 0.25  # rest again
    record = profiler.end_step()
    assert record["phases"]["generation"] == [5.0, 2.5]
    assert record["phases"]["weight sync"] == [0.5, 0.25]
    assert record["phases"][REST] == [1.25, 0.625]
    assert record["wall"] == pytest.approx(sum(wall for wall, _ in record["phases"].values())) == 6.75
    assert record["cpu"] == 3.375


def test_peak_memory_goes_to_the_phase_that_was_running(clock):
    probe = FakeProbe()
    profiler = PhaseProfiler(probe)
    probe.set(100)  # set-up before the step
    profiler.begin_step()
    assert profiler.outside_peak == 100
    profiler.enter("generation")
    probe.set(400)  # the KV cache
    probe.set(150)
    profiler.enter("weight sync")
    probe.set(200)
    profiler.exit()
    profiler.exit()
    profiler.enter("loss forward")
    probe.set(300)  # activations
    profiler.exit()
    probe.set(350)  # backward
    record = profiler.end_step()
    # the sync's 200 does not hide generation's 400; the rest sees its own 350, not generation's 400
    assert record["peaks"] == {"generation": 400, "weight sync": 200, "loss forward": 300, REST: 350}
    assert probe.resets == 8  # read and reset at every boundary


def test_a_wrapped_method_opens_its_phase_counts_and_closes_it_on_errors(clock):
    profiler = PhaseProfiler()

    class Trainer:
        def generate(self, prompts):
            clock.now += 2.0
            if prompts is None:
                raise ValueError("boom")
            return [p * 2 for p in prompts]

    trainer = Trainer()
    profiler.wrap(trainer, "generate", lambda a, k: "generation", lambda phase, a, r: {"rows": len(r)})
    profiler.begin_step()
    assert trainer.generate([1, 2, 3]) == [2, 4, 6]
    with pytest.raises(ValueError, match="boom"):
        trainer.generate(None)
    assert profiler.stack == [REST]  # the failed call left its phase
    record = profiler.end_step()
    assert record["phases"]["generation"][0] == 4.0 and profiler.counts["rows"] == 3


def test_phase_record_takes_median_times_and_the_largest_peaks():
    steps = [
        {"phases": {"generation": [1.0, 1.0], REST: [2.0, 2.0]}, "peaks": {"generation": 10, REST: 30}},
        {"phases": {"generation": [3.0, 3.0], REST: [4.0, 4.0]}, "peaks": {"generation": 50, REST: 20}},
        {"phases": {"generation": [2.0, 2.0], REST: [9.0, 9.0]}, "peaks": {"generation": 40, REST: 25}},
    ]
    record = phase_record(steps, "peak GPU memory allocated")
    assert record["phase_time_s"]["generation"] == 2.0 and record["phase_time_s"][REST] == 4.0
    assert record["phase_time_s"]["loss forward"] == 0.0
    assert record["phase_peak_bytes"] == {"generation": 50, REST: 30} and record["peak_phase"] == "generation"
    assert phase_record(steps, None)["phase_peak_bytes"] == {} and phase_record(steps, None)["peak_phase"] is None


def test_the_rss_probe_reads_and_resets_this_process_high_water_mark():
    probe = _phases.RssProbe()
    if not probe.available:
        pytest.skip("/proc/self/clear_refs is not writable here")
    probe.reset()
    before = probe.peak()
    block = bytearray(64 * 2**20)  # touched: 64 MiB resident
    block[::4096] = b"x" * len(block[::4096])
    assert probe.peak() >= before + 60 * 2**20
    del block
    probe.reset()
    assert probe.peak() < before + 32 * 2**20  # the mark restarts from the current resident set


def _run(wall, cpu, peak, counts=None):
    steps = [
        {"wall": wall, "cpu": cpu, "phases": {"generation": [wall / 2, cpu / 2]}, "peaks": {"generation": peak},
         "counts": counts or {}}
    ]  # fmt: skip
    return {"steps": steps, "setup_s": 1.0, "peak_rss_mb": peak / 2**20, "load": [3.0, 4.0],
            "stage2_prompt_tokens": None, "block_size": 128, "prefix_caching": True}  # fmt: skip


def test_step_profile_tables_rank_variants_against_the_first():
    from benchmarks import step_profile

    options = step_profile.parse_args(["--engine", "vllm", "--drafts", "long", "--prompts", "16", "--steps", "2"])
    assert options.variants == [step_profile.GRPO_BASE, step_profile.IGRPO, step_profile.IGRPO_PREFETCH]
    runs = {
        step_profile.GRPO_BASE: [_run(2.0, 1.0, 100 * 2**20, {"prefill/final": 16 * 8 * 40, "weight syncs": 1})],
        step_profile.IGRPO: [_run(3.0, 1.5, 105 * 2**20, {"weight syncs": 1, "engine calls": 2})],
        step_profile.IGRPO_PREFETCH: [_run(2.2, 1.1, 110 * 2**20, {"weight syncs": 1, "engine calls": 1})],
    }
    summary = {16: {name: step_profile.summarize(r) for name, r in runs.items()}}
    text = step_profile.render(summary, options)
    assert "| 16 | iGRPO N=4 G=4 | 3.000 / 1.500 | 1.50x / **1.50x** / 1.50x | 105 (1.05x) | generation |" in text
    assert "| 16 | iGRPO N=4 G=4, prefetch | 2.200 / 1.100 | 1.10x / **1.10x** / 1.10x | 110 (1.10x) |" in text
    assert "| engine calls | 0 | 2 | 1 |" in text and "| weight syncs | 1 | 1 | 1 |" in text
    assert "block size 128, prefix caching on" in text and "load average 3.0-4.0" in text
    with pytest.raises(SystemExit):  # TRL's GRPOTrainer cannot sync vLLM on a CPU: refused before any run
        step_profile.build_trainer({"engine": "vllm", "method": "grpo", "drafts": "short", "prompts": 1,
                                    "tokens": 4, "steps": 2, "output_dir": "unused"})  # fmt: skip


def test_long_text_drafts_re_tokenize_one_to_one(tmp_path):
    import random

    from transformers import AutoTokenizer

    from benchmarks.step_profile import text_token_ids
    from trl_igrpo.testing import build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "model"))
    text_ids, other_ids = text_token_ids(tokenizer)
    assert sorted(text_ids + other_ids) == list(range(len(tokenizer))) and len(text_ids) > len(tokenizer) // 2
    assert not set(tokenizer.all_special_ids) & set(text_ids)
    rng = random.Random(0)

    def growth(pool):
        drafts = [[rng.choice(pool) for _ in range(64)] for _ in range(20)]
        texts = tokenizer.batch_decode(drafts, skip_special_tokens=True)
        return sum(len(tokenizer(text)["input_ids"]) for text in texts) / (20 * 64)

    assert growth(text_ids) < 1.1  # like a trained model's drafts
    assert growth(list(range(len(tokenizer)))) > 1.3  # the "long" regime's garbage grows on its way into q'
