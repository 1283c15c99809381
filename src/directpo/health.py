"""A run that has clearly gone wrong, said in one line instead of trained on to its end.

Three warnings, each said once, by the main process, in the run's output as the other notes:

* at start, a ``learning_rate`` far above what any DPO recipe uses (``learning_rate_note``);
  the run goes on with it (a user may mean it), but ``--learning_rate 1e4`` typed for 1e-4
  collapses the policy in a step or two (SmolLM2-135M: logits 0, grad_norm 0 from step 2 on)
  and the run saved that model without a word;
* in the loop, every gradient exactly zero for ``ZERO_GRADIENT_STEPS`` steps in a row while
  the loss is away from its minimum (``ZeroGradients``): the policy no longer learns, and
  the steps left train nothing. (A zero gradient at the first checked step already stops the
  run, guard.py: this is the policy that learned and then died.)

What is NOT said, by decision: a loss of ln 2 with rewards 0 after step 1. Exactly, it holds at
step 1 by construction (the policy is the reference) and at step 2 of every run with a warmup
(transformers' linear warmup gives step 1 a learning rate of 0; test_health); as printed
(0.6931), for tens of steps of a healthy run at DPO's 5e-7, whose rewards move by 1e-4 a step;
TR-DPO's ``ref_model_mixup_alpha: 1`` every step keeps it by design. What it would reveal is
said otherwise: a policy whose weights do not move stops the run at guard.py's update check
(the weights measured before and after a step), and a collapsed one (uniform logits) has a
zero gradient, said here; its loss is ln 2 only where each pair's completions have one length.

NaN / Inf steps are skipped and counted (trainer.py, ``max_nonfinite_steps``), unchanged; a
run that ends inside such a streak, shorter than the limit, is said at its end
(``nonfinite_end_note``): it saved the weights that failed on every one of those steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from directpo.callers import Blank, said, spell_change

# The learning rates DPO recipes use: the one source of every message that names them (this
# note, guard.py's vanished update, learning_rate's help). Full fine-tuning: the DPO paper 1e-6
# (RMSprop), TRL's DPOConfig default 1e-6, the alignment-handbook's zephyr-7b-beta DPO 5e-7,
# Tulu 3's DPO 5e-7 (8B) and 2e-7 (70B); up to 5e-6 for small models. Adapters: the
# alignment-handbook's QLoRA DPO 5e-6, common LoRA DPO recipes 5e-5 to 2e-4, torchtune's
# llama2_7B_lora_dpo 5e-4. (guard.py said 1e-7 to 1e-5 full and 1e-5 to 1e-4 LoRA, from no
# recipe, beside this note's 5e-7 to 5e-6: one range now, its low end Tulu 3 70B's 2e-7.)
FULL_RATES = (2e-7, 5e-6)
ADAPTER_RATES = (5e-6, 5e-4)
TRL_DEFAULT_RATE = 1e-6
# Above these the rate is no recipe's: 100x the largest reported for full fine-tuning (~1e-4,
# small models), 200x torchtune's LoRA 5e-4. Every optimizer here (AdamW, RMSprop) moves a
# weight by about the learning rate each step, whatever the gradient's scale: at 1e-2 a full
# fine-tune moves each weight (~1e-2 in a transformer) by its own size at every step. The
# tests' tiny random models train healthily at 5e-3, under the bar.
FULL_LIMIT = 1e-2
ADAPTER_LIMIT = 1e-1
# a rate whose exponent's sign flipped is guessed only where the flip is a DPO rate
PLAUSIBLE = (1e-8, 1e-3)

ZERO_GRADIENT_STEPS = 3  # steps in a row with every gradient exactly zero
# a loss this close to 0 can have a zero gradient healthily: hinge past its margin, a
# saturated sigmoid whose gradient underflows float32 (guard.py's check waits there too)
AT_MINIMUM = 1e-3


def compact(value: float) -> str:
    """A number as a user types it: 1e4, 5e-7, 0.05 (Python's 10000.0 and 5e-07 were not)."""
    if value == 0 or 1e-3 <= abs(value) < 1e3 or not math.isfinite(value):
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def recipe_rates(adapters: bool) -> str:
    """The learning rates DPO recipes use, as every message says them: '2e-7 to 5e-6, TRL's
    default 1e-6' (full fine-tuning), '5e-6 to 5e-4' (``adapters``: LoRA / PEFT)."""
    low, high = ADAPTER_RATES if adapters else FULL_RATES
    span = f"{compact(low)} to {compact(high)}"
    return span if adapters else f"{span}, TRL's default {compact(TRL_DEFAULT_RATE)}"


def recipe_rates_both() -> str:
    """Both kinds' ranges in one phrase, for a line that does not know which the run trains."""
    return f"full fine-tuning {recipe_rates(False)}; LoRA / adapters {recipe_rates(True)}"


def learning_rate_note(learning_rate: float, adapters: bool) -> str | None:
    """The warning for a ``learning_rate`` no DPO recipe uses (``adapters``: the run trains
    LoRA / PEFT adapters), with the rate a typo likely meant (1e4 -> 1e-4); None for one
    at most ``FULL_LIMIT`` (``ADAPTER_LIMIT`` for adapters)."""
    limit = ADAPTER_LIMIT if adapters else FULL_LIMIT
    if not learning_rate > limit:  # (a NaN or a refused one is not this note's)
        return None
    given = said("learning_rate", Blank(compact(learning_rate)))
    kind = "adapters" if adapters else "full fine-tuning"
    usual = recipe_rates(adapters)
    line = (
        f"warning: {given} is far above any DPO recipe's ({kind}: {usual}; said above "
        f"{compact(limit)}): a policy trained at it typically collapses within a few steps (NaN, "
        "or logits/* 0 and grad_norm 0)"
    )
    if math.isfinite(learning_rate):  # (an infinite one has no exponent to flip)
        mantissa, exponent = f"{learning_rate:e}".split("e")
        flipped = float(f"{mantissa}e{-int(exponent)}")
        if int(exponent) > 0 and PLAUSIBLE[0] <= flipped <= PLAUSIBLE[1]:
            line += f"; did you mean {said('learning_rate', Blank(compact(flipped)))}?"
    return f"{line} (the run goes on with {compact(learning_rate)})"


@dataclass
class ZeroGradients:
    """Counts the steps in a row whose gradient is exactly zero while the loss is not at its
    minimum; ``after_step`` says the warning once, at the ``ZERO_GRADIENT_STEPS``-th."""

    in_a_row: int = 0
    since: int = 0  # the count's first step (a skipped step between does not break it)
    said: bool = False

    def after_step(self, step: int, grad_norm: float, loss: float, learning_rate: float) -> str:
        """The warning's line at the step that makes the count (else ''); ``learning_rate``:
        the run's option (its peak, as the user set it). A step without a finite loss (skipped
        as non-finite, an online round without pairs) neither counts nor breaks the count."""
        if self.said or not math.isfinite(loss) or math.isnan(grad_norm):
            return ""
        if grad_norm != 0.0 or abs(loss) <= AT_MINIMUM:
            self.in_a_row = 0
            return ""
        self.in_a_row += 1
        if self.in_a_row == 1:
            self.since = step
        if self.in_a_row < ZERO_GRADIENT_STEPS:
            return ""
        self.said = True
        return (
            f"warning: step {step}: every gradient has been exactly zero since step {self.since} "
            f"(grad_norm 0) while the loss is {loss:.4g}: the policy no longer learns, and the "
            "steps left train nothing; a learning_rate too high collapses a policy so (logits/* "
            f"0; this run's: {said('learning_rate', Blank(compact(learning_rate)))}): stop the "
            f"run (Ctrl-C saves a checkpoint) and start again from the model: "
            f"{spell_change('lower', 'learning_rate')}"
        )


def nonfinite_end_note(in_a_row: int, done: int, learning_rate: float) -> str:
    """The warning of a run whose last ``in_a_row`` steps (of ``done``) were skipped as
    non-finite: its saved model is the one that failed on them ('' where none was). A run of 6
    steps that went NaN after step 1 saved that model, said only by its rows' loss=nan."""
    if not in_a_row:
        return ""
    steps = (
        f"step ({done}) was skipped, its"
        if in_a_row == 1
        else f"{in_a_row} steps ({done - in_a_row + 1}-{done}) were skipped, their"
    )
    kept = f"step {done - in_a_row}'s weights" if done > in_a_row else "the starting weights"
    failed = "it" if in_a_row == 1 else "those steps"  # (one step was 'those steps')
    return (
        f"warning: the run's last {steps} loss or gradient not finite (NaN/Inf): the model "
        f"saved holds {kept}, on which {failed} failed; check learning_rate (this run's: "
        f"{said('learning_rate', Blank(compact(learning_rate)))}) and those steps' pairs"
    )
