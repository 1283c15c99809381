"""The value checks of the options naming what is read: the column options (a DPOConfig's,
and score / rank / generate's), dataset_streaming, and a split named beside data files without
splits. Run by ``config_checks.check_values`` (and the commands' checks) in their one pass."""

from __future__ import annotations

from directpo.callers import spell_given, spell_option, spell_setting, spell_unset
from directpo.config import DPOConfig
from directpo.mixture_entries import FILE_SUFFIXES
from directpo.option_values import value_shown
from directpo.options import Options


def check_columns(options: Options) -> None:
    """The column options (a DPOConfig's, or score / rank / generate's) name distinct columns."""
    keys = [k for k in ("prompt_column", "chosen_column", "rejected_column") if hasattr(options, k)]
    keys = [k for k in keys if getattr(options, k) is not None]  # score's: the run's, later
    columns = [getattr(options, key) for key in keys]
    if len(set(columns)) < len(columns) and options._valid(*keys):
        # collected, not raised: a raise here hid every check after it until the next run
        options._refuse(
            keys[-1],
            f"{', '.join(keys[:-1])} and {keys[-1]} must name different columns "
            f"(got {', '.join(columns)})",
        )
    system = getattr(options, "system_column", None)
    if system is None or (system == "" and hasattr(options, "FROM_RUN")):
        return  # (score / rank / generate: "" says no system turn, whatever the run had)
    unset = spell_unset("system_column")  # (None to a keyword, YAML's null)
    options._require(bool(system.strip()), "system_column", f"a column name, or {unset}")
    same = next((key for key in keys if getattr(options, key) == system), None)
    if same is not None:
        options._refuse(
            "system_column",
            f"system_column must name a column of its own (got {value_shown(system)}, which is "
            f"{same} too)",
        )


def check_streaming(config: DPOConfig) -> None:
    """dataset_streaming reads the rows the run's steps take, so they must be counted; the
    sources it cannot read in part are refused (it asked "read only what is trained on")."""
    if not config.dataset_streaming:
        return
    for key, why in (
        # (said to a recipe too: a Python call is the one way to a stream of prompts)
        ("online", "online DPO reads its prompts whole: leave dataset_streaming off (from "
                   "Python, train(config, train_dataset=load_dataset(..., streaming=True)) "
                   "reads only the prompts its rounds take)"),
        ("dataset_mixture", "dataset_mixture shuffles each source whole, as the handbook does"),
    ):  # fmt: skip
        if getattr(config, key):
            streaming = spell_option("dataset_streaming", True, in_recipe=False)
            return config._refuse("dataset_streaming", f"{streaming} with {key}: {why}")
    if config.max_steps < 1:  # (beside online, its 'set max_steps' was the other line's undoing)
        config._refuse(
            "dataset_streaming",
            f"{spell_option('dataset_streaming', True, in_recipe=False)} reads only the rows "
            "max_steps trains on: "
            f"{spell_setting('max_steps')} (TRL needs it with a stream too), or leave "
            "dataset_streaming off to read them all",
        )


def check_splits_of_files(config: DPOConfig) -> None:
    """A split named (TRL's dataset_train_split: train_prefs) with train_file data files, which
    have none: it was silently not read (the whole file trained on, no test split held out)."""
    files = config.train_file if isinstance(config.train_file, list) else [config.train_file]
    if not all(isinstance(f, str) and f.lower().endswith(FILE_SUFFIXES) for f in files):
        return  # (none given, or a save_to_disk folder: one of several splits is refused there)
    named = ", ".join(files[:2]) + (", ..." if len(files) > 2 else "")
    named += " is a data file" if len(files) == 1 else " are data files"
    for key, default, instead in (
        ("dataset_train_split", "train", "its rows are all trained on"),
        ("dataset_test_split", "test", "give the held-out pairs as eval_file"),
    ):
        if getattr(config, key) != default:
            config._refuse(
                key,
                f"{spell_option(key, getattr(config, key), in_recipe=False)} picks a split of "
                f"dataset_name (a dataset folder or hub id), but train_file {named}, without "
                "splits: "
                f"remove {spell_given(key, getattr(config, key))} ({instead})",
            )
