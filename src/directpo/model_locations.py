"""Where a model option points: a model or adapter folder, a hub id, or a path that is not
there; adapter folders (continued as saved), a revision beside a local folder, a GGUF file's
hint. Read by preflight and by score / rank / generate's options."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from directpo.callers import spell_option, spell_setting
from directpo.errors import ConfigError, collected
from directpo.option_values import value_shown

if TYPE_CHECKING:
    from directpo.config import DPOConfig


def is_adapter_folder(path: Any) -> bool:
    """Whether ``path`` is a local PEFT adapter folder (adapter_config.json, no config.json),
    which training continues with the settings it was saved with."""
    if not isinstance(path, str) or not path:
        return False
    return os.path.isfile(os.path.join(path, "adapter_config.json")) and not os.path.isfile(
        os.path.join(path, "config.json")
    )


def lora_off_reason(model: str | None, use_peft: bool | None = None) -> str:
    """Why a lora_* option does nothing without lora_r: no LoRA, or an adapter folder as the
    model, continued as saved (its advice, "set lora_r: 16", was refused in turn there), or
    TRL's use_peft: false said (where "set lora_r: 16" was refused in turn, 'lora_r is set but
    use_peft is false')."""
    if is_adapter_folder(model):
        return (
            f"model_name_or_path {model} is an adapter folder, continued with the settings of "
            "its adapter_config.json; remove the lora_* options"
        )
    if use_peft is False:
        return (
            f"{spell_option('use_peft', False, in_recipe=False)} turns LoRA off; "
            f"{spell_setting(('use_peft', True))} for adapters, or remove it"
        )
    return f"lora_r is 0 (no LoRA); {spell_setting(('lora_r', 16))}"


def adapter_sync_problem(mixup_alpha: float) -> str | None:
    """Why TR-DPO with adapters cannot take ``mixup_alpha`` (None: it can)."""
    if mixup_alpha == 1:
        return None
    return (
        f"sync_ref_model with an adapter: ref_model_mixup_alpha {mixup_alpha} would mix two "
        "adapters, and a mix of low-rank products is not an adapter of the same rank; "
        f"{spell_setting(('ref_model_mixup_alpha', 1.0))} (the hard update), or train every "
        "weight"
    )


def revision_problems(config: DPOConfig) -> list[str]:
    problems: list[str] = []
    for key, kwargs, named in (
        ("model_name_or_path", config.model_init_kwargs, "model_revision / model_init_kwargs"),
        ("ref_model_name_or_path", config.ref_model_init_kwargs, "ref_model_init_kwargs"),
    ):
        revision = kwargs.get("revision") if isinstance(kwargs, dict) else None
        with collected(problems):
            _refuse_local_revision(key, getattr(config, key), revision, named)
    return problems


MODEL_FILES = ("config.json", "adapter_config.json")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def has_files(folder: str, names: tuple[str, ...] = TOKENIZER_FILES) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in names)


def _refuse_local_revision(key: str, value: str | None, revision: Any, named: str) -> None:
    """A revision (TRL's --model_revision) beside a model folder: transformers reads a folder as
    it is, so the run trained the folder's weights whatever revision was asked. (An adapter
    folder's revision is its base's, which is loaded from the hub at that revision.)"""
    if revision in (None, "main") or not value or not os.path.isdir(value):
        return
    if is_adapter_folder(value):
        return
    raise ConfigError(
        f"{key} {value} is a local folder, which has no revisions: revision "
        f"{value_shown(revision)} "
        f"({named}) would be ignored; give the hub id to train that revision, or remove it"
    )


def check_model_location(key: str, value: str | None, subfolder: str | None = None) -> None:
    """A value that looks like a local path must be a model (or adapter) folder, or hold one
    in ``subfolder`` (model_init_kwargs; an adapter folder's apply to its base); a bare
    `org/name` may be a hub id."""
    if not value:
        return
    adapter = has_files(value, ("adapter_config.json",)) and not has_files(value, MODEL_FILES[:1])
    if subfolder and os.path.isdir(value) and not adapter:
        value = os.path.join(value, subfolder)
        if not os.path.isdir(value):
            raise ConfigError(f"{key}: no such model folder: {value} (its subfolder option)")
    if os.path.isfile(value):
        raise ConfigError(f"{key}: {value} is a file, not a model folder{_gguf_hint([value])}")
    if os.path.isdir(value):
        if has_files(value, MODEL_FILES + (TOKENIZER_FILES if "tokenizer" in key else ())):
            return
        holds = sorted(os.listdir(value))
        dataset = any(name in holds for name in ("dataset_info.json", "state.json"))
        what = "a datasets folder" if dataset else "not a model folder"
        shown = ", ".join(holds[:4]) + (" ..." if len(holds) > 4 else "") or "nothing"
        raise ConfigError(
            f"{key}: {value} is {what} (no config.json or adapter_config.json; it holds "
            f"{shown}){_gguf_hint(holds)}{_checkpoint_hint(value, holds)}"
        )
    if looks_local(value):
        raise ConfigError(f"{key}: no such model folder: {value}")


def _checkpoint_hint(folder: str, names: list[str]) -> str:
    """A run's output_dir before its final save (still training, or stopped) holds only its
    checkpoints: named, the latest, which score, rank, generate and train load as a model."""
    steps = [
        int(name.split("-", 1)[1])
        for name in names
        if re.fullmatch(r"checkpoint-\d+", name) and os.path.isdir(os.path.join(folder, name))
    ]
    if not steps:
        return ""
    latest = os.path.join(folder, f"checkpoint-{max(steps)}")
    return (
        f"; a run still training or stopped before its final save: its latest checkpoint, "
        f"{latest}, is a model folder"
    )


def _gguf_hint(names: list[str]) -> str:
    """What to do with a GGUF file (llama.cpp's format), which training does not read."""
    gguf = next((os.path.basename(n) for n in names if n.lower().endswith(".gguf")), None)
    if gguf is None:
        return ""
    return (
        f"; a GGUF file is not trained from: convert it once to a model folder with "
        f"AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file='{gguf}').save_pretrained(OUT) "
        "and the same for AutoTokenizer (needs pip install gguf)"
    )


# the shape of a hub id, [org/]name, for telling a path from one (looks_local); looser than
# hub.HUB_ID, the strict id a model card may name (a leading _ or - passes here), and named
# apart so that the two are not taken for one
_HUB_ID_SHAPE = re.compile(r"[\w.-]+(/[\w.-]+)?")


def looks_local(value: str) -> bool:
    """A path, not a hub id (``org/name``: words of letters, digits, ``-``, ``_``, ``.``;
    ``run/``, a folder as a shell completes it, is no hub id: it was taken for one)."""
    if value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value:
        return True
    return bool(value) and (not _HUB_ID_SHAPE.fullmatch(value) or ".." in value)


# peft's word for every linear layer but the output head (its one string, as a regex is)
ALL_LINEAR = "all-linear"
# a module's name holds none of these: a LoRA target that does is a regex, which peft reads as
# one string matched against each whole module name (its docs' target_modules=r".*\.(q|v)_proj");
# as a list's item it matched no name, and the model, loaded first, was refused after
REGEX_CHARACTERS = frozenset("*+?()[]{}|\\^$")


def is_regex(target: str) -> bool:
    """``target`` (a lora_target_modules item) is a regex, not a module's name."""
    return bool(REGEX_CHARACTERS & set(target))


def regex_problem(target: str) -> str | None:
    """Why ``target`` is no regex Python's re (peft's) can read, None where it is one."""
    import re

    try:
        re.compile(target)
    except re.error as error:
        return str(error)
    return None
