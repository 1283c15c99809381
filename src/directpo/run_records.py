"""The options of the directpo run that wrote a folder (its config.yaml), read without torch:
score and rank ask for --beta / --ref_model_name_or_path where a folder holds no run, in the
pass that says the other refused options, so a missing --input beside a run folder was said
after torch's import (seconds) only for this check."""

from __future__ import annotations

import os
from pathlib import Path

from directpo.callers import Entry, caller, spell_setting
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError
from directpo.hub import uncached_where_unreachable
from directpo.yaml_interpolation import written_escaped

# checkpoint.MANIFEST and outputs.FINAL_STAGING, whose modules import torch
MANIFEST = "manifest.json"
FINAL_STAGING = ".final.tmp"


def run_values_missing(
    run_dir: str, ref_model_name_or_path: str | None, beta: float | None
) -> str | None:
    """Why ``from_run`` cannot score with ``run_dir`` (β or the reference not given, and no
    directpo run's config.yaml to take them from), or None; read without loading a model, so
    that score and rank say it with the input's bad rows, before any model loads. Named as the
    caller gives them (``give --beta``, from_run's ``pass beta=...``); train's
    implicit_reward_model, which has no keyword or flag for them, told what it takes."""
    # only the values still missing: one given is not asked for again
    names = [
        name
        for name, value in (("ref_model_name_or_path", ref_model_name_or_path), ("beta", beta))
        if value is None
    ]
    if not names:
        return None
    # (a Python caller read a flag's verb and a name to complete: 'give beta=')
    give = spell_setting(*names, last=" and ")
    if caller().entry is Entry.TRAIN:  # train's recipe has none: the run's config.yaml has
        give = (
            "implicit_reward_model takes a folder directpo train wrote (its config.yaml names "
            "beta and the reference)"
        )
    try:
        config = run_config(run_dir)
    except ConfigError as err:  # another tool's config.yaml
        return f"{err} (not a directpo run's config.yaml? {give})"
    if config is None and not os.path.exists(os.path.expanduser(run_dir)):
        # a mistyped run folder (runs/my-dpo2): told to give a reference and beta, the user
        # went looking for a model's settings, not for the typo; a hub id is no run either,
        # but one that cannot be loaded here (offline, not cached) is said so at once: told
        # only to give --beta, the user learnt after giving it that no model could load
        unloadable = uncached_where_unreachable(run_dir)
        if unloadable:
            return f"{run_dir}: no such run folder, and {unloadable}"
        return (
            f"{run_dir}: no such run folder (for a hub model, which holds no directpo run's "
            f"config.yaml: {give})"
        )
    if config is None:
        return f"{run_dir} has no config.yaml from a directpo run: {give}"
    return None


def run_config(folder: str | os.PathLike) -> DPOConfig | None:
    """The options of the directpo run that wrote ``folder`` (its output_dir, one of its
    checkpoints or, with merge_lora, its ``adapter`` folder: the run's config.yaml), or None.
    A run's final folder whose move into place was killed half way is finished first."""
    path = Path(folder)
    if (path / FINAL_STAGING).is_dir():
        from directpo.outputs import finish_publish_before_reading  # (torch: only then)

        finish_publish_before_reading(path)
    saved = path / "config.yaml"
    merged = path.name == "adapter" and (path.parent / "metrics.jsonl").is_file()  # a run's
    if not saved.is_file() and ((path / MANIFEST).is_file() or merged):
        saved = path.parent / "config.yaml"
    if not saved.is_file():
        return None
    # a run's record escapes a literal ${ (save_yaml); one written before holds it as given
    return load_config(str(saved), interpolate=written_escaped(saved))
