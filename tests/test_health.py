from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_config

import directpo.step as step_module
import directpo.trainer as trainer_module
from directpo.callers import Caller, Entry, Spelling, called_by
from directpo.cli import main
from directpo.health import (
    ZERO_GRADIENT_STEPS,
    ZeroGradients,
    compact,
    learning_rate_note,
    nonfinite_end_note,
)
from directpo.trainer import train


def _said(lines: list[str], words: str) -> list[str]:
    return [line for line in lines if words in line]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e4, "1e4"), (5e-7, "5e-7"), (1e-4, "1e-4"), (0.05, "0.05"), (2.5e5, "2.5e5"), (12.0, "12")],
)
def test_a_learning_rate_is_said_as_typed(value, text) -> None:
    assert compact(value) == text


@pytest.mark.parametrize(
    ("value", "adapters", "guess"),
    [
        (1e4, False, "learning_rate=1e-4?"),  # the user's typo
        (5e6, False, "learning_rate=5e-6?"),
        (2e5, True, "learning_rate=2e-5?"),
        (0.02, False, None),  # above the bar, but no typo's flip is a DPO rate
        (100.0, False, None),  # its flip, 1e-2, is no DPO rate either
        (0.5, True, None),
        (math.inf, False, None),  # (if a caller's inf gets here: no exponent to flip)
    ],
)
def test_a_learning_rate_no_recipe_uses_is_said_with_the_likely_intent(
    value, adapters, guess
) -> None:
    with called_by(Caller(Spelling.PYTHON, Entry.TRAIN)):
        note = learning_rate_note(value, adapters)
    assert note is not None
    assert note.startswith(f"warning: learning_rate={compact(value)} is far above")
    assert note.endswith(f"(the run goes on with {compact(value)})")
    assert ("did you mean" in note) == (guess is not None)
    if guess:
        assert guess in note


@pytest.mark.parametrize(
    ("value", "adapters"),
    [(1e-6, False), (5e-7, False), (5e-3, False), (1e-2, False), (5e-4, True), (0.1, True)],
)
def test_the_learning_rates_recipes_and_tests_use_are_not_said(value, adapters) -> None:
    assert learning_rate_note(value, adapters) is None


def test_zero_gradients_are_said_once_at_the_count_naming_the_steps() -> None:
    watch = ZeroGradients()
    with called_by(Caller(Spelling.PYTHON, Entry.TRAIN)):
        said = [watch.after_step(step, 0.0, 0.97, 1e4) for step in range(1, 8)]
    assert [bool(line) for line in said] == [s == ZERO_GRADIENT_STEPS for s in range(1, 8)]
    line = said[ZERO_GRADIENT_STEPS - 1]
    assert line.startswith(f"warning: step {ZERO_GRADIENT_STEPS}: every gradient has been exactly")
    assert "since step 1" in line and "the loss is 0.97" in line and "learning_rate=1e4" in line


def test_a_zero_gradient_at_the_losss_minimum_or_broken_by_a_live_step_is_not_said() -> None:
    watch = ZeroGradients()
    # hinge past its margin, a saturated sigmoid: the loss at its minimum, nothing wrong
    assert not any(watch.after_step(step, 0.0, 0.0, 1e-6) for step in range(1, 10))
    # a live gradient between the zero ones breaks the count
    steps = [(0.0, 0.7), (0.0, 0.7), (1.5, 0.7), (0.0, 0.7), (0.0, 0.7)]
    assert not any(watch.after_step(step, g, loss, 1e-6) for step, (g, loss) in enumerate(steps))
    # a skipped step (NaN) or a round without pairs (no loss) neither counts nor breaks it
    assert not watch.after_step(10, math.nan, math.nan, 1e-6)
    assert not watch.after_step(11, 0.0, math.nan, 1e-6)
    assert "since step 3" in watch.after_step(12, 0.0, 0.7, 1e-6)


def test_a_typo_learning_rate_is_said_once_at_start_in_the_callers_words(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "py", learning_rate=1e4)
    train(config, echo=lines.append)
    (note,) = _said(lines, "is far above any DPO recipe's")
    assert "learning_rate=1e4" in note and "did you mean learning_rate=1e-4?" in note
    assert lines.index(note) < next(i for i, line in enumerate(lines) if line.startswith("step"))

    argv = [
        "train", "--model_name_or_path", str(tiny_model_dirs["gpt2"]), "--train_file",
        str(pairs_file), "--report_to", "none", "--output_dir", str(tmp_path / "cli"),
        "--max_steps", "1", "--learning_rate", "1e4", "--disable_tqdm",
    ]  # fmt: skip
    assert main(argv) == 0  # a note, not a refusal: the user may mean it
    out = capsys.readouterr()
    (note,) = _said((out.out + out.err).splitlines(), "is far above any DPO recipe's")
    assert "--learning_rate 1e4" in note and "did you mean --learning_rate 1e-4?" in note


def _zeroed_from_step(monkeypatch, first: int) -> None:
    """Every gradient zeroed from step ``first`` on, after the backward (as a hook that
    zeroes them would): the policy learns at first, then no longer."""
    real, calls = trainer_module._accumulate, {"n": 0}

    def accumulate(run, micro_batches, measure):
        stats = real(run, micro_batches, measure)
        calls["n"] += 1
        if calls["n"] >= first:
            for tensor in run.trainable:
                if tensor.grad is not None:
                    tensor.grad.zero_()
        return stats

    monkeypatch.setattr(trainer_module, "_accumulate", accumulate)


def test_gradients_that_die_after_a_live_start_are_said_once(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    _zeroed_from_step(monkeypatch, 2)
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=6)
    result = train(config, echo=lines.append)
    rows = {row["step"]: row for row in result.metrics}
    assert rows[1]["grad_norm"] > 0 and all(rows[s]["grad_norm"] == 0.0 for s in range(2, 7))
    (warning,) = _said(lines, "every gradient has been exactly zero")
    dead_at = 1 + ZERO_GRADIENT_STEPS
    assert warning.startswith(f"warning: step {dead_at}: ") and "since step 2" in warning
    assert "pass a lower learning_rate" in warning
    # said after that step's row, in the run's lines (once: steps 5 and 6 say nothing more)
    row_line = next(line for line in lines if line.startswith(f"step {dead_at}/"))
    assert lines.index(warning) == lines.index(row_line) + 1


def test_a_healthy_tiny_run_says_neither_warning(tiny_model_dirs, pairs_file, tmp_path) -> None:
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=6)
    result = train(config, echo=lines.append)
    assert all(row["grad_norm"] > 0 for row in result.metrics if "grad_norm" in row)
    assert not _said(lines, "far above any DPO recipe's")
    assert not _said(lines, "exactly zero")
    assert not [line for line in lines if line.startswith("warning:")]


def test_a_loss_of_ln2_after_step_1_is_a_healthy_warmups_and_not_said(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Why ln 2 with rewards 0 after step 1 is no alarm (health.py): a warmup's first step has
    learning rate 0, so step 2's policy is still the reference, exactly."""
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=4, warmup_steps=2
    )
    rows = {row["step"]: row for row in train(config, echo=lines.append).metrics}
    assert rows[2]["loss"] == rows[1]["loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert rows[2]["rewards/margins"] == 0.0 and rows[4]["rewards/margins"] > 0
    assert not [line for line in lines if line.startswith("warning:")]


def test_adapters_are_held_to_the_adapter_bar_a_continued_folders_too(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """LoRA's 5e-2 (test_lora's) is no typo; the same rate in a full fine-tune is said. An
    adapter folder as the model trains adapters as lora_r does (it was held to 1e-2)."""
    lines: list[str] = []
    first = tmp_path / "first"
    llama = tiny_model_dirs["llama"]
    train(tiny_config(llama, pairs_file, first, lora_r=4, learning_rate=5e-2), echo=lines.append)
    train(tiny_config(first, pairs_file, tmp_path / "on", learning_rate=5e-2), echo=lines.append)
    assert not _said(lines, "far above any DPO recipe's")
    train(tiny_config(llama, pairs_file, tmp_path / "full", learning_rate=5e-2), echo=lines.append)
    (note,) = _said(lines, "far above any DPO recipe's")
    assert "learning_rate=0.05 is far above" in note and "(full fine-tuning: " in note


def _nan_at(monkeypatch, calls: set[int]) -> None:
    """The loss NaN at the given training calls (1-based; one micro-batch a step: the steps;
    an evaluation's, without gradients, not counted)."""
    real, count = step_module.preference_loss, {"n": 0}

    def loss(*args, **kwargs):
        count["n"] += torch.is_grad_enabled()
        total, parts = real(*args, **kwargs)
        poisoned = torch.is_grad_enabled() and count["n"] in calls
        return (total * float("nan") if poisoned else total), parts

    monkeypatch.setattr(step_module, "preference_loss", loss)


def test_a_run_that_ends_in_non_finite_steps_says_which_weights_it_saved(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Steps 3-4 of 4 NaN (under max_nonfinite_steps 10): the model saved is step 2's, which
    failed on them; said once, before 'model saved to'. A NaN step the run recovered from
    (step 2 of 4) is its rows' nonfinite_steps alone."""
    _nan_at(monkeypatch, {3, 4})
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "end", max_steps=4)
    train(config, echo=lines.append)
    (warning,) = _said(lines, "loss or gradient not finite")
    assert warning.startswith("warning: the run's last 2 steps (3-4) were skipped, their loss")
    assert "the model saved holds step 2's weights" in warning
    assert "learning_rate=0.005" in warning
    assert lines.index(warning) + 1 == next(
        i for i, line in enumerate(lines) if line.startswith("model saved to")
    )
    monkeypatch.undo()
    _nan_at(monkeypatch, {2})
    lines.clear()
    result = train(
        tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "mid", max_steps=4),
        echo=lines.append,
    )
    assert [row.get("nonfinite_steps") for row in result.metrics] == [None, 1, None, None]
    assert not _said(lines, "not finite")
    # load_best_model_at_end saves the best evaluation's model (said by its own line)
    monkeypatch.undo()
    _nan_at(monkeypatch, {3})
    lines.clear()
    best = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, tmp_path / "best", max_steps=3, eval_steps=1,
        save_steps=1, eval_file=str(pairs_file), load_best_model_at_end=True,
    )  # fmt: skip
    rows = [row for row in train(best, echo=lines.append).metrics if "loss" in row]
    assert [row.get("nonfinite_steps") for row in rows] == [None, None, 1]
    assert _said(lines, "loaded the best model: step ") and not _said(lines, "not finite")


def test_the_end_note_names_one_step_and_a_run_that_never_updated() -> None:
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        one = nonfinite_end_note(1, 6, 1e-6)
        every = nonfinite_end_note(3, 3, 1e4)
    assert one.startswith("warning: the run's last step (6) was skipped, its loss or gradient")
    assert "holds step 5's weights, on which it failed;" in one and "--learning_rate 1e-6" in one
    assert "holds the starting weights, on which those steps failed;" in every
    assert nonfinite_end_note(0, 6, 1e-6) == ""


def test_every_message_says_one_learning_rate_range() -> None:
    """guard.py's vanished-update line said DPO's usual range was 1e-7 to 1e-5 full and 1e-5 to
    1e-4 with LoRA, this note 5e-7 to 5e-6 full and 5e-6 to 5e-4 with adapters: a user told to
    raise the rate into one range was warned by the other. Every message now reads one source."""
    import dataclasses
    import re

    from directpo.config import DPOConfig
    from directpo.errors import TrainingStopped
    from directpo.guard import UpdateStats, check_update
    from directpo.health import ADAPTER_RATES, FULL_RATES

    def ranges(text: str) -> list[str]:
        return re.findall(r"\d[\d.]*e-\d+ to \d[\d.]*e-\d+", text)

    expected = [f"{compact(low)} to {compact(high)}" for low, high in (FULL_RATES, ADAPTER_RATES)]
    assert expected == ["2e-7 to 5e-6", "5e-6 to 5e-4"]
    with pytest.raises(TrainingStopped, match="the update vanished") as stopped:
        check_update(UpdateStats(0, 100, 0.0), 2, 1e-12, 1.0, 0.5, torch.float32, "adamw")
    assert ranges(str(stopped.value)) == expected
    notes = [learning_rate_note(1.0, adapters) for adapters in (False, True)]
    assert [ranges(note) for note in notes] == [[expected[0]], [expected[1]]]
    (field,) = [f for f in dataclasses.fields(DPOConfig) if f.name == "learning_rate"]
    assert ranges(field.metadata["help"]) == expected
