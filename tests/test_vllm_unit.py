"""Pure pieces of the vLLM integration that need no vLLM: backend choice, context budget, serve command line."""

import pytest

from trl_igrpo.utils.context import check_context_budget
from trl_igrpo.vllm.engine import _uniform_runs
from trl_igrpo.vllm.serve import ServeArguments, build_serve_command
from trl_igrpo.vllm.weight_sync import resolve_weight_sync_backend


@pytest.mark.parametrize(
    ("mode", "device", "expected"),
    [
        ("colocate", "cuda", "nccl"),
        ("server", "cuda", "nccl"),
        ("colocate", "cpu", "reload"),
        ("server", "cpu", "filesystem"),
    ],
)
def test_auto_backend_keeps_nccl_on_cuda_and_reloads_elsewhere(mode, device, expected):
    assert resolve_weight_sync_backend("auto", mode, device) == expected


def test_backend_mode_mismatch_is_rejected():
    with pytest.raises(ValueError, match="'reload' needs vllm_mode='colocate'"):
        resolve_weight_sync_backend("reload", "server", "cpu")
    with pytest.raises(ValueError, match="'filesystem' needs vllm_mode='server'"):
        resolve_weight_sync_backend("filesystem", "colocate", "cpu")
    with pytest.raises(ValueError, match="vllm_weight_sync must be one of"):
        resolve_weight_sync_backend("gloo", "server", "cpu")


def test_context_budget_counts_prompt_draft_and_completion():
    from trl_igrpo.vllm.engine import _FIX

    check_context_budget(100, prompt_length=40, completion_length=30, draft_length=30)  # exactly fits
    with pytest.raises(ValueError) as err:
        check_context_budget(
            100,
            prompt_length=41,
            completion_length=30,
            draft_length=30,
            where="vLLM (server) max_model_len=100",
            fix=_FIX,
        )
    message = str(err.value)
    assert "max_model_len=100" in message and "= 101" in message and "prompt 41 + draft 30" in message
    assert "max_draft_length" in message and "--max-model-len" in message and "vllm_max_model_length" in message
    check_context_budget(None, prompt_length=10**6, completion_length=10**6)  # no known context: nothing to check


def test_uniform_runs_detects_repeated_prompts_only():
    assert _uniform_runs([[1, 2], [1, 2], [3], [3]], 2) == 2
    assert _uniform_runs([[1, 2], [1, 3], [3], [3]], 2) is None
    assert _uniform_runs([[1], [1], [1]], 2) is None  # not a multiple of k
    assert _uniform_runs([[1], [1]], 1) is None  # n=1 needs no rewrite


def test_serve_command_wraps_trl_and_adds_recipe_options():
    args = ServeArguments(model="m", port=8123, max_model_len=4096, tensor_parallel_size=8, quantization="fp8")
    command, env = build_serve_command(args, ["--seed", "1"], cuda_available=True, vllm_cli_works=True)
    assert env == {"VLLM_SERVER_DEV_MODE": "1"}
    assert command[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "m"]
    joined = " ".join(command)
    for flag in (
        "--max-model-len 4096",
        "--tensor-parallel-size 8",
        "--quantization fp8",
        "--port 8123",
        "--logprobs-mode processed_logprobs",
        "--weight-transfer-config",
    ):
        assert flag in joined
    assert command[-2:] == ["--seed", "1"]


def test_serve_command_on_cpu_without_vllm_metadata_uses_api_server_and_no_nccl():
    command, _ = build_serve_command(ServeArguments(model="m"), cuda_available=False, vllm_cli_works=False)
    assert command[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "m"]
    assert "--weight-transfer-config" not in command and "serve" not in command
    assert "--logprobs-mode" in command


def test_longest_prompt_counts_chat_templated_tokens(tiny_llama_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_igrpo.utils.context import longest_prompt_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    texts = ["What is 1 + 1?", "Solve 12x = 144 and then compute the sum of the digits of x.", "hi"]
    prompts = [[{"role": "user", "content": t}] for t in texts]
    lengths = [
        len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True)["input_ids"]) for p in prompts
    ]
    longest = longest_prompt_tokens(Dataset.from_dict({"prompt": prompts}), tokenizer)
    assert longest == max(lengths) > len(tokenizer(texts[1])["input_ids"])
    plain = Dataset.from_dict({"prompt": texts})  # plain text: no template
    assert longest_prompt_tokens(plain, tokenizer) == len(tokenizer(texts[1])["input_ids"])


def test_vllm_engine_class_is_swapped_only_while_the_trainer_is_built():
    import trl.trainer.grpo_trainer as grpo_module
    from trl import GRPOTrainer

    from trl_igrpo.vllm.engine import use_vllm_engine

    original = grpo_module.VLLMGeneration
    sentinel = object()
    with pytest.raises(RuntimeError), use_vllm_engine(GRPOTrainer, sentinel):
        assert grpo_module.VLLMGeneration is sentinel
        raise RuntimeError("constructor failed")
    assert grpo_module.VLLMGeneration is original


@pytest.mark.parametrize(
    ("num_drafts", "num_generations", "prefetch", "expected"),
    [(4, 4, False, 64), (4, 4, True, 128), (8, 4, False, 128), (2, 4, True, 96), (2, 8, False, 64)],
)
def test_the_colocated_engine_fits_igrpos_largest_generation_call(
    monkeypatch, tmp_path, num_drafts, num_generations, prefetch, expected
):
    """TRL sizes max_num_seqs to one generation batch (64 rows here); iGRPO's Stage 1 (B/G*N drafts) or a prefetching
    Stage-2 call (B + B/G*N) is larger and would otherwise run in waves. Every other engine argument is passed on."""
    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.core.trainer import GRPOBaseTrainer

    seen: dict = {}
    monkeypatch.setattr(GRPOBaseTrainer, "_make_vllm_generation", lambda self, **kwargs: seen.update(kwargs))
    trainer = object.__new__(IGRPOTrainer)  # only the engine's arguments are under test: no model needed
    trainer.args = IGRPOConfig(
        output_dir=str(tmp_path), num_drafts=num_drafts, num_generations=num_generations, prefetch_drafts=prefetch,
        per_device_train_batch_size=64, use_cpu=True, report_to="none",
    )  # fmt: skip
    trainer._make_vllm_generation(max_num_seqs=64, temperature=0.7, mode="colocate")
    assert seen == {"max_num_seqs": expected, "temperature": 0.7, "mode": "colocate"}
