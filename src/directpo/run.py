"""Everything a training run sets up once, in the order it is needed: ``prepare_run``.

config checks -> output folder -> data -> tokenizer -> token ids -> policy + reference (in the
run's precision) -> layout -> optimizer, schedule -> precomputed reference -> (resume) ->
metrics logger. The loop (trainer.py) then only reads and updates the ``Run``. Each step is a
function of its own; each step's pairs come from run_pair_source.py, the precomputed reference
pass from precompute.py.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from directpo.batching import Layout
from directpo.best import BestModel, sampled_metrics
from directpo.callers import spell_setting
from directpo.checkpoint import write_or_stop
from directpo.config import DPOConfig
from directpo.distributed import World, materialize, release_host_memory, wrap
from directpo.early_rows import with_rows
from directpo.errors import ConfigError
from directpo.free_space import check_free_space, disk_size
from directpo.guard import UpdateProbe, check_trainable
from directpo.logprobs import SequenceScorer
from directpo.model_checks import (
    check_compilation,
    check_heads,
    choose_layout,
    trained_positions_notes,
)
from directpo.model_fit import check_generation_room, check_positions, check_vocabulary
from directpo.model_identity import loaded_model_files
from directpo.models import resolve_router_aux
from directpo.node_tokenizing import node_turn
from directpo.offload import OffloadActivations, activation_offload
from directpo.optimizers import build_optimizer, no_decay_ids
from directpo.outputs import OutputLock, model_files, prepare_output_dir, remove
from directpo.pair_store import longest_sequence, with_images
from directpo.precision import (
    FrozenMasters,
    MasterWeights,
    PrecisionPolicy,
    evaluates_in_float32,
    float32_compute,
)
from directpo.precompute import (
    precompute_run_reference,
    weights_fingerprint,
)
from directpo.reference import (
    AdapterReference,
    FrozenModelReference,
    PolicyModelReference,
    ReferenceProvider,
    load_policy_and_reference,
)
from directpo.resume import resume
from directpo.run_data import RunData, load_run_data
from directpo.run_pair_source import build_pair_source
from directpo.sources import FixedPairs, OnlineRounds, PairSet
from directpo.start_line import start_line
from directpo.start_notes import model_drops_out, start_notes
from directpo.step import PairStats, eval_set_metrics, evaluate
from directpo.sync import in_ref_adapter
from directpo.tracking import MetricsLogger
from directpo.trainer_state import training_flos
from directpo.vision import attach_rope_positions


@dataclass
class Run:
    """The state of one training run: set up once by ``prepare_run``, read by the loop."""

    config: DPOConfig
    world: World
    output_dir: Path
    echo: Callable[[str], None]
    tokenizer: Any
    processor: Any  # a vision-language model's: saved with the model (None for text models)
    train_summary: str  # what the model card says of the data (its texts are not kept)
    train: PairSet
    evals: dict[str, PairSet]  # held-out pairs by set name ("": the one unnamed set)
    eval_prompts: list[Any]
    eval_rows: list[dict[str, Any]]  # the held-out prompts' other columns, for reward_fn
    reward_fn: Callable[..., Any] | None
    precision: PrecisionPolicy
    policy: torch.nn.Module  # the Hugging Face (or peft) model
    scorer: torch.nn.Module  # the policy's log-prob module, DDP/FSDP-wrapped when distributed
    reference: ReferenceProvider | None  # what the losses read (None: reference-free)
    kl_reference: ReferenceProvider | None  # what sampled completions' KL is measured against
    masters: MasterWeights | None  # float32 masters under one-process / DDP mixed precision
    trainable: list[torch.Tensor]  # what the optimizer updates (masters, or the parameters)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    source: FixedPairs | OnlineRounds  # each step's pairs (sources.py)
    layout: Layout
    pad_id: int
    total_steps: int
    probe: UpdateProbe
    start_step: int = 0
    evaluation_pending: bool = False  # the resumed step's evaluation failed (its labeller)
    logged_before: list[dict[str, Any]] = field(default_factory=list)  # the checkpoint's log
    from_python: tuple[str, ...] = ()  # train_dataset / eval_dataset given to train()
    logger: MetricsLogger = field(init=False)
    window: PairStats = field(default_factory=PairStats)  # metrics since the last log line
    num_tokens: int = 0  # prompt + completion tokens of every sequence trained on (TRL's)
    total_flos: float = 0.0  # transformers' estimate: 6 × parameters × tokens forwarded
    window_start: float = field(default_factory=time.perf_counter)
    train_start: float = field(default_factory=time.perf_counter)  # the loop's first step
    nonfinite_in_a_row: int = 0
    update_checked: bool = False  # the first real update was checked (guard.py)
    best: BestModel = field(default_factory=BestModel)  # load_best / early stopping (best.py)
    start_sample: torch.Tensor | None = None  # sampled weights at start, when saving rounds them
    micro_split: int = 1  # auto_find_batch_size: each micro-batch run in this many pieces
    eval_float32: bool = False  # held-out pairs computed in float32 (eval_dtype)
    reference_masters: FrozenMasters | None = None  # the reference's float32 weights (frozen)
    offload: OffloadActivations | None = None  # activation_offloading's hooks (offload.py)
    # the reference's and a LoRA policy's base's files as loaded (model_identity.model_files):
    # a checkpoint records them, not what the folder holds by then (a newer revision downloaded)
    model_files: dict[str, Any] = field(default_factory=dict)

    @property
    def sharded(self) -> bool:
        return self.world.mode == "fsdp"

    @functools.cached_property
    def flops_per_token(self) -> float:
        """transformers' training FLOPs per token forwarded (trainer_state.training_flos): the
        policy's parameters counted once, not at every step (a walk over every module)."""
        return training_flos(self.policy, 1)


@dataclass
class _Models:
    """The run's models as ``prepare_run``'s steps set them up: loaded (``_load_models``),
    then wrapped for scoring (``_wrap_models``) and given an optimizer (``_build_optimizer``)."""

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


def prepare_run(
    config: DPOConfig,
    train_dataset: Any,
    eval_dataset: Any,
    world: World,
    echo: Callable[[str], None],
    peft_config: Any = None,
    lock: OutputLock | None = None,
) -> Run:
    """Everything a run sets up once; ``lock`` (rank 0's) is taken on ``output_dir``."""
    output_dir = Path(config.output_dir)
    replaced = _claim_output_dir(config, train_dataset, eval_dataset, world, lock, echo)
    set_seed(config.seed)
    data = load_run_data(
        config, train_dataset, eval_dataset, world.device, echo, world.is_main, world.size,
        node_turn(world),
    )  # fmt: skip
    models = _load_models(config, data, world, peft_config)
    config = resolve_router_aux(config, models.policy, echo)
    named = _named_models(config, data, models, echo)
    if models.precision.mixed and world.mode != "fsdp":  # FSDP2 keeps them as its shards
        streaming = world.mode != "ddp"
        models.masters = MasterWeights(models.policy, models.precision.compute, streaming=streaming)
    pair_source = build_pair_source(config, data, world, output_dir)
    total_steps = pair_source.total_steps(config.num_train_epochs, config.max_steps)
    longest = _check_lengths_fit(config, data, named, pair_source, echo)
    del named  # (it holds the reference model, which precompute frees below)
    _wrap_models(config, world, models, pair_source, total_steps, echo)
    reference_weights = _reference_fingerprint(config, models, world)
    compiled, layout = _check_kernels_and_layout(config, data, models, world, echo, longest)
    _build_optimizer(config, models, world, total_steps)
    _echo_start_notes(config, models, pair_source, total_steps, peft_config, echo)
    given = {"train_dataset": train_dataset, "eval_dataset": eval_dataset}
    run = _new_run(
        config, world, echo, data, models,
        pair_source=pair_source, layout=layout, total_steps=total_steps, given=given,
    )  # fmt: skip
    # the run holds what it keeps: the reference model and its float32 masters precompute
    # frees were held on by these locals until prepare_run returned (through a resume's
    # checkpoint load, the peak of a run's memory)
    del models
    if config.precompute_ref_log_probs:
        precompute_run_reference(run, reference_weights)
    # a metric no evaluation logs (a typo, eval_accuracy) failed at the first evaluation
    run.best.check_logged(_evaluation_metrics(run), config)
    check_free_space(output_dir, run.policy, config, freed=disk_size(replaced))
    _replace_or_resume(run, replaced)
    echo(
        start_line(
            config,
            world,
            data,
            pair_source,
            total_steps,
            run.precision,
            run.policy,
            compiled,
            bool(run.offload and run.offload.device_type),
        )  # fmt: skip
    )
    # last: nothing after it can fail (the echo above is the caller's function), so trackers
    # (TensorBoard's thread, a wandb / mlflow run) are only open where the loop closes them
    run.logger = MetricsLogger(
        output_dir, config.report_to, config.record(),
        resume_step=run.start_step if config.resume_from_checkpoint else None,
        write=world.is_main, logged_before=run.logged_before,
    )  # fmt: skip
    return run


def _claim_output_dir(
    config: DPOConfig,
    train_dataset: Any,
    eval_dataset: Any,
    world: World,
    lock: OutputLock | None,
    echo: Callable[[str], None],
) -> list[Path]:
    """The output folder prepared (an earlier run's files to replace returned, removed once
    data and models are known good); a refusal says the data's bad rows with it."""
    try:
        if config.auto_find_batch_size and world.size > 1:  # (one rank alone would retry a step)
            raise ConfigError(
                "auto_find_batch_size works in one process: under torchrun every rank would have "
                "to retry the same step; "
                + spell_setting(
                    "per_device_train_batch_size", "gradient_accumulation_steps", last=" and "
                )
            )
        return prepare_output_dir(Path(config.output_dir), config, lock, echo)
    except ConfigError as error:  # the data's bad rows with it: else the next run's news
        given = {"train_file": train_dataset, "eval_file": eval_dataset}
        raise with_rows(error, config, given) from None


def _load_models(config: DPOConfig, data: RunData, world: World, peft_config: Any) -> _Models:
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
    return _Models(policy, reference, eval_float32, reference_masters, precision, loaded_files)


def _named_models(
    config: DPOConfig, data: RunData, models: _Models, echo: Callable[[str], None]
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


def _check_lengths_fit(
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


def _wrap_models(
    config: DPOConfig,
    world: World,
    models: _Models,
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


def _check_kernels_and_layout(
    config: DPOConfig,
    data: RunData,
    models: _Models,
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


def _build_optimizer(config: DPOConfig, models: _Models, world: World, total_steps: int) -> None:
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


def _echo_start_notes(
    config: DPOConfig,
    models: _Models,
    pair_source: FixedPairs | OnlineRounds,
    total_steps: int,
    peft_config: Any,
    echo: Callable[[str], None],
) -> None:
    """The notes said before training (start_notes.py): what the options chosen imply."""
    reference = models.reference
    lora = bool(config.lora_r or peft_config)
    schedule = getattr(pair_source, "schedule", None) if not config.online else None
    live = isinstance(reference, PolicyModelReference) and config.loss_needs_reference
    drops_out = (
        live
        and not config.disable_dropout
        and model_drops_out(models.policy, getattr(reference, "adapter", None))
    )
    eval_float32 = models.eval_float32
    for note in start_notes(config, total_steps, lora, eval_float32, schedule, live, drops_out):
        echo(note)


def _new_run(
    config: DPOConfig,
    world: World,
    echo: Callable[[str], None],
    data: RunData,
    models: _Models,
    *,
    pair_source: FixedPairs | OnlineRounds,
    layout: Layout,
    total_steps: int,
    given: dict[str, Any],
) -> Run:
    """The ``Run`` of what the steps set up; ``given``: train()'s datasets by argument name."""
    kl_reference = reference = models.reference  # sampled completions need a live reference
    if isinstance(pair_source, OnlineRounds):  # a round's objective/kl (TRL's)
        pair_source.build_round.reference = kl_reference  # type: ignore[attr-defined]
    if not config.loss_needs_reference:
        reference = None  # loaded only for the KL: the losses never pay for its forward pass
    return Run(
        config=config,
        world=world,
        output_dir=Path(config.output_dir),
        echo=echo,
        tokenizer=data.tokenizer,
        processor=data.processor,
        train_summary=data.train_data.summary(),
        train=data.train,
        evals=data.evaluations,
        eval_prompts=data.eval_prompts,
        eval_rows=data.eval_rows,
        reward_fn=data.reward_fn,
        precision=models.precision,
        policy=models.policy,
        scorer=models.scorer,
        reference=reference,
        kl_reference=kl_reference,
        masters=models.masters,
        trainable=models.trainable,
        optimizer=models.optimizer,
        scheduler=models.scheduler,
        source=pair_source,
        layout=layout,
        pad_id=data.pad_id,
        total_steps=total_steps,
        probe=UpdateProbe(models.trainable, models.optimizer, world),
        best=BestModel.from_config(config),
        eval_float32=models.eval_float32,
        reference_masters=models.reference_masters,
        model_files=models.loaded_files,
        offload=activation_offload(config.activation_offloading, world.device, echo),
        from_python=tuple(name for name, value in given.items() if value is not None),
    )


def _replace_or_resume(run: Run, replaced: list[Path]) -> None:
    """An earlier run's files removed (only now that data and models are known good), or
    this run resumed; the config recorded unless a finished run's record stays its own."""
    config, output_dir = run.config, run.output_dir
    if run.world.is_main:
        remove(replaced, prune_below=output_dir)
    if config.resume_from_checkpoint:
        resume(run)
    if _bits(run.precision.save) < _bits(run.precision.master):
        run.start_sample = run.probe.weights()  # to say what rounding at save costs
    if run.world.is_main and not model_files(output_dir):  # a finished run's record stays its
        # own until this run's final save
        record = output_dir / "config.yaml"
        write_or_stop(record, lambda: config.save_record(record, run.from_python))


def _reference_fingerprint(config: DPOConfig, models: _Models, world: World) -> str:
    """What the precomputed reference log-probs' cache is keyed by ("" when not precomputed)."""
    if not config.precompute_ref_log_probs:
        return ""
    sharded = world.mode == "fsdp"
    adapter = getattr(models.reference, "adapter", None)
    return weights_fingerprint(models.reference_model, world if sharded else None, adapter)


def _evaluation_metrics(run: Run) -> list[str]:
    """The names an evaluation logs: sampling's, and the pair metrics of one held-out pair
    (they depend on the losses, MoE, WPO, ...: computed, not listed). None when none is
    tracked (best model, early stopping)."""
    if not run.best.metric:
        return []
    logged = sampled_metrics(run.config) if run.eval_prompts else []
    for name, pair_set in run.evals.items():
        table = pair_set.reference_table
        logged += eval_set_metrics(name, evaluate(
            run.scorer, run.reference, pair_set.pairs[:1], run.config, run.pad_id,
            run.world.device, run.layout, None if table is None else table[:1], run.world,
        ))  # fmt: skip
    return logged


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


def _bits(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits


def evaluation_precision(run: Run) -> contextlib.AbstractContextManager[None]:
    """Inside, the held-out metrics are computed in the precision ``eval_dtype`` chose: the
    policy and a separate reference model (the loss's, eval_generate's) in float32
    (precision.float32_compute), or as training computes. (eval_generate samples outside, as
    training computes, and scores its samples' KL inside.) Under ``torch_compile`` the float32
    pass runs eagerly: float32 weights are a new variant of every compiled decoder layer (a
    recompile each, which pushed a LoRA run's layers past dynamo's recompile limit), and eager
    is what float32 scoring (``directpo score``) runs."""
    if not run.eval_float32:
        return contextlib.nullcontext()
    models = [run.policy]
    for reference in (run.reference, run.kl_reference):
        model = getattr(reference, "model", None)
        if model is not None and all(model is not m for m in models):
            models.append(model)
    stack = contextlib.ExitStack()
    # bf16-stored weights with Kahan AdamW: read with their compensation when the final save
    # keeps it (save_dtype: float32); a bf16 save rounds it onto the weights, as they are read
    kahan = run.optimizer if run.precision.save == torch.float32 else None
    stack.enter_context(float32_compute(models, [run.masters, run.reference_masters], kahan))
    if run.config.torch_compile and hasattr(torch.compiler, "set_stance"):  # (torch >= 2.6)
        stack.enter_context(torch.compiler.set_stance("force_eager"))
    return stack
