"""Resumable checkpoints in ``output_dir/checkpoint-STEP/``.

A checkpoint is a loadable Hugging Face folder (weights, config, tokenizer) plus
``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` (transformers' name; under several
processes each process's own, ``rng_state_N.pth``: random_states.py) and
``trainer_state.json`` (transformers' ``TrainerState`` layout, with directpo's step, data
position and logging window in progress inside: ``trainer_state``) and ``config.yaml`` (the
options it was trained with, where transformers writes training_args.bin: a pickle of its
classes). It is written to a hidden temporary folder, every file flushed to disk (fsync), then
``manifest.json`` (step, and each file's size and BLAKE2 checksum) is written last, and the
folder is renamed into place: a crash mid-write never leaves a half checkpoint under a
``checkpoint-STEP`` name. ``latest`` takes the newest checkpoint whose manifest verifies and
says why it skipped others. Old checkpoints are deleted (by ``save_total_limit``) only after
the new one is complete; a failed write (a full disk) removes its temporary folder and leaves
the previous checkpoints as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from directpo.adapter_starts import as_trained_adapter, write_as_plain_lora
from directpo.distributed import (
    SINGLE_PROCESS,
    World,
    all_reduce_sum,
    barrier,
    broadcast,
)
from directpo.errors import CheckpointError, first_line
from directpo.hub import hub_safe_card
from directpo.model_preparation import config_as_loaded
from directpo.options import replace_text
from directpo.publish import is_complete
from directpo.random_states import current_state, restore_state, rng_file, state_file
from directpo.resumable import (
    MANIFEST,
    MODEL_ONLY,
    foreign_checkpoint,
    list_checkpoints,
    not_resumable,
    read_state,
    resuming,
    start_from,
)
from directpo.sharded_state import load_sharded, save_sharded
from directpo.trainer_state import STATE_FILE, trainer_state
from directpo.weight_names import as_model_state

STAGING = ".checkpoint-{step}.tmp"  # where checkpoint-STEP is written before its rename
ASIDE = ".checkpoint-{step}.replaced.tmp"  # an earlier checkpoint-STEP, while it is replaced
REFERENCE_FILE = "reference.safetensors"  # TR-DPO's moving reference


def verify_checkpoint(path: Path) -> str | None:
    """None if every file the manifest lists is there with its size and checksum, else why."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return foreign_checkpoint(path) or "no manifest (incomplete or not a directpo checkpoint)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return "unreadable manifest"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry["size"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {entry['size']}"
        if _checksum(file) != entry["blake2b"]:
            return f"{name} does not match its checksum"
    return None


def resolve_checkpoint(
    value: str, output_dir: str | Path, echo: Callable[[str], None] = print
) -> Path:
    if value == "latest":
        skipped = []
        for candidate in reversed(list_checkpoints(output_dir)):
            problem = verify_checkpoint(candidate) or not_resumable(candidate)
            if problem is None:
                for name, why in skipped:
                    echo(f"resume: skipped {name}: {why}")
                echo(f"resume: took {candidate.name}, the newest checkpoint that verifies")
                return candidate
            skipped.append((candidate.name, problem))
        grouped: dict[str, list[str]] = {}  # (every save_only_model checkpoint says the same)
        for name, why in skipped:
            grouped.setdefault(why, []).append(name)
        reasons = "; ".join(f"{', '.join(names)}: {why}" for why, names in grouped.items())
        model_only = [Path(output_dir) / name for name, why in skipped if why == MODEL_ONLY]
        instead = f"; {start_from(model_only[0])}" if model_only else ""
        raise CheckpointError(
            f"{resuming('latest')}: no usable checkpoint in {output_dir}"
            + (f" ({reasons})" if reasons else "")
            + instead
        )
    path = Path(value)
    problem = verify_checkpoint(path)
    if problem is None and not_resumable(path):
        problem = f"{MODEL_ONLY}; {start_from(path)}"
    if problem is not None:
        raise CheckpointError(f"{resuming(value)}: {problem}")
    return path


def finish_staged(output_dir: Path, echo: Callable[[str], None] = print) -> None:
    """A staged ``.checkpoint-STEP.tmp`` whose manifest verifies, with no ``checkpoint-STEP``
    beside it, was written whole by a run killed before its rename: moved into place, where
    it was removed with the half-written ones (its steps lost). Rank 0, holding the lock.

    Saving a step again (after a resume) moves the old ``checkpoint-STEP`` aside
    (``ASIDE``) before the new one takes its name: killed between the two renames with a new
    one that does not verify, the old one is put back (it was removed with the staged folders
    as half written: the checkpoint the run had resumed from, lost), with one line saying so."""
    for staged in sorted(output_dir.glob(STAGING.format(step="*"))):
        step = staged.name.removeprefix(".checkpoint-").removesuffix(".tmp")
        final = output_dir / f"checkpoint-{step}"
        if not step.isdigit() or final.exists():
            continue
        problem = verify_checkpoint(staged)
        if problem is None:
            os.replace(staged, final)  # (``latest`` then says it took it)
            continue
        aside = output_dir / ASIDE.format(step=step)
        if aside.is_dir() and verify_checkpoint(aside) is None:
            os.replace(aside, final)
            echo(
                f"checkpoint-{step}: its new save was cut short ({problem}); the earlier "
                f"checkpoint-{step} it was replacing is kept"
            )
    for aside in sorted(output_dir.glob(ASIDE.format(step="*"))):  # no staged one beside it
        step = aside.name.removeprefix(".checkpoint-").removesuffix(".replaced.tmp")
        final = output_dir / f"checkpoint-{step}"
        if step.isdigit() and not final.exists() and verify_checkpoint(aside) is None:
            os.replace(aside, final)
            echo(f"checkpoint-{step}: its new save was lost; the earlier one is kept")


def retire_checkpoints_after(output_dir: Path, step: int, echo: Callable[[str], None]) -> None:
    """Checkpoints after the resumed step belong to the trajectory this resume replaces: left
    as they are, ``latest`` would take them after an interruption and ``save_total_limit``
    would delete the new ones first. They are renamed, not deleted (they are someone's work)."""
    for path in list_checkpoints(output_dir):
        if int(path.name.removeprefix("checkpoint-")) <= step:
            continue
        target, n = output_dir / f"retired-{path.name}", 1
        while target.exists():
            n += 1
            target = output_dir / f"retired-{path.name}-{n}"
        path.rename(target)
        echo(f"resume: {path.name} is later than step {step}: moved aside to {target.name}")


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    save_total_limit: int | None,
    world: World = SINGLE_PROCESS,
    sharded: torch.nn.Module | None = None,
    keep: str | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    model_only: bool = False,
    fields: dict[str, Any] | None = None,
    record: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``checkpoint-STEP``; every rank calls it in distributed training.

    With ``sharded`` (an FSDP module), every rank writes its shards of weights and optimizer
    under ``sharded/`` (torch.distributed.checkpoint) and the folder holds no whole model;
    otherwise rank 0 writes the Hugging Face weights and ``optimizer.pt``. Every rank writes
    its random state (``rng_state_N.pth``); rank 0 writes the rest, the manifest (over every
    rank's files) and renames the folder into place.
    ``tensors``: more safetensors files to write, by file name (TR-DPO's reference).
    ``keep``: the name of a checkpoint ``save_total_limit`` never deletes (the best).
    ``model_only`` (save_only_model): no optimizer, schedule or RNG state; such a checkpoint
    loads as a model (and as the best one) but does not resume (``resumable``).
    ``state`` is directpo's resume state; ``fields`` the ``TrainerState`` fields of
    trainer_state.json (``trainer_state.run_fields``). ``record`` writes the run's options
    into the folder (its config.yaml: transformers' checkpoints carry training_args.bin).
    """
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / STAGING.format(step=step)
    kept_optimizer = None if model_only else optimizer
    # every rank's own random state (its dropout masks, its sampling), taken before any write
    rng = None if model_only else current_state()

    def every_rank() -> None:
        if rng is not None:
            torch.save(rng, tmp / rng_file(world.rank, world.size))
        if sharded is not None:
            save_sharded(tmp / "sharded", sharded, kept_optimizer)

    state = {**state, "model_only": True} if model_only else state
    state = trainer_state(step, state, fields or {})
    problem = write_staged(
        tmp,
        world,
        every_rank=every_rank,
        on_main=lambda: _write_main_files(
            tmp, step, model, tokenizer, kept_optimizer, scheduler, state, sharded is None,
            tensors or {}, record,
        ),
    )  # fmt: skip
    if problem is not None:  # a full disk, a quota, a vanished mount: keep what was there
        previous = [p.name for p in list_checkpoints(output_dir)]
        raise CheckpointError(
            f"cannot write checkpoint-{step} in {output_dir} ({problem}); "
            f"earlier checkpoints are intact ({', '.join(previous) or 'none'})"
        )
    if world.is_main:
        if final.exists():  # the same step saved again after a resume: replace it whole
            # moved aside, not deleted first: a kill during the delete (seconds for a large
            # model) left neither, the staged one then removed as half written: the very
            # checkpoint the run resumed from was lost. Now a kill between the renames leaves
            # it staged and complete, which the next run moves into place (finish_staged)
            aside = output_dir / ASIDE.format(step=step)
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            try:
                os.replace(tmp, final)
            except OSError as exc:  # the earlier one back under its name, the new one staged
                os.replace(aside, final)
                raise CheckpointError(
                    f"cannot move checkpoint-{step} into place in {output_dir} "
                    f"({exc.strerror or exc}); the earlier checkpoint-{step} is kept"
                ) from None
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync(output_dir)
        if save_total_limit is not None:  # ``keep`` (the best) and this one always stay
            protected = {final.name} | ({keep} if keep else set())
            existing = list_checkpoints(output_dir)
            surplus = len(existing) - max(save_total_limit, len(protected))
            others = [p for p in existing if p.name not in protected]
            for old in others[: max(0, surplus)]:
                shutil.rmtree(old, ignore_errors=True)
    barrier(world)
    return final


def write_staged(
    staging: Path,
    world: World,
    every_rank: Callable[[], Any] | None = None,
    on_main: Callable[[], Any] | None = None,
) -> str | None:
    """Write into a fresh ``staging`` folder beside its destination: ``every_rank`` on every
    rank (their shards), then ``on_main`` on rank 0. Returns None, or why a rank could not
    write (the same answer on every rank), with ``staging`` removed. Checkpoints and the final
    folder are written this way; the caller moves ``staging`` into place. ``every_rank`` must
    run no collective after a write of rank 0's alone: a failed write skips it, and the ranks
    waiting in it would hang while rank 0 waits here."""
    folder = staging.parent
    problem = None
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        problem = attempt_write(lambda: staging.mkdir(parents=True), folder)
    problem = broadcast(problem, world)
    if problem is None and every_rank is not None:
        failed = attempt_write(every_rank, folder)
        if all_reduce_sum([float(failed is not None)], world)[0]:
            problem = failed or "another rank could not write its part"
    if problem is None and on_main is not None and world.is_main:
        problem = attempt_write(on_main, folder)
    problem = broadcast(problem, world)
    # (a final folder marked complete failed while being moved into place: it is the run's
    # model, which the next run or reader of the folder finishes moving; publish.py)
    if problem is not None and world.is_main and not is_complete(staging):
        shutil.rmtree(staging, ignore_errors=True)
    return problem


def write_or_stop(path: Path, write: Callable[[], Any]) -> None:
    """``write``, which replaces ``path`` whole (options.replace_text), before the first step
    (a resume's config.yaml and metrics.jsonl): a full or read-only disk stops the run in one
    line naming the file, where an OSError's traceback came out; ``path`` is as it was."""
    earlier = path.is_file()
    problem = attempt_write(write, path.parent)
    if problem is not None:
        kept = f"; the earlier {path.name} there is as it was" if earlier else ""
        raise CheckpointError(f"cannot write {path} ({problem}): stopped before training{kept}")


def attempt_write(action: Callable[[], Any], folder: Path | None = None) -> str | None:
    """None if ``action`` ran, else why it could not write: an OSError, what ``torch.save``
    (a RuntimeError) or safetensors (a SafetensorError) raise on a full disk, or the collective
    error torch.distributed.checkpoint raises on every rank when one rank's write fails.
    With ``folder``, the free space of its disk is added to the reason."""
    from safetensors import SafetensorError
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        action()
    except OSError as exc:
        why = str(exc.strerror or exc)
    except CheckpointException as exc:  # its text is every failed rank's traceback
        ranks: dict[str, list[int]] = {}
        for rank, (cause, _) in sorted(exc.failures.items()):
            cause_text = cause.strerror if isinstance(cause, OSError) else first_line(cause)
            ranks.setdefault(str(cause_text or cause), []).append(rank)
        why = "; ".join(
            f"rank{'s' * (len(r) > 1)} {', '.join(map(str, r))}: {cause}"
            for cause, r in ranks.items()
        ) or first_line(exc)
    except (RuntimeError, SafetensorError) as exc:
        why = first_line(exc)
        if "inline_container" in why or "PytorchStreamWriter" in why:  # torch.save's C++ text
            detail = why.rsplit("] ", 1)[-1].lstrip(". ")
            why = f"torch.save could not write the whole file ({detail})"
    else:
        return None
    if folder is not None:
        with contextlib.suppress(OSError):
            why += f"; {shutil.disk_usage(folder).free / 2**20:.0f} MiB free on that disk"
    return why


def _write_main_files(
    tmp: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    state: dict[str, Any],
    with_weights: bool,
    tensors: dict[str, dict[str, torch.Tensor]],
    record: Callable[[Path], None] | None = None,
) -> None:
    """The files rank 0 writes (each rank wrote its random state); without ``optimizer``
    (save_only_model) no optimizer or schedule."""
    if with_weights:
        # the trained adapter only: a second one (TR-DPO's or a continued adapter's reference,
        # "ref") is restored from reference.safetensors or from where the run started
        selected = (
            {"selected_adapters": [model.active_adapter]} if hasattr(model, "peft_config") else {}
        )
        with config_as_loaded(model):
            model.save_pretrained(tmp, safe_serialization=True, **selected)
        write_as_plain_lora(model, tmp)  # loadable as trained; resume takes the rank-r part
        hub_safe_card(tmp)  # an adapter's: peft's card names a local base by its path
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    for name, weights in tensors.items():
        save_file(weights, tmp / name)
    tokenizer.save_pretrained(tmp)
    if optimizer is not None:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    if record is not None:
        record(tmp)
    files = {}
    for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
        _fsync(file)
        files[str(file.relative_to(tmp))] = {
            "size": file.stat().st_size,
            "blake2b": _checksum(file),
        }
    write_manifest(tmp, {"step": step, "files": files})


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """``folder/manifest.json`` replaced whole (a hidden file flushed to disk, then renamed
    over it; options.replace_text, as config.yaml is): written in place, a kill or a full disk
    mid-write left it cut short, the folder then read as no checkpoint or misread."""
    replace_text(folder / MANIFEST, json.dumps(manifest, indent=2))
    _fsync(folder)  # the rename itself on disk


def _checksum(file: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sharded: torch.nn.Module | None = None,
    fit_optimizer_state: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    weights_only: bool = False,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and process ``rank``'s RNG from ``path``; return
    the trainer state. ``weights_only``: the weights alone (the best model, from any checkpoint).

    With ``sharded`` (an FSDP module; every rank calls) the weights and optimizer come from the
    ``sharded/`` folder that ``save_checkpoint`` wrote at the same world size (keyed by
    parameter names). ``fit_optimizer_state`` adapts the saved optimizer state (keyed by
    position) to this optimizer's param groups first (optimizers.fit_saved_groups).
    """
    try:
        if sharded is not None:
            if not (path / "sharded").is_dir():
                raise CheckpointError(f"checkpoint {path}: not an FSDP checkpoint (no sharded/)")
            load_sharded(path / "sharded", sharded, None if weights_only else optimizer)
        else:
            if (path / "sharded").is_dir():
                raise CheckpointError(
                    f"checkpoint {path}: written by distributed: fsdp; resume with the same setting"
                )
            load_model_weights(model, path)
        if weights_only:
            return read_state(path)
        if sharded is None:
            saved = torch.load(path / "optimizer.pt", weights_only=True)
            if fit_optimizer_state is not None:
                saved = fit_optimizer_state(saved)
            optimizer.load_state_dict(saved)
        schedule = torch.load(path / "scheduler.pt", weights_only=True)
        scheduler.load_state_dict(_per_group(schedule, len(optimizer.param_groups)))
        restore_state(torch.load(state_file(path, rank), weights_only=False))
        return read_state(path)
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged or foreign file: name it, never a traceback
        raise CheckpointError(f"checkpoint {path}: cannot restore ({exc})") from None


def _per_group(schedule: dict[str, Any], groups: int) -> dict[str, Any]:
    """A schedule's state saved for another number of param groups (weight decay's second
    group came or went): every group follows the first group's schedule, as they all do."""
    for key in ("base_lrs", "_last_lr", "lr_lambdas"):
        values = schedule.get(key)
        if isinstance(values, list) and values and len(values) != groups:
            schedule[key] = [values[0]] * groups
    return schedule


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load the (possibly sharded) safetensors weights of ``folder`` into ``model`` in place."""
    adapter = folder / "adapter_model.safetensors"
    if adapter.is_file():  # a LoRA checkpoint holds the adapter weights only
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, as_trained_adapter(model, load_file(adapter)))
        if result.unexpected_keys:
            raise CheckpointError(
                f"checkpoint {folder}: adapter does not match the model "
                f"(unexpected {result.unexpected_keys[:3]})"
            )
        return
    files = sorted(folder.glob("model*.safetensors"))  # save_pretrained's names only
    if not files:
        raise CheckpointError(f"checkpoint {folder}: no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    # save_pretrained wrote the names transformers stores (a VLM's visual.*, Mixtral's experts
    # one by one), not the model's own: read back as from_pretrained reads them
    state = as_model_state(model, state)
    _check_shapes(folder, state, model.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    # save_pretrained omits tied weights (e.g. lm_head tied to the embeddings): a missing key is
    # fine only if its tensor is shared with one that was loaded.
    loaded_ptrs = {p.data_ptr() for name, p in model.state_dict().items() if name in state}
    untied = [k for k in missing if model.state_dict()[k].data_ptr() not in loaded_ptrs]
    if untied or unexpected:
        raise CheckpointError(
            f"checkpoint {folder}: weights do not match the model "
            f"(missing {untied[:3]}, unexpected {unexpected[:3]})"
        )


def _check_shapes(
    folder: Path, saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """One line for weights of another model size (torch listed every mismatched tensor: a
    line of kilobytes for a real model)."""
    other = [k for k, v in saved.items() if k in expected and v.shape != expected[k].shape]
    if other:
        first = other[0]
        raise CheckpointError(
            f"checkpoint {folder}: weights do not fit the model: {len(other)} tensors have "
            f"other shapes ({first}: {list(saved[first].shape)} in the checkpoint, "
            f"{list(expected[first].shape)} in the model); it was written for another model"
        )
