"""Options of the commands other than ``train``: score, rank, generate, demo, plot.

Typed like ``DPOConfig`` (options.py): each field carries its default and help, and the CLI
builds the command's flags from them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from directpo.callers import (
    Advice,
    Caller,
    Entry,
    Spelling,
    called_by,
    spell_name,
    spell_setting,
    spell_value,
    written_as,
)
from directpo.config import DTYPES
from directpo.data_checks import check_columns
from directpo.errors import ConfigError, ModelLoadError, collected, refuse_all
from directpo.folders import nearest_existing
from directpo.launchers import started_count
from directpo.model_locations import check_model_location, is_adapter_folder
from directpo.option_loading import accepting_spellings
from directpo.option_paths import missing_path
from directpo.option_values import value_shown
from directpo.options import Options, names_any, option


@dataclass
class FileCommandOptions(Options):
    # built in Python (ScoreOptions(...) in a notebook), said as keywords, with the model
    # folder's chat template to fix; the CLI names its flags first, which is kept
    BUILT_BY: ClassVar[Caller] = Caller(Spelling.PYTHON, Entry.FOLDER)

    model_name_or_path: str | None = option(
        None, "A trained run's output_dir or any causal LM folder. Required."
    )
    input: str | None = option(
        None,
        "Input rows: .jsonl, .json, .csv, .tsv (also .gz/.bz2/.xz compressed), .parquet, "
        ".arrow or a datasets.save_to_disk folder. Required.",
    )
    output: str | None = option(
        None,
        "Output .jsonl file, never a folder; it appears once complete (score, rank and generate "
        "write a hidden .OUTPUT.KEY.partial as they go, which the same command continues). "
        "Required.",
    )
    batch_size: int = option(8, "Sequences per forward pass.")
    dtype: str = option("float32", f"Model dtype, one of {', '.join(DTYPES)}.")
    prompt_column: str | None = option(
        None,
        "Column holding the prompt (text or messages). Default: the run's prompt_column (a "
        "directpo run folder's config.yaml), else prompt.",
    )
    system_column: str | None = option(
        None,
        "Column whose text opens each prompt as its system turn (as train's system_column). "
        "Default: the run's system_column (where the input lacks it, the input's own system / "
        "system_prompt column, any case), else none; '' (an empty value): none, whatever the "
        "run had.",
    )
    trust_remote_code: bool = option(
        False, "Allow model folders whose architecture is code shipped with them (as train's)."
    )

    # train's (TRL's) names for these options, which a user of train writes first (score
    # --bf16 was 'unknown option' without a word of --dtype)
    # (each said as the caller gives options: --dtype bfloat16, ScoreOptions(dtype='bfloat16'))
    FOREIGN_KEYS: ClassVar[dict[str, Advice]] = {
        "bf16": lambda: spell_setting(("dtype", "bfloat16")),
        "fp16": lambda: (
            f"{spell_setting(('dtype', 'bfloat16'))} or {spell_value('float32')} (float16 is "
            "not supported)"
        ),
        "torch_dtype": lambda: f"{spell_setting('dtype')} (float32 or bfloat16)",
        **dict.fromkeys(
            ("per_device_eval_batch_size", "per_device_train_batch_size"),
            lambda: spell_setting("batch_size"),
        ),
        **dict.fromkeys(
            ("train_file", "eval_file", "dataset_name"),
            lambda: f"{spell_setting('input')} (a file)",
        ),
        "output_dir": lambda: f"{spell_setting('output')} (a .jsonl file)",
        "config": "score, rank and generate read no config file: give their options as flags",
    }
    # the options the rows written do not depend on: a stopped run is continued with others
    # (batch_size: a smaller one after running out of memory) as StagedJsonl's key leaves them
    NOT_IN_ROWS: ClassVar[tuple[str, ...]] = ("input", "output", "batch_size", "trust_remote_code")
    # the options a StagedJsonl key took whatever their value before it took only those away
    # from their default (jsonl.options_key): FROZEN, so a partial output written then keeps
    # its key; an option added since goes in only where it is set otherwise (never add it here)
    KEYED_IN_FULL: ClassVar[frozenset[str]] = frozenset(
        ("model_name_or_path", "dtype", "prompt_column", "system_column")
    )
    # the model folders the command reads (checked before the rows are read)
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("model_name_or_path",)
    PATH_KEYS: ClassVar[tuple[str, ...]] = ("model_name_or_path", "input", "output")

    # the options a directpo run's config.yaml gives when left unset (None): the run's
    # attribute, and the value for a model folder that is not a run
    FROM_RUN: ClassVar[dict[str, tuple[str, Any]]] = {
        "prompt_column": ("prompt_column", "prompt"),
        "system_column": ("system_column", None),
    }

    def _check_values(self) -> None:
        self._require(self.batch_size >= 1, "batch_size", ">= 1")
        self._one_of("dtype", DTYPES)
        check_columns(self)

    def with_run_defaults(
        self, run: Any, echo: Callable[[str], None], file_columns: Collection[str] | None = None
    ) -> Self:
        """These options with each left unset taken from ``run`` (the DPOConfig of the run
        that wrote model_name_or_path, or None), else its default: a run trained on a
        'question' column with a system turn reads and renders its rows as it trained on
        them. A column of the run's that the input lacks (``file_columns``: its first row's
        fields) where it has the default-named one is that one: a run trained on 'question'
        scores a file of 'prompt' rows. A given option always wins. ``echo`` names, in one
        line, those the run set to other than the defaults, and those not taken."""
        taken: dict[str, Any] = {}
        passed_over: list[str] = []
        inputs: dict[str, str] = {}  # the input's own columns taken for the run's
        for key, (attribute, default) in self.FROM_RUN.items():
            if getattr(self, key) is None:
                value = default if run is None else getattr(run, attribute)
                if _falls_back(key, value, default, file_columns):
                    passed_over.append(
                        f"{key}: {value_shown(default)} (the input has no {value!r}, the run's)"
                    )
                    value = default
                elif default is None and value is not None and _lacks(file_columns, value):
                    if own := _system_column_of(key, file_columns):
                        # (the run's System, the input's system: the system turn it trained with)
                        passed_over.append(
                            f"{key}: {value_shown(own)} (the input has no {value!r}, the run's)"
                        )
                        value = inputs[key] = own
                    else:  # kept (its prompts are chat turns, as the run's were), but said: the
                        # scores are of prompts without the system turn the run trained with
                        passed_over.append(
                            f"{key}: {value_shown(value)} of the run, which the input lacks: "
                            "its prompts go without a system turn"
                        )
                taken[key] = value
            elif getattr(self, key) == "" and default is None:  # said off: the run's is not taken
                taken[key] = None
        with written_as(Spelling.RECIPE):  # (the file's values, as it writes them: true)
            said = [
                f"{k}: {value_shown(v)}"
                for k, v in taken.items()
                if v != self.FROM_RUN[k][1] and k not in inputs
            ]
        if said:
            echo(f"from the run's config.yaml (no option gave them): {', '.join(said)}")
        if passed_over:
            echo(f"the input's own columns (no option gave them): {', '.join(passed_over)}")
        return dataclasses.replace(self, **taken)

    def check_environment(self) -> None:
        processes, name = started_count()  # (WORLD_SIZE, or mpirun's / an srun step's own)
        if processes > 1:  # each process would redo the whole file, all on the first GPU
            raise ConfigError(  # (the variable named: a WORLD_SIZE a batch script exported for
                # its srun step is read by a command it runs itself too)
                f"score, rank and generate run in one process, but the launcher started "
                f"{processes} ({name}): run the command without torchrun / accelerate launch / "
                "mpirun, or as one srun task (srun -n 1); tasks each of its own input and "
                "output (shards) say so with WORLD_SIZE=1"
            )
        # every problem in one pass: a missing model folder and a missing input were two runs
        keys = ("model_name_or_path", "input", "output")
        # (in the caller's words: ScoreOptions(...) in Python was told "--input is required")
        required = [f"{spell_name(key)} is required" for key in keys if not getattr(self, key)]
        refuse_all(required, self._rows_beside(required))
        for key in self.MODEL_KEYS:  # a run whose final move was killed: finished, then read
            folder = getattr(self, key)
            if folder and os.path.isdir(os.path.join(folder, ".final.tmp")):  # (FINAL_STAGING)
                from directpo.outputs import finish_publish_before_reading  # (torch: only then)

                finish_publish_before_reading(folder)
        problems = self._path_problems()
        refuse_all(problems, self._rows_beside(problems))

    def _rows_beside(self, problems: list[str]) -> list[str]:
        """The input's bad rows, when ``problems`` are said (else the command's pass says
        them): one run names both."""
        if not problems:
            return []
        try:
            return self._row_problems(problems)
        except Exception:  # (a value no check read may be odd: the refusal is the news)
            return []

    def _row_problems(self, refused: list[str]) -> list[str]:
        from directpo.command_rows import input_row_problems  # it reads rows (data, prompts)

        return input_row_problems(self, refused)

    def _path_problems(self) -> list[str]:
        problems: list[str] = []
        for key in self.MODEL_KEYS:
            with collected(problems):
                check_model_location(key, getattr(self, key))
            if is_adapter_folder(getattr(self, key)):
                # an adapter's base that is not there was said once its tokenizer was read,
                # after these (and alone: the input's rows came a run later)
                from directpo.adapters import adapter_base

                with collected(problems, ModelLoadError):  # (said as train says it)
                    adapter_base(getattr(self, key))
        if self.input and not os.path.exists(self.input):  # a file, or a folder as training reads
            problems.append(missing_path("input", self.input))
        elif self.input and os.path.isdir(self.input):  # the part to give, as this command can
            from directpo.data_folders import folder_problem

            problems += filter(None, [folder_problem(self.input, f"input: {self.input}")])
        if self.output:
            with collected(problems):
                check_output_file(self.output)
            if _same_file(self.input, self.output):  # (it was replaced by the rows written)
                problems.append(
                    f"output: {self.output} is the input file; give another name (the input "
                    "would be replaced by the rows written)"
                )
        return problems


def _same_file(first: str | None, second: str) -> bool:
    if not first:
        return False
    try:
        return os.path.samefile(first, second)
    except OSError:  # (either not there: the output is new)
        return False


def _lacks(file_columns: Collection[str] | None, column: str) -> bool:
    return file_columns is not None and column not in file_columns


def _system_column_of(key: str, file_columns: Collection[str] | None) -> str | None:
    """The input's own system prompt column (system, system_prompt, any case), for the run's
    system_column that the input lacks."""
    from directpo.unread_columns import system_column_of

    return system_column_of(file_columns or ()) if key == "system_column" else None


def _falls_back(key: str, value: Any, default: Any, file_columns: Collection[str] | None) -> bool:
    """Whether the run's column name ``value`` for option ``key`` gives way to the default's:
    the input has the default-named column and not the run's (the system column, whose
    default is none, is never required: a row without it has no system turn)."""
    return (
        file_columns is not None
        and key.endswith("_column")
        and isinstance(default, str)
        and value != default
        and value not in file_columns
        and default in file_columns
    )


OUTPUT_EXTENSIONS = (".jsonl", ".ndjson")


def check_output_file(path: str) -> None:
    """Refuse, before any work, an output that could not be written as JSON Lines."""
    if os.path.isdir(path):
        example = os.path.join(path, "out.jsonl")
        raise ConfigError(f"output: {path} is a folder; give a file name such as {example}")
    if not path.lower().endswith(OUTPUT_EXTENSIONS):
        ext = os.path.splitext(path)[1] or "(none)"
        raise ConfigError(
            f"output: {path}: the output is JSON Lines, so it must end in .jsonl (got {ext})"
        )
    folder = os.path.dirname(os.path.abspath(path))
    # a new folder for the output is made (as train makes its output_dir) once the input rows
    # passed their checks (jsonl.StagedJsonl): a bad row leaves no empty folder behind
    start = nearest_existing(Path(folder))
    if not start.is_dir():
        raise ConfigError(f"output: cannot make the folder {folder} ({start} is a file)")
    if not os.access(start, os.W_OK):
        where = folder if str(start) == folder else f"{start} (to make {folder})"
        raise ConfigError(f"output: cannot write in {where}")


@dataclass
class RewardOptions(FileCommandOptions):
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("model_name_or_path", "ref_model_name_or_path")
    KEYED_IN_FULL: ClassVar[frozenset[str]] = FileCommandOptions.KEYED_IN_FULL | {
        "ref_model_name_or_path",
        "beta",
        "assistant_only_loss",
        "output_prefix",
    }  # (frozen: see FileCommandOptions)
    PATH_KEYS: ClassVar[tuple[str, ...]] = (*FileCommandOptions.PATH_KEYS, "ref_model_name_or_path")

    ref_model_name_or_path: str | None = option(
        None, "Reference model. Default: the one recorded in the run's config.yaml."
    )
    beta: float | None = option(None, "beta of the implicit reward. Default: the run's.")
    assistant_only_loss: bool | None = option(
        None,
        "Leave a response's messages the model does not write (a tool's result, a user turn, "
        "and the next reply's header) out of its reward, as train's assistant_only_loss "
        "leaves them out of log π(y|x). Default: the run's, else false.",
    )
    output_prefix: str = option(
        "",
        "Prefix of the fields written (score: chosen_reward, rejected_reward, margin, reward; "
        "rank: ranked): run2_ writes run2_chosen_reward, ...; a row that already has a field "
        "to be written is refused, not overwritten.",
    )

    FROM_RUN: ClassVar[dict[str, tuple[str, Any]]] = {
        **FileCommandOptions.FROM_RUN,
        "assistant_only_loss": ("assistant_only_loss", False),
    }

    def _check_values(self) -> None:
        super()._check_values()
        self._require(self.beta is None or self.beta > 0, "beta", "> 0")

    def _path_problems(self) -> list[str]:
        """The folders' problems, and a folder that is not a directpo run given without
        --beta / --ref_model_name_or_path: said beside the refused values (it was said a run
        after they were fixed)."""
        problems = super()._path_problems()
        folder = self.model_name_or_path
        if folder and not any(names_any(line, {"model_name_or_path"}) for line in problems):
            from directpo.run_records import run_values_missing

            # (score and rank's options: their flags on a command line, keywords in Python;
            # checked outside any entry, they were told flags in Python too)
            with called_by(self.__dict__.get("_built_by", self.BUILT_BY)):
                missing = run_values_missing(folder, self.ref_model_name_or_path, self.beta)
            problems += [missing] if missing else []
        return problems


@accepting_spellings
@dataclass
class ScoreOptions(RewardOptions):
    KEYED_IN_FULL: ClassVar[frozenset[str]] = RewardOptions.KEYED_IN_FULL | {
        "chosen_column",
        "rejected_column",
        "response_column",
    }  # (frozen: see FileCommandOptions)
    chosen_column: str | None = option(
        None, "Column of the preferred response (pair rows). Default: the run's, else chosen."
    )
    rejected_column: str | None = option(
        None,
        "Column of the dispreferred response (pair rows). Default: the run's, else rejected.",
    )
    response_column: str = option(
        "response",
        "Column of the response (single-response rows); a row without response is read from "
        "TRL's completion column.",
    )
    FROM_RUN: ClassVar[dict[str, tuple[str, Any]]] = {
        **RewardOptions.FROM_RUN,
        "chosen_column": ("chosen_column", "chosen"),
        "rejected_column": ("rejected_column", "rejected"),
    }


@accepting_spellings
@dataclass
class RankOptions(RewardOptions):
    KEYED_IN_FULL: ClassVar[frozenset[str]] = RewardOptions.KEYED_IN_FULL | {"responses_column"}
    responses_column: str = option(
        "responses",
        "Column holding the list of candidates; a row without responses is read from "
        "completions (as directpo generate writes them).",
    )


@accepting_spellings
@dataclass
class GenerateOptions(FileCommandOptions):
    KEYED_IN_FULL: ClassVar[frozenset[str]] = FileCommandOptions.KEYED_IN_FULL | {
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "num_return_sequences",
        "min_p",
        "repetition_penalty",
        "seed",
        "completions_column",
        "keep_special_tokens",
        "max_prompt_length",
    }  # (frozen: see FileCommandOptions)
    batch_size: int = option(
        8,
        "Sequences per forward pass: each call samples batch_size // num_return_sequences "
        "prompts (at least one), all their completions at once; a prompt with more "
        "completions than batch_size draws them batch_size at a time. It changes the speed, "
        "not the samples.",
    )
    max_new_tokens: int = option(64, "Maximum new tokens per completion.")
    temperature: float = option(1.0, "Sampling temperature (0: greedy).")
    top_p: float = option(1.0, "Nucleus sampling mass (1: off).")
    top_k: int = option(0, "Top-k sampling (0: off).")
    num_return_sequences: int = option(1, "Completions per prompt.")
    min_p: float | None = option(
        None, "Min-p sampling: drop tokens below min_p times the top token's probability."
    )
    repetition_penalty: float = option(
        1.0, "Penalty on tokens already in the prompt or completion (1: off; TRL's, as train's)."
    )
    seed: int = option(
        42,
        "Sampling seed: each completion draws from its own generator, seeded from this seed, "
        "its row's index and its number, so the same seed and input give the same completions "
        "whatever batch_size (up to rounding: another batch pads the prompts otherwise), also "
        "when a stopped run is continued.",
    )
    completions_column: str = option(
        "completions",
        "Field each row's completions are written to (rank reads completions as its "
        "candidates); a row that already has it is refused, not overwritten.",
    )
    keep_special_tokens: bool = option(
        False,
        "Write the tokenizer's special tokens a completion drew mid-reply in its text (the "
        "tokens sampled, as score and rank read them back); default: dropped, as TRL and vLLM "
        "decode, and the completions that drew one counted.",
    )
    max_prompt_length: int | None = option(
        None,
        "Prompts longer than this are cut from the left. Default: the run's prompt limit "
        "(max_prompt_length, else max_length - 1), else 512.",
    )
    FROM_RUN: ClassVar[dict[str, tuple[str, Any]]] = {
        **FileCommandOptions.FROM_RUN,
        "max_prompt_length": ("prompt_limit", 512),
    }
    # transformers' generate() arguments a user of it writes first (do_sample: unknown option)
    FOREIGN_KEYS: ClassVar[dict[str, Advice]] = {
        **FileCommandOptions.FOREIGN_KEYS,
        "do_sample": "generate samples unless temperature is 0 (greedy decoding)",
        "max_length": "max_new_tokens limits each completion (max_prompt_length, the prompt)",
        "num_beams": "there is no beam search: sampling, or temperature 0 (greedy decoding)",
        # vLLM's / transformers' stops (--stop was told 'did you mean --top_p?', --eos_token
        # 'did you mean --max_new_tokens?')
        **dict.fromkeys(
            (
                "stop",
                "stop_strings",
                "stop_sequences",
                "stop_token_ids",
                "eos_token",
                "eos_token_id",
            ),
            "a completion ends at the model's own stop tokens (the tokenizer's EOS and "
            "generation_config.json's eos_token_id) or after max_new_tokens: no other stop, a "
            "string or a token, is taken",
        ),
    }

    def _check_values(self) -> None:
        super()._check_values()
        self._require(self.max_new_tokens >= 1, "max_new_tokens", ">= 1")
        self._require(self.temperature >= 0, "temperature", ">= 0")
        self._require(0 < self.top_p <= 1, "top_p", "in (0, 1]")
        self._require(self.top_k >= 0, "top_k", ">= 0")
        self._require(self.num_return_sequences >= 1, "num_return_sequences", ">= 1")
        none = spell_value(None)  # (GenerateOptions(min_p=2) writes None)
        self._require(self.min_p is None or 0 <= self.min_p <= 1, "min_p", f"{none} or in [0, 1]")
        self._require(self.repetition_penalty > 0, "repetition_penalty", "> 0")
        self._require(bool(self.completions_column.strip()), "completions_column", "a field name")
        self._require_sampling("num_return_sequences", "temperature")
        self._refuse_sampling_only("temperature", ("top_p", "top_k", "min_p"))
        limit = self.max_prompt_length
        self._require(limit is None or limit >= 1, "max_prompt_length", ">= 1")

    @property
    def sampling_extras(self) -> dict[str, Any]:
        """GenerationConfig keys beyond temperature, top_p and top_k (as DPOConfig's)."""
        extras: dict[str, Any] = {}
        if self.min_p is not None:
            extras["min_p"] = self.min_p
        if self.repetition_penalty != 1.0:
            extras["repetition_penalty"] = self.repetition_penalty
        return extras


@accepting_spellings
@dataclass
class DemoOptions(Options):
    profile: str = option(
        "quick",
        "quick (make demo: ~8 min on 2 CPU cores: DPO, Preferred-FT, online DPO and RL on the "
        "true reward) or full (~72 min: a beta sweep, both baselines, online DPO, RL at "
        "two learning rates and RLHF with a learned reward model).",
    )
    output_dir: str = option("demo_output", "Where the figures, results and runs go.")
    seed: int = option(0, "Seed of prompts, sampling and training: same seed, same numbers.")
    PATH_KEYS: ClassVar[tuple[str, ...]] = ("output_dir",)

    def _check_values(self) -> None:
        self._one_of("profile", ("quick", "full"))


@accepting_spellings
@dataclass
class PlotOptions(Options):
    run_dir: str | None = option(
        None,
        "A training run's output_dir (holds metrics.jsonl), or a folder with a "
        "trainer_state.json (a checkpoint; a transformers / TRL run's output_dir).",
    )
    output: str | None = option(
        None,
        "The image to write (.png, .pdf, .svg, .jpg, ...; its folder is made). "
        "Default: RUN_DIR/curves.png.",
    )
    PATH_KEYS: ClassVar[tuple[str, ...]] = ("run_dir", "output")
