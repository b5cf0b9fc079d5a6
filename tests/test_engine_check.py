"""No silent engine downgrade: `check_requested_engine` stops a run whose requested FSDP/DeepSpeed is not running.

The unit tests use a fake accelerator and environment (no launch). Two trainer tests show the one-line wiring in
`GRPOBaseTrainer` and `RPOTrainer` in a single process, and two two-process launches reproduce the real downgrades
this guards against: accelerate's FSDP config on CPU (DDP instead, accelerate 1.15), and a ZeRO-3 config under
`ACCELERATE_USE_CPU=true` (DeepSpeed skipped while the model was already loaded partitioned).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType
from helpers import deepspeed_cpu_env, launch_two_processes

from trl_igrpo.utils.distributed import ALLOW_ENGINE_FALLBACK_ENV, EngineFallbackError, check_requested_engine

LAUNCHED = {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}  # what `accelerate launch` / torchrun set on a rank


def _accelerator(distributed_type, main=True):
    return SimpleNamespace(distributed_type=distributed_type, is_main_process=main)


@pytest.fixture(autouse=True)
def _no_zero3_load(monkeypatch):
    monkeypatch.setattr("trl_igrpo.utils.distributed._zero3_partitioned_load", lambda: False)


@pytest.mark.parametrize(
    ("environ", "distributed_type"),
    [
        ({}, DistributedType.MULTI_CPU),
        ({}, DistributedType.NO),
        ({"ACCELERATE_USE_FSDP": "false", **LAUNCHED}, DistributedType.MULTI_GPU),
        ({"ACCELERATE_USE_FSDP": "true", **LAUNCHED}, DistributedType.FSDP),
        ({"ACCELERATE_USE_DEEPSPEED": "true", **LAUNCHED}, DistributedType.DEEPSPEED),
        ({"ACCELERATE_USE_FSDP": "1", "ACCELERATE_USE_DEEPSPEED": "1", **LAUNCHED}, DistributedType.DEEPSPEED),
    ],
)
def test_no_request_or_fulfilled_request_is_silent(recwarn, environ, distributed_type):
    check_requested_engine(_accelerator(distributed_type), environ=environ)
    assert not recwarn.list


def test_fsdp_on_cpu_falls_back_to_ddp_raises_with_reason_and_fix():
    environ = {"ACCELERATE_USE_FSDP": "true", "ACCELERATE_USE_CPU": "true", **LAUNCHED}
    with pytest.raises(EngineFallbackError) as error:
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ=environ)
    message = str(error.value)
    assert "FSDP was requested (ACCELERATE_USE_FSDP=true) but accelerate set up MULTI_CPU" in message
    assert "enables FSDP only for GPU-type set-ups" in message and "plain DDP" in message  # why
    assert "deepspeed_zero3.yaml" in message and f"{ALLOW_ENGINE_FALLBACK_ENV}=1" in message  # fixes


def test_deepspeed_under_forced_cpu_names_accelerate_use_cpu():
    environ = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_USE_CPU": "True", **LAUNCHED}
    with pytest.raises(EngineFallbackError, match="DeepSpeed was requested .* set up MULTI_CPU") as error:
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ=environ)
    assert "ACCELERATE_USE_CPU is set" in str(error.value) and "unset ACCELERATE_USE_CPU" in str(error.value)
    assert "build_deepspeed_cpu_ops.py" in str(error.value)


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_single_process_without_launcher_names_the_launcher(variable):
    with pytest.raises(EngineFallbackError, match="not started by a distributed launcher") as error:
        check_requested_engine(_accelerator(DistributedType.NO), environ={variable: "yes"})
    assert "accelerate launch --config_file" in str(error.value)


def test_other_fallbacks_still_raise_naming_what_runs():
    environ = {"ACCELERATE_USE_DEEPSPEED": "true", **LAUNCHED}
    with pytest.raises(EngineFallbackError, match="set up MULTI_GPU"):
        check_requested_engine(_accelerator(DistributedType.MULTI_GPU), environ=environ)


def test_both_requested_and_neither_running_reports_deepspeed_as_accelerate_launch_would_pick_it():
    environ = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_USE_FSDP": "true", **LAUNCHED}
    with pytest.raises(EngineFallbackError, match="^DeepSpeed was requested"):
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ=environ)


def test_opt_out_warns_on_the_main_process_only_and_returns(caplog):
    environ = {"ACCELERATE_USE_FSDP": "true", ALLOW_ENGINE_FALLBACK_ENV: "1", **LAUNCHED}
    with pytest.warns(RuntimeWarning, match="FSDP was requested .* Training anyway"):
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ=environ)
    assert any("Training anyway" in r.getMessage() for r in caplog.records)
    with warnings.catch_warnings(record=True) as other_rank:
        warnings.simplefilter("always")
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU, main=False), environ=environ)
    assert not other_rank  # every rank trains on; one warning is enough


@pytest.mark.parametrize("value", ["0", "false", "", "no"])
def test_opt_out_needs_a_true_value(value):
    environ = {"ACCELERATE_USE_FSDP": "true", ALLOW_ENGINE_FALLBACK_ENV: value, **LAUNCHED}
    with pytest.raises(EngineFallbackError):
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ=environ)


def test_zero3_partitioned_model_without_deepspeed_raises_even_with_opt_out(monkeypatch):
    monkeypatch.setattr("trl_igrpo.utils.distributed._zero3_partitioned_load", lambda: True)
    environ = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_USE_CPU": "true", ALLOW_ENGINE_FALLBACK_ENV: "1"}
    with pytest.raises(EngineFallbackError, match="already loaded ZeRO-3-partitioned .* does not apply"):
        check_requested_engine(_accelerator(DistributedType.MULTI_CPU), environ={**environ, **LAUNCHED})


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(EngineFallbackError, match="not started by a distributed launcher"):
        check_requested_engine(_accelerator(DistributedType.NO))


# ----------------------------------------------------------------------------------------------------------------------
# The trainers call it right after TRL's constructor (single process: FSDP requested, no launcher).
@pytest.fixture
def fsdp_requested_without_launcher(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    for variable in ("LOCAL_RANK", "WORLD_SIZE", "RANK", ALLOW_ENGINE_FALLBACK_ENV):
        monkeypatch.delenv(variable, raising=False)


def test_grpo_base_trainer_stops_before_training(tiny_model_dir, tmp_path, fsdp_requested_without_launcher):
    from datasets import Dataset

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs

    args = IGRPOConfig(
        output_dir=str(tmp_path), **cpu_training_kwargs(), per_device_train_batch_size=2, num_generations=2,
        num_drafts=2, max_completion_length=4, max_steps=1,
    )  # fmt: skip
    dataset = Dataset.from_list([{"prompt": f"{i} + {i} =", "solution": str(2 * i)} for i in range(4)])
    with pytest.raises(EngineFallbackError, match="FSDP was requested .* set up NO"):
        IGRPOTrainer(model=tiny_model_dir, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                     args=args, train_dataset=dataset)  # fmt: skip


def test_rpo_trainer_stops_before_training(tiny_model_dir, tmp_path, fsdp_requested_without_launcher):
    from trl_igrpo.demo.rpo_preferences import build_synthetic_preference_dataset
    from trl_igrpo.rpo import RPOTrainer
    from trl_igrpo.rpo.config import RPOConfig
    from trl_igrpo.testing import cpu_training_kwargs

    args = RPOConfig(output_dir=str(tmp_path), **cpu_training_kwargs(), max_length=64, max_steps=1)
    with pytest.raises(EngineFallbackError, match="FSDP was requested .* set up NO"):
        RPOTrainer(model=tiny_model_dir, args=args, train_dataset=build_synthetic_preference_dataset(4))


# ----------------------------------------------------------------------------------------------------------------------
# The real downgrades, in two processes.
def _worker(model_dir: str, out_dir: str) -> None:
    from datasets import Dataset

    from trl_igrpo import IGRPOConfig, IGRPOTrainer
    from trl_igrpo.testing import cpu_training_kwargs

    args = IGRPOConfig(
        output_dir=out_dir, **cpu_training_kwargs(), per_device_train_batch_size=2, num_generations=2, num_drafts=2,
        max_completion_length=4, max_steps=1,
    )  # fmt: skip
    dataset = Dataset.from_list([{"prompt": f"{i} + {i} =", "solution": str(2 * i)} for i in range(8)])
    try:
        IGRPOTrainer(model=model_dir, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                     train_dataset=dataset)  # fmt: skip
    except EngineFallbackError as error:
        rank = os.environ.get("RANK", "0")
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"error": str(error)}))
        raise  # both ranks stop the same way, before any collective of the training loop


def _config(name: str, directory: Path) -> Path:
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "examples" / "accelerate_configs" / name).read_text())
    config.update(use_cpu=True, num_processes=2, mixed_precision="no")
    (directory / name).write_text(yaml.safe_dump(config))
    return directory / name


def _launch_expecting_fallback(tiny_model_dir, tmp_path, config: str, extra_env: dict) -> list[str]:
    result = launch_two_processes(
        __file__, tiny_model_dir, tmp_path, config_file=_config(config, tmp_path), extra_env=extra_env, timeout=300
    )
    assert result.returncode != 0, "the launch trained although the requested engine was not running"
    assert "EngineFallbackError" in result.stderr, result.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text())["error"] for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_fsdp_config_on_cpu_stops_instead_of_training_as_ddp(tiny_model_dir, tmp_path):
    errors = _launch_expecting_fallback(tiny_model_dir, tmp_path, "fsdp2.yaml", {"ACCELERATE_USE_CPU": "true"})
    assert errors[0] == errors[1]
    assert errors[0].startswith("FSDP was requested (ACCELERATE_USE_FSDP=true) but accelerate set up MULTI_CPU")


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_zero3_config_under_forced_cpu_stops_before_the_partitioned_model_crashes(tiny_model_dir, tmp_path):
    env = {**deepspeed_cpu_env(), "ACCELERATE_USE_CPU": "true"}  # the trap: `--cpu` / ACCELERATE_USE_CPU=true
    errors = _launch_expecting_fallback(tiny_model_dir, tmp_path, "deepspeed_zero3.yaml", env)
    assert errors[0] == errors[1]
    assert "DeepSpeed was requested" in errors[0] and "ACCELERATE_USE_CPU is set" in errors[0]
    assert "already loaded ZeRO-3-partitioned" in errors[0]  # without the check: "'weight' must be 2-D" mid-rollout


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
