"""PEFT adapters put on a model (any PEFT method that adds no virtual tokens), with every
target, saved module and target parameter checked to match; what directpo cannot train refused;
adapter folders (their base, their tokenizer); QLoRA's quantization. How adapters start is
adapter_starts.py's, the lora_* options as peft configs lora_options.py's."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from directpo.errors import ModelLoadError, first_line
from directpo.lora_options import lora_config
from directpo.model_locations import has_files, is_regex, looks_local
from directpo.option_values import shortened
from directpo.precision import DTYPES


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """The block in which peft wraps a model (get_peft_model, PeftModel.from_pretrained): peft
    reads transformers' renamed ``is_gradient_checkpointing`` as it wraps, a FutureWarning
    between the two libraries that nobody running directpo can act on (it printed on every LoRA
    run). Silenced here only: a filter set when directpo.models was imported hid the warning
    from the caller's own code (a notebook's, a script's) for the rest of the process."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def adapter_base(path: str) -> str | None:
    """The base model of a PEFT adapter folder (``adapter_config.json`` without ``config.json``),
    else None."""
    config_file = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(config_file) or os.path.isfile(os.path.join(path, "config.json")):
        return None
    base = adapter_config(path).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"model '{path}': adapter_config.json names no base_model_name_or_path"
        )
    if not os.path.isabs(base) and not os.path.exists(base):
        beside = os.path.join(path, base)  # a base given relative to the adapter folder
        base = beside if os.path.exists(beside) else base
    if looks_local(base) and not os.path.isdir(base):
        # (else peft and transformers took the path for a hub id, or a traceback)
        raise ModelLoadError(
            f"model '{path}': its adapter_config.json names base_model_name_or_path '{base}', "
            "which is no folder here (moved, or the adapter was trained on another machine): "
            "put the base model there, or set base_model_name_or_path to its folder or hub id"
        )
    return base


def tokenizer_folder(path: str) -> str:
    """Where the tokenizer of model ``path`` is: the folder itself, or for an adapter folder
    holding none (peft's save_pretrained writes only the adapter) its base model."""
    if has_files(path):  # its tokenizer files
        return path
    return adapter_base(path) or path


def adapter_config(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, "adapter_config.json")) as handle:
            fields = json.load(handle)
    except (OSError, ValueError):
        raise ModelLoadError(f"model '{path}': unreadable adapter_config.json") from None
    if not isinstance(fields, dict):
        raise ModelLoadError(f"model '{path}': unreadable adapter_config.json")
    return fields


# initialisations computed from data by a peft call on the model before training
# (initialize_lora_eva_weights, preprocess_loraga, preprocess_corda): without it peft starts
# plain LoRA adapters (eva, lora_ga) or stops (corda)
_DATA_DRIVEN_INITS = {"eva": "initialize_lora_eva_weights", "lora_ga": "preprocess_loraga",
                      "corda": "preprocess_corda"}  # fmt: skip


# model types whose Mamba mixers peft refuses LoRA on (out_proj, conv1d), as peft lists them
MAMBA_MODEL_TYPES = ("falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h")
MAMBA_LORA_EXCLUDED = r".*\.(out_proj|conv1d)$"


def _all_linear_on_mamba(model: torch.nn.Module, peft_config: Any) -> bool:
    return (
        getattr(peft_config, "target_modules", None) == "all-linear"
        and getattr(peft_config, "peft_type", None) in ("LORA", "RANDLORA")
        and not getattr(peft_config, "exclude_modules", None)
        and getattr(getattr(model, "config", None), "model_type", None) in MAMBA_MODEL_TYPES
    )


def peft_config_refusal(peft_config: Any) -> str | None:
    """Why directpo cannot train ``peft_config``'s adapters (a line), or None: said by
    ``train(peft_config=...)`` before any model loads."""
    if getattr(peft_config, "is_prompt_learning", False):
        return (
            f"peft_config: {type(peft_config).__name__} prepends virtual tokens, which the "
            "completion log-probs do not expect; use LoRA, DoRA, IA3, ..."
        )
    if getattr(peft_config, "peft_type", None) == "ADALORA":
        # without update_and_allocate after every step it never prunes its ranks
        return (
            "peft_config: AdaLoraConfig reallocates its ranks through the model's "
            "update_and_allocate after every optimizer step, which directpo's loop does not "
            "call; use LoRA (lora_r), DoRA, IA3, ..."
        )
    init = getattr(peft_config, "init_lora_weights", True)
    if isinstance(init, str) and init.lower() in _DATA_DRIVEN_INITS:
        return (
            f"peft_config: init_lora_weights '{init}' is computed from data by peft's "
            f"{_DATA_DRIVEN_INITS[init.lower()]} on the model before training, which directpo "
            "(loading the model itself) never runs: the adapters would not start as asked; use "
            "init_lora_weights True, 'gaussian', 'pissa' or 'olora'"
        )
    task = getattr(peft_config, "task_type", None)
    task = getattr(task, "value", task)  # (peft's TaskType enum or its text)
    if task not in (None, "CAUSAL_LM"):
        # it wrapped the causal LM in PeftModelForSequenceClassification (...) and trained:
        # the output's adapter_config.json then loaded in no AutoPeftModelForCausalLM, as
        # lora_task_type other than CAUSAL_LM is refused
        return (
            f"peft_config: task_type '{task}' is not supported: directpo trains causal LMs; "
            "give task_type='CAUSAL_LM' (or none)"
        )
    return None


def apply_peft(
    model: torch.nn.Module, peft_config: Any, revision: str | None = None
) -> torch.nn.Module:
    """Wrap ``model`` with fresh adapters of ``peft_config`` (LoRA, DoRA, rsLoRA, IA3, ...; any
    PEFT method that does not prepend virtual tokens); only the adapters are trainable.
    ``revision``: the base's (model_init_kwargs'), which the saved adapter_config.json names so
    that peft's AutoPeftModelForCausalLM loads that base, not main's."""
    from peft import get_peft_model

    if refused := peft_config_refusal(peft_config):  # (train() says it before any load)
        raise ModelLoadError(refused)
    if _all_linear_on_mamba(model, peft_config):
        # peft's all-linear picks Mamba's out_proj and conv1d, then refuses them (peft's
        # _check_lora_target_modules_mamba); all-linear means the layers LoRA can adapt
        peft_config = copy.copy(peft_config)
        peft_config.exclude_modules = MAMBA_LORA_EXCLUDED
    # as given: peft fills in the config (all-linear, null) with the names it chose
    targets = getattr(peft_config, "target_modules", None)
    # (peft keeps a list as a set: sorted, its names are said in one order run after run)
    targets = sorted(targets) if isinstance(targets, set) else targets
    targets = list(targets) if isinstance(targets, list | tuple) else None
    to_save = list(getattr(peft_config, "modules_to_save", None) or [])
    parameters = list(getattr(peft_config, "target_parameters", None) or [])
    try:
        with peft_wrapping():
            wrapped = get_peft_model(model, peft_config, revision=revision)
    except (ValueError, TypeError, re.error) as exc:  # e.g. target modules not in the model
        said = _regex_unmatched(model, peft_config) or _none_matched(model, targets)
        raise ModelLoadError(said or f"peft: {first_line(exc)}") from None
    _check_names_matched(wrapped, targets, to_save, parameters)
    return wrapped


def _regex_unmatched(model: torch.nn.Module, peft_config: Any) -> str | None:
    """A regex of targets that no whole module name matches, said with the regex that does
    where the layers' last names match it: 'q_proj|v_proj' (peft's docs write '.*\\.(q|v)_proj')
    was peft's 'Target modules q_proj|v_proj not found in the base model'; a name given as
    peft's string (LoraConfig(target_modules="q_proj")) is told the list."""
    regex = getattr(peft_config, "target_modules", None)
    if not isinstance(regex, str) or regex == "all-linear":
        return None
    try:
        matches = re.compile(regex).fullmatch
    except re.error as exc:
        return f"lora_target_modules: {regex} is no regex peft can read ({exc})"
    names = [name for name, _ in model.named_modules() if name]
    if any(matches(name) for name in names):
        return None  # (peft's own reason is another)
    if not is_regex(regex):  # LoraConfig(target_modules="q_proj"): only train()'s peft_config
        return (  # (a lora_target_modules name is a list's item: peft_targets)
            f"peft_config: target_modules='{regex}' (a string) matches no module of the model: "
            "peft matches a string as a regex against each whole module name; a list matches "
            f"a name's end: target_modules=['{regex}']"
        )
    linear = _linear_names(model)
    ends = [end for end in linear if matches(end)]  # (layers peft can adapt, not a block)
    whole = next((name for name in names if name.rsplit(".", 1)[-1] in (ends or linear)), "")
    said = f"lora_target_modules: {regex} matches no module of the model: peft matches a regex "
    said += f"against each whole module name ({whole})"
    if ends:
        return f"{said}; its layers {', '.join(ends)} end so: write '.*\\.({regex})'"
    return f"{said}; its linear layers: {', '.join(linear)}"


def _unmatched(names: list[str], matched: list[str]) -> list[str]:
    # peft's rule for target_modules (a list) and target_parameters: the whole name, or its
    # end after a dot
    return [t for t in names if not any(m == t or m.endswith(f".{t}") for m in matched)]


def _check_names_matched(
    model: torch.nn.Module, targets: list[str] | None, to_save: list[str], parameters: list[str]
) -> None:
    """Every name listed in target_modules, modules_to_save and target_parameters matched:
    peft drops a name that matches nothing without a word (it stops only when no target
    matches at all), so a misspelt or other architecture's name trained less than asked
    (lm_head on a model whose head is embed_out: nothing trained in full). ``targets`` None:
    a regex, all-linear or peft's choice."""
    from peft.utils import ModulesToSaveWrapper

    missing = _unmatched(parameters, getattr(model, "targeted_parameter_names", []))
    if missing:
        raise ModelLoadError(
            f"lora_target_parameters (target_parameters): {_names_said(missing)} "
            f"{_match(missing)} no parameter of the model (peft matches the end of a "
            "parameter's name, e.g. mlp.experts.gate_up_proj)"
        )
    if targets:
        missing = _unmatched(targets, getattr(model, "targeted_module_names", []))
        if missing:
            raise ModelLoadError(_targets_unmatched(model, missing))
    saved = [n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]
    # peft's rule for modules_to_save: the end of the name
    missing = [k for k in to_save if not any(n.endswith(k) for n in saved)]
    if missing:
        base = model.get_base_model()
        ends = {base.get_input_embeddings(), base.get_output_embeddings()}
        names = [n.rsplit(".", 1)[-1] for n, m in base.named_modules() if n and m in ends]
        raise ModelLoadError(
            f"lora_modules_to_save (modules_to_save): {_names_said(missing)} "
            f"{_match(missing)} no module of the model (peft matches the end of a module's "
            f"name); its embeddings and LM head: {', '.join(names)}"
        )


def _none_matched(model: torch.nn.Module, targets: list[str] | None) -> str | None:
    """Listed target_modules of which none matches a module (peft's refusal then named them
    all as a set, in no order: fifty typos a screenful), said as a few unmatched ones are."""
    names = [name for name, _ in model.named_modules() if name]
    if not targets or len(_unmatched(targets, names)) < len(targets):
        return None
    return _targets_unmatched(model, targets)


def _targets_unmatched(model: torch.nn.Module, missing: list[str]) -> str:
    return (
        f"lora_target_modules (target_modules): {_names_said(missing)} {_match(missing)} no "
        f"layer of the model; its linear layers: {', '.join(_linear_names(model))}"
    )


def _names_said(names: list[str]) -> str:
    """The names that match nothing, shortened as a refusal's values are (fifty misspelt
    target_modules ran the line to a screenful), with their count where cut."""
    whole = ", ".join(map(repr, names))
    said = shortened(whole)
    return whole if said == whole else f"{said} ({len(names)} names)"


def _match(names: list[str]) -> str:
    return "matches" if len(names) == 1 else "match"


def _linear_names(model: torch.nn.Module) -> list[str]:
    """The last names of the model's own linear layers (transformers' Conv1D in GPT-2 too), not
    the adapters' or peft's copies of them."""
    names = set()
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if linear and ".lora_" not in name and ".modules_to_save." not in name:
            names.add(name.removesuffix(".base_layer").removesuffix(".original_module"))
    return sorted({name.rsplit(".", 1)[-1] for name in names})


def apply_lora(
    model: torch.nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]
) -> torch.nn.Module:
    """Wrap ``model`` with fresh LoRA adapters (peft); only the adapters are trainable."""
    return apply_peft(model, lora_config(r, alpha, dropout, target_modules))


def quantization_config(config: Any) -> Any:
    """A transformers ``BitsAndBytesConfig`` for QLoRA (load_in_4bit / load_in_8bit), or None.
    bitsandbytes' kernels need a CUDA GPU: anywhere else this is one line, not a crash."""
    if not (config.load_in_4bit or config.load_in_8bit):
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            "load_in_4bit/load_in_8bit need bitsandbytes: pip install bitsandbytes (and a CUDA GPU)"
        )
    if not torch.cuda.is_available():
        raise ModelLoadError(
            "load_in_4bit/load_in_8bit need a CUDA GPU (bitsandbytes' quantized kernels); on "
            "this machine train LoRA without quantization (lora_r without load_in_4bit)"
        )
    from transformers import BitsAndBytesConfig

    if config.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=DTYPES[config.bnb_4bit_compute_dtype or config.dtype],
        bnb_4bit_quant_storage=DTYPES.get(config.bnb_4bit_quant_storage or "", torch.uint8),
    )
