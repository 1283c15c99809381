"""The final output folder: a standard Hugging Face model folder plus the run's record.

``output_dir`` holds config.json, model.safetensors, generation_config.json and the tokenizer
files (``AutoModelForCausalLM.from_pretrained(output_dir)`` needs nothing from directpo), and
beside them ``config.yaml`` (the resolved directpo options), ``metrics.jsonl``, a ``README.md``
model card and the files transformers' ``save_metrics`` / ``save_state`` write
(``train_results.json``, ``eval_results.json``, ``all_results.json``, ``trainer_state.json``).

The folder is written whole into ``output_dir/.final.tmp`` and only then moved into place
(``publish_final``), replacing every model file an earlier save left there: a failed or
interrupted save leaves ``output_dir`` as it was, and a folder never mixes two runs' files
(an old ``model.safetensors`` beside a new adapter would load as a wrong model). A move
killed half way is finished by the next run or reader of the folder (publish.py).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from directpo.adapter_starts import write_as_plain_lora
from directpo.adapters import adapter_base, peft_wrapping
from directpo.callers import spell_option, spell_setting
from directpo.checkpoint import STAGING, finish_staged, list_checkpoints
from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.hub import hub_safe_card
from directpo.model_card import CARD_TAGS, model_card
from directpo.model_files import model_location
from directpo.model_preparation import LoadOptions, config_as_loaded
from directpo.models import load_causal_lm
from directpo.publish import is_complete, publish, roll_forward


@dataclass(frozen=True)
class RunRecord:
    """What the final folder says of the run besides its weights."""

    tokenizer: Any  # or the processor of a vision-language model
    config: DPOConfig
    train_summary: str  # the training data, in a line
    metrics: list[dict[str, Any]]
    precision_note: str = ""  # how much of the update survived save_dtype's rounding, ...
    from_python: tuple[str, ...] = ()  # the datasets given to train() (config.save_record)
    # transformers' files beside the model: train/eval/all_results.json, trainer_state.json
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


FINAL_STAGING = ".final.tmp"
# a model folder's weights (a model's, an adapter's): what makes a folder hold a saved model
WEIGHTS = (
    "model.safetensors", "model-*-of-*.safetensors", "pytorch_model*.bin",
    "adapter_model.safetensors", "adapter_model.bin",
)  # fmt: skip
# a Hugging Face model folder's own files (weights, configs, adapter, tokenizer, processor):
# what one run's final folder writes and another run's must not leave behind
MODEL_FILES = WEIGHTS + (
    "config.json", "generation_config.json", "model.safetensors.index.json",
    "pytorch_model.bin.index.json", "adapter_config.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
    "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
)  # fmt: skip
ADAPTER_FOLDER = "adapter"  # merge_lora's adapter, beside the merged model
REFERENCE_FOLDER = "reference"  # TR-DPO's moved reference, beside the final model


def model_files(folder: Path) -> list[Path]:
    """The files of the model saved in ``folder`` (``MODEL_FILES``) and in its ``adapter/`` and
    ``reference/`` folders, each only if it holds weights: a config.json or vocab.json without
    a model is someone's own file, and a folder named adapter/ may hold someone's notes."""
    # (peft writes its own card into the adapter's folder)
    beside = [
        file
        for name in (ADAPTER_FOLDER, REFERENCE_FOLDER)
        for file in _model_files_in(folder / name, MODEL_FILES + ("README.md",))
    ]
    return _model_files_in(folder, MODEL_FILES) + beside


def _model_files_in(folder: Path, names: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir() or folder.is_symlink():
        return []
    entries = [entry for entry in folder.iterdir() if entry.is_file()]
    if not any(_matches(entry, WEIGHTS) for entry in entries):
        return []
    return sorted(entry for entry in entries if _matches(entry, names))


def _matches(entry: Path, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in patterns)


def remove(paths: list[Path], prune_below: Path | None = None) -> None:
    """Delete ``paths`` (folders whole); with ``prune_below``, also each folder under it that
    their removal left empty (an earlier run's runs/RUN_NAME/, samples/)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        parent = path.parent
        while prune_below is not None and parent != prune_below and inside(parent, prune_below):
            try:
                parent.rmdir()  # only if empty: someone's files in it stay, and so does it
            except OSError:
                break
            parent = parent.parent


# what directpo writes beside the model, per run, by folder: replaced by overwrite_output_dir
# too; only these files, since a folder of that name may hold someone's own (their data in
# samples/, their TensorBoard runs) which overwriting deleted with the folder
RUN_FOLDERS = {
    "runs": "**/events.out.tfevents.*",  # TensorBoard (runs/RUN_NAME/)
    "samples": "step-*.jsonl",  # eval_generate's samples
    "online": "round-*.jsonl",  # online rounds
}
# directpo plot's default output (the earlier run's curves), and transformers' save_metrics /
# save_state files of the final folder (an earlier run's would pass for this one's)
RUN_FILES = (
    "curves.png", "train_results.json", "eval_results.json", "all_results.json",
    "trainer_state.json",
)  # fmt: skip


def run_files(output_dir: Path) -> list[Path]:
    """What an earlier run wrote in ``RUN_FOLDERS`` and ``RUN_FILES``."""
    found = [
        path
        for name, pattern in RUN_FOLDERS.items()
        if (output_dir / name).is_dir() and not (output_dir / name).is_symlink()
        for path in sorted((output_dir / name).glob(pattern))
        if path.is_file()
    ]
    return found + [output_dir / name for name in RUN_FILES if (output_dir / name).is_file()]


LOCK_FILE = ".directpo.lock"


class OutputLock:
    """The one run writing into an ``output_dir``: an exclusive ``flock`` on
    ``output_dir/.directpo.lock``, held by the run's rank 0 until it ends. Two runs started
    into one folder at once both found it empty and wrote into it together (interleaved
    checkpoints, metrics.jsonl and final files); the second is now refused. The kernel drops
    the lock when its process dies (SIGKILL, a crash), so no stale lock outlives a run. A file
    system without ``flock`` (some cluster mounts) is used unlocked, as before."""

    def __init__(self) -> None:
        self.handle: Any = None

    def acquire(self, output_dir: Path) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: unlocked
            return
        path = output_dir / LOCK_FILE
        for _ in range(3):  # the file a finishing run unlinked is not the lock: open again
            handle = path.open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ConfigError(
                    f"output_dir {output_dir} is in use by another run ({holder}); wait for "
                    "it to end, or choose another output_dir"
                ) from None
            except OSError:  # flock unsupported here
                handle.close()
                return
            if path.exists() and os.path.samestat(os.fstat(handle.fileno()), path.stat()):
                handle.truncate(0)
                handle.write(f"directpo pid {os.getpid()} on {socket.gethostname()}\n")
                handle.flush()
                self.handle = handle
                return
            handle.close()

    def release(self) -> None:
        """Unlocked and removed: the finished folder holds no lock file."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.handle.name)
            self.handle.close()
            self.handle = None


def refuse_output_dir_in_use(output_dir: str | Path, config: DPOConfig) -> None:
    """Refuse an ``output_dir`` that holds an earlier run or other files, unless resumed there
    or overwritten; read only (check_run says it with the other options refused at start)."""
    output_dir = Path(output_dir)
    previous, entries, resuming_here = _held(output_dir, config)
    if not entries or resuming_here or config.overwrite_output_dir:
        return
    if previous:
        latest = spell_option("resume_from_checkpoint", "latest")
        what = f"{previous[-1].name}; resume it with {latest},"
    elif model_files(output_dir):
        what = "a finished run (no checkpoint to resume);"
    elif {"config.yaml", "metrics.jsonl"} <= set(entries):
        what = "a run stopped before its first checkpoint (nothing to resume);"
    else:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        what = f"other files ({shown});"
    raise ConfigError(
        f"output_dir {output_dir} already holds {what} choose another output_dir, or "
        f"{spell_setting(('overwrite_output_dir', True))} (it replaces the checkpoints and "
        "model files there)"
    )


def _held(output_dir: Path, config: DPOConfig) -> tuple[list[Path], list[str], bool]:
    """(its checkpoints, its entries but hidden staging ones, whether the run resumes there)."""
    previous = list_checkpoints(output_dir)
    entries = visible_entries(output_dir)
    resume = config.resume_from_checkpoint
    resuming_here = resume == "latest" or (resume is not None and inside(resume, output_dir))
    return previous, entries, resuming_here


def prepare_output_dir(
    output_dir: Path,
    config: DPOConfig,
    lock: OutputLock | None = None,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Refuse to overwrite an earlier run, a model folder or someone's files by accident;
    check that we can write there; with ``lock``, refuse a folder another run is writing.

    A non-empty ``output_dir`` is written into only to resume its own checkpoints, or with
    ``overwrite_output_dir``. Returns what a killed run left half written (staging folders) and
    what overwriting replaces (the earlier run's checkpoints, model files, and its files in
    ``RUN_FOLDERS`` and ``RUN_FILES``; other files stay, README.md / config.yaml /
    metrics.jsonl are rewritten): deleted only once everything else has been validated and
    loaded.
    """
    for key in ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path"):
        source = getattr(config, key)
        if not (source and os.path.isdir(source)):
            continue
        if same_folder(source, output_dir):
            raise ConfigError(
                f"output_dir {output_dir} is the {key} folder: the run would overwrite the "
                "files it starts from; choose another output_dir"
            )
        if config.overwrite_output_dir and inside(source, output_dir):
            raise ConfigError(
                f"{key} {source} is inside output_dir {output_dir}, which overwrite_output_dir "
                "would clear; copy it elsewhere first, or choose another output_dir"
            )
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir {output_dir} is a file, not a folder")
    try:  # (an empty folder made here is not refused below)
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".directpo-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
        if lock is not None:  # before looking inside: a run starting beside us sees it
            lock.acquire(output_dir)
    except OSError as exc:
        raise ConfigError(f"output_dir {output_dir}: not writable ({exc.strerror})") from None
    if lock is not None:  # (rank 0 alone) a final folder's or checkpoint's interrupted move:
        finish_interrupted_publish(output_dir)  # finished, not lost
        finish_staged(output_dir, echo)
    refuse_output_dir_in_use(output_dir, config)  # again, now that the folder is locked
    previous, entries, resuming_here = _held(output_dir, config)
    if entries and not resuming_here:  # overwriting: what the run rewrites must be a run's
        theirs = _someones_run_files(output_dir, previous, entries)
        if theirs:
            raise ConfigError(
                f"output_dir {output_dir} holds {', '.join(theirs)}, which no directpo run "
                "wrote there and this run would replace (overwrite_output_dir keeps only other "
                "files): move them, or choose another output_dir"
            )
    # half-written checkpoints and final folders of a killed run (hidden, never resumed from):
    # nothing else removed them, and each kept a model's worth of disk for good (a complete
    # final folder was moved into place above)
    staged = sorted(output_dir.glob(STAGING.format(step="*"))) + [
        path for path in [output_dir / FINAL_STAGING] if path.is_dir()
    ]
    if resuming_here or not entries:
        return staged
    retired = sorted(output_dir.glob("retired-checkpoint-*"))  # moved aside by a resume
    return staged + previous + retired + model_files(output_dir) + run_files(output_dir)


REWRITTEN = ("README.md", "config.yaml")  # a run's files beside the model, besides metrics


def _someones_run_files(output_dir: Path, previous: list[Path], entries: list[str]) -> list[str]:
    """The files of ``REWRITTEN`` in ``output_dir`` that no earlier run wrote: someone's own
    (a config.yaml kept beside its outputs, notes in README.md), which overwriting replaced
    without a word. An earlier run shows by its checkpoints, its model files, or config.yaml
    with metrics.jsonl (a run stopped before its first checkpoint); a model card directpo
    wrote says so in its tags."""
    if previous or model_files(output_dir) or {"config.yaml", "metrics.jsonl"} <= set(entries):
        return []
    card = output_dir / "README.md"
    front = card.read_text(errors="replace").split("\n---\n")[0] if card.is_file() else ""
    ours = f"\n{CARD_TAGS}\n" in front
    return [name for name in REWRITTEN if name in entries and not (name == "README.md" and ours)]


def visible_entries(output_dir: Path) -> list[str]:
    """The names in ``output_dir`` but hidden ones (staging, the lock), [] if it is missing."""
    entries = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []
    return [name for name in entries if not name.startswith(".")]  # staging, tmp folders


UNSTARTED_RECORD = ("config.yaml", "metrics.jsonl")


def remove_unstarted_record(output_dir: Path) -> None:
    """A run that stopped before it logged a step, in a folder that was empty, takes back its
    record (config.yaml, an empty metrics.jsonl): out of memory at step 1 advised a lower
    batch size, and the retry with it was refused as 'already holds a run stopped before its
    first checkpoint' (as was a retry after a Ctrl-C while the reference was precomputed).
    A folder with anything more (a logged row, a tracker's files) stays as it is."""
    entries = visible_entries(output_dir)
    metrics = output_dir / UNSTARTED_RECORD[1]
    if sorted(entries) != sorted(UNSTARTED_RECORD) or metrics.stat().st_size:
        return
    for name in UNSTARTED_RECORD:
        with contextlib.suppress(OSError):
            (output_dir / name).unlink()


def inside(path: str | Path, folder: str | Path) -> bool:
    """``path`` is ``folder`` or lies under it."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


def same_folder(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def publish_final(staging: Path, output_dir: Path) -> None:
    """Move the completely written final folder ``staging`` into ``output_dir``, removing the
    model files an earlier save left there (renames, the staging folder first marked complete:
    a kill between two renames is finished by the next run, publish.py)."""
    publish(staging, output_dir, model_files)


def finish_interrupted_publish(output_dir: Path) -> bool:
    """Whether ``output_dir`` held a final folder whose move was interrupted (a SIGKILL, a power
    loss between two renames), now finished; the caller holds the folder's lock."""
    staging = output_dir / FINAL_STAGING
    if not is_complete(staging):
        return False
    roll_forward(staging, output_dir, model_files)
    return True


def finish_publish_before_reading(folder: str | os.PathLike) -> None:
    """A run folder read for scoring (score, rank, generate, ``ImplicitReward.from_run``):
    its interrupted final move finished first, unless a run is writing it now (its own move
    is under way) or the folder is read-only (it loads as it is)."""
    path = Path(folder)
    if not is_complete(path / FINAL_STAGING):
        return
    lock = OutputLock()
    try:
        lock.acquire(path)
        finish_interrupted_publish(path)
    except (ConfigError, OSError):
        return
    finally:
        lock.release()


def save_final_model(
    output_dir: Path, model: torch.nn.Module, record: RunRecord
) -> torch.nn.Module:
    """Write the final folder; returns the model it holds (merged, with ``merge_lora``).

    Weights are written in ``config.precision.save`` (float32 masters by default under mixed
    precision). With LoRA, ``output_dir`` holds the adapter (loads with
    ``AutoModelForCausalLM`` when peft is installed, or with ``peft.AutoPeftModelForCausalLM``);
    with ``merge_lora`` it holds the merged plain model and ``output_dir/adapter`` the adapter.
    """
    config, tokenizer = record.config, record.tokenizer
    save_dtype = config.precision.save
    is_lora = hasattr(model, "peft_config")
    base = None if is_lora and not config.merge_lora else _rounded_base(model, config)
    if is_lora and not config.merge_lora:  # only the adapters are written
        for param in model.parameters():
            if param.requires_grad and param.is_floating_point():
                param.data = param.data.to(save_dtype)
    else:  # merged in save_dtype: a bf16 base plus a float32 update must not round it away
        model.to(save_dtype)
        if base is not None and not is_lora:
            _restore_frozen(model, base, config)
    # the trained adapter only (a continued adapter's frozen start, "ref", is not output)
    selected = {"selected_adapters": [model.active_adapter]} if is_lora else {}
    if is_lora and config.merge_lora:
        model.save_pretrained(output_dir / "adapter", safe_serialization=True, **selected)
        write_as_plain_lora(model, output_dir / "adapter")  # what the fresh base merges
        hub_safe_card(output_dir / "adapter")  # peft's card names a local base by its path
        tokenizer.save_pretrained(output_dir / "adapter")
        if base is None:
            model = model.merge_and_unload()
        else:
            model = _merged_into_fresh_base(base, output_dir / "adapter", config)
        selected = {}
    with config_as_loaded(model):  # config.json as the base's, not as trained
        model.save_pretrained(output_dir, safe_serialization=True, **selected)
    write_as_plain_lora(model, output_dir)
    save_run_files(output_dir, model, record)
    return model


def _rounded_base(model: torch.nn.Module, config: DPOConfig) -> str | None:
    """The stored model to take frozen weights from, or None when the trained model holds them
    exactly. Training holds frozen weights (a LoRA base, a frozen vision tower) in the compute
    dtype (bf16 under mixed precision, 2 bytes a weight): written in a wider save dtype, every
    frozen weight of a float32 checkpoint would be saved as its bf16 rounding, though training
    never changed it (TRL merges into the base as loaded). A bf16 checkpoint lost nothing."""
    compute, save = config.precision.compute, config.precision.save
    if compute.itemsize >= save.itemsize or config.load_in_4bit or config.load_in_8bit:
        return None
    name = config.model_name_or_path
    frozen = any(not p.requires_grad and p.is_floating_point() for p in model.parameters())
    if not name or not (frozen or hasattr(model, "peft_config")):
        return None
    base = adapter_base(name) or name
    from transformers import AutoConfig

    stored = AutoConfig.from_pretrained(
        base,
        trust_remote_code=config.trust_remote_code,
        **model_location(config.model_init_kwargs),
    ).dtype
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    if isinstance(stored, torch.dtype) and stored.itemsize <= compute.itemsize:
        return None
    return base


def _restore_frozen(model: torch.nn.Module, base: str, config: DPOConfig) -> None:
    """The frozen weights of ``model`` (already in the save dtype) set to ``base``'s as stored."""
    stored = dict(_fresh(base, config).named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.requires_grad and param.is_floating_point() and name in stored:
                param.copy_(stored[name])


def _fresh(base: str, config: DPOConfig) -> torch.nn.Module:
    """``base`` loaded anew on the CPU in the save dtype."""
    options = LoadOptions(
        init_kwargs=dict(config.model_init_kwargs or {}),
        trust_remote_code=config.trust_remote_code,
    )
    return load_causal_lm(base, config.precision.save, trainable=False, options=options)


def _merged_into_fresh_base(base: str, adapter: Path, config: DPOConfig) -> torch.nn.Module:
    """The saved adapter merged into ``base`` loaded anew (on the CPU) in the save dtype."""
    from peft import PeftModel

    with peft_wrapping():
        wrapped = PeftModel.from_pretrained(_fresh(base, config), str(adapter))
    return wrapped.merge_and_unload()


def save_run_files(output_dir: Path, model: torch.nn.Module, record: RunRecord) -> None:
    """Everything of the final folder but the weights: tokenizer (or processor), generation
    config, config.yaml, the model card and transformers' results files (``record.results``)."""
    tokenizer, config = record.tokenizer, record.config
    tokenizer.save_pretrained(output_dir)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(output_dir)
    config.save_record(output_dir / "config.yaml", record.from_python)
    vision = getattr(tokenizer, "image_processor", None) is not None  # a processor was saved
    adapter = (output_dir / "adapter_config.json").is_file()  # LoRA without merge_lora
    card = model_card(
        config,
        record.train_summary,
        record.metrics,
        record.precision_note,
        vision=vision,
        adapter=adapter,
    )
    (output_dir / "README.md").write_text(card)
    for name, content in record.results.items():
        (output_dir / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
