"""The project's own checks, run with the suite so CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is a dev dependency and must be installed")
    for command in (["check"], ["format", "--check"]):  # as `make lint` and the project's rules
        done = subprocess.run(
            [ruff, *command, "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_the_public_api_is_documented_typed_and_completes() -> None:
    """What a notebook sees: every name of ``directpo.__all__`` in ``dir(directpo)`` (tab
    completion; train and ImplicitReward are imported on first use), with a docstring, and its
    public functions and methods with type hints on every parameter and the return."""
    import inspect

    import directpo

    assert set(directpo.__all__) <= set(dir(directpo))
    for name in directpo.__all__:
        value = getattr(directpo, name)
        assert value.__doc__ and not value.__doc__.startswith(f"{name}("), name  # not generated
        functions = [value] if inspect.isfunction(value) else []
        if inspect.isclass(value) and not issubclass(value, Exception):
            functions += [
                member
                for attr, member in vars(value).items()
                if (attr == "__init__" or not attr.startswith("_"))
                and inspect.isfunction(getattr(member, "__func__", member))
            ]
        for function in functions:
            function = getattr(function, "__func__", function)
            signature = inspect.signature(function)
            untyped = [
                p.name
                for p in signature.parameters.values()
                if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
            ]
            assert not untyped, f"{name}.{function.__name__}: {untyped}"
            assert signature.return_annotation is not inspect.Signature.empty, function.__name__


def test_every_module_is_within_600_lines() -> None:
    """Modules by concern, each small enough to read in one sitting (STYLE.md: files over ~600
    lines are avoided); config.py is the one DPOConfig, every option with its help, on purpose."""
    src = ROOT / "src" / "directpo"
    lengths = {
        str(path.relative_to(src)): len(path.read_text(encoding="utf-8").splitlines())
        for path in src.rglob("*.py")
        if path.name != "config.py" or path.parent != src
    }
    assert {name: n for name, n in lengths.items() if n > 600} == {}
