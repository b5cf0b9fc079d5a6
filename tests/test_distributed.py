"""`end_distributed_run`: the order of the end-of-run steps, which is what keeps gloo runs from aborting or hanging.

The two-process tests (tests/test_igrpo_distributed.py, tests/test_curriculum_ddp.py) call it for real at the end of
each rank; these tests pin the order and the single-process behaviour without launching processes.
"""

import pytest

from trl_igrpo import end_distributed_run
from trl_igrpo.utils.distributed import DEFAULT_SETTLE_SECONDS


class RecordingAccelerator:
    def __init__(self, num_processes, calls):
        self.num_processes = num_processes
        self.calls = calls

    def wait_for_everyone(self):
        self.calls.append("barrier")

    def end_training(self):
        self.calls.append("end_training")


@pytest.fixture
def calls(monkeypatch):
    recorded = []
    monkeypatch.setattr("trl_igrpo.utils.distributed.time.sleep", lambda seconds: recorded.append(("sleep", seconds)))
    return recorded


def test_multi_process_barrier_then_settle_then_destroy(calls):
    end_distributed_run(RecordingAccelerator(2, calls))
    assert calls == ["barrier", ("sleep", DEFAULT_SETTLE_SECONDS), "end_training"]
    assert DEFAULT_SETTLE_SECONDS > 0


def test_single_process_only_ends_training(calls):
    end_distributed_run(RecordingAccelerator(1, calls), settle_seconds=5.0)
    assert calls == ["end_training"]


def test_negative_settle_time_is_refused_before_anything_runs(calls):
    with pytest.raises(ValueError, match="settle_seconds must be >= 0"):
        end_distributed_run(RecordingAccelerator(2, calls), settle_seconds=-1)
    assert calls == []


def test_real_single_process_accelerator():
    import torch.distributed as dist
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    end_distributed_run(accelerator)
    assert not dist.is_initialized()
