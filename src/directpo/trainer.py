"""The DPO training loop: one plain function, read top to bottom.

``prepare_run`` (run.py) sets everything up once; the loop then calls named steps: for each
optimizer step, ``train_step`` (micro-batches -> policy log-probs -> reference log-probs -> loss
-> backward; clip -> update), then ``log_step``, ``evaluate_step`` and ``checkpoint_step``
(loop_steps.py) when due (due.py); at the end ``finish`` (finish.py) writes the final model
folder.

The same function runs on every rank under torchrun: each rank takes its slice of every global
micro-batch, metric sums are all-reduced, and rank 0 alone prints and writes (distributed.py).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from directpo.arguments import checked_arguments, config_with, replaced_sources
from directpo.batch_fit import retry_smaller, split_micro_batches
from directpo.batching import collate_pairs
from directpo.callers import Caller, Entry, Spelling, as_loaded, entry_point
from directpo.config import DPOConfig
from directpo.distributed import (
    all_reduce_sum,
    check_launcher_precision,
    grad_norm_value,
    gradient_sync,
    launcher_mode,
    shard,
)
from directpo.distributed import setup as setup_world
from directpo.distributed import teardown as teardown_world
from directpo.due import due, evaluates, evaluates_at, logs_at, no_evaluation, saves_at
from directpo.early_rows import with_given_rows
from directpo.errors import ConfigError, DirectpoError, TrainingStopped
from directpo.failures import (
    explain_failures,
    peer_gone,
    settle,
    setup_out_of_memory,
    trained_steps_kept,
)
from directpo.finish import TrainResult, finish, train_result
from directpo.folders import missing_folders, remove_empty
from directpo.guard import check_update
from directpo.health import nonfinite_end_note
from directpo.loop_steps import (
    StepResult,
    checkpoint_step,
    evaluate_step,
    format_metrics,
    log_step,
)
from directpo.model_preparation import modeling_patches_undone
from directpo.outputs import OutputLock, remove_unstarted_record, visible_entries
from directpo.preflight import check_run
from directpo.process_state import (
    kept_for_caller,
    library_output,
    numeric_switches,
    recipe_environment_kept,
)
from directpo.resumable import resuming
from directpo.resume import (
    run_seed,
)
from directpo.run import Run, prepare_run
from directpo.signals import KeptLines, StopRequest
from directpo.step import PairStats, pair_losses
from directpo.sync import sync_reference


# a Python caller's refusals name train()'s train_dataset= / eval_dataset= beside the files;
# ``directpo train`` (its caller set first) the command's options alone
@entry_point(Caller(Spelling.PYTHON, Entry.TRAIN))
@recipe_environment_kept
def train(
    config: DPOConfig | None = None,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    *,
    echo: Callable[[str], None] | None = print,
    peft_config: Any = None,
    **options: Any,
) -> TrainResult:
    """Train ``config.model_name_or_path`` with DPO; the final model goes to ``output_dir``.

    Returns a ``TrainResult``: ``output_dir``, ``global_step``, ``metrics`` (every logged row,
    as in metrics.jsonl), ``policy`` (the trained model), ``reference``, ``tokenizer`` and
    ``stopped_by`` (the signal that stopped the run after its checkpoint, else None); TRL's
    ``TrainOutput`` values as ``train_metrics`` (train_loss, train_runtime, ...: a dict, as
    train_results.json) and ``training_loss``.
    Problems with options, data or models raise ``DirectpoError`` subclasses with a one-line
    message (nothing exits the process); ``echo`` receives every line directpo prints (None:
    nothing is printed; the progress bar is ``disable_tqdm``'s).

    ``peft_config``: any PEFT config object (peft's LoraConfig, IA3Config, ...), in place of the
    lora_* options: the policy trains those adapters, the reference is the base without them.
    ``train_dataset`` / ``eval_dataset`` (a ``datasets.Dataset`` or ``IterableDataset``, a
    ``DatasetDict`` of one split, a pandas DataFrame, a list of dicts, or a path) replace the
    files. ``options`` are DPOConfig's (``train(model_name_or_path=..., train_file=...)``), over
    ``config``'s values when it is given (``train(config, beta=0.2)``); ``config`` may be a
    YAML file's path, read as ``directpo train FILE`` reads it. TRL's ``DPOTrainer``
    keywords are read too (``args=``, ``model=`` as a folder, ``quantization_config=``; see
    arguments.py); a TRL ``DPOConfig`` (any ``TrainingArguments``) or a dict as the config is
    ported as ``DPOConfig(**config.to_dict())``.
    """
    if echo is None:
        echo = _silent
    elif not callable(echo):  # else a TypeError at the first line, after the output folder
        raise TypeError(f"echo must be a function of a line (print), or None; got {echo!r}")
    given = {"train_file": train_dataset, "eval_file": eval_dataset}  # (what they replace)
    try:
        built = config_with(config, options)
    except ConfigError as error:  # the rows given said too: they were read only by a next run
        raise with_given_rows(error, config, options, given) from None
    config, peft_config = checked_arguments(built, peft_config, echo)
    mode = launcher_mode(config.distributed, config.fsdp_offload)
    check_launcher_precision(config.precision.compute)
    world = setup_world(mode, config.ddp_timeout)
    run, finished, lock = None, False, OutputLock()
    made_output_dir = missing_folders(Path(config.output_dir))  # its missing parents too
    was_empty = not visible_entries(Path(config.output_dir))  # (what a stop may take back)
    try:
        # in the process group: a file missing on one node is then said by its rank (before
        # it, that rank's error went unsaid: only rank 0 speaks of an error every rank meets)
        check_run(
            config,
            world.device.type,
            world.mode,
            need_train_file=train_dataset is None,
            eval_dataset_given=eval_dataset is not None,
            given=given,
        )
        if not world.is_main:
            echo = _silent  # only rank 0 prints, logs and writes
        # every line said from here (the seed drawn, the models' refusals, the lengths',
        # out-of-memory advice, the loop's) says an option as its source wrote it: a flag beside
        # a recipe as the flag (train r.yaml --max_length 8 was told the recipe's 'set
        # max_length: ...', and --seed null 'seed: null: drew seed ...')
        with as_loaded(config):
            config = run_seed(config, world, echo)
        for note in replaced_sources(config, train_dataset, eval_dataset):
            echo(note)
        switches = numeric_switches(config.tf32, config.full_determinism, world.device, echo)
        spelt = as_loaded(config)  # (entered first: the switches say tf32 as it was given)
        # modeling_patches_undone: Liger's kernels (use_liger_kernel) rebind names in transformers'
        # modules for the whole process; a notebook's next run must not train with them
        undone = modeling_patches_undone()
        with (
            spelt,
            library_output(config, world.is_main),
            kept_for_caller(world.device),
            switches,
            undone,
        ):
            mine = lock if world.is_main else None  # one holder per run: rank 0
            try:
                run = prepare_run(
                    config, train_dataset, eval_dataset, world, echo, peft_config, mine
                )
            except (RuntimeError, MemoryError) as error:  # (the loop says its own)
                if (stopped := setup_out_of_memory(error, config, peft_config)) is None:
                    raise
                raise stopped from None
            try:
                result = _train(run)
                finished = True
                return result
            except BaseException:
                # a failed run in a notebook must not leave its trackers open for the next one
                # (TensorBoard's writer thread; wandb / mlflow's active run, which the next run
                # would log into, or fail to start beside)
                run.logger.close()
                raise
    except DirectpoError as error:
        settle(error, world)
        raise
    except RuntimeError as error:
        lock.release()  # first: torchrun may stop this process in peer_gone's wait
        lost = peer_gone(error, world)
        if lost is None:
            raise
        raise lost from None
    finally:
        # DDP's reducer holds the process group: dropped after it, its destructor joined gloo's
        # threads holding the GIL that one of them needed (a hang at exit, seen under load)
        run = None
        # only a run that took the folder's lock wrote a record: one refused at start or by
        # another run's lock must not take that run's (unlocked file systems keep it)
        wrote_record = lock.handle is not None
        lock.release()
        if was_empty and wrote_record and not finished:
            remove_unstarted_record(Path(config.output_dir))
        if made_output_dir and not finished and world.is_main:
            # a run refused before it wrote anything (a LoRA target the model lacks, a bad
            # row) leaves no empty folder that the next try would take for someone else's
            remove_empty(made_output_dir)
        try:
            teardown_world(world, settled=finished)
        except RuntimeError as error:  # its final barrier: a peer gone after the last agreement
            lost = peer_gone(error, world, Path(config.output_dir) if finished else None)
            if lost is None:
                raise
            raise lost from None


def _train(run: Run) -> TrainResult:
    total = run.total_steps
    lines = run.echo = KeptLines(run.echo)  # (| head exited: the lines go to stderr)
    # the bar is closed before any error propagates, so a one-line error stays the last line;
    # drawn where a closed pipe (2>&1 | head) stops the run as stdout's does, not mid-step
    progress = tqdm(
        total=total, initial=run.start_step, desc="train", dynamic_ncols=True,
        disable=not run.world.is_main or run.config.disable_tqdm,
        file=lines.guarded(sys.stderr),
    )  # fmt: skip

    def write(line: str) -> None:  # through echo (silent off rank 0), never into the bar
        with tqdm.external_write_mode():
            run.echo(line)

    with StopRequest() as stop, progress, explain_failures(run) as position:
        run.window_start = run.train_start = time.perf_counter()
        done = run.start_step  # (a run resumed at its last step trains no step)
        # (none when the resumed step's own evaluation spends early stopping's patience)
        last = run.start_step if _evaluate_at_start(run, position, write) else total
        for step in range(run.start_step, last):
            done = position.step = step + 1
            _start_round(run, step, write)  # online: a new round's pairs
            result = train_step(run, step, measure=logs_at(run, done))
            _upkeep(run, done)
            progress.update(1)
            progress.set_postfix(loss=f"{result.loss:.4f}")
            if logs_at(run, done):
                write(log_step(run, done, result))
            # after the step's row: the warning names what the row shows (grad_norm 0)
            if dead := run.zero_gradients.after_step(
                done, result.grad_norm, result.loss, run.config.learning_rate
            ):
                write(dead)
            improved = _evaluate_if_due(run, done, position, write)
            # decided once, the same on every rank, after the evaluation (a signal during it
            # stops this step): one landing after this all-reduce waits for the next step
            # (acting on it here alone put the ranks one collective apart)
            if lines.reader_gone() and done < total:  # a closed pipe stops as SIGTERM
                stop.requested = stop.requested or "SIGPIPE"
            stopping = _stop_requested(run, stop)
            if stopping:
                stop.requested = stopping  # the same on every rank (the exit code says it)
            if saves_at(run, done) or stopping or improved:
                # a signal's checkpoint is the run's to continue from: complete whatever
                # save_only_model says
                checkpoint = checkpoint_step(run, done, run.config.save_only_model and not stopping)
                write(f"saved {checkpoint}")
            if run.best.patience_spent():
                write(f"early stopping after step {done}: {run.best.describe()}")
                break
            if stopping:
                progress.close()  # the last line is the stop's, not the bar
                return _stopped(run, done, stopping, checkpoint)
        progress.close()
        # (a run that ended inside a NaN streak shorter than max_nonfinite_steps saves the
        # weights that failed on it: said before its 'model saved to' line; a best model
        # loaded instead is said by its own line, finish.py)
        best_loaded = run.config.load_best_model_at_end and run.best.checkpoint
        broken = nonfinite_end_note(run.nonfinite_in_a_row, done, run.config.learning_rate)
        if broken and not best_loaded:
            write(broken)
        stop.doing = "writing the final model first"  # a signal now must not cost the run
        return finish(run, done if run.best.patience_spent() else None)


def train_step(run: Run, step: int, measure: bool = False) -> StepResult:
    """One optimizer step: every micro-batch's backward, then clip and update.

    The loss of each micro-batch is weighted so that the gradient is the mean over all pairs
    of the step, exactly as one large batch would give, whatever the micro-batch sizes and the
    number of ranks. A step whose loss or gradient is not finite is skipped (weights untouched)
    and counted; too many in a row stop the run. ``measure`` (a step that logs): also report
    ``update_ratio`` and TRL's per-token statistics (logits/*, entropy, mean_token_accuracy).
    """
    config = run.config
    learning_rate = run.scheduler.get_last_lr()[0]
    stats = None
    while stats is None:  # auto_find_batch_size: again in smaller micro-batches (batch_fit.py)
        micro_batches = split_micro_batches(run.source.micro_batches(step), run.micro_split)
        try:
            stats = _accumulate(run, micro_batches, measure)
        except (RuntimeError, MemoryError) as error:  # the CPU / MPS allocators' are plain
            if not retry_smaller(run, step, error):
                raise
    run.num_tokens += stats.tokens
    run.total_flos += run.flops_per_token * stats.forwarded
    if not micro_batches:  # an online round that found no pair: nothing to learn this step
        _advance_schedule(run.scheduler)
        return StepResult(stats, 0.0, learning_rate)
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
    grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(run.trainable, max_norm))
    result = StepResult(stats, grad_norm, learning_rate)
    if math.isfinite(grad_norm) and math.isfinite(stats.sums["loss"]):
        check = not run.update_checked and learning_rate >= 0.1 * config.learning_rate
        snapshot = run.probe.before() if check or measure else None
        run.optimizer.step()
        if run.masters is not None:
            run.masters.push()
        if snapshot is not None:
            update = run.probe.after(snapshot)
            result.update_ratio = update.ratio
            if check:
                run.update_checked = check_update(
                    update, step + 1, learning_rate, grad_norm, result.loss,
                    run.precision.master, config.optimizer,
                )  # fmt: skip
        run.window.add(stats)
        run.nonfinite_in_a_row = 0
    else:  # a NaN/Inf never reaches the weights: skip the update, count it
        if measure:
            result.update_ratio = 0.0  # the weights did not move
        run.window.nonfinite_steps += 1
        run.nonfinite_in_a_row += 1
        if run.nonfinite_in_a_row > config.max_nonfinite_steps:
            _stop_nonfinite(run, step)
    _advance_schedule(run.scheduler)
    run.optimizer.zero_grad(set_to_none=True)
    return result


def _accumulate(run: Run, micro_batches: list[list[int]], measure: bool) -> PairStats:
    """Every micro-batch's forward and backward (gradients accumulated); the metric sums."""
    config, world, pair_set = run.config, run.world, run.source.pairs
    step_pairs = sum(len(indices) for indices in micro_batches)  # over all ranks
    # DDP under mixed precision reduces every micro-batch (in float32) into the masters
    sync_every_micro_batch = run.masters is not None and world.mode == "ddp"
    stats = PairStats()
    for number, indices in enumerate(micro_batches):
        mine, stand_in = shard(indices, world)
        table = pair_set.reference_table
        batch = collate_pairs(
            [pair_set.pairs[i] for i in mine],
            run.pad_id,
            None if table is None else table[mine],
            run.layout,
        ).to(world.device)
        last = number == len(micro_batches) - 1
        with gradient_sync(run.scorer, enabled=last or sync_every_micro_batch):
            losses, batch_stats = pair_losses(
                run.scorer, run.reference, batch, config, measure, run.offload
            )
            # x world size: DDP and FSDP average the ranks' gradients
            weight = 0.0 if stand_in else world.size / step_pairs
            (losses.sum() * weight).backward()
        if run.masters is not None:
            run.masters.collect_grads()  # (streamed already in one process)
        stats.add(batch_stats.zeroed() if stand_in else batch_stats)
    return stats.all_reduce(world)


def _evaluate_if_due(run: Run, done: int, position: Any, write: Callable[[str], None]) -> bool:
    """``evaluate_step`` when step ``done`` evaluates; whether it improved the best metric
    (``position`` tells a failure inside it that it happened while evaluating)."""
    if not evaluates_at(run, done):
        return False
    position.evaluating = True
    with trained_steps_kept(run, done, _evaluation_pending):  # eval_generate's labeller may fail
        write(evaluate_step(run, done))
    position.evaluating = False
    return run.best.update(done, run.logger.rows[-1])


def _evaluation_pending(run: Run, done: int) -> Path:
    """The checkpoint of a step whose evaluation failed (eval_generate's labeller): the resume
    evaluates that step first, or its eval row, its best-model comparison and, at the last
    step, the run's final evaluation were skipped."""
    return checkpoint_step(run, done, evaluation_pending=True)


def _start_round(run: Run, step: int, write: Callable[[str], None]) -> None:
    """Online DPO: a new round's pairs are sampled and labelled when ``step`` starts one (its
    metrics logged); offline sources have nothing to prepare."""
    with trained_steps_kept(run, step, checkpoint_step):  # a labeller's failure: saved first
        round_metrics = run.source.prepare(step)
    if round_metrics:
        run.logger.log(step + 1, round_metrics)
        write(format_metrics(step + 1, run.total_steps, round_metrics))
        if round_metrics.get("online/pairs") == 0:
            write(_no_pairs(run.config, round_metrics))


def _upkeep(run: Run, done: int) -> None:
    """What is due after an optimizer step besides logging: the CUDA cache emptied
    (transformers' torch_empty_cache_steps; nothing on a CPU) and TR-DPO's reference sync."""
    if due(done, run.config.torch_empty_cache_steps or 0):
        torch.cuda.empty_cache()
    if due(done, run.config.sync_ref_model and run.config.ref_model_sync_steps):
        sync_reference(run, run.config.ref_model_mixup_alpha)


def _stopped(run: Run, done: int, signal: str, checkpoint: Path) -> TrainResult:
    """A run stopped by a signal after its checkpoint: said with how to continue."""
    run.logger.close()
    run.echo(
        f"stopped by {signal} after step {done}; checkpoint {checkpoint}; "
        f"continue with {resuming('latest')}"
    )
    return train_result(run, run.policy, run.reference, done, signal)


def _advance_schedule(scheduler: Any) -> None:
    """The schedule moves on at every step, also one that updated nothing (skipped as
    non-finite, or an online round without pairs): torch's warning that the optimizer has not
    stepped yet names a misuse that this is not."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        scheduler.step()


def _no_pairs(config: DPOConfig, metrics: dict[str, float]) -> str:
    """Why an online round trains nothing: its labellers scored none of its samples (None or
    NaN each: it was said as rewards tied), or every prompt's rewards tied (within the gap)."""
    steps = f"its {config.steps_per_round} step(s) update nothing"
    head = f"online round {int(metrics['online/round'])} found no pair"
    samples, scored = int(metrics["online/samples"]), int(metrics["online/scored"])
    if not scored:
        return (
            f"{head}: the labeller scored none of its {samples} samples (each reward None "
            f"or NaN); {steps}"
        )
    unscored = f"; {samples - scored} of {samples} samples unscored" if scored < samples else ""
    return (
        f"{head} (no prompt's completions differ in reward by more than online_reward_gap "
        f"{config.online_reward_gap:g}{unscored}); {steps}"
    )


def _stop_nonfinite(run: Run, step: int) -> None:
    sources = run.source.pairs.sources
    rows = [sources[i] for m in run.source.micro_batches(step) for i in m]
    in_a_row, limit = run.nonfinite_in_a_row, run.config.max_nonfinite_steps
    raise TrainingStopped(
        f"step {step + 1}: non-finite loss or gradient in {in_a_row} steps in a row "
        f"(max_nonfinite_steps={limit}); this step's pairs: {', '.join(rows[:4])}"
        f"{' ...' if len(rows) > 4 else ''}; weights are those of step "
        f"{step + 1 - in_a_row}, checkpoints are intact"
    )


def _evaluate_at_start(run: Run, position: Any, write: Callable[[str], None]) -> bool:
    """``eval_on_start``'s baseline of the starting model (as in transformers, never the best);
    the resumed step's evaluation when it failed there (its labeller); an ``eval_delay`` that
    holds back every evaluation of the run is said at once. Whether early stopping's patience
    ran out at the resumed step."""
    if run.config.eval_on_start and run.start_step == 0 and evaluates(run):
        position.evaluating = True
        write(evaluate_step(run, 0))
        position.evaluating = False
    if run.evaluation_pending:
        _evaluate_if_due(run, run.start_step, position, write)
        # saved again as a run that did not fail saves it, after the evaluation (the best
        # value, and no second evaluation if this run stops before its next checkpoint)
        write(f"saved {checkpoint_step(run, run.start_step)}")
        if run.best.patience_spent():
            write(f"early stopping after step {run.start_step}: {run.best.describe()}")
            return True
    later = range(run.start_step + 1, run.total_steps + 1)
    delayed = run.config.eval_delay and evaluates(run)
    if delayed and not any(evaluates_at(run, step) for step in later):
        write(no_evaluation(run))
    return False


def _stop_requested(run: Run, stop: StopRequest) -> str | None:
    """The signal that reached this rank or any other, named alike on every rank (each then
    stops after the same step and exits with the same code; a rank that got none said
    "another rank's signal" and exited as if finished); SIGTERM, a scheduler's, first."""
    if not run.world.enabled:
        return stop.requested
    names = ("SIGTERM", "SIGINT")
    got = [float(stop.requested == name) for name in names]
    got.append(float(stop.requested is not None and stop.requested not in names))
    counts = all_reduce_sum(got, run.world)
    return next((name for name, n in zip((*names, "SIGTERM"), counts, strict=True) if n), None)


def _silent(_: str) -> None:
    pass
