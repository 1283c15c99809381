"""Which checkpoints can continue a run, read from their small files alone (no torch): the
checkpoint folders of an output_dir, one written by transformers' Trainer (a TRL run), one
written with save_only_model, and the refusal of either (or of ``latest`` with none) before
any model loads (checkpoint.py writes, verifies and restores them)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from directpo.callers import Blank, in_askers_words, said, spell_option, spell_setting
from directpo.errors import CheckpointError, ConfigError
from directpo.loss_names import needs_reference
from directpo.trainer_state import STATE_FILE, own_state

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "manifest.json"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders in ``output_dir`` (complete or not), oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def resume_as_given(config: Any) -> contextlib.AbstractContextManager[None]:
    """A resume's refusals said as its source wrote resume_from_checkpoint: ``directpo train
    recipe.yaml --resume_from_checkpoint latest`` (the flag TRL's and transformers' users
    resume with) is told ``--resume_from_checkpoint latest: ...; give ...``, not the recipe's
    key it did not write."""
    return in_askers_words(config, "resume_from_checkpoint", ())


def resuming(value: str) -> str:
    """A refused resume's lead, the checkpoint as the caller named it: ``resume_from_checkpoint:
    latest`` in a recipe, ``--resume_from_checkpoint latest`` on a command line,
    ``resume_from_checkpoint='latest'`` in Python (every caller was told the recipe's)."""
    return said("resume_from_checkpoint", value)


MODEL_ONLY = (
    "written with save_only_model: true (no optimizer, schedule or RNG state): not resumable"
)


def refuse_model_only(value: str, output_dir: str | Path) -> None:
    """Before any model loads: the CheckpointError ``resolve_checkpoint`` would raise after
    loading them (minutes for a large model) when the checkpoint named, or every checkpoint
    of ``latest``, was written with save_only_model, or ``latest`` finds none; reading their
    state files is cheap (their checksums are verified later)."""
    if value != "latest":
        foreign = foreign_checkpoint(Path(value))
        if foreign:
            raise CheckpointError(f"{resuming(value)}: {foreign}")
        if not_resumable(Path(value)):
            problem = f"{MODEL_ONLY}; {start_from(Path(value))}"
            raise CheckpointError(f"{resuming(value)}: {problem}")
        return
    candidates = list(reversed(list_checkpoints(output_dir)))
    # (a checkpoint written whole but killed before its rename is moved into place once the
    # folder is locked: checkpoint.finish_staged; refused here, the run was started anew)
    if not candidates and not _staged_whole(output_dir):  # (said only after the data loaded)
        raise CheckpointError(
            f"{resuming('latest')}: no checkpoint in {output_dir} to resume; "
            f"{spell_setting(('resume_from_checkpoint', None))} to start a new run"
        )
    if not candidates:
        return
    if all(foreign_checkpoint(path) for path in candidates):  # a TRL run's output_dir
        names = ", ".join(path.name for path in candidates)
        raise CheckpointError(
            f"{resuming('latest')}: no directpo checkpoint in {output_dir} ({names}: "
            f"{foreign_checkpoint(candidates[0])})"
        )
    if all(not_resumable(path) for path in candidates):
        names = ", ".join(path.name for path in candidates)
        raise CheckpointError(
            f"{resuming('latest')}: no usable checkpoint in {output_dir} ({names}: "
            f"{MODEL_ONLY}); {start_from(candidates[0])}"
        )


def _staged_whole(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a staged checkpoint (``.checkpoint-STEP.tmp``, or an
    earlier one moved aside while it was replaced, which finish_staged may put back) whose
    manifest was written (its checksums are verified when it is moved into place)."""
    staged = Path(output_dir).glob(".checkpoint-*.tmp")
    return any(
        re.fullmatch(r"\.checkpoint-\d+(\.replaced)?\.tmp", path.name)
        and _manifest_read(path / MANIFEST)
        for path in staged
    )


def _manifest_read(path: Path) -> bool:
    """Whether ``path`` is a whole manifest: one cut short by a kill while it was written is
    no checkpoint (finish_staged leaves it, and the next run removes it as half written), so
    'latest' is refused before the data loads, as with no staged checkpoint at all."""
    try:
        return isinstance(json.loads(path.read_text()).get("files"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def foreign_checkpoint(path: Path) -> str | None:
    """Why a checkpoint transformers' Trainer wrote (a TRL run's: training_args.bin, no
    manifest) cannot continue here: its optimizer and data order are its trainer's."""
    if (path / MANIFEST).is_file() or not (path / "training_args.bin").is_file():
        return None
    return (
        "written by transformers' Trainer (a TRL run: training_args.bin), not by directpo: its "
        f"optimizer state and data order continue only there; {start_from(path)}"
    )


def start_from(path: Path) -> str:
    """How to go on from the weights of a checkpoint that cannot resume: a new run from them,
    against the run's own reference (model_name_or_path alone makes the checkpoint the new
    run's reference too: another objective, without a word)."""
    reference = _run_reference(path)
    settings = [("model_name_or_path", str(path))]
    settings += [("ref_model_name_or_path", reference)] if reference else []
    spelled = ", ".join(spell_option(name, value, in_recipe=False) for name, value in settings)
    return f"start a new run from its weights ({spelled})"


# a reference said in words where no record names it (a blank to fill, not a path to quote)
STARTING_MODEL = Blank("the run's starting model")


def _run_reference(path: Path) -> str | None:
    """The reference model of the run that wrote checkpoint ``path`` (its config.yaml's), or
    "the run's starting model" where it has no record; None where its loss reads none, or
    TR-DPO moved it (a new run's reference is then no choice to keep)."""
    from directpo.yaml_interpolation import read_run_record  # (it reads options')

    try:
        values = read_run_record(str(path / "config.yaml"))
    except (ConfigError, OSError):
        return STARTING_MODEL  # (transformers' Trainer's: no record)
    losses = values.get("loss_type") or ["sigmoid"]
    losses = [losses] if isinstance(losses, str) else losses
    try:
        free = not needs_reference(losses) or bool(values.get("sync_ref_model"))
    except (KeyError, TypeError):
        free = False
    if free:
        return None
    reference = values.get("ref_model_name_or_path") or values.get("model_name_or_path")
    return str(reference) if reference else STARTING_MODEL


def not_resumable(path: Path) -> str | None:
    """Why a (verified) checkpoint cannot continue a run: one written with save_only_model holds
    no optimizer state (transformers cannot resume one either; restarting AdamW's moments and
    the schedule would make another run, not this one continued)."""
    try:
        model_only = read_state(path).get("model_only")
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None  # the restore names what is wrong with the file
    return MODEL_ONLY if model_only else None


def read_state(path: Path) -> dict[str, Any]:
    """directpo's resume state in ``path``'s trainer_state.json (either layout, see
    ``trainer_state``)."""
    return own_state(json.loads((path / STATE_FILE).read_text()))
