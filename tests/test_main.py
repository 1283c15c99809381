"""The ``directpo`` entry point (__main__.run): what it imports before it can take a Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from directpo.cli import main

SRC = str(Path(__file__).parents[1] / "src")

# Ctrl-C arrives while the command imports directpo's options (where it imported torch: the
# first seconds of every command): the import that a user's key press interrupts
CTRL_C_DURING_IMPORT = """
import importlib.abc, os, signal, sys, time

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "directpo.config":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # (the signal is taken here, inside the import)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["directpo", "train", "--help"]
from directpo.__main__ import run
run()
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_ctrl_c_while_the_command_starts_is_a_quiet_stop() -> None:
    """A Ctrl-C in the first seconds of ``directpo train ...`` (while ``import directpo``
    imported torch) printed a traceback through the import machinery; it is one line, exit 130,
    as a Ctrl-C later is."""
    stopped = _python(CTRL_C_DURING_IMPORT)
    assert (stopped.returncode, stopped.stderr) == (130, "directpo: interrupted\n")
    assert stopped.stdout == ""


# the same, from the interpreter's start (a sitecustomize runs before any of directpo): the
# SIGINT is sent inside the import of ``module``
CTRL_C_IN = """
import importlib.abc, os, signal, sys, time

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == os.environ["CTRL_C_IN"]:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        return None

sys.meta_path.insert(0, CtrlC())
"""

CONSOLE_SCRIPT = """import sys
from directpo.__main__ import run
if __name__ == '__main__':
    sys.exit(run())
"""


@pytest.mark.parametrize(
    "started, module",
    [
        (["-m", "directpo.cli"], "directpo.cli_flags"),  # (cli.py's own imports)
        (["-m", "directpo.cli"], "directpo.errors"),  # (the package's, before cli.py runs)
        (["-X", "utf8", "-mdirectpo"], "directpo.errors"),
        (["SCRIPT"], "directpo.errors"),  # (the console script pip writes)
    ],
)
def test_ctrl_c_in_the_first_moments_of_any_entry_point_is_a_quiet_stop(
    started, module, tmp_path
) -> None:
    """A Ctrl-C in the first ~50 ms of ``python -m directpo.cli ...`` (while cli.py imported
    its modules) or of the ``directpo`` script (while the package imported its own) printed
    Python's traceback; it is one line, exit 130, from the package's first line on."""
    (tmp_path / "sitecustomize.py").write_text(CTRL_C_IN)
    script = tmp_path / "directpo"
    script.write_text(CONSOLE_SCRIPT)
    argv = [str(script) if word == "SCRIPT" else word for word in started]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{SRC}", "CTRL_C_IN": module}
    stopped = subprocess.run(
        [sys.executable, *argv, "score", "--help"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert (stopped.returncode, stopped.stderr, stopped.stdout) == (
        130, "directpo: interrupted\n", ""
    )  # fmt: skip


@pytest.mark.parametrize("started", [["-m", "directpo.cli"], ["-m", "directpo"], ["SCRIPT"]])
def test_every_entry_point_runs_the_command(started, tmp_path) -> None:
    """``python -m directpo.cli``, ``python -m directpo`` and the console script each run the
    command: cli.py's ``__main__`` block must stay in cli.py (moved with the code that ended
    the file when cli.py was split, ``python -m directpo.cli -V`` printed nothing, exit 0)."""
    script = tmp_path / "directpo"
    script.write_text(CONSOLE_SCRIPT)
    argv = [str(script) if word == "SCRIPT" else word for word in started]
    env = {**os.environ, "PYTHONPATH": SRC}
    for words, code, said in (
        (["-V"], 0, ("directpo ", "")),
        (["trian"], 2, ("", "directpo: error: unknown command 'trian'; did you mean 'train'?\n")),
    ):
        done = subprocess.run(
            [sys.executable, *argv, *words], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == code, done.stderr
        assert done.stdout.startswith(said[0]) and done.stderr == said[1]
        assert bool(done.stdout) == (code == 0)


def test_a_program_importing_directpo_keeps_its_own_ctrl_c() -> None:
    """The quiet exit is the command's: a script (or notebook) importing directpo still gets
    KeyboardInterrupt, Python's default handler; so does a process multiprocessing spawns
    from the command (``-c``, handed the command's sys.argv before it imports directpo)."""
    code = "import signal, directpo; print(signal.getsignal(2) is signal.default_int_handler)"
    assert _python(code).stdout == "True\n"
    assert _python("import sys; sys.argv = ['/venv/bin/directpo']; " + code).stdout == "True\n"


def test_help_and_refused_options_answer_without_torch() -> None:
    """``directpo --help``, ``train --help`` and a mistyped option imported torch (and a
    DPOConfig transformers): 2 s before the first line; they import neither now."""
    code = """
import sys
from directpo.cli import main
for argv in (["--help"], ["train", "--help"], ["score", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
assert main(["train", "--bta", "0.1"]) == 2
import directpo
directpo.DPOConfig(beta=0.2, loss_type=["sigmoid", "sft"]).needs_reference
print(sorted(name for name in ("torch", "transformers", "peft") if name in sys.modules))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "unknown option '--bta'; did you mean '--beta'?" in done.stderr


def test_help_and_version_as_words_are_the_flags(capsys) -> None:
    """``directpo help train`` and ``directpo version`` (git's, pip's words) were 'unknown
    command'; they are ``train --help`` and ``--version`` (``help version`` too)."""
    for argv, said in (
        (["help", "train"], "usage: directpo train [CONFIG.yaml]"),
        (["help"], "usage: directpo [-h] [-V] COMMAND"),
        (["--help", "score"], "usage: directpo score [--option VALUE ...]"),  # (git's order)
        (["version"], "directpo 0.1.0 (torch "),
        (["help", "version"], "directpo 0.1.0 (torch "),  # (was 'unknown command 'version'')
        (["help", "help"], "usage: directpo [-h] [-V] COMMAND"),
    ):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0 and capsys.readouterr().out.startswith(said)
    assert main(["help", "trian"]) == 2
    assert "unknown command 'trian'; did you mean 'train'?" in capsys.readouterr().err


def test_ctrl_c_while_the_parser_is_built_is_a_quiet_stop(monkeypatch, capsys) -> None:
    """The parser was built before main took a Ctrl-C: one there was a traceback."""
    from directpo import cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["train", "--help"]) == 130
    assert capsys.readouterr().err == "directpo: interrupted\n"


@pytest.mark.parametrize(
    "argv, said",
    [
        (["recipe.yaml"], "a config file follows the command: directpo train recipe.yaml"),
        (["dpo", "--config", "recipe.yaml"], "did you mean 'train'?"),  # TRL's `trl dpo`
        (["online-dpo"], "did you mean 'train'?"),
        # (told only the list of commands)
        (
            ["eval", "--model_name_or_path", "run/"],
            "did you mean 'score'? (a model's implicit rewards on a file of pairs: preference "
            "accuracy and mean margin, as TRL's eval rewards/accuracies and rewards/margins)",
        ),
        (["infer"], "did you mean 'generate'? (samples completions for a file of prompts)"),
    ],
)
def test_a_config_file_or_trls_command_first_says_the_train_line(argv, said, capsys) -> None:
    """``directpo recipe.yaml`` (the command forgotten) and ``directpo dpo`` (TRL's command)
    were told only the list of commands."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"directpo: error: unknown command '{argv[0]}'; {said}\n"


def test_a_rank_left_in_the_environment_without_a_launcher_still_speaks(
    monkeypatch, capsys
) -> None:
    """``RANK=1`` exported in a shell (no torchrun: no WORLD_SIZE) made the command silent: a
    refused option exited 2 without a line, ``--help`` printed nothing."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", "--bta", "1"]) == 2
    assert "unknown option '--bta'; did you mean '--beta'?" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # under a launcher: rank 0 alone speaks
    assert main(["train", "--bta", "1"]) == 2
    assert capsys.readouterr().err == ""


def test_the_config_flag_before_the_command_is_told_after_it(capsys) -> None:
    """``directpo --config x.yaml`` was told 'did you mean --dataset_config?', another option
    than train's own --config."""
    assert main(["--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "options follow a command: directpo train --config ..." in err
    assert "dataset_config" not in err
