"""``PairTokenizer``'s rows with images: the processor expands each image placeholder into the
image's tokens; a prompt with images is never truncated (that would cut an image). Functions of
the encoder they take (its tokenizer, processor, limits and id methods), which calls them."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from directpo.messages import Text, others_turn
from directpo.pair_store import TokenizedPair
from directpo.preference_pairs import PreferenceExample
from directpo.readers import RowError
from directpo.turn_masks import images_and_turns
from directpo.vision import (
    ImageError,
    VisionInputs,
    encode_with_images,
    image_token,
    text_placeholder,
)

if TYPE_CHECKING:
    from directpo.tokenization import PairTokenizer


def encode_image_pair(
    encoder: PairTokenizer, example: PreferenceExample, truncated: Counter[str]
) -> TokenizedPair:
    """A pair whose prompt has images: the processor expands each image placeholder into the
    image's tokens. Such a prompt is never truncated (that would cut an image)."""
    prompt = name_images(encoder.processor, example.prompt, example.images)
    if encoder.assistant_only and (others_turn(example.chosen) or others_turn(example.rejected)):
        raise RowError("assistant_only_loss with images", images_and_turns())
    args = example.template_args
    prompt_text, chosen_text = encoder.renderer.render(prompt, example.chosen, args)
    _, rejected_text = encoder.renderer.render(prompt, example.rejected, args, prompt_text)
    ids, vision = image_prompt_ids(encoder, prompt_text, example.images)
    _, (chosen, rejected) = encoder.after(prompt_text, [chosen_text, rejected_text])
    encoder.refuse_vision(chosen, "chosen")
    encoder.refuse_vision(rejected, "rejected")
    whole = chosen, rejected
    limits = encoder.limits
    chosen = limits.truncate_completion(chosen, len(ids), "chosen", truncated)
    rejected = limits.truncate_completion(rejected, len(ids), "rejected", truncated)
    limits.require_distinct(len(ids), whole, (chosen, rejected))
    return TokenizedPair(ids, chosen, rejected, vision)


def name_images(processor: Any, prompt: Text, images: tuple[Any, ...]) -> Text:
    """A text prompt that names none of its images with a placeholder for each before its
    text; a conversation (or a text naming them) as it is. Refused without a processor."""
    if processor is None:
        raise RowError(
            "images without a vision model",
            "the row has images but the model has no image processor (not a vision-language "
            "model); remove the images column or use a vision-language model",
        )
    if isinstance(prompt, str) and image_token(processor) not in prompt:  # it names them
        return text_placeholder(processor) * len(images) + prompt
    return prompt


def image_prompt_ids(
    encoder: PairTokenizer, prompt_text: str, images: tuple[Any, ...]
) -> tuple[list[int], VisionInputs]:
    """A rendered prompt's ids with its images' tokens (BOS rule applied), never truncated."""
    if encoder.vision is not None:
        encoder.vision.refuse_beyond_images(encoder.ids(prompt_text), len(images))
    try:
        ids, vision = encode_with_images(
            encoder.processor, prompt_text, images, add_special_tokens=False
        )
    except ImageError as err:
        raise RowError(err.reason, err.message) from None
    if encoder.adds_bos and ids[:1] != [encoder.bos_id]:
        ids = [encoder.bos_id, *ids]
        vision.prepend_token()
    limits = encoder.limits
    if len(ids) > limits.max_prompt_length:
        raise RowError(
            "prompt too long",
            f"the prompt with its image tokens has {len(ids)} tokens, more than "
            f"{limits.prompt_limit} allows; raise it (a prompt with images is not truncated: "
            "that would cut an image)",
        )
    return ids, vision
