"""A run's pairs tokenized (cached, or by the node's first process under torchrun) with the
notes said once at start: completions holding turns the model does not write, completions their
prompt left starved; and the stop tokens where completions end."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from directpo.adapters import adapter_base
from directpo.callers import spell_change, spell_setting
from directpo.config import DPOConfig
from directpo.hub import cache_only_where_unreachable
from directpo.messages import others_turn
from directpo.model_files import model_location
from directpo.node_tokenizing import Turn, leading, tokenizing_processes, wait_for_leader
from directpo.pair_truncation import short_completion_limit
from directpo.sources import PairSet
from directpo.stops import generation_stop_ids
from directpo.token_cache import cached_tokenization
from directpo.tokenization import tokenize_preferences
from directpo.tokenized_data import TokenizedData


def tokenize_set(
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
            f"from them: {spell_change('raise', 'max_length')}, "
            f"{spell_setting('max_prompt_length')} (prompts are cut from the left), or drop such "
            "rows"
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
            "their tokens train as the policy's own (as in TRL); "
            f"{spell_setting(('assistant_only_loss', True))} to score only its replies"
        )
    return (
        f"note: {name}: {len(others)} {whose} completions hold messages the model does not "
        f"write (first: {others[0][0]}, a '{others[0][1]}' message): {done}"
    )


def run_stop_ids(config: DPOConfig) -> list[int]:
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
