"""What stops a run without being a bug, said in one line each: out of GPU memory, a write the
disk refuses, an error one rank of a torchrun job meets alone."""

from __future__ import annotations

import contextlib
import errno
import re
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from directpo.callers import said, setting_verb, spell_change, spell_name, spell_setting
from directpo.checkpoint import list_checkpoints, not_resumable
from directpo.distributed import World, error_key
from directpo.errors import (
    CheckpointError,
    DirectpoError,
    TrainingStopped,
    first_line,
    memory_kind,
)
from directpo.model_locations import is_adapter_folder
from directpo.model_preparation import compile_failure
from directpo.resumable import resuming

if TYPE_CHECKING:
    from directpo.config import DPOConfig
    from directpo.run import Run

# ({auto}: auto_find_batch_size as the caller sets it, as the knobs are: a recipe's
# 'auto_find_batch_size: true' was said to flags and train() beside their own words)
OOM_HELP = (
    "out of {kind} memory at step {step}: {lower_batch} ({raise_accumulation} to keep the "
    "batch; {auto} does it), {knobs}"
)


def memory_knobs(config: DPOConfig, lora: bool, kind: str = "GPU") -> str:
    """The options that lower a step's memory, less those the run has already (the advice
    named lora_r: 16 and precompute_ref_log_probs: true to a run with LoRA and a precomputed
    reference, which changes nothing). ``kind``: the memory that ran out (``memory_kind``):
    activation offloading frees the GPU's, and fills the host's. Said as the caller sets
    options: ``set gradient_checkpointing: true``, ``give --gradient_checkpointing``, ``pass
    gradient_checkpointing=True`` (a recipe's words were said to every caller)."""
    knobs = [] if config.gradient_checkpointing else [said("gradient_checkpointing")]
    if kind == "GPU" and not config.activation_offloading:
        knobs.append(said("activation_offloading"))
    if _can_precompute(config):
        knobs.append(said("precompute_ref_log_probs"))
    if not lora:
        knobs.append(said("lora_r", 16))
    smaller = f"a smaller {spell_name('max_length')} / {spell_name('logprob_chunk_tokens')}"
    return f"{setting_verb()} " + (", ".join([*knobs, f"or {smaller}"]) if knobs else smaller)


def _can_precompute(config: DPOConfig) -> bool:
    """A run that holds a reference model it could precompute instead (online pairs and
    TR-DPO's moving reference cannot be precomputed)."""
    return not (
        config.precompute_ref_log_probs
        or not config.loss_needs_reference
        or config.online
        or config.sync_ref_model
    )


# an evaluation's batches are per_device_eval_batch_size's (auto_find_batch_size halves the
# training step's alone): the training advice sent users to options that change nothing there
EVAL_OOM_HELP = (
    "out of {kind} memory evaluating at step {step}: {lower_batch} (now "
    "{batch}; the held-out pairs' batches and eval_generate's sampling chunks)"
)

# eval_dtype auto's float32 evaluation (precision.py) holds the frozen bf16 weights upcast
EVAL_FLOAT32_HELP = (
    ", or {setting} (the float32 evaluation holds frozen weights in float32, 2 more bytes each)"
)

# torch's error for an op without a deterministic kernel under use_deterministic_algorithms
NONDETERMINISTIC = "does not have a deterministic implementation"

# a write the disk refused (full, over quota, gone read-only), not a bug
REFUSED_WRITES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


@contextlib.contextmanager
def explain_failures(run: Run) -> Iterator[types.SimpleNamespace]:
    """What stops the loop without being a bug, as one line naming the step the loop sets in
    the namespace this yields (the progress bar's count stays at the start where the bar is
    off: other ranks, disable_tqdm): running out of memory (the GPU's or, in torch's
    RuntimeError of the CPU allocator, the host's: errors.memory_kind), with the knobs that lower
    memory, and a refused write of the run's record (metrics.jsonl, samples, online rounds on
    a full disk; checkpoints and the final folder say their own), torch.compile failing on a
    shape or path the start-up check did not try, an op without a deterministic kernel under
    full_determinism. Under torchrun such an
    error is one rank's own (its memory; rank 0 alone writes the record): that rank says it."""
    position = types.SimpleNamespace(step=run.start_step + 1, evaluating=False)
    try:
        yield position
    except (RuntimeError, MemoryError) as exc:
        kind = memory_kind(exc)  # (the CPU / MPS allocators' are plain RuntimeErrors)
        reason = None if kind or isinstance(exc, MemoryError) else compile_failure(exc)
        text = str(exc)
        if kind is not None:
            help_text = EVAL_OOM_HELP if position.evaluating else OOM_HELP
            if position.evaluating and run.eval_float32:
                setting = spell_setting(("eval_dtype", "bfloat16"))
                help_text += EVAL_FLOAT32_HELP.format(setting=setting)
            batch = run.config.per_device_eval_batch_size
            knobs = memory_knobs(run.config, hasattr(run.policy, "peft_config"), kind)
            auto = said("auto_find_batch_size")
            batch_option = f"per_device_{'eval' if position.evaluating else 'train'}_batch_size"
            error: DirectpoError = TrainingStopped(
                help_text.format(
                    step=position.step,
                    batch=batch,
                    kind=kind,
                    knobs=knobs,
                    auto=auto,
                    lower_batch=spell_change("lower", batch_option),
                    raise_accumulation=spell_change("raise", "gradient_accumulation_steps"),
                )  # fmt: skip
            )
        elif reason is None and NONDETERMINISTIC in text:  # full_determinism met such an op
            operation = text.split(NONDETERMINISTIC)[0].strip()
            error = TrainingStopped(
                f"step {position.step}: full_determinism: {operation} has no deterministic "
                "implementation on this device (torch.use_deterministic_algorithms); "
                + spell_setting(("full_determinism", False))
            )
        elif reason is None:
            raise
        else:
            error = TrainingStopped(
                f"step {position.step}: torch.compile failed ({reason}); "
                + spell_setting(("torch_compile", False))
            )
    except OSError as exc:
        if exc.errno not in REFUSED_WRITES:
            raise
        error = CheckpointError(
            f"step {position.step}: cannot write {exc.filename or run.output_dir} "
            f"({exc.strerror}); {what_is_kept(run.output_dir)}"
        )
    else:
        return
    error.rank = run.world.rank if run.world.size > 1 else None
    raise error from None


@contextlib.contextmanager
def trained_steps_kept(run: Run, done: int, save: Callable[[Run, int], Path]) -> Iterator[None]:
    """A user error raised after ``done`` steps (an online round's or eval_generate's labeller:
    a reward function's bug, a judge server gone, at round 40 of a long run): the steps this
    process trained are checkpointed (``save(run, done)``), and the line says where and how
    to continue. They were lost: the run ended with its last save_steps checkpoint, or none.
    One process only: under torchrun the failing rank alone would enter the checkpoint's
    collectives, so the line names the newest checkpoint there is, and the steps it lacks."""
    try:
        yield
    except DirectpoError as error:
        if done == 0 or isinstance(error, TrainingStopped):
            raise
        if run.world.enabled:
            error.args = (f"{error}; {_kept_under_torchrun(run.output_dir, done)}",)
            raise
        # (save_steps wrote it already, or it is the one this run resumed from); one written
        # with save_only_model does not resume: the full one replaces it
        existing = run.output_dir / f"checkpoint-{done}"
        kept = existing.is_dir() and not not_resumable(existing)
        if done <= run.start_step and not kept:
            raise  # nothing trained since the checkpoint resumed from elsewhere
        path = existing if kept else save(run, done)
        error.args = (
            f"{error}; the {done} step(s) trained are kept in {path.name}: fix it and continue "
            f"with {resuming('latest')}",
        )
        raise


def _kept_under_torchrun(output_dir: Path, done: int) -> str:
    """What of ``done`` trained steps a torchrun run stopped by its labeller keeps: its newest
    save_steps checkpoint (none written for the failure, which one rank may meet alone)."""
    written = list_checkpoints(output_dir)
    kept = [path for path in written if not not_resumable(path)]  # (not save_only_model's)
    if not kept:
        weights = f" (save_only_model's {written[-1].name} holds weights only)" if written else ""
        return (
            f"no checkpoint holds the {done} step(s) trained (under torchrun only save_steps "
            f"writes one){weights}: fix it and train again"
        )
    newest = kept[-1].name
    lost = done - int(newest.rsplit("-", 1)[1])
    since = f", the {lost} step(s) since are not kept (save_steps)" if lost > 0 else ""
    return (
        f"the newest checkpoint is {newest}{since}: fix it and continue with {resuming('latest')}"
    )


def what_is_kept(output_dir: Path) -> str:
    """After a write that failed: the run's checkpoints, and how to continue."""
    kept = [path.name for path in list_checkpoints(output_dir)]
    if not kept:
        return "no checkpoint holds this run (save_steps was not reached)"
    return (
        f"its checkpoints are intact (newest {kept[-1]}): make room, then resume with "
        f"{resuming('latest')}"
    )


OWN_ERROR_WAIT_S = 5.0
# how long a rank whose collective lost its peer waits before saying so: on one machine torchrun
# stops it once the failed rank's process has ended, and a process with torch and transformers
# loaded took up to 8 s to end on a busy 2-core machine (rank 0's line then stood beside the
# failed rank's own, a second, misleading cause)
PEER_EXIT_WAIT_S = 30.0


def settle(error: DirectpoError, world: World) -> None:
    """Under torchrun, who says ``error``: one line per distinct failure, not one per rank.
    Each rank that meets an error leaves its text in the process group's store; rank 0 says
    its own, and another rank says its own (as ``rank N: ...``) only where it differs from
    rank 0's: the same bad row, missing option or out-of-memory error on every rank is said
    once. A rank whose error rank 0 does not share (a data file missing on its node) finds
    nothing there: rank 0 is waiting for it in a collective. It looks for OWN_ERROR_WAIT_S at
    most; torchrun stops it meanwhile where rank 0 ended first (its own error said)."""
    if world.size <= 1 or not dist.is_initialized():
        return
    said = str(error)
    try:
        store = dist.distributed_c10d._get_default_store()  # no collective: ranks are apart
        store.set(error_key(world.run, world.rank), said)
        if world.is_main:
            return
        main = error_key(world.run, 0)
        deadline = time.monotonic() + OWN_ERROR_WAIT_S
        # polled: a store.wait that times out logs c10d's socket warnings on stderr
        while not store.check([main]) and time.monotonic() < deadline:
            time.sleep(0.05)
        same = store.check([main]) and store.get(main).decode() == said
    except (RuntimeError, ValueError):  # the store is gone (it was rank 0's, which ended)
        same = False
    if same:
        error.said_by_rank_0 = True
    elif error.rank is None:
        error.rank = world.rank


# what gloo and NCCL say in the collective of a rank whose peer's process ended
PEER_GONE = re.compile(
    r"connection (closed|reset) by peer|broken pipe|remote process exited|"
    r"communicator was aborted|failed to recv",
    re.IGNORECASE,
)


SETUP_OOM_HELP = (
    "out of {kind} memory before the first step (loading the models and optimizer, the "
    "start-up checks on a few short pairs): {knobs}"
)


def setup_out_of_memory(
    exc: BaseException, config: DPOConfig, peft_config: Any = None
) -> DirectpoError | None:
    """Running out of memory while a run sets up, as one line naming what lowers memory there
    and the run does not do yet, else None (the loop says its own)."""
    kind = memory_kind(exc)
    if kind is None:
        return None
    # LoRA: the lora_* options, a peft_config from Python, or an adapter folder continued
    lora = (
        bool(config.lora_r)
        or peft_config is not None
        or is_adapter_folder(config.model_name_or_path)
    )
    knobs = []
    if not lora:
        knobs.append(f"train LoRA adapters ({said('lora_r', 16)}; {said('load_in_4bit')} on a GPU)")
    elif not (config.load_in_4bit or config.load_in_8bit):
        knobs.append(f"load the base quantized ({said('load_in_4bit')}, on a GPU)")
    if _can_precompute(config):
        precompute = spell_setting(("precompute_ref_log_probs", True))
        knobs.append(f"{precompute} (no reference model held)")
    advice = ", ".join([*knobs, "or a smaller model"]) if knobs else "use a smaller model"
    return TrainingStopped(SETUP_OOM_HELP.format(kind=kind, knobs=advice))


def peer_gone(
    exc: BaseException, world: World, finished_in: Path | None = None
) -> DirectpoError | None:
    """A collective that failed because another rank's process ended: after its own error
    (which that rank says) or a crash (torchrun's summary names its exit code or signal). Not
    this rank's failure: it waits, and torchrun stops it meanwhile where the other process was
    its own worker (one machine); one that outlives the wait (another node's) says it in a
    line, never gloo's traceback beside the line of the rank that failed. ``finished_in``: the
    run had finished (its final model written there; the teardown's barrier failed)."""
    if world.size <= 1 or not isinstance(exc, RuntimeError) or not PEER_GONE.search(str(exc)):
        return None
    time.sleep(PEER_EXIT_WAIT_S)
    after = (
        f" after the run had finished (its final model is in {finished_in})" if finished_in else ""
    )
    lost = TrainingStopped(
        f"another rank's process ended{after} (its own error, or torchrun's summary, says "
        f"why): {first_line(exc)[:120]}"
    )
    lost.rank = world.rank
    return lost
