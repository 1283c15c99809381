"""Vision-language models: images in the data, the processor, and image inputs in batches.

A row's ``images`` (or ``image``) column holds image files (paths relative to the data file),
base64 texts or data URIs, bytes, PIL images, or ``datasets.Image`` values. The model's
processor turns a prompt and its images into token ids (each image placeholder expanded into the
image's tokens) and pixel tensors; those ride with the pair (``VisionInputs``) through
collation, where prefix sharing puts each pair's prompt, so its images, once in a row (the
vision tower runs once per pair) and the plain layout twice. Models with 3D rotary positions
(Qwen2-VL's M-RoPE) get the prompt's positions from the model's own ``get_rope_index``
(``attach_rope_positions``); completion tokens continue from the prompt's largest position on
every axis, as the model itself numbers text after an image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import io
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from directpo.callers import spell_setting
from directpo.errors import ModelLoadError
from directpo.readers import list_in_text

if TYPE_CHECKING:
    # data.py reads image columns with this module at import, which `directpo --help` and every
    # refused option waited on: torch is imported by the functions that make tensors
    import torch

IMAGE_COLUMNS = ("images", "image")
# submodules that make up a vision tower (frozen by ``freeze_vision_tower``; no LoRA adapters)
VISION_TOWERS = ("vision_tower", "visual", "vision_model")
# and its projector (Idefics3's and SmolVLM's "connector"), which LoRA adapters leave alone too
VISION_PARTS = (*VISION_TOWERS, "multi_modal_projector", "connector")
# a processor's per-token outputs (Qwen2-VL's mm_token_type_ids; Gemma 3's token_type_ids, which
# make its image tokens see each other): they are laid out with the tokens, not the images
MM_TYPES = "mm_token_type_ids"
# from which a model makes its own attention mask: Gemma 3's image tokens see each other
OWN_MASK_TYPES = "token_type_ids"
TOKEN_TYPE_KEYS = (MM_TYPES, OWN_MASK_TYPES)
# per-token inputs with more dimensions than a token type: Mllama's cross_attention_mask
# [tokens, images, tiles] (which of its row's images a token's cross-attention layers read)
TOKEN_MASK_KEYS = ("cross_attention_mask",)
# a processor's training labels (PaliGemma's: -100 over a prompt given without a suffix) are no
# model input: passed on, the model took them for its own loss at the prompt's length and failed
NOT_INPUTS = ("labels",)


class ImageError(Exception):
    """An image that cannot be used: ``reason`` counts skips, ``message`` names the problem."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def placeholder_token_ids(config: Any) -> set[int]:
    """A model config's image, video and vision-boundary token ids (its ``*_token_id`` /
    ``*_token_index`` other than pad, BOS, EOS and decoder start): tokens that stand for an
    image's features, which no text may hold (the forward counts them as the image's)."""
    reserved = set()
    for key, value in vars(config).items() if config is not None else ():
        # (Idefics3 / SmolVLM keep their pad id as ``_pad_token_id``)
        plain = key.lstrip("_").startswith(("pad_", "bos_", "eos_", "decoder_start_"))
        if key.endswith(("_token_id", "_token_index")) and isinstance(value, int) and not plain:
            reserved.add(value)
    return reserved


def is_vision_config(config: Any) -> bool:
    """A vision-language model's config (it nests a vision tower's)."""
    return getattr(config, "vision_config", None) is not None


def image_values(value: Any, base_dir: str | None) -> tuple[Any, ...]:
    """The images of a row's ``images`` / ``image`` field, checked (files exist, no URLs).
    An image is a path, a PIL image, bytes, a base64 text or ``data:image/...;base64,`` URI
    (as transformers' ``load_image`` takes them), or ``datasets.Image``'s stored dict."""
    if isinstance(value, str):
        value = _listed_paths(value)
    items = value if isinstance(value, list | tuple) else [value]
    images = []
    for item in items:
        if isinstance(item, dict):  # datasets.Image as stored: {"bytes": ..., "path": ...}
            stored = item.get("bytes")
            if isinstance(stored, str) and stored:
                # its bytes as base64 text, as JSON holds them (score, rank and generate write a
                # Parquet file's images so): read as the image's path, the rerun was refused
                images.append(_base64_bytes(stored, stored))
                continue
            if stored:
                images.append(stored)
                continue
            item = item.get("path")
        if isinstance(item, str):
            images.append(_image_text(item, base_dir))
        elif isinstance(item, bytes | bytearray) and item:
            images.append(bytes(item))
        elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
            images.append(item)
        else:
            raise ImageError(
                "bad image",
                "an image must be a path, a PIL image, bytes or base64 text, got "
                f"{type(item).__name__}",
            )
    if not images:
        raise ImageError("bad image", "the images field is an empty list")
    return tuple(images)


def _listed_paths(text: str) -> str | list[str]:
    """A list of paths written as text, as a CSV holds a list column (``list_in_text``); any
    other text is one image."""
    value = list_in_text(text)
    if value and all(isinstance(v, str) for v in value):
        return value
    return text


# base64 text holds no path separators or spaces, and an image's is long; a short text is a name
BASE64_TEXT = re.compile(r"[A-Za-z0-9+/\n\r]{64,}={0,2}")


def _image_text(text: str, base_dir: str | None) -> str | bytes:
    """A path (checked to exist) or, for a data URI or base64 text, the image's bytes."""
    if text.startswith(("http://", "https://")):
        raise ImageError(
            "image URL",
            f"image {_shown(text)} is a URL; directpo does not download at training time: save "
            "the image and give its path",
        )
    path = text if os.path.isabs(text) or base_dir is None else os.path.join(base_dir, text)
    if os.path.isfile(path):
        return path
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if not header.endswith(";base64"):
            raise ImageError(
                "bad image", f"image {_shown(text)} is a data URI that is not base64-encoded"
            )
        return _base64_bytes(payload, text)
    if BASE64_TEXT.fullmatch(text):
        return _base64_bytes(text, text)
    # a path is shown whole (cut at 80 characters, a deep folder's file name was lost)
    raise ImageError(
        "missing image",
        f"image {_shown_path(text)} not found (looked at {_shown_path(os.path.abspath(path))})",
    )


def _base64_bytes(payload: str, text: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ImageError("bad image", f"image {_shown(text)} is not valid base64") from None


def _shown(text: str, limit: int = 80) -> str:
    """A text as messages show it: a base64 image is thousands of characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _shown_path(text: str) -> str:
    """A path as messages show it: whole up to 1024 characters (a deep folder's; cut at 80, its
    file name was lost), else data that is no path, cut as ``_shown`` cuts it."""
    return text if len(text) <= 1024 else _shown(text)


# where an image part carries its image ({"type": "image", "image": ...}; transformers' names)
IMAGE_PART_KEYS = ("image", "url", "path")


def inline_images(messages: Any) -> list[Any]:
    """The images that the image parts of a message list carry, in order."""
    if not isinstance(messages, list):
        return []
    return [
        next(part[key] for key in IMAGE_PART_KEYS if part.get(key) is not None)
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image"
        and any(part.get(key) is not None for key in IMAGE_PART_KEYS)
    ]  # fmt: skip


def image_key(image: Any) -> str:
    """An image as keys compare it: a path, a digest of its bytes (not a copy of them: an image
    is often megabytes), or the PIL object's identity."""
    if isinstance(image, str):
        return image
    if isinstance(image, bytes):
        return hashlib.blake2b(image, digest_size=16).hexdigest()
    return f"object {id(image)}"


def open_image(value: Any) -> Any:
    """A PIL RGB image from a path, bytes or a PIL image. A file is turned as its EXIF
    orientation says (a phone's photo is stored sideways), as ``datasets.Image`` decodes it for
    TRL and transformers' ``load_image`` reads it; a PIL image is taken as it is."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if isinstance(value, bytes):
            value = ImageOps.exif_transpose(Image.open(io.BytesIO(value)))
        elif isinstance(value, str):
            value = ImageOps.exif_transpose(Image.open(value))
        return _as_rgb(value)
    except Exception as exc:  # PIL raises several types for a broken or foreign file
        name = _shown_path(value) if isinstance(value, str) else "an image"
        # PIL's message names its BytesIO object, which tells a reader nothing
        detail = "not an image format PIL reads" if isinstance(exc, UnidentifiedImageError) else exc
        if isinstance(exc, Image.DecompressionBombError):  # said as an attack: a scan is no such
            detail = (
                f"{str(exc).split(', could be')[0]}, PIL's guard against decompression bombs; "
                "the processor shrinks every image to its own size: save it smaller"
            )
        raise ImageError("unreadable image", f"cannot read {name} ({detail})") from None


# PIL's modes of 16-bit grayscale (a PNG or TIFF of 16 bits; "I" where an older PIL opens one):
# PIL's convert("RGB") clips each value at 255, so such an image trained as a white one
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _as_rgb(image: Any) -> Any:
    """An image in RGB as the processor makes one: 16-bit values scaled to 8 bits (not clipped
    white), and transparent pixels laid on white as transformers' ``convert_to_rgb`` lays them
    (what TRL's processor does with the RGBA image ``datasets.Image`` decodes; PIL's
    ``convert("RGB")`` kept the colour hidden under them, often black)."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        import numpy as np

        raw = np.asarray(image).astype(np.uint32)
        # "I" holds 16-bit values only where one exceeds 8 bits; an 8-bit image in it is kept
        values = raw >> 8 if image.mode != "I" or raw.max(initial=0) > 255 else raw
        transparent = image.info.get("transparency")  # a PNG's tRNS value: 16-bit as raw is
        image = Image.fromarray(values.clip(0, 255).astype(np.uint8), "L")
        if isinstance(transparent, int):  # the new image has no tRNS: its pixels were kept dark
            image.putalpha(Image.fromarray(np.where(raw == transparent, 0, 255).astype(np.uint8)))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255)), rgba).convert(
            "RGB"
        )
    return image.convert("RGB")


@dataclass
class VisionInputs:
    """A prompt's image inputs, as its processor returned them."""

    tensors: dict[str, torch.Tensor]  # pixel_values (+ image_grid_thw, image_sizes, ...)
    token_types: dict[str, list[int]]  # the prompt's TOKEN_TYPE_KEYS outputs, by name
    digest: str  # of the pixels: part of the precomputed reference's cache key
    positions: torch.Tensor | None = None  # [3, prompt tokens] for 3D rotary models
    # the token type of a completion's tokens, by name, where it is not 0 (``suffix_types``)
    completion_types: dict[str, int] = field(default_factory=dict)
    # TOKEN_MASK_KEYS outputs, [prompt tokens, ...]: a completion's tokens take the last row
    token_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def prepend_token(self) -> None:
        """A token (BOS) put before the prompt: type 0, and no image to attend."""
        import torch

        self.token_types = {key: [0, *types] for key, types in self.token_types.items()}
        self.token_masks = {
            key: torch.cat([torch.zeros_like(mask[:1]), mask])
            for key, mask in self.token_masks.items()
        }


def encode_with_images(
    processor: Any, prompt_text: str, images: tuple[Any, ...], add_special_tokens: bool
) -> tuple[list[int], VisionInputs]:
    """Prompt ids with every image placeholder expanded, and the pixel tensors."""
    import torch

    opened = [open_image(image) for image in images]
    try:
        out = processor(
            text=[prompt_text], images=opened, return_tensors="pt",
            add_special_tokens=add_special_tokens,
        )  # fmt: skip
    except ValueError as exc:  # e.g. placeholders and images do not match in number
        raise ImageError("image tokens", str(exc).splitlines()[0]) from None
    ids = out.pop("input_ids")[0].tolist()
    for key in ("attention_mask", *NOT_INPUTS):
        out.pop(key, None)
    types = {key: out.pop(key)[0].tolist() for key in TOKEN_TYPE_KEYS if key in out}
    masks = {key: torch.as_tensor(out.pop(key))[0] for key in TOKEN_MASK_KEYS if key in out}
    tensors = {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}
    _refuse_per_token_inputs(processor, tensors, len(ids))
    _refuse_one_token_images(processor, tensors, opened)
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].detach().cpu().contiguous().numpy().tobytes())
    suffix = suffix_types(processor, types)
    return ids, VisionInputs(tensors, types, digest.hexdigest(), None, suffix, masks)


def suffix_types(processor: Any, types: dict[str, list[int]]) -> dict[str, int]:
    """The token type of a completion's tokens where a processor takes a ``suffix`` (the
    prefix-LM convention of PaliGemma: token_type_ids 0 mark the image and prompt, which see
    each other whole, 1 the suffix, which attends causally). Typed 0 as a prompt is, a
    completion's tokens saw the tokens after them: their log-probs were silently wrong."""
    return {OWN_MASK_TYPES: 1} if is_prefix_lm(processor) and OWN_MASK_TYPES in types else {}


def is_prefix_lm(processor: Any) -> bool:
    """A processor of the prefix-LM convention: it takes a ``suffix`` to train on."""
    try:
        return "suffix" in inspect.signature(processor.__call__).parameters
    except (TypeError, ValueError):  # a callable without a signature takes no suffix
        return False


def text_only_refusal(processor: Any) -> str | None:
    """Why a prompt without images cannot train with this processor's model, or None. A
    prefix-LM's (PaliGemma's) processor refuses such a prompt, and the model's forward without
    its token_type_ids attends both ways over every token: a completion saw its own future.
    A cross-attention model (Mllama) takes a batch's images one entry per row: a row without
    any has none, and the rows after it would read the wrong row's images."""
    if is_prefix_lm(processor):
        kind = "a prefix-LM: PaliGemma"
    elif set(TOKEN_MASK_KEYS) & set(getattr(processor, "model_input_names", ())):
        kind = "cross-attention image layers: Llama 3.2 Vision"
    else:
        return None
    return (
        f"the row has no images, and {type(processor).__name__}'s model ({kind}) takes every "
        "prompt with its images; give the row an image, or "
        f"{spell_setting(('skip_invalid_rows', True))} to drop such rows"
    )


def _refuse_per_token_inputs(processor: Any, tensors: dict[str, torch.Tensor], tokens: int) -> None:
    """A processor output laid out per prompt token with more dimensions than a token type,
    other than the TOKEN_MASK_KEYS laid out with the rows, would reach the model at the
    prompt's length, not the batch row's: the forward failed with a shape error deep in the
    model. Refused, naming the input."""
    for key, value in tensors.items():
        if key.startswith("pixel") or key in TOKEN_MASK_KEYS:
            continue
        if value.dim() >= 3 and value.shape[1] == tokens:
            raise ModelLoadError(
                f"{type(processor).__name__} returns {key} (one entry per prompt token and "
                "more), an input that directpo does not lay out: this model is not supported "
                "(see the README's table of vision-language models)"
            )


def _refuse_one_token_images(
    processor: Any, tensors: dict[str, torch.Tensor], images: list[Any]
) -> None:
    """Mistral 3's PixtralProcessor writes an image as large as one cell (patch_size x
    spatial_merge_size pixels on a side: 28 for Mistral Small 3.x) as one image token, and the
    model's forward of a batch whose images make one token fails ('split_with_sizes expects
    split_sizes to sum exactly to ...': transformers squeezes the token dimension away): the
    run stopped with that traceback mid-training. Such an image is the row's error."""
    merge = getattr(processor, "spatial_merge_size", 1) or 1
    sizes = tensors.get("image_sizes")
    if merge < 2 or getattr(processor, "image_break_token", None) is None or sizes is None:
        return
    cell = int(getattr(processor, "patch_size", 1)) * merge
    for (height, width), image in zip(sizes.tolist(), images, strict=False):
        if height // cell * (width // cell) == 1:
            raise ImageError(
                "image too small",
                f"an image of {image.size[0]}x{image.size[1]} pixels is one image token for "
                f"{type(processor).__name__} (cells of {cell} pixels), and the model's forward "
                f"fails on one image token; give it more than {cell} pixels on a side",
            )


# a processor's attributes that name a token standing for an image or video, or marking one
_VISION_NAMES = ("image", "img", "video", "vision", "boi", "eoi")


def vision_token_ids(processor: Any) -> dict[int, str]:
    """The tokenizer's added tokens that stand for or around an image or video (id -> token):
    those the processor names (``image_token``, ``video_token``, Mistral 3's
    ``image_break_token``, Gemma 3's ``boi_token``) and those its expansion of one image and of
    ``text_placeholder`` holds (Qwen-VL's ``<|vision_start|>``, Gemma 3's soft tokens). Text
    holding one is read by the model's forward as an image's (Image features and image tokens
    do not match), or opens an image that has none; BOS, EOS and pad are not among them."""
    tokenizer = processor.tokenizer
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    plain = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    found: set[int] = set()
    for key, value in vars(processor).items():
        if not key.endswith(("_token", "_token_id")) or not any(n in key for n in _VISION_NAMES):
            continue
        if isinstance(value, str):
            value = tokenizer.convert_tokens_to_ids(value)
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)
    placeholder = text_placeholder(processor)
    found.update(tokenizer(placeholder, add_special_tokens=False).input_ids)
    try:  # the tokens an image expands to (a 64-pixel image: more than one cell everywhere)
        from PIL import Image

        image = Image.new("RGB", (64, 64))
        found.update(processor(text=[placeholder], images=[image]).input_ids[0])
    except Exception:  # noqa: BLE001 - a processor that needs more: the named tokens
        pass
    ids = sorted(found & added - plain - {tokenizer.unk_token_id})
    return {i: str(tokenizer.convert_ids_to_tokens(i)) for i in ids}


def image_token(processor: Any) -> str:
    return str(getattr(processor, "image_token", None) or "<image>")


def text_placeholder(processor: Any) -> str:
    """What goes before a text prompt for each of its images: the image part as the
    processor's chat template writes it, whitespace aside (Qwen-VL's
    ``<|vision_start|><|image_pad|><|vision_end|>``: its bare ``<|image_pad|>`` trained the
    model on an image without the markers it always sees around one), else the image token."""
    token = image_token(processor)
    marks = ("\u2063directpo-before\u2063", "\u2063directpo-after\u2063")
    parts = [{"type": "text", "text": marks[0]}, {"type": "image"}]
    parts.append({"type": "text", "text": marks[1]})
    try:
        rendered = processor.apply_chat_template(
            [{"role": "user", "content": parts}], tokenize=False
        )
    except Exception:  # noqa: BLE001 - no template, or one of string contents: the bare token
        return token
    _, _, after_first = str(rendered).partition(marks[0])
    between, found, _ = after_first.partition(marks[1])
    between = between.strip()
    return between if found and between.count(token) == 1 else token


def with_image_parts(prompt: Any, count: int) -> Any:
    """A conversational prompt whose messages name no image gets ``count`` image parts at the
    start of its first user message (TRL's convention)."""
    named = (
        isinstance(m["content"], list) and any(part["type"] == "image" for part in m["content"])
        for m in prompt
    )
    if any(named):  # a system turn's text parts name no image
        return prompt
    first_user = next((i for i, m in enumerate(prompt) if m["role"] == "user"), 0)
    parts = [{"type": "image"} for _ in range(count)]
    message = prompt[first_user]
    content = message["content"]
    parts += content if isinstance(content, list) else [{"type": "text", "text": content}]
    return [*prompt[:first_user], {**message, "content": parts}, *prompt[first_user + 1 :]]


def batch_tensors(inputs: list[VisionInputs]) -> dict[str, torch.Tensor]:
    """The image tensors of a batch: each key's tensors concatenated in row order."""
    import torch

    if not inputs:
        return {}
    return {key: torch.cat(_padded([v.tensors[key] for v in inputs])) for key in inputs[0].tensors}


def _padded(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors zero-padded to one shape after their first dimension, as a processor pads the
    prompts it is given together: Idefics3's and LLaVA-NeXT's [1, tiles, ...] pixels differ in
    tiles with a row's image count and aspect ratio, and zero tiles are what those models skip
    (a zero pixel_attention_mask; the image_sizes' tile count)."""
    import torch

    shapes = {tuple(t.shape[1:]) for t in tensors}
    if len(shapes) == 1 or len({len(shape) for shape in shapes}) != 1:
        return tensors
    most = [max(sizes) for sizes in zip(*shapes, strict=True)]
    padded = []
    for tensor in tensors:
        pad: list[int] = []
        for size, target in zip(reversed(tensor.shape[1:]), reversed(most), strict=True):
            pad += [0, target - size]
        padded.append(torch.nn.functional.pad(tensor, pad))
    return padded


def rope_index_function(model: torch.nn.Module) -> Any:
    """The model's 3D rotary position function (Qwen2-VL style ``get_rope_index``), or None."""
    from directpo.logprobs import unwrap_peft

    inner = unwrap_peft(model)
    for candidate in (inner, getattr(inner, "model", None)):
        function = getattr(candidate, "get_rope_index", None)
        if function is not None:
            return function
    return None


def attach_rope_positions(model: torch.nn.Module, pairs: list[Any]) -> None:
    """Each image prompt's 3D rotary positions, from the model's own ``get_rope_index``."""
    import torch

    function = rope_index_function(model)
    if function is None:
        return
    for pair in pairs:
        vision = pair.vision
        if vision is None or vision.positions is not None:
            continue
        ids = torch.tensor([pair.prompt_ids])
        types = torch.tensor([vision.token_types.get(MM_TYPES) or [0] * len(pair.prompt_ids)])
        with torch.no_grad():
            positions, _ = function(
                ids, mm_token_type_ids=types, image_grid_thw=vision.tensors.get("image_grid_thw"),
                attention_mask=torch.ones_like(ids),
            )  # fmt: skip
        vision.positions = positions[:, 0].cpu()  # [3, prompt tokens]


def freeze_vision_tower(model: torch.nn.Module) -> int:
    """Freeze the vision tower's weights (the projector keeps training); how many froze."""
    frozen = 0
    for name, param in model.named_parameters():
        dotted = f".{name}"
        in_tower = any(f".{part}." in dotted for part in VISION_TOWERS)
        if in_tower and not _in_tower_projector(dotted) and param.requires_grad:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


# the projector a tower holds inside it: Qwen2-VL's / Qwen2.5-VL's / Qwen3-VL's PatchMerger
# ("visual.merger") and Qwen3-VL's deepstack mergers, which map patches into the language model
# as LLaVA's multi_modal_projector does (frozen with the tower, they never trained)
TOWER_PROJECTORS = ("merger", "deepstack_merger_list")


def _in_tower_projector(dotted_name: str) -> bool:
    return any(f".{part}." in dotted_name for part in TOWER_PROJECTORS)
