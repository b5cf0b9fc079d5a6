"""The accelerate configs in examples/accelerate_configs load with accelerate's own loader and say what they claim."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate_configs"


def _load(name: str) -> ClusterConfig:
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    return config


def test_every_config_is_tested():
    assert {p.name for p in CONFIGS.glob("*.yaml")} == {
        "ddp.yaml",
        "fsdp2.yaml",
        "deepspeed_zero3.yaml",
        "multi_node.yaml",
    }


def test_ddp():
    config = _load("ddp.yaml")
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert (config.num_machines, config.num_processes) == (1, 8)
    assert config.mixed_precision == "bf16" and not config.use_cpu


def test_fsdp2():
    config = _load("fsdp2.yaml")
    assert config.distributed_type == DistributedType.FSDP
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # save_model writes one consolidated file
    assert config.num_processes == 8 and config.mixed_precision == "bf16"


def test_deepspeed_zero3():
    config = _load("deepspeed_zero3.yaml")
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 3
    assert config.deepspeed_config["zero3_save_16bit_model"] is True
    assert config.num_processes == 8 and config.mixed_precision == "bf16"


def test_multi_node_two_nodes_of_eight():
    config = _load("multi_node.yaml")
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_machines == 2
    assert config.num_processes == 16  # all processes on all machines
    assert config.num_processes // config.num_machines == 8
    assert config.main_process_ip and config.main_process_port == 29500
    assert "vLLM" in (CONFIGS / "multi_node.yaml").read_text()  # the separate generation node is documented


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp2.yaml", "deepspeed_zero3.yaml", "multi_node.yaml"])
def test_accelerate_launch_accepts_config(name):
    """`accelerate launch --config_file` reads the file into its launch arguments without complaint."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "script.py"])
    args, defaults, _ = _validate_launch_command(args)
    config = _load(name)
    assert args.num_processes == config.num_processes
    assert args.num_machines == config.num_machines
    assert args.mixed_precision == "bf16"
