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


def test_a_reward_module_leaves_sys_path_as_it_was(tmp_path, monkeypatch) -> None:
    """`module:function` appended the working folder to sys.path for good (its modules then
    shadowed others of their names for the rest of a notebook's session); the module's own
    imports of modules beside it still work, `module:function` and `file.py:function` alike."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("cwd_rewards_mod", "cwd_rewards_helper", "file_rewards_helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "cwd_rewards_helper.py").write_text("VALUE = 3.0\n")
    (tmp_path / "cwd_rewards_mod.py").write_text(
        "from cwd_rewards_helper import VALUE\n"
        "def score(prompts, completions):\n    return [VALUE] * len(completions)\n"
    )
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "file_rewards_helper.py").write_text("VALUE = 5.0\n")
    (folder / "rewards.py").write_text(
        "import file_rewards_helper\n"
        "def score(prompts, completions):\n    return [file_rewards_helper.VALUE]\n"
    )
    before = list(sys.path)
    try:
        assert load_reward_fn("cwd_rewards_mod:score")(["p"], ["c"], [{}]) == [3.0]
        assert sys.path == before
        assert load_reward_fn(f"{folder / 'rewards.py'}:score")(["p"], ["c"], [{}]) == [5.0]
        assert sys.path == before
    finally:
        for name in ("cwd_rewards_mod", "cwd_rewards_helper", "file_rewards_helper"):
            sys.modules.pop(name, None)


COLUMN_REWARDS = """
def accuracy(completions, solution, **kwargs):  # GRPO's: the dataset's solution column
    return [float(c == s) for c, s in zip(completions, solution)]

def with_default(completions, solution=None, **kwargs):
    return [0.0 if solution is None else 1.0 for _ in completions]

def positional(p, c, solution):  # (prompts, completions) by position, a column by name
    return [float(x == s) for x, s in zip(c, solution)]
"""


def test_a_column_the_reward_function_names_but_the_rows_lack_is_said(tmp_path) -> None:
    """TRL passes columns by name: a function taking `solution` beside a file whose column is
    `answer` failed as "accuracy() missing 1 required positional argument: 'solution'", which
    named neither the columns nor the remedy; it says which the rows have."""
    rewards = tmp_path / "columns_rewards.py"
    rewards.write_text(COLUMN_REWARDS)
    rows = [{"answer": "4", "level": 1}, {"answer": "5", "level": 2}]
    with pytest.raises(DirectpoError) as refused:
        load_reward_fn(f"{rewards}:accuracy")(["2+2=", "2+3="], ["4", "6"], rows)
    assert str(refused.value) == (
        f"reward_fn '{rewards}:accuracy' takes 'solution', which no column of the prompt rows "
        "gives (their columns: answer, level; passed too: prompts, completions, "
        "completion_ids, trainer_state): name the column so, or give the parameter a default"
    )
    with pytest.raises(DirectpoError, match="takes 'solution', which no column"):
        load_reward_fn(f"{rewards}:positional")(["2+2="], ["4"], [{"answer": "4"}])
    # given, or with a default, the function runs as before
    named = [{"solution": "4"}, {"solution": "5"}]
    assert load_reward_fn(f"{rewards}:accuracy")(["a", "b"], ["4", "6"], named) == [1.0, 0.0]
    assert load_reward_fn(f"{rewards}:positional")(["a"], ["4"], named[:1]) == [1.0]
    assert load_reward_fn(f"{rewards}:with_default")(["a"], ["4"], rows[:1]) == [0.0]


def test_a_reward_model_given_as_reward_fn_is_told_its_option(tmp_path, monkeypatch) -> None:
    """TRL's reward_funcs takes a reward model's id or folder as well as functions:
    train(reward_funcs="org/rm") (read as reward_fn) said only "expected 'module:function'", of
    an option its user never wrote. A model folder or hub id is told
    reward_model_name_or_path; a .py file without its function, to name the function."""
    from directpo.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my-rm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for spec in (str(folder), "my-rm", "OpenAssistant/reward-model-deberta-v3-large-v2"):
        with pytest.raises(ConfigError) as refused:
            load_reward_fn(spec)
        assert str(refused.value).startswith(
            f"reward_fn '{spec}': a model, not 'module:function': a reward model (TRL's "
            f"reward_funcs given a model id) is reward_model_name_or_path: {spec} ("
        )
    (tmp_path / "my_rewards.py").write_text("def score(completions, **kw):\n    return [1]\n")
    with pytest.raises(ConfigError, match=r"^reward_fn 'my_rewards.py': name the function in "
                       r"it: 'my_rewards.py:function'$"):  # fmt: skip
        load_reward_fn("my_rewards.py")
    with pytest.raises(ConfigError, match=r"^reward_fn 'my_rewards.score': a function is named "
                       r"after a colon: 'my_rewards:score'$"):  # fmt: skip
        load_reward_fn("my_rewards.score")
    with pytest.raises(ConfigError, match="^reward_fn 'justaname': expected 'module:function'"):
        load_reward_fn("justaname")


def test_a_function_from_the_scripts_folder_is_recorded_so_another_folder_imports_it(
    tmp_path, monkeypatch
) -> None:
    """``python proj/train.py`` importing ``my_rewards`` beside it (the script's folder is on
    sys.path) and passing train(reward_funcs=[my_rewards.score]) was recorded as
    'script_folder_rewards:score': the resume, or ``directpo train <run>/config.yaml``, from
    any folder but proj was 'No module named'. It is recorded by its file's path, which
    imports from anywhere; an installed package's function keeps its module's name."""
    from trl.rewards import accuracy_reward

    from directpo.config import DPOConfig

    project = tmp_path / "proj"
    project.mkdir()
    (project / "script_folder_rewards.py").write_text(
        "def score(prompts, completions):\n    return [float(len(c)) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delitem(sys.modules, "script_folder_rewards", raising=False)
    import script_folder_rewards

    config = DPOConfig(reward_fn=[script_folder_rewards.score], online=True)
    # this run imports the module the script holds (not a second copy of its file) ...
    assert config.reward_fn == "script_folder_rewards:score"
    assert load_reward_fn(config.reward_fn).__closure__  # (found: no import error)
    # ... and config.yaml records its file, whatever the process's path since
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(project)])
    recorded = config.record()["reward_fn"]
    assert recorded == f"{(project / 'script_folder_rewards.py').resolve()}:score"
    # a later run: another working directory, the script's folder not on its path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delitem(sys.modules, "script_folder_rewards")
    assert load_reward_fn(recorded)(["p", "q"], ["ab", "abc"], []) == [2.0, 3.0]
    package = DPOConfig(reward_fn=accuracy_reward, online=True)
    assert package.record()["reward_fn"] == "trl.rewards.accuracy_rewards:accuracy_reward"


def test_a_working_folder_modules_name_is_recorded_as_its_file(tmp_path, monkeypatch) -> None:
    """A recipe's 'reward_fn: folder_rewards:score' (folder_rewards.py beside it, run from
    there) was recorded in config.yaml as that name: the resume or 'directpo train
    <run>/config.yaml' from another folder was 'No module named folder_rewards'. It is
    recorded as the file's absolute path; a package's module keeps its name."""
    from directpo.config import DPOConfig

    (tmp_path / "folder_rewards.py").write_text(
        "def score(prompts, completions):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "folder_rewards", raising=False)
    recorded = DPOConfig(reward_fn="folder_rewards:score", online=True).record()["reward_fn"]
    assert recorded == f"{(tmp_path / 'folder_rewards.py').resolve()}:score"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_reward_fn(recorded)(["p"], ["c"], []) == [1.0]
    package = "trl.rewards.accuracy_rewards:accuracy_reward"
    assert DPOConfig(reward_fn=package, online=True).record()["reward_fn"] == package


def test_a_package_not_found_from_this_folder_is_told_where_it_is_looked_for(
    tmp_path, monkeypatch
) -> None:
    """'myproj.rewards:score' (a package beside the script that trained, its folder on
    sys.path then) resumed from another folder said only "No module named 'myproj'"; it says
    where a module is looked for and what to do. A module the reward's own file imports and
    Python lacks is its error alone."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DirectpoError) as refused:
        load_reward_fn("nowhere_pkg_xyz.rewards:score")
    assert str(refused.value) == (
        "reward_fn 'nowhere_pkg_xyz.rewards:score': cannot import nowhere_pkg_xyz.rewards "
        "(ModuleNotFoundError: No module named 'nowhere_pkg_xyz'): it is looked for in the "
        "installed packages, PYTHONPATH and the working folder; run from the folder holding "
        "nowhere_pkg_xyz, or give that folder in PYTHONPATH"
    )
    (tmp_path / "needs_missing_xyz.py").write_text("import absent_dependency_xyz\n")
    with pytest.raises(DirectpoError) as refused:
        load_reward_fn("needs_missing_xyz:score")
    assert str(refused.value).endswith("No module named 'absent_dependency_xyz')")
