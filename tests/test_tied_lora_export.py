"""Tied-LoRA -> standard LoRA export: exact for every tying layout, loadable by plain PEFT, with errors naming the fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from trl_igrpo.tied_lora import EXPORT_SUBDIR, TiedLoraConfig, TiedLoraExportError, export_lora
from trl_igrpo.tied_lora.card import EXPORT_CARD_HEADING

QKV = ["q_proj", "k_proj", "v_proj"]
ALL_LINEAR = QKV + ["o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_LOGIT_ERROR = 1e-5  # fp32, the bound

#: every tying layout TiedLoraConfig supports, as config overrides (init_weights=False: every factor random, non-zero)
LAYOUTS = {
    "fused_qkv_TL6": dict(),
    "tied_by_shape": dict(target_modules=ALL_LINEAR, fused_module_groups=None),
    "fused_qkv_and_gate_up": dict(target_modules=ALL_LINEAR, fused_module_groups=[QKV, ["gate_proj", "up_proj"]]),
    "train_u_off": dict(target_modules=ALL_LINEAR, train_u=False),
    "train_v_off": dict(target_modules=ALL_LINEAR, train_v=False),
    "TL5_u_v_off": dict(target_modules=ALL_LINEAR, train_u=False, train_v=False),
    "vera_like_A_B_frozen": dict(target_modules=ALL_LINEAR, train_A=False, train_B=False),
    "layers_to_transform": dict(target_modules=ALL_LINEAR, layers_to_transform=[1], layers_pattern="layers"),
    "modules_to_save": dict(target_modules=QKV + ["o_proj"], modules_to_save=["lm_head"]),
    "alpha_and_dropout": dict(target_modules=ALL_LINEAR, alpha=3.0, dropout=0.1),
    "regex_targets": dict(target_modules=r".*layers\.1\.self_attn\.(q|v)_proj", fused_module_groups=None),
    "exclude_modules": dict(target_modules=ALL_LINEAR, exclude_modules=["model.layers.0.mlp.down_proj"]),
}


@pytest.fixture
def input_ids():
    return torch.randint(0, 400, (2, 12), generator=torch.Generator().manual_seed(1))


def _logits(model, input_ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def _tied_model(base_dir, **overrides):
    torch.manual_seed(0)
    config = TiedLoraConfig(**{"r": 4, "init_weights": False, **overrides})
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
    if config.modules_to_save:  # make the fully trained copy differ from the base module
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".modules_to_save." in name:
                    param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def _lora_logits(base_dir, lora_dir, input_ids):
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(lora_dir))
    assert type(model.base_model).__name__ == "LoraModel"
    return _logits(model, input_ids)


# ------------------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_export_reproduces_tied_lora_logits_for_every_layout(tiny_model_dir, tmp_path, input_ids, layout):
    model = _tied_model(tiny_model_dir, **LAYOUTS[layout])
    expected = _logits(model, input_ids)
    with model.disable_adapter():
        assert not torch.allclose(_logits(model, input_ids), expected, atol=1e-2)  # the adapter matters
    export_lora(model, tmp_path / "from_model")
    model.save_pretrained(tmp_path / "tied")
    export_lora(tmp_path / "tied", tmp_path / "from_dir")

    error = (_lora_logits(tiny_model_dir, tmp_path / "from_dir", input_ids) - expected).abs().max().item()
    print(f"\nexport exactness {layout}: max |logit error| = {error:.2e}")
    assert error <= MAX_LOGIT_ERROR
    from_model, from_dir = (
        load_file(tmp_path / "from_model/adapter_model.safetensors"),
        load_file(tmp_path / "from_dir/adapter_model.safetensors"),
    )
    assert from_model.keys() == from_dir.keys() and all(torch.equal(from_model[k], from_dir[k]) for k in from_model)

    config = json.loads((tmp_path / "from_dir/adapter_config.json").read_text())
    tied = model.peft_config["default"]
    assert (config["peft_type"], config["r"], config["use_rslora"]) == ("LORA", 4, False)
    assert (
        config["lora_alpha"] / config["r"] == tied.scaling and config["rank_pattern"] == config["alpha_pattern"] == {}
    )
    assert config["modules_to_save"] == tied.modules_to_save
    adapted = {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") for k in from_dir if "lora_A" in k}
    assert adapted == _tied_module_names(model)
    if layout in ("regex_targets", "exclude_modules"):  # bare names would select other modules: full names instead
        assert set(config["target_modules"]) == adapted
    else:  # the base model's own module names, as a LoRA config would list them
        assert set(config["target_modules"]) == {name.rsplit(".", 1)[-1] for name in adapted}
        assert config["layers_to_transform"] == tied.layers_to_transform


def _tied_module_names(model):
    from trl_igrpo.tied_lora import TiedLoraLayer

    return {name for name, m in model.base_model.model.named_modules() if isinstance(m, TiedLoraLayer)}


def test_export_of_gpt2_conv1d_layers_is_exact(tmp_path, input_ids):
    """GPT-2's Conv1D stores (in, out) weights: the export keeps LoRA's (r, in)/(out, r) factors, fan_in_fan_out=True."""
    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=450, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")
    model = get_peft_model(base, TiedLoraConfig(r=4, init_weights=False, target_modules=["c_attn", "c_proj"]))
    expected = _logits(model, input_ids)
    export_lora(model, tmp_path / "lora")
    assert json.loads((tmp_path / "lora/adapter_config.json").read_text())["fan_in_fan_out"] is True
    assert (_lora_logits(tmp_path / "gpt2", tmp_path / "lora", input_ids) - expected).abs().max() <= MAX_LOGIT_ERROR


def test_export_picks_the_named_adapter_of_a_multi_adapter_model(tiny_model_dir, tmp_path, input_ids):
    model = _tied_model(tiny_model_dir)
    torch.manual_seed(5)
    model.add_adapter("second", TiedLoraConfig(r=2, alpha=4, init_weights=False, target_modules=["o_proj"]))
    model.set_adapter("second")
    expected = _logits(model, input_ids)
    export_lora(model, tmp_path / "second")  # the active adapter
    config = json.loads((tmp_path / "second/adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (2, 4, ["o_proj"])
    assert (_lora_logits(tiny_model_dir, tmp_path / "second", input_ids) - expected).abs().max() <= MAX_LOGIT_ERROR
    model.set_adapter("default")
    export_lora(model, tmp_path / "default_by_name", adapter_name="default")
    assert json.loads((tmp_path / "default_by_name/adapter_config.json").read_text())["r"] == 4


def test_dtype_option_and_model_card(tiny_model_dir, tmp_path):
    model = _tied_model(tiny_model_dir)
    export_lora(model, tmp_path / "bf16", dtype="bfloat16")
    assert {t.dtype for t in load_file(tmp_path / "bf16/adapter_model.safetensors").values()} == {torch.bfloat16}
    card = (tmp_path / "bf16/README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and EXPORT_CARD_HEADING in card
    assert "Tied-LoRA" in card and "arxiv.org/abs/2311.09578" in card and "enable_lora=True" in card
    assert "base_model:" not in card.split("---")[1]  # a local path is not a Hub id
    with pytest.raises(TiedLoraExportError, match=r"apply to saved adapter directories; an in-memory model already"):
        export_lora(model, tmp_path / "bad", base_model=str(tiny_model_dir))
    with pytest.raises(TiedLoraExportError, match=r"saves adapter 'x' into <dir>/x\): pass that directory instead"):
        export_lora(tmp_path / "bf16", tmp_path / "bad", adapter_name="x")
    with pytest.raises(TiedLoraExportError, match=r"dtype must be one of \['bfloat16', 'float16', 'float32'\]"):
        export_lora(model, tmp_path / "bad", dtype="int8")


# ----------------------------------------------------------------------------------------------------------- errors
def test_not_a_tied_lora_adapter_is_refused_with_the_fix(tiny_model_dir, tmp_path):
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules=QKV))
    lora.save_pretrained(tmp_path / "lora")
    with pytest.raises(TiedLoraExportError, match=r"holds a LORA adapter, not Tied-LoRA.*already is a standard LoRA"):
        export_lora(tmp_path / "lora", tmp_path / "out")
    with pytest.raises(TiedLoraExportError, match=r"got LoraModel.*a LoRA adapter already loads in PEFT and vLLM"):
        export_lora(lora, tmp_path / "out")
    with pytest.raises(TiedLoraExportError, match=r"Expected a Tied-LoRA PeftModel.*got Qwen2ForCausalLM"):
        export_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "out")
    (tmp_path / "run/checkpoint-2").mkdir(parents=True)
    (tmp_path / "run/checkpoint-10").mkdir()
    with pytest.raises(TiedLoraExportError, match=r"has no adapter_config.json.*latest is .*run/checkpoint-10\."):
        export_lora(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _config_only_base(tmp_path, name, **changes):
    """A base model directory holding only config.json: all an export reads of the base model."""
    source = changes.pop("source")
    layer_types = getattr(AutoConfig.from_pretrained(source), "layer_types", None)
    if "num_hidden_layers" in changes and layer_types:
        changes["layer_types"] = layer_types[:1] * changes["num_hidden_layers"]
    AutoConfig.from_pretrained(source, **changes).save_pretrained(tmp_path / name)
    return str(tmp_path / name)


def test_a_different_base_model_is_refused_with_the_fix(tiny_model_dir, tmp_path, input_ids):
    model = _tied_model(tiny_model_dir, target_modules=ALL_LINEAR)
    expected = _logits(model, input_ids)
    model.save_pretrained(tmp_path / "tied")
    copy = tmp_path / "copy-of-base"
    shutil.copytree(tiny_model_dir, copy)
    with pytest.raises(
        TiedLoraExportError, match=r"trained on .*, but --base_model is .*--allow_different_base_model"
    ):
        export_lora(tmp_path / "tied", tmp_path / "out", base_model=str(copy))
    # the same model under another name: accepted when asked, and recorded in the export
    export_lora(tmp_path / "tied", tmp_path / "out", base_model=str(copy), allow_different_base_model=True)
    assert json.loads((tmp_path / "out/adapter_config.json").read_text())["base_model_name_or_path"] == str(copy)
    assert (_lora_logits(copy, tmp_path / "out", input_ids) - expected).abs().max() <= MAX_LOGIT_ERROR

    cases = {
        "wider": (
            dict(hidden_size=192),
            r"needs the tied tensor .*_in192', but the adapter holds .*_in128.*other dim",
        ),
        "deeper": (dict(num_hidden_layers=3), r"has no tensor .*layers\.2\..*trained on another model \(more layers"),
        "shallower": (dict(num_hidden_layers=1), r"belongs to no module of the base model.*\(fewer layers"),
    }
    for name, (changes, message) in cases.items():
        base = _config_only_base(tmp_path, name, source=tiny_model_dir, **changes)
        with pytest.raises(TiedLoraExportError, match=message + r".*Pass --base_model with the model"):
            export_lora(tmp_path / "tied", tmp_path / name / "out", base_model=base, allow_different_base_model=True)


def test_existing_output_is_never_overwritten_unless_asked(tiny_model_dir, tmp_path):
    model = _tied_model(tiny_model_dir)
    model.save_pretrained(tmp_path / "tied")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    with pytest.raises(TiedLoraExportError, match=r"exists and is not empty; nothing was written.*--overwrite"):
        export_lora(tmp_path / "tied", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["notes.txt"]
    export_lora(tmp_path / "tied", tmp_path / "out", overwrite=True)
    assert (tmp_path / "out/notes.txt").read_text() == "mine" and (tmp_path / "out/adapter_config.json").exists()
    with pytest.raises(TiedLoraExportError, match=r"is the Tied-LoRA adapter's own directory"):
        export_lora(tmp_path / "tied", tmp_path / "tied", overwrite=True)


# ------------------------------------------------------------------------------------- export on every save (item 4)
def test_export_lora_config_writes_the_export_beside_every_save(tiny_model_dir, tmp_path, input_ids):
    model = _tied_model(tiny_model_dir, export_lora=True)
    model.save_pretrained(tmp_path / "step1")
    with torch.no_grad():  # a later save of a changed adapter replaces its own previous export
        model.base_model.tiedlora_B["default"]["fused_q_proj_128x128"].mul_(2.0)
    expected = _logits(model, input_ids)
    model.save_pretrained(tmp_path / "step1")
    assert json.loads((tmp_path / "step1/adapter_config.json").read_text())["export_lora"] is True
    card = (tmp_path / "step1" / EXPORT_SUBDIR / "README.md").read_text()
    assert "in the folder above this one" in card and str(tmp_path) not in card  # no machine-local path
    error = (_lora_logits(tiny_model_dir, tmp_path / "step1" / EXPORT_SUBDIR, input_ids) - expected).abs().max()
    assert error <= MAX_LOGIT_ERROR

    (tmp_path / "step2" / EXPORT_SUBDIR).mkdir(parents=True)
    (tmp_path / "step2" / EXPORT_SUBDIR / "mine.txt").write_text("not an export")
    with pytest.raises(TiedLoraExportError, match=r"holds other files. Move them, or set export_lora=False"):
        model.save_pretrained(tmp_path / "step2")
    with pytest.raises(TiedLoraExportError, match=r"pickled adapter_model.bin.*safe_serialization=True"):
        model.save_pretrained(tmp_path / "step3", safe_serialization=False)
    with pytest.warns(UserWarning, match=r"holds no adapter weights \(a config-only save\): no LoRA export"):
        model.peft_config["default"].save_pretrained(str(tmp_path / "config-only"))


# ------------------------------------------------------------------------------------------- 7B storage trade-off
def _llama2_7b_adapter(tmp_path, name, **overrides):
    """A Tied-LoRA adapter directory of LLaMA-2-7B's shape with random values (built on the meta device; the base
    model is a config.json only), for real file sizes without 7B weights."""
    base = tmp_path / "llama-2-7b-shape"
    if not base.exists():
        LlamaConfig(
            hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, vocab_size=32000,
        ).save_pretrained(base)  # fmt: skip
    config = TiedLoraConfig(r=8, **overrides)
    with torch.device("meta"):
        model = get_peft_model(LlamaForCausalLM(AutoConfig.from_pretrained(base)), config)
    config.base_model_name_or_path = str(base)
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in get_peft_model_state_dict(model).items()}
    (tmp_path / name).mkdir()
    save_file(state, tmp_path / name / "adapter_model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(str(tmp_path / name))
    return tmp_path / name


def _storage_rows(tmp_path) -> list[str]:
    """Rows of docs/tied_lora.md's storage table: parameters and adapter_model.safetensors bytes, tied vs exported."""
    rows = []
    for label, overrides in (
        ("q/k/v (the paper's fused QKV)", {}),
        ("all linear layers", {"target_modules": ALL_LINEAR}),
    ):
        tied = _llama2_7b_adapter(tmp_path, label.split()[0].replace("/", ""), **overrides)
        export_lora(tied, tied / EXPORT_SUBDIR)
        counts, sizes = [], []
        for folder in (tied, tied / EXPORT_SUBDIR):
            counts.append(sum(t.numel() for t in load_file(folder / "adapter_model.safetensors").values()))
            sizes.append(os.path.getsize(folder / "adapter_model.safetensors"))
        rows.append(
            f"| {label} | {counts[0]:,} | {sizes[0] / 1e6:.2f} MB | {counts[1]:,} | {sizes[1] / 1e6:.2f} MB | "
            f"{sizes[1] / sizes[0]:.1f}x |"
        )
    return rows


@pytest.mark.slow
def test_docs_state_the_7b_storage_trade_off_as_measured(tmp_path):
    """docs/tied_lora.md's LLaMA-2-7B table (TL6, r = 8, fp32) is this measurement, not typed figures."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "tied_lora.md").read_text()
    rows = _storage_rows(tmp_path)
    print("\n" + "\n".join(rows))
    missing = [row for row in rows if row not in docs]
    assert not missing, "docs/tied_lora.md lacks the measured rows:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------- fresh interpreter and CLI
@pytest.mark.slow
def test_cli_export_loads_in_a_fresh_interpreter_with_plain_peft(tiny_model_dir, tmp_path, input_ids):
    """`trl-igrpo export-lora` as a user runs it; then a process that never imports trl_igrpo loads the export with
    plain PEFT and reproduces the Tied-LoRA logits."""
    model = _tied_model(tiny_model_dir, target_modules=ALL_LINEAR, modules_to_save=["lm_head"], alpha=6.0)
    torch.save(_logits(model, input_ids), tmp_path / "expected.pt")
    model.save_pretrained(tmp_path / "tied")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "trl_igrpo", "export-lora", *args], capture_output=True, text=True, timeout=300,
            env=env,
        )  # fmt: skip

    listed = subprocess.run([sys.executable, "-m", "trl_igrpo", "--help"], capture_output=True, text=True, env=env)
    assert "    export-lora" in listed.stdout and "standard LoRA adapter" in listed.stdout
    done = cli("--adapter_path", str(tmp_path / "tied"), "--output_dir", str(tmp_path / "lora"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"LoRA adapter written to {tmp_path / 'lora'} (peft_type LORA, r=4, lora_alpha=6" in done.stdout
    again = cli("--adapter_path", str(tmp_path / "tied"), "--output_dir", str(tmp_path / "lora"))
    assert again.returncode == 2 and "exists and is not empty; nothing was written" in again.stderr
    assert "Traceback" not in again.stderr

    load = (
        "import sys, torch\n"
        "from peft import PeftConfig, PeftModel\n"
        "from transformers import AutoModelForCausalLM\n"
        f"assert PeftConfig.from_pretrained({str(tmp_path / 'lora')!r}).peft_type == 'LORA'\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(tmp_path / 'lora')!r}).eval()\n"
        "with torch.no_grad():\n"
        f"    logits = model(input_ids=torch.tensor({input_ids.tolist()})).logits\n"
        f"error = (logits - torch.load({str(tmp_path / 'expected.pt')!r})).abs().max().item()\n"
        "print(type(model.base_model).__name__, 'trl_igrpo' in sys.modules, error)\n"
    )
    fresh = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=300, env=env)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    kind, imported, error = fresh.stdout.split()
    assert (kind, imported) == ("LoraModel", "False") and float(error) <= MAX_LOGIT_ERROR


@pytest.mark.slow
def test_training_run_writes_the_export_beside_every_checkpoint_and_push_to_hub_uploads_it(monkeypatch, tmp_path):
    """examples/train_tied_lora.py --export_lora (TRL's SFTTrainer): each checkpoint-N and the final output_dir get a
    lora/ export equal to the adapter saved there, and the folder push_to_hub uploads holds it (Hub calls recorded)."""
    import fnmatch
    import importlib.util
    from types import SimpleNamespace

    uploads = []

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        kept = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in ignore_patterns or ())]
        uploads.append((repo_id, folder_path, sorted(kept)))

    monkeypatch.setattr(
        "huggingface_hub.HfApi.create_repo", lambda self, repo_id, **kw: SimpleNamespace(repo_id=repo_id)
    )
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", upload_folder)
    path = Path(__file__).resolve().parent.parent / "examples" / "train_tied_lora.py"
    spec = importlib.util.spec_from_file_location("train_tied_lora", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(example)
    output_dir = tmp_path / "run"
    trainer = example.main([
        "--output_dir", str(output_dir), "--max_steps", "2", "--save_steps", "1", "--export_lora", "--push_to_hub",
        "--hub_model_id", "me/tiny-tied-lora", "--hub_strategy", "end", "--use_cpu", "--bf16", "false",
        "--report_to", "none", "--gradient_checkpointing", "false", "--per_device_train_batch_size", "8",
        "--learning_rate", "2e-2", "--max_length", "64",
    ])  # fmt: skip

    base_dir = trainer.model.peft_config["default"].base_model_name_or_path
    input_ids = torch.tensor([[1, 5, 9, 17, 33, 2]])
    for folder in (output_dir / "checkpoint-1", output_dir / "checkpoint-2", output_dir):
        tied = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(folder))
        error = (_lora_logits(base_dir, folder / EXPORT_SUBDIR, input_ids) - _logits(tied, input_ids)).abs().max()
        assert error <= MAX_LOGIT_ERROR, folder
    trained = _logits(trainer.model, input_ids)
    pushed = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), str(output_dir), subfolder="lora"
    )
    assert type(pushed.base_model).__name__ == "LoraModel"  # how a user loads the pushed export from the Hub repo
    torch.testing.assert_close(_logits(pushed, input_ids), trained, rtol=0, atol=MAX_LOGIT_ERROR)

    (repo_id, folder, files) = uploads[-1]
    assert repo_id == "me/tiny-tied-lora" and Path(folder) == output_dir
    assert {"adapter_model.safetensors", "adapter_config.json", "lora/adapter_model.safetensors",
            "lora/adapter_config.json", "lora/README.md"} <= set(files)  # fmt: skip
    assert not any(f.startswith("checkpoint-") for f in files)
    assert json.loads((output_dir / "lora/adapter_config.json").read_text())["peft_type"] == "LORA"
