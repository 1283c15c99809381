"""A data file of another trainer's format, said by what it is where no column option reads it.

A file without ``chosen`` / ``rejected`` was told "column 'chosen' not found; set chosen_column /
rejected_column", which no column setting fixes when the file holds no pair at all: TRL's
KTOTrainer's unpaired rows (prompt, completion, label), SFTTrainer's conversations (messages),
text (text) or prompt-completion rows, GRPOTrainer's prompts alone, several replies per prompt
in one column (Nectar's ranked answers, directpo rank's output), Anthropic's red-team
transcripts. Such a file is said by its
columns, with what DPO needs and what to do. Rows that ARE pairs under other names
(``response_a`` / ``response_b`` beside a ``winner``) are said so: a rename reads them only where
the first one is always the preferred one, so the column hint stays only where no column says
which one won. (directpo builds no pairs from KTO rows: which undesirable reply to pair with
which desirable one is the user's choice, said, not made.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from directpo.callers import said, spell_command, spell_name, spell_options

NEEDS = "DPO needs a chosen and a rejected reply per prompt"
WRITE_PAIRS = "write rows of prompt, chosen, rejected"
# suffixes of two columns holding a pair's replies under one stem (response_a / response_b,
# PKU-SafeRLHF's response_0 / response_1, SHP's human_ref_A / human_ref_B)
PAIR_SUFFIXES = (("a", "b"), ("A", "B"), ("0", "1"), ("1", "2"))
# a column saying which of the two replies won (winner, better_response_id, labels, preference)
CHOICE = re.compile(r"winner|prefer|better|label|choice", re.IGNORECASE)
KTO_COLUMNS = ("prompt", "completion", "label")
# the columns beside a prompt in GRPO's prompt-only datasets (a reward function's reference
# answer, an id): any other column may be a reply under another name, told the column hint
PROMPT_EXTRAS = {"answer", "solution", "ground_truth", "id", "image", "images", "system", "tools"}
REPLY_LIKE = {"answer", "solution", "ground_truth"}  # to score or rank: maybe the response
# a list of a prompt's replies in one column: Nectar's answers (each with its rank),
# UltraFeedback's raw completions (with their ratings), directpo generate's completions and
# rank's responses / ranked; which two of them make a pair is the user's choice, said, not made
CANDIDATE_COLUMNS = ("answers", "completions", "responses", "ranked", "generations", "candidates")
RANK_READS = ("responses", "completions")  # rank's default column, and TRL's name for it


def paired_replies(names: Sequence[str]) -> tuple[str, str] | None:
    """Two columns of one stem, one ending in a and the other in b (or 0 / 1, 1 / 2)."""
    for first, second in PAIR_SUFFIXES:
        for name in names:
            stem = name[: -len(first)]
            if name.endswith(first) and stem and stem[-1] in "_-" and stem + second in names:
                return name, stem + second
    return None


def other_format(names: Sequence[Any], prompt: str = "prompt") -> str | None:
    """What a file of columns ``names`` holds and what to do, where it is another trainer's
    format rather than pairs under other column names (None: not one known here)."""
    names = [str(name) for name in names]
    has = set(names)
    if any(word in name.lower() for name in names for word in ("chosen", "rejected")):
        return None  # (a pair's column under another name: the column hint reads it)
    if set(KTO_COLUMNS) <= has:
        return (
            "unpaired preference rows (prompt, completion, label) as TRL's KTOTrainer reads: "
            f"{NEEDS}"
        )
    pair = paired_replies(names)
    if pair is not None:
        choice = [name for name in names if CHOICE.search(name) and name not in pair]
        columns = ", ".join([*pair, *choice[:1]])
        if choice:
            return (
                f"pairs under other names ({columns}), the preferred reply said by "
                f"'{choice[0]}': {NEEDS} in fixed columns; {WRITE_PAIRS}, each row's "
                "preferred reply as chosen"
            )
        return (
            f"pairs under other names ({columns}) with no column saying which won: set "
            f"chosen_column: {pair[0]}, rejected_column: {pair[1]} if {pair[0]} is always "
            "the preferred reply"
        )
    listed = [name for name in names if name in CANDIDATE_COLUMNS]
    if listed:
        return (
            f"several replies per prompt ({listed[0]}), as Nectar, UltraFeedback's raw rows and "
            f"directpo generate / rank write them: {NEEDS}; {WRITE_PAIRS}, a better-ranked "
            "reply as chosen and a worse one as rejected"
        )
    if "transcript" in has:  # (a red-team attempt: one reply, no second to prefer it to)
        return (
            "one conversation a row (transcript), each rated alone as Anthropic's red-team "
            f"attempts are: {NEEDS}; {WRITE_PAIRS}"
        )
    if {"role", "content"} <= has or {"from", "value"} <= has:
        # (one conversation, a list of messages, read as the file's list of rows: a .json of
        # it, or a .jsonl of one conversation on its one line)
        keys = "role, content" if "role" in has else "from, value"
        return (
            f"messages as rows ({keys}): one conversation, not rows of pairs: {NEEDS}; "
            f"{WRITE_PAIRS}, a conversation's messages in one row's prompt"
        )
    if "conversations" in has and "messages" not in has and prompt not in has:
        # (ShareGPT's SFT rows, LLaMA-Factory's and Vicuna's: no SFT column TRL names, and was
        # "column 'chosen' not found; set chosen_column / rejected_column")
        return (
            "ShareGPT conversations (conversations), as LLaMA-Factory's supervised data holds "
            f"them: {NEEDS}; {WRITE_PAIRS} (messages as role / content, not from / value)"
        )
    sft = (
        "conversations (messages)"
        if "messages" in has
        else "text rows (text)"
        if "text" in has and prompt not in has
        else "prompt-completion rows (prompt, completion)"
        if {prompt, "completion"} <= has
        else None
    )
    if sft is not None:  # (a prompt column is what prompt_file reads: online DPO's prompts)
        online = prompt in has and "messages" not in has
        return f"{sft} as TRL's SFTTrainer reads: {NEEDS}; {WRITE_PAIRS}" + (
            f", or give the prompts as {_online_prompts()} (docs/online.md)" * online
        )
    if prompt in has and has - {prompt} <= PROMPT_EXTRAS:
        return (
            f"prompts alone ({prompt}) as TRL's GRPOTrainer reads: {NEEDS}; give this file as "
            f"{_online_prompts()}, where the pairs are sampled and judged (docs/online.md)"
        )
    return None


def _online_prompts() -> str:
    """prompt_file with online on, as the caller sets them: ``prompt_file with online: true``
    (a recipe), ``--prompt_file with --online``, ``prompt_file=... with online=True`` (every
    caller was told the recipe's keys)."""
    return f"{spell_name('prompt_file')} with {said('online', True)}"


def kto_pairs_note(rows: Iterable[dict[str, Any]], limit: int = 100_000) -> str:
    """Said after a KTO file's refusal: whether a prompt of its (first ``limit``) rows has a
    reply labelled true and one labelled false, which a pair can be written from."""
    labels: dict[str, set[bool]] = {}
    for count, row in enumerate(rows):
        if count >= limit:
            break
        label, prompt = _label(row.get("label")), row.get("prompt")
        if label is not None:
            seen = labels.setdefault(repr(prompt), set())
            seen.add(label)
            if len(seen) == 2:
                return (
                    f"; its prompt {_short(prompt)} has a reply labelled true and one labelled "
                    "false: write such replies as one row's chosen and rejected (directpo does "
                    "not pair them itself: which false reply goes with which true one is yours)"
                )
    return "; no prompt of it has both a true and a false reply, so no pair can be made of it"


def _label(value: Any) -> bool | None:
    """A KTO label as TRL's datasets write it (a bool), or as a CSV or spreadsheet reads it back
    ("True", "false", 1, 0); None for anything else."""
    if isinstance(value, str):
        value = {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    if isinstance(value, int) and value in (0, 1):  # (bool is an int too)
        return bool(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# what score and rank read, said to a file of another trainer's format
COMMAND_ROWS = {
    "score": "score reads a prompt and its response (prompt, response) or a pair (prompt, "
    "chosen, rejected)",
    "rank": "rank reads a prompt and a list of candidate responses (prompt, responses)",
}


def command_rows_fix(names: Sequence[Any], command: str, prompt: str | None) -> str | None:
    """What ``command`` (score, rank) says of a row without its responses where it is another
    trainer's format, which no column option reads (None: not one known here)."""
    names, prompt = [str(name) for name in names], prompt or "prompt"
    has = set(names)
    reads = COMMAND_ROWS[command]
    if "messages" in has and prompt not in has:
        return f"conversations (messages) as TRL's SFTTrainer reads: {reads}"
    if "text" in has and prompt not in has:
        return f"text rows (text) as TRL's SFTTrainer reads: {reads}"
    pair = paired_replies(names)
    if pair is not None:
        named = (("chosen_column", pair[0]), ("rejected_column", pair[1]))
        if command == "score":
            return (
                f"a pair under other names ({pair[0]}, {pair[1]}): score it with "
                f"{spell_options(*named)}"
            )
        return (
            f"a pair under other names ({pair[0]}, {pair[1]}): score it with "
            f"{spell_command('score', *named)} (rank sorts a list of candidates)"
        )
    listed = [name for name in names if name in CANDIDATE_COLUMNS]
    if listed:  # (Nectar's answers: a list of candidates under another name)
        if command == "score":  # (rank reads responses, and completions, by default)
            given = [("responses_column", listed[0])] * (listed[0] not in RANK_READS)
            return (
                f"several replies per prompt ('{listed[0]}'): rank them with "
                f"{spell_command('rank', *given)} (score reads one response a row, or a pair)"
            )
        given_here = spell_options(("responses_column", listed[0]))
        return f"its candidates are in '{listed[0]}': {given_here}"
    single = [name for name in ("response", "completion") if name in has]
    if single and command == "rank":  # (TRL's KTO and prompt-completion rows)
        return (
            f"one response a row ('{single[0]}'): score it with {spell_command('score')} "
            "(rank sorts a list of candidates)"
        )
    if prompt in has and has - {prompt} <= PROMPT_EXTRAS - REPLY_LIKE:
        return (
            f"prompts alone ({prompt}) as TRL's GRPOTrainer reads: {reads}; sample responses "
            f"with {spell_command('generate')}, whose output {spell_command('rank')} reads as "
            "it is"
        )
    return None


def splits_said(names: str, folder: bool = False) -> str:
    """A file of splits ({"train": [rows], "test": [rows]}: ``names``, its lists' keys), said
    with the files to write, in the caller's words; a dataset folder's as the files datasets
    reads as its splits (one file of splits was one row there, its lists as columns)."""
    from directpo.callers import spell_name

    files = "train.json, test.json: datasets reads each as its split" if folder else None
    files = files or f"{spell_name('train_file')}, {spell_name('eval_file')}"
    return (
        f"holds {len(names.split(', '))} lists of rows ({names}), as a file of splits does; "
        f"give each list as a file of its own ({files})"
    )
