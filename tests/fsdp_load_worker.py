"""Run under torchrun by tests/test_distributed.py: prepare an FSDP2 run from a config file
(the meta-device build + shard filling of the real code path), then write the gathered whole
weights of policy and reference, and the run's messages, for the test to compare. Takes pairs
of (config file, output file): one launch prepares several runs in turn (a launch's start-up is
most of its time)."""

from __future__ import annotations

import gc
import sys

import torch

from directpo.config import load_config
from directpo.distributed import barrier, setup, teardown
from directpo.reference import FrozenModelReference
from directpo.run import prepare_run
from directpo.sharded_state import full_model_state


def main(*files: str) -> None:
    world = setup("fsdp")
    for config_file, out_file in zip(files[::2], files[1::2], strict=True):
        config = load_config(config_file)
        lines: list[str] = []
        run = prepare_run(config, None, None, world, lines.append)
        states = {"policy": full_model_state(run.scorer)}
        if isinstance(run.reference, FrozenModelReference):
            states["reference"] = full_model_state(run.reference.scorer)
        if world.is_main:
            torch.save({"states": states, "lines": lines}, out_file)
        barrier(world)  # as train() does: no rank tears the group down while another works
    teardown(world)
    gc.freeze()  # (the exit's collections of torch's heap: seconds, not what is tested)


if __name__ == "__main__":
    main(*sys.argv[1:])
