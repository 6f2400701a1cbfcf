"""configs/accelerate/: every file loads with accelerate's own loader and says what its name says;
the CPU one really launches (the refusal of a step that does not split is the cheapest run)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from r1kit.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"

EXPECTED = {  # file: (engine, machines)
    "cpu_gloo.yaml": (DistributedType.MULTI_GPU, 1),
    "ddp.yaml": (DistributedType.MULTI_GPU, 1),
    "ddp_multinode.yaml": (DistributedType.MULTI_GPU, 2),
    "fsdp2.yaml": (DistributedType.FSDP, 1),
    "fsdp2_multinode.yaml": (DistributedType.FSDP, 2),
    "zero2.yaml": (DistributedType.DEEPSPEED, 1),
    "zero3.yaml": (DistributedType.DEEPSPEED, 1),
}


def test_every_config_is_listed():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate(name):
    cfg = load_config_from_file(str(CONFIGS / name))
    engine, machines = EXPECTED[name]
    assert cfg.distributed_type == engine and cfg.num_machines == machines
    assert cfg.num_processes % machines == 0 and cfg.num_processes >= 2
    if machines > 1:
        assert cfg.main_process_ip and cfg.main_process_port
    if engine == DistributedType.FSDP:
        f = cfg.fsdp_config
        assert f["fsdp_version"] == 2 and f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                                reshard_after_forward=f["fsdp_reshard_after_forward"],
                                                state_dict_type=f["fsdp_state_dict_type"])
        assert plugin.fsdp_version == 2
    if engine == DistributedType.DEEPSPEED:
        assert cfg.deepspeed_config["zero_stage"] == int(name[4])
    # the usage line in the file's header names this file
    assert f"configs/accelerate/{name}" in (CONFIGS / name).read_text()


@pytest.mark.slow
def test_the_cpu_config_launches_two_processes(tmp_path, tiny_dir):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name_or_path": str(tiny_dir)}, "train": {"prompts_per_step": 3}}))
    p = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_gloo.yaml"),
         "--main_process_port", str(free_port()), "-m", "r1kit", "grpo", str(cfg), f"output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode != 0
    assert "train.prompts_per_step=3 does not split into whole groups over 2 processes (use a multiple of 2, e.g. 4)" in p.stderr
    assert not (tmp_path / "out").exists()
