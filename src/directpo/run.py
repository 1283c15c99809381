"""Everything a training run sets up once, in the order it is needed: ``prepare_run``.

config checks -> output folder -> data -> tokenizer -> token ids -> policy + reference (in the
run's precision) -> layout -> optimizer, schedule -> precomputed reference -> (resume) ->
metrics logger. The loop (trainer.py) then only reads and updates the ``Run``. Each step is a
function of its own (the models' steps: run_models.py); each step's pairs come from
run_pair_source.py, the precomputed reference pass from precompute.py.
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
from directpo.callers import as_loaded, spell_setting
from directpo.checkpoint import write_or_stop
from directpo.config import DPOConfig
from directpo.distributed import World
from directpo.early_rows import with_rows
from directpo.errors import ConfigError
from directpo.free_space import check_free_space, disk_size
from directpo.guard import UpdateProbe
from directpo.health import ZeroGradients, learning_rate_note
from directpo.models import resolve_router_aux
from directpo.node_tokenizing import node_turn
from directpo.offload import OffloadActivations, activation_offload
from directpo.outputs import OutputLock, model_files, prepare_output_dir, remove
from directpo.precision import FrozenMasters, MasterWeights, PrecisionPolicy, float32_compute
from directpo.precompute import precompute_run_reference
from directpo.reference import PolicyModelReference, ReferenceProvider
from directpo.resume import resume
from directpo.run_data import RunData, load_run_data
from directpo.run_models import (
    RunModels,
    build_run_optimizer,
    check_kernels_and_layout,
    check_lengths_fit,
    load_models,
    named_models,
    reference_fingerprint,
    wrap_models,
)
from directpo.run_pair_source import build_pair_source
from directpo.sources import FixedPairs, OnlineRounds, PairSet
from directpo.start_line import start_line
from directpo.start_notes import model_drops_out, start_notes
from directpo.step import PairStats, eval_set_metrics, evaluate
from directpo.tracking import MetricsLogger
from directpo.trainer_state import training_flos


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
    zero_gradients: ZeroGradients = field(default_factory=ZeroGradients)  # (health.py)
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
    replaced = _claim_output_dir(config, train_dataset, eval_dataset, world, lock, echo)
    set_seed(config.seed)
    # (a flag beside a recipe said as the flag: --chosen_column foo was told 'set chosen_column')
    with as_loaded(config):
        data = load_run_data(
            config, train_dataset, eval_dataset, world.device, echo, world.is_main, world.size,
            node_turn(world),
        )  # fmt: skip
    models = load_models(config, data, world, peft_config)
    config = resolve_router_aux(config, models.policy, echo)
    named = named_models(config, data, models, echo)
    if models.precision.mixed and world.mode != "fsdp":  # FSDP2 keeps them as its shards
        streaming = world.mode != "ddp"
        models.masters = MasterWeights(models.policy, models.precision.compute, streaming=streaming)
    pair_source = build_pair_source(config, data, world, output_dir)
    total_steps = pair_source.total_steps(config.num_train_epochs, config.max_steps)
    longest = check_lengths_fit(config, data, named, pair_source, echo)
    del named  # (it holds the reference model, which precompute frees below)
    wrap_models(config, world, models, pair_source, total_steps, echo)
    reference_weights = reference_fingerprint(config, models, world)
    compiled, layout = check_kernels_and_layout(config, data, models, world, echo, longest)
    build_run_optimizer(config, models, world, total_steps)
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


def _echo_start_notes(
    config: DPOConfig,
    models: RunModels,
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
    # first, the one that matters most; a continued adapter folder trains adapters too
    adapters = lora or hasattr(models.policy, "peft_config")
    if note := learning_rate_note(config.learning_rate, adapters):
        echo(note)
    notes = start_notes(
        config, total_steps, lora, eval_float32, schedule, live, drops_out, peft_config
    )
    for note in notes:
        echo(note)


def _new_run(
    config: DPOConfig,
    world: World,
    echo: Callable[[str], None],
    data: RunData,
    models: RunModels,
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
