"""Paths in options: a leading ``~`` expanded, glob patterns (``shards/*.parquet``) replaced
by the files they match, and the local paths a run records (config.yaml) made absolute, so a
resumed or rerun config reads the same files from any working directory."""

from __future__ import annotations

import glob
import os
import re
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from directpo.callers import said, spell_option, spell_setting
from directpo.errors import ConfigError
from directpo.readers import DATA_ENDINGS
from directpo.shell_expansion import home_expanded

# the options naming a model folder (or hub id)
MODEL_FOLDER_OPTIONS = (
    "model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path",
    "reward_model_name_or_path", "implicit_reward_model",
)  # fmt: skip


# from_pretrained arguments that name a local folder (read from the working directory)
PATH_KWARGS = ("cache_dir", "offload_folder")


# options that may name local files or folders (model_init_kwargs': PATH_KWARGS)
PATH_OPTIONS = (
    *MODEL_FOLDER_OPTIONS, "train_file", "eval_file", "prompt_file", "eval_prompts_file",
    "output_dir", "logging_dir", "dataset_name", "chat_template", "resume_from_checkpoint",
    "reward_fn",
)  # fmt: skip


def cache_home() -> Path:
    """The folder ``DIRECTPO_CACHE`` names (default ~/.cache/directpo), a leading ``~`` as the
    home folder: a quoted ``DIRECTPO_CACHE="~/x"`` or a config's ``env:`` block, which no shell
    expands, cached into a folder named ``~`` under the working directory."""
    root = os.environ.get("DIRECTPO_CACHE") or os.path.join("~", ".cache", "directpo")
    return Path(os.path.expanduser(root))


def expand_home(config: Any) -> None:
    """A leading ``~`` of the path arguments in model_init_kwargs / ref_model_init_kwargs as
    the home folder, as a shell reads it: YAML and Python do not. The path options themselves
    (``model_name_or_path: ~/models/x`` was refused as "no such model folder", an output_dir
    made as ./~) are expanded by Options on construction (DPOConfig.PATH_KEYS: PATH_OPTIONS)."""
    for key in ("model_init_kwargs", "ref_model_init_kwargs"):
        kwargs = getattr(config, key)
        if isinstance(kwargs, dict):
            expanded = {k: home_expanded(v) if k in PATH_KWARGS else v for k, v in kwargs.items()}
            if expanded != kwargs:
                setattr(config, key, expanded)


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded options (config.yaml) with its local files and folders as absolute
    paths, as its model folders are: a relative train_file, eval_file, output_dir, ... read
    another file (or none) when the run was resumed, or its config.yaml rerun, from another
    working directory. Hub ids and 'module:function' specs stay as given."""
    values = dict(values)
    for key in ("train_file", "eval_file", "prompt_file", "eval_prompts_file"):
        values[key] = _absolute(values[key])
    for key in ("output_dir", "logging_dir"):
        values[key] = values[key] and os.path.abspath(values[key])
    for key in ("dataset_name", "chat_template"):  # a hub id / a template's text otherwise
        path = values[key]
        if isinstance(path, str) and "{" not in path and os.path.exists(path):
            values[key] = os.path.abspath(path)
    mixture = values.get("dataset_mixture")
    if isinstance(mixture, dict) and isinstance(mixture.get("datasets"), list):
        entries = [_absolute_source(e) if isinstance(e, dict) else e for e in mixture["datasets"]]
        values["dataset_mixture"] = {**mixture, "datasets": entries}
    for key in ("model_init_kwargs", "ref_model_init_kwargs"):  # from_pretrained's folders
        kwargs = values.get(key)
        if isinstance(kwargs, dict):
            values[key] = {
                name: _absolute(value) if name in PATH_KWARGS and isinstance(value, str) else value
                for name, value in kwargs.items()
            }
    spec = values.get("reward_fn")  # 'path/file.py:function' (an installed module's name stays)
    if isinstance(spec, str) and ":" in spec:
        file, name = spec.rsplit(":", 1)
        file = _working_folder_module(file) or file
        if file.endswith(".py") and os.path.isfile(file):
            values["reward_fn"] = f"{os.path.abspath(file)}:{name}"
    return values


def _working_folder_module(module_name: str) -> str | None:
    """The file of a ``module:function`` reward's module where it is one file outside the
    installed packages (``reward_fn: my_rewards:score`` beside the recipe, found in the
    working folder; or beside a script, whose folder is on sys.path): recorded by that name,
    the resume or ``directpo train <run>/config.yaml`` from another folder was 'No module
    named my_rewards'. A package's module (relative imports) and an installed one keep their
    name."""
    from importlib.machinery import PathFinder

    if not module_name.isidentifier() or module_name in sys.builtin_module_names:
        return None
    # the module imported (train(reward_funcs=[my_rewards.score]) from a script or notebook,
    # whose folder may be off sys.path since), else where rewardfn would find it: sys.path,
    # then the working folder (an installed module first)
    imported = sys.modules.get(module_name)
    found = None if imported else PathFinder.find_spec(module_name, [*sys.path, os.getcwd()])
    origin = getattr(imported, "__file__", None) if imported else found and found.origin
    if not origin or not origin.endswith(".py") or os.path.basename(origin) == "__init__.py":
        return None
    return origin if outside_installed_packages(origin) else None


def outside_installed_packages(file: str) -> bool:
    """Whether ``file`` lies outside the standard library and site-packages (a user's own
    module, found only through a folder a later run may not be started from)."""
    path = Path(file).resolve()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    installed = {Path(p).resolve() for p in map(sysconfig.get_path, keys) if p}
    return not any(path.is_relative_to(folder) for folder in installed)


PATTERN_CHARACTERS = "*?["
# a hub dataset's id (org/name), not a file's name (prefs/train.jsonl), where no file is
_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DATA_ENDINGS = (*DATA_ENDINGS, ".txt")


def missing_path(key: str, path: str) -> str:
    """The line for option ``key``'s data path that is not there, with what the user likely
    meant: an ``hf://`` path (datasets reads one as a mixture's data_files, and only there), a
    hub dataset's id (dataset_name reads one), or a quoted pattern given to score, rank or
    generate (``key`` input), which read one file."""
    line = f"{key}: no such file or folder: {path}"
    if path.startswith("hf://") and key == "train_file":
        return (
            f"{line} (an hf:// path is read by dataset_mixture: {{datasets: [{{id: json, "
            f"data_files: {path}}}]}}, or give the dataset's id as dataset_name)"
        )
    if path.startswith("hf://"):
        return f"{line} (hf:// paths are not read here: download the file and give it)"
    if _DATASET_ID.fullmatch(path) and not path.lower().endswith(_DATA_ENDINGS):
        # a hub dataset's id, as TRL's dataset_name takes it: it was 'no such file' alone
        if key == "train_file":
            return f"{line} (a hub dataset's id? give it as {spell_option('dataset_name', path)})"
        local = f"{key} reads local files: download the dataset and give one of its data files"
        if key.startswith("eval_file"):  # (dataset_name replaces train_file, not beside it)
            both = spell_option("dataset_name", path)
            local += f", or give {both} for both (dataset_test_split evaluated)"
        return f"{line} (a hub dataset's id? {local})"
    if key == "input" and any(c in path for c in PATTERN_CHARACTERS):
        found = sorted(glob.glob(os.path.expanduser(path), recursive=True))
        if len(found) == 1:  # (nothing to join: the file meant, by its name)
            return f"{line} (a pattern, matching {found[0]} alone: give that file)"
        matched = f"matching {len(found)} files" if found else "matching no file"
        return f"{line} (a pattern {matched}: score, rank and generate read one file; join them)"
    return line


def expand_patterns(key: str, value: Any) -> Any:
    """train_file / eval_file with each glob pattern (``data/*.jsonl``, ``shards/**/*.parquet``,
    as datasets' data_files takes them) replaced by the files it matches, in sorted order (a
    path that exists is itself, whatever its characters); a pattern that matches nothing is
    one line. Named eval sets (a dict) are expanded set by set."""
    if isinstance(value, dict):
        return {name: expand_patterns(f"{key} {name}", paths) for name, paths in value.items()}
    if value is None:
        return value
    paths: list[str] = []
    for path in [value] if isinstance(value, str) else value:
        if os.path.exists(path) or not any(c in str(path) for c in PATTERN_CHARACTERS):
            paths.append(path)
            continue
        found = sorted(glob.glob(os.path.expanduser(path), recursive=True))
        if not found:
            raise ConfigError(f"{key}: no file matches the pattern {path}")
        paths += found
    return paths[0] if isinstance(value, str) and len(paths) == 1 else paths


def _absolute_source(entry: dict[str, Any]) -> dict[str, Any]:
    """A dataset_mixture entry with its local paths absolute: its id (or TRL's ``path``) when
    it is a file or folder here; with a builder's name (``id: json``) its data_dir, else its
    data_files, which datasets reads from the working directory (a folder's own data_files
    and data_dir are read inside it, which is made absolute)."""
    entry = dict(entry)
    key = "path" if "path" in entry and "id" not in entry else "id"
    source = entry.get(key)
    if not isinstance(source, str):
        return entry
    if os.path.exists(source):
        entry[key] = os.path.abspath(source)
    elif source in packaged_builders():
        if isinstance(entry.get("data_dir"), str):
            entry["data_dir"] = os.path.abspath(entry["data_dir"])
        elif entry.get("data_files") is not None:
            entry["data_files"] = _absolute(entry["data_files"])
    return entry


def builder_without_files(name: str, options: dict[str, Any]) -> bool:
    """``load_dataset("json")`` with no data_files or data_dir: datasets then reads whatever
    files of that kind lie under the working directory (a run's own results, another file of
    pairs) as the data, without a word."""
    if os.path.exists(name) or name not in packaged_builders():
        return False
    return options.get("data_files") is None and options.get("data_dir") is None


def packaged_builders() -> set[str]:
    """The names datasets reads local files with (json, csv, parquet, ...), not hub ids."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return set(_PACKAGED_DATASETS_MODULES)


def _absolute(paths: Any) -> Any:
    """A path, a list of them or named sets of them ({name: path(s)}, or data_files' split:
    path(s)), each made absolute."""
    if isinstance(paths, str):  # (a URL, hf://..., stays)
        return paths if "://" in paths else os.path.abspath(paths)
    if isinstance(paths, list):
        return [_absolute(path) for path in paths]
    if isinstance(paths, dict):
        return {name: _absolute(path) for name, path in paths.items()}
    return paths


def moved_run(
    config_file: str | None, output_dir: str, resume: str | None, flags: Mapping[str, Any]
) -> ConfigError | None:
    """A run's own config.yaml read back from the folder the run was moved to: its output_dir
    (made absolute when recorded) still names where the run was, and ``latest`` was told
    "no checkpoint in <the old folder>; set resume_from_checkpoint: null", which would start
    the run again there. The file's own folder holding the checkpoints is said instead."""
    if config_file is None or resume != "latest" or "output_dir" in flags:
        return None
    here = os.path.dirname(os.path.abspath(config_file))
    if os.path.abspath(output_dir) == here or _checkpoints(output_dir):
        return None
    held = _checkpoints(here)
    if not held:
        return None
    return ConfigError(
        f"{said('resume_from_checkpoint', 'latest')}: {output_dir}, {config_file}'s output_dir, "
        f"holds no "
        f"checkpoint, while its own folder holds {held[-1]}: the run was moved? resume it "
        f"there with {said('output_dir', here)}"
    )


def copied_record(
    config_file: str | None, output_dir: str, resume: str | None, flags: Mapping[str, Any]
) -> ConfigError | None:
    """A run's own config.yaml run from another folder (copied or moved: ``directpo train
    copy/config.yaml``) names the original run's output_dir, made absolute when recorded: the
    new run wrote there, beside or (overwrite_output_dir: true) over that run's files, and a
    resume of the copy went on from the original's checkpoint, in its folder. Refused where
    that folder holds a run's files, saying the option to set in the caller's words (a recipe
    caller was told a flag: ``set output_dir``, ``give --output_dir``, ``pass output_dir=``;
    a flag's words where the resume was a flag); a record of a checkpoint
    (``out/checkpoint-N/config.yaml``) and one read back from its own folder are the run's."""
    if config_file is None or "output_dir" in flags:
        return None
    here = os.path.dirname(os.path.realpath(config_file))  # (a link to a run's record: the run's)
    recorded = os.path.realpath(output_dir)
    # (a checkpoint's record, retired ones' too: its run's folder)
    if recorded in (here, os.path.dirname(here)) or not _holds_a_run(recorded):
        return None
    if re.fullmatch(r"(retired-)?checkpoint-[\d-]+", os.path.basename(here)):
        here = os.path.dirname(here)  # (a copied run's checkpoint's record: the copy's folder)
    if resume is not None and not _resumes_from(resume, here):
        return None  # (the original's own checkpoint, named: that run goes on, as asked)
    if not is_record_file(config_file):
        return None  # a recipe naming a run's folder on purpose: prepare_output_dir's to judge
    copy = _holds_a_run(here, besides_its_record=True)
    if resume is not None:
        return ConfigError(
            f"{config_file} is the record of the run in {output_dir} (copied or moved here?): "
            f"resumed as it is, it would go on in that run's folder, from "
            f"{'its latest checkpoint' if resume == 'latest' else resume}; "
            f"{spell_setting(('output_dir', here))} to resume this copy (or "
            f"{said('output_dir', output_dir)} to go on with that run)"
        )
    # (a loose copy of the file, edited into a recipe, has no folder of its own to rerun in)
    rerun = f", or {here} to rerun here" if copy else ""
    return ConfigError(
        f"{config_file} is the record of the run in {output_dir} (copied or moved here?): run "
        f"as it is, it would write into that run's folder, which holds its files; "
        f"{spell_setting('output_dir')} (a new folder{rerun})"
    )


def refuse_moved_or_copied_record(
    config_file: str | None, options: Any, flags: Mapping[str, Any]
) -> None:
    """``moved_run`` and ``copied_record`` of ``options`` read from ``config_file`` with
    ``flags`` over it (a command line's, or train()'s keywords: ``train("copy/config.yaml")``
    wrote into the original run's folder, which only the CLI checked), raised if refused."""
    for check in (moved_run, copied_record):
        refused = check(config_file, options.output_dir, options.resume_from_checkpoint, flags)
        if refused is not None:
            raise refused


def is_record_file(config_file: str) -> bool:
    """Whether the YAML file ``config_file`` is a run's own config.yaml (it lists nearly every
    option: yaml_interpolation.is_run_record), not a recipe a person wrote."""
    from dataclasses import fields

    from directpo.config import DPOConfig
    from directpo.option_loading import read_yaml
    from directpo.yaml_interpolation import is_run_record

    names = [f.name for f in fields(DPOConfig)]
    return is_run_record(read_yaml(config_file, interpolate=False), names)


def _resumes_from(resume: str, folder: str) -> bool:
    """Whether a resume (``latest`` or a checkpoint's path) goes on from ``folder``'s own
    checkpoints rather than those of the run its record names."""
    if resume == "latest":
        return bool(_checkpoints(folder))
    return os.path.dirname(os.path.realpath(os.path.expanduser(resume))) == folder


def _holds_a_run(folder: str, besides_its_record: bool = False) -> bool:
    """Whether ``folder`` holds a run's files: its record, metrics or checkpoints (or, for a
    folder a record was read from, files of a run besides that record)."""
    files = ("metrics.jsonl", "trainer_state.json") + (
        () if besides_its_record else ("config.yaml",)
    )
    return any(os.path.isfile(os.path.join(folder, f)) for f in files) or bool(_checkpoints(folder))


def _checkpoints(folder: str) -> list[str]:
    """The checkpoint folders' names in ``folder``, by step (none if it is gone)."""
    found = glob.glob(os.path.join(glob.escape(folder), "checkpoint-*"))
    names = [os.path.basename(p) for p in found if os.path.isdir(p)]
    steps = [name for name in names if name.rsplit("-", 1)[1].isdigit()]
    return sorted(steps, key=lambda name: int(name.rsplit("-", 1)[1]))
