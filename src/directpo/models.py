"""Loading policy, reference and tokenizer from Hugging Face model folders."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    GenerationConfig,
)

from directpo.adapters import adapter_base, adapter_config
from directpo.errors import ConfigError, ModelLoadError, first_line
from directpo.hub import cache_only_where_unreachable, unreachable_reason
from directpo.precision import DTYPES
from directpo.vision import is_vision_config
from directpo.weight_names import stored_names

# peft reads transformers' renamed attribute on every PeftModel: a warning between the two
# libraries that nobody running directpo can act on (it printed on every LoRA run)
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)


def load_tokenizer(
    path: str, trust_remote_code: bool = False, location: dict[str, Any] | None = None
) -> Any:
    """The tokenizer of ``path``; ``location``: its model's from_pretrained location arguments
    (``model_location``), with ``subfolder`` the place to look when ``path`` has none."""
    cache_only_where_unreachable(path)
    try:
        tokenizer = _from_location(AutoTokenizer, path, location, trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        if _without_tokenizer_files(path, location):
            # (it said "cannot load (Couldn't instantiate the backend tokenizer from one of: )")
            raise ModelLoadError(
                f"tokenizer '{path}': the folder holds no tokenizer files (tokenizer.json, "
                "tokenizer_config.json, ...), as a model saved alone: save its tokenizer there "
                "too (tokenizer.save_pretrained(folder)), or give tokenizer_name_or_path"
            ) from None
        raise ModelLoadError(f"tokenizer '{path}': cannot load ({first_line(exc)})") from None
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"tokenizer '{path}': has no EOS token; completions must end with one")
    return tokenizer


def _without_tokenizer_files(path: str, location: dict[str, Any] | None) -> bool:
    """A local folder (and its model's subfolder) without any file a tokenizer is read from."""
    if not os.path.isdir(path):
        return False
    subfolder = (location or {}).get("subfolder")
    folders = [path, *([os.path.join(path, subfolder)] if subfolder else [])]
    names = [name for folder in folders if os.path.isdir(folder) for name in os.listdir(folder)]
    prefixes = ("tokenizer", "vocab", "merges", "spiece", "sentencepiece")
    return not any(n.startswith(prefixes) or n.endswith((".model", ".tiktoken")) for n in names)


def load_processor(
    path: str, trust_remote_code: bool = False, location: dict[str, Any] | None = None
) -> Any:
    """A vision-language model's processor (image processor + tokenizer), or None for a
    text-only model (whose folder has no image processor). ``location``: as load_tokenizer's."""
    from transformers import AutoProcessor

    if not os.path.exists(path):
        _check_hub_reachable(path, location)
    try:
        processor = _from_location(AutoProcessor, path, location, trust_remote_code)
    except Exception as exc:  # a text-only folder, a foreign one: the tokenizer path decides
        if _is_vision_folder(path, location, trust_remote_code):
            # else its image rows were refused as given to "not a vision-language model"
            raise ModelLoadError(
                f"processor of the vision-language model '{path}': cannot load "
                f"({_missing_package(exc) or first_line(exc)})"
            ) from None
        return None
    if getattr(processor, "image_processor", None) is None:
        # AutoProcessor gives the tokenizer alone when the processor class it names is unknown
        # (the model's rows were then refused as given to "not a vision-language model")
        if _is_vision_folder(path, location, trust_remote_code):
            named = getattr(processor, "init_kwargs", {}).get("processor_class")
            raise ModelLoadError(
                f"processor of the vision-language model '{path}': AutoProcessor loaded its "
                f"tokenizer alone, not its processor ({named or 'no processor_class named'}: a "
                "class this transformers does not know, or custom code that needs "
                "trust_remote_code: true)"
            )
        return None
    return processor


# transformers' words for a backend its class needs ("PixtralProcessor requires the
# Torchvision library but it was not found in your environment. Check out the ...", cut
# mid-sentence by a first line)
MISSING_BACKEND = re.compile(r"(\w+) requires the (\S+) library but it was not found")


def _missing_package(exc: BaseException) -> str | None:
    """What to install where a processor class needs a package that is not installed, or None.
    Mistral 3's PixtralProcessor imports torchvision whatever its image processor (its PIL one
    needs none, but transformers offers no processor without it): directpo cannot fall back,
    and torchvision must be the build of the installed torch (pip pulls another torch else)."""
    import importlib.util

    if isinstance(exc, ModuleNotFoundError) and exc.name:
        # a missing submodule of an installed package (an older transformers) is no package
        package = exc.name.split(".")[0]
        if importlib.util.find_spec(package) is not None:
            return None
        needer = "its processor"
    elif match := MISSING_BACKEND.search(str(exc)):
        needer, package = match.group(1), match.group(2)
    else:
        return None
    if package.lower() != "torchvision":  # transformers' display name, not always pip's
        return f"{needer} needs the {package} library, which is not installed"
    return (
        f"{needer} needs torchvision, which is not installed: install the torchvision release "
        f"built for torch {torch.__version__.split('+')[0]} (pip install torchvision==<that "
        "release>; unpinned, pip replaces torch)"
    )


def _is_vision_folder(path: str, location: dict[str, Any] | None, trust_remote_code: bool) -> bool:
    """Whether ``path`` holds a vision-language model's config (a tokenizer-only folder: no)."""
    try:
        config = _from_location(AutoConfig, path, location, trust_remote_code)
    except Exception:  # noqa: BLE001 - no config: no model to say anything of
        return False
    return is_vision_config(config)


HUB_UNREACHABLE = "couldn't connect to"  # transformers' words when the hub cannot be reached


def _check_hub_reachable(path: str, location: dict[str, Any] | None) -> None:
    """A name that is no local path is a hub id: its config.json is fetched once (or found in
    the local cache) before the processor, tokenizer and weights are looked for. Where the hub
    cannot be reached and nothing is cached (a typo of a folder name on an offline machine),
    this one request fails after huggingface_hub's retries (~20 s) and says so, instead of
    every file of every loader retrying in turn (3 minutes). Other failures (a repo without
    config.json: a tokenizer alone) are left to the loaders that follow, and so is a repo the
    local cache holds anything of (offline, a file it lacks would read as unreachable)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    offline = cache_only_where_unreachable(path)
    where = dict(location or {})
    cache = where.get("cache_dir") or constants.HF_HUB_CACHE
    if os.path.isdir(os.path.join(cache, repo_folder_name(repo_id=path, repo_type="model"))):
        return
    if offline:
        raise ModelLoadError(
            f"'{path}' is no local folder, and as a hub id it cannot be loaded: "
            f"{unreachable_reason()}, and the local cache holds no copy of it"
        )
    places = [where, {k: v for k, v in where.items() if k != "subfolder"}]  # weights', root
    for place in places[: 1 + ("subfolder" in where)]:
        try:
            AutoConfig.from_pretrained(path, **place)
            return
        except Exception as exc:  # noqa: BLE001 - only the hub's unreachability is decided
            if HUB_UNREACHABLE not in str(exc):
                return
            unreachable = exc
    raise ModelLoadError(
        f"'{path}' is no local folder, and as a hub id it cannot be loaded: "
        f"{first_line(unreachable)}"
    )


def _from_location(
    auto: Any, path: str, location: dict[str, Any] | None, trust_remote_code: bool
) -> Any:
    """``auto.from_pretrained`` of ``path`` at the model's revision, cache, ...; the tokenizer
    (processor) of a model whose weights are in a subfolder is the folder's own if it has one,
    else the subfolder's (a local folder's tokenizer_path has already chosen between them)."""
    where = dict(location or {})
    subfolder = where.pop("subfolder", None)
    try:
        return auto.from_pretrained(path, trust_remote_code=trust_remote_code, **where)
    except Exception:
        if not subfolder:
            raise
    return auto.from_pretrained(
        path, trust_remote_code=trust_remote_code, subfolder=subfolder, **where
    )


# from_pretrained arguments that say where a model's files are: its config is read there too
LOCATION_KWARGS = ("revision", "subfolder", "cache_dir", "local_files_only", "token")


def model_location(init_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The ``LOCATION_KWARGS`` among from_pretrained keyword arguments (model_init_kwargs):
    where a model's files are, so also where its tokenizer, and an adapter's base, are."""
    return {key: value for key, value in (init_kwargs or {}).items() if key in LOCATION_KWARGS}


@dataclass(frozen=True)
class LoadOptions:
    """How a causal LM is loaded (besides its dtype, device and whether it trains)."""

    disable_dropout: bool = True
    gradient_checkpointing: bool = False
    checkpoint_every: int = 1  # with gradient checkpointing: only every k-th decoder layer
    attn_implementation: str = "auto"
    compile_layers: bool = False  # torch.compile each decoder layer (regional)
    init_kwargs: dict[str, Any] = field(default_factory=dict)  # model_init_kwargs
    trust_remote_code: bool = False
    quantization: Any = None  # a transformers BitsAndBytesConfig (QLoRA), or None
    liger_kernels: dict[str, Any] | None = None  # Liger's apply keywords (use_liger_kernel)
    # FSDP2: build on the meta device; each rank later fills its shards from the files
    # (distributed.materialize), so no process ever holds the whole model
    meta: bool = False


def load_causal_lm(
    path: str,
    dtype: str | torch.dtype,
    *,
    trainable: bool,
    device: torch.device | str = "cpu",
    options: LoadOptions = LoadOptions(),
) -> torch.nn.Module:
    """An ``AutoModelForCausalLM`` from ``path`` (or a PEFT adapter folder: its base with the
    adapter on it); frozen and in eval mode unless trainable."""
    cache_only_where_unreachable(path)
    kwargs: dict[str, Any] = dict(options.init_kwargs)
    if options.attn_implementation != "auto":
        kwargs["attn_implementation"] = options.attn_implementation
    if options.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if options.quantization is not None:
        kwargs["quantization_config"] = options.quantization
        kwargs.setdefault("device_map", {"": device})
    if options.meta:
        meta = _meta_model(path, dtype, trainable=trainable, options=options)
        if meta is not None:
            return meta
    adapter = adapter_base(path)
    if adapter is not None:  # a LoRA output folder: the base model with the adapter on it
        from peft import PeftModel

        revision = adapter_config(path).get("revision")
        if revision and "revision" not in options.init_kwargs:  # as peft's AutoPeftModel does
            options = replace(options, init_kwargs={**options.init_kwargs, "revision": revision})
        if not os.path.exists(adapter):  # a hub id: said as the model's own would be, named
            try:
                _check_hub_reachable(adapter, model_location(kwargs))
            except ModelLoadError as exc:
                raise ModelLoadError(
                    f"model '{path}': its adapter's base (adapter_config.json's "
                    f"base_model_name_or_path): {exc}; set it to the base model's folder"
                ) from None
        base = load_causal_lm(adapter, dtype, trainable=False, device=device, options=options)
        try:
            model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        except Exception as exc:  # peft raises several types for a foreign or damaged adapter
            raise ModelLoadError(
                f"model '{path}': cannot load the adapter onto '{adapter}' ({first_line(exc)})"
            ) from None
        return model.train() if trainable else model.eval()
    try:
        # the config from where the weights come (another revision's may differ)
        location = model_location(kwargs)
        config = AutoConfig.from_pretrained(
            path, trust_remote_code=options.trust_remote_code, **location
        )
        zeroed = _zero_dropout_config(config) if options.disable_dropout else {}
        # a vision-language model loads as image-text-to-text (LLaVA, Qwen2-VL, Gemma 3, ...)
        auto = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
        model = auto.from_pretrained(path, config=config, dtype=DTYPES.get(dtype, dtype), **kwargs)
        setattr(model, CONFIG_AS_LOADED, zeroed)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"model '{path}': cannot load as a causal LM ({first_line(exc)})"
            f"{_load_hint(exc, options, kwargs.get('attn_implementation'))}"
        ) from None
    if "device_map" not in kwargs:  # accelerate placed it already
        model.to(device)
    return _prepared(model, trainable, options)


def _load_hint(exc: Exception, options: LoadOptions, attention: str | None) -> str:
    """What to change where a load refused an option of the run's (its message names none)."""
    if "custom code" in str(exc) and not options.trust_remote_code:
        return "; allow its code with trust_remote_code: true"
    if attention and "attention" in str(exc).lower():
        # (Gemma 2 refuses sdpa; flash_attention_2 without its package): transformers' words
        # name neither the option nor what runs; auto picks what this model runs
        return (
            f"; it refuses attn_implementation {attention}: set attn_implementation: auto "
            "(directpo picks one this model runs) or eager"
        )
    return ""


def _prepared(model: torch.nn.Module, trainable: bool, options: LoadOptions) -> torch.nn.Module:
    """Dropout off, train/eval mode, Liger kernels, activation checkpointing, regional
    compilation."""
    if options.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if trainable:
        model.train()
        if options.gradient_checkpointing:
            _enable_activation_checkpointing(model, options.checkpoint_every)
    else:
        model.eval()
        model.requires_grad_(False)
    if options.liger_kernels is not None:
        apply_liger_kernels(model, options.liger_kernels)
    if options.compile_layers:
        for block in decoder_layers(model):
            block.compile()
    return model


def apply_liger_kernels(model: torch.nn.Module, kernels: dict[str, Any]) -> None:
    """Liger's kernels on ``model`` (its norms, MLPs and rotary embedding), as transformers'
    Trainer applies them for ``use_liger_kernel``; refused in one line when liger-kernel is
    missing or has no kernels for the architecture (instead of training without them)."""
    try:
        from liger_kernel.transformers.monkey_patch import (
            MODEL_TYPE_TO_APPLY_LIGER_FN,
            _apply_liger_kernel_to_instance,
        )
    except ImportError as exc:
        raise ConfigError(
            f"use_liger_kernel: liger-kernel is not importable ({first_line(exc)}); "
            "pip install liger-kernel, or remove use_liger_kernel"
        ) from None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ConfigError(
            f"use_liger_kernel: Liger has no kernels for model type {model_type!r} (it has: "
            f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}); remove use_liger_kernel"
        )
    _apply_liger_kernel_to_instance(model=model, **kernels)


WEIGHTS_FOLDER = "directpo_weights_folder"  # a meta model's attribute: where its weights are
WEIGHTS_KEYS = "directpo_weights_keys"  # and the file key of each parameter name
META_INIT_KWARGS = {"attn_implementation", "subfolder"}  # what a meta build can honour


def meta_weights_folder(path: str, options: LoadOptions) -> str | None:
    """The local folder of safetensors weights a meta-device build of ``path`` fills its shards
    from, or None when only a whole load can do (a hub id not in the local cache, an adapter
    folder, quantization, .bin weights, from_pretrained arguments a bare config cannot
    honour)."""
    kwargs = options.init_kwargs
    if options.quantization is not None or set(kwargs) - META_INIT_KWARGS:
        return None
    path = _cached_snapshot(path)
    folder = os.path.join(path, kwargs["subfolder"]) if kwargs.get("subfolder") else path
    if not os.path.isdir(folder) or adapter_base(path) is not None:
        return None
    if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
        return None
    return folder


def _meta_model(
    path: str, dtype: str | torch.dtype, *, trainable: bool, options: LoadOptions
) -> torch.nn.Module | None:
    """The architecture of ``path`` with its parameters on the meta device (no memory) and its
    buffers (rotary tables) real; ``distributed.materialize`` fills the weights. None when the
    files do not hold every parameter by name or by a transformers renaming (tensors it
    converts, such as fused MoE experts): the caller then loads the model whole."""
    from accelerate import init_empty_weights

    folder = meta_weights_folder(path, options)
    if folder is None:
        raise ModelLoadError(f"model '{path}': no local safetensors weights to shard from")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=options.trust_remote_code)
        zeroed = _zero_dropout_config(config) if options.disable_dropout else {}
        extra = {}
        if options.attn_implementation != "auto":
            extra["attn_implementation"] = options.attn_implementation
        elif "attn_implementation" in options.init_kwargs:
            extra["attn_implementation"] = options.init_kwargs["attn_implementation"]
        auto = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
        with init_empty_weights(include_buffers=False):
            model = auto.from_config(
                config, dtype=DTYPES.get(dtype, dtype),
                trust_remote_code=options.trust_remote_code, **extra,
            )  # fmt: skip
        model.tie_weights()  # tied on the meta device, they stay one tensor through sharding
        setattr(model, CONFIG_AS_LOADED, zeroed)
        _stored_generation_config(model, folder)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"model '{path}': cannot build as a causal LM ({first_line(exc)})"
        ) from None
    if not _files_cover(model, folder):
        return None
    setattr(model, WEIGHTS_FOLDER, folder)
    return _prepared(model, trainable, options)


def _stored_generation_config(model: torch.nn.Module, folder: str) -> None:
    """The folder's generation_config.json on a model built from its config, as from_pretrained
    loads it: from_config derives one from config.json alone, so an FSDP run's final folder
    lost the base's (a chat model's end-of-turn ids in eos_token_id, where vLLM and TGI stop;
    its sampling defaults)."""
    if os.path.isfile(os.path.join(folder, "generation_config.json")):
        model.generation_config = GenerationConfig.from_pretrained(folder)


def _cached_snapshot(path: str, revision: str | None = None, cache_dir: str | None = None) -> str:
    """A hub id's folder in the local Hugging Face cache at ``revision`` (main's where None),
    never downloading, else ``path``."""
    if os.path.exists(path) or path.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            path, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # noqa: BLE001 - not cached, or not a valid id: a whole load decides
        return path


def safetensors_keys(folder: str) -> set[str]:
    """Every tensor name in a folder's safetensors files (read from their headers only)."""
    from safetensors import safe_open

    keys: set[str] = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as handle:
                keys.update(handle.keys())
    return keys


def _files_cover(model: torch.nn.Module, folder: str) -> bool:
    """Whether the files hold every parameter, under its own name or one transformers renames
    while loading; the file key of each is kept on the model (``WEIGHTS_KEYS``)."""
    keys = file_keys(model, folder)
    if keys is None:
        return False
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    setattr(model, WEIGHTS_KEYS, keys)
    return all(any(n in keys for n in aliases) for aliases in names.values())


def file_keys(model: torch.nn.Module, folder: str) -> dict[str, str] | None:
    """The model's parameter names -> their keys in the folder's safetensors files, through
    transformers' own checkpoint renamings (a vision-language model's files keep the older
    ``language_model.model.*`` names, for instance). None when a key needs more than a renaming
    (experts fused from many tensors, ...): such a model is loaded whole."""
    return stored_names(model, safetensors_keys(folder))


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated transformer blocks (the classes it names in _no_split_modules)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_failure(exc: BaseException) -> str | None:
    """Why torch.compile failed, if ``exc`` is its failure (dynamo's or its backend's: no C++
    compiler, no Triton, a kernel it cannot generate), else None (the model's own error)."""
    from torch._dynamo.exc import TorchDynamoException

    if not isinstance(exc, TorchDynamoException):
        return None
    cause = getattr(exc, "inner_exception", None) or exc  # a backend's: its own error
    return f"{type(cause).__name__}: {first_line(cause)}"[:200]


def uncompile_layers(model: torch.nn.Module) -> None:
    """Undo ``torch_compile``'s regional compilation: the decoder layers run eagerly."""
    for block in decoder_layers(model):
        block._compiled_call_impl = None


def _enable_activation_checkpointing(model: torch.nn.Module, every: int = 1) -> None:
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs and no_grad refs
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    loaded = getattr(model, CONFIG_AS_LOADED, {})
    loaded.setdefault("", {}).setdefault("use_cache", getattr(model.config, "use_cache", None))
    setattr(model, CONFIG_AS_LOADED, loaded)
    model.config.use_cache = False  # while training only (config_as_loaded)
    if every > 1:  # transformers checkpoints a layer whose gradient_checkpointing flag is set
        layers = [m for m in decoder_layers(model) if hasattr(m, "gradient_checkpointing")]
        if not layers:
            raise ModelLoadError(
                f"gradient_checkpointing_every: {type(model).__name__} has no per-layer "
                "checkpointing switch; use gradient_checkpointing_every: 1"
            )
        for index, layer in enumerate(layers):
            layer.gradient_checkpointing = index % every == 0


# a loaded model's attribute: the config values changed for training (dropout, use_cache), as
# its folder had them, by sub-config ("" for the config itself): saved folders write these
CONFIG_AS_LOADED = "directpo_config_as_loaded"


def _zero_dropout_config(config: Any) -> dict[str, dict[str, float]]:
    """Dropout probabilities that models read from the config (e.g. attention_dropout), set to
    0; returns the values replaced, by sub-config ("" for the config itself)."""
    replaced: dict[str, dict[str, float]] = {}
    for name in ("", "text_config"):
        cfg = getattr(config, name, None) if name else config
        if cfg is None:
            continue
        for key, value in list(vars(cfg).items()):
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
                replaced.setdefault(name, {})[key] = value
                setattr(cfg, key, 0.0)
    return replaced


@contextlib.contextmanager
def config_as_loaded(model: torch.nn.Module) -> Iterator[None]:
    """The config of ``model`` (a peft model's base's) holds its folder's values inside the
    block: disable_dropout zeroes the dropout of the config that layers read while training,
    gradient checkpointing turns use_cache off, but a saved folder keeps the base's for whoever
    uses or trains it next (as TRL's, which changes only the Dropout modules and each call)."""
    from directpo.logprobs import unwrap_peft

    inner = unwrap_peft(model)
    restored = []
    for name, values in getattr(inner, CONFIG_AS_LOADED, {}).items():
        cfg = getattr(inner.config, name) if name else inner.config
        for key, value in values.items():
            restored.append((cfg, key, getattr(cfg, key)))
            setattr(cfg, key, value)
    try:
        yield
    finally:
        for cfg, key, value in restored:
            setattr(cfg, key, value)


def pad_token_id(tokenizer: Any) -> int:
    """Padding is always masked out, so any id works; prefer the tokenizer's own."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def resolve_router_aux(
    config: Any, policy: torch.nn.Module, echo: Callable[[str], None] = print
) -> Any:
    """``config`` with ``router_aux_loss_coef`` resolved for this policy, as TRL does: unset
    means the coefficient the model's config declares (a Mixture-of-Experts model that returns
    router logits, e.g. Mixtral's 0.001), else off: left unset (None), so that the saved card
    does not list a coefficient the user never set. A coefficient set for a model with no router
    loss directpo can compute is refused; one only its config declares is turned off with a
    notice (``echo``), not refused: the user asked for nothing. The caller's config is not
    modified."""
    from directpo.logprobs import router_balance_function, text_config, unwrap_peft

    model_config = text_config(unwrap_peft(policy))
    name = type(unwrap_peft(policy)).__name__
    coefficient = config.router_aux_loss_coef
    if coefficient is None:
        declared = hasattr(model_config, "output_router_logits")
        coefficient = float(getattr(model_config, "router_aux_loss_coef", 0.0) or 0.0) * declared
    if coefficient and router_balance_function(policy) is None:
        problem = f"{name} is not a Mixture-of-Experts model with a load-balancing loss"
        if config.router_aux_loss_coef is not None:
            raise ConfigError(f"router_aux_loss_coef is {coefficient} but {problem}; remove it")
        # only the model's config asked for it (Llama 4: no load_balancing_loss_func)
        echo(f"router_aux_loss_coef: off, though {name}'s config declares {coefficient}: {problem}")
        coefficient = 0.0
    resolved = copy.copy(config)
    unset_and_off = config.router_aux_loss_coef is None and not coefficient
    resolved.router_aux_loss_coef = None if unset_and_off else float(coefficient)
    return resolved
