"""directpo: Direct Preference Optimization for causal language models."""

from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError, DataError, DirectpoError, ModelLoadError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DPOConfig",
    "DataError",
    "DirectpoError",
    "ModelLoadError",
    "load_config",
    "train",
]


def train(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy wrapper, see directpo.trainer.train
    """Train with DPO; see :func:`directpo.trainer.train` (imported lazily: torch is heavy)."""
    from directpo.trainer import train as _train

    return _train(*args, **kwargs)
