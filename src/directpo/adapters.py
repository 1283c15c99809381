"""PEFT adapters: directpo's lora_* options as peft configs and back, adapters put on a model
(any PEFT method that adds no virtual tokens), adapter folders, and QLoRA's quantization."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import weakref
from pathlib import Path
from typing import Any

import torch

from directpo.errors import ModelLoadError, first_line
from directpo.model_locations import has_files, is_regex, looks_local
from directpo.precision import DTYPES

RESETTABLE_LORA_INITS = (True, False, "gaussian")  # peft draws these from the RNG alone


def initialize_adapters(model: torch.nn.Module, names: list[str] | None = None) -> None:
    """(Re)draw LoRA adapters' A and B with peft's own initialisation, module by module in
    order: called under one seed, the values are the same whether the base is real or on the
    meta device (where the adapters are first given CPU memory), and on every rank. Adapters
    whose initialisation needs the base's weights (PiSSA, OLoRA, ...) keep peft's."""
    from peft.tuners.lora import LoraLayer

    configs = getattr(model, "peft_config", {})
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in names or list(module.lora_A):
            init = configs[name].init_lora_weights
            if name not in module.lora_A or init not in RESETTABLE_LORA_INITS:
                continue
            if module.lora_A[name].weight.is_meta:
                module.lora_A[name].to_empty(device="cpu")
                module.lora_B[name].to_empty(device="cpu")
            # init_lora_weights False: peft keeps the constructors' draws, which are the start
            _draw_construction(module.lora_A[name], module.lora_B[name], kept=init is False)
            module.reset_lora_parameters(name, init)
            if init is False:  # (DoRA's magnitudes: the norms of W + BA as now drawn)
                _dora_magnitude_again(module, name)


def _draw_construction(lora_a: torch.nn.Module, lora_b: torch.nn.Module, kept: bool) -> None:
    """Take from the RNG what peft's nn.Linear constructors take before it resets A and B, so
    that a seed gives the adapters get_peft_model draws right after set_seed (TRL's order:
    the same LoRA start as a TRL run of that seed, where A alone differed). ``kept``: the
    draws are the adapters' values (init_lora_weights False, which peft does not reset: they
    kept get_peft_model's unseeded draws, or on a meta base memory never written)."""
    for layer in (lora_a, lora_b):
        if isinstance(layer, torch.nn.Linear):  # (embeddings' and convolutions' adapters: own)
            # (nn.Linear.reset_parameters' draws, on CPU tensors as peft builds them)
            weight = torch.empty(layer.out_features, layer.in_features)
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bias = None
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
                bias = torch.empty(layer.out_features).uniform_(-bound, bound)
            if kept:
                with torch.no_grad():
                    layer.weight.copy_(weight)
                    if bias is not None:
                        layer.bias.copy_(bias)


def _dora_magnitude_again(module: torch.nn.Module, name: str) -> None:
    """A linear DoRA adapter's magnitude computed again from its A and B, as peft's DoRA
    variant computes it when the adapter is added (embeddings' and convolutions': their own)."""
    from peft.tuners.lora.dora import DoraLinearLayer

    magnitude = dict(getattr(module, "lora_magnitude_vector", {})).get(name)  # (a ModuleDict)
    if type(magnitude) is DoraLinearLayer:
        magnitude.update_layer(
            base_layer=module.get_base_layer(),
            lora_A=module.lora_A[name].weight,
            lora_B=module.lora_B[name].weight,
            scaling=module.scaling[name],
        )


def align_dora_magnitudes(model: torch.nn.Module, compute: torch.dtype) -> None:
    """Fresh DoRA magnitudes set to the column norms of the weights as the forward sees them:
    ``compute``-dtype copies of the base. peft sets them from the float32 base, whose norms
    round to other bf16 values than the bf16 base's: under mixed precision m / ||W|| was then
    not exactly 1 and the policy started about 1e-4 off its reference (the same model with the
    adapters off). Fresh adapters only: B is zero, so W + BA is W (a trained magnitude stays)."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.dora import DoraLinearLayer
    from peft.utils.integrations import dequantize_module_weight

    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, magnitude in getattr(module, "lora_magnitude_vector", {}).items():
            if type(magnitude) is not DoraLinearLayer:
                continue  # embeddings and convolutions: a norm over other weights and dimensions
            lora_a, lora_b = module.lora_A[name], module.lora_B[name]
            if lora_b.weight.is_meta or bool(lora_b.weight.detach().any()):
                continue
            with torch.no_grad():
                weight = dequantize_module_weight(module.get_base_layer()).to(compute)
                lora_weight = magnitude.get_lora_weight(lora_a, lora_b).to(compute)
                norm = magnitude.get_weight_norm(weight, lora_weight, module.scaling[name])
                magnitude.weight.data = norm.to(magnitude.weight.dtype)


# LoRA initialisations that move part of each base weight into the adapter (W = W_res + B0 A0):
# the base with adapters off is then W_res, not the model the run starts from, and peft
# redoes the subtraction whenever such an adapter is added or loaded again
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")  # pissa: also pissa_niter_<n>
# initialisations computed from data by a peft call on the model before training
# (initialize_lora_eva_weights, preprocess_loraga, preprocess_corda): without it peft starts
# plain LoRA adapters (eva, lora_ga) or stops (corda)
_DATA_DRIVEN_INITS = {"eva": "initialize_lora_eva_weights", "lora_ga": "preprocess_loraga",
                      "corda": "preprocess_corda"}  # fmt: skip


def rewrites_base(peft_config: Any) -> bool:
    """Whether ``peft_config``'s adapters start by rewriting the base weights (PiSSA, OLoRA,
    CorDA, LoftQ): the reference is then the starting adapter, never the adapters off."""
    init = getattr(peft_config, "init_lora_weights", True)
    return isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS)


def reference_adapter_config(peft_config: Any) -> Any:
    """``peft_config`` for a frozen copy of an adapter added beside it (its values copied in
    afterwards): initialised plainly, since a base-rewriting init would rewrite the base again
    under both adapters."""
    if not rewrites_base(peft_config):
        return peft_config
    plain = copy.copy(peft_config)
    plain.init_lora_weights = True
    return plain


# the fresh A0 / B0 of each model's base-rewriting adapter, kept to write it as plain LoRA
_STARTS: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def remember_start(model: torch.nn.Module) -> None:
    """Keep a CPU copy of the active adapter's starting A0 / B0 when its initialisation
    rewrote the base (PiSSA, OLoRA): peft computes W_res again whenever such a folder is
    loaded, from a randomized SVD with pissa_niter_N (another W_res: another model), so the
    folders directpo writes hold the adapter as plain LoRA on the stored base instead."""
    config = model.peft_config[model.active_adapter]
    if not rewrites_base(config):
        return
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=model.active_adapter)
    _STARTS[model] = {
        key: value.detach().to("cpu", torch.float32, copy=True)
        for key, value in state.items()
        if ".lora_A." in key or ".lora_B." in key
    }


def write_as_plain_lora(model: torch.nn.Module, folder: Path) -> None:
    """Rewrite the adapter folder ``folder`` of ``model``'s base-rewriting adapter as peft's
    ``path_initial_model_for_weight_conversion`` does: W_res + BA = W + [B | -B0][A | A0], a
    LoRA of rank 2r with the same scaling, loaded on the stored W with no SVD (so the same
    model wherever it loads). No-op for other adapters."""
    start = _STARTS.get(model)
    if start is None:
        return
    from safetensors.torch import load_file, save_file

    weights = folder / "adapter_model.safetensors"
    tensors = load_file(weights)
    for key, value in tensors.items():
        if key in start:
            initial = start[key].to(value.dtype)
            if ".lora_A." in key:
                tensors[key] = torch.cat([value, initial], dim=0)
            else:
                tensors[key] = torch.cat([value, -initial], dim=1)
    save_file(tensors, weights, metadata={"format": "pt"})
    fields = adapter_config(str(folder))
    fields["init_lora_weights"] = True
    fields["r"] *= 2
    # scaling alpha / r (rsLoRA: alpha / sqrt(r)) kept as trained
    alpha_factor = math.sqrt(2) if fields.get("use_rslora") else 2
    fields["lora_alpha"] *= alpha_factor
    for pattern, factor in (("rank_pattern", 2), ("alpha_pattern", alpha_factor)):
        fields[pattern] = {k: factor * v for k, v in (fields.get(pattern) or {}).items()}
    (folder / "adapter_config.json").write_text(json.dumps(fields, indent=2, sort_keys=True))


def as_trained_adapter(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The adapter weights ``tensors`` of a folder ``write_as_plain_lora`` wrote, back in the
    form ``model`` trains (A, B of rank r on W_res: the first r rows of [A | A0], columns of
    [B | -B0]); any other weights as they are."""
    start = _STARTS.get(model, {})
    kept = {}
    for key, value in tensors.items():
        rank = start[key].shape[0 if ".lora_A." in key else 1] if key in start else None
        doubled = rank is not None and value.shape[0 if ".lora_A." in key else 1] == 2 * rank
        if doubled and ".lora_A." in key:
            value = value[:rank]
        elif doubled:
            value = value[:, :rank]
        kept[key] = value
    return kept


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
    targets = list(targets) if isinstance(targets, list | set | tuple) else None
    to_save = list(getattr(peft_config, "modules_to_save", None) or [])
    parameters = list(getattr(peft_config, "target_parameters", None) or [])
    try:
        wrapped = get_peft_model(model, peft_config, revision=revision)
    except (ValueError, TypeError, re.error) as exc:  # e.g. target modules not in the model
        said = _regex_unmatched(model, peft_config) or f"peft: {first_line(exc)}"
        raise ModelLoadError(said) from None
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
            f"lora_target_parameters (target_parameters): {', '.join(map(repr, missing))} "
            f"{_match(missing)} no parameter of the model (peft matches the end of a "
            "parameter's name, e.g. mlp.experts.gate_up_proj)"
        )
    if targets:
        missing = _unmatched(targets, getattr(model, "targeted_module_names", []))
        if missing:
            layers = ", ".join(_linear_names(model))
            raise ModelLoadError(
                f"lora_target_modules (target_modules): {', '.join(map(repr, missing))} "
                f"{_match(missing)} no layer of the model; its linear layers: {layers}"
            )
    saved = [n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]
    # peft's rule for modules_to_save: the end of the name
    missing = [k for k in to_save if not any(n.endswith(k) for n in saved)]
    if missing:
        base = model.get_base_model()
        ends = {base.get_input_embeddings(), base.get_output_embeddings()}
        names = [n.rsplit(".", 1)[-1] for n, m in base.named_modules() if n and m in ends]
        raise ModelLoadError(
            f"lora_modules_to_save (modules_to_save): {', '.join(map(repr, missing))} "
            f"{_match(missing)} no module of the model (peft matches the end of a module's "
            f"name); its embeddings and LM head: {', '.join(names)}"
        )


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


def peft_targets(target_modules: list[str] | None) -> str | list[str] | None:
    """LoraConfig's target_modules of lora_target_modules: all-linear or a regex given alone
    as peft's string, names as a list (None: peft's choice)."""
    if target_modules and len(target_modules) == 1:
        (only,) = target_modules
        if only == "all-linear" or is_regex(only):
            return only
    return target_modules


def lora_config(
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | None,
    *,
    use_dora: bool = False,
    use_rslora: bool = False,
    modules_to_save: list[str] | None = None,
    target_parameters: list[str] | None = None,
) -> Any:
    """The peft ``LoraConfig`` of directpo's lora_* options (``target_modules`` None: peft's
    modules for the architecture, as TRL's default)."""
    from peft import LoraConfig

    targets = peft_targets(target_modules)
    extra = {"target_parameters": target_parameters} if target_parameters else {}
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_dora=use_dora,
        use_rslora=use_rslora,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
        **extra,
    )


# directpo's options that describe LoRA adapters (lora_config_from reads them)
LORA_OPTIONS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora", "use_rslora",
    "lora_modules_to_save", "lora_target_parameters",
)  # fmt: skip


def lora_config_from(options: dict[str, Any]) -> Any:
    """The peft ``LoraConfig`` of the ``LORA_OPTIONS`` in ``options``."""
    return lora_config(
        options["lora_r"],
        options["lora_alpha"],
        options["lora_dropout"],
        options["lora_target_modules"],
        use_dora=options["use_dora"],
        use_rslora=options["use_rslora"],
        modules_to_save=options["lora_modules_to_save"],
        target_parameters=options["lora_target_parameters"],
    )


# LoraConfig fields that say where or how the adapters are described, not what they train
_LORA_BOOKKEEPING = ("task_type", "base_model_name_or_path", "revision", "inference_mode")


def lora_options_of(peft_config: Any) -> dict[str, Any] | None:
    """directpo's lora_* options that build exactly ``peft_config``, or None when it is not a
    LoraConfig those options can express (IA3, a LoRA with rank patterns, PiSSA init, ...)."""
    if type(peft_config).__name__ != "LoraConfig":
        return None
    # None: peft's modules for the architecture, which lora_target_modules: null asks for too
    # (TRL's examples' LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM") was recorded as
    # no adapters: its config.yaml reran a full fine-tune)
    targets = peft_config.target_modules
    if targets is not None and not targets:
        return None  # (an empty list: peft's own refusal, when it loads)
    alpha = peft_config.lora_alpha
    options: dict[str, Any] = {
        "lora_r": peft_config.r,
        "lora_alpha": int(alpha) if isinstance(alpha, float) and alpha.is_integer() else alpha,
        "lora_dropout": peft_config.lora_dropout,
        "lora_target_modules": _targets_option(targets),
        "use_dora": peft_config.use_dora,
        "use_rslora": peft_config.use_rslora,
        "lora_modules_to_save": sorted(peft_config.modules_to_save or []) or None,
        "lora_target_parameters": sorted(peft_config.target_parameters or []) or None,
    }
    if not isinstance(options["lora_alpha"], int):
        return None  # no option spells a fractional alpha
    # a regex of targets (peft's docs' target_modules=r".*\.(q|v)_proj") is lora_target_modules'
    # one regex (peft_targets), as the rebuild below confirms: it was taken for one no option
    # spells, and config.yaml recorded the run without adapters; a plain name as peft's string
    # (matched against whole module names) rebuilds as a list, unlike it, and stays refused
    rebuilt = lora_config_from(options)

    def described(config: Any) -> dict[str, Any]:
        fields = config.to_dict()
        for key in _LORA_BOOKKEEPING:
            fields.pop(key, None)
        for key in ("modules_to_save", "target_parameters"):
            fields[key] = sorted(fields[key] or [])
        return fields

    return options if described(rebuilt) == described(peft_config) else None


def _targets_option(targets: str | list[str] | set[str] | None) -> list[str] | None:
    """lora_target_modules of a LoraConfig's target_modules."""
    if targets is None:
        return None
    return [targets] if isinstance(targets, str) else sorted(targets)


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
