"""Two real processes (gloo on CPU): progressive batching + dynamic sampling stay in lock-step across ranks.

Run as a test (it launches itself with ``accelerate launch --multi_gpu --num_processes 2`` and ``use_cpu=True``; note
``--cpu --num_processes 2`` would silently run one process).
"""

import json
import os
import sys
from pathlib import Path

import pytest
from helpers import two_rank_results


def _worker(model_dir: str, out_dir: str) -> None:
    from datasets import Dataset

    from trl_igrpo.grpo import CurriculumGRPOConfig, CurriculumGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs
    from trl_igrpo.utils.distributed import end_distributed_run

    calls = []

    def reward(prompts, completions, trainer_state=None, **kwargs):
        calls.append([trainer_state.global_step, list(prompts)])
        return [1.0 if p.startswith("const") else float(i % 2) for i, p in enumerate(prompts)]

    class Recording(CurriculumGRPOTrainer):
        def _compute_loss(self, model, inputs):
            for ids, p_mask, c_mask in zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_mask"]):
                if c_mask.sum() > 0:
                    loss_prompts.append(self.processing_class.decode(ids[p_mask.bool()], skip_special_tokens=True))
            return super()._compute_loss(model, inputs)

    loss_prompts = []
    prompts = [f"const {i}" for i in range(8)] + [f"vary {i}" for i in range(16)]
    rates = [0.625] * 8 + [0.125 * (i % 4) for i in range(16)]
    config = CurriculumGRPOConfig(
        output_dir=out_dir, **cpu_training_kwargs(), per_device_train_batch_size=4,
        num_generations=2, max_completion_length=6, max_steps=3, seed=0, progressive_batching=True,
        dynamic_sampling=True, dynamic_sampling_max_extra_rounds=8,
    )  # fmt: skip
    trainer = Recording(
        model=model_dir,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts, "pass_rate": rates}),
    )
    assert trainer.accelerator.num_processes == int(os.environ.get("WORLD_SIZE", 1)) == 2
    trainer.train()
    logs = [e for e in trainer.state.log_history if "dynamic_sampling/rounds" in e]
    rank = trainer.accelerator.process_index
    Path(out_dir, f"rank{rank}.json").write_text(
        json.dumps({"calls": calls, "loss_prompts": loss_prompts, "logs": logs})
    )
    end_distributed_run(trainer.accelerator)  # without it a rank can abort or hang on exit (pytorch#190489)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_disjoint_prompts_and_matched_refills(tiny_model_dir, tmp_path):
    ranks = two_rank_results(__file__, tiny_model_dir, tmp_path, timeout=400)
    # Same number of generation rounds on both ranks (collectives matched), with refills happening.
    assert len(ranks[0]["calls"]) == len(ranks[1]["calls"])
    assert [e["dynamic_sampling/rounds"] for e in ranks[0]["logs"]] == [
        e["dynamic_sampling/rounds"] for e in ranks[1]["logs"]
    ]
    assert sum(e["dynamic_sampling/rounds"] for e in ranks[0]["logs"]) > 3
    # The first batch of each step comes from the sampler: each rank holds whole groups of different prompts.
    first_calls = [{}, {}]
    for r in range(2):
        for step, prompts in ranks[r]["calls"]:
            first_calls[r].setdefault(step, prompts)
    for step in first_calls[0]:
        a, b = first_calls[0][step], first_calls[1][step]
        assert a[0::2] == a[1::2] and b[0::2] == b[1::2]
        assert not set(a) & set(b)
    # Constant-reward groups never reached the loss on either rank; each rank trained on full batches.
    for r in range(2):
        assert len(ranks[r]["loss_prompts"]) == 3 * 4
        assert all(p.startswith("vary") for p in ranks[r]["loss_prompts"])


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
