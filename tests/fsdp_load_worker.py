"""Run under torchrun by tests/test_distributed.py: prepare an FSDP2 run from a config file
(the meta-device build + shard filling of the real code path), then write the gathered whole
weights of policy and reference, and the run's messages, for the test to compare."""

from __future__ import annotations

import sys

import torch

from directpo.config import load_config
from directpo.distributed import barrier, full_model_state, setup, teardown
from directpo.reference import FrozenModelReference
from directpo.run import prepare_run


def main(config_file: str, out_file: str) -> None:
    config = load_config(config_file)
    world = setup("fsdp")
    lines: list[str] = []
    run = prepare_run(config, None, None, world, lines.append)
    states = {"policy": full_model_state(run.scorer)}
    if isinstance(run.reference, FrozenModelReference):
        states["reference"] = full_model_state(run.reference.scorer)
    if world.is_main:
        torch.save({"states": states, "lines": lines}, out_file)
    barrier(world)  # as train() does: no rank tears the group down while another still works
    teardown(world)


if __name__ == "__main__":
    main(*sys.argv[1:3])
