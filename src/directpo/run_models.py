"""A run's models set up, the part of ``prepare_run`` (run.py) that handles models: the
policy and reference loaded in the run's precision (with the reference's float32 weights where
held-out pairs are evaluated in float32), checked against the tokenizer's vocabulary and the
data's longest sequence, wrapped for scoring (DDP / FSDP2, FSDP's meta-built models filled
shard by shard), compiled and given their batch layout, and given the optimizer and schedule.
Each step is a function of its own, reading and filling one ``RunModels``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from directpo.batching import Layout
from directpo.config import DPOConfig
from directpo.distributed import World, materialize, release_host_memory, wrap
from directpo.guard import check_trainable
from directpo.logprobs import SequenceScorer
from directpo.model_checks import (
    check_compilation,
    check_heads,
    choose_layout,
    trained_positions_notes,
)
from directpo.model_fit import check_generation_room, check_positions, check_vocabulary
from directpo.model_identity import loaded_model_files
from directpo.optimizers import build_optimizer, no_decay_ids
from directpo.pair_store import longest_sequence, with_images
from directpo.precision import (
    FrozenMasters,
    MasterWeights,
    PrecisionPolicy,
    evaluates_in_float32,
)
from directpo.precompute import weights_fingerprint
from directpo.reference import (
    AdapterReference,
    FrozenModelReference,
    PolicyModelReference,
    ReferenceProvider,
    load_policy_and_reference,
)
from directpo.run_data import RunData
from directpo.sources import FixedPairs, OnlineRounds
from directpo.sync import in_ref_adapter
from directpo.vision import attach_rope_positions


@dataclass
class RunModels:
    """The run's models as ``prepare_run``'s steps set them up: loaded (``load_models``),
    then wrapped for scoring (``wrap_models``) and given an optimizer (``build_run_optimizer``)."""

    policy: torch.nn.Module
    reference: ReferenceProvider | None
    eval_float32: bool  # held-out pairs computed in float32 (eval_dtype)
    reference_masters: FrozenMasters | None
    precision: PrecisionPolicy  # read once: config.precision builds a new one each time
    loaded_files: dict[str, Any]  # model_identity.loaded_model_files, read right after loading
    masters: MasterWeights | None = None
    scorer: torch.nn.Module | None = None
    trainable: list[torch.Tensor] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None

    @property
    def reference_model(self) -> torch.nn.Module | None:
        return getattr(self.reference, "model", None)

    @property
    def separate_reference(self) -> list[torch.nn.Module]:
        """The reference model when it is not the policy (with its adapters off): [] or [it]."""
        model = self.reference_model
        return [model] if model not in (None, self.policy) else []


def load_models(config: DPOConfig, data: RunData, world: World, peft_config: Any) -> RunModels:
    """The policy and reference in the run's precision, and the reference's float32 weights
    where held-out pairs are evaluated in float32."""
    precision = config.precision
    sharded = world.mode == "fsdp"  # loaded on CPU; fully_shard moves the shards
    eval_float32 = evaluates_in_float32(
        config.eval_dtype, precision.compute, config.attn_implementation, sharded
    ) and any(pair_set.pairs for pair_set in data.evaluations.values())  # (no held-out: no cost)
    # the reference's float32 weights serve the held-out pairs' losses and eval_generate's KL
    # (its samples scored in float32 too): one loaded only for online rounds' KL keeps none
    reference_float32 = eval_float32 and (config.loss_needs_reference or config.eval_generate > 0)
    policy, reference = load_policy_and_reference(
        config, world.device, precision, sharded=sharded, peft_config=peft_config,
        reference_dtype=torch.float32 if reference_float32 else None,
    )  # fmt: skip
    # the files as loaded (after: a hub id's first load downloads its weights)
    loaded_files = loaded_model_files(config)
    reference_masters = None  # the reference's float32 weights, for float32 evaluation
    # a continued adapter's float32 start (an adapter's size) for the reference train() returns
    keeps_start = precision.mixed and not sharded and not config.sync_ref_model  # (not TR-DPO's)
    if reference_float32 and isinstance(reference, FrozenModelReference):
        # (TR-DPO: the start its first sync mixes from; sync.followed_weights keeps them all)
        reference_masters = FrozenMasters(reference.model, precision.compute) or None
    elif isinstance(reference, AdapterReference) and (reference_float32 or keeps_start):
        reference_masters = FrozenMasters(policy, precision.compute, in_ref_adapter) or None
    return RunModels(policy, reference, eval_float32, reference_masters, precision, loaded_files)


def named_models(
    config: DPOConfig, data: RunData, models: RunModels, echo: Callable[[str], None]
) -> list[tuple[str, str, torch.nn.Module]]:
    """The policy and a separate reference, each with its option and path; 3D rotary models
    given their image prompts' positions, and the tokenizer checked against their vocabularies."""
    for pair_set in (data.train, *data.evaluations.values()):  # 3D rotary models: the image
        attach_rope_positions(models.policy, with_images(pair_set.pairs))  # prompts' positions
    named = [("model_name_or_path", config.model_name_or_path, models.policy)]
    if models.separate_reference:
        named.append(("ref_model_name_or_path", config.reference_path, models.reference_model))
    for note in check_vocabulary(data.tokenizer, config.tokenizer_path, named):
        echo(note)
    return named


def check_lengths_fit(
    config: DPOConfig,
    data: RunData,
    named: list[tuple[str, str, torch.nn.Module]],
    pair_source: FixedPairs | OnlineRounds,
    echo: Callable[[str], None],
) -> int | None:
    """The longest sequence checked against the models' position tables (and sampling's new
    tokens); returned as the layout's bound (None: online rounds sample without a limit)."""
    pair_sets = [data.train, *data.evaluations.values()]
    longest: int | None = max((longest_sequence(s.pairs) for s in pair_sets), default=0)
    check_positions(named, longest)  # sampling cuts its prompts to a position table itself
    for note in trained_positions_notes(named, longest):
        echo(note)
    if config.eval_generate:  # ... but its new tokens must fit
        check_generation_room(named, config.generate_max_new_tokens, "generate_max_new_tokens")
    elif config.online:
        new_tokens = config.online_sampling[1]
        capped = new_tokens < config.generate_max_new_tokens
        option = "max_completion_length" if capped else "generate_max_new_tokens"
        check_generation_room(named, new_tokens, option)
    if isinstance(pair_source, OnlineRounds):  # sampled later: prompt limit + new tokens
        limit, new_tokens = config.online_sampling
        sampled = None if limit is None else limit + new_tokens
        longest = None if sampled is None else max(longest or 0, sampled)
    return longest


def wrap_models(
    config: DPOConfig,
    world: World,
    models: RunModels,
    pair_source: FixedPairs | OnlineRounds,
    total_steps: int,
    echo: Callable[[str], None],
) -> None:
    """The policy's log-prob module, DDP/FSDP-wrapped (``models.scorer``), and the reference's;
    online rounds sample from the live policy; FSDP's meta-built models filled."""
    precision, reference = models.precision, models.reference
    sharded = world.mode == "fsdp"
    policy_scorer = SequenceScorer(
        models.policy, config.logprob_chunk_tokens, config.ld_alpha,
        router_aux=bool(config.router_aux_loss_coef), wpo=config.use_weighting,
    )  # fmt: skip
    scorer = models.scorer = wrap(policy_scorer, world, precision, config.fsdp_offload)
    if isinstance(pair_source, OnlineRounds):  # rounds sample from the live policy
        pair_source.build_round.policy = models.policy  # type: ignore[attr-defined]
        pair_source.build_round.scorer = scorer  # type: ignore[attr-defined]
        pair_source.build_round.max_steps = total_steps  # type: ignore[attr-defined]
    if isinstance(reference, FrozenModelReference):
        reference.scorer = wrap(reference.scorer, world, precision, config.fsdp_offload)
    elif isinstance(reference, PolicyModelReference) and sharded:
        reference.scorer = scorer  # the sharded policy, run with its adapters off
    if sharded:  # meta-built models get memory and their shards from the files
        _fill_shards(config, world, scorer, reference, echo)


def check_kernels_and_layout(
    config: DPOConfig,
    data: RunData,
    models: RunModels,
    world: World,
    echo: Callable[[str], None],
    longest: int | None,
) -> tuple[bool, Layout]:
    """Whether the models compile (torch_compile), the chunked head checked, and the batch
    layout chosen; returns (compiled, layout)."""
    separate_reference = models.separate_reference
    image_pairs = with_images(data.train.pairs, 2)
    sharded = world.mode == "fsdp"
    runners = (
        [models.scorer, *(models.reference.scorer for _ in separate_reference)] if sharded else []
    )
    compiled = False  # before the checks below run the compiled layers: do they compile?
    if config.torch_compile:
        compiled = check_compilation([models.policy, *separate_reference], echo, runners)
    if config.logprob_chunk_tokens:  # the chunked LM head computes what the model does
        check_heads([models.policy, *separate_reference], echo, runners)
    layout = choose_layout(
        config.layout, [models.policy, *separate_reference], echo, image_pairs, runners, longest
    )
    for runner in runners:  # FSDP2 keeps a root gathered after a forward: back to the shards
        runner.reshard()
    release_host_memory()  # before the optimizer state takes its place
    return compiled, layout


def build_run_optimizer(
    config: DPOConfig, models: RunModels, world: World, total_steps: int
) -> None:
    """What the optimizer updates (the float32 masters, or the trainable parameters), the
    optimizer and the schedule."""
    # after wrapping: FSDP replaces the parameters
    if models.masters is not None:
        trainable = models.masters.parameters()
    else:
        trainable = [p for p in models.scorer.parameters() if p.requires_grad]
    check_trainable(trainable)
    no_decay = no_decay_ids(models.policy, models.masters) if config.weight_decay else set()
    device = None if world.mode == "fsdp" else world.device
    models.trainable = trainable
    models.optimizer = build_optimizer(trainable, config, device, no_decay)
    models.scheduler = config.schedule(models.optimizer, total_steps)


def reference_fingerprint(config: DPOConfig, models: RunModels, world: World) -> str:
    """What the precomputed reference log-probs' cache is keyed by ("" when not precomputed)."""
    if not config.precompute_ref_log_probs:
        return ""
    sharded = world.mode == "fsdp"
    adapter = getattr(models.reference, "adapter", None)
    return weights_fingerprint(models.reference_model, world if sharded else None, adapter)


def _fill_shards(
    config: DPOConfig,
    world: World,
    scorer: torch.nn.Module,
    reference: ReferenceProvider | None,
    echo: Callable[[str], None],
) -> None:
    """FSDP2: the meta-built policy and reference get this rank's shards from their files;
    a model that could not be meta-built was loaded whole by every process (said once)."""
    models = [("model_name_or_path", config.model_name_or_path, scorer)]
    if isinstance(reference, FrozenModelReference):
        models.append(("ref_model_name_or_path", config.reference_path, reference.scorer))
    for key, path, module in models:
        start = time.perf_counter()
        if materialize(module, torch.device("cpu") if config.fsdp_offload else world.device):
            echo(f"fsdp: {key} {path} filled shard by shard ({time.perf_counter() - start:.1f} s)")
        else:
            echo(
                f"fsdp: {key} {path} was loaded whole by every process before sharding (it is "
                "neither a local safetensors folder nor a cached hub model, or it is an adapter "
                "folder, quantized, DoRA, needs from_pretrained arguments, or its tensors need "
                "converting, as fused MoE experts do); host memory is one model per process"
            )
