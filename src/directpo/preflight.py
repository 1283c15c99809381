"""Checks that touch the machine and the file system, run before any data or model loads:
files and model folders that must exist (or look like hub ids), options that need CUDA, a
tracker that must be installed, a reward function that must import. Where a model option
points is ``model_locations``'; the device's options, ``device_checks``'; the evaluation
options', ``eval_checks``'."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from directpo.callers import (
    Spelling,
    as_loaded,
    caller,
    said,
    spell_given,
    spell_setting,
    spell_value,
)
from directpo.data_folders import mixed_splits, repeated_file
from directpo.device_checks import check_device
from directpo.errors import CheckpointError, ConfigError, collected, refuse_all
from directpo.eval_checks import check_eval_generate, check_evaluation
from directpo.model_locations import (
    adapter_sync_problem,
    check_model_location,
    has_files,
    is_adapter_folder,
    looks_local,
    revision_problems,
)
from directpo.option_paths import MODEL_FOLDER_OPTIONS, expand_patterns, missing_path
from directpo.resumable import refuse_model_only, resume_as_given, resuming

if TYPE_CHECKING:
    from directpo.config import DPOConfig


def check_run(
    config: DPOConfig,
    device_type: str,
    processes: str = "none",
    *,
    need_train_file: bool = True,
    eval_dataset_given: bool = False,
    given: dict[str, Any] | None = None,
) -> None:
    """``check_environment`` and ``check_device`` together: every problem of both in one pass
    (a run on CPU with use_liger_kernel, flash_attention_2 and a missing train_file took three
    runs to fix, one refusal each); an output_dir in use too. ``given``: train()'s rows."""
    problems: list[str] = []
    with as_loaded(config), collected(problems):
        check_environment(
            config,
            need_train_file=need_train_file,
            eval_dataset_given=eval_dataset_given,
        )
    with as_loaded(config), collected(problems):
        check_device(config, device_type, processes)
    with collected(problems):  # (prepare_output_dir checks it again once the folder is locked)
        from directpo.outputs import refuse_output_dir_in_use  # (outputs imports this module)

        refuse_output_dir_in_use(config.output_dir, config)
    rows: list[str] = []
    if problems:  # the data files' bad rows too: said only by the next run, after these
        from directpo.early_rows import row_problems  # (it reads rows: data imports config)

        with contextlib.suppress(Exception):  # (a file these refused may be unreadable)
            rows = row_problems(config, problems, given)
    refuse_all(problems, rows)


def check_environment(
    config: DPOConfig,
    *,
    need_train_file: bool = True,
    eval_dataset_given: bool = False,
) -> None:
    """Checks that touch the file system: run before any model loads. Each check below reads
    no value another refuses, so all of their problems are reported in one pass. A Python
    caller is told of train()'s train_dataset= / eval_dataset= beside the files (it was told
    "train_file is required" alone, as the command line is)."""
    problems: list[str] = []
    checks: tuple[Callable[[], None], ...] = (
        lambda: check_evaluation(config, eval_dataset_given),
        lambda: _check_models(config, problems),
        lambda: _check_data(config, need_train_file, problems, eval_dataset_given),
        lambda: _check_resume(config),
        lambda: check_eval_generate(config, eval_dataset_given),
        lambda: _check_reward_fn(config),
        lambda: _check_trackers(config, problems),
    )
    resume: list[CheckpointError] = []  # (its own type where it is the only problem)
    for check in checks:
        try:
            with collected(problems):
                check()
        except CheckpointError as error:  # resume's: said with the rest (a missing model too)
            resume.append(error)
    if resume and not problems:
        raise resume[0]
    refuse_all(problems + [str(error) for error in resume])


def _check_models(config: DPOConfig, problems: list[str]) -> None:
    """The model, reference and tokenizer folders (or hub ids); each refused on its own."""
    if not config.model_name_or_path:
        raise ConfigError("model_name_or_path is required")
    for key, kwargs in (
        ("model_name_or_path", config.model_init_kwargs),
        ("ref_model_name_or_path", config.reference_init_kwargs),
        ("tokenizer_name_or_path", None),
        ("reward_model_name_or_path", None),
        ("implicit_reward_model", None),
    ):
        with collected(problems):
            check_model_location(key, getattr(config, key), (kwargs or {}).get("subfolder"))
    problems += revision_problems(config)
    for key in MODEL_FOLDER_OPTIONS:  # as config.yaml, adapter_config.json and the card
        value = getattr(config, key)  # record them: a run's outputs load from any folder
        if value and os.path.isdir(value) and not os.path.isabs(value):
            setattr(config, key, os.path.abspath(value))
    folder = config.model_name_or_path
    if has_files(folder, ("adapter_config.json",)) and has_files(folder, ("config.json",)):
        # transformers loads such a folder as its model with the adapter on it, frozen: the
        # policy had no weight to train ("no trainable parameters")
        raise ConfigError(
            f"model_name_or_path {folder} holds a model (config.json) and an adapter "
            "(adapter_config.json) together, which loads as the model with the adapter frozen "
            "on it: to continue the adapter, move adapter_config.json and adapter_model.* to a "
            "folder of their own (base_model_name_or_path: this folder); to train the model, "
            "move them out"
        )
    sync = config.sync_ref_model and adapter_sync_problem(config.ref_model_mixup_alpha)
    if sync and is_adapter_folder(config.model_name_or_path):  # (lora_r: the config's checks)
        problems.append(sync)  # (it was refused once the model had loaded)
    if config.lora_r and is_adapter_folder(config.model_name_or_path):
        raise ConfigError(
            f"model_name_or_path {config.model_name_or_path} is an adapter folder: training "
            f"continues that adapter; remove {spell_given('lora_r', config.lora_r)} (and the other "
            "lora_* options)"
        )


def _check_data(
    config: DPOConfig,
    need_train_file: bool,
    problems: list[str],
    eval_dataset_given: bool,
) -> None:
    """The data's sources: one of them, each file or folder there (every missing one said),
    but for a file that rows given to train() replace (never read: a rerun config.yaml's
    train_file from another machine was refused as missing beside train_dataset=...)."""
    replaced = {"train_file": not need_train_file, "eval_file": eval_dataset_given}
    if config.dataset_name and config.train_file:
        raise ConfigError("dataset_name and train_file are both set: choose one")
    problems += _dataset_name_problems(config.dataset_name)
    if need_train_file and not eval_dataset_given and (same := _same_split(config)):
        problems.append(same)
    mixture = config.dataset_mixture if isinstance(config.dataset_mixture, dict) else {}
    if need_train_file and eval_dataset_given and mixture.get("test_split_size") is not None:
        problems.append(  # (said once every source of the mixture had been read)
            "dataset_mixture's test_split_size and eval_dataset both give held-out pairs: keep one"
        )
    has_data = (
        config.train_file
        or config.dataset_name
        or config.dataset_mixture
        or (config.online and config.prompt_file)
    )
    if need_train_file and not has_data:
        given = " (or train(train_dataset=...): a Dataset, a DataFrame or a list of dicts)"
        problems.append(
            "train_file is required"
            + (" (or prompt_file)" if config.online else "")
            + (given if caller().spelling is Spelling.PYTHON else "")
        )
    unmatched: set[str] = set()  # a pattern that matched nothing is not a missing file too
    for key in ("train_file", "eval_file"):
        if replaced[key]:
            continue
        before = len(problems)
        with collected(problems):
            setattr(config, key, expand_patterns(key, getattr(config, key)))
        if len(problems) > before:
            unmatched.add(key)
        elif said := repeated_file(key, getattr(config, key)) or mixed_splits(
            key, getattr(config, key)
        ):
            problems.append(said)
    for key in ("train_file", "eval_file", "prompt_file"):
        paths = None if key in unmatched or replaced.get(key) else getattr(config, key)
        for path in listed_paths(paths):
            if not os.path.exists(path):
                problems.append(missing_path(key, path))
    if template := missing_template(config.chat_template):
        problems.append(template)
    if config.dataset_mixture is not None and not replaced["train_file"]:
        from directpo.mixture_entries import missing_sources  # (it imports this module)

        problems += missing_sources(config.dataset_mixture)


def _same_split(config: DPOConfig) -> str | None:
    """The line for dataset_name's test split named as its train split too, where that split
    would be the held-out pairs (no eval_file, evaluations on): its pairs were evaluated as
    held out (eval/rewards/accuracies of training pairs, read as generalisation). Said here,
    with the other options' problems: it was said once the train split had been read."""
    if (
        not config.dataset_name
        or config.eval_file
        or config.eval_strategy == "no"
        or config.dataset_test_split != config.dataset_train_split
    ):
        return None
    # (as the caller sets options: 'give eval_file, or set --eval_strategy no' was said to a
    # flag's user, "set eval_strategy='no'" to a keyword's)
    instead = spell_setting("eval_file", ("eval_strategy", "no"), last=" or ")
    return (
        f"{said('dataset_test_split', config.dataset_test_split)} is dataset_train_split too, "
        "so the held-out pairs would be the training pairs; name a split held out of training, "
        f"or {instead}"
    )


def _dataset_name_problems(name: str | None) -> list[str]:
    """A dataset_name path that is not there (not a hub id), or a file (load_dataset finds no
    data in one)."""
    name = name or ""
    if looks_local(name) and not os.path.exists(os.path.expanduser(name)):
        return [f"dataset_name: no such dataset folder: {name}"]
    if os.path.isfile(os.path.expanduser(name)):
        return [
            f"dataset_name: {name} is a file; give it as train_file (dataset_name reads a "
            "dataset folder or a hub id)"
        ]
    return []


def listed_paths(paths: Any) -> list[Any]:
    """A file option's paths: none, one, a list, or named eval sets' (each one or a list)."""
    named = paths.values() if isinstance(paths, dict) else [paths]
    return [p for group in named for p in ([group] if isinstance(group, str) else group or [])]


def missing_paths(config: DPOConfig) -> list[str]:
    """The model folders and data files the config names that are not there, one line each:
    said beside its refused values (``check_environment`` runs on a config whose values
    passed, so a missing train_file was said only once beta was fixed). Glob patterns and
    hub ids are left to ``check_environment``."""
    problems: list[str] = []
    init = config.model_init_kwargs if isinstance(config.model_init_kwargs, dict) else {}
    for key in ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path"):
        subfolder = init.get("subfolder") if key == "model_name_or_path" else None
        with collected(problems):
            check_model_location(key, getattr(config, key), subfolder)
    problems += revision_problems(config)  # (no model loads: said beside a refused value too)
    for key in ("train_file", "eval_file", "prompt_file", "eval_prompts_file"):
        for path in listed_paths(getattr(config, key)):
            if (
                isinstance(path, str)
                and not any(c in path for c in "*?[")
                and not os.path.exists(os.path.expanduser(path))
            ):
                problems.append(missing_path(key, path))
    problems += _dataset_name_problems(config.dataset_name)
    if config.dataset_mixture is not None:
        from directpo.mixture_entries import missing_sources  # (it imports this module)

        problems += missing_sources(config.dataset_mixture)
    from directpo.rewardfn import missing_file  # (it reads rows: data imports config)

    missing = [
        _missing_checkpoint(config.resume_from_checkpoint, config.output_dir),
        missing_template(config.chat_template),
        missing_file(config.reward_fn) if isinstance(config.reward_fn, str) else None,
    ]
    return problems + [line for line in missing if line]


def missing_template(value: str | None) -> str | None:
    """The line for a chat_template that names a file (no Jinja tag in it) that is not there
    (found once the data was read, after the other files' checks)."""
    if not value or "{%" in value or "{{" in value or os.path.exists(value):
        return None
    return (
        f"chat_template: {value} is neither a Jinja template nor a readable file (No such "
        "file or directory)"
    )


def _check_resume(config: DPOConfig) -> None:
    with resume_as_given(config):
        _check_resume_as_given(config)


def _check_resume_as_given(config: DPOConfig) -> None:
    resume = config.resume_from_checkpoint
    if resume and resume != "latest":
        inside = os.path.join(config.output_dir, resume)  # checkpoint-500 names one there
        if not os.path.isabs(resume) and os.path.isdir(inside):
            config.resume_from_checkpoint = inside  # before one of that name in the cwd
        elif missing := _missing_checkpoint(resume, config.output_dir):
            raise ConfigError(missing)
        named = config.resume_from_checkpoint
        if os.path.isdir(config.output_dir) and os.path.samefile(named, config.output_dir):
            raise ConfigError(  # (it said "no manifest (incomplete or not a directpo checkpoint)")
                f"{resuming(resume)} is output_dir itself, not one of its "
                "checkpoints: name a checkpoint-N folder, or 'latest' (the newest that verifies)"
            )
    if resume:
        refuse_model_only(config.resume_from_checkpoint, config.output_dir)


def _missing_checkpoint(resume: str | None, output_dir: str) -> str | None:
    """The line for a resume_from_checkpoint folder that is neither there nor in output_dir
    (None for 'latest', or one that is there)."""
    if not resume or resume == "latest" or os.path.isdir(resume):
        return None
    inside = os.path.join(output_dir, resume)  # checkpoint-500 names one there
    if not os.path.isabs(resume) and os.path.isdir(inside):
        return None
    nor = "" if os.path.isabs(resume) else f" (nor {inside})"  # (the same path twice)
    return (
        f"resume_from_checkpoint: no such checkpoint folder: {resume}{nor}; 'latest' takes the "
        "newest in output_dir"
    )


def _check_reward_fn(config: DPOConfig) -> None:
    if config.reward_fn:
        from directpo.rewardfn import load_reward_fn

        load_reward_fn(config.reward_fn)


def _check_trackers(config: DPOConfig, problems: list[str]) -> None:
    """Each tracker in report_to installed; TensorBoard's logging_dir writable."""
    from directpo.config import TRACKER_MODULES as tracker_modules  # config imports this module

    for tracker in config.report_to:
        module = tracker_modules.get(tracker)
        if module and importlib.util.find_spec(module) is None:
            problems.append(  # (in a recipe's words for every caller before)
                f"{spell_given('report_to', config.report_to)}: {spell_value(tracker)} is not "
                f"installed: pip install {module}, or choose another tracker, or "
                f"{spell_setting(('report_to', 'none'))}"
            )
    if config.logging_dir and "tensorboard" in config.report_to:
        _check_makeable("logging_dir", config.logging_dir)


def _check_makeable(key: str, folder: str) -> None:
    """``folder`` exists as a writable folder, or can be made: said before any model loads (the
    tracker that writes there started only after them, minutes later for a large model)."""
    from pathlib import Path

    from directpo.folders import nearest_existing

    start = nearest_existing(Path(folder))
    if not start.is_dir():
        raise ConfigError(f"{key}: {folder} cannot be made: {start} is a file")
    if not os.access(start, os.W_OK):
        raise ConfigError(f"{key}: {folder} is not writable ({start})")
