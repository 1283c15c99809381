"""The package's names: TRL's, imported from directpo, say what to use instead."""

from __future__ import annotations

import os

import pytest

import directpo


@pytest.mark.parametrize(
    "name, instead",
    [
        ("DPOTrainer", "directpo.train(config, model=..., train_dataset=..."),
        ("OnlineDPOTrainer", "DPOConfig(online=True"),
        ("OnlineDPOConfig", "directpo.DPOConfig(online=True"),
        ("ModelConfig", "use directpo.DPOConfig"),
        ("ScriptArguments", "use directpo.DPOConfig"),
    ],
)
def test_a_trl_name_imported_from_directpo_says_what_to_use(name, instead) -> None:
    """``from directpo import DPOTrainer`` (a TRL user's first line) said only "cannot import
    name 'DPOTrainer' from 'directpo'"."""
    with pytest.raises(ImportError, match=f"directpo has no {name} \\(TRL's\\)") as info:
        exec(f"from directpo import {name}", {})
    assert instead in str(info.value)


def test_other_names_stay_plain_attribute_errors() -> None:
    assert not hasattr(directpo, "NoSuchName")
    assert directpo.DPOConfig.__module__ == "directpo.config"  # TRL's spelling, directpo's own


@pytest.mark.parametrize("name", ["DPOTrainer", "OnlineDPOTrainer", "ModelConfig"])
def test_a_trl_name_is_absent_to_hasattr_and_getattr(name) -> None:
    """``hasattr(directpo, "DPOTrainer")`` raised the ImportError that keeps the from-import's
    message, so inspect, pydoc and a notebook's completion crashed on the package."""
    assert not hasattr(directpo, name)
    assert getattr(directpo, name, None) is None
    with pytest.raises(AttributeError, match=f"directpo has no {name} \\(TRL's\\)"):
        getattr(directpo, name)


def test_a_trl_name_imported_inside_a_function_says_what_to_use() -> None:
    def imports() -> None:
        from directpo import DPOTrainer  # noqa: F401

    with pytest.raises(ImportError, match="call directpo.train"):
        imports()


def test_every_lazy_name_is_typed_for_type_checkers() -> None:
    """The names imported on first use came from the module's __getattr__, typed Any for mypy
    and editors (DPOConfig too once it became lazy): each is imported under TYPE_CHECKING."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(directpo))
    checked = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    )
    typed = {alias.name for node in checked.body for alias in node.names}  # type: ignore[attr-defined]
    assert set(directpo._LAZY) <= typed
    for name, (module, attr) in directpo._LAZY.items():
        assert attr == name and module.startswith("directpo.")


# every directpo module imported into a fresh interpreter: what a notebook's process-wide
# settings were before, compared after (printed as one line of reprs)
IMPORT_EVERYTHING = """
import logging, os, pkgutil, importlib, signal, sys, warnings
import peft, torch, transformers

def settings():
    return repr((
        warnings.filters, logging.getLogger().handlers, logging.getLogger().level,
        signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.excepthook,
        torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
        transformers.utils.logging.get_verbosity(),
    ))

before = settings()
import directpo
for module in pkgutil.walk_packages(directpo.__path__, "directpo."):
    if module.name != "directpo.__main__":  # (the command: runs main)
        importlib.import_module(module.name)
print(before == settings() or before + " -> " + settings())
"""


def test_importing_directpo_leaves_the_process_settings_alone() -> None:
    """``import directpo.models`` (any train / score / generate) set a warnings filter for the
    whole process, so that a notebook's own ``model.is_gradient_checkpointing`` no longer warned
    that it is deprecated. Only peft's wrapping is quiet now (adapters.peft_wrapping); importing
    any module changes no warnings filter, logging handler, signal handler or torch switch."""
    import subprocess
    import sys

    from test_main import SRC

    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    shown = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "True"
