"""reward_fn in a long-lived process (a notebook): what importing it leaves behind, and a
function fixed in its file after the error it raised."""

from __future__ import annotations

import sys
import types

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
