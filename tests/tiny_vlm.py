"""Tiny random vision-language models with offline processors (LLaVA, Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, Gemma 3, Idefics3 / SmolVLM, LLaVA-OneVision, PaliGemma, InternVL, Aya Vision and
Mllama styles).

The tokenizer is the tests' byte-level BPE with each architecture's image tokens; the image
processors are the PIL ones (no torchvision here). The Qwen-VL, LLaVA-OneVision and InternVL
processor classes require a video processor, which needs torchvision: the ``Tiny*Processor``
classes drop it and are registered with ``AutoProcessor`` so that the saved folders load back
(importing this module registers them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tiny import train_byte_level_bpe
from tokenizers import processors
from transformers import (
    AutoProcessor,
    AyaVisionConfig,
    AyaVisionForConditionalGeneration,
    AyaVisionProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    GotOcr2ImageProcessorPil,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessorPil,
    MllamaProcessor,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    SiglipImageProcessorPil,
)

CORPUS = [
    "The movie was wonderful and the acting was great.",
    "Question: What is in the picture? Answer: a red square on a blue background.",
    "Describe the image. It shows a cat sitting on a mat, bright and colourful.",
    "I hate this picture, a dull and blurry photo of nothing.",
    "hello world, this is a small corpus for a tiny tokenizer with numbers 0123456789",
] * 20


def _content(image: str) -> str:
    """A chat template that renders string contents and TRL-style content-part lists."""
    return (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image +
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )  # fmt: skip


LLAVA_TEMPLATE = "{{ bos_token }}" + _content("<image>\n")
QWEN_TEMPLATE = _content("<|vision_start|><|image_pad|><|vision_end|>")


def build_tokenizer(style: str) -> PreTrainedTokenizerFast:
    if style == "llava":
        specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<image>"]
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                    "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
    tok = train_byte_level_bpe(specials, CORPUS)
    if style == "llava":
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
            chat_template=LLAVA_TEMPLATE,
        )  # fmt: skip
    else:  # Qwen: no BOS, turns end with <|im_end|> (its EOS)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
            chat_template=QWEN_TEMPLATE,
        )  # fmt: skip
    fast.add_special_tokens({"additional_special_tokens": specials[1:]})
    return fast


class TinyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor without its (torchvision-only) video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: ANN001
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
            **kwargs,
        )  # fmt: skip


class TinyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 - the model's own spelling
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: ANN001
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
            **kwargs,
        )  # fmt: skip


class TinyQwen3VLProcessor(Qwen3VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: ANN001
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
            **kwargs,
        )  # fmt: skip


class TinyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
    """Its options named in the signature, which is what the saved processor_config.json keeps."""

    def __init__(  # noqa: ANN001, PLR0913
        self, image_processor=None, tokenizer=None, num_image_tokens=None,
        vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
        video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs,
    ):  # fmt: skip
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
            num_image_tokens=num_image_tokens, image_token=image_token, video_token=video_token,
            vision_feature_select_strategy=vision_feature_select_strategy,
            vision_aspect_ratio=vision_aspect_ratio, **kwargs,
        )  # fmt: skip


class TinyInternVLProcessor(InternVLProcessor):
    def __init__(  # noqa: ANN001
        self, image_processor=None, tokenizer=None, image_seq_length=256, chat_template=None,
        **kwargs,
    ):  # fmt: skip
        super().__init__(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
            image_seq_length=image_seq_length, **kwargs,
        )  # fmt: skip


for _config, _processor in (
    (Qwen2VLConfig, TinyQwen2VLProcessor),
    (Qwen2_5_VLConfig, TinyQwen2_5_VLProcessor),
    (Qwen3VLConfig, TinyQwen3VLProcessor),
    (LlavaOnevisionConfig, TinyLlavaOnevisionProcessor),
    (InternVLConfig, TinyInternVLProcessor),
):
    AutoProcessor.register(_config, _processor, exist_ok=True)


def build_vlm(style: str, seed: int = 0, image_size: int = 32) -> tuple[torch.nn.Module, object]:
    """(model, processor) of a tiny ``llava`` (CLIP image_size² images in 8x8 patches: 16 image
    tokens at 32), ``qwen2vl`` (56x56 images -> 4 merged image tokens, 3D rotary positions),
    ``gemma3`` (4 tokens an image, which see each other: the processor's token_type_ids),
    ``idefics3`` (an image is 1 to 5 tiles of 4 tokens, as its size and aspect ratio ask),
    ``qwen2_5vl`` / ``qwen3vl`` (as qwen2vl; windowed vision attention / deepstack features),
    ``onevision`` (LLaVA-OneVision: anyres tiles of 16 tokens, 32x32 to 64x64), ``paligemma``
    (16 tokens an image; the image and prompt see each other, a prefix-LM), ``internvl`` (1 to 4
    tiles of 4 tokens, as the image's aspect ratio asks), ``aya_vision`` (as internvl, a Cohere2
    language model), ``mllama``
    (Llama 3.2 Vision: cross-attention image layers, their gates opened), ``smolvlm`` (SmolVLM2)
    or ``mistral3`` (Mistral 3, a Pixtral tower: tiny_vlm_more.py)."""
    others = {"gemma3": _build_gemma3, "idefics3": _build_idefics3,
              "qwen2_5vl": _build_qwen2_5vl, "qwen3vl": _build_qwen3vl,
              "onevision": _build_onevision, "paligemma": _build_paligemma,
              "internvl": _build_internvl, "aya_vision": _build_aya_vision,
              "mllama": _build_mllama}  # fmt: skip
    if style in ("smolvlm", "mistral3"):  # tiny_vlm_more.py, which imports this module
        import tiny_vlm_more

        torch.manual_seed(seed)
        return getattr(tiny_vlm_more, f"build_{style}")()
    if style in others:
        torch.manual_seed(seed)
        return others[style]()
    tokenizer = build_tokenizer(style)
    torch.manual_seed(seed)
    if style == "llava":
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
            do_center_crop=True, do_resize=True,
        )  # fmt: skip
        processor = LlavaProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=LLAVA_TEMPLATE,
            patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
            image_token="<image>",
        )  # fmt: skip
        config = LlavaConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=image_size, patch_size=8, projection_dim=32,
            ),
            text_config=LlamaConfig(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=False,
            ),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=(image_size // 8) ** 2,
            vision_feature_select_strategy="default", vision_feature_layer=-1,
        )  # fmt: skip
        return LlavaForConditionalGeneration(config), processor
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, temporal_patch_size=2,
        merge_size=2,
    )  # fmt: skip
    processor = TinyQwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}  # fmt: skip
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]},
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    return Qwen2VLForConditionalGeneration(config), processor


def _template(turn: str, image: str, end: str, generation: str) -> str:
    """A chat template of TRL-style content parts; ``turn`` opens a message (``m`` in scope)."""
    return (
        "{% for m in messages %}" + turn + "{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image +
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}" + end +
        "{% endfor %}{% if add_generation_prompt %}" + generation + "{% endif %}"
    )  # fmt: skip


def _build_gemma3() -> tuple[torch.nn.Module, object]:
    specials = ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>",
                "<start_of_image>", "<end_of_image>", "<image_soft_token>"]  # fmt: skip
    tok = train_byte_level_bpe(specials, CORPUS)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 0)]
    )
    turn = "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    template = "{{ bos_token }}" + _template(
        turn, "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        chat_template=template, extra_special_tokens={"boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )  # fmt: skip
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer, chat_template=template, image_seq_length=4,
    )  # fmt: skip
    config = Gemma3Config(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
            sliding_window=512, bos_token_id=0, eos_token_id=1, pad_token_id=2,
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        mm_tokens_per_image=4, boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
        bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    return Gemma3ForConditionalGeneration(config), processor


def _build_idefics3(classes: tuple[type, ...] = (), extra: tuple[str, ...] = ()) -> tuple[
    torch.nn.Module, object
]:  # fmt: skip
    """An Idefics3, or with ``classes`` (image processor, processor, config, model) and
    ``extra`` special tokens a model of its design (SmolVLM2's, tiny_vlm_more.py)."""
    image_class, processor_class, config_class, model_class = classes or (
        Idefics3ImageProcessorPil, Idefics3Processor, Idefics3Config,
        Idefics3ForConditionalGeneration,
    )  # fmt: skip
    tiles = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>",
                "<fake_token_around_image>", "<image>", "<global-img>", *extra, *tiles]  # fmt: skip
    template = "<|im_start|>" + _template(
        "{{ m['role'] | capitalize }}:", "<image>", "<end_of_utterance>\n", "Assistant:"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(specials, CORPUS), bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", pad_token="<|endoftext|>", chat_template=template,
    )  # fmt: skip
    image_processor = image_class(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    processor = processor_class(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
        chat_template=template,
    )  # fmt: skip
    config = config_class(
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
            tie_word_embeddings=False,
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    return model_class(config), processor


def _qwen_vl(processor_class: type, config_class: type, model_class: type, vision: dict,
             rope: dict) -> tuple[torch.nn.Module, object]:  # fmt: skip
    """A Qwen2.5-VL / Qwen3-VL: 4 merged image tokens an image (a 4x4 grid of patches)."""
    tokenizer = build_tokenizer("qwen")
    patch = vision["patch_size"]
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=(4 * patch) ** 2, max_pixels=(4 * patch) ** 2, patch_size=patch,
        temporal_patch_size=2, merge_size=2,
    )  # fmt: skip
    processor = processor_class(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}  # fmt: skip
    config = config_class(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, **rope},
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64,
                           **vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    return model_class(config), processor


def _build_qwen2_5vl() -> tuple[torch.nn.Module, object]:
    return _qwen_vl(
        TinyQwen2_5_VLProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
        dict(patch_size=14, window_size=56, fullatt_block_indexes=[1]),
        {"mrope_section": [2, 3, 3]},
    )  # fmt: skip


def _build_qwen3vl() -> tuple[torch.nn.Module, object]:
    return _qwen_vl(
        TinyQwen3VLProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
        dict(patch_size=16, num_position_embeddings=16, deepstack_visual_indexes=[0]),
        {"mrope_section": [2, 3, 3], "mrope_interleaved": True},
    )  # fmt: skip


def _build_onevision() -> tuple[torch.nn.Module, object]:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    template = _template(
        "<|im_start|>{{ m['role'] }}\n", "<image>\n", "<|im_end|>\n", "<|im_start|>assistant\n"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(specials, CORPUS), eos_token="<|im_end|>",
        pad_token="<|endoftext|>", chat_template=template,
    )  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    grid = [[32, 32], [32, 64], [64, 32], [64, 64]]
    processor = TinyLlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(
            size={"height": 32, "width": 32}, image_grid_pinpoints=grid
        ),
        tokenizer=tokenizer, chat_template=template, num_image_tokens=16,
        vision_feature_select_strategy="full",
    )  # fmt: skip
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, image_size=32,
                           patch_size=8),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), image_grid_pinpoints=grid,
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )  # fmt: skip
    return LlavaOnevisionForConditionalGeneration(config), processor


def _build_paligemma() -> tuple[torch.nn.Module, object]:
    """No chat template (PaliGemma's prompts are text): its processor writes an image's tokens,
    then BOS, the prompt and a newline; token_type_ids 0 mark that bidirectional prefix."""
    tok = train_byte_level_bpe(["<bos>", "<eos>", "<pad>", "<image>"], CORPUS)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 0)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = PaliGemmaConfig(
        text_config=dict(
            model_type="gemma", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            max_position_embeddings=512, bos_token_id=0, eos_token_id=1, pad_token_id=2,
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8,
                           projection_dim=32),
        projection_dim=32, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip
    return PaliGemmaForConditionalGeneration(config), processor


def _build_internvl() -> tuple[torch.nn.Module, object]:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                "<IMG_CONTEXT>", "<video>"]  # fmt: skip
    template = _template(
        "<|im_start|>{{ m['role'] }}\n", "<IMG_CONTEXT>\n", "<|im_end|>\n",
        "<|im_start|>assistant\n",
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(specials, CORPUS), eos_token="<|im_end|>",
        pad_token="<|endoftext|>", chat_template=template,
        extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
    )  # fmt: skip
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    processor = TinyInternVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4,
        chat_template=template,
    )  # fmt: skip
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=[32, 32], patch_size=[8, 8]),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4,
        downsample_ratio=0.5,
    )  # fmt: skip
    return InternVLForConditionalGeneration(config), processor


def _build_aya_vision() -> tuple[torch.nn.Module, object]:
    specials = ["<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<PAD>", "<|START_OF_TURN_TOKEN|>",
                "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<image>", "<|START_OF_IMG|>",
                "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>"]  # fmt: skip
    tok = train_byte_level_bpe(specials, CORPUS)
    tok.post_processor = processors.TemplateProcessing(
        single="<BOS_TOKEN> $A", pair="<BOS_TOKEN> $A $B", special_tokens=[("<BOS_TOKEN>", 0)]
    )
    role = "{{ '<|USER_TOKEN|>' if m['role'] == 'user' else '<|CHATBOT_TOKEN|>' }}"
    template = "{{ bos_token }}" + _template(
        "<|START_OF_TURN_TOKEN|>" + role, "<image>", "<|END_OF_TURN_TOKEN|>",
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<BOS_TOKEN>", eos_token="<|END_OF_TURN_TOKEN|>",
        pad_token="<PAD>", chat_template=template,
    )  # fmt: skip
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    processor = AyaVisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8, img_size=32,
        downsample_factor=2, chat_template=template,
    )  # fmt: skip
    config = AyaVisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, image_size=32,
                           patch_size=8),
        text_config=dict(model_type="cohere2", vocab_size=len(tokenizer), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024, sliding_window=512,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2),
        image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"), downsample_factor=2,
    )  # fmt: skip
    return AyaVisionForConditionalGeneration(config), processor


def _build_mllama() -> tuple[torch.nn.Module, object]:
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|image|>",
                "<|python_tag|>"]  # fmt: skip
    tok = train_byte_level_bpe(specials, CORPUS)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", 0)],
    )  # fmt: skip
    template = "{{ bos_token }}" + _template(
        "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n", "<|image|>", "<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>", chat_template=template,
    )  # fmt: skip
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer, chat_template=template,
    )  # fmt: skip
    config = MllamaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_global_layers=1, attention_heads=4, image_size=32, patch_size=8,
                           intermediate_layers_indices=[0], vision_output_dim=64),
        text_config=dict(vocab_size=len(tokenizer) + 8, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         cross_attention_layers=[1], max_position_embeddings=512,
                         bos_token_id=0, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )  # fmt: skip
    model = MllamaForConditionalGeneration(config)
    with torch.no_grad():  # its cross-attention gates start at 0: the images would change nothing
        for name, param in model.named_parameters():
            if "gate" in name:
                param.fill_(1.0)
    return model, processor


def save_tiny_vlm(style: str, folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    model, processor = build_vlm(style, seed, image_size)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_image(
    path: Path | None = None, seed: int = 0, size: int = 40, height: int | None = None
) -> Image.Image:
    """A random RGB image, ``size`` wide and ``height`` (or ``size``) high (saved to ``path``
    when given)."""
    rng = np.random.default_rng(seed)
    shape = (height or size, size, 3)
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "RGB")
    if path is not None:
        image.save(path)
    return image
