"""directpo: Direct Preference Optimization for causal language models.

``directpo.train(config)`` trains; ``directpo.ImplicitReward(policy, reference, beta)`` scores
responses with the trained policy as a reward model (both imported on first use).
"""

from typing import Any

from directpo.config import DPOConfig, load_config
from directpo.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DirectpoError,
    ModelLoadError,
    TrainingStopped,
)

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
    "train": ("directpo.trainer", "train"),
    "ImplicitReward": ("directpo.reward", "ImplicitReward"),
    "TrainResult": ("directpo.finish", "TrainResult"),  # what train returns, for type hints
}


def __dir__() -> list[str]:
    """The lazy names too, so that a notebook's tab completion offers ``train``."""
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'directpo' has no attribute {name!r}")
