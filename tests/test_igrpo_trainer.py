"""IGRPOTrainer end to end on tiny offline models."""

import pytest
import torch
from datasets import Dataset
from helpers import snapshot_trainable as snapshot
from helpers import unchanged_parameters as unchanged
from helpers import varied_reward as random_reward

from trl_igrpo import IGRPOConfig, IGRPOTrainer
from trl_igrpo.demo.arithmetic import make_arithmetic_examples
from trl_igrpo.rewards import math_accuracy_reward, think_answer_format_reward
from trl_igrpo.testing import cpu_training_kwargs


def length_reward(completions, solution, **kwargs):
    """Reads a dataset column (solution) and depends on the completion: a deterministic, non-constant reward."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(len(t) % 7) + 0.1 * len(s) for t, s in zip(texts, solution)]


def make_args(tmp_path, **overrides):
    args = dict(
        output_dir=str(tmp_path / "out"),
        **cpu_training_kwargs(),
        per_device_train_batch_size=4,
        num_drafts=2,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        seed=0,
    )
    args.update(overrides)
    return IGRPOConfig(**args)


def dataset(n=16, conversational=True):
    return Dataset.from_list(make_arithmetic_examples(n, seed=1, conversational=conversational))


IGRPO_METRICS = [
    "igrpo/draft_reward_mean",
    "igrpo/best_draft_reward_mean",
    "igrpo/refinement_reward_mean",
    "igrpo/refinement_minus_best_draft",
    "igrpo/all_drafts_failed_frac",
    "igrpo/draft_mean_length",
    "igrpo/refinement_mean_length",
    "entropy",
]


@pytest.mark.slow
def test_trains_every_parameter_and_logs_metrics(tiny_model_dir, tmp_path):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[math_accuracy_reward, think_answer_format_reward, length_reward],
        args=make_args(tmp_path, log_completions=True),
        train_dataset=dataset(),
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert unchanged(trainer.model, before) == []
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for key in IGRPO_METRICS:
        assert all(key in entry for entry in logged), key
    entry = logged[-1]
    assert entry["igrpo/refinement_minus_best_draft"] == pytest.approx(
        entry["igrpo/refinement_reward_mean"] - entry["igrpo/best_draft_reward_mean"]
    )
    assert entry["igrpo/best_draft_reward_mean"] >= entry["igrpo/draft_reward_mean"]
    # The completions table carries the draft each refinement was conditioned on.
    drafts = trainer._logs["extra"]["draft"]
    assert len(drafts) == len(trainer._logs["completion"]) > 0


@pytest.mark.slow
def test_nemotron_h_hybrid_moe(tiny_nemotron_h_dir, tmp_path):
    trainer = IGRPOTrainer(
        model=tiny_nemotron_h_dir,
        reward_funcs=[length_reward],
        args=make_args(tmp_path),
        train_dataset=dataset(),
    )
    routed = set()

    def record_routing(module, args, output):
        # NemotronH's router returns (topk_indices, topk_weights); collect every expert that received a token.
        indices = output[0] if isinstance(output, tuple) else output
        if indices.dtype in (torch.int64, torch.int32):
            routed.update(indices.flatten().tolist())

    gates = [m for name, m in trainer.model.named_modules() if name.endswith("mixer.gate")]
    hooks = [gate.register_forward_hook(record_routing) for gate in gates]
    before = snapshot(trainer.model)
    trainer.train()
    for hook in hooks:
        hook.remove()
    not_changed = unchanged(trainer.model, before)
    # Everything changes except, possibly, routed experts that never received a token.
    for name in not_changed:
        assert ".experts." in name, name
        expert_index = (
            int(name.split(".experts.")[1].split(".")[0]) if name.split(".experts.")[1][0].isdigit() else None
        )
        assert expert_index is None or expert_index not in routed, name
    assert {type(layer.mixer).__name__ for layer in trainer.model.model.layers} >= {
        "NemotronHMamba2Mixer",
        "NemotronHMoE",
    }


@pytest.mark.slow
def test_matched_budget_asks_for_exactly_n_drafts_and_g_refinements(tiny_model_dir, tmp_path, monkeypatch):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[random_reward],
        args=make_args(tmp_path, max_steps=1, per_device_train_batch_size=4),
        train_dataset=dataset(),
    )
    calls = []
    original = trainer._generate_single_turn

    def spy(prompt_ids, images, multimodal_fields, num_generations, **kwargs):
        calls.append(([tuple(p) for p in prompt_ids], num_generations))
        return original(prompt_ids, images, multimodal_fields, num_generations, **kwargs)

    monkeypatch.setattr(trainer, "_generate_single_turn", spy)
    trainer.train()
    assert len(calls) == 2  # one Stage-1 call, one Stage-2 call
    (draft_prompts, n), (refine_prompts, g) = calls
    assert (n, g) == (2, 2)
    # 4 completions per step / G=2 -> 2 unique prompts, each asked for exactly 2 drafts and 2 refinements.
    assert len(draft_prompts) == 4 and len(set(draft_prompts)) == 2
    assert all(draft_prompts.count(p) == 2 for p in set(draft_prompts))
    assert len(refine_prompts) == 4 and len(set(refine_prompts)) == 2
    assert all(refine_prompts.count(p) == 2 for p in set(refine_prompts))


@pytest.mark.slow
@pytest.mark.parametrize("conversational", [True, False])
def test_conditioning_is_real(tiny_model_dir, tmp_path, monkeypatch, conversational):
    """Stage-2 prompt ids contain the chosen draft, and a different draft changes the refinement log-probs."""
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[random_reward],
        args=make_args(tmp_path, max_steps=1),
        train_dataset=dataset(conversational=conversational),
    )
    trainer.model.train()
    rows = [row for row in dataset(2, conversational=conversational) for _ in range(2)]
    output = trainer._generate_and_score_completions(rows)
    tokenizer = trainer.processing_class
    drafts = list(trainer._logs["extra"]["draft"])[-4:]
    for prompt_ids, mask, draft in zip(output["prompt_ids"], output["prompt_mask"], drafts):
        prompt_text = tokenizer.decode(prompt_ids[mask.bool()], skip_special_tokens=True)
        assert draft.strip() in prompt_text

    def refinement_logps(draft_text):
        refined = [{**row, "prompt": row["prompt"]} for row in rows[:1]]
        from trl_igrpo.igrpo.drafts import build_refinement_prompt

        prompt = build_refinement_prompt(refined[0]["prompt"], draft_text)
        prompt_ids, _, _ = trainer._tokenize_prompts([prompt])
        completion = output["completion_ids"][0][output["completion_mask"][0].bool()]
        input_ids = torch.tensor([prompt_ids[0] + completion.tolist()])
        with torch.no_grad():
            result = trainer._get_per_token_logps_and_entropies(
                trainer.model, input_ids, torch.ones_like(input_ids), len(completion), batch_size=1
            )
        return result[0]

    first, second = refinement_logps("draft A: the answer is 3"), refinement_logps("a different draft: 99 99 99")
    assert first.shape == second.shape and not torch.allclose(first, second)


def row_and_text_reward(completions, solution, **kwargs):
    """Depends on the completion's text and on its own row's `solution`: a reward scored against another row's
    solution, or another completion's text, gives a different number."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(len(t) % 5) + 10.0 * int(s) for t, s in zip(texts, solution)]


@pytest.mark.slow
@pytest.mark.parametrize("conversational", [True, False])
def test_stage2_advantages_score_each_refinement_against_its_own_row(tiny_model_dir, tmp_path, conversational):
    """The advantages the loss uses are TRL's group-normalised rewards (Eq. 5) of each refinement's own decoded text,
    scored with its own prompt's dataset columns: no refinement is paired with another row's answer."""
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[row_and_text_reward],
        args=make_args(tmp_path, max_steps=1, num_generations=3, per_device_train_batch_size=6),
        train_dataset=dataset(conversational=conversational),
    )
    rows = [row for row in dataset(2, conversational=conversational) for _ in range(3)]
    assert rows[0]["solution"] != rows[3]["solution"]  # the two prompts' rewards differ by 10 x their answers
    output = trainer._generate_and_score_completions(rows)
    texts = trainer.processing_class.batch_decode(output["completion_ids"], skip_special_tokens=True)
    completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    rewards = torch.tensor(row_and_text_reward(completions, [row["solution"] for row in rows])).view(2, 3)
    expected = (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + 1e-4)
    torch.testing.assert_close(output["advantages"].cpu(), expected.flatten(), atol=1e-5, rtol=1e-5)


LOSS_SETUPS = [
    dict(loss_type="grpo"),
    dict(loss_type="dapo"),
    dict(loss_type="dr_grpo"),
    dict(loss_type="bnpo"),
    dict(loss_type="cispo"),
    dict(loss_type="sapo"),
    dict(loss_type="luspo"),
    dict(loss_type="vespo"),
    dict(loss_type="grpo", importance_sampling_level="sequence"),  # GSPO
    dict(loss_type="grpo", beta=0.04),  # reference model conditioned on prompt + draft
    dict(loss_type="dapo", gradient_accumulation_steps=2, per_device_train_batch_size=2),
    dict(loss_type="grpo", steps_per_generation=2, per_device_train_batch_size=2),
    dict(loss_type="grpo", num_iterations=2),
]


@pytest.mark.slow
@pytest.mark.parametrize("setup", LOSS_SETUPS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_every_loss_type_and_schedule_updates_the_policy(tiny_model_dir, tmp_path, setup):
    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[length_reward],
        args=make_args(tmp_path, max_steps=1, **setup),
        train_dataset=dataset(),
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert unchanged(trainer.model, before) == []
    if setup.get("beta"):
        assert "kl" in trainer.state.log_history[0]


@pytest.mark.slow
def test_peft_lora_trains_only_the_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig

    trainer = IGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[length_reward],
        args=make_args(tmp_path, max_steps=1, learning_rate=1e-1),
        train_dataset=dataset(),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = snapshot(trainer.model)
    trainer.train()
    # LoRA's B starts at zero, so A gets no gradient in the first step; every B must move.
    changed = set(before) - set(unchanged(trainer.model, before))
    assert {n for n in trainable if "lora_B" in n} <= changed


def test_rejects_bad_inputs_before_compute(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="prompt"):
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[random_reward],
            args=make_args(tmp_path),
            train_dataset=Dataset.from_list([{"question": "q", "solution": "1"}] * 4),
        )
    with pytest.raises(ValueError, match="draft"):
        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[random_reward],
            args=make_args(tmp_path),
            train_dataset=Dataset.from_list([{"prompt": "q", "draft": "x"}] * 4),
        )
    with pytest.raises(ValueError, match="reward_funcs"):
        IGRPOTrainer(model=tiny_model_dir, reward_funcs=[], args=make_args(tmp_path), train_dataset=dataset())
    with pytest.raises(TypeError, match="IGRPOConfig"):
        from trl import GRPOConfig

        IGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=[random_reward],
            train_dataset=dataset(),
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False),
        )
