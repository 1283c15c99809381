"""Columns holding a prompt's text that the column options leave unread."""

from __future__ import annotations

from directpo.data import load_preferences


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
    assert data.summary().endswith(
        "column 'System' is not read: 1 prompt goes without the system prompt it holds "
        "(system_column: System makes it their system turn)"
    )
