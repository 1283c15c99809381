"""directpo: Direct Preference Optimization for causal language models.

``directpo.train(config)`` trains; ``directpo.ImplicitReward(policy, reference, beta)`` scores
responses with the trained policy as a reward model (both imported on first use, as the config:
the ``directpo`` command imports this package before it can take a Ctrl-C quietly).
"""

import sys

# the signal table's own module, loaded with the interpreter (signal imports enum and
# functools, and typing below re: ~30 ms in which a Ctrl-C was Python's traceback)
try:
    import _signal as _signals
except ImportError:  # (another interpreter)
    import signal as _signals  # type: ignore[no-redef]


def _quiet_interrupt(signum: int, frame: object) -> None:
    """A Ctrl-C while the ``directpo`` command's own modules load, before ``main`` can say one:
    Python printed a traceback through the import machinery. One line and exit 130, as later
    (``signals.interrupts_raise`` hands Ctrl-C back to ``main`` once it takes them)."""
    print("directpo: interrupted", file=sys.stderr)
    raise SystemExit(130)


def _started_as_command() -> bool:
    """Is this process the ``directpo`` command: its console script, or ``python -m directpo``
    / ``-m directpo.cli``, as the interpreter was started (``sys.orig_argv``: a process that
    multiprocessing spawns, ``-c``, is handed its parent's ``sys.argv`` before it imports this)?
    A program importing directpo keeps its own Ctrl-C."""
    words = iter(getattr(sys, "orig_argv", sys.argv[:1])[1:])
    for word in words:
        if word in ("-X", "-W"):  # (their value follows)
            next(words, None)
        elif word.startswith("-m"):
            return (word[2:] or next(words, "")) in COMMAND_MODULES
        elif word.startswith("-c") or word == "-":
            return False
        elif not word.startswith("-"):  # the script run: the console script's name?
            return word.replace("\\", "/").rsplit("/", 1)[-1] in COMMAND_SCRIPTS
    return False


COMMAND_MODULES = ("directpo", "directpo.cli", "directpo.__main__")
COMMAND_SCRIPTS = ("directpo", "directpo.exe", "directpo-script.py")

if _started_as_command():  # first: the command's imports below and in cli.py take ~0.3 s
    try:  # noqa: SIM105 - contextlib is one import more before the handler is set
        _signals.signal(_signals.SIGINT, _quiet_interrupt)
    except ValueError:  # (not the main thread: no handler to set)
        pass

from types import FrameType  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from directpo.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    DirectpoError,
    ModelLoadError,
    TrainingStopped,
)

if TYPE_CHECKING:  # the lazy names' types, for mypy and editors (imported on first use)
    from directpo.config import DPOConfig, load_config
    from directpo.finish import TrainResult
    from directpo.reward import ImplicitReward
    from directpo.trainer import train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DPOConfig",
    "DataError",
    "DirectpoError",
    "ImplicitReward",
    "ModelLoadError",
    "TrainResult",
    "TrainingStopped",
    "load_config",
    "train",
]

_LAZY = {
    "DPOConfig": ("directpo.config", "DPOConfig"),
    "load_config": ("directpo.config", "load_config"),
    "train": ("directpo.trainer", "train"),
    "ImplicitReward": ("directpo.reward", "ImplicitReward"),
    "TrainResult": ("directpo.finish", "TrainResult"),  # what train returns, for type hints
}


# TRL's names a TRL user imports first, and what directpo has instead: `from directpo import
# DPOTrainer` said only "cannot import name". No stub class: a lookalike DPOTrainer whose
# methods differ from TRL's would fail later and further from the cause.
_TRL_NAMES = {
    "DPOTrainer": "directpo has no trainer class: call directpo.train(config, model=..., "
    "train_dataset=..., processing_class=...) with DPOTrainer's keywords (config: a "
    "directpo.DPOConfig, a trl.DPOConfig or a dict), or run `directpo train`",
    "OnlineDPOTrainer": "online DPO is an option: directpo.train(DPOConfig(online=True, "
    "reward_fn=..., ...)), or `directpo train --online true`",
    "OnlineDPOConfig": "use directpo.DPOConfig(online=True, ...): it reads OnlineDPOConfig's "
    "options",
    "ModelConfig": "use directpo.DPOConfig: it holds ModelConfig's options too "
    "(model_name_or_path, dtype, lora_r, ...)",
    "ScriptArguments": "use directpo.DPOConfig: it holds ScriptArguments' options too "
    "(dataset_name, dataset_train_split, ...)",
}


def __dir__() -> list[str]:
    """The lazy names too, so that a notebook's tab completion offers ``train``."""
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _TRL_NAMES:
        message = f"directpo has no {name} (TRL's): {_TRL_NAMES[name]}"
        if _at_from_import(sys._getframe(1)):
            # `from directpo import X` drops an AttributeError's message
            raise ImportError(message, name=name)
        # hasattr, getattr(m, n, None), inspect and completion expect an AttributeError
        raise AttributeError(message, name=name, obj=sys.modules[__name__])
    raise AttributeError(f"module 'directpo' has no attribute {name!r}")


def _at_from_import(frame: FrameType) -> bool:
    """Is ``frame`` running ``from directpo import X``? Its attribute lookup and hasattr's
    both swallow an AttributeError, so only the caller's instruction tells them apart (the
    import machinery's own hasattr, before, is a call and gets the AttributeError)."""
    import dis

    try:  # (CPython's bytecode; elsewhere the AttributeError, whose text hasattr ignores)
        return frame.f_code.co_code[frame.f_lasti] == dis.opmap["IMPORT_FROM"]
    except (AttributeError, IndexError, KeyError):
        return False
