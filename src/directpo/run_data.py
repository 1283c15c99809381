"""What a training run reads before any model loads: its pairs (or online prompts), held-out
sets, tokenizer or processor, chat template, reward function and online labeller, each checked
and tokenized (``load_run_data`` -> ``RunData``)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from directpo.adapters import adapter_base
from directpo.chat_templates import replace_chat_template, writes_todays_date
from directpo.config import DPOConfig
from directpo.data import Columns, PreferenceData, counted, load_preferences, read_rows
from directpo.data_sources import (
    is_path_list,
    load_named_dataset,
    python_source,
    refuse_column_dict,
)
from directpo.errors import ConfigError, DataError
from directpo.generate import check_prompts
from directpo.hub import cache_only_where_unreachable
from directpo.messages import others_turn
from directpo.mixture import load_mixture
from directpo.models import (
    load_processor,
    load_tokenizer,
    model_location,
    pad_token_id,
)
from directpo.node_tokenizing import Turn, leading, tokenizing_processes, wait_for_leader
from directpo.online import OnlineData, check_labeller, load_labeller
from directpo.prompts import (
    distinct_example_prompts,
    load_prompt_rows,
    load_prompts,
    prompts_in_turn,
)
from directpo.refusals import RowsRefused, hint_once
from directpo.rewardfn import check_reward_fn, load_reward_fn
from directpo.sources import PairSet
from directpo.stops import generation_stop_ids
from directpo.stream_reads import is_stream, stream_head, stream_plan
from directpo.token_cache import cached_tokenization
from directpo.tokenization import TokenizedData, short_completion_limit, tokenize_preferences


@dataclass
class RunData:
    """The data side of a run: tokenizer, tokenized pairs, held-out sets, online prompts."""

    tokenizer: Any
    processor: Any  # a vision-language model's (None for text models)
    pad_id: int
    train_data: Any  # DataSummary, or OnlineData (what the model card says)
    train: PairSet
    evaluations: dict[str, PairSet]  # held-out pairs by set name ("": the one unnamed set)
    eval_prompts: list[Any]
    eval_rows: list[dict[str, Any]]
    reward_fn: Callable[..., Any] | None
    online_prompts: list[Any] = field(default_factory=list)
    online_rows: list[dict[str, Any]] = field(default_factory=list)  # their other columns
    labeller: Any = None


def load_run_data(
    config: DPOConfig,
    train_dataset: Any,
    eval_dataset: Any,
    device: torch.device,
    echo: Callable[[str], None],
    is_main: bool = True,
    world_size: int = 1,
    turn: Turn | None = None,
) -> RunData:
    """Read and validate every file before any model loads; tokenize; check the reward
    function and the online labeller on a couple of prompts. ``turn``: under torchrun, whether
    this process tokenizes for its node or reads what its node's first process cached."""
    columns = Columns(
        config.prompt_column,
        config.chosen_column,
        config.rejected_column,
        prompt_required=config.prompt_column != "prompt",
        system=config.system_column,
    )
    train_dataset = python_source(train_dataset, "train_dataset")
    streamed = (is_stream(train_dataset) or config.dataset_streaming) and not config.online
    if is_stream(train_dataset) and config.online:
        train_dataset = stream_head(train_dataset, config, echo)
    named_evals = _named_eval_sets(config, eval_dataset)
    eval_dataset = None if named_evals else python_source(eval_dataset, "eval_dataset")
    if config.dataset_mixture is not None and train_dataset is not None:
        raise ConfigError("dataset_mixture and train_dataset are both given: choose one")
    source = train_dataset if train_dataset is not None else config.train_file
    # how messages name them: a file by its path, rows from Python by the argument
    # (both were "rows: ...", whether the train or the eval rows lacked a column)
    names: dict[str, str | None] = {
        "train": _argument_name(train_dataset, "train_dataset"),
        "eval": _argument_name(eval_dataset, "eval_dataset"),
    }
    if source is None and config.dataset_name:
        source = load_named_dataset(config, "dataset_train_split", required="training")
        names["train"] = f"{config.dataset_name}[{config.dataset_train_split}]"
        if (
            eval_dataset is None
            and not named_evals
            and not config.eval_file
            and config.eval_strategy != "no"
        ):
            eval_dataset = load_named_dataset(
                config, "dataset_test_split", required=_evaluation_asked(config)
            )
            names["eval"] = f"{config.dataset_name}[{config.dataset_test_split}]"
    skip = config.skip_invalid_rows
    train_data: Any = None
    eval_data: dict[str, PreferenceData] = {}
    refused: list[DataError] = []  # the train file's and eval files' bad rows, said together
    if source is not None and not (config.online and not _has_pairs(source, columns, skip)):
        with _collected(refused):
            plan = stream_plan(config, world_size, echo) if streamed else None
            train_data = load_preferences(
                source, _kept(columns, train=True, config=config), skip_invalid_rows=skip,
                name=names["train"],
                max_pairs=plan.pairs if plan is not None else None,
            )  # fmt: skip
            if plan is not None:
                echo(plan.said(len(train_data)))
            echo(f"train: {train_data.summary()}")
    elif config.dataset_mixture is not None:
        with _collected(refused):  # (its bad rows were said alone: the eval file's next run)
            kept = _kept(columns, train=True, config=config, held_out=True)
            train_data, test = _mixture(config, kept, eval_dataset or named_evals or None, echo)
            eval_data = {"": test} if test is not None else {}
    if named_evals:
        for set_name, (eval_source, label) in named_evals.items():
            with _collected(refused):
                eval_data[set_name] = _held_out_pairs(
                    eval_source,
                    _kept(columns, held_out=True, config=config, read_by=train_data),
                    config,
                    label,
                    echo,
                )
                echo(f"eval {set_name}: {eval_data[set_name].summary()}")
    elif eval_dataset is not None or config.eval_file:
        with _collected(refused):
            eval_data[""] = _held_out_pairs(
                eval_dataset if eval_dataset is not None else config.eval_file,
                _kept(columns, held_out=True, config=config, read_by=train_data),
                config,
                names["eval"],
                echo,
            )
            echo(f"eval: {eval_data[''].summary()}")
    if refused:  # one line: a bad eval file was said only once the train file was fixed
        raise _joined(refused)
    location = config.tokenizer_location
    processor = load_processor(config.tokenizer_path, config.trust_remote_code, location)
    if processor is not None and config.online:
        raise ConfigError(
            "online DPO with a vision-language model is not supported yet (rounds sample text "
            "prompts only); train offline on image pairs"
        )
    tokenizer = (
        load_tokenizer(config.tokenizer_path, config.trust_remote_code, location)
        if processor is None
        else processor.tokenizer
    )
    if config.chat_template:
        replace_chat_template(config.chat_template, tokenizer, processor)
    if config.system_column and not (
        getattr(tokenizer, "chat_template", None) or getattr(processor, "chat_template", None)
    ):  # else each row would be refused as "conversational", which a text file is not
        raise ConfigError(
            f"system_column '{config.system_column}' makes each prompt a conversation (a system "
            "turn, then the prompt as the user turn), which needs a chat template, and the "
            "tokenizer has none: give one with the chat_template option, or leave "
            "system_column unset to train on the prompts as texts"
        )
    if train_data is not None and writes_todays_date(tokenizer, config, train_data):
        echo(
            "note: the chat template writes today's date into each prompt (strftime_now, as "
            "Llama 3.1+ templates do), so a resume on another day sees other prompts and is "
            "refused; pin it with chat_template_kwargs: {date_string: '26 Jul 2024'}"
        )
    train = PairSet([], [])
    progress = is_main and not config.disable_tqdm
    stops = _stop_ids(config) if train_data is not None or eval_data else []
    if train_data is not None:
        with _collected(refused):  # (rows refused when tokenized: every file's said together)
            train = _tokenize(
                train_data, tokenizer, config, "train", echo, processor, progress, stops, turn
            )
            train.streamed = streamed
    evaluations = {}
    for set_name, data in eval_data.items():
        with _collected(refused):
            evaluations[set_name] = _tokenize(
                data, tokenizer, config, f"eval {set_name}".strip(), echo, processor, progress,
                stops, turn,
            )  # fmt: skip
    if refused:
        raise _joined(refused)
    held_out = _held_out_prompts(config, [data.examples for data in eval_data.values()])
    kwargs = config.chat_template_kwargs  # a file's prompts are not rendered until sampled:
    if config.eval_prompts_file:  # a prompt the template refuses is said before training
        label = f"eval_prompts_file {config.eval_prompts_file}"
        check_prompts(tokenizer, held_out[0], label, processor, kwargs)
    data = RunData(
        tokenizer=tokenizer,
        processor=processor,
        pad_id=pad_token_id(tokenizer),
        train_data=train_data,
        train=train,
        evaluations=evaluations,
        eval_prompts=held_out[0],
        eval_rows=held_out[1],
        reward_fn=load_reward_fn(config.reward_fn) if config.reward_fn else None,
    )
    if data.reward_fn is not None:
        check_reward_fn(
            data.reward_fn, data.eval_prompts, data.eval_rows, tokenizer, config.max_steps
        )
    if config.online:
        data.online_prompts, data.online_rows = _online_prompts(config, source, train_data, echo)
        where = str(config.prompt_file or source or train_data.source)
        label = f"prompt_file {config.prompt_file}" if config.prompt_file else f"train {where}"
        check_prompts(tokenizer, data.online_prompts, label, None, kwargs)
        data.train_data = train_data or OnlineData(len(data.online_prompts), where)
        data.labeller = load_labeller(config, device)
        args = (data.online_prompts, data.online_rows, tokenizer, config.max_steps)
        check_labeller(data.labeller, *args)
    if isinstance(data.train_data, PreferenceData):
        # only its summary is read from here on (the model card): the validated rows, texts
        # and all (about 1.4x the file: 400-600 MB for 100k pairs), would otherwise stay in
        # memory while the models load and the reference pass runs
        data.train_data = DataSummary(data.train_data.summary())
    train_data = eval_data = None  # (the last references to the rows: their texts freed here)
    give_back_freed_memory()
    return data


def give_back_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``). The rows' texts
    freed above stay in the main thread's malloc arena, which returns nothing from the middle
    of its heap: 20k chat rows kept 483 of 489 MB once dropped (381 MB trimmed), and 200k about
    a GB in every process of a node for the whole run. Elsewhere (macOS, musl) nothing."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # no glibc (TypeError: Windows' CDLL(None))
        return
    trim(0)


@dataclass(frozen=True)
class DataSummary:
    """What the model card says of a run's pairs, once they are tokenized."""

    text: str

    def summary(self) -> str:
        return self.text


def _mixture(
    config: DPOConfig,
    columns: Columns,
    eval_dataset: Any,
    echo: Callable[[str], None],
) -> tuple[PreferenceData, PreferenceData | None]:
    """dataset_mixture's training pairs, and its held-out ones (test_split_size) unless
    eval_strategy is no (they are then held out of training, unevaluated, as in TRL)."""
    mixed = load_mixture(
        config.dataset_mixture or {}, columns, skip_invalid_rows=config.skip_invalid_rows,
        echo=echo,
    )  # fmt: skip
    echo(f"train: {mixed.train.summary()}")
    if mixed.test is None:
        return mixed.train, None
    if eval_dataset is not None:
        raise ConfigError(
            "dataset_mixture's test_split_size and eval_dataset both give held-out pairs: keep one"
        )
    if config.eval_strategy == "no":
        echo(f"eval: {len(mixed.test)} held-out pairs not evaluated (eval_strategy: no)")
        return mixed.train, None
    test = mixed.test
    if config.max_eval_samples is not None:  # the split is made whole (the handbook's rows)
        test = PreferenceData(test.examples[: config.max_eval_samples], test.layout, test.source)
    echo(f"eval: {test.summary()}")
    return mixed.train, test


def _kept(
    columns: Columns,
    *,
    config: DPOConfig,
    train: bool = False,
    held_out: bool = False,
    read_by: PreferenceData | None = None,
) -> Columns:
    """``columns`` keeping each row's other columns only for the pairs whose prompts a
    reward_fn or labeller is given with them: online rounds' (the train pairs', without
    prompt_file) and eval_generate's (the held-out pairs', without eval_prompts_file).
    ``read_by``: the train pairs these columns read, which a held-out file's refusal names."""
    online = train and config.online and not config.prompt_file
    sampled = held_out and bool(config.eval_generate) and not config.eval_prompts_file
    source = read_by.source if read_by is not None else columns.read_by
    return replace(columns, other_columns=online or sampled, read_by=source)


def _held_out_pairs(
    source: Any, columns: Columns, config: DPOConfig, name: str | None, echo: Callable[[str], None]
) -> PreferenceData:
    """An eval set's pairs: its first max_eval_samples rows only, the rest never read. A stream
    was read whole before the first step, so an endless one never ended; without the option
    that is said."""
    if is_stream(source) and config.max_eval_samples is None:
        echo(
            f"{name or 'eval_dataset'}: a stream (IterableDataset) without max_eval_samples: it is "
            "read whole before the first step (an endless one never ends: set max_eval_samples)"
        )
    return load_preferences(
        source, columns, skip_invalid_rows=config.skip_invalid_rows, name=name,
        max_pairs=config.max_eval_samples,
    )  # fmt: skip


def _tokenize(
    data: Any,
    tokenizer: Any,
    config: DPOConfig,
    name: str,
    echo: Callable[[str], None],
    processor: Any = None,
    progress: bool = False,
    stop_ids: list[int] | None = None,
    turn: Turn | None = None,
) -> PairSet:
    options = {
        "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length,
        "max_completion_length": config.max_completion_length,
        "skip_invalid_rows": config.skip_invalid_rows,
        "chat_template_kwargs": config.chat_template_kwargs,
        "stop_ids": list(stop_ids or ()),
        "assistant_only_loss": config.assistant_only_loss,
    }

    cached = config.cache_tokenized and processor is None  # (the others read the leader's)
    processes = tokenizing_processes(config.dataset_num_proc, turn, alone=cached)

    def tokenize() -> TokenizedData:
        return tokenize_preferences(
            data, tokenizer, **options, processor=processor,
            progress=f"tokenize {name}" if progress else None, num_proc=processes,
        )  # fmt: skip

    if cached:
        limit = int(config.cache_tokenized_max_gb * 1e9)
        wait_for_leader(turn, name)  # (torchrun: the node's first process tokenizes and caches)
        with leading(turn, name):
            tokenized = cached_tokenization(data, tokenizer, options, tokenize, echo, name, limit)
    else:
        tokenized = tokenize()
    echo(f"{name}: {tokenized.summary()}")
    others = [
        (example.where, role)
        for example in data.examples
        for role in [others_turn(example.chosen) or others_turn(example.rejected)]
        if role
    ]
    if others:  # said once, with what the run does with them
        echo(_others_note(name, others, config.assistant_only_loss))
    elif config.assistant_only_loss and name == "train":  # (an option that does nothing)
        echo(
            "note: train: assistant_only_loss changes nothing: no completion holds a message "
            "the model does not write (a tool's result, a user turn)"
        )
    starved, completions = tokenized.starved_completions(), 2 * len(tokenized.pairs)
    if completions and starved > completions / 10:  # a few are normal; many waste the run
        limit = short_completion_limit(config.max_length or 0)
        echo(
            f"warning: {name}: {starved} of {completions} completions keep under {limit:g} "
            f"tokens because their prompt fills max_length {config.max_length}; DPO learns little "
            "from them: raise max_length, set max_prompt_length (prompts are cut from the left), "
            "or drop such rows"
        )
    return PairSet(tokenized.pairs, tokenized.sources)


def _others_note(name: str, others: list[tuple[str, str]], assistant_only: bool) -> str:
    """The start note on completions holding turns the model does not write: what the run
    does with their tokens. ``others``: (row, role of the first such turn) of each pair."""
    whose = "pair's" if len(others) == 1 else "pairs'"
    messages = [where for where, role in others if role != "Human"]  # (not an HH text's turn)
    if assistant_only and len(messages) == len(others):
        done = "their tokens are left out of the log-probs (assistant_only_loss)"
    elif assistant_only:
        done = (
            f"those of {len(others) - len(messages)} text completions (an HH transcript's "
            "'Human' turn) train as the policy's own, as assistant_only_loss finds turns in "
            "messages only: end each text completion before its next 'Human:' turn"
        )
    else:
        done = (
            "their tokens train as the policy's own (as in TRL); set assistant_only_loss true to "
            "score only its replies"
        )
    return (
        f"note: {name}: {len(others)} {whose} completions hold messages the model does not "
        f"write (first: {others[0][0]}, a '{others[0][1]}' message): {done}"
    )


def _stop_ids(config: DPOConfig) -> list[int]:
    """The policy's generation stop tokens (its end-of-turn), where completions end: the model
    folder's, else (an adapter folder) its base's, else its tokenizer folder's."""
    path = config.model_name_or_path or ""
    places = [(path, model_location(config.model_init_kwargs))]
    base = adapter_base(path) if os.path.isdir(path) else None
    if base:
        # (a hub id on an offline machine: its cache at once, not ~45 s of the hub's retries)
        cache_only_where_unreachable(base)
        places.append((base, {}))
    places.append((config.tokenizer_path, config.tokenizer_location))
    for where, location in places:
        found = generation_stop_ids(where, location, config.trust_remote_code) if where else []
        if found:
            return found
    return []


def _named_eval_sets(config: DPOConfig, eval_dataset: Any) -> dict[str, tuple[Any, str]]:
    """Named eval sets, each (source, label), as transformers' Trainer takes an ``eval_dataset``
    dict (a DatasetDict of several splits too: TRL's scripts pass one), or from eval_file's
    mapping {name: file(s)}; empty for one unnamed set."""
    refuse_column_dict(eval_dataset, "eval_dataset")
    if isinstance(eval_dataset, dict) and not (
        len(eval_dataset) == 1 and type(eval_dataset).__name__ == "DatasetDict"
    ):  # (a DatasetDict of one split is that split, unnamed, as for train_dataset)
        if not eval_dataset:
            raise ConfigError("eval_dataset is an empty dict: give it at least one named set")
        sets = {}
        for set_name, value in eval_dataset.items():
            where = f"eval_dataset[{set_name!r}]"
            if not (isinstance(set_name, str) and set_name.replace("-", "_").isidentifier()):
                raise ConfigError(
                    f"{where}: a set name must be a word of letters, digits, _ or - (it "
                    f"becomes part of metric names: eval/<name>_loss)"
                )
            if isinstance(value, dict):
                raise ConfigError(f"{where}: a set is rows, a path or a Dataset, not a dict")
            source = python_source(value, where)
            sets[set_name] = (source, _argument_name(source, where))
        return sets
    if isinstance(config.eval_file, dict):
        if eval_dataset is not None:
            raise ConfigError("eval_file and eval_dataset both give held-out pairs: keep one")
        return {set_name: (paths, None) for set_name, paths in config.eval_file.items()}
    return {}


def _argument_name(source: Any, name: str) -> str | None:
    """``name`` for rows given from Python; None for a path or paths, which name themselves."""
    if source is None or isinstance(source, str | os.PathLike) or is_path_list(source):
        return None
    return name


def _has_pairs(source: Any, columns: Columns, skip_invalid_rows: bool = False) -> bool:
    """Whether online DPO's train source holds pairs, not only prompts (which it also takes).
    A source of both is refused: its pairs would silently train as prompts, or its prompts be
    refused as pairs missing a field, depending on which came first. With skip_invalid_rows,
    any pair makes it a source of pairs (rows without one are skipped as invalid)."""
    if isinstance(source, list | tuple) and source and isinstance(source[0], str):  # files
        kinds = {path: _has_pairs(path, columns, skip_invalid_rows) for path in source}
        if len(set(kinds.values())) > 1:
            paired = next(path for path, pairs in kinds.items() if pairs)
            prompts = next(path for path, pairs in kinds.items() if not pairs)
            raise DataError(
                f"train_file: {paired} holds pairs but {prompts} only prompts: give online "
                "DPO's prompts-only files as prompt_file"
            )
        return all(kinds.values())
    if isinstance(source, list | tuple) and not source:
        return False
    if not isinstance(source, str | list | tuple):  # a Dataset, IterableDataset, DataFrame
        names = getattr(source, "column_names", None) or list(getattr(source, "columns", []))
        if names:
            return columns.chosen in names
        # an IterableDataset of unknown features (from a generator): its rows say
    if isinstance(source, list | tuple):
        rows = list(enumerate(source, 1))
    else:
        rows = read_rows(source, None if isinstance(source, str) else "train_dataset")
    paired = [where for where, row in rows if columns.chosen in row]
    if paired and len(paired) < len(rows) and not skip_invalid_rows:
        alone = next(where for where, row in rows if columns.chosen not in row)
        label = source if isinstance(source, str) else "train_dataset"
        raise DataError(
            f"{label}: {_place(alone)} has no '{columns.chosen}' but {_place(paired[0])} "
            "has: a train file holds pairs, or (for online DPO) only prompts"
        )
    return bool(paired)


@contextlib.contextmanager
def _collected(refused: list[DataError]) -> Iterator[None]:
    """The DataError of the source read inside added to ``refused``, so that the next source is
    read too and every file's bad rows are said in one pass."""
    try:
        yield
    except DataError as error:
        refused.append(error)


def _joined(refused: list[DataError]) -> DataError:
    """One error of every source's; a file given as train and eval file is said once. A stream
    read only so far (dataset_streaming) counts fewer of the file's bad rows than the whole
    read of it as eval file: the read that counts more is said."""
    said: dict[Any, tuple[int, str]] = {}
    for error in refused:
        key: Any = str(error)
        count = 0
        if isinstance(error, RowsRefused):  # (the same source read twice: the same first row)
            key, count = (error.label, error.first), error.count
        if key not in said or count > said[key][0]:
            said[key] = (count, str(error))
    return DataError("; ".join(hint_once([text for _, text in said.values()])))


def _place(where: str | int) -> str:
    return f"row {where}" if isinstance(where, int) else where


def _online_prompts(
    config: DPOConfig, source: Any, train_data: PreferenceData | None, echo: Callable[[str], None]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Online rounds' prompts and their rows' other columns (for the labeller): prompt_file's,
    else the train file's (its pairs' prompts, or a prompts-only file's)."""
    if config.prompt_file:
        prompts, rows = load_prompt_rows(
            config.prompt_file, config.prompt_column, config.system_column
        )
    elif train_data is not None:  # a pairs file: its rows' other columns too, as a prompt file's
        prompts, rows = distinct_example_prompts(train_data.examples)
    else:
        prompts, rows = load_prompt_rows(source, config.prompt_column, config.system_column)
    echo(f"online: {counted(len(prompts), 'prompt')}")
    return prompts, rows


def _held_out_prompts(
    config: DPOConfig, example_sets: list[list[Any]]
) -> tuple[list[Any], list[dict]]:
    """The first ``eval_generate`` distinct held-out prompts (none when sampling is off), of
    each eval set in turn, and their rows' other columns (eval_prompts_file's; for reward_fn)."""
    if not config.eval_generate:
        return [], []
    if config.eval_prompts_file:
        prompts, rows = load_prompts(
            config.eval_prompts_file, config.prompt_column, config.system_column
        )
    else:
        prompts, rows = prompts_in_turn(example_sets)
    return prompts[: config.eval_generate], rows[: config.eval_generate]


def _evaluation_asked(config: DPOConfig) -> str | None:
    """The option that asks for evaluations of held-out pairs, when dataset_name's test split is
    their only source: a missing split is then an error, not a run that never evaluates. A split
    named other than the default "test" is asked for by that name (TRL's script fails on it too)."""
    if config.eval_generate and not config.eval_prompts_file:
        return "the held-out prompts eval_generate samples"
    if not config.eval_generate:  # with it sampled completions are evaluated: split optional
        for key in (
            "eval_steps",
            "eval_delay",
            "eval_on_start",
            "load_best_model_at_end",
            "early_stopping_patience",
        ):
            if getattr(config, key):
                return f"the evaluations {key} asks for"
        if config.eval_strategy in ("steps", "epoch"):
            return f"the evaluations eval_strategy: {config.eval_strategy} asks for"
    if config.dataset_test_split != DPOConfig.__dataclass_fields__["dataset_test_split"].default:
        return "the held-out pairs dataset_test_split names"
    return None
