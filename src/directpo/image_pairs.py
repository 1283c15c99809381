"""``PairTokenizer``'s rows with images: the processor expands each image placeholder into the
image's tokens; a prompt with images is never truncated (that would cut an image)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from directpo.chat_render import ChatRenderer
from directpo.messages import Text, others_turn
from directpo.pair_store import TokenizedPair
from directpo.pair_truncation import PairTruncation
from directpo.preference_pairs import PreferenceExample
from directpo.readers import RowError
from directpo.special_text import VisionTokens
from directpo.turn_masks import IMAGES_AND_TURNS
from directpo.vision import (
    ImageError,
    VisionInputs,
    encode_with_images,
    image_token,
    text_placeholder,
)


class ImagePairs(PairTruncation):
    """The image methods of ``PairTokenizer``, which holds the tokenizer, its processor and
    the id methods they call (``ids``, ``after``, ``refuse_vision``)."""

    processor: Any
    renderer: ChatRenderer
    vision: VisionTokens | None
    assistant_only: bool
    prompt_limit: str

    def encode_with_images(
        self, example: PreferenceExample, truncated: Counter[str]
    ) -> TokenizedPair:
        """A pair whose prompt has images: the processor expands each image placeholder into
        the image's tokens. Such a prompt is never truncated (that would cut an image)."""
        prompt = self.name_images(example.prompt, example.images)
        if self.assistant_only and (others_turn(example.chosen) or others_turn(example.rejected)):
            raise RowError("assistant_only_loss with images", IMAGES_AND_TURNS)
        args = example.template_args
        prompt_text, chosen_text = self.renderer.render(prompt, example.chosen, args)
        _, rejected_text = self.renderer.render(prompt, example.rejected, args, prompt_text)
        ids, vision = self.image_prompt_ids(prompt_text, example.images)
        _, (chosen, rejected) = self.after(prompt_text, [chosen_text, rejected_text])
        self.refuse_vision(chosen, "chosen")
        self.refuse_vision(rejected, "rejected")
        whole = chosen, rejected
        chosen = self.truncate_completion(chosen, len(ids), "chosen", truncated)
        rejected = self.truncate_completion(rejected, len(ids), "rejected", truncated)
        self.require_distinct(len(ids), whole, (chosen, rejected))
        return TokenizedPair(ids, chosen, rejected, vision)

    def name_images(self, prompt: Text, images: tuple[Any, ...]) -> Text:
        if self.processor is None:
            raise RowError(
                "images without a vision model",
                "the row has images but the model has no image processor (not a vision-language "
                "model); remove the images column or use a vision-language model",
            )
        if isinstance(prompt, str) and image_token(self.processor) not in prompt:  # it names them
            return text_placeholder(self.processor) * len(images) + prompt
        return prompt

    def image_prompt_ids(
        self, prompt_text: str, images: tuple[Any, ...]
    ) -> tuple[list[int], VisionInputs]:
        """A rendered prompt's ids with its images' tokens (BOS rule applied), never truncated."""
        if self.vision is not None:
            self.vision.refuse_beyond_images(self.ids(prompt_text), len(images))
        try:
            ids, vision = encode_with_images(
                self.processor, prompt_text, images, add_special_tokens=False
            )
        except ImageError as err:
            raise RowError(err.reason, err.message) from None
        if self.adds_bos and ids[:1] != [self.bos_id]:
            ids = [self.bos_id, *ids]
            vision.prepend_token()
        if len(ids) > self.max_prompt_length:
            raise RowError(
                "prompt too long",
                f"the prompt with its image tokens has {len(ids)} tokens, more than "
                f"{self.prompt_limit} allows; raise it (a prompt with images is not truncated: "
                "that would cut an image)",
            )
        return ids, vision

    def encode_image_prompt(
        self, prompt: Text, images: tuple[Any, ...], template_args: dict[str, Any] | None = None
    ) -> tuple[list[int], VisionInputs]:
        """A prompt with images, rendered as for sampling (the generation prompt)."""
        text = self.renderer.render_prompt(self.name_images(prompt, images), template_args)
        return self.image_prompt_ids(text, images)
