"""Two real processes (gloo on CPU): iGRPO trains and both ranks end with identical weights.

Launched with ``accelerate launch --multi_gpu --num_processes 2`` and ``use_cpu=True`` (``--cpu --num_processes 2``
silently runs a single process, which would make this test meaningless).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from helpers import two_rank_results


def _worker(model_dir: str, out_dir: str) -> None:
    import torch
    from datasets import Dataset

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.demo.arithmetic import make_arithmetic_examples
    from trl_igrpo.testing import cpu_training_kwargs
    from trl_igrpo.utils.distributed import end_distributed_run

    def reward(completions, solution, **kwargs):
        texts = [c[0]["content"] for c in completions]
        return [float(len(t) % 5) + 0.1 * len(s) for t, s in zip(texts, solution)]

    # per-device 2, G=2: each rank holds one whole group; with a global batch of 4, groups never straddle ranks.
    args = IGRPOConfig(
        output_dir=out_dir, **cpu_training_kwargs(), per_device_train_batch_size=2, num_drafts=3,
        num_generations=2, max_completion_length=6, max_steps=2, learning_rate=1e-2, seed=0,
    )  # fmt: skip
    trainer = IGRPOTrainer(
        model=model_dir, reward_funcs=[reward], args=args,
        train_dataset=Dataset.from_list(make_arithmetic_examples(16, seed=2)),
    )  # fmt: skip
    assert trainer.accelerator.num_processes == int(os.environ.get("WORLD_SIZE", 1)) == 2
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    digest = hashlib.sha256()
    for name, param in sorted(trainer.model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float64).numpy().tobytes())
    changed = sum(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    rank = trainer.accelerator.process_index
    logs = [
        {k: v for k, v in e.items() if k.startswith("igrpo/")}
        for e in trainer.state.log_history
        if "igrpo/best_draft_reward_mean" in e
    ]
    Path(out_dir, f"rank{rank}.json").write_text(
        json.dumps({"digest": digest.hexdigest(), "changed": changed, "total": len(before), "logs": logs})
    )
    end_distributed_run(trainer.accelerator)  # without it a rank can abort or hang on exit (pytorch#190489)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_processes_train_to_identical_weights(tiny_model_dir, tmp_path):
    ranks = two_rank_results(__file__, tiny_model_dir, tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["changed"] == ranks[0]["total"]
    # Stage-1 metrics are computed on gathered rewards, so both ranks log the same values.
    assert ranks[0]["logs"] and ranks[0]["logs"] == ranks[1]["logs"]


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
