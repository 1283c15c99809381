"""The ``directpo`` commands' table: each command's options, what it runs (the library's call,
its heavy imports only when used) and its help (train's --help sections, TRL's names in its
epilog). Read by cli.py's dispatch and cli_parser.py's parser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from directpo.after_run import next_steps
from directpo.command_options import (
    DemoOptions,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)
from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.launchers import first_rank
from directpo.signals import KeptLines, exit_code_of
from directpo.trl_compat import ALIASES


def _train(options: DPOConfig) -> int:
    """0 for a finished run; a run stopped by a signal (its checkpoint saved) exits 128 + the
    signal, as score, rank and generate do and as the shell reports a killed process: after
    ``directpo train && directpo score`` or a scheduler's preemption, an unfinished run is not
    taken for a finished one (every rank under torchrun agreed on the signal, so each exits
    with the same code)."""
    from directpo.trainer import train  # heavy imports only when used

    result = train(options)  # (called by the command line: cli._main set its caller)
    if result is not None and result.stopped_by is not None:
        return exit_code_of(result.stopped_by)
    if result is not None and first_rank():  # (a finished run: said on stderr if need be)
        KeptLines(print)(
            next_steps(str(result.output_dir), options.eval_file, options.max_eval_samples)
        )
    return 0


def _score(options: ScoreOptions) -> None:
    from directpo.reward_files import score_file

    score_file(options)


def _rank(options: RankOptions) -> None:
    from directpo.reward_files import rank_file

    rank_file(options)


def _generate(options: GenerateOptions) -> None:
    from directpo.generate_files import generate_file

    generate_file(options)


def _demo(options: DemoOptions) -> None:
    from directpo.demo.pipeline import run_demo

    run_demo(options.profile, options.output_dir, options.seed)


def _plot(options: PlotOptions) -> None:
    from directpo.demo.plots import plot_run

    if not options.run_dir:
        raise ConfigError("plot needs RUN_DIR")
    print(f"wrote {plot_run(options.run_dir, options.output)}")


# train --help's sections: each title and its first option (DPOConfig declares its options
# section by section); 153 options in one list hid, say, every LoRA option among the rest
TRAIN_HELP_GROUPS = (
    ("model", "model_name_or_path"),
    ("precision and speed", "dtype"),
    ("adapters (LoRA, QLoRA)", "use_peft"),
    ("memory and row layout", "logprob_chunk_tokens"),
    ("distributed (torchrun)", "distributed"),
    ("reference model", "precompute_ref_log_probs"),
    ("data", "train_file"),
    ("online DPO", "online"),
    ("loss", "loss_type"),
    ("optimisation", "learning_rate"),
    ("outputs, logging, evaluation and checkpoints", "output_dir"),
    ("generation during evaluation (reward and KL)", "eval_generate"),
)


def _trl_names_epilog() -> str:
    """TRL's other spellings, which train reads too (they are no options of their own)."""
    renamed = ", ".join(f"{trl} ({ours})" for trl, ours in ALIASES.items())
    return (
        f"TRL's names are read too: {renamed}; TRL keys that ask for nothing done differently "
        "here (push_to_hub: false, dataloader_num_workers, do_eval, ...) are accepted, and any "
        "other is refused naming what to use instead. OpenRLHF's and torchtune's names are read "
        "by the same rule (docs/migrating.md)."
    )


@dataclass(frozen=True)
class Command:
    options: type
    run: Callable[[Any], int | None]  # the exit code (None: 0)
    help: str
    takes_yaml: bool = False
    positional: str | None = None  # an option that may also be given as the first argument
    groups: tuple[tuple[str, str], ...] = ()  # --help's sections: (title, first option)
    epilog: Callable[[], str] | None = None


COMMANDS = {
    "train": Command(
        DPOConfig,
        _train,
        "train a model with DPO",
        takes_yaml=True,
        groups=TRAIN_HELP_GROUPS,
        epilog=_trl_names_epilog,
    ),
    "score": Command(ScoreOptions, _score, "implicit reward of responses or preference pairs"),
    "rank": Command(RankOptions, _rank, "sort candidate responses by implicit reward"),
    "generate": Command(GenerateOptions, _generate, "sample completions for prompts"),
    "demo": Command(DemoOptions, _demo, "the DPO paper's controlled-sentiment experiment"),
    "plot": Command(PlotOptions, _plot, "draw a run's training curves", positional="run_dir"),
}
