"""Data-parallel and sharded training on PyTorch's own engine: torchrun + DDP or FSDP2.

Launch the usual config on N processes::

    torchrun --nproc_per_node 8 -m directpo train cfg.yaml          # one node
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
        --nproc_per_node 8 -m directpo train cfg.yaml                # on each node (rank 0, 1)
    accelerate launch --num_processes 8 -m directpo train cfg.yaml   # sets the same variables

What is kept equal to one process with a batch ``world_size`` times larger:

* The global micro-batch (``per_device_train_batch_size × world_size`` pairs) is the one a
  single process would draw; rank r takes its r-th contiguous slice. The loss of a step is the
  sum over all its pairs divided by the step's global pair count, times ``world_size`` because
  DDP and FSDP average gradients over ranks: the gradient is the single-process gradient.
* Metrics are sums over pairs all-reduced across ranks before they are averaged.
* A rank whose slice is empty (the epoch's last, short micro-batch) computes a pair with weight
  0, so that every rank runs the same collectives.

``distributed: fsdp`` shards every transformer block (``_no_split_modules``) and then the rest
with ``fully_shard``; under ``dtype: bfloat16`` the sharded weights are the float32 masters,
computed in bf16 through a ``MixedPrecisionPolicy`` (gradients reduced in float32). The
reference model, unless precomputed, is sharded the same way. ``distributed: ddp`` replicates
the model.

The code lives by concern (docs/design.md): ``launchers`` (what the launcher's environment
says), ``process_group`` (the group's life: setup, teardown), ``collectives`` (on_main,
broadcast, sums, a rank's slice), ``data_parallel`` (DDP / FSDP2 wrapping) and
``sharded_weights`` (an FSDP2 model's weights read and written from its shards); this module
names them all, as the rest of directpo imports them.
"""

import torch.distributed as dist  # noqa: F401 - tests patch its functions as distributed.dist's

from directpo.collectives import (
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast,
    error_key,
    on_main,
    shard,
)
from directpo.data_parallel import (
    grad_norm_value,
    gradient_sync,
    release_host_memory,
    unsharded_root,
    unwrap,
    wrap,
)
from directpo.launchers import check_launcher_precision, launched_size, launcher_mode
from directpo.model_preparation import decoder_layers
from directpo.process_group import (
    SINGLE_PROCESS,
    World,
    launcher_store,
    release_sharding_caches,
    setup,
    teardown,
)
from directpo.sharded_weights import (
    checkpoint_key,
    materialize,
    save_sharded_adapter,
    save_sharded_model,
)

__all__ = [
    "SINGLE_PROCESS",
    "World",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast",
    "check_launcher_precision",
    "checkpoint_key",
    "decoder_layers",
    "error_key",
    "grad_norm_value",
    "gradient_sync",
    "launched_size",
    "launcher_mode",
    "launcher_store",
    "materialize",
    "on_main",
    "release_host_memory",
    "release_sharding_caches",
    "save_sharded_adapter",
    "save_sharded_model",
    "setup",
    "shard",
    "teardown",
    "unsharded_root",
    "unwrap",
    "wrap",
]
