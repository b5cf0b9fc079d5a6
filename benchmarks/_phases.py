"""Where a GRPO/iGRPO training step spends its time and memory: exclusive wall/CPU seconds and peak memory per phase.

Benchmark-side instrumentation only (nothing in ``trl_igrpo`` changes): :func:`instrument` wraps the trainer's own
methods, and each wrapped call opens a phase. Phases nest (TRL syncs the vLLM weights inside
``_generate_single_turn``), so time is *exclusive*: at every phase boundary the seconds since the previous boundary go
to the innermost open phase, and the step's remainder (backward, optimizer, gathers, iGRPO's draft selection and prompt
building outside the tokenizer) to ``backward + optimizer + rest``.

Peak memory per phase uses the same boundaries: a probe's high-water mark is read and reset at each one, and the
reading goes to the phase that was running.

- :class:`RssProbe` (CPU): the kernel's resident-set high-water mark, ``VmHWM`` in ``/proc/self/status``, reset by
  writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0). Exact, but RSS includes memory the allocator keeps after
  a free, so a phase after the peak can read the same value; the phase where the step's peak is first reached is the
  one that needed it.
- :class:`CudaProbe` (GPU): ``torch.cuda.max_memory_allocated`` reset by ``torch.cuda.reset_peak_memory_stats``:
  tensor bytes, not the allocator's cache, so it shows which phase's tensors set the peak.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

#: Phases in step order; ``REST`` collects what no wrapped method covers.
REST = "backward + optimizer + rest"
PHASES = (
    "Stage-1 generation",
    "Stage-1 reward",
    "weight sync",
    "generation",
    "reward",
    "prompt building",
    "old/ref log-probs (no grad)",
    "loss forward",
    REST,
)


class RssProbe:
    """Peak resident set size (bytes) since the last reset, from the kernel's per-process high-water mark."""

    name = "peak RSS"

    def __init__(self):
        self.available = True
        try:
            self.reset()
        except OSError:  # no /proc/self/clear_refs (not Linux, or a restricted container): whole-process peak only
            self.available = False

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")

    def peak(self) -> int:
        with open("/proc/self/status") as handle:
            match = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
        return int(match.group(1)) * 1024 if match else 0


class CudaProbe:
    """Peak bytes allocated by PyTorch tensors on the current CUDA device since the last reset."""

    name = "peak GPU memory allocated"
    available = True

    def __init__(self):
        import torch

        self._torch = torch

    def reset(self) -> None:
        self._torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        return int(self._torch.cuda.max_memory_allocated())


class PhaseProfiler:
    """Exclusive wall/CPU seconds, peak memory and token counts per phase, for the current optimizer step.

    Args:
        probe: an :class:`RssProbe`, a :class:`CudaProbe` or None (no memory figures).
        synchronize: called at every boundary before reading the clock (``torch.cuda.synchronize`` on a GPU, so a
            phase is charged for the kernels it launched).
    """

    def __init__(self, probe=None, synchronize: Callable[[], None] | None = None):
        self.probe = probe if probe is not None and probe.available else None
        self.synchronize = synchronize
        self.stack: list[str] = []
        self.times: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.peaks: dict[str, int] = {}
        self.counts: dict[str, float] = defaultdict(float)
        self._wall = self._cpu = 0.0
        self._step_start = (0.0, 0.0)
        self.outside_peak = 0  # peak memory between steps (trainer set-up, optimizer creation, logging)

    def _boundary(self) -> None:
        if self.synchronize is not None:
            self.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        if self.stack:
            times = self.times[self.stack[-1]]
            times[0] += wall - self._wall
            times[1] += cpu - self._cpu
            if self.probe is not None:
                top = self.stack[-1]
                self.peaks[top] = max(self.peaks.get(top, 0), self.probe.peak())
        elif self.probe is not None:
            self.outside_peak = max(self.outside_peak, self.probe.peak())
        if self.probe is not None:
            self.probe.reset()
        self._wall, self._cpu = wall, cpu

    def enter(self, phase: str) -> None:
        self._boundary()
        self.stack.append(phase)

    def exit(self) -> None:
        self._boundary()
        self.stack.pop()

    def begin_step(self) -> None:
        self.times.clear()
        self.peaks.clear()
        self.stack = []
        self._boundary()
        self.stack = [REST]
        self._step_start = (self._wall, self._cpu)

    def end_step(self) -> dict:
        """This step's record: ``wall``, ``cpu``, ``phases`` {phase: [wall, cpu]}, ``peaks`` {phase: bytes}."""
        self._boundary()
        self.stack = []
        return {
            "wall": self._wall - self._step_start[0],
            "cpu": self._cpu - self._step_start[1],
            "phases": {name: list(values) for name, values in self.times.items()},
            "peaks": dict(self.peaks),
        }

    def wrap(self, obj, name: str, phase_of: Callable | None, count: Callable | None = None) -> None:
        """Replace ``obj.name`` by a version that runs inside the phase ``phase_of(args, kwargs)`` (None: no phase)
        and adds ``count(phase, args, result)`` (a dict) to :attr:`counts`."""
        original = getattr(obj, name)

        def wrapped(*args, **kwargs):
            phase = phase_of(args, kwargs) if phase_of is not None else None
            if phase is not None:
                self.enter(phase)
            try:
                result = original(*args, **kwargs)
            finally:
                if phase is not None:
                    self.exit()
            if count is not None:
                for key, value in count(phase, args, result).items():
                    self.counts[key] += value
            return result

        setattr(obj, name, wrapped)


def instrument(trainer, profiler: PhaseProfiler, igrpo: bool) -> None:
    """Wrap ``trainer``'s generation, reward, tokenization, log-prob and weight-sync methods into phases, and count
    tokens: ``prefill/stage1`` and ``decoded/stage1`` (drafts), ``prefill/final`` and ``decoded/final`` (GRPO's
    completions, iGRPO's refinements), ``trained`` (completion tokens in the loss), ``weight syncs``."""
    import torch

    def in_stage1() -> bool:  # iGRPO generates drafts under the max_draft_length budget
        return igrpo and trainer._max_new_tokens_field == "max_draft_length"

    def generation_phase(args, kwargs):
        return "Stage-1 generation" if in_stage1() else "generation"

    def reward_phase(args, kwargs):
        return "reward" if not igrpo or trainer._capturing_rollout_rewards else "Stage-1 reward"

    def count_generation(phase, args, result):
        prompt_ids, completion_ids = args[0], result[0]
        stage = "stage1" if phase.startswith("Stage-1") else "final"
        counts = {
            f"prefill/{stage}": sum(len(p) for p in prompt_ids),
            f"decoded/{stage}": sum(len(c) for c in completion_ids),
        }
        riders = getattr(getattr(trainer, "draft_source", None), "ride_along", None) if igrpo else None
        if riders is not None and riders.get("completion_ids") is not None:  # prefetch: next batch's drafts rode along
            counts["prefill/stage1"] = sum(len(p) for p in riders["prompt_ids"])
            counts["decoded/stage1"] = sum(len(c) for c in riders["completion_ids"])
        return counts

    def count_loss(phase, args, result):
        return {"trained": int(args[1]["completion_mask"].sum())}

    profiler.wrap(trainer, "_generate_single_turn", generation_phase, count_generation)
    profiler.wrap(trainer, "_calculate_rewards", reward_phase)
    profiler.wrap(trainer, "_tokenize_prompts", lambda a, k: "prompt building")
    profiler.wrap(
        trainer,
        "_get_per_token_logps_and_entropies",
        lambda a, k: "loss forward" if torch.is_grad_enabled() else "old/ref log-probs (no grad)",
    )
    profiler.wrap(trainer, "_compute_loss", None, count_loss)
    generation = getattr(trainer, "vllm_generation", None)
    if generation is not None:
        profiler.wrap(generation, "sync_weights", lambda a, k: "weight sync", lambda *_: {"weight syncs": 1})


def step_callback(profiler: PhaseProfiler, steps: list[dict]):
    """A ``TrainerCallback`` that opens the profiler's step at ``on_step_begin`` and appends its record to ``steps``
    (with the step's token counts) at ``on_step_end``."""
    from transformers import TrainerCallback

    class PhaseStepCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            profiler.counts.clear()
            profiler.begin_step()

        def on_step_end(self, args, state, control, **kwargs):
            record = profiler.end_step()
            record["counts"] = dict(profiler.counts)
            steps.append(record)

    return PhaseStepCallback()


def phase_record(steps: list[dict], memory: str | None) -> dict:
    """A run's per-phase summary over its measured ``steps``: median seconds per phase, the largest peak per phase
    (bytes) and the phase that holds the run's peak; ``memory`` names what the peaks measure (None: no peaks)."""
    times = {phase: statistics.median(s["phases"].get(phase, [0.0, 0.0])[0] for s in steps) for phase in PHASES}
    peaks = {p: max(s["peaks"].get(p, 0) for s in steps) for p in PHASES if any(p in s["peaks"] for s in steps)}
    return {
        "phase_time_s": times if steps else {},
        "phase_peak_bytes": peaks if memory else {},
        "peak_phase": max(peaks, key=peaks.__getitem__) if peaks and memory else None,
        "phase_memory": memory,
    }
