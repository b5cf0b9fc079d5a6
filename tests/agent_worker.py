"""One rank of ``test_two_processes_with_tools`` (launched twice by ``accelerate launch``): iGRPO with a tool loop on
2 processes, scripted generation as in TRL's tool tests. Writes ``rank{r}.json`` into the output directory."""

import hashlib
import json
import os
import sys
from pathlib import Path
from unittest.mock import patch


def main(model_dir: str, out_dir: str) -> None:
    import torch
    from agent_helpers import (
        BAD_ARGUMENT_CALL,
        NO_CALL,
        VALID_CALL,
        ScriptedGeneration,
        multiply_tool,
        tool_success_reward,
    )
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs
    from trl_igrpo.utils.distributed import end_distributed_run

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is 3 times {i}?"}]} for i in range(8)])
    args = IGRPOConfig(
        output_dir=out_dir, **cpu_training_kwargs(), per_device_train_batch_size=3, num_drafts=3, num_generations=3,
        max_completion_length=128, max_steps=1, learning_rate=0.1, seed=0,
    )  # fmt: skip
    trainer = IGRPOTrainer(model=model_dir, reward_funcs=tool_success_reward, args=args, train_dataset=dataset,
                           tools=[multiply_tool])  # fmt: skip
    assert trainer.accelerator.num_processes == int(os.environ.get("WORLD_SIZE", 1)) == 2
    outputs = []
    rollout = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: outputs.append(rollout(inputs)) or outputs[-1]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with patch.object(
        trainer.model, "generate", side_effect=ScriptedGeneration(tokenizer, [VALID_CALL, BAD_ARGUMENT_CALL, NO_CALL])
    ):
        trainer.train()
    digest = hashlib.sha256()
    for name, param in sorted(trainer.model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().to(torch.float64).numpy().tobytes())
    rank = trainer.accelerator.process_index
    first = outputs[0]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
        "digest": digest.hexdigest(),
        "changed": sum(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters()),
        "stage2_prompt": tokenizer.decode(first["prompt_ids"][0][first["prompt_mask"][0].bool()]),
        "logs": [{k: v for k, v in e.items() if k.startswith("igrpo/")} for e in trainer.state.log_history if "loss" in e],
    }))  # fmt: skip
    end_distributed_run(trainer.accelerator)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1], sys.argv[2])
