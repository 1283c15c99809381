"""The score and rank commands: rows in, JSON Lines out, streamed.

A file is read twice, a row at a time: first every row is checked (before any model loads, so
a bad row is named at once), then rows are encoded, scored and written a chunk at a time, so
memory does not grow with the file. The output goes through ``jsonl.StagedJsonl``: it appears
complete or not at all, and a run stopped part way (Ctrl-C, a crash) is continued by the same
command from the rows it had written. Chunks are whole forward batches of the sequences in
file order, the batches of scoring every row at once: the rewards do not depend on the chunks.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, TypeVar

from tqdm.auto import tqdm

from directpo.callers import options_entry
from directpo.chat_templates import reply_header, scored_header_note
from directpo.command_options import RankOptions, RewardOptions, ScoreOptions
from directpo.command_row_parsers import PAIR_COLUMNS, RESPONSE_COLUMNS
from directpo.command_row_parsers import listed as _listed
from directpo.command_row_parsers import rank_item as _rank_item
from directpo.command_row_parsers import response_column as _response_column
from directpo.command_row_parsers import score_item as _score_item
from directpo.errors import ConfigError, DataError
from directpo.jsonl import StagedJsonl, options_key
from directpo.messages import Text
from directpo.preference_pairs import PreferenceExample, counted
from directpo.prompts import (
    CHECKED_TOGETHER,
    check_every_row,
    first_row_fields,
    rows_to_write,
    unread_system_note,
    with_images,
)
from directpo.readers import RowError
from directpo.reward import ImplicitReward
from directpo.reward_rows import row_encoder, truncation_note
from directpo.run_records import run_config, run_values_missing
from directpo.special_text import count_special_text, row_texts, special_summary
from directpo.tokenization import PairTokenizer

Item = TypeVar("Item")
Options = TypeVar("Options", bound=RewardOptions)

# sequences scored (and rows written) per chunk, rounded up to whole batches
CHUNK_SEQUENCES = 256


# (as their options were built: the flags, or keywords; a chat template's fix: the folder's)
@options_entry
def score_file(options: ScoreOptions, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Add ``reward`` to single-response rows, or ``chosen_reward``, ``rejected_reward`` and
    ``margin`` to preference rows; report accuracy and mean margin over the pairs."""
    options, base_dir, total = _checked_input(options, _score_item, _score_sequences, echo)

    def named(fields: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(options.output_prefix + field for field in fields)

    with StagedJsonl(options.output, _resume_key(options)) as out:
        scorer = _scorer(options, echo)
        truncated: Counter[str] = Counter()
        specials: Counter[str] = Counter()  # rows with special tokens in their text
        margins: list[float] = []  # one float a pair: 8 bytes, not the row

        def fresh() -> Iterator[tuple[str, tuple[dict[str, Any], bool], Sequences]]:
            for label, row, item in _score_items(options, base_dir):
                pair = isinstance(item, PreferenceExample)
                staged = out.resumed(row, named(PAIR_COLUMNS if pair else RESPONSE_COLUMNS))
                if staged is not None:  # written by an earlier, stopped run
                    if pair:
                        chosen, rejected = named(("chosen_reward", "rejected_reward"))
                        margins.append(staged[chosen] - staged[rejected])
                    bar.update()
                    continue
                yield label, (row, pair), _score_sequences(item)

        encoded = _encoded_together(scorer.encoder, fresh(), truncated, specials)

        with _progress(total, "score") as bar:
            for chunk in _scored_in_chunks(scorer, encoded):
                rows = []
                for (row, pair), rewards in chunk:
                    if pair:
                        chosen, rejected = rewards
                        margins.append(chosen - rejected)
                        values = [chosen, rejected, chosen - rejected]
                    else:
                        values = rewards
                    fields = named(PAIR_COLUMNS if pair else RESPONSE_COLUMNS)
                    rows.append({**row, **dict(zip(fields, values, strict=True))})
                out.write(rows)
                bar.update(len(rows))
        out.commit()
    _say_notes(scorer, truncated, specials, echo)
    summary: dict[str, float] = {"rows": out.written, "pairs": len(margins)}
    if margins:
        summary["accuracy"] = sum(m > 0 for m in margins) / len(margins)
        summary["mean_margin"] = sum(margins) / len(margins)
        echo(
            f"{counted(len(margins), 'pair')}: preference accuracy {summary['accuracy']:.4f}, "
            f"mean margin {summary['mean_margin']:.4g}"
        )
    echo(f"wrote {counted(out.written, 'row')} to {options.output}{out.resumed_note()}")
    return summary


def _checked_input(
    options: Options,
    item: Callable[[Options, str, str, dict[str, Any]], Any],
    sequences: Callable[[Any], Sequences],
    echo: Callable[[str], None],
) -> tuple[Options, str, int]:
    """score's and rank's first pass, before any model loads: (``options`` with the run's
    defaults, the input's folder, the input's row count). Every row is parsed (``item``) and
    its ``sequences`` rendered, every bad one said at once; then the notes of the input (an
    unread system column) and of the chat template (no generation prompt)."""
    options.check_environment()
    said_off = options.system_column == ""  # (--system_column '': none, on purpose)
    options = _with_run_defaults(options, echo)
    base_dir = os.path.dirname(os.path.abspath(options.input))  # image paths are relative to it
    parse = partial(item, options, base_dir)
    chats: list[tuple[PairTokenizer, Sequences]] = []  # the first conversation's
    encodable = _encodable(options, sequences, chats)
    total = check_every_row(options.input, parse, _run_values_missing(options), encodable)
    _say_unread_system(options, said_off, echo)
    _say_reply_header(chats, echo)
    return options, base_dir, total


def _say_notes(
    scorer: ImplicitReward,
    truncated: Counter[str],
    specials: Counter[str],
    echo: Callable[[str], None],
) -> None:
    """score's and rank's notes once the file is written: rows cut to fit, rows with special
    tokens in their text."""
    if truncated:
        echo(truncation_note(scorer, truncated))
    if note := special_summary(specials):
        echo(note)


def _score_items(
    options: ScoreOptions, base_dir: str
) -> Iterator[tuple[str, dict[str, Any], PreferenceExample | tuple[Any, ...]]]:
    """(label, row, parsed row) of each input row (``_score_item``); the rows were checked."""
    for where, row in rows_to_write(options.input):
        label = f"{options.input}: {where}"
        yield label, row, _score_item(options, base_dir, label, row)


@options_entry
def rank_file(options: RankOptions, echo: Callable[[str], None] = print) -> int:
    """Add ``ranked``: the candidates sorted by implicit reward, best first, with their rewards."""
    options, base_dir, total = _checked_input(options, _rank_item, _rank_sequences, echo)
    ranked = options.output_prefix + "ranked"
    with StagedJsonl(options.output, _resume_key(options)) as out:
        scorer = _scorer(options, echo)
        truncated: Counter[str] = Counter()
        specials: Counter[str] = Counter()  # rows with special tokens in their text
        candidates = 0

        def fresh() -> Iterator[tuple[str, tuple[dict[str, Any], str], Sequences]]:
            nonlocal candidates
            for label, row, column, prompt, responses, image, arg in _rank_items(options, base_dir):
                candidates += len(responses)
                if out.resumed(row, (ranked,)) is not None:  # written by an earlier, stopped run
                    bar.update()
                    continue
                yield label, (row, column), _rank_sequences((column, prompt, responses, image, arg))

        encoded = _encoded_together(scorer.encoder, fresh(), truncated, specials)
        with _progress(total, "rank") as bar:
            for chunk in _scored_in_chunks(scorer, encoded):
                rows = []
                for (row, column), rewards in chunk:
                    scored = [(reward, i) for i, reward in enumerate(rewards)]
                    order = sorted(scored, key=lambda item: (-item[0], item[1]))  # ties: stable
                    given = row[column]  # each candidate as written (text or messages)
                    rows.append(
                        {**row, ranked: [{"response": given[i], "reward": r} for r, i in order]}
                    )
                out.write(rows)
                bar.update(len(rows))
        out.commit()
    _say_notes(scorer, truncated, specials, echo)
    echo(
        f"ranked {counted(candidates, 'candidate')} of {counted(out.written, 'prompt')} into "
        f"{options.output}"
        f"{out.resumed_note()}"
    )
    return out.written


def _rank_items(
    options: RankOptions, base_dir: str
) -> Iterator[tuple[str, dict[str, Any], str, Text, list[Text], Any, dict[str, Any] | None]]:
    """(label, row, candidates' column, prompt, candidates, images, template arguments) of each
    input row (``_rank_item``); the rows were checked."""
    for where, row in rows_to_write(options.input):
        label = f"{options.input}: {where}"
        row = _listed(row, _response_column(row, options.responses_column))
        yield label, row, *_rank_item(options, base_dir, label, row)


# what a row scores: (prompt, responses, images, template arguments)
Sequences = tuple[Any, list[Text], Any, dict[str, Any] | None]


def _score_sequences(item: PreferenceExample | tuple[Any, ...]) -> Sequences:
    """What a row to score (``_score_item``'s) scores."""
    if isinstance(item, PreferenceExample):
        return item.prompt, [item.chosen, item.rejected], item.images, item.template_args
    return item[0], [item[1]], item[2], item[3]


def _rank_sequences(item: tuple[str, Text, list[Text], Any, Any]) -> Sequences:
    """What a row to rank (``_rank_item``'s) scores."""
    _, prompt, responses, images, args = item
    return with_images(prompt, images), responses, images, args


def _encodable(
    options: RewardOptions,
    sequences: Callable[[Any], Sequences],
    chats: list[tuple[PairTokenizer, Sequences]],
) -> Callable[[list[tuple[str, Any]]], list[str | None]]:
    """The first pass's second check: parsed rows' sequences encoded by the model folder's
    tokenizer, a batch of rows at a time, each one's problem or None (a row the chat template
    refuses is said with the other bad rows, before the models load, where it was said alone
    after rows were scored). ``chats`` gets the encoder and the first conversation's
    sequences (without images), whose reply header ``_say_reply_header`` looks for."""
    encoder = row_encoder(
        options.model_name_or_path, options.trust_remote_code, options.assistant_only_loss
    )

    def problems(items: list[tuple[str, Any]]) -> list[str | None]:
        rows = [(label, sequences(item)) for label, item in items]
        if not chats:
            chats.extend((encoder, row) for _, row in rows if _is_chat(row))
            del chats[1:]
        encoded = _encoded_many(encoder, rows, Counter())
        return [
            str(ids).removeprefix(f"{label}: ") if isinstance(ids, DataError) else None
            for (label, _), ids in zip(items, encoded, strict=True)
        ]

    return problems


def _encoded_together(
    encoder: PairTokenizer,
    rows: Iterable[tuple[str, Item, Sequences]],
    truncated: Counter[str],
    specials: Counter[str],
) -> Iterator[tuple[Item, list[tuple[Any, ...]]]]:
    """(item, the sequences of its responses) of each (label, item, sequences), read and
    encoded ``CHECKED_TOGETHER`` rows at a time (one tokenizer call for them); a row that
    cannot be encoded a DataError (the first pass refused such rows: a file changed since)."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, CHECKED_TOGETHER)):
        encoded = _encoded_many(
            encoder, [(label, sequences) for label, _, sequences in batch], truncated, specials
        )
        for (_, item, _), ids in zip(batch, encoded, strict=True):
            if isinstance(ids, DataError):
                raise ids
            yield item, ids


def _encoded_many(
    encoder: PairTokenizer,
    rows: list[tuple[str, Sequences]],
    truncated: Counter[str],
    specials: Counter[str] | None = None,
) -> list[list[tuple[Any, ...]] | DataError]:
    """Each (label, sequences)'s encoded responses, or the DataError that refuses the row, all
    the rows' texts tokenized in one call. Each row's truncations are added to ``truncated``
    with its prompt counted once (it is encoded with each response: a pair's long prompt was
    "2 prompts", a rank row's one per candidate), and a row whose texts hold the tokenizer's
    special tokens counted in ``specials``."""
    items = []
    cuts: list[Counter[str]] = []
    owners = []  # the row of each item
    for row, (label, (prompt, responses, images, template_args)) in enumerate(rows):
        if specials is not None:  # (said once per file, as training says it: special_text.py)
            count_special_text(row_texts(prompt, *responses), encoder.specials, specials, label)
        cut: Counter[str] = Counter()
        cuts.append(cut)
        for response in responses:
            items.append((prompt, response, images, template_args))
            owners.append(row)
    encoded = encoder.encode_scored_many(items, [cuts[row] for row in owners])
    results: list[list[tuple[Any, ...]] | DataError] = [[] for _ in rows]
    for row, ids in zip(owners, encoded, strict=True):
        done = results[row]
        if isinstance(done, list):  # (a row's first refused response is its problem)
            results[row] = (
                DataError(f"{rows[row][0]}: {ids.message}")
                if isinstance(ids, RowError)
                else [*done, ids]
            )
    for row, result in enumerate(results):
        if isinstance(result, list):
            cuts[row]["prompts"] = min(cuts[row]["prompts"], 1)
            truncated.update(+cuts[row])
    return results


def _scored_in_chunks(
    scorer: ImplicitReward, items: Iterable[tuple[Item, list[tuple[Any, ...]]]]
) -> Iterator[list[tuple[Item, list[float]]]]:
    """Lists of (item, the rewards of its sequences), in order, as chunks of whole batches of
    the sequences are scored: only a chunk's rows are held (a row of many candidates may span
    chunks), and each batch holds the sequences it would if every row were scored at once."""
    size = scorer.batch_size * -(-CHUNK_SEQUENCES // scorer.batch_size)
    waiting: deque[tuple[Item, int]] = deque()  # items and how many sequences each has
    sequences: list[tuple[Any, ...]] = []
    rewards: list[float] = []

    def finished() -> list[tuple[Item, list[float]]]:
        done = []
        while waiting and waiting[0][1] <= len(rewards):
            item, count = waiting.popleft()
            done.append((item, rewards[:count]))
            del rewards[:count]
        return done

    for item, ids in items:
        waiting.append((item, len(ids)))
        sequences += ids
        while len(sequences) >= size:
            rewards += scorer.score_ids(sequences[:size]).tolist()
            del sequences[:size]
            yield finished()
    if sequences:
        rewards += scorer.score_ids(sequences).tolist()
    yield finished()


def _progress(total: int, name: str) -> Any:
    return tqdm(total=total, desc=name, unit="row", dynamic_ncols=True)


def _resume_key(options: RewardOptions) -> str:
    """What the rewards depend on besides the rows (not batch_size): a stopped run's partial
    output is continued only by a run of the same options on the same model folders."""
    return options_key(
        options, options.NOT_IN_ROWS, (options.model_name_or_path, options.ref_model_name_or_path)
    )


def _is_chat(row: Sequences) -> bool:
    prompt, responses, images, _ = row
    return isinstance(prompt, list) and isinstance(responses[0], list) and not images


def _say_reply_header(
    chats: list[tuple[PairTokenizer, Sequences]], echo: Callable[[str], None]
) -> None:
    """The note train and generate give of a chat template without a generation prompt
    (chat_templates.reply_header): score and rank said nothing, and scored the assistant's
    header as each completion's first tokens."""
    for encoder, (prompt, responses, _, args) in chats:
        kwargs = encoder.renderer.template_kwargs
        if header := reply_header(encoder.tokenizer, kwargs, prompt, responses[0], args):
            echo(scored_header_note(header))


def _say_unread_system(options: RewardOptions, said_off: bool, echo: Callable[[str], None]) -> None:
    note = unread_system_note(options.input, options.prompt_column, options.system_column, said_off)
    if note:
        echo(note)


def _with_run_defaults(options: Options, echo: Callable[[str], None]) -> Options:
    """``options`` with those left unset taken from the run that wrote the model folder (its
    column names where the input has them)."""
    run = None
    with contextlib.suppress(ConfigError):  # a config.yaml of another tool: not a run
        run = run_config(options.model_name_or_path)
    given = getattr(options, "assistant_only_loss", None)
    if run is not None and given is not None and given != run.assistant_only_loss:
        # (both are allowed: a user may compare the two; the output is not the run's reward)
        echo(
            f"assistant_only_loss {str(given).lower()}, where the run trained with "
            f"{str(run.assistant_only_loss).lower()}: the rewards are over other tokens than "
            "the run's log-probs"
        )
    return options.with_run_defaults(run, echo, first_row_fields(options.input))


def _run_values_missing(options: RewardOptions) -> str | None:
    """A model folder that is not a directpo run, without --beta / --ref_model_name_or_path:
    said with the input's bad rows, in one line before any model loads."""
    ref, beta = options.ref_model_name_or_path, options.beta
    return run_values_missing(options.model_name_or_path, ref, beta)


def _scorer(options: RewardOptions, echo: Callable[[str], None]) -> ImplicitReward:
    return ImplicitReward.from_run(
        options.model_name_or_path,
        options.ref_model_name_or_path,
        options.beta,
        echo=echo,
        assistant_only_loss=bool(options.assistant_only_loss),  # the run's, unless given
        batch_size=options.batch_size,
        dtype=options.dtype,
        trust_remote_code=options.trust_remote_code,
    )
