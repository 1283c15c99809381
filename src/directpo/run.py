"""Everything a training run sets up once, in the order it is needed: ``prepare_run``.

config checks -> output folder -> data -> tokenizer -> token ids -> policy + reference (in the
run's precision) -> layout -> optimizer, schedule -> precomputed reference -> (resume) ->
metrics logger. The loop (trainer.py) then only reads and updates the ``Run``.
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
from directpo.errors import ConfigError, TrainingStopped, memory_kind
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
from directpo.online import RoundBuilder
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
    PrecomputedReference,
    precompute_reference_logps,
    scoring_settings,
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
    try:
        if config.auto_find_batch_size and world.size > 1:  # (one rank alone would retry a step)
            raise ConfigError(
                "auto_find_batch_size works in one process: under torchrun every rank would have "
                "to retry the same step; "
                + spell_setting(
                    "per_device_train_batch_size", "gradient_accumulation_steps", last=" and "
                )
            )
        replaced = prepare_output_dir(output_dir, config, lock, echo)
    except ConfigError as error:  # the data's bad rows with it: else the next run's news
        given = {"train_file": train_dataset, "eval_file": eval_dataset}
        raise with_rows(error, config, given) from None
    set_seed(config.seed)
    device = world.device

    data = load_run_data(
        config, train_dataset, eval_dataset, device, echo, world.is_main, world.size,
        node_turn(world),
    )  # fmt: skip
    tokenizer, train = data.tokenizer, data.train

    # -- models in the run's precision, optimizer, schedule -------------------------------
    precision = config.precision
    sharded = world.mode == "fsdp"  # loaded on CPU; fully_shard moves the shards
    eval_float32 = evaluates_in_float32(
        config.eval_dtype, precision.compute, config.attn_implementation, sharded
    ) and any(pair_set.pairs for pair_set in data.evaluations.values())  # (no held-out: no cost)
    # the reference's float32 weights serve the held-out pairs' losses and eval_generate's KL
    # (its samples scored in float32 too): one loaded only for online rounds' KL keeps none
    reference_float32 = eval_float32 and (config.loss_needs_reference or config.eval_generate > 0)
    policy, reference = load_policy_and_reference(
        config, device, precision, sharded=sharded, peft_config=peft_config,
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
    config = resolve_router_aux(config, policy, echo)
    for pair_set in (train, *data.evaluations.values()):  # 3D rotary models: the image
        attach_rope_positions(policy, with_images(pair_set.pairs))  # prompts' positions
    reference_model = getattr(reference, "model", None)
    models = [("model_name_or_path", config.model_name_or_path, policy)]
    if reference_model not in (None, policy):
        models.append(("ref_model_name_or_path", config.reference_path, reference_model))
    for note in check_vocabulary(tokenizer, config.tokenizer_path, models):
        echo(note)
    masters = None
    if precision.mixed and not sharded:  # FSDP2 keeps the float32 masters as its shards
        masters = MasterWeights(policy, precision.compute, streaming=world.mode != "ddp")
    pair_source = _pair_source(config, data, world, output_dir)
    total_steps = pair_source.total_steps(config.num_train_epochs, config.max_steps)
    pair_sets = [train, *data.evaluations.values()]
    longest: int | None = max((longest_sequence(s.pairs) for s in pair_sets), default=0)
    check_positions(models, longest)  # sampling cuts its prompts to a position table itself
    for note in trained_positions_notes(models, longest):
        echo(note)
    if config.eval_generate:  # ... but its new tokens must fit
        check_generation_room(models, config.generate_max_new_tokens, "generate_max_new_tokens")
    elif config.online:
        new_tokens = config.online_sampling[1]
        capped = new_tokens < config.generate_max_new_tokens
        option = "max_completion_length" if capped else "generate_max_new_tokens"
        check_generation_room(models, new_tokens, option)
    if isinstance(pair_source, OnlineRounds):  # sampled later: prompt limit + new tokens
        limit, new_tokens = config.online_sampling
        sampled = None if limit is None else limit + new_tokens
        longest = None if sampled is None else max(longest or 0, sampled)
    separate_reference = [reference_model] if reference_model not in (None, policy) else []
    precompute = config.precompute_ref_log_probs
    policy_scorer = SequenceScorer(
        policy, config.logprob_chunk_tokens, config.ld_alpha,
        router_aux=bool(config.router_aux_loss_coef), wpo=config.use_weighting,
    )  # fmt: skip
    scorer = wrap(policy_scorer, world, precision, config.fsdp_offload)
    if isinstance(pair_source, OnlineRounds):  # rounds sample from the live policy
        pair_source.build_round.policy = policy  # type: ignore[attr-defined]
        pair_source.build_round.scorer = scorer  # type: ignore[attr-defined]
        pair_source.build_round.max_steps = total_steps  # type: ignore[attr-defined]
    if isinstance(reference, FrozenModelReference):
        reference.scorer = wrap(reference.scorer, world, precision, config.fsdp_offload)
    elif isinstance(reference, PolicyModelReference) and sharded:
        reference.scorer = scorer  # the sharded policy, run with its adapters off
    if sharded:  # meta-built models get memory and their shards from the files
        _fill_shards(config, world, scorer, reference, echo)
    reference_weights = ""
    if precompute:
        reference_weights = weights_fingerprint(
            reference_model, world if sharded else None, getattr(reference, "adapter", None)
        )
    image_pairs = with_images(train.pairs, 2)
    runners = [scorer, *(reference.scorer for _ in separate_reference)] if sharded else []
    compiled = False  # before the checks below run the compiled layers: do they compile?
    if config.torch_compile:
        compiled = check_compilation([policy, *separate_reference], echo, runners)
    if config.logprob_chunk_tokens:  # the chunked LM head computes what the model does
        check_heads([policy, *separate_reference], echo, runners)
    layout = choose_layout(
        config.layout, [policy, *separate_reference], echo, image_pairs, runners, longest
    )
    for runner in runners:  # FSDP2 keeps a root gathered after a forward: back to the shards
        runner.reshard()
    release_host_memory()  # before the optimizer state takes its place
    # after wrapping: FSDP replaces the parameters
    if masters is not None:
        trainable = masters.parameters()
    else:
        trainable = [p for p in scorer.parameters() if p.requires_grad]
    check_trainable(trainable)
    no_decay = no_decay_ids(policy, masters) if config.weight_decay else set()
    optimizer = build_optimizer(trainable, config, None if sharded else device, no_decay)
    scheduler = config.schedule(optimizer, total_steps)
    lora = bool(config.lora_r or peft_config)
    schedule = getattr(pair_source, "schedule", None) if not config.online else None
    live = isinstance(reference, PolicyModelReference) and config.loss_needs_reference
    drops_out = (
        live
        and not config.disable_dropout
        and model_drops_out(policy, getattr(reference, "adapter", None))
    )
    for note in start_notes(config, total_steps, lora, eval_float32, schedule, live, drops_out):
        echo(note)
    kl_reference = reference  # sampled completions need a live reference for their KL
    if isinstance(pair_source, OnlineRounds):  # a round's objective/kl (TRL's)
        pair_source.build_round.reference = kl_reference  # type: ignore[attr-defined]
    if not config.loss_needs_reference:
        reference = None  # loaded only for the KL: the losses never pay for its forward pass
    run = Run(
        config=config,
        world=world,
        output_dir=output_dir,
        echo=echo,
        tokenizer=tokenizer,
        processor=data.processor,
        train_summary=data.train_data.summary(),
        train=train,
        evals=data.evaluations,
        eval_prompts=data.eval_prompts,
        eval_rows=data.eval_rows,
        reward_fn=data.reward_fn,
        precision=precision,
        policy=policy,
        scorer=scorer,
        reference=reference,
        kl_reference=kl_reference,
        masters=masters,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=scheduler,
        source=pair_source,
        layout=layout,
        pad_id=data.pad_id,
        total_steps=total_steps,
        probe=UpdateProbe(trainable, optimizer, world),
        best=BestModel.from_config(config),
        eval_float32=eval_float32,
        reference_masters=reference_masters,
        model_files=loaded_files,
        offload=activation_offload(config.activation_offloading, device, echo),
        from_python=tuple(
            name
            for name, given in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset))
            if given is not None
        ),
    )
    if config.precompute_ref_log_probs:
        _precompute_reference(run, reference_weights)
    # a metric no evaluation logs (a typo, eval_accuracy) failed at the first evaluation
    run.best.check_logged(_evaluation_metrics(run))
    check_free_space(output_dir, policy, config, freed=disk_size(replaced))

    # -- resume, or replace an earlier run (only now that data and models are known good) ---
    if world.is_main:
        remove(replaced, prune_below=output_dir)
    if config.resume_from_checkpoint:
        resume(run)
    if _bits(precision.save) < _bits(precision.master):
        run.start_sample = run.probe.weights()  # to say what rounding at save costs
    if world.is_main and not model_files(output_dir):  # a finished run's record stays its own
        # until this run's final save
        record = output_dir / "config.yaml"
        write_or_stop(record, lambda: config.save_record(record, run.from_python))
    echo(
        start_line(
            config,
            world,
            data,
            pair_source,
            total_steps,
            precision,
            policy,
            compiled,
            bool(run.offload and run.offload.device_type),
        )  # fmt: skip
    )
    # last: nothing after it can fail (the echo above is the caller's function), so trackers
    # (TensorBoard's thread, a wandb / mlflow run) are only open where the loop closes them
    run.logger = MetricsLogger(
        output_dir,
        config.report_to,
        config.record(),
        resume_step=run.start_step if config.resume_from_checkpoint else None,
        write=world.is_main,
        logged_before=run.logged_before,
    )
    return run


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


def _pair_source(
    config: DPOConfig, data: RunData, world: World, output_dir: Path
) -> FixedPairs | OnlineRounds:
    """Each step's pairs: the file's, or online rounds (the first one the file's pairs)."""
    global_batch = config.per_device_train_batch_size * world.size  # one process's batch
    accumulation = config.gradient_accumulation_steps
    # data_seed (transformers'): the order alone; seed keeps initialisation, dropout, sampling
    order_seed = config.seed if config.data_seed is None else config.data_seed
    if not config.online:
        return FixedPairs(
            data.train, global_batch, accumulation, order_seed, config.dataloader_drop_last
        )
    builder = RoundBuilder(
        config, world, data.tokenizer, data.online_prompts, data.online_rows,
        labeller=data.labeller, output_dir=output_dir,
    )  # fmt: skip
    return OnlineRounds(
        num_prompts=len(data.online_prompts),
        prompts_per_round=config.online_prompts_per_round,
        steps_per_round=config.steps_per_round,
        batch_size=global_batch,
        accumulation=accumulation,
        seed=order_seed,
        build_round=builder,
        first_round=data.train if data.train.pairs else None,
        sampling={key: getattr(config, key) for key in ONLINE_SAMPLING_OPTIONS},
    )


# what online rounds sample, label and pair with (per_device_eval_batch_size: the chunks, each
# with its own seed; max_prompt_length cuts the prompts, the chat template renders them)
ONLINE_SAMPLING_OPTIONS = (
    "online_samples_per_prompt", "online_pairs", "online_reward_gap",
    "online_max_pairs_per_prompt", "generate_max_new_tokens", "generate_temperature",
    "generate_top_p", "generate_top_k", "generate_min_p", "generate_repetition_penalty",
    "generate_cache_implementation", "generation_kwargs", "per_device_eval_batch_size", "reward_fn",
    "reward_model_name_or_path", "implicit_reward_model", "reward_weights", "missing_eos_penalty",
    "max_length", "max_completion_length",
    "max_prompt_length", "chat_template", "chat_template_kwargs",
)  # fmt: skip


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


def _precompute_reference(run: Run, reference_weights: str) -> None:
    """Reference log-probs of every pair, computed (or read from the cache) up front and
    attached to the pair sets; the reference model is then freed unless ``eval_generate``
    needs it for the KL of samples."""
    config, reference = run.config, run.reference
    model = reference.model  # a frozen copy, or the LoRA policy with adapters disabled
    batch = config.precompute_ref_batch_size or config.per_device_eval_batch_size
    for pair_set in (run.train, *run.evals.values()):
        if not pair_set.pairs:
            continue
        # held-out pairs in the precision they are evaluated in (eval_dtype), training's in its
        in_float32 = run.eval_float32 and pair_set is not run.train
        dtype = "float32" if in_float32 else None
        settings = scoring_settings(config, model, run.layout, run.world, dtype)
        try:
            with evaluation_precision(run) if in_float32 else contextlib.nullcontext():
                pair_set.reference_table = precompute_reference_logps(
                    reference,
                    reference_weights,
                    pair_set.pairs,
                    run.pad_id,
                    batch,
                    run.world.device,
                    settings,
                    run.layout,
                    run.echo,
                    run.world,
                    progress=not config.disable_tqdm,
                )
        except (RuntimeError, MemoryError) as exc:  # before the loop, which says its own
            if memory_kind(exc) is None:
                raise
            raise TrainingStopped(
                f"out of {memory_kind(exc)} memory in the reference log-probs pass "
                "(precompute_ref_log_probs), "
                f"batches of {batch} pairs: lower precompute_ref_batch_size; the pairs scored "
                "are kept and the next run continues after them"
            ) from None
    run.kl_reference = reference if config.eval_generate else None
    if run.kl_reference is None:  # its float32 weights served the held-out pass alone: done
        run.reference_masters = None
    if run.kl_reference is None and isinstance(reference, FrozenModelReference):
        del reference.model, reference.scorer  # training now holds one model in memory
        if run.world.device.type == "cuda":
            torch.cuda.empty_cache()
    run.reference = PrecomputedReference()
