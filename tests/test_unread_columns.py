"""Columns holding a prompt's text that the column options leave unread."""

from __future__ import annotations

import dataclasses
import json

import pytest

from directpo.data import Columns, load_preferences
from directpo.errors import DataError
from directpo.prompts import unread_system_note


def test_a_system_column_of_any_case_left_unread_is_said() -> None:
    """A spreadsheet's ``System`` header beside prompt / chosen / rejected trained every prompt
    without its system text, without a word (the note read 'system' alone); it is said as the
    header is written, with the option that reads it."""
    rows = [
        {"System": "Be kind.", "prompt": "Hi?", "chosen": "Hello!", "rejected": "No."},
        {"System": "", "prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."},
    ]
    data = load_preferences(rows)
    assert data.unread_system == ("System", 1)
    # as a run reads its train pairs: without the columns no reward function is given
    kept_few = load_preferences(rows, dataclasses.replace(Columns(), other_columns=False))
    assert kept_few.unread_system == ("System", 1)
    assert data.summary().endswith(
        "column 'System' is not read: 1 prompt goes without the system prompt it holds "
        "(system_column: System makes it their system turn)"
    )


def test_every_column_of_another_case_is_named_in_one_refusal() -> None:
    """Question / Chosen / Rejected was told 'set chosen_column: Chosen, rejected_column:
    Rejected', and once those were set, a run later, 'set prompt_column: Question';
    ``prompt_column: question`` over a Question header was told 'set prompt_column' without
    the column. Each refusal names every column as the header writes it."""
    row = {"System": "Be kind.", "Question": "Hi?", "Chosen": "Hello!", "Rejected": "No."}
    with pytest.raises(DataError) as said:
        load_preferences([row])
    assert str(said.value).endswith(
        "set chosen_column: Chosen, rejected_column: Rejected, prompt_column: Question, "
        "system_column: System (its text becomes each prompt's system turn)"
    )
    row = {"Question": "Hi?", "chosen": "Hello!", "rejected": "No."}
    asked = Columns(prompt="question", prompt_required=True)
    with pytest.raises(DataError, match="column 'question' not found .*set prompt_column: Quest"):
        load_preferences([row], asked)


def test_a_prompt_with_its_own_system_message_is_not_counted_as_lacking_one(tmp_path) -> None:
    """The unread-system note counted rows whose prompt already opens with its own system
    message: following its hint (system_column) then hit 'system turn given twice' on each.
    Only the rows the hint would help are counted, by train and by score / rank / generate."""
    own = [{"role": "system", "content": "Be long."}, {"role": "user", "content": "Hi?"}]

    def said(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    asked = [{"role": "user", "content": "Sky?"}]
    rows = [
        {"system": "Be kind.", "prompt": own, "chosen": said("Hello!"), "rejected": said("No.")},
        {"system": "Be kind.", "prompt": asked, "chosen": said("Blue."), "rejected": said("Red")},
    ]
    assert load_preferences(rows).unread_system == ("system", 1)
    assert load_preferences(rows[:1]).unread_system is None
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    note = unread_system_note(str(prompts), "prompt", None)
    assert note is not None and note.startswith("column 'system' is not read: 1 row goes")
    prompts.write_text(json.dumps(rows[0]) + "\n")
    assert unread_system_note(str(prompts), "prompt", None) is None
