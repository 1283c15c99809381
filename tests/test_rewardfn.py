"""reward_fn in a long-lived process (a notebook): what importing it leaves behind, and a
function fixed in its file after the error it raised."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from directpo.errors import DirectpoError
from directpo.rewardfn import load_reward_fn


def test_a_reward_file_leaves_the_module_of_the_same_name_in_place(tmp_path, monkeypatch) -> None:
    """rewards/utils.py was registered as sys.modules["utils"]: the notebook's own `utils` (or
    a stdlib module of the file's name) was replaced for the rest of the process."""
    mine = types.ModuleType("utils")
    monkeypatch.setitem(sys.modules, "utils", mine)
    rewards = tmp_path / "utils.py"
    rewards.write_text("def score(prompts, completions):\n    return [1.0] * len(completions)\n")
    assert load_reward_fn(f"{rewards}:score")(["p"], ["c"], [{}]) == [1.0]
    assert sys.modules["utils"] is mine


def _write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))  # the same second as the first version reads as unchanged


def test_a_reward_module_fixed_after_its_error_is_read_again(tmp_path, monkeypatch) -> None:
    """`module:function` came from Python's import cache: the rerun after fixing the file ran
    the old function, with the same error; an unchanged module is not executed again."""
    name = "notebook_rewards_edited"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    source = tmp_path / f"{name}.py"
    broken = "MARK = object()\ndef score(prompts, completions):\n    return [1 / 0]\n"
    _write(source, broken, 1_700_000_000)
    with pytest.raises(DirectpoError, match="ZeroDivisionError"):
        load_reward_fn(f"{name}:score")(["p"], ["c"], [{}])
    mark = sys.modules[name].MARK
    load_reward_fn(f"{name}:score")  # unchanged: the module it already holds
    assert sys.modules[name].MARK is mark
    fixed = "MARK = object()\ndef score(prompts, completions):\n    return [2.0]\n"
    _write(source, fixed, 1_700_000_100)
    try:
        assert load_reward_fn(f"{name}:score")(["p"], ["c"], [{}]) == [2.0]
    finally:
        sys.modules.pop(name, None)
