"""Sampling completions (training's held-out samples, online rounds, directpo generate).

Prompts go through the same rendering and BOS/truncation rules as training
(`tokenization.PairTokenizer`), so a conversational prompt gets the chat template with the
generation prompt. Sampling uses an explicit `GenerationConfig` (the model's own defaults, such
as a top_k of 50 or a repetition_penalty, are not applied), and runs inside a forked RNG seeded
from ``seed``: the same seed gives the same samples, and the caller's RNG stream (training's)
is left untouched.

(The held-out samples of training and their KL estimate: eval_samples.py; the generate
command, a file's prompts sampled and streamed: generate_files.py.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList

from directpo.errors import ConfigError
from directpo.logprobs import evaluating
from directpo.messages import Text
from directpo.model_fit import learned_positions
from directpo.preference_pairs import ImagePrompt, prompt_of
from directpo.readers import RowError
from directpo.refusals import RefusedRows
from directpo.seeded_sampling import SeededSampling, sample_seed, warpers_of
from directpo.special_text import (
    count_special_text,
    row_texts,
    special_summary,
)
from directpo.stops import whole_characters
from directpo.tokenization import TOKENIZE_BATCH, PairTokenizer
from directpo.vision import VisionInputs, batch_tensors, placeholder_token_ids


@dataclass
class Sample:
    prompt_index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    vision: VisionInputs | None = None  # the prompt's images (vision-language models)

    @property
    def row(self) -> tuple[Any, ...]:
        """(prompt ids, completion ids[, image inputs]), for ``sequence_logprobs``."""
        if self.vision is None:
            return self.prompt_ids, self.completion_ids
        return self.prompt_ids, self.completion_ids, self.vision


def encode_prompts(
    tokenizer: Any,
    prompts: Sequence[Text | ImagePrompt],
    max_prompt_length: int | None,
    processor: Any = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    truncated: Counter[str] | None = None,
) -> list[tuple[list[int], VisionInputs | None]]:
    """Each prompt's ids (and image inputs, for an ``ImagePrompt``), rendered as training
    renders them (``chat_template_kwargs``: the run's option); text prompts cut to
    ``max_prompt_length`` are counted in ``truncated``."""
    encoder = PairTokenizer(
        tokenizer,
        max_length=None if max_prompt_length is None else max_prompt_length + 1,
        max_prompt_length=max_prompt_length,
        chat_template_kwargs=chat_template_kwargs,
        processor=processor,
    )
    return [encode_one_prompt(encoder, prompt, truncated) for prompt in prompts]


def encode_one_prompt(
    encoder: PairTokenizer, prompt: Text | ImagePrompt, truncated: Counter[str] | None = None
) -> tuple[list[int], VisionInputs | None]:
    """One prompt's ids with ``encoder`` (and an ``ImagePrompt``'s image inputs, rendered with
    its row's own chat template arguments)."""
    if isinstance(prompt, ImagePrompt) and prompt.images:
        return encoder.encode_image_prompt(prompt.prompt, prompt.images, prompt.template_args)
    if isinstance(prompt, ImagePrompt):  # a row's tools or chat_template_kwargs
        return encoder.prompt_ids(prompt.prompt, prompt.template_args, truncated), None
    return encoder.prompt_ids(prompt, truncated=truncated), None


def prompt_problems(
    encoder: PairTokenizer, prompts: Sequence[Text | ImagePrompt]
) -> list[str | None]:
    """Each prompt's problem when rendered and encoded for sampling (one the chat template
    refuses: a system message it does not take, ...), or None; the text prompts tokenized in
    one call (a call a prompt was most of a large prompt file's check)."""
    problems: list[str | None] = [None] * len(prompts)
    texts: list[tuple[int, tuple[Text, dict[str, Any] | None]]] = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, ImagePrompt) and prompt.images:  # (the processor's: one at a time)
            try:
                encode_one_prompt(encoder, prompt)
            except RowError as err:
                problems[index] = err.message
        elif isinstance(prompt, ImagePrompt):  # a row's tools or chat_template_kwargs
            texts.append((index, (prompt.prompt, prompt.template_args)))
        else:
            texts.append((index, (prompt, None)))
    encoded = encoder.prompt_ids_many([prompt for _, prompt in texts])
    for (index, _), ids in zip(texts, encoded, strict=True):
        if isinstance(ids, RowError):
            problems[index] = ids.message
    return problems


def check_prompts(
    tokenizer: Any,
    prompts: Iterable[Text | ImagePrompt],
    label: str,
    processor: Any = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    places: Iterable[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Render each prompt once before training (or before ``generate`` loads the model), so
    that one the chat template refuses (a system message it does not take, ...) is a one-line
    error naming it now, not a traceback at the first evaluation or online round. ``places``:
    each prompt's row ("line 3"), to name it by. ``echo``: given, prompts writing the
    tokenizer's special tokens in their text are said in one line, as train's pairs, score,
    rank and generate say them (train's prompt_file and eval_prompts_file said nothing).
    Returns how many prompts there were."""
    encoder = PairTokenizer(
        tokenizer, None, chat_template_kwargs=chat_template_kwargs, processor=processor
    )
    named = itertools.repeat(None) if places is None else places
    number = 0
    refused = RefusedRows(label)  # every refused prompt said at once, as a file's bad rows are
    specials: Counter[str] = Counter()
    batch: list[tuple[int, Text | ImagePrompt, str | None]] = []

    def check_batch() -> None:  # (one tokenizer call for a batch: one a prompt was slow)
        problems = prompt_problems(encoder, [prompt for _, prompt, _ in batch])
        for (number, prompt, place), problem in zip(batch, problems, strict=True):
            if problem is None:
                continue
            where = place or f"prompt {number}"
            if not refused and place is None:
                shown = json.dumps(prompt_of(prompt), ensure_ascii=False)
                where += f" ({shown if len(shown) <= 60 else shown[:57] + '...'})"
            refused.add(where, problem)
        batch.clear()

    for number, (prompt, place) in enumerate(zip(prompts, named, strict=False), start=1):
        if echo is not None:
            texts = row_texts(prompt_of(prompt))
            count_special_text(texts, encoder.specials, specials, place or "")
        batch.append((number, prompt, place))
        if len(batch) == TOKENIZE_BATCH:
            check_batch()
    check_batch()
    refused.raise_if_any()
    if echo is not None and (note := special_summary(specials)):
        echo(f"{label}: {note}")
    return number


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS of the tokenizer plus any the model's generation config lists (e.g. end-of-turn)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Text],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    max_prompt_length: int | None = 512,
    progress: bool = False,
    synced: bool = False,
    processor: Any = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    extras: dict[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
    first_sample: int = 0,
    truncated: Counter[str] | None = None,
    keep_special: bool = False,
) -> list[Sample]:
    """``num_samples`` completions per prompt, grouped by prompt in input order.

    ``seeds``: one per prompt (another count is refused); each completion then draws from its
    own generator, seeded from its prompt's seed and its number (``first_sample`` onwards), not
    from the shared stream: a prompt's samples do not depend on the prompts batched with it
    (``SeededSampling``).

    ``extras``: more GenerationConfig keys when sampling (min_p, repetition_penalty,
    cache_implementation, a run's generation_kwargs: ``DPOConfig.generation_extras``).

    ``synced``: every rank of a sharded (FSDP) model runs this together; each keeps stepping
    until all are done, so their collectives stay in step (transformers' ``synced_gpus``).
    ``processor``: a vision-language model's, for prompts with images (``ImagePrompt``).
    """
    if temperature == 0 and num_samples > 1:  # the options refuse it; this is for library calls
        raise ConfigError(f"{num_samples} samples per prompt need temperature > 0 (0 is greedy)")
    if seeds is not None:
        prompts = list(prompts)  # (a generator of prompts too: counted against the seeds)
    if seeds is not None and len(seeds) != len(prompts):
        # before the split into steps, surplus seeds were dropped when the prompts filled the
        # last batch and broke it (zip's ValueError mid-run) when they did not; a count that is
        # not one per prompt is a caller's slip either way, so it is refused before any sampling
        raise ConfigError(
            f"seeds: {len(seeds)} given for {len(prompts)} prompts; give one a prompt"
        )
    max_prompt_length = _prompt_limit(model, max_new_tokens, max_prompt_length)
    encoded = encode_prompts(
        tokenizer,
        prompts,
        max_prompt_length,
        processor,
        chat_template_kwargs=chat_template_kwargs,
        truncated=truncated,
    )
    device = next(model.parameters()).device
    plan = _sampling_plan(
        model,
        tokenizer,
        processor=processor,
        extras=extras,
        seeds=seeds,
        first_sample=first_sample,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        synced=synced,
        keep_special=keep_special,
    )
    samples: list[Sample] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    # evaluating: the model's own mode again after, also after an error (Ctrl-C, out of memory)
    with (
        torch.random.fork_rng(devices=devices),
        _without_model_sampling_defaults(model),
        evaluating(model),
    ):
        torch.manual_seed(seed)
        starts = range(0, len(encoded), batch_size)
        for start in tqdm(starts, desc="generate", disable=not progress, dynamic_ncols=True):
            samples += _sample_chunk(
                model, tokenizer, plan, encoded[start : start + batch_size], start, device
            )
    return samples


@dataclass(frozen=True)
class _SamplingPlan:
    """How each batch of prompts is sampled: transformers' config, the seeded warpers (None
    unless each completion draws from its own seed), the stop and padding tokens."""

    config: GenerationConfig
    warpers: list[Any] | None
    stops: list[int]
    pad_id: int
    num_samples: int
    seeds: Sequence[int] | None  # one per prompt (sample_completions')
    first_sample: int
    synced: bool
    keep_special: bool


def _sampling_plan(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    processor: Any,
    extras: dict[str, Any] | None,
    seeds: Sequence[int] | None,
    first_sample: int,
    num_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    synced: bool,
    keep_special: bool,
) -> _SamplingPlan:
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    extras = dict(extras or {})
    if processor is not None:  # a vision-language model: never an image token (_image_free)
        extras["suppress_tokens"] = _image_free(model, extras.get("suppress_tokens"))
    seeded = seeds is not None and temperature > 0
    # seeded: the warpers run as processors (min_p among them), the others stay transformers'
    warpers = warpers_of(temperature, top_p, top_k, extras.pop("min_p", None)) if seeded else None
    sampled = temperature > 0 and not seeded  # seeded: argmax of Gumbel-perturbed scores
    config = GenerationConfig(
        do_sample=sampled,
        temperature=temperature if sampled else None,
        top_p=top_p if sampled else None,
        top_k=top_k if sampled else None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=1 if seeded else num_samples,  # seeded: the prompts repeated
        eos_token_id=stops,
        pad_token_id=pad_id,
        **extras,
    )
    return _SamplingPlan(
        config, warpers, stops, pad_id, num_samples, seeds, first_sample, synced, keep_special
    )


def _sample_chunk(
    model: torch.nn.Module,
    tokenizer: Any,
    plan: _SamplingPlan,
    chunk_encoded: Sequence[tuple[list[int], VisionInputs | None]],
    start: int,
    device: torch.device,
) -> list[Sample]:
    """The samples of the prompts ``start`` onwards (``chunk_encoded``), generated together."""
    num_samples = plan.num_samples
    chunk = [ids for ids, _ in chunk_encoded]
    processors = None
    if plan.warpers is not None and plan.seeds is not None:
        chunk = [ids for ids in chunk for _ in range(num_samples)]
        numbers = range(plan.first_sample, plan.first_sample + num_samples)
        mine = plan.seeds[start : start + len(chunk_encoded)]
        row_seeds = [sample_seed(prompt_seed, n) for prompt_seed in mine for n in numbers]
        processors = LogitsProcessorList([*plan.warpers, SeededSampling(row_seeds)])
    input_ids, attention_mask = _left_padded(chunk, plan.pad_id)
    width = input_ids.shape[1]
    visions = list(chunk_encoded)
    if processors is not None:
        visions = [vision for vision in visions for _ in range(num_samples)]
    images = _left_padded_images(visions, width, model)
    output = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        **{key: value.to(device) for key, value in images.items()},
        generation_config=plan.config,
        logits_processor=processors,
        synced_gpus=plan.synced,
    )
    samples = []
    for row, generated in enumerate(output[:, width:].tolist()):
        prompt_ids, vision = chunk_encoded[row // num_samples]
        completion = _until_stop(generated, plan.stops)
        decode = _decoder(tokenizer, plan.stops, plan.keep_special)
        stopped = bool(completion) and completion[-1] in plan.stops
        text = whole_characters(decode, completion, stopped)
        samples.append(Sample(start + row // num_samples, prompt_ids, completion, text, vision))
    return samples


def _prompt_limit(model: torch.nn.Module, max_new_tokens: int, limit: int | None) -> int | None:
    """The prompt length kept: ``limit``, lowered for a model of learned positions (GPT-2,
    OPT), whose position table must hold prompt + new tokens (refused when the new tokens
    alone do not fit)."""
    positions = learned_positions(model)
    if positions is None:
        return limit
    if max_new_tokens >= positions:
        raise ConfigError(
            f"max_new_tokens: {max_new_tokens} new tokens do not fit the model's "
            f"{positions} learned positions; use fewer than {positions}"
        )
    room = positions - max_new_tokens
    return room if limit is None else min(limit, room)


def _left_padded(chunk: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts' ids and attention mask, left-padded: every prompt ends where generation
    starts."""
    width = max(map(len, chunk))
    input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for i, ids in enumerate(chunk):
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        attention_mask[i, width - len(ids) :] = 1
    return input_ids, attention_mask


def _decoder(tokenizer: Any, stops: list[int], keep_special: bool) -> Callable[[list[int]], str]:
    """A completion's text: without special tokens, as TRL and vLLM decode it, or with those
    drawn mid-reply (``keep_special``: the tokens sampled, as score and rank read them back),
    its stop token left out either way."""
    if not keep_special:
        return partial(tokenizer.decode, skip_special_tokens=True)
    return lambda ids: tokenizer.decode([i for i in ids if i not in stops])


def _image_free(model: torch.nn.Module, suppressed: Sequence[int] | None) -> list[int]:
    """The tokens sampling must not draw: a user's ``suppress_tokens`` and the model's image
    placeholder tokens. A completion holding one cannot be scored: the forward takes it for an
    image's features and fails ('Image features and image tokens do not match'); an eval
    step's KL stopped the run with that traceback when a young policy drew one."""
    from directpo.logprobs import unwrap_peft

    reserved = placeholder_token_ids(getattr(unwrap_peft(model), "config", None))
    return sorted(set(suppressed or ()) | reserved)


@contextlib.contextmanager
def _without_model_sampling_defaults(model: torch.nn.Module) -> Iterator[None]:
    """Sampling with the options given alone: transformers fills every generation option a call
    leaves unset (repetition_penalty, min_p, no_repeat_ngram_size, num_beams, ...) from the
    model's generation_config.json, and an instruct model's would change the distribution
    sampled (online rounds and the KL estimate need π itself). Its cache implementation stays."""
    generator = next((m for m in model.modules() if isinstance(m, GenerationMixin)), None)
    own = getattr(generator, "generation_config", None)
    if generator is None or own is None:
        yield
        return
    generator.generation_config = GenerationConfig(cache_implementation=own.cache_implementation)
    try:
        yield
    finally:
        generator.generation_config = own


def _left_padded_images(
    encoded: list[tuple[list[int], VisionInputs | None]], width: int, model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The image tensors of a left-padded chunk of prompts (and their token types)."""
    visions = [vision for _, vision in encoded if vision is not None]
    if not visions:
        return {}
    images = batch_tensors(visions)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    images = {k: v.to(dtype) if v.is_floating_point() else v for k, v in images.items()}
    for key in sorted({key for vision in visions for key in vision.token_types}):
        types = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, (ids, vision) in enumerate(encoded):
            if vision is not None and key in vision.token_types:
                types[i, width - len(ids) :] = torch.tensor(vision.token_types[key])
        images[key] = types
    for key in sorted({key for vision in visions for key in vision.token_masks}):
        # Mllama's cross_attention_mask: [prompt tokens, images, tiles], left-padded with zeros
        masks = [vision.token_masks[key] for vision in visions]
        trailing = [max(sizes) for sizes in zip(*(m.shape[1:] for m in masks), strict=True)]
        padded = torch.zeros((len(encoded), width, *trailing), dtype=torch.long)
        for i, (ids, vision) in enumerate(encoded):
            if vision is not None and key in vision.token_masks:
                mask = vision.token_masks[key]
                cut = tuple(slice(size) for size in mask.shape[1:])
                padded[(i, slice(width - len(ids), width), *cut)] = mask
        images[key] = padded
    return images


def _until_stop(ids: list[int], stops: list[int]) -> list[int]:
    for position, token in enumerate(ids):
        if token in stops:
            return ids[: position + 1]
    return ids
