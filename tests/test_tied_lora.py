"""Tied-LoRA tuner (arXiv 2311.09578): exact no-op init, merge/unmerge, save/load, weight tying, parameter counts."""

import itertools
import json
import os

import pytest
import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from trl_igrpo.tied_lora import (
    LOAD_REQUIRES,
    TIED_LORA_PEFT_TYPE,
    TiedLoraConfig,
    TiedLoraLayer,
    TiedLoraModel,
    TiedLoraPeftType,
    fused_qkv_trainable_parameters,
    lora_trainable_parameters,
    tie_group_keys,
)
from trl_igrpo.tied_lora.config import LOADING_NOTE_HEADING

QKV = ["q_proj", "k_proj", "v_proj"]
ALL_LINEAR = QKV + ["o_proj", "gate_proj", "up_proj", "down_proj"]
# every trainability combination of (A, B, u, v) except "nothing trains"
ALL_FLAG_COMBINATIONS = [flags for flags in itertools.product([True, False], repeat=4) if any(flags)]


def _flags_id(flags):
    return "".join(name if on else "-" for name, on in zip("ABuv", flags))


def _config(flags=(True, True, True, True), **kwargs):
    train_A, train_B, train_u, train_v = flags
    return TiedLoraConfig(train_A=train_A, train_B=train_B, train_u=train_u, train_v=train_v, **kwargs)


@pytest.fixture
def base_model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


@pytest.fixture
def input_ids():
    return torch.randint(0, 400, (2, 10), generator=torch.Generator().manual_seed(1))


def _logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def _train_steps(model, input_ids, steps=3, lr=5e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    for _ in range(steps):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def _tied_layers(model):
    return [m for m in model.modules() if isinstance(m, TiedLoraLayer)]


# ------------------------------------------------------------------------------------------------------ pure functions
def test_zero_initialised_factor_is_first_trainable_of_B_v_u_A():
    assert _config((True, True, True, True)).zero_initialised_factor() == "B"
    assert _config((True, False, True, True)).zero_initialised_factor() == "v"
    assert _config((False, False, True, False)).zero_initialised_factor() == "u"
    assert _config((True, False, False, False)).zero_initialised_factor() == "A"


def test_tie_group_keys_share_A_within_fused_group_and_B_per_member():
    groups = [QKV]
    a_q, b_q = tie_group_keys("q_proj", 128, 128, groups)
    a_k, b_k = tie_group_keys("k_proj", 128, 64, groups)
    assert a_q == a_k and b_q != b_k
    a_o, b_o = tie_group_keys("o_proj", 128, 128, groups)
    assert a_o == b_o == "linear_128x128" != a_q
    # without fused groups q (128x128) ties with o (128x128) by shape
    assert tie_group_keys("q_proj", 128, 128, None) == ("linear_128x128", "linear_128x128")


def test_paper_counts_closed_form():
    d, L, r = 4096, 32, 8
    assert fused_qkv_trainable_parameters(d, L, r) == 4 * d * r + L * (r + 3 * d) == 524_544
    assert fused_qkv_trainable_parameters(d, L, r, train_u=False, train_v=False) == 131_072  # TL5, the paper's ~131K
    assert lora_trainable_parameters(d, L, r) == 4_194_304
    assert lora_trainable_parameters(d, L, r, fused_qkv=False) == 6_291_456


def test_config_validation_errors():
    with pytest.raises(ValueError, match="train_A"):
        _config((False, False, False, False))
    with pytest.raises(ValueError, match="`r`"):
        TiedLoraConfig(r=0)
    with pytest.raises(ValueError, match="dropout"):
        TiedLoraConfig(dropout=1.5)
    with pytest.raises(ValueError, match="fused_module_groups"):
        TiedLoraConfig(fused_module_groups=[["q_proj"]])
    with pytest.raises(ValueError, match="more than one group"):
        TiedLoraConfig(fused_module_groups=[["q_proj", "k_proj"], ["k_proj", "v_proj"]])
    with pytest.raises(ValueError, match="could not be established"):
        TiedLoraConfig.from_configuration("TL3")
    with pytest.raises(ValueError, match="fixed by configuration"):
        TiedLoraConfig.from_configuration("TL5", train_u=True)


def test_a_rank_larger_than_a_target_layer_allows_is_refused_naming_layer_and_limit(base_model, tiny_model_dir):
    k_proj = base_model.model.layers[0].self_attn.k_proj
    limit = min(k_proj.in_features, k_proj.out_features)  # k_proj is the narrowest of q/k/v (grouped-query attention)
    get_peft_model(base_model, TiedLoraConfig(r=limit, target_modules=QKV))  # the limit itself is fine
    with pytest.raises(ValueError) as error:
        get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), TiedLoraConfig(r=limit + 1, target_modules=QKV)
        )
    message = str(error.value)
    assert f"Tied-LoRA r={limit + 1} is larger than target module 'model.layers.0.self_attn.k_proj' allows" in message
    assert f"{k_proj.out_features} x {k_proj.in_features}" in message and f"Set r <= {limit}" in message


def test_named_configurations():
    tl6 = TiedLoraConfig()
    assert (tl6.train_A, tl6.train_B, tl6.train_u, tl6.train_v) == (True, True, True, True)
    assert tl6.configuration_name == "TL6" and tl6.r == 8 and tl6.scaling == 1.0
    tl5 = TiedLoraConfig.from_configuration("TL5", r=4)
    assert (tl5.train_u, tl5.train_v, tl5.r, tl5.configuration_name) == (False, False, 4, "TL5")
    assert _config((False, False, True, True)).configuration_name is None  # VeRA-like: TL index not established
    assert TiedLoraConfig(r=8, alpha=16).scaling == 2.0


# ---------------------------------------------------------------------------------------------------- exact no-op init
@pytest.mark.parametrize("flags", ALL_FLAG_COMBINATIONS, ids=_flags_id)
def test_init_outputs_equal_base_exactly(base_model, input_ids, flags):
    expected = _logits(base_model, input_ids)
    model = get_peft_model(base_model, _config(flags, r=4, target_modules=ALL_LINEAR))
    assert torch.equal(_logits(model, input_ids), expected)
    # and the adapter is live: gradients reach a trainable factor at the very first step
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_invalid_target_module_type_is_rejected(base_model):
    with pytest.raises(TypeError, match="embed_tokens"):
        get_peft_model(base_model, TiedLoraConfig(target_modules=["embed_tokens"]))


# ----------------------------------------------------------------------------------------------------- merge / unmerge
@pytest.mark.parametrize("fused", [True, False], ids=["fused_qkv", "by_shape"])
def test_merge_matches_unmerged_and_unmerge_restores_base(base_model, input_ids, fused):
    base_weights = {n: p.detach().clone() for n, p in base_model.named_parameters()}
    base_logits = _logits(base_model, input_ids)
    groups = [QKV] if fused else None
    model = get_peft_model(base_model, TiedLoraConfig(r=4, target_modules=ALL_LINEAR, fused_module_groups=groups))
    _train_steps(model, input_ids)
    adapted = _logits(model, input_ids)
    assert not torch.allclose(adapted, base_logits, atol=1e-3)

    model.merge_adapter()
    torch.testing.assert_close(_logits(model, input_ids), adapted, rtol=1e-5, atol=1e-5)
    model.unmerge_adapter()
    for name, param in model.get_base_model().named_parameters():
        if "tiedlora_" in name:
            continue
        original = base_weights[name.replace(".base_layer", "")]
        torch.testing.assert_close(param, original, rtol=0, atol=1e-6)
    torch.testing.assert_close(_logits(model, input_ids), adapted, rtol=0, atol=1e-6)

    merged = model.merge_and_unload()
    assert not any(isinstance(m, TiedLoraLayer) for m in merged.modules())
    torch.testing.assert_close(_logits(merged, input_ids), adapted, rtol=1e-5, atol=1e-5)


def test_get_delta_weight_equals_diag_v_B_diag_u_A(base_model):
    model = get_peft_model(base_model, TiedLoraConfig(r=4, alpha=8, init_weights=False))
    layer = model.base_model.model.model.layers[1].self_attn.k_proj
    A, B, u, v = layer.tied_factors("default")
    expected = 2.0 * torch.diag(v) @ B @ torch.diag(u) @ A  # scaling alpha / r = 2
    torch.testing.assert_close(layer.get_delta_weight("default"), expected)


# ---------------------------------------------------------------------------------------------------------- save/load
def test_save_load_round_trip_and_tied_matrices_stored_once(base_model, tiny_model_dir, input_ids, tmp_path):
    model = get_peft_model(base_model, TiedLoraConfig(r=4, target_modules=ALL_LINEAR))
    _train_steps(model, input_ids)
    adapted = _logits(model, input_ids)
    model.save_pretrained(tmp_path)

    with safe_open(os.path.join(tmp_path, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    tied_keys = [k for k in keys if ".tiedlora_A." in k or ".tiedlora_B." in k]
    # one entry per tie group, not per layer: fused-QKV A, shapes 128x128 (o), 256x128 (gate/up), 128x256 (down)
    assert sorted(k.rsplit(".", 1)[1] for k in tied_keys if ".tiedlora_A." in k) == sorted(
        ["fused_q_proj_k_proj_v_proj_in128", "linear_128x128", "linear_256x128", "linear_128x256"]
    )
    assert len([k for k in tied_keys if ".tiedlora_B." in k]) == 3 + 3  # q, k, v members + three shape groups
    assert all(k.startswith("base_model.tiedlora_") for k in tied_keys)
    assert not any("layers." in k for k in tied_keys)
    # per-layer u is stored once per layer for the fused group (owned by q_proj), v for every module
    assert len([k for k in keys if "self_attn" in k and ".tiedlora_u." in k]) == 2 * 2  # (q, o) x 2 layers

    config = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(config, TiedLoraConfig) and config.r == 4
    assert json.load(open(os.path.join(tmp_path, "adapter_config.json")))["peft_type"] == "TIEDLORA"

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path)
    assert isinstance(loaded.base_model, TiedLoraModel)
    assert torch.equal(_logits(loaded, input_ids), adapted)
    assert not any(p.requires_grad for p in loaded.parameters())  # inference mode freezes the tied matrices too

    trainable = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path, is_trainable=True
    )
    assert all(p.requires_grad for p in trainable.base_model.tied_parameters().values())


def test_load_with_low_cpu_mem_usage(base_model, tiny_model_dir, input_ids, tmp_path):
    model = get_peft_model(base_model, TiedLoraConfig(r=4, init_weights=False))
    expected = _logits(model, input_ids)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path, low_cpu_mem_usage=True
    )
    assert torch.equal(_logits(loaded, input_ids), expected)


# ------------------------------------------------------------------------------------------------------------- tying
def test_tied_matrices_are_one_tensor_and_gradients_accumulate_across_layers(base_model, input_ids):
    model = get_peft_model(base_model, TiedLoraConfig(r=4, target_modules=ALL_LINEAR, init_weights=False))
    layers = _tied_layers(model)
    tied_ids = {id(p) for p in model.base_model.tied_parameters().values()}
    for layer in layers:
        A, B, _, _ = layer.tied_factors("default")
        assert id(A) in tied_ids and id(B) in tied_ids
    q_layers = [m for n, m in model.named_modules() if n.endswith("q_proj") and isinstance(m, TiedLoraLayer)]
    assert q_layers[0].tied_factors("default")[0] is q_layers[1].tied_factors("default")[0]
    # named_parameters (what the optimiser sees) lists each tied matrix once
    names = [n for n, _ in model.named_parameters() if ".tiedlora_A." in n]
    assert len(names) == len(set(names)) == 4

    model(input_ids=input_ids, labels=input_ids).loss.backward()
    tied_grads = {k: p.grad.clone() for k, p in model.base_model.tied_parameters().items()}
    model.zero_grad()

    # untie: give every layer private clones of the tied matrices; their gradients must sum to the tied gradient
    clones = []
    for layer in layers:
        private = {
            factor: torch.nn.ModuleDict(
                {
                    "default": torch.nn.ParameterDict(
                        {k: torch.nn.Parameter(p.detach().clone()) for k, p in bank["default"].items()}
                    )
                }
            )
            for factor, bank in layer.tiedlora_shared.items()
        }
        layer.tiedlora_shared = private
        clones.append(private)
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    for key, grad in tied_grads.items():
        factor, group = key.split("/")
        per_layer = [c[factor]["default"][group].grad for c in clones if c[factor]["default"][group].grad is not None]
        assert len(per_layer) >= 2  # the tensor really is used by several layers
        torch.testing.assert_close(torch.stack(per_layer).sum(0), grad, rtol=1e-5, atol=1e-7)


def test_fused_group_shares_u_within_a_layer_only(base_model):
    model = get_peft_model(base_model, TiedLoraConfig(r=4))
    attn = [model.base_model.model.model.layers[i].self_attn for i in range(2)]
    u = [[getattr(a, name).tied_factors("default")[2] for name in QKV] for a in attn]
    assert u[0][0] is u[0][1] is u[0][2]
    assert u[0][0] is not u[1][0]
    v = [getattr(attn[0], name).tied_factors("default")[3] for name in QKV]
    assert len({id(x) for x in v}) == 3


def test_adapter_parameter_names_carry_prefix_and_adapter_name(base_model):
    """TRL's vLLM sync skips names containing `model.prefix`; TRL's ref-adapter copy maps `.default.` -> `.ref.`."""
    model = get_peft_model(base_model, TiedLoraConfig(r=4, target_modules=ALL_LINEAR))
    adapter_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert adapter_names and all(model.prefix in n and ".default." in n for n in adapter_names)


# -------------------------------------------------------------------------------------------------- parameter counts
def _closed_form_count(flags, r, layers, groups):
    """Sum over tie groups (in, tied B outs, u owners per layer, v sizes per layer):
    [A] r*in + [B] r*sum(B outs) once, plus per layer [u] r per u owner + [v] sum of v sizes."""
    train_A, train_B, train_u, train_v = flags
    total = 0
    for in_features, b_outs, u_owners, v_sizes in groups:
        total += train_A * r * in_features + train_B * r * sum(b_outs)
        total += layers * (train_u * r * u_owners + train_v * sum(v_sizes))
    return total


@pytest.mark.parametrize("flags", ALL_FLAG_COMBINATIONS, ids=_flags_id)
def test_trainable_counts_match_closed_form(base_model, flags):
    # tiny qwen2: d=128, q 128->128, k/v 128->64 (GQA), o 128->128, gate/up 128->256, down 256->128, L=2
    r, L = 4, 2
    model = get_peft_model(base_model, _config(flags, r=r, target_modules=ALL_LINEAR))
    trainable, _ = model.get_nb_trainable_parameters()
    groups = [
        (128, [128, 64, 64], 1, [128, 64, 64]),  # fused q/k/v: one A, a B per member, one shared u, a v per member
        (128, [128], 1, [128]),  # o_proj
        (128, [256], 2, [256, 256]),  # gate_proj and up_proj tie one 256x128 pair by shape, own u and v each
        (256, [128], 1, [128]),  # down_proj
    ]
    assert trainable == _closed_form_count(flags, r, L, groups)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_llama2_7b_tl6_is_12_5_percent_of_fused_qkv_lora(capsys):
    """LLaMA-2-7B dimensions on the meta device: TL6 on fused q/k/v has 4dr + L(r + 3d) trainable parameters."""
    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32000,
    )  # fmt: skip
    d, L, r = 4096, 32, 8
    with torch.device("meta"):
        tl_model = get_peft_model(LlamaForCausalLM(config), TiedLoraConfig(r=r))
        tl5_model = get_peft_model(LlamaForCausalLM(config), TiedLoraConfig.from_configuration("TL5", r=r))
        lora_model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=r, target_modules=QKV))
    tl6, _ = tl_model.get_nb_trainable_parameters()
    tl5, _ = tl5_model.get_nb_trainable_parameters()
    peft_lora, _ = lora_model.get_nb_trainable_parameters()
    assert tl6 == 4 * d * r + L * (r + 3 * d) == 524_544
    assert tl5 == 4 * d * r == 131_072  # the paper's "~131K", a 96.875% reduction from tying alone
    fused_lora = lora_trainable_parameters(d, L, r, fused_qkv=True)  # 4Ldr, the paper's baseline
    assert peft_lora == lora_trainable_parameters(d, L, r, fused_qkv=False) == 6 * L * d * r
    assert round(100 * tl6 / fused_lora, 1) == 12.5  # 12.506 %
    assert round(100 * tl6 / peft_lora, 2) == 8.34  # vs PEFT LoRA on separate q/k/v
    tl_model.print_trainable_parameters()
    assert "trainable params: 524,544" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- adapters & dtypes
def test_multiple_named_adapters_and_disable(base_model, input_ids):
    expected_base = _logits(base_model, input_ids)
    model = get_peft_model(base_model, TiedLoraConfig(r=4, init_weights=False))
    first = _logits(model, input_ids)
    model.add_adapter("second", TiedLoraConfig.from_configuration("TL5", r=2, init_weights=False))
    tied = model.base_model.tied_parameters
    assert all(p.requires_grad for p in tied("default").values())
    assert not any(p.requires_grad for p in tied("second").values())  # added, inactive adapters stay frozen
    assert torch.equal(_logits(model, input_ids), first)

    model.set_adapter("second")
    second = _logits(model, input_ids)
    assert not torch.allclose(second, first)
    assert all(p.requires_grad for p in tied("second").values())
    assert not any(p.requires_grad for p in tied("default").values())

    with model.disable_adapter():
        assert torch.equal(_logits(model, input_ids), expected_base)
    assert torch.equal(_logits(model, input_ids), second)

    model.set_adapter("default")
    model.delete_adapter("second")
    assert "second" not in model.base_model.tiedlora_A and "second" not in model.peft_config
    assert torch.equal(_logits(model, input_ids), first)


def test_bf16_base_upcasts_tied_matrices_and_keeps_them_shared(tiny_model_dir, input_ids):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model = get_peft_model(base, TiedLoraConfig(r=4))
    tied = model.base_model.tied_parameters()
    assert all(p.dtype == torch.float32 for p in tied.values())
    for layer in _tied_layers(model):
        A, B, u, v = layer.tied_factors("default")
        assert id(A) in {id(p) for p in tied.values()} and v.dtype == torch.float32
    assert model(input_ids=input_ids).logits.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "prelude",
    [
        "import trl_igrpo",  # PEFT imported later, by the user
        "import peft, trl_igrpo",  # PEFT already imported
        "import trl_igrpo, trl",  # TRL probes for PEFT with find_spec before anything imports it
        "import trl_igrpo, importlib.util; importlib.util.find_spec('peft')",
    ],
)
def test_importing_trl_igrpo_registers_tied_lora_with_peft(tmp_path, prelude):
    """A fresh interpreter: `import trl_igrpo` alone (lazy exports) must let PEFT load a saved Tied-LoRA adapter
    config, whichever of trl_igrpo, TRL and PEFT is imported first."""
    import subprocess
    import sys

    TiedLoraConfig(r=2).save_pretrained(tmp_path)
    code = (
        f"{prelude}\n"
        "from peft import PeftConfig\n"
        "from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING\n"
        f"config = PeftConfig.from_pretrained({str(tmp_path)!r})\n"
        "assert type(config).__name__ == 'TiedLoraConfig' and config.r == 2, config\n"
        "assert PEFT_TYPE_TO_TUNER_MAPPING['TIEDLORA'].__name__ == 'TiedLoraModel'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------------------------------- peft_type and PEFT helpers
def test_peft_type_is_a_str_enum_member_that_saves_and_looks_up_as_the_string_TIEDLORA(tmp_path):
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    peft_type = TiedLoraConfig(r=2).peft_type
    assert peft_type is TIED_LORA_PEFT_TYPE is TiedLoraPeftType.TIEDLORA
    assert peft_type.value == "TIEDLORA" and peft_type == "TIEDLORA" and hash(peft_type) == hash("TIEDLORA")
    assert str(peft_type) == f"{peft_type}" == "TIEDLORA"
    # PEFT looks the plain string read from adapter_config.json up in its mappings
    assert PEFT_TYPE_TO_CONFIG_MAPPING["TIEDLORA"] is TiedLoraConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["TIEDLORA"] is TiedLoraModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["TIEDLORA"] == "tiedlora_"

    TiedLoraConfig(r=2).save_pretrained(tmp_path)
    with open(os.path.join(tmp_path, "adapter_config.json")) as f:
        saved = json.load(f)
    assert type(saved["peft_type"]) is str and saved["peft_type"] == "TIEDLORA"
    assert saved["load_requires"] == LOAD_REQUIRES and LOAD_REQUIRES.startswith("import trl_igrpo  #")
    assert not os.path.exists(os.path.join(tmp_path, "README.md"))  # a bare config save writes no model card
    assert PeftConfig.from_pretrained(tmp_path).peft_type is TIED_LORA_PEFT_TYPE


def test_model_card_tags_tied_lora_and_says_how_to_load(base_model, tmp_path):
    from huggingface_hub import ModelCard

    model = get_peft_model(base_model, TiedLoraConfig(r=2))
    tags = model._get_peft_specific_model_tags()  # PEFT's helper, which reads peft_type
    assert "transformers" in tags and "lora" not in tags  # TIEDLORA is not taken for LoRA
    model.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)  # saving again must not repeat the loading note
    card = ModelCard.load(os.path.join(tmp_path, "README.md"))
    assert card.data.library_name == "peft"
    assert "tied-lora" in card.data.tags
    assert card.text.count(LOADING_NOTE_HEADING) == 1
    assert "import trl_igrpo" in card.text and "KeyError: 'TIEDLORA'" in card.text


def test_mixed_model_refuses_tied_lora_with_peft_s_compatibility_message(base_model):
    with pytest.raises(
        ValueError, match=r"^The provided `peft_type` 'TIEDLORA' is not compatible with the `PeftMixedModel`\."
    ):
        get_peft_model(base_model, TiedLoraConfig(r=2), mixed=True)


def test_hotswap_refuses_tied_lora_with_peft_s_message_and_leaves_the_adapter(tiny_model_dir, input_ids, tmp_path):
    from peft.utils.hotswap import hotswap_adapter

    for name, seed in (("first", 0), ("second", 1)):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        get_peft_model(base, TiedLoraConfig(r=2, init_weights=False)).save_pretrained(tmp_path / name)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "first")
    before = _logits(model, input_ids)
    with pytest.raises(ValueError, match=r"^Hotswapping only supports LORA but TIEDLORA was passed\.$"):
        hotswap_adapter(model, str(tmp_path / "second"), adapter_name="default")
    assert torch.equal(_logits(model, input_ids), before)


# ------------------------------------------------------------------------------------ loading in a fresh interpreter
@pytest.mark.slow
def test_fresh_interpreter_needs_import_trl_igrpo_and_the_saved_files_say_so(base_model, tiny_model_dir, tmp_path):
    """PEFT 0.21 has no plugin discovery and looks "TIEDLORA" up before any trl_igrpo code can run: without the import
    loading fails with PEFT's KeyError; the saved adapter_config.json and README.md say what to do, and doing it works."""
    import subprocess
    import sys

    adapter_dir = tmp_path / "adapter"
    model = get_peft_model(base_model, TiedLoraConfig(r=2, init_weights=False))
    input_ids = torch.tensor([[1, 2, 3, 4, 5]])
    torch.save(_logits(model, input_ids), tmp_path / "expected.pt")
    model.save_pretrained(adapter_dir)

    with open(adapter_dir / "adapter_config.json") as f:
        instruction = json.load(f)["load_requires"].split("#")[0].strip()
    assert instruction == "import trl_igrpo"
    assert "import trl_igrpo" in (adapter_dir / "README.md").read_text()

    load = (
        "import sys, torch\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r})\n"
        "try:\n"
        f"    model = PeftModel.from_pretrained(base, {str(adapter_dir)!r})\n"
        "except KeyError as error:\n"
        "    print('KeyError', error, 'trl_igrpo' in sys.modules); sys.exit(3)\n"
        "with torch.no_grad():\n"
        "    logits = model(input_ids=torch.tensor([[1, 2, 3, 4, 5]])).logits\n"
        f"assert torch.equal(logits, torch.load({str(tmp_path / 'expected.pt')!r})), 'reloaded logits differ'\n"
        "print(type(model.base_model).__name__)\n"
    )

    def run(code):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    without = run(load)
    assert without.returncode == 3, without.stderr[-2000:]
    assert without.stdout.strip() == "KeyError 'TIEDLORA' False"
    following_the_note = run(f"{instruction}\n{load}")
    assert following_the_note.returncode == 0, following_the_note.stderr[-2000:]
    assert following_the_note.stdout.strip() == "TiedLoraModel"


def test_trl_igrpo_trainer_card_of_a_tied_lora_run_keeps_the_loading_note(tmp_path):
    """TRL's create_model_card rewrites README.md (dropping PEFT's card); HubMixin puts the loading note back."""
    from transformers import TrainingArguments

    from trl_igrpo.hub import HubMixin
    from trl_igrpo.hub.citations import LORA, TIED_LORA

    class _TrlTrainer:
        def create_model_card(self, model_name=None, dataset_name=None, tags=None):
            (tmp_path / "README.md").write_text("---\ntags:\n- trl\n---\n\n# A TRL card\n")

    class _Trainer(HubMixin, _TrlTrainer):
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
        methods = [TIED_LORA]

        def methods_used(self):
            return self.methods

        def is_world_process_zero(self):
            return True

    trainer = _Trainer()
    trainer.create_model_card()
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert card.count(LOADING_NOTE_HEADING) == 1 and card.index("## Methods") < card.index(LOADING_NOTE_HEADING)
    trainer.methods = [LORA]
    trainer.create_model_card()
    assert LOADING_NOTE_HEADING not in (tmp_path / "README.md").read_text()
