"""Loading a model's tokenizer and, for a vision-language model, its processor."""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from directpo.callers import Entry, caller, said, spell_setting
from directpo.errors import ModelLoadError, first_line
from directpo.hub import cache_only_where_unreachable
from directpo.model_files import check_hub_reachable
from directpo.vision import is_vision_config


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
                f"too (tokenizer.save_pretrained(folder)){_another_tokenizer()}"
            ) from None
        raise ModelLoadError(f"tokenizer '{path}': cannot load ({first_line(exc)})") from None
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"tokenizer '{path}': has no EOS token; completions must end with one")
    return tokenizer


def _another_tokenizer() -> str:
    """Where else the caller can name a tokenizer: train's tokenizer_name_or_path as it sets
    options, ImplicitReward's tokenizer argument; score, rank and generate read the model
    folder's alone (they were told 'give tokenizer_name_or_path', an option they lack, and a
    recipe's user a flag's verb)."""
    entry = caller().entry
    if entry is Entry.TRAIN:
        return f", or {spell_setting('tokenizer_name_or_path')}"
    if entry is Entry.IMPLICIT_REWARD:
        return ", or pass ImplicitReward a tokenizer (its tokenizer argument)"
    return ""


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
        check_hub_reachable(path, location)
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
                f"{said('trust_remote_code', True)})"
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


def pad_token_id(tokenizer: Any) -> int:
    """Padding is always masked out, so any id works; prefer the tokenizer's own."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
