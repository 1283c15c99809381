"""The DPO training loop: one plain function, read top to bottom.

setup: config checks -> data -> tokenizer -> token ids -> policy + reference -> optimizer,
schedule -> (resume) -> loop: for each optimizer step, micro-batches -> policy log-probs ->
reference log-probs -> loss -> backward; clip -> step -> log / evaluate / checkpoint ->
final model folder.

The same function runs on every rank under torchrun: each rank takes its slice of every global
micro-batch, metric sums are all-reduced, and rank 0 alone prints and writes (distributed.py).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler, set_seed

from directpo.batching import DataSchedule, Layout, collate_pairs
from directpo.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from directpo.config import DPOConfig
from directpo.data import Columns, distinct_prompts, load_preferences, load_prompts
from directpo.distributed import (
    World,
    all_reduce_sum,
    barrier,
    broadcast,
    consolidated_model,
    grad_norm_value,
    gradient_sync,
    shard,
    unsharded_root,
    wrap,
)
from directpo.distributed import setup as setup_world
from directpo.distributed import teardown as teardown_world
from directpo.errors import ConfigError, DirectpoError, TrainingStopped
from directpo.generate import evaluate_generations
from directpo.jsonl import write_jsonl
from directpo.logprobs import SequenceScorer, choose_layout
from directpo.models import DTYPES, load_tokenizer, pad_token_id
from directpo.outputs import save_final_model
from directpo.precompute import (
    PrecomputedReference,
    precompute_reference_logps,
    weights_fingerprint,
)
from directpo.reference import (
    AdapterDisabledReference,
    FrozenModelReference,
    ReferenceProvider,
    load_policy_and_reference,
)
from directpo.rewardfn import load_reward_fn
from directpo.signals import StopRequest
from directpo.step import PairStats, evaluate, pair_losses
from directpo.tokenization import TokenizedData, TokenizedPair, tokenize_preferences
from directpo.tracking import MetricsLogger

SCHEDULER_NAMES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass
class TrainResult:
    policy: torch.nn.Module
    reference: ReferenceProvider | None
    tokenizer: Any
    output_dir: Path
    global_step: int
    metrics: list[dict[str, Any]] = field(default_factory=list)


def train(
    config: DPOConfig,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    *,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``config.model_name_or_path`` with DPO; the final model goes to ``output_dir``.

    ``train_dataset`` / ``eval_dataset`` (a ``datasets.Dataset``) replace the files.
    """
    # -- checks that need no model ---------------------------------------------------------
    config.check_environment(need_train_file=train_dataset is None)
    world = setup_world(config.distributed)
    try:
        return _train(config, train_dataset, eval_dataset, world, echo)
    finally:
        teardown_world(world)


def _train(
    config: DPOConfig,
    train_dataset: Any,
    eval_dataset: Any,
    world: World,
    echo: Callable[[str], None],
) -> TrainResult:
    if not world.is_main:
        echo = _silent  # only rank 0 prints, logs and writes
    output_dir = Path(config.output_dir)
    replaced_checkpoints = _prepare_output_dir(output_dir, config)
    set_seed(config.seed)
    device = world.device

    # -- data -------------------------------------------------------------------------------
    columns = Columns(
        config.prompt_column,
        config.chosen_column,
        config.rejected_column,
        prompt_required=config.prompt_column != "prompt",
    )
    train_data = load_preferences(
        train_dataset if train_dataset is not None else config.train_file,
        columns,
        skip_invalid_rows=config.skip_invalid_rows,
    )
    echo(f"train: {train_data.summary()}")
    eval_data = None
    if eval_dataset is not None or config.eval_file:
        eval_data = load_preferences(
            eval_dataset if eval_dataset is not None else config.eval_file,
            columns,
            skip_invalid_rows=config.skip_invalid_rows,
        )
        echo(f"eval: {eval_data.summary()}")

    tokenizer = load_tokenizer(config.tokenizer_path)
    train_tokenized = _tokenize(train_data, tokenizer, config, "train", echo)
    train_pairs, train_sources = train_tokenized.pairs, train_tokenized.sources
    eval_pairs = _tokenize(eval_data, tokenizer, config, "eval", echo).pairs if eval_data else None
    eval_prompts = _held_out_prompts(config, eval_data)
    reward_fn = load_reward_fn(config.reward_fn) if config.reward_fn else None

    # -- models, optimizer, schedule --------------------------------------------------------
    sharded = world.mode == "fsdp"  # load on CPU in float32; fully_shard moves the shards
    policy, reference = load_policy_and_reference(
        config,
        torch.device("cpu") if sharded else device,
        master_weights="float32" if sharded else None,
    )
    # one process's global batch: world.size slices of per-device batches (see distributed.py)
    schedule = DataSchedule(
        len(train_pairs),
        config.per_device_train_batch_size * world.size,
        config.gradient_accumulation_steps,
        config.seed,
    )
    total_steps = schedule.total_steps(config.num_train_epochs, config.max_steps)
    pad_id = pad_token_id(tokenizer)
    reference_model = getattr(reference, "model", None)
    separate_reference = [reference_model] if reference_model not in (None, policy) else []
    layout = choose_layout(config.layout, [policy, *separate_reference], echo)
    precompute = config.precompute_ref_log_probs
    reference_weights = weights_fingerprint(reference_model) if precompute else ""
    compute_dtype = DTYPES[config.dtype]
    scorer = wrap(SequenceScorer(policy, config.logprob_chunk_tokens), world, compute_dtype)
    if isinstance(reference, FrozenModelReference):
        reference.scorer = wrap(reference.scorer, world, compute_dtype)
    elif isinstance(reference, AdapterDisabledReference) and sharded:
        reference.scorer = scorer  # the sharded policy, run with its adapters off
    optimizer = _build_optimizer(scorer, config)  # after wrapping: FSDP replaces the parameters
    scheduler = get_scheduler(
        SCHEDULER_NAMES[config.lr_scheduler_type],
        optimizer,
        num_warmup_steps=config.warmup_steps,
        num_training_steps=total_steps,
    )
    kl_reference = reference  # sampled completions need a live reference for their KL
    if not config.loss_needs_reference:
        reference = None  # loaded only for the KL: the losses never pay for its forward pass
    train_table = eval_table = None  # [N, 2] reference log-probs when precomputed
    if precompute:
        reference, kl_reference, train_table, eval_table = _precompute_reference(
            reference,
            reference_weights,
            train_pairs,
            eval_pairs,
            config,
            pad_id,
            layout,
            world,
            echo,
        )

    _check_free_space(output_dir, policy, config)

    # -- resume, or replace an earlier run (only now that data and models are known good) -----
    for old in replaced_checkpoints if world.is_main else []:
        shutil.rmtree(old)
    start_step, window = 0, PairStats()
    if config.resume_from_checkpoint:
        checkpoint = _on_main(
            world, lambda: resolve_checkpoint(config.resume_from_checkpoint, output_dir, echo)
        )
        fsdp_scorer = scorer if sharded else None
        state = load_checkpoint(checkpoint, policy, optimizer, scheduler, fsdp_scorer)
        _check_same_data(state, schedule, checkpoint)
        start_step, window = state["global_step"], PairStats(**state["log_window"])
        echo(f"resumed from {checkpoint} at step {start_step}")
    logger = MetricsLogger(
        output_dir,
        config.report_to,
        config.to_dict(),
        resume_step=start_step if config.resume_from_checkpoint else None,
        write=world.is_main,
    )
    if world.is_main:
        config.save_yaml(output_dir / "config.yaml")
    processes = f" x {world.size} processes ({world.mode})" if world.enabled else ""
    echo(
        f"training {total_steps} steps ({schedule.steps_per_epoch} per epoch) on {device}, "
        f"{len(train_pairs)} pairs, batch {config.per_device_train_batch_size} x "
        f"{config.gradient_accumulation_steps} accumulation{processes}"
    )

    # -- the loop -----------------------------------------------------------------------------
    # the bar is closed before any error propagates, so a one-line error stays the last line
    progress = tqdm(
        total=total_steps,
        initial=start_step,
        desc="train",
        dynamic_ncols=True,
        disable=not world.is_main,
    )
    write = progress.write if world.is_main else _silent  # tqdm.write prints on every rank
    with progress, StopRequest() as stop, _explain_oom(progress):
        window_start = time.perf_counter()
        nonfinite_in_a_row = 0
        samples_dir = output_dir / "samples"
        if eval_prompts and world.is_main:
            samples_dir.mkdir(exist_ok=True)
        for step in range(start_step, total_steps):
            step_indices = schedule.micro_batches(step)
            step_pairs = sum(len(indices) for indices in step_indices)  # over all ranks
            learning_rate = scheduler.get_last_lr()[0]
            stats = PairStats()
            for number, indices in enumerate(step_indices):
                mine, stand_in = shard(indices, world)
                batch = collate_pairs(
                    [train_pairs[i] for i in mine],
                    pad_id,
                    None if train_table is None else train_table[mine],
                    layout,
                ).to(device)
                last = number == len(step_indices) - 1
                with gradient_sync(scorer, enabled=last):
                    losses, batch_stats = pair_losses(scorer, reference, batch, config)
                    # sum / pairs-in-step: the gradient is the mean over all pairs of the step,
                    # exactly as one large batch would give, whatever the micro-batch sizes (x
                    # world size: DDP and FSDP average the ranks' gradients)
                    weight = 0.0 if stand_in else world.size / step_pairs
                    (losses.sum() * weight).backward()
                stats.add(batch_stats.zeroed() if stand_in else batch_stats)
            stats = stats.all_reduce(world)
            if world.enabled and all_reduce_sum([float(bool(stop.requested))], world)[0]:
                stop.requested = stop.requested or "another rank's signal"
            max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
            total_norm = torch.nn.utils.clip_grad_norm_(scorer.parameters(), max_norm)
            grad_norm = grad_norm_value(total_norm)
            done = step + 1
            if math.isfinite(grad_norm) and math.isfinite(stats.sums["loss"]):
                optimizer.step()
                window.add(stats)
                nonfinite_in_a_row = 0
            else:  # a NaN/Inf never reaches the weights: skip the update, count it
                window.nonfinite_steps += 1
                nonfinite_in_a_row += 1
                if nonfinite_in_a_row > config.max_nonfinite_steps:
                    rows = [train_sources[i] for m in schedule.micro_batches(step) for i in m]
                    raise TrainingStopped(
                        f"step {done}: non-finite loss or gradient in {nonfinite_in_a_row} "
                        f"steps in a row (max_nonfinite_steps={config.max_nonfinite_steps}); "
                        f"this step's pairs: {', '.join(rows[:4])}"
                        f"{' ...' if len(rows) > 4 else ''}; weights are those of step "
                        f"{done - nonfinite_in_a_row}, checkpoints are intact"
                    )
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.update(1)
            progress.set_postfix(loss=f"{stats.sums['loss'] / stats.pairs:.4f}")

            if done % config.logging_steps == 0 or done == total_steps:
                seconds = max(time.perf_counter() - window_start, 1e-9)
                metrics = {
                    **window.means(),
                    "grad_norm": grad_norm,
                    "learning_rate": learning_rate,
                    "pairs/s": window.pairs / seconds,
                    "tokens/s": window.tokens / seconds,
                    "epoch": done / schedule.steps_per_epoch,
                }
                if window.nonfinite_steps:
                    metrics["nonfinite_steps"] = window.nonfinite_steps
                logger.log(done, metrics)
                write(_format_metrics(done, total_steps, metrics))
                window, window_start = PairStats(), time.perf_counter()
            if (eval_pairs or eval_prompts) and (
                (config.eval_steps and done % config.eval_steps == 0) or done == total_steps
            ):
                eval_metrics = evaluate(
                    scorer,
                    reference,
                    eval_pairs,
                    config,
                    pad_id,
                    device,
                    layout,
                    eval_table,
                    world,
                )
                if eval_prompts:
                    sample = functools.partial(
                        evaluate_generations,
                        policy,
                        kl_reference,
                        tokenizer,
                        eval_prompts,
                        config,
                        done,
                        reward_fn,
                        synced=sharded and world.size > 1,
                    )
                    if sharded:  # every rank generates (same seed and weights: same samples)
                        with unsharded_root(scorer):
                            generation_metrics, records = broadcast(sample(), world)
                    else:  # rank 0 samples with its replica; the other ranks wait
                        generation_metrics, records = _on_main(world, sample)
                    eval_metrics |= generation_metrics
                    if world.is_main:
                        write_jsonl(samples_dir / f"step-{done}.jsonl", records)
                        logger.log_text(done, "samples", _samples_markdown(records))
                logger.log(done, eval_metrics)
                write(_format_metrics(done, total_steps, eval_metrics))
            if (config.save_steps and done % config.save_steps == 0) or stop.requested:
                state = {
                    "log_window": vars(window),
                    "num_examples": schedule.num_examples,
                    "batch_size": schedule.batch_size,
                    "accumulation": schedule.accumulation,
                    "seed": schedule.seed,
                    "epoch": schedule.epoch_of(step),
                }
                path = save_checkpoint(
                    output_dir,
                    done,
                    policy,
                    tokenizer,
                    optimizer,
                    scheduler,
                    state,
                    config.save_total_limit,
                    world,
                    scorer if sharded else None,
                )
                write(f"saved {path}")
            if stop.requested:
                logger.close()
                echo(
                    f"stopped by {stop.requested} after step {done}; checkpoint {path}; "
                    "continue with resume_from_checkpoint: latest"
                )
                return TrainResult(policy, reference, tokenizer, output_dir, done, logger.rows)

    # -- outputs ------------------------------------------------------------------------------
    logger.close()
    if sharded:  # gather the shards into one whole model on rank 0 (every rank takes part)
        whole = consolidated_model(scorer, policy, compute_dtype, world, config)
        if world.is_main:
            save_final_model(output_dir, whole, tokenizer, config, train_data, logger.rows)
            policy = whole
    elif world.is_main:
        final = save_final_model(output_dir, policy, tokenizer, config, train_data, logger.rows)
        if final is not policy:  # LoRA merged into the base: its adapters are gone
            policy, reference = final, None
    barrier(world)
    echo(f"model saved to {output_dir}")
    return TrainResult(policy, reference, tokenizer, output_dir, total_steps, logger.rows)


def _tokenize(
    data: Any, tokenizer: Any, config: DPOConfig, name: str, echo: Callable[[str], None]
) -> TokenizedData:
    tokenized = tokenize_preferences(
        data,
        tokenizer,
        config.max_length,
        config.max_prompt_length,
        skip_invalid_rows=config.skip_invalid_rows,
    )
    echo(f"{name}: {tokenized.summary()}")
    return tokenized


def _build_optimizer(model: torch.nn.Module, config: DPOConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=config.learning_rate,
            eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        eps=config.adam_epsilon,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )


def _prepare_output_dir(output_dir: Path, config: DPOConfig) -> list[Path]:
    """Refuse to overwrite an earlier run by accident; check that we can write there.

    Returns the earlier run's checkpoints that ``overwrite_output_dir`` will replace: they are
    deleted only once everything else has been validated and loaded.
    """
    previous = list_checkpoints(output_dir)
    finished = (output_dir / "config.json").exists()  # a saved model folder
    resuming, overwriting = config.resume_from_checkpoint, config.overwrite_output_dir
    if (previous or finished) and not resuming and not overwriting:
        what = previous[-1].name if previous else "a finished run"
        raise ConfigError(
            f"output_dir {output_dir} already holds {what}; resume it with "
            "resume_from_checkpoint: latest, choose another output_dir, or set "
            "overwrite_output_dir: true"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".directpo-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir {output_dir}: not writable ({exc.strerror})") from None
    return [] if config.resume_from_checkpoint else previous


def _silent(_: str) -> None:
    pass


def _on_main(world: World, action: Callable[[], Any]) -> Any:
    """``action()`` on rank 0, its result (or its DirectpoError) on every rank."""
    result: Any = None
    if world.is_main:
        try:
            result = action()
        except DirectpoError as exc:
            result = exc
    result = broadcast(result, world)
    if isinstance(result, DirectpoError):
        raise result
    return result


def _check_same_data(state: dict[str, Any], schedule: DataSchedule, checkpoint: Path) -> None:
    for key, now in (
        ("num_examples", schedule.num_examples),
        ("batch_size (per_device_train_batch_size x processes)", schedule.batch_size),
        ("accumulation", schedule.accumulation),
        ("seed", schedule.seed),
    ):
        saved = state.get(key.split()[0])
        if saved != now:
            raise ConfigError(
                f"resume_from_checkpoint: {checkpoint} was trained with {key}={saved}, "
                f"this run has {now}; the data order would differ (start a new output_dir)"
            )


def _format_metrics(step: int, total: int, metrics: dict[str, float]) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return f"step {step}/{total} {shown}"


def _held_out_prompts(config: DPOConfig, eval_data: Any) -> list[Any]:
    """The first ``eval_generate`` distinct held-out prompts (none when sampling is off)."""
    if not config.eval_generate:
        return []
    if config.eval_prompts_file:
        prompts = load_prompts(config.eval_prompts_file, config.prompt_column)
    else:
        prompts = distinct_prompts(example.prompt for example in eval_data.examples)
    return prompts[: config.eval_generate]


def _samples_markdown(records: list[dict[str, Any]], limit: int = 8) -> str:
    lines = ["| prompt | completion | kl | reward |", "|---|---|---|---|"]
    for r in records[:limit]:
        prompt = str(r["prompt"]).replace("|", "\\|").replace("\n", " ")
        completion = r["completion"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {prompt} | {completion} | {r['kl']:.3f} | {r.get('reward', '')} |")
    return "\n".join(lines)


def _precompute_reference(
    reference: ReferenceProvider,
    reference_weights: str,
    train_pairs: list[TokenizedPair],
    eval_pairs: list[TokenizedPair] | None,
    config: DPOConfig,
    pad_id: int,
    layout: Layout,
    world: World,
    echo: Callable[[str], None],
) -> tuple[ReferenceProvider, ReferenceProvider | None, torch.Tensor, torch.Tensor | None]:
    """Reference log-probs of every pair, computed (or read from the cache) up front; the
    reference model is then freed unless ``eval_generate`` needs it for the KL of samples."""
    model = reference.model  # a frozen copy, or the LoRA policy with adapters disabled
    settings = f"{config.dtype}|{type(model).__name__}"
    tables = [
        precompute_reference_logps(
            reference,
            reference_weights,
            pairs,
            pad_id,
            config.per_device_eval_batch_size,
            world.device,
            settings,
            layout,
            echo,
            world,
        )
        if pairs
        else None
        for pairs in (train_pairs, eval_pairs)
    ]
    kl_reference = reference if config.eval_generate else None
    if kl_reference is None and isinstance(reference, FrozenModelReference):
        del reference.model, reference.scorer  # training now holds one model in memory
        if world.device.type == "cuda":
            torch.cuda.empty_cache()
    return PrecomputedReference(), kl_reference, tables[0], tables[1]


def _check_free_space(output_dir: Path, policy: torch.nn.Module, config: DPOConfig) -> None:
    """Refuse to start when the disk cannot hold the final model and one checkpoint."""
    trainable = [p for p in policy.parameters() if p.requires_grad]

    def size(params: Any) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    checkpoint_weights = size(trainable) if config.lora_r else size(policy.parameters())
    final = size(policy.parameters()) if config.merge_lora else checkpoint_weights
    optimizer_states = (
        {"adamw": 2, "rmsprop": 1}[config.optimizer] * 4 * sum(p.numel() for p in trainable)
    )
    checkpoint = checkpoint_weights + optimizer_states if config.save_steps else 0
    need = 1.1 * (final + checkpoint)
    free = shutil.disk_usage(output_dir).free
    if free < need:
        raise ConfigError(
            f"output_dir {output_dir}: {free / 2**30:.2f} GiB free, but the final model and "
            f"one checkpoint need about {need / 2**30:.2f} GiB"
        )


OOM_HELP = (
    "out of GPU memory at step {step}: lower per_device_train_batch_size (raise "
    "gradient_accumulation_steps to keep the batch), set gradient_checkpointing: true, "
    "precompute_ref_log_probs: true, lora_r: 16, or a smaller max_length / logprob_chunk_tokens"
)


@contextlib.contextmanager
def _explain_oom(progress: Any) -> Iterator[None]:
    """A CUDA out-of-memory error becomes one line that names the knobs that lower memory."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise TrainingStopped(OOM_HELP.format(step=progress.n + 1)) from None
