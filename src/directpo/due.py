"""When each of the training loop's named steps is due: logging (logging_steps,
logging_first_step), evaluation (eval_strategy, eval_steps, eval_delay), checkpoints
(save_strategy, save_steps), every-N-steps upkeep; transformers' rules, the last step logged,
and evaluated once eval_delay has passed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from directpo.callers import spell_change

if TYPE_CHECKING:
    from directpo.run import Run


def due(done: int, every: int, total: int | None = None) -> bool:
    """Step ``done`` is a multiple of ``every`` (0: never), or the last step."""
    return bool(every and done % every == 0) or done == total


def logs_at(run: Run, done: int) -> bool:
    first = run.config.logging_first_step and done == 1
    return first or due(done, run.config.every("logging_steps", run.total_steps), run.total_steps)


def evaluates(run: Run) -> bool:
    """The run has something to evaluate and an eval_strategy that does."""
    return bool(run.evals or run.eval_prompts) and run.config.eval_strategy != "no"


def evaluates_at(run: Run, done: int) -> bool:
    """eval_strategy: auto / steps (every eval_steps, or logging_steps; and at the end),
    epoch (at each epoch's end), no; none before eval_delay steps (epochs) have passed, the
    last step's neither (transformers' rule)."""
    config = run.config
    if not evaluates(run):
        return False
    if config.eval_strategy == "epoch":
        waited = run.source.epochs_done(done) >= config.eval_delay
        return waited and due(done, run.source.steps_per_epoch, run.total_steps)
    key = "eval_steps" if config.eval_steps or config.eval_strategy != "steps" else "logging_steps"
    every = config.every(key, run.total_steps)
    return done >= config.eval_delay and due(done, every, run.total_steps)


def no_evaluation(run: Run) -> str:
    unit = "epochs" if run.config.eval_strategy == "epoch" else "steps"
    best = run.config.load_best_model_at_end
    return (
        f"eval_delay {run.config.eval_delay:g}: no evaluation in this run ({run.total_steps} "
        f"steps){'; load_best_model_at_end keeps the last step' if best else ''}; "
        f"{spell_change('lower', 'eval_delay')} to evaluate after fewer {unit}"
    )


def saves_at(run: Run, done: int) -> bool:
    """save_strategy: steps (every save_steps), epoch (each epoch's end), no."""
    strategy = run.config.save_strategy
    if strategy == "epoch":
        return due(done, run.source.steps_per_epoch)
    return strategy == "steps" and due(done, run.config.every("save_steps", run.total_steps))
