"""Tiny random SmolVLM2 (its own ``smolvlm`` architecture) and Mistral 3 (Pixtral tower) models
with offline processors; ``tiny_vlm.build_vlm`` builds them by name (``smolvlm``,
``mistral3``).

SmolVLM's processor requires a video processor (torchvision): ``TinySmolVLMProcessor`` drops it.
Transformers exports ``PixtralProcessor`` as a placeholder without torchvision, and its module
imports the torchvision image processor's for one helper: the tests point that module at the
PIL one, and ``TinyPixtralProcessor`` subclasses the class from its module. Both are
registered with ``AutoProcessor``.
"""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import torch
from tiny import train_byte_level_bpe
from tokenizers import processors
from transformers import (
    AutoProcessor,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PixtralImageProcessorPil,
    PreTrainedTokenizerFast,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMProcessor,
)
from transformers.models.pixtral import image_processing_pil_pixtral

# transformers' processing_pixtral imports its torchvision image processor's module for one
# helper, which the PIL module defines too: the tests (no torchvision) read that one instead
if importlib.util.find_spec("torchvision") is None:
    sys.modules.setdefault(
        "transformers.models.pixtral.image_processing_pixtral", image_processing_pil_pixtral
    )
from transformers.models.pixtral.processing_pixtral import PixtralProcessor  # noqa: E402


class TinySmolVLMProcessor(SmolVLMProcessor):
    """SmolVLMProcessor without its (torchvision-only) video processor (a processor's parts are
    the parameters its __init__ names)."""

    # what its apply_chat_template reads of the video processor (the defaults of SmolVLM2's)
    video_processor = SimpleNamespace(num_frames=64, fps=1)

    def __init__(  # noqa: ANN001
        self, image_processor=None, tokenizer=None, image_seq_len=169, chat_template=None,
        **kwargs,
    ):  # fmt: skip
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
            image_seq_len=image_seq_len, chat_template=chat_template, **kwargs,
        )  # fmt: skip


class TinyPixtralProcessor(PixtralProcessor):
    """PixtralProcessor as its module defines it (transformers' export is a placeholder)."""

    def __init__(  # noqa: ANN001, PLR0913
        self, image_processor=None, tokenizer=None, patch_size=16, spatial_merge_size=1,
        chat_template=None, image_token="[IMG]", image_break_token="[IMG_BREAK]",
        image_end_token="[IMG_END]", **kwargs,
    ):  # fmt: skip
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
            spatial_merge_size=spatial_merge_size, chat_template=chat_template,
            image_token=image_token, image_break_token=image_break_token,
            image_end_token=image_end_token, **kwargs,
        )  # fmt: skip


AutoProcessor.register(SmolVLMConfig, TinySmolVLMProcessor, exist_ok=True)
AutoProcessor.register(Mistral3Config, TinyPixtralProcessor, exist_ok=True)


def build_smolvlm() -> tuple[torch.nn.Module, object]:
    """SmolVLM2: an image is 1 to 5 tiles of 4 tokens (Idefics3's design), a llama language
    model; its tokenizer knows <video>."""
    from tiny_vlm import _build_idefics3

    classes = (SmolVLMImageProcessorPil, TinySmolVLMProcessor, SmolVLMConfig,
               SmolVLMForConditionalGeneration)  # fmt: skip
    return _build_idefics3(classes, ("<video>",))


def build_mistral3() -> tuple[torch.nn.Module, object]:
    """Mistral 3 (Mistral Small 3.x vision): an image keeps its aspect ratio (longest edge 64,
    cut to 16-pixel cells: a token each after the 2x2 patch merger), its rows of [IMG] tokens
    each closed by [IMG_BREAK], the last by [IMG_END]."""
    from tiny_vlm import CORPUS, _template

    specials = ["<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    tok = train_byte_level_bpe(specials, CORPUS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 0)]
    )
    template = "{{ bos_token }}" + _template(
        "{{ '[INST]' if m['role'] == 'user' else '' }}", "[IMG]",
        "{{ '[/INST]' if m['role'] == 'user' else '</s>' }}", "",
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        chat_template=template,
    )  # fmt: skip
    processor = TinyPixtralProcessor(
        image_processor=PixtralImageProcessorPil(
            size={"longest_edge": 64}, patch_size={"height": 16, "width": 16}
        ),
        tokenizer=tokenizer, patch_size=8, spatial_merge_size=2, chat_template=template,
    )  # fmt: skip
    config = Mistral3Config(
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, image_size=64,
                           patch_size=8, head_dim=8),
        text_config=dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2, sliding_window=None),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2,
        vision_feature_layer=-1, multimodal_projector_bias=False,
    )  # fmt: skip
    return Mistral3ForConditionalGeneration(config), processor
