"""Validated examples -> token ids with an exact prompt/completion boundary.

Rules (the same for training, evaluation and scoring):

* The boundary is exact: no token straddles prompt and completion. A completion is tokenized
  as it follows its prompt (the tail of prompt + completion tokenized together, as TRL does)
  when that leaves the prompt's own tokens unchanged, as the model reads and generates the text;
  else, where a token would cross the boundary, on its own. (Alone, a SentencePiece-style
  tokenizer's completion " Paris" would start with a lone "▁" the model never produces.) The
  tokenizer reads each prompt once where the same ids provably follow (prompt_windows.py).
* Conversational rows are first rendered as text with the chat template (chat_render.py).
* **BOS exactly once**: it is prepended only if the tokenizer adds one by default (Llama-style)
  and the rendered prompt does not already start with it (templates that write their own).
  Tokenizers that add none (GPT-2 style) get none.
* **A completion ends at the token that stops generation** (stops.py): EOS, or an end-of-turn
  the model's generation config lists (Llama 3's ``<|eot_id|>``, Gemma's ``<end_of_turn>``,
  Phi-3's ``<|end|>``), with nothing after it: whitespace or an EOS a chat template writes after
  the last turn (``"</s>\n"``, ``"<|end|>\n<|endoftext|>"``) is never sampled. A completion not
  ending with a stop token gets EOS appended (text rows; ChatML's ``<|im_end|>`` when the model
  stops only at another EOS).
* **Truncation**: a prompt longer than ``max_prompt_length`` (default: ``max_length`` − 1, so
  that a completion keeps a token) loses tokens from the left (a leading BOS is kept); then each
  completion is cut from the right to ``max_completion_length`` and to fit ``max_length``.
  ``None`` means no limit. The number of truncated rows is reported.

Where the code is: ``PairTokenizer`` and ``tokenize_preferences`` here; the truncation rules in
pair_truncation.py (``PairLimits``, the ``limits`` a ``PairTokenizer`` holds); rows with images
in image_pairs.py (functions of the ``PairTokenizer`` that calls them); the result,
``TokenizedData``, in tokenized_data.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from directpo.chat_render import ChatRenderer
from directpo.errors import DataError
from directpo.fast_encoding import direct_backend, gives_the_calls_ids
from directpo.image_pairs import encode_image_pair, image_prompt_ids, name_images
from directpo.messages import Text, others_turn
from directpo.pair_store import PairStoreBuilder, Spans, TokenizedPair
from directpo.pair_truncation import PairLimits
from directpo.parallel_tokenizing import encoded_batches
from directpo.preference_pairs import PreferenceData, PreferenceExample
from directpo.prompt_windows import cuts_after_newlines, joint_ids
from directpo.readers import RowError
from directpo.refusals import RefusedRows, skip_hint
from directpo.special_text import (
    VisionTokens,
    count_special_text,
    keep_first_rows,
    row_texts,
    special_pattern,
)
from directpo.stops import end_at_stop
from directpo.tokenized_data import TokenizedData
from directpo.turn_masks import completion_spans, images_and_turns, kept_spans
from directpo.vision import (
    VisionInputs,
    image_token,
    text_placeholder,
    vision_token_ids,
)

# Raised whenever a change of these rules gives existing data other ids: a checkpoint records
# it, and a resume whose pairs differ says that directpo, not the data, changed; what each
# number changed: sources.RULE_CHANGES.
TOKENIZATION_RULES = 3


class PairTokenizer:
    """Applies the boundary, BOS/EOS and truncation rules above with one tokenizer (the
    truncation rules: its ``limits``, pair_truncation.py; rows with images: image_pairs.py)."""

    def __init__(
        self,
        tokenizer: Any,
        max_length: int | None,
        max_prompt_length: int | None = None,
        max_completion_length: int | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        processor: Any = None,
        stop_ids: Iterable[int] = (),
        assistant_only: bool = False,
    ):
        self.tokenizer = tokenizer
        self.direct = gives_the_calls_ids(tokenizer)  # (fast_encoding.py)
        # assistant_only_loss: the tokens of a completion's messages the model does not write
        # are left unscored (turn_masks.py)
        self.assistant_only = assistant_only
        self.processor = processor  # a vision-language model's: prompts with images
        self.renderer = ChatRenderer(tokenizer, processor, chat_template_kwargs)
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        # the tokens that stop generation (stops.py): EOS and the model's configured end-of-turn
        self.stops = {self.eos_id, *stop_ids} - {None}
        # as text, where a reply ends in a rendering (assistant_only_loss, turn_masks.py)
        stops = sorted(self.stops) if assistant_only else []
        self.stop_texts = [tokenizer.decode([stop]) for stop in stops]
        self._blank: dict[int, bool] = {}
        probe = tokenizer("a").input_ids
        self.adds_bos = self.bos_id is not None and probe[:1] == [self.bos_id]
        self.limits = PairLimits.of(
            max_length, max_prompt_length, max_completion_length,
            self.bos_id if self.adds_bos else None,
        )  # fmt: skip
        # each prompt read once, each completion after its last line (prompt_windows.py)
        self.windowed = cuts_after_newlines(tokenizer)
        # a vision model's image token in a prompt without images: a placeholder with no pixels
        self.image_token_id = None
        self.vision: VisionTokens | None = None  # its tokens no text may hold (special_text.py)
        if processor is not None:
            token_id = tokenizer.convert_tokens_to_ids(image_token(processor))
            self.image_token_id = None if token_id == tokenizer.unk_token_id else token_id
            marks = tuple(self.ids(text_placeholder(processor)))
            self.vision = VisionTokens(
                vision_token_ids(processor), type(processor).__name__, self.image_token_id,
                image_token(processor), marks,
            )  # fmt: skip
        self.specials = special_pattern(tokenizer, self.vision)  # the others: counted

    def prompt_ids(
        self,
        prompt: Text,
        template_args: dict[str, Any] | None = None,
        truncated: Counter[str] | None = None,
    ) -> list[int]:
        """Prompt ids for generation or scoring: rendered (with a row's own ``template_args``),
        BOS rule, left-truncated (counted in ``truncated``)."""
        text = self.renderer.render_prompt(prompt, template_args)
        return self.limits.truncate_prompt(
            self.encode_prompt(text), truncated if truncated is not None else Counter()
        )

    def prompt_ids_many(
        self, prompts: Sequence[tuple[Text, dict[str, Any] | None]]
    ) -> list[list[int] | RowError]:
        """``prompt_ids`` of each (prompt, template arguments), or the RowError refusing it,
        the rendered prompts tokenized in one call (generate's check of a file's prompts)."""
        results: list[Any] = [None] * len(prompts)
        texts: dict[int, str] = {}
        for index, (prompt, template_args) in enumerate(prompts):
            try:
                texts[index] = self.renderer.render_prompt(prompt, template_args)
            except RowError as err:
                results[index] = err
        for index, ids in zip(texts, self._ids_many(list(texts.values())), strict=True):
            try:
                results[index] = self.limits.truncate_prompt(self._with_bos(ids), Counter())
            except RowError as err:
                results[index] = err
        return results

    def encode_image_prompt(
        self, prompt: Text, images: tuple[Any, ...], template_args: dict[str, Any] | None = None
    ) -> tuple[list[int], VisionInputs]:
        """A prompt with images, rendered as for sampling (the generation prompt)."""
        named = name_images(self.processor, prompt, images)
        text = self.renderer.render_prompt(named, template_args)
        return image_prompt_ids(self, text, images)

    # -- ids -----------------------------------------------------------------------------------
    def encode_prompt(self, prompt_text: str) -> list[int]:
        return self._with_bos(self.ids(prompt_text))

    def _with_bos(self, ids: list[int]) -> list[int]:
        """A text prompt's ids (a prompt without images) with the BOS rule applied."""
        if self.image_token_id is not None and self.image_token_id in ids:
            raise RowError(
                "image placeholder without an image",
                f"the prompt has {ids.count(self.image_token_id)} image placeholder(s) "
                f"({image_token(self.processor)} or image parts) but the row has no images; add "
                "them (an images column, or the image parts' 'image' key) or remove the "
                "placeholders",
            )
        self.refuse_vision(ids, "prompt")
        if self.adds_bos and ids[:1] != [self.bos_id]:
            ids = [self.bos_id, *ids]
        if not ids:
            raise RowError(
                "empty prompt",
                "the prompt is empty and the tokenizer adds no BOS token to condition on",
            )
        return ids

    def encode_completion(self, completion_text: str) -> list[int]:
        """A completion's ids on its own, EOS-terminated."""
        return self._with_eos(self.ids(completion_text))

    def after(
        self, prompt_text: str, completion_texts: list[str]
    ) -> tuple[list[int], list[list[int]]]:
        """The prompt's raw ids and each completion's ids as they follow it (EOS-terminated),
        from one tokenizer call."""
        ((head, joints),) = self._joints([(prompt_text, completion_texts)])
        ((*tails,),) = self._tails([(head, joints, completion_texts)])
        return head, [self._with_eos(tail) for tail in tails]

    def _tails(
        self, rows: Sequence[tuple[list[int], Sequence[list[int]], Sequence[str]]]
    ) -> list[list[list[int]]]:
        """For each (prompt ids ``head``, ``joints``, completion texts): each completion's ids
        in its joint (``head`` + its own), when the prompt's tokens came out unchanged there;
        else the completion tokenized on its own (a token would straddle the boundary). A
        SentencePiece-style tokenizer (Llama 2, Mistral v0.1) marks the start of a text: alone,
        " Paris" would become "▁" + "▁Paris", a token pair the model never produces after
        "Answer:". The completions read alone are tokenized together, in one call (a call each
        was a tenth of the calls, and of the time, on text rows whose completions start without
        a space: the prompt's last word and the completion's first merge)."""
        tails: list[list[Any]] = [
            [joint[len(head) :] if _follows(head, joint) else None for joint in joints]
            for head, joints, _ in rows
        ]
        alone = [
            (row, n) for row, ids in enumerate(tails) for n, tail in enumerate(ids) if tail is None
        ]
        if alone:  # (no call at all where none is)
            redone = self._ids_many([rows[row][2][n] for row, n in alone])
            for (row, n), ids in zip(alone, redone, strict=True):
                tails[row][n] = ids
        return tails

    def refuse_vision(self, ids: list[int], column: str) -> None:
        if self.vision is not None:
            self.vision.refuse(ids, column)

    def _with_eos(self, ids: list[int]) -> list[int]:
        """The completion up to the stop token that ends it, else with EOS appended."""
        ids = end_at_stop(ids, self.stops, self._is_blank)
        if self.eos_id is not None and not (ids and ids[-1] in self.stops):
            ids.append(self.eos_id)
        if not ids:
            raise RowError("empty completion", "a completion tokenizes to no tokens")
        return ids

    def _is_blank(self, token_id: int) -> bool:
        if token_id not in self._blank:
            self._blank[token_id] = not self.tokenizer.decode([token_id]).strip()
        return self._blank[token_id]

    def ids(self, text: str) -> list[int]:
        return self._ids_many([text])[0]

    def _joints(
        self, rows: list[tuple[str, Sequence[str]]]
    ) -> list[tuple[list[int], list[list[int]]]]:
        """Each (prompt, completions)'s prompt ids and the ids of prompt + completion, each
        tokenized whole (each prompt read once where that is exact: prompt_windows.py)."""
        return joint_ids(rows, self._ids_many, self.windowed)

    def _ids_many(self, texts: list[str]) -> list[list[int]]:
        # one call for many texts: a fast tokenizer encodes a batch on all cores, in Rust
        if not texts:
            return []
        backend = direct_backend(self.tokenizer) if self.direct else None
        if backend is not None:
            return [encoding.ids for encoding in backend(texts, add_special_tokens=False)]
        # (lists while a batch is worked on; a file's pairs are held in a PairStore)
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]

    # -- whole examples ------------------------------------------------------------------------
    def encode(self, example: PreferenceExample, truncated: Counter[str]) -> TokenizedPair:
        result = self.encode_many([example], truncated)[0]
        if isinstance(result, RowError):
            raise result
        return result

    def encode_many(
        self, examples: list[PreferenceExample], truncated: Counter[str]
    ) -> list[TokenizedPair | RowError]:
        """Each example's pair, or the RowError that refuses it, in order. The texts of all the
        examples are tokenized in one batch: each prompt, and each completion after it."""
        rendered = [self.renderer.render_pair(example) for example in examples]
        pairs = [item for item in rendered if isinstance(item, tuple)]
        texts = [(item[0], [c for c in item[1:] if isinstance(c, str)]) for item in pairs]
        joints = self._joints(texts)
        tails = iter(
            self._tails(
                [(head, ends, text[1]) for (head, ends), text in zip(joints, texts, strict=True)]
            )
        )
        heads = iter([head for head, _ in joints])
        results: list[TokenizedPair | RowError] = []
        for example, item in zip(examples, rendered, strict=True):
            # a refused row's cuts are not counted: the summary and the warning on completions
            # cut short are about the pairs that train
            cuts: Counter[str] = Counter()
            texts = row_texts(example.prompt, example.chosen, example.rejected)
            count_special_text(texts, self.specials, cuts, example.where)
            try:
                if item is None:
                    results.append(encode_image_pair(self, example, cuts))
                elif isinstance(item, RowError):
                    results.append(item)
                else:
                    prompt_ids, (chosen_ids, *rejected_tail) = next(heads), next(tails)
                    rejected_ids = item[2] if isinstance(item[2], RowError) else rejected_tail[0]
                    self.refuse_vision(chosen_ids, "chosen")
                    if not isinstance(rejected_ids, RowError):
                        self.refuse_vision(rejected_ids, "rejected")
                    chosen_spans, rejected_spans = self._unscored(
                        example.prompt, (example.chosen, example.rejected),
                        example.template_args, item, prompt_ids, (chosen_ids, rejected_ids),
                    )  # fmt: skip
                    unscored = chosen_spans, rejected_spans
                    results.append(self._pair(prompt_ids, chosen_ids, rejected_ids, cuts, unscored))
                truncated.update(cuts)
                keep_first_rows(truncated)  # (the first rows with special tokens alone)
            except RowError as err:
                results.append(err)
        return results

    def _unscored(
        self,
        prompt: Text,
        completions: Sequence[Text],
        template_args: dict[str, Any] | None,
        texts: Sequence[str | RowError],
        head: list[int],
        raws: Sequence[list[int] | RowError],
    ) -> list[Spans]:
        """Each completion's token spans of messages the model does not write, when
        ``assistant_only`` (spans of its raw ids, before EOS and truncation; turn_masks.py)."""
        if not self.assistant_only:
            return [()] * len(completions)
        render = partial(self.renderer.template, row_args=template_args)
        return completion_spans(
            render, self._ids_many, prompt, completions, texts, head, raws, self.stop_texts
        )

    def _pair(
        self,
        prompt_ids: list[int],
        chosen_ids: list[int],
        rejected_ids: list[int] | RowError,
        truncated: Counter[str],
        unscored: tuple[Spans, Spans] = ((), ()),
    ) -> TokenizedPair:
        """The BOS, EOS and truncation rules applied to a pair's raw ids (``unscored``: spans
        of them, ``_unscored``)."""
        raw_lengths = len(chosen_ids), len(rejected_ids) if isinstance(rejected_ids, list) else 0
        limits = self.limits
        prompt = limits.truncate_prompt(self._with_bos(prompt_ids), truncated)
        whole = self._with_eos(chosen_ids)
        chosen = limits.truncate_completion(whole, len(prompt), "chosen", truncated)
        if isinstance(rejected_ids, RowError):
            raise rejected_ids
        whole_rejected = self._with_eos(rejected_ids)
        rejected = limits.truncate_completion(whole_rejected, len(prompt), "rejected", truncated)
        limits.require_distinct(len(prompt), (whole, whole_rejected), (chosen, rejected))
        kept = (
            kept_spans(unscored[0], raw_lengths[0], len(chosen)),
            kept_spans(unscored[1], raw_lengths[1], len(rejected)),
        )
        return TokenizedPair(prompt, chosen, rejected, unscored=kept)

    def encode_scored(
        self,
        prompt: Text,
        response: Text,
        images: tuple[Any, ...] | None = None,
        truncated: Counter[str] | None = None,
        template_args: dict[str, Any] | None = None,
    ) -> tuple[list[int], list[int], VisionInputs | None, Spans]:
        """(prompt ids, response ids, image inputs, unscored spans) of one prompt/response to
        score (``template_args``: the row's own chat template arguments, as training renders
        it; the spans: its messages the model does not write, with ``assistant_only``)."""
        truncated = Counter() if truncated is None else truncated
        if not images:
            prompt_ids, response_ids, spans = self._response(
                prompt, response, truncated, template_args
            )
            return prompt_ids, response_ids, None, spans
        if self.assistant_only and not isinstance(response, str) and others_turn(response):
            raise RowError("assistant_only_loss with images", images_and_turns())
        prompt = name_images(self.processor, prompt, images)
        prompt_text, response_text = self.renderer.render(prompt, response, template_args)
        ids, vision = image_prompt_ids(self, prompt_text, images)
        _, (response_ids,) = self.after(prompt_text, [response_text])
        self.refuse_vision(response_ids, "response")
        kept = self.limits.truncate_completion(response_ids, len(ids), "responses", truncated)
        return ids, kept, vision, ()

    def encode_scored_many(
        self,
        items: Sequence[tuple[Text, Text, tuple[Any, ...] | None, dict[str, Any] | None]],
        truncated: Sequence[Counter[str]],
    ) -> list[tuple[list[int], list[int], VisionInputs | None, Spans] | RowError]:
        """``encode_scored`` of each (prompt, response, images, template arguments), or the
        RowError that refuses it, in order, each item's cuts added to its own counter in
        ``truncated``; the text items' prompts and responses tokenized in one call (one call a
        row took 1-3 ms of a small tokenizer's time, most of a 60k-row file's check)."""
        results: list[Any] = [None] * len(items)
        rendered: dict[int, tuple[str, str]] = {}
        last: tuple[Any, Any, str] | None = None  # (prompt, template arguments, prompt text)
        for index, (prompt, response, images, template_args) in enumerate(items):
            try:
                if images:  # (the processor encodes a prompt with its images: one at a time)
                    results[index] = self.encode_scored(
                        prompt, response, images, truncated[index], template_args
                    )
                else:
                    # a row's responses follow its prompt (the same object): rendered once, as
                    # a training pair's is for both sides (it was rendered for each response)
                    same = last is not None and last[0] is prompt and last[1] is template_args
                    known = last[2] if same and last is not None else None
                    texts = self.renderer.render(prompt, response, template_args, known)
                    rendered[index], last = texts, (prompt, template_args, texts[0])
            except RowError as err:
                results[index] = err
        # a row's responses after the same prompt text (a pair's two): the prompt read once
        groups: list[tuple[str, list[int]]] = []  # (prompt text, the items it opens)
        for index, (prompt_text, _) in rendered.items():
            if groups and groups[-1][0] == prompt_text:
                groups[-1][1].append(index)
            else:
                groups.append((prompt_text, [index]))
        opened = [(text, [rendered[i][1] for i in group]) for text, group in groups]
        joints = self._joints(opened)
        tails = self._tails(
            [(head, ends, texts) for (head, ends), (_, texts) in zip(joints, opened, strict=True)]
        )
        tokenized = [
            (index, list(head), tail)  # (each its own list, as one at a time gave)
            for (_, group), (head, _), group_tails in zip(groups, joints, tails, strict=True)
            for index, tail in zip(group, group_tails, strict=True)
        ]
        for index, head, tail in tokenized:
            prompt, response, _, template_args = items[index]
            texts = rendered[index]
            try:
                cut = truncated[index]
                ids, response_ids, spans = self._scored(
                    prompt, response, template_args, texts, head, tail, cut
                )
                results[index] = ids, response_ids, None, spans
            except RowError as err:
                results[index] = err
        return results

    def encode_response(
        self,
        prompt: Text,
        response: Text,
        truncated: Counter[str],
        template_args: dict[str, Any] | None = None,
    ) -> tuple[list[int], list[int]]:
        """(prompt ids, response ids) of one prompt/response, with every rule above applied."""
        return self._response(prompt, response, truncated, template_args)[:2]

    def _response(
        self,
        prompt: Text,
        response: Text,
        truncated: Counter[str],
        template_args: dict[str, Any] | None,
    ) -> tuple[list[int], list[int], Spans]:
        """``encode_response``'s ids, and the response's unscored spans (``assistant_only``)."""
        texts = self.renderer.render(prompt, response, template_args)
        ((head, (joint,)),) = self._joints([(texts[0], [texts[1]])])
        ((raw,),) = self._tails([(head, [joint], [texts[1]])])
        return self._scored(prompt, response, template_args, texts, head, raw, truncated)

    def _scored(
        self,
        prompt: Text,
        response: Text,
        template_args: dict[str, Any] | None,
        texts: tuple[str, str],
        head: list[int],
        raw: list[int],
        truncated: Counter[str],
    ) -> tuple[list[int], list[int], Spans]:
        """``_response``'s result from the rendered (prompt, response) ``texts`` and their ids
        (the prompt's, and the response's after it: ``_tails``)."""
        self.refuse_vision(raw, "response")
        (spans,) = self._unscored(prompt, [response], template_args, list(texts), head, [raw])
        prompt_ids = self.limits.truncate_prompt(self._with_bos(head), truncated)
        response_ids = self.limits.truncate_completion(
            self._with_eos(list(raw)), len(prompt_ids), "responses", truncated
        )
        return prompt_ids, response_ids, kept_spans(spans, len(raw), len(response_ids))


def _follows(head: list[int], joint: list[int]) -> bool:
    """Whether ``joint`` (a prompt + completion's ids) starts with the prompt's own ids."""
    return len(joint) > len(head) and joint[: len(head)] == head


# the methods between a fast tokenizer's __call__ and its Rust backend's encode_batch, and those
# that shape what comes back (transformers 4's and 5's): a subclass that overrides one (to
# truncate, or to rewrite ids in _convert_encoding) gives other ids than its backend's
TOKENIZE_BATCH = 128  # pairs per tokenizer call (more holds more of its output at once)


def tokenize_preferences(
    data: PreferenceData,
    tokenizer: Any,
    max_length: int | None,
    max_prompt_length: int | None = None,
    *,
    max_completion_length: int | None = None,
    skip_invalid_rows: bool = False,
    chat_template_kwargs: dict[str, Any] | None = None,
    processor: Any = None,
    progress: str | None = None,
    stop_ids: Iterable[int] = (),
    assistant_only_loss: bool = False,
    num_proc: int | None = None,
) -> TokenizedData:
    """Tokenize every example; a row that cannot be tokenized fails (or is skipped).
    ``processor``: a vision-language model's, for rows with images. ``progress``: the name of
    a progress bar to show (a large file takes minutes). ``stop_ids``: the model's own stop
    tokens besides EOS (``stops.generation_stop_ids``), where completions end. ``num_proc``:
    processes that tokenize (dataset_num_proc; the same pairs as one)."""
    encoder = PairTokenizer(
        tokenizer, max_length, max_prompt_length, max_completion_length, chat_template_kwargs,
        processor, stop_ids, assistant_only_loss,
    )  # fmt: skip
    result = TokenizedData(pairs=[])  # rows skipped when read were said by the data's summary
    kept = PairStoreBuilder()  # ids held compactly from the start: lists of 100k pairs take GBs
    refused = RefusedRows(
        data.source, places_labelled=True
    )  # without skip_invalid_rows: every one, said at the end
    examples = data.examples
    bar = tqdm(
        total=len(examples), desc=progress, unit="pairs", dynamic_ncols=True,
        disable=progress is None or len(examples) < TOKENIZE_BATCH,
    )  # fmt: skip
    with bar:
        for batch, pairs, cuts in encoded_batches(encoder, examples, TOKENIZE_BATCH, num_proc):
            result.truncated.update(cuts)
            keep_first_rows(result.truncated)
            for example, pair in zip(batch, pairs, strict=True):
                if isinstance(pair, TokenizedPair):
                    if not refused:  # (once a row is refused, no pair is kept: the run stops)
                        kept.append(pair)
                        result.sources.append(example.where)
                elif not skip_invalid_rows:  # the other rows are checked too, as data.py does
                    refused.add(example.where, pair.message)
                else:
                    result.skipped[pair.reason] += 1
            bar.update(len(batch))
    refused.raise_if_any(skip_hint())  # one line of every problem, not one run per bad row
    result.pairs = kept.build()
    if not result.pairs:
        raise DataError(f"{data.source}: no rows left after tokenization ({result.summary()})")
    return result
