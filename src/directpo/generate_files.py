"""The generate command: a file's prompt rows sampled and written a call at a time, rows
keeping their fields and gaining their completions; every prompt parsed and rendered before
the model loads, and a stopped run continued from what it wrote (sampling itself:
generate.py)."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from tqdm.auto import tqdm

from directpo.adapters import tokenizer_folder
from directpo.callers import options_entry
from directpo.chat_templates import reply_header, sampled_header_note
from directpo.command_options import GenerateOptions
from directpo.command_row_parsers import prompt_row as _prompt_row
from directpo.errors import ConfigError, DataError
from directpo.generate import prompt_problems, sample_completions, stop_token_ids
from directpo.jsonl import StagedJsonl, options_key
from directpo.messages import Text
from directpo.model_preparation import LoadOptions
from directpo.models import load_causal_lm
from directpo.preference_pairs import ImagePrompt, counted, prompt_of
from directpo.prompts import (
    check_every_row,
    first_row_fields,
    rows_to_write,
    unread_system_note,
)
from directpo.readers import RowError
from directpo.reward_rows import output_location
from directpo.run_records import run_config
from directpo.seeded_sampling import row_seed
from directpo.special_text import (
    count_drawn,
    count_special_text,
    drawn_special_ids,
    drawn_summary,
    row_texts,
    special_summary,
)
from directpo.tokenization import PairTokenizer
from directpo.tokenizer_loading import load_processor, load_tokenizer

if TYPE_CHECKING:
    from directpo.config import DPOConfig

Item = TypeVar("Item")


@options_entry  # (as its options were built: the flags, or keywords in Python)
def generate_file(options: GenerateOptions, echo: Callable[[str], None] = print) -> int:
    """Sample completions for every prompt row; rows keep their fields and gain
    ``completions`` (``completions_column``: a list of ``num_return_sequences`` strings; a row
    that has that field already is refused, not written over).

    The file is read twice, a row at a time (as score and rank read theirs): every prompt is
    parsed and rendered before the model loads, then rows are sampled and written a call at a
    time through a ``StagedJsonl``, which a stopped run leaves for the same command to continue
    from. A call samples the prompts of rows [k·P, (k+1)·P) (P = batch_size //
    num_return_sequences, at least 1); each completion draws from its own generator, seeded from
    (seed, its row's index, its number): a row's completions depend on the seed and the row, not
    on batch_size, so a continued run (at any batch_size) writes what one uninterrupted run
    writes, to within the rounding of another batch's padding."""
    options.check_environment()
    base_dir = os.path.dirname(os.path.abspath(options.input))  # image paths are relative to it
    path = options.model_name_or_path
    said_off = options.system_column == ""  # (--system_column '': none, on purpose)
    run, options = _with_run(options, echo)
    trusted = options.trust_remote_code
    own = tokenizer_folder(path)  # an adapter folder's may be its base's
    processor = load_processor(own, trusted)
    tokenizer = load_tokenizer(own, trusted) if processor is None else processor.tokenizer
    device = "cuda" if torch.cuda.is_available() else "cpu"
    template_kwargs = run.chat_template_kwargs if run else None
    encoder = PairTokenizer(
        tokenizer, None, chat_template_kwargs=template_kwargs, processor=processor
    )
    total = _check_every_prompt(options, base_dir, encoder, said_off, echo)
    per_call = max(1, options.batch_size // options.num_return_sequences)
    with StagedJsonl(options.output, options_key(options, options.NOT_IN_ROWS, [path])) as out:
        model = load_causal_lm(
            path,
            options.dtype,
            trainable=False,
            device=device,
            options=LoadOptions(init_kwargs=output_location(path, run), trust_remote_code=trusted),
        )
        written = 0  # completions
        field = options.completions_column
        truncated: Counter[str] = Counter()  # prompts cut to max_prompt_length
        # the samples whose text lost special tokens they drew (decoded without them)
        drawn: Counter[str] = Counter()
        stops = stop_token_ids(model, tokenizer)
        specials = {} if options.keep_special_tokens else drawn_special_ids(tokenizer, stops)
        bar = tqdm(total=total, desc="generate", unit="row", dynamic_ncols=True)
        with bar:
            for first, call in _calls(_prompt_rows(options, base_dir), per_call):
                # the rows an earlier, stopped run wrote are kept; each other row's samples
                # depend on its index alone, not on the rows sampled with it
                kept = [out.resumed(row, (field,)) for _, row, _ in call]
                written += sum(len(row[field]) for row in kept if row is not None)
                fresh = [(first + i, item) for i, item in enumerate(call) if kept[i] is None]
                if fresh:
                    new = _sampled(
                        model, tokenizer, processor, template_kwargs, options, fresh, truncated,
                        lambda ids: count_drawn(ids, specials, drawn),
                    )  # fmt: skip
                    out.write(
                        {**row, field: t} for (_, (_, row, _)), t in zip(fresh, new, strict=True)
                    )
                    written += sum(map(len, new))
                bar.update(len(call))
        out.commit()
    _say_written(options, out, written, truncated, drawn, echo)
    return written


def _with_run(
    options: GenerateOptions, echo: Callable[[str], None]
) -> tuple[DPOConfig | None, GenerateOptions]:
    """The run the model comes from (its prompts render as it trained on them, a LoRA base
    loads where it did), None for a folder of no directpo run; the options with its defaults."""
    run = None
    try:
        run = run_config(options.model_name_or_path)
    except ConfigError as err:  # a config.yaml of another tool: no such record
        echo(f"config.yaml not used (not a directpo run's): {err}")
    return run, options.with_run_defaults(run, echo, first_row_fields(options.input))


def _check_every_prompt(
    options: GenerateOptions,
    base_dir: str,
    encoder: PairTokenizer,
    said_off: bool,
    echo: Callable[[str], None],
) -> int:
    """Every row parsed and its prompt rendered before the model loads: every bad row, and
    every prompt the chat template refuses, said at once; the number of rows."""
    specials: Counter[str] = Counter()  # prompts writing special tokens (pre-rendered chats)
    chats: list[Any] = []  # the first conversation: is the generation prompt written?
    parse = partial(_counted_prompt, options, base_dir, encoder, specials, chats)
    total = check_every_row(options.input, parse, check_many=partial(_encodable, encoder))
    if note := special_summary(specials):  # (said once per file, as train, score and rank do)
        echo(note)
    reply = [{"role": "assistant", "content": "Hello"}]
    kwargs = encoder.renderer.template_kwargs
    if chats and (header := reply_header(encoder.tokenizer, kwargs, chats[0], reply)):
        echo(sampled_header_note(header))
    if note := unread_system_note(
        options.input, options.prompt_column, options.system_column, said_off
    ):
        echo(note)
    return total


def _say_written(
    options: GenerateOptions,
    out: StagedJsonl,
    written: int,
    truncated: Counter[str],
    drawn: Counter[str],
    echo: Callable[[str], None],
) -> None:
    """The notes after sampling (prompts cut, special tokens dropped), then what was written."""
    note = out.resumed_note()
    if cut := truncated["prompts"]:  # sampled from their last tokens: say so, as score does
        echo(
            f"{counted(cut, 'prompt')} longer than max_prompt_length {options.max_prompt_length}"
            f" tokens {'was' if cut == 1 else 'were'} cut from the left"
        )
    if dropped := drawn_summary(drawn):
        echo(dropped)
    written_for = f"{counted(written, 'completion')} for {counted(out.written, 'prompt')}"
    echo(f"wrote {written_for} to {options.output}{note}")


def _prompt_rows(
    options: GenerateOptions, base_dir: str
) -> Iterator[tuple[str, dict[str, Any], Text | ImagePrompt]]:
    """(where, row, prompt) of each input row, read as iterated; the rows were checked."""
    for where, row in rows_to_write(options.input):
        yield where, row, _prompt_row(options, base_dir, f"{options.input}: {where}", row)


def _counted_prompt(
    options: GenerateOptions,
    base_dir: str,
    encoder: PairTokenizer,
    specials: Counter[str],
    chats: list[Any],
    label: str,
    row: dict[str, Any],
) -> Text | ImagePrompt:
    """``_prompt_row``'s prompt, counted in ``specials`` where its text writes the tokenizer's
    special tokens; the first conversation without images kept in ``chats``."""
    prompt = _prompt_row(options, base_dir, label, row)
    if not chats and isinstance(prompt, list):
        chats.append(prompt)
    count_special_text(row_texts(prompt_of(prompt)), encoder.specials, specials, label)
    return prompt


def _encodable(
    encoder: PairTokenizer, items: list[tuple[str, Text | ImagePrompt]]
) -> list[str | None]:
    """Each (label, prompt)'s problem when rendered and encoded, or None (``prompt_problems``),
    said before the model loads."""
    return prompt_problems(encoder, [prompt for _, prompt in items])


def _calls(items: Iterable[Item], size: int) -> Iterator[tuple[int, list[Item]]]:
    """(index of the first, items) of each run of ``size`` consecutive items."""
    iterator = iter(items)
    first = 0
    while call := list(itertools.islice(iterator, size)):
        yield first, call
        first += len(call)


def _sampled(
    model: torch.nn.Module,
    tokenizer: Any,
    processor: Any,
    template_kwargs: dict[str, Any] | None,
    options: GenerateOptions,
    rows: list[tuple[int, tuple[str, dict[str, Any], Text | ImagePrompt]]],
    truncated: Counter[str],
    sampled: Callable[[list[int]], None] = lambda ids: None,
) -> list[list[str]]:
    """Each (index, row)'s ``num_return_sequences`` completions, the k-th drawn from a seed of
    ``--seed``, the row's index and k (``SeededSampling``). A prompt whose samples outnumber
    batch_size (then alone in its call) draws them batch_size at a time; ``sampled`` is given
    each completion's token ids."""
    wanted = options.num_return_sequences
    parts = [options.batch_size] * (wanted // options.batch_size) + [wanted % options.batch_size]
    texts: list[list[str]] = [[] for _ in rows]
    first_sample = 0
    for part, count in enumerate(c for c in parts if c):
        try:
            samples = sample_completions(
                model,
                tokenizer,
                [prompt for _, (_, _, prompt) in rows],
                num_samples=count,
                max_new_tokens=options.max_new_tokens,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                seed=options.seed,
                batch_size=len(rows),
                max_prompt_length=options.max_prompt_length,
                processor=processor,
                chat_template_kwargs=template_kwargs,
                extras=options.sampling_extras,
                seeds=[row_seed(options.seed, index) for index, _ in rows],
                first_sample=first_sample,
                truncated=truncated if part == 0 else None,  # each prompt counted once
                keep_special=options.keep_special_tokens,
            )
        except RowError as err:
            raise DataError(f"{options.input}: {err.message}") from None
        for sample in samples:
            texts[sample.prompt_index].append(sample.text)
            sampled(sample.completion_ids)
        first_sample += count
    return texts
