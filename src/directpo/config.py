"""The one configuration object: every option, its default and its help text.

`DPOConfig` is the single source of truth: the CLI's `--help`, the YAML loader and the saved
`config.yaml` are all derived from its fields. Names follow TRL's `DPOConfig` where the concept
is the same, so TRL configs port by copy. Values are coerced and checked when the object is
built (`__post_init__`), so a wrong type or an impossible value fails before any model loads,
with a one-line `ConfigError` that names the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from directpo.errors import ConfigError
from directpo.losses import LOSSES

LOSS_TYPES = tuple(LOSSES)

OPTIMIZERS = ("adamw", "rmsprop")
LR_SCHEDULERS = ("constant", "linear", "cosine")
DTYPES = ("float32", "bfloat16")
TRACKERS = ("tensorboard", "wandb", "mlflow", "none")
# The module each tracker needs; checked before training so a missing one fails early.
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that carries its help text (shown by `--help` and in the docs)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class DPOConfig:
    # --- model --------------------------------------------------------------------------------
    model_name_or_path: str | None = option(
        None,
        "Policy start point: a local Hugging Face model folder (or a hub id on machines "
        "with network access). Required.",
    )
    ref_model_name_or_path: str | None = option(
        None, "Frozen reference model. Default: the policy's own start point (model_name_or_path)."
    )
    tokenizer_name_or_path: str | None = option(
        None, "Tokenizer folder. Default: model_name_or_path."
    )
    dtype: str = option("float32", f"Weights and compute dtype, one of {', '.join(DTYPES)}.")
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass: less memory, ~30% slower."
    )
    disable_dropout: bool = option(
        True,
        "Set every dropout probability of policy and reference to 0, so that log-probs are "
        "deterministic and policy == reference gives exactly zero reward at the start.",
    )

    # --- data ---------------------------------------------------------------------------------
    train_file: str | None = option(
        None,
        "Training preferences: .jsonl, .json, .parquet, .csv, or a datasets.save_to_disk "
        "folder. Required unless a Dataset is passed from Python.",
    )
    eval_file: str | None = option(
        None, "Held-out preferences in the same formats; evaluated every eval_steps and at the end."
    )
    prompt_column: str = option(
        "prompt", "Column holding the prompt (absent in the implicit-prompt layout)."
    )
    chosen_column: str = option("chosen", "Column holding the preferred completion.")
    rejected_column: str = option("rejected", "Column holding the dispreferred completion.")
    skip_invalid_rows: bool = option(
        False,
        "Skip rows that fail validation (and report how many, by reason) instead of "
        "stopping at the first one.",
    )
    max_length: int = option(
        1024,
        "Maximum tokens of prompt + completion. Completions are cut from the right to "
        "fit after the prompt.",
    )
    max_prompt_length: int = option(
        512,
        "Maximum prompt tokens. Longer prompts are cut from the left (a leading BOS is "
        "kept), so the text nearest the completion survives.",
    )

    # --- loss ---------------------------------------------------------------------------------
    loss_type: list[str] = option(
        ["sigmoid"],
        "Preference loss, or several combined (comma-separated / a YAML list): "
        f"{', '.join(LOSS_TYPES)}. See docs/losses.md.",
    )
    loss_weights: list[float] | None = option(
        None,
        "Weight of each loss_type in the sum (default 1.0 each), e.g. [1.0, 0.2] for "
        "[sigmoid, sft].",
    )
    beta: float = option(
        0.1,
        "Inverse temperature of the implicit reward r = beta * log(pi/pi_ref); "
        "larger keeps the policy closer to the reference. IPO's tau; ORPO's lambda.",
    )
    label_smoothing: float = option(
        0.0,
        "Assumed probability in [0, 0.5) that a preference label is flipped (cDPO for "
        "sigmoid; robust, exo_pair, aot, aot_unpaired, simpo).",
    )
    simpo_gamma: float = option(0.5, "SimPO's target reward margin gamma.")
    discopop_tau: float = option(0.05, "DiscoPOP's temperature tau of the mixing weight.")

    # --- optimisation -------------------------------------------------------------------------
    learning_rate: float = option(1e-6, "Peak learning rate.")
    optimizer: str = option(
        "adamw", f"Optimizer, one of {', '.join(OPTIMIZERS)} (the DPO paper used rmsprop)."
    )
    weight_decay: float = option(0.0, "Decoupled weight decay (adamw) or L2 penalty (rmsprop).")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_epsilon: float = option(1e-8, "AdamW / RMSprop epsilon.")
    lr_scheduler_type: str = option(
        "linear", f"Schedule after warmup, one of {', '.join(LR_SCHEDULERS)}."
    )
    warmup_steps: int = option(0, "Linear warmup from 0 to learning_rate over this many steps.")
    per_device_train_batch_size: int = option(8, "Preference pairs per micro-batch.")
    per_device_eval_batch_size: int = option(8, "Preference pairs per evaluation batch.")
    gradient_accumulation_steps: int = option(
        1, "Micro-batches per optimizer step; the loss is the mean over all pairs of the step."
    )
    max_grad_norm: float = option(1.0, "Clip the gradient's global L2 norm to this; 0 disables.")
    num_train_epochs: float = option(1.0, "Passes over the training data (may be fractional).")
    max_steps: int = option(-1, "Total optimizer steps; when > 0 it overrides num_train_epochs.")
    seed: int = option(42, "Seed for data order, initialisation of any new weights, and RNG.")

    # --- outputs ------------------------------------------------------------------------------
    output_dir: str = option(
        "directpo-output", "Where the final model, config, metrics and checkpoints go."
    )
    overwrite_output_dir: bool = option(
        False,
        "Start afresh in an output_dir that already holds a run (its checkpoints are "
        "deleted). Without it such a run is refused, so no work is lost by accident.",
    )
    logging_steps: int = option(10, "Log training metrics every this many optimizer steps.")
    eval_steps: int = option(0, "Evaluate on eval_file every this many steps (0: only at the end).")
    save_steps: int = option(
        500, "Write a resumable checkpoint every this many steps (0: none before the end)."
    )
    save_total_limit: int | None = option(
        None,
        "Keep at most this many checkpoints (oldest deleted once a new one is complete); "
        "default keeps all.",
    )
    resume_from_checkpoint: str | None = option(
        None, "Continue a run: a checkpoint folder, or 'latest' for the newest one in output_dir."
    )
    report_to: list[str] = option(
        ["tensorboard"],
        f"Trackers, any of {', '.join(TRACKERS)} (comma-separated on the "
        "command line). metrics.jsonl is always written.",
    )

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self._check_values()

    # ------------------------------------------------------------------------------------------
    def _check_values(self) -> None:
        def require(ok: bool, key: str, must: str) -> None:
            if not ok:
                raise ConfigError(f"{key} must be {must} (got {getattr(self, key)!r})")

        def one_of(key: str, choices: tuple[str, ...]) -> None:
            require(getattr(self, key) in choices, key, "one of " + ", ".join(choices))

        one_of("dtype", DTYPES)
        one_of("optimizer", OPTIMIZERS)
        one_of("lr_scheduler_type", LR_SCHEDULERS)
        self._check_losses(require)
        require(self.learning_rate > 0, "learning_rate", "> 0")
        require(self.weight_decay >= 0, "weight_decay", ">= 0")
        require(0 <= self.adam_beta1 < 1, "adam_beta1", "in [0, 1)")
        require(0 <= self.adam_beta2 < 1, "adam_beta2", "in [0, 1)")
        require(self.adam_epsilon > 0, "adam_epsilon", "> 0")
        require(self.warmup_steps >= 0, "warmup_steps", ">= 0")
        for key in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
        ):
            require(getattr(self, key) >= 1, key, ">= 1")
        require(self.max_grad_norm >= 0, "max_grad_norm", ">= 0 (0 disables clipping)")
        require(self.num_train_epochs > 0, "num_train_epochs", "> 0")
        require(self.max_steps == -1 or self.max_steps >= 1, "max_steps", "-1 or >= 1")
        require(self.max_length >= 2, "max_length", ">= 2")
        require(
            1 <= self.max_prompt_length < self.max_length,
            "max_prompt_length",
            f">= 1 and < max_length ({self.max_length}), so completions keep a token",
        )
        require(self.eval_steps >= 0, "eval_steps", ">= 0")
        require(self.save_steps >= 0, "save_steps", ">= 0")
        require(
            self.save_total_limit is None or self.save_total_limit >= 1, "save_total_limit", ">= 1"
        )
        for key in ("prompt_column", "chosen_column", "rejected_column", "output_dir"):
            require(bool(getattr(self, key).strip()), key, "a non-empty string")
        unknown = [t for t in self.report_to if t not in TRACKERS]
        require(not unknown, "report_to", "a list of " + ", ".join(TRACKERS))
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ConfigError("report_to: 'none' cannot be combined with other trackers")

    def _check_losses(self, require: Callable[[bool, str, str], None]) -> None:
        unknown = [name for name in self.loss_type if name not in LOSSES]
        require(
            bool(self.loss_type) and not unknown,
            "loss_type",
            "one or more of " + ", ".join(LOSS_TYPES),
        )
        require(len(set(self.loss_type)) == len(self.loss_type), "loss_type", "without repeats")
        if self.loss_weights is not None:
            require(
                len(self.loss_weights) == len(self.loss_type),
                "loss_weights",
                f"one weight per loss_type ({len(self.loss_type)})",
            )
            require(
                all(w >= 0 for w in self.loss_weights) and any(self.loss_weights),
                "loss_weights",
                ">= 0 and not all 0",
            )
        require(self.beta > 0, "beta", "> 0")
        require(0 <= self.label_smoothing < 0.5, "label_smoothing", "in [0, 0.5)")
        require(self.discopop_tau > 0, "discopop_tau", "> 0")
        if "exo_pair" in self.loss_type:
            require(
                self.label_smoothing > 0,
                "label_smoothing",
                "> 0 for exo_pair (log of it is taken; the EXO paper uses 1e-3)",
            )
        # an option that no chosen loss reads would silently do nothing: refuse it
        used = {option for name in self.loss_type for option in LOSSES[name].options}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for option_name in ("beta", "label_smoothing", "simpo_gamma", "discopop_tau"):
            if option_name not in used and getattr(self, option_name) != defaults[option_name]:
                users = [n for n, spec in LOSSES.items() if option_name in spec.options]
                raise ConfigError(
                    f"{option_name} is set but no chosen loss uses it (loss_type: "
                    f"{', '.join(self.loss_type)}); it applies to {', '.join(users)}"
                )

    @property
    def needs_reference(self) -> bool:
        return any(LOSSES[name].needs_reference for name in self.loss_type)

    def loss_options(self) -> dict[str, float]:
        return {
            "beta": self.beta,
            "label_smoothing": self.label_smoothing,
            "simpo_gamma": self.simpo_gamma,
            "discopop_tau": self.discopop_tau,
        }

    def check_environment(self, *, need_train_file: bool = True) -> None:
        """Checks that touch the file system: run before any model loads."""
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required")
        for key in ("model_name_or_path", "ref_model_name_or_path", "tokenizer_name_or_path"):
            _check_model_location(key, getattr(self, key))
        if need_train_file and not self.train_file:
            raise ConfigError("train_file is required")
        for key in ("train_file", "eval_file"):
            path = getattr(self, key)
            if path and not os.path.exists(path):
                raise ConfigError(f"{key}: no such file or folder: {path}")
        resume = self.resume_from_checkpoint
        if resume and resume != "latest" and not os.path.isdir(resume):
            raise ConfigError(f"resume_from_checkpoint: no such checkpoint folder: {resume}")
        for tracker in self.report_to:
            module = TRACKER_MODULES.get(tracker)
            if module and importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"report_to: '{tracker}' is not installed (pip install {module}), "
                    "or choose another tracker / none"
                )

    @property
    def reference_path(self) -> str:
        return self.ref_model_name_or_path or self.model_name_or_path or ""

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer_name_or_path or self.model_name_or_path or ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _check_model_location(key: str, value: str | None) -> None:
    """A value that looks like a local path must exist; a bare `org/name` may be a hub id."""
    if not value or os.path.exists(value):
        return
    looks_local = value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value
    if looks_local:
        raise ConfigError(f"{key}: no such model folder: {value}")


# ---------------------------------------------------------------------------------------------
# Loading: YAML file + command-line flags -> DPOConfig


def option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(DPOConfig)]


def option_help() -> list[tuple[str, str, Any]]:
    """(name, help, default) of every option, in declaration order."""
    rows = []
    for f in dataclasses.fields(DPOConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        rows.append((f.name, f.metadata["help"], default))
    return rows


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> DPOConfig:
    """Read the optional YAML file, apply `overrides` (e.g. from flags) on top, and validate."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml(path))
    for key, value in (overrides or {}).items():
        _check_known(key, "option")
        values[key] = value
    return DPOConfig(**values)


def _read_yaml(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    for key in data:
        _check_known(str(key), f"{path}: option")
    return {str(k): v for k, v in data.items()}


def _check_known(key: str, what: str) -> None:
    names = option_names()
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{what} '{key}' is unknown{hint}")


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Convert `value` (from YAML, a flag string or Python) to the field's type, or fail."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(key, v, item) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        number = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            # YAML reads 1e-5 (no dot) as a string: accept it as the number it means
            with contextlib.suppress(ValueError):
                number = float(value.strip())
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise TypeError(f"unsupported option type for {key}: {hint}")  # programming error
