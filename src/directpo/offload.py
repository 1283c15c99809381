"""Activation offloading (``activation_offloading``, TRL's option): the tensors the policy's
training forward saves for its backward pass are held in CPU memory, and copied back to the GPU
when backward needs them. GPU memory then holds the weights, the optimizer state and the layer
being computed, not every layer's activations: a larger batch or longer pairs fit, for the
PCIe traffic of two copies of each activation.

torch's own mechanism does the work: ``saved_tensors_hooks`` (what
``torch.autograd.graph.save_on_cpu`` is built on) with a pack hook that copies a saved tensor
into pinned host memory, asynchronously on the compute stream, and an unpack hook that copies
it back, asynchronously too. ``save_on_cpu`` itself copies *every* saved tensor, and the
tensors a linear layer saves include its weight (``weight.t()``, a view of the parameter):
every weight would cross PCIe twice per step and be held a second time in host memory. So a
saved tensor stays where it is when it is

* a parameter or a view of one (a LoRA base's frozen weights, FSDP2's gathered ones alike:
  their memory is held anyway, or freed and gathered again by FSDP2 itself);
* smaller than ``MIN_BYTES`` (masks, indices, norms' statistics: the copy costs more than it
  frees);
* a broadcast view (a stride of 0: an attention mask expanded over the heads), whose copy
  would hold every repeated element;
* not on the run's accelerator (on a CPU-only run nothing is copied: the activations already
  are in CPU memory).

Only the policy's training forward runs under the hooks (``step.batch_logps``): the reference's
and evaluation's forwards run without gradient and save nothing, and generation keeps its KV
cache where it is. Non-reentrant gradient checkpointing nests its own hooks inside these: a
checkpointed layer saves only its input, which is offloaded, and recomputes the rest in backward.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

MIN_BYTES = 1024  # TRL's min_offload_size: below this a copy frees nothing worth its cost


def offloaded(tensor: torch.Tensor, device_type: str | None, min_bytes: int = MIN_BYTES) -> bool:
    """Whether a tensor saved for backward is copied to host memory (see the module's doc);
    ``device_type`` None: none is (a CPU run)."""
    if tensor.device.type != device_type or tensor.is_sparse:
        return False
    if tensor.element_size() * tensor.nelement() < min_bytes:
        return False
    dims = zip(tensor.stride(), tensor.shape, strict=True)
    if any(stride == 0 and size > 1 for stride, size in dims):
        # a broadcast view (expand): CUDA's memory-efficient attention saves its mask expanded
        # over the heads; a copy would hold every repeat, on the host and back on the GPU in
        # backward, where the view costs nothing beside the tensor it shows
        return False
    base = tensor if tensor._base is None else tensor._base  # weight.t() is a view of weight
    return not isinstance(base, torch.nn.Parameter)


class OffloadActivations(torch.autograd.graph.saved_tensors_hooks):
    """A reusable context: the tensors that autograd saves inside it and that ``offloaded``
    picks go to host memory (pinned for CUDA tensors) until backward unpacks them.

    A tensor saved again while it is alive and unchanged (a decoder layer's normed hidden state,
    saved by q_proj, k_proj and v_proj; the MLP input by gate_proj and up_proj) shares its first
    host copy: one copy to the host, not three. ``same`` finds it: the key is where the data is
    (storage, offset, shape, strides) and its version (an in-place write makes another), valid
    while the first tensor lives (its memory cannot be another tensor's then), forgotten when
    the context exits.

    ``device_type``: whose tensors move: the run's accelerator ("cuda"), None on a CPU run
    (the hooks run, nothing moves); a test passes "cpu" to send CPU tensors through the copies.
    ``saved`` / ``moved``: how many saved tensors the hooks saw and copied, over the context's
    life (the tests and the GPU check read them).
    """

    def __init__(self, device_type: str | None = "cuda", min_bytes: int = MIN_BYTES) -> None:
        self.device_type = device_type
        self.saved = 0
        self.moved = 0
        self.same: dict[tuple, tuple[weakref.ref, tuple[torch.device, torch.Tensor]]] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor | tuple[torch.device, torch.Tensor]:
            self.saved += 1
            if not offloaded(tensor, device_type, min_bytes):
                # kept where it is, detached: a node that saves its own output (exp, rsqrt)
                # would otherwise hold that output, whose grad_fn is the node: a cycle through
                # C++ that only backward breaks, so a forward that never reached backward (a
                # step out of memory that auto_find_batch_size runs again, a failed step in a
                # notebook) kept its whole graph, the host copies with it, for good
                return tensor.detach()
            key = _data_key(tensor)
            first, packed = self.same.get(key, (None, None))
            if first is not None and first() is not None and packed is not None:
                return packed
            self.moved += 1
            packed = tensor.device, to_host(tensor)
            self.same[key] = (weakref.ref(tensor), packed)
            return packed

        def unpack(packed: torch.Tensor | tuple[torch.device, torch.Tensor]) -> torch.Tensor:
            if isinstance(packed, torch.Tensor):
                return packed
            device, host = packed
            # non-blocking from pinned memory: queued on the stream backward runs on, so the
            # kernel that reads it waits for it; the host buffer's reuse waits too (torch's
            # host allocator records the copy)
            return host.to(device, non_blocking=host.is_pinned())

        super().__init__(pack, unpack)

    def __exit__(self, *exc: object) -> None:
        self.same.clear()  # the host copies are the graph's alone now
        super().__exit__(*exc)


def _data_key(tensor: torch.Tensor) -> tuple:
    """Which data a tensor shows: equal keys of two live tensors are the same values."""
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
        tensor._version,
    )


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of ``tensor``, same strides; from a CUDA tensor into pinned memory without
    waiting for it: the copy is queued on the current stream, after the kernel that wrote the
    tensor, and before any kernel that reuses its memory once autograd lets it go."""
    pinned = tensor.device.type == "cuda"
    host = torch.empty_like(tensor, device="cpu", pin_memory=pinned)
    return host.copy_(tensor, non_blocking=pinned)


def activation_offload(
    enabled: bool, device: torch.device, echo: Callable[[str], None]
) -> OffloadActivations | None:
    """The run's hooks under ``activation_offloading``, None without it. On a CPU the
    activations already are in host memory: the hooks run, nothing moves, and a note says so
    (the same config then runs on a GPU as it was meant to)."""
    if not enabled:
        return None
    if device.type == "cpu":
        echo("note: activation_offloading has no effect on cpu: activations are in host memory")
        return OffloadActivations(None)
    return OffloadActivations(device.type)
