"""Flags are said as the user typed them, and path options read ``~`` as a shell does."""

from __future__ import annotations

import pytest

from directpo.cli import main


@pytest.mark.parametrize("command", ["train", "score", "rank", "generate", "plot", "demo"])
def test_an_unknown_dashed_flag_is_said_as_typed(capsys, command) -> None:
    """``--help-me`` was said as ``--help_me`` (argv is underscored before it is read)."""
    assert main([command, "--help-me"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '--help-me'" in err and "help_me" not in err


def test_a_did_you_mean_keeps_its_own_spelling(capsys) -> None:
    assert main(["score", "--batch-sise", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '--batch-sise'; did you mean '--batch_size'?" in err
