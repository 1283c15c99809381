"""What a training run reads before any model loads: its pairs (or online prompts), held-out
sets, tokenizer or processor, chat template, reward function and online labeller, each checked
and tokenized (``load_run_data`` -> ``RunData``)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from directpo.chat_templates import (
    generation_header,
    no_generation_prompt_note,
    replace_chat_template,
    writes_todays_date,
)
from directpo.config import DPOConfig
from directpo.data import load_preferences
from directpo.data_sources import (
    load_named_dataset,
    python_source,
)
from directpo.errors import ConfigError, DataError
from directpo.generate import check_prompts
from directpo.labellers import check_labeller, load_labeller
from directpo.node_tokenizing import Turn
from directpo.online import OnlineData
from directpo.preference_pairs import Columns, PreferenceData
from directpo.rewardfn import check_reward_fn, load_reward_fn
from directpo.run_sources import (
    argument_name,
    collected,
    evaluation_asked,
    has_pairs,
    held_out_pairs,
    joined,
    kept_columns,
    mixture_pairs,
    named_eval_sets,
    read_held_out_prompts,
    read_online_prompts,
)
from directpo.run_tokenizing import run_stop_ids, tokenize_set
from directpo.sources import PairSet
from directpo.stream_reads import is_stream, stream_head, stream_plan
from directpo.tokenizer_loading import load_processor, load_tokenizer, pad_token_id


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


@dataclass
class _Sources:
    """Where a run's pairs come from, as ``_find_sources`` resolves the arguments and options."""

    columns: Columns
    train: Any  # train_dataset, dataset_name's train split, or train_file (None: none)
    eval: Any  # eval_dataset, or dataset_name's test split (None: eval_file, named sets, none)
    named_evals: dict[str, Any]  # eval_file's (or eval_dataset's) named sets: (source, label)
    # how messages name them: a file by its path, rows from Python by the argument
    # (both were "rows: ...", whether the train or the eval rows lacked a column)
    names: dict[str, str | None]
    streamed: bool
    from_hub: set[str] = field(default_factory=set)  # the sets dataset_name loads: what to
    # drop tied rows from


@dataclass
class _Rows:
    """The validated rows read (texts and all: dropped once tokenized and summarised)."""

    train: Any = None  # PreferenceData (None: no pairs, online prompts alone)
    evals: dict[str, PreferenceData] = field(default_factory=dict)  # by set name


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
    sources = _find_sources(config, train_dataset, eval_dataset, echo)
    # the tokenizer before the rows where it may refuse the options (system_column without a
    # chat template, a processor for an online run): said once every row was read (21 s for
    # 60k rows), they need no row. Else after them: a bad row is said before any tokenizer
    # loads (from the hub, maybe)
    refusing = config.system_column is not None or config.online
    first = _load_tokenizer(config) if refusing else None
    rows = _read_pairs(config, sources, world_size, echo)
    # the files of prompts read (their bad rows said) before any row is tokenized: a bad
    # prompt_file was said after the train file's tokenization (minutes for 100k pairs);
    # checked against the chat template once the tokenizer is at hand
    held_out = _read_eval_prompts(config, rows)
    online = (
        _read_online_prompts(config, sources.train, rows.train, echo) if config.online else None
    )
    tokenizer, processor = first or _load_tokenizer(config)
    if rows.train is not None and writes_todays_date(tokenizer, config, rows.train):
        echo(TODAYS_DATE_NOTE)
    if rows.train is not None and (header := generation_header(tokenizer, config, rows.train)):
        echo(no_generation_prompt_note(header))
    progress = is_main and not config.disable_tqdm
    train, evaluations = _tokenize_pairs(
        config, rows, tokenizer, processor, echo,
        streamed=sources.streamed, progress=progress, turn=turn,
    )  # fmt: skip
    eval_prompts, eval_rows = _held_out_prompts(config, held_out, tokenizer, processor, echo)
    data = RunData(
        tokenizer=tokenizer,
        processor=processor,
        pad_id=pad_token_id(tokenizer),
        train_data=rows.train,
        train=train,
        evaluations=evaluations,
        eval_prompts=eval_prompts,
        eval_rows=eval_rows,
        reward_fn=load_reward_fn(config.reward_fn) if config.reward_fn else None,
    )
    if data.reward_fn is not None:
        check_reward_fn(
            data.reward_fn, data.eval_prompts, data.eval_rows, tokenizer, config.max_steps
        )
    if online is not None:
        _online_prompts_and_labeller(config, data, online, sources.train, rows.train, device, echo)
    if isinstance(data.train_data, PreferenceData):
        # only its summary is read from here on (the model card): the validated rows, texts
        # and all (about 1.4x the file: 400-600 MB for 100k pairs), would otherwise stay in
        # memory while the models load and the reference pass runs
        data.train_data = DataSummary(data.train_data.summary())
    rows = None  # (the last references to the rows: their texts freed here)
    give_back_freed_memory()
    return data


def _find_sources(
    config: DPOConfig, train_dataset: Any, eval_dataset: Any, echo: Callable[[str], None]
) -> _Sources:
    """The train and eval sources: train()'s datasets, dataset_name's splits, or the files."""
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
    named_evals = named_eval_sets(config, eval_dataset)
    eval_dataset = None if named_evals else python_source(eval_dataset, "eval_dataset")
    if config.dataset_mixture is not None and train_dataset is not None:
        raise ConfigError("dataset_mixture and train_dataset are both given: choose one")
    sources = _Sources(
        columns=columns,
        train=train_dataset if train_dataset is not None else config.train_file,
        eval=eval_dataset,
        named_evals=named_evals,
        names={
            "train": argument_name(train_dataset, "train_dataset"),
            "eval": argument_name(eval_dataset, "eval_dataset"),
        },
        streamed=streamed,
    )
    if sources.train is None and config.dataset_name:
        _load_named_splits(config, sources)
    return sources


def _load_named_splits(config: DPOConfig, sources: _Sources) -> None:
    """dataset_name's train split, and its test split where held-out pairs are asked for and
    no other eval source is given."""
    sources.train = load_named_dataset(config, "dataset_train_split", required="training")
    sources.names["train"] = f"{config.dataset_name}[{config.dataset_train_split}]"
    sources.from_hub.add("train")
    if (
        sources.eval is None
        and not sources.named_evals
        and not config.eval_file
        and config.eval_strategy != "no"
    ):  # (the test split named as the train split too: preflight's same_split)
        sources.eval = load_named_dataset(
            config, "dataset_test_split", required=evaluation_asked(config)
        )
        sources.names["eval"] = f"{config.dataset_name}[{config.dataset_test_split}]"
        sources.from_hub.add("eval")


def _read_pairs(
    config: DPOConfig, sources: _Sources, world_size: int, echo: Callable[[str], None]
) -> _Rows:
    """The train pairs (or dataset_mixture's) and every held-out set, validated; the bad rows
    of every file refused together, in one error."""
    columns, skip = sources.columns, config.skip_invalid_rows
    rows = _Rows()
    refused: list[DataError] = []  # the train file's and eval files' bad rows, said together
    source = sources.train
    if source is not None and not (config.online and not has_pairs(source, columns, skip)):
        with collected(refused):
            plan = stream_plan(config, world_size, echo) if sources.streamed else None
            rows.train = load_preferences(
                source, kept_columns(columns, train=True, config=config), skip_invalid_rows=skip,
                name=sources.names["train"],
                max_pairs=plan.pairs if plan is not None else None,
            )  # fmt: skip
            if "train" in sources.from_hub:  # (a Python caller was told to filter 'the Dataset')
                rows.train.source_kind = "hub"
            if plan is not None:
                echo(plan.said(len(rows.train)))
            echo(f"train: {rows.train.summary()}")
    elif config.dataset_mixture is not None:
        with collected(refused):  # (its bad rows were said alone: the eval file's next run)
            kept = kept_columns(columns, train=True, config=config, held_out=True)
            rows.train, test = mixture_pairs(
                config, kept, sources.eval or sources.named_evals or None, echo
            )
            rows.evals = {"": test} if test is not None else {}
    _read_held_out(config, sources, rows, refused, echo)
    if refused:  # one line: a bad eval file was said only once the train file was fixed
        raise joined(refused)
    return rows


def _read_held_out(
    config: DPOConfig,
    sources: _Sources,
    rows: _Rows,
    refused: list[DataError],
    echo: Callable[[str], None],
) -> None:
    """The held-out sets into ``rows.evals`` (named sets, or the one eval source); their bad
    rows collected in ``refused``, said with the train file's."""
    columns = sources.columns
    if sources.named_evals:
        for set_name, (eval_source, label) in sources.named_evals.items():
            with collected(refused):
                kept = kept_columns(columns, held_out=True, config=config, read_by=rows.train)
                rows.evals[set_name] = held_out_pairs(eval_source, kept, config, label, echo)
                echo(f"eval {set_name}: {rows.evals[set_name].summary()}")
    elif sources.eval is not None or config.eval_file:
        with collected(refused):
            rows.evals[""] = held_out_pairs(
                sources.eval if sources.eval is not None else config.eval_file,
                kept_columns(columns, held_out=True, config=config, read_by=rows.train),
                config,
                sources.names["eval"],
                echo,
            )
            if "eval" in sources.from_hub:
                rows.evals[""].source_kind = "hub"
            echo(f"eval: {rows.evals[''].summary()}")


TODAYS_DATE_NOTE = (
    "note: the chat template writes today's date into each prompt (strftime_now, as Llama "
    "3.1+ templates do), so a resume on another day sees other prompts and is refused; pin it "
    "with chat_template_kwargs: {date_string: '26 Jul 2024'}"
)


def _load_tokenizer(config: DPOConfig) -> tuple[Any, Any]:
    """The tokenizer and a vision-language model's processor (None for text models), with
    the chat template the options give; (tokenizer, processor)."""
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
    return tokenizer, processor


def _tokenize_pairs(
    config: DPOConfig,
    rows: _Rows,
    tokenizer: Any,
    processor: Any,
    echo: Callable[[str], None],
    *,
    streamed: bool,
    progress: bool,
    turn: Turn | None,
) -> tuple[PairSet, dict[str, PairSet]]:
    """The train pairs and every held-out set tokenized; rows refused when tokenized, every
    file's, said together. Returns (train, evaluations by set name)."""
    refused: list[DataError] = []
    train = PairSet([], [])
    stops = run_stop_ids(config) if rows.train is not None or rows.evals else []
    if rows.train is not None:
        with collected(refused):  # (rows refused when tokenized: every file's said together)
            train = tokenize_set(
                rows.train, tokenizer, config, "train", echo, processor, progress, stops, turn
            )
            train.streamed = streamed
    evaluations = {}
    for set_name, data in rows.evals.items():
        with collected(refused):
            evaluations[set_name] = tokenize_set(
                data, tokenizer, config, f"eval {set_name}".strip(), echo, processor, progress,
                stops, turn,
            )  # fmt: skip
    if refused:
        raise joined(refused)
    return train, evaluations


# prompts, their rows' other columns, and the rows of a file of prompts they came from
_Prompts = tuple[list[Any], list[dict[str, Any]], list[str]]


def _read_eval_prompts(config: DPOConfig, rows: _Rows) -> _Prompts:
    """eval_generate's prompts and their rows' other columns, read (no tokenizer)."""
    places: list[str] = []  # eval_prompts_file's rows, named by its special tokens' note
    examples = [data.examples for data in rows.evals.values()]
    return (*read_held_out_prompts(config, examples, places), places)


def _read_online_prompts(
    config: DPOConfig, source: Any, train_data: Any, echo: Callable[[str], None]
) -> _Prompts:
    """Online rounds' prompts and their rows' other columns, read (no tokenizer)."""
    places: list[str] = []  # (a file of prompts' rows; a pairs file's were noted as its pairs)
    return (*read_online_prompts(config, source, train_data, echo, places), places)


def _held_out_prompts(
    config: DPOConfig, read: _Prompts, tokenizer: Any, processor: Any, echo: Callable[[str], None]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """eval_generate's prompts and their rows' other columns; a file's prompts checked
    against the chat template before training (they are not rendered until sampled)."""
    *held_out, places = read
    if config.eval_prompts_file:  # a prompt the template refuses is said before training
        label = f"eval_prompts_file {config.eval_prompts_file}"
        kwargs = config.chat_template_kwargs
        check_prompts(tokenizer, held_out[0], label, processor, kwargs, places, echo)
    return held_out[0], held_out[1]


def _online_prompts_and_labeller(
    config: DPOConfig,
    data: RunData,
    read: _Prompts,
    source: Any,
    train_data: Any,
    device: torch.device,
    echo: Callable[[str], None],
) -> None:
    """Online rounds' prompts (and their rows' other columns, ``_read_online_prompts``'s), checked
    against the chat template, and the labeller loaded and tried on them."""
    data.online_prompts, data.online_rows, places = read
    where = str(config.prompt_file or source or train_data.source)
    label = f"prompt_file {config.prompt_file}" if config.prompt_file else f"train {where}"
    noted = echo if config.prompt_file or train_data is None else None
    kwargs = config.chat_template_kwargs
    check_prompts(data.tokenizer, data.online_prompts, label, None, kwargs, places or None, noted)
    data.train_data = train_data or OnlineData(len(data.online_prompts), where)
    checked = (data.online_prompts, label, places or None)
    data.labeller = load_labeller(config, device, checked, echo)
    args = (data.online_prompts, data.online_rows, data.tokenizer, config.max_steps)
    check_labeller(data.labeller, *args)
    if data.reward_fn is None:  # a reward model (or implicit one) alone: eval_generate's
        # eval/reward is the labeller's, where it logged none (the model trained on is the
        # reward the held-out samples are judged by; reward_fn, when set, stays eval/reward)
        data.reward_fn = data.labeller


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
