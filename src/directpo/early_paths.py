"""A local model folder or data file plainly not there, said before a command imports torch and
transformers (seconds; ~4 s for train on an idle CPU, more on a busy one): the line the
command's own checks say after those imports, said at once.

Only where that line would be the same: one process (under torchrun each rank checks its own
node's files in the process group, and the rank missing one says so), a path that cannot be a
hub id (``looks_local``: ``./run``, ``/data/m``, ``run/``), and none of the problems that need
the device or the output folder's state (CUDA-only options, an output_dir in use), which the
full check says with it.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Mapping
from typing import Any

from directpo.errors import collected, refuse_all

# options that only the device check (torch) judges: with one set, the full check says all
CUDA_OPTIONS = ("use_liger_kernel",)
CUDA_ATTENTION = ("flash_attention_2", "flex_attention")


def refuse_missing_paths(options: Any) -> None:
    """Raise the command's refusal now when a path it names is plainly not there."""
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):
        return  # (a launcher's processes: their own checks, each on its node)
    from directpo.config import DPOConfig

    if isinstance(options, DPOConfig):
        _train(options)
    elif hasattr(options, "MODEL_KEYS") and _command_paths_missing(options):
        options.check_environment()  # score, rank and generate's: torch-free but for rows


def _command_paths_missing(options: Any) -> bool:
    from directpo.model_locations import looks_local

    models = [getattr(options, key) for key in options.MODEL_KEYS]
    missing = any(
        isinstance(p, str) and looks_local(p) and not os.path.exists(p) for p in models if p
    )
    source = options.input
    required = ("model_name_or_path", "input", "output")
    unset = any(not getattr(options, key) for key in required)
    return missing or unset or (isinstance(source, str) and not os.path.exists(source))


def _train(config: Any) -> None:
    from directpo.preflight import check_environment, missing_paths

    if not missing_paths(config) or _needs_full_check(config):
        return
    problems: list[str] = []
    with collected(problems):
        check_environment(config)
    rows: list[str] = []
    if problems:
        from directpo.early_rows import row_problems

        try:
            rows = row_problems(config, problems, None)
        except Exception:  # (a file these refused may be unreadable: as check_run)
            rows = []
    refuse_all(problems, rows)


def _needs_full_check(config: Any) -> bool:
    """Whether the full check (after torch) would say more than the files: a CUDA-only option
    (the device decides), an output_dir that holds files (whether it is in use)."""
    kwargs = [config.model_init_kwargs or {}, config.ref_model_init_kwargs or {}]
    cuda = any(getattr(config, key, None) for key in CUDA_OPTIONS)
    cuda = cuda or config.attn_implementation in CUDA_ATTENTION
    cuda = cuda or any(isinstance(k, dict) and "device_map" in k for k in kwargs)
    folder = config.output_dir
    held = os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder))
    return cuda or held


def beside_config(config_file: str | None, options: Any, flags: Mapping[str, Any]) -> list[str]:
    """Notes for a config file's relative paths that are not in the working directory but
    beside the file (``exp/cfg.yaml`` naming ``train_file: data.jsonl`` run from exp's parent):
    paths are read from the working directory, as TRL's and transformers' scripts read them,
    and the refusal said 'no such file' of a file the user sees there."""
    if config_file is None:
        return []
    folder = os.path.dirname(os.path.abspath(config_file))
    from directpo.option_paths import PATH_OPTIONS, is_record_file
    from directpo.preflight import listed_paths

    is_record = functools.cache(lambda: is_record_file(config_file))  # read once, if asked
    notes = []
    for key in PATH_OPTIONS:
        if key in flags or key in ("output_dir", "logging_dir"):  # (a flag's: the shell's)
            continue
        for path in listed_paths(_path_of(key, getattr(options, key, None))):
            if isinstance(path, str) and _gone(path) and is_record():
                notes.append(
                    f"{config_file}, a run's record, names {key} {path}, which is no longer "
                    f"there (moved?): give --{key} with where it is now (a flag replaces "
                    "the file's value)"
                )
            elif isinstance(path, str) and _only_beside(path, folder):
                written = os.path.relpath(os.path.join(folder, path))
                shown = path
                if key == "reward_fn":  # (the function after it: 'A/my_rewards.py:score')
                    shown = options.reward_fn
                    written += ":" + shown.rpartition(":")[2]
                notes.append(
                    f"{config_file}'s {key} {shown} is read from the working directory, where "
                    f"it is not; it is there from {config_file}'s folder: write {written} (or "
                    f"run from {os.path.relpath(folder)})"
                )
    return notes


def _path_of(key: str, value: Any) -> Any:
    """The path in option ``key``'s ``value``: reward_fn's 'my_rewards.py:score' names the file
    my_rewards.py, and 'my_rewards:score' too where no installed module has that name (beside
    the recipe, each was 'no such file' / 'cannot import' with no note)."""
    if key != "reward_fn" or not isinstance(value, str) or ":" not in value:
        return value
    module = value.rpartition(":")[0]
    if module.endswith(".py"):
        return module
    from importlib.machinery import PathFinder

    if module.isidentifier() and PathFinder.find_spec(module) is None:
        return f"{module}.py"
    return None


def _gone(path: str) -> bool:
    """Whether ``path`` is an absolute local path that is not there: in a run's record, a model
    or data moved since, said 'no such model folder' alone when its config.yaml was resumed."""
    return os.path.isabs(path) and not glob.glob(path)


def _only_beside(path: str, folder: str) -> bool:
    """Whether relative ``path`` (a glob pattern too) names nothing here and something in
    ``folder``, another folder than the working directory."""
    if not path or os.path.isabs(path) or path.startswith("~") or folder == os.getcwd():
        return False
    return (
        not glob.glob(glob.escape(path))
        and not glob.glob(path)
        and (bool(glob.glob(os.path.join(glob.escape(folder), path))))
    )
