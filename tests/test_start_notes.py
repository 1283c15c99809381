"""The lines a run says at start for settings a TRL recipe would train otherwise."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_config

from directpo.arguments import checked_arguments, config_with
from directpo.batching import DataSchedule
from directpo.config import DPOConfig, load_config
from directpo.start_notes import start_notes
from directpo.trainer import train


def _scheduled_lrs(config: DPOConfig, steps: int) -> list[float]:
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=config.learning_rate)
    schedule = config.schedule(optimizer, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_a_constant_schedule_with_warmup_says_it_warms_up_where_trl_would_not() -> None:
    config = DPOConfig(lr_scheduler_type="constant", warmup_steps=2, learning_rate=1.0)
    assert _scheduled_lrs(config, 4) == [0.0, 0.5, 1.0, 1.0]  # the warmup asked for is done
    (note,) = start_notes(config, 4, lora=False)
    assert note.startswith("lr_scheduler_type constant warms up over 2 steps")
    assert "TRL's constant would not" in note and "warmup_steps: 0" in note
    ratio = DPOConfig(lr_scheduler_type="constant", warmup_ratio=0.25)
    assert "over 3 steps" in start_notes(ratio, 10, lora=False)[0]
    # nothing to say: no warmup, or TRL's own constant_with_warmup (which it warms up too)
    assert start_notes(DPOConfig(lr_scheduler_type="constant"), 4, lora=False) == []
    named = DPOConfig(lr_scheduler_type="constant_with_warmup", warmup_steps=2, learning_rate=1.0)
    assert start_notes(named, 4, lora=False) == []
    assert _scheduled_lrs(named, 4) == [0.0, 0.5, 1.0, 1.0]
    assert start_notes(DPOConfig(warmup_steps=2), 4, lora=False) == []  # linear: TRL's too


def test_trls_use_peft_at_all_linear_says_trl_adapts_peafts_choice() -> None:
    """trl/scripts/dpo.py's --use_peft --lora_r 32 trained every linear layer here (directpo's
    all-linear) and q_proj, v_proj in TRL (peft's choice for Llama) without a word: a start
    line says so, with the setting for TRL's adapters; not where the modules are given, nor
    for directpo's own lora_r."""
    (note,) = start_notes(DPOConfig(use_peft=True, lora_r=32), 4, lora=True)
    assert note.startswith("use_peft trains adapters on every linear layer here")
    assert "(lora_target_modules: all-linear, directpo's default)" in note
    assert note.endswith("lora_target_modules: null for TRL's adapters")
    chosen = DPOConfig(use_peft=True, lora_target_modules=["q_proj", "v_proj"])
    assert start_notes(chosen, 4, lora=True) == []
    assert start_notes(DPOConfig(use_peft=True, lora_target_modules=None), 4, lora=True) == []
    assert start_notes(DPOConfig(lora_r=32), 4, lora=True) == []
    # train(config, peft_config=LoraConfig(...)): its target_modules are the run's
    assert start_notes(DPOConfig(use_peft=True), 4, lora=True, peft_config=object()) == []


def test_use_peft_with_all_linear_written_by_any_caller_is_not_said_to_differ(tmp_path) -> None:
    """lora_target_modules: all-linear written beside use_peft (a TRL recipe, --use_peft
    --lora_target_modules all-linear) trains what TRL trains: it was told 'directpo's default;
    TRL's use_peft ... adapts peft's choice: lora_target_modules: null for TRL's adapters',
    advice that made the run train fewer modules than the TRL run it ports. Only the value left
    unwritten is said, by every caller, through train()'s rebuilds too."""

    def said(config: DPOConfig) -> bool:
        return any(note.startswith("use_peft trains") for note in start_notes(config, 4, True))

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: m\nuse_peft: true\nlora_target_modules: all-linear\n")
    bare = tmp_path / "bare.yaml"
    bare.write_text("model_name_or_path: m\nuse_peft: true\nlora_r: 32\n")
    flags = {"use_peft": "true", "lora_target_modules": "all-linear"}
    written = {
        "recipe": load_config(recipe),
        "flags": load_config(None, flags),
        "flag over a recipe": load_config(bare, {"lora_target_modules": "all-linear"}),
        "keyword": DPOConfig(use_peft=True, lora_target_modules=["all-linear"]),
        "train(config, keyword)": config_with(
            DPOConfig(use_peft=True), {"lora_target_modules": "all-linear"}
        ),
    }
    attribute = DPOConfig(use_peft=True)
    attribute.lora_target_modules = ["all-linear"]  # (a notebook's, after it was built)
    written["attribute"] = attribute
    for caller, config in written.items():
        rebuilt, _ = checked_arguments(config, None, lambda line: None)  # (train()'s rebuild)
        assert not said(config) and not said(rebuilt), caller
    unwritten = {
        "recipe": load_config(bare),
        "flags": load_config(None, {"use_peft": "true"}),
        "keyword": DPOConfig(use_peft=True, lora_r=32),
        "train(config, keyword)": config_with(DPOConfig(use_peft=True), {"beta": 0.2}),
    }
    for caller, config in unwritten.items():
        rebuilt, _ = checked_arguments(config, None, lambda line: None)
        assert said(config) and said(rebuilt), caller


def test_lora_dropout_under_disable_dropout_is_said_once_where_trl_would_zero_it() -> None:
    config = DPOConfig(lora_r=8, lora_dropout=0.05)
    (note,) = start_notes(config, 4, lora=True)
    assert note.startswith("lora_dropout 0.05 acts although disable_dropout is on")
    assert start_notes(DPOConfig(lora_r=8, lora_dropout=0.05, disable_dropout=False), 4, True) == []
    assert start_notes(DPOConfig(lora_r=8), 4, lora=True) == []  # 0.0: TRL's training


def test_a_run_says_its_constant_warmup_at_start(tiny_model_dirs, pairs_file, tmp_path) -> None:
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=2,
        lr_scheduler_type="constant", warmup_steps=1,
    )  # fmt: skip
    train(config, echo=lines.append)
    assert (
        sum(line.startswith("lr_scheduler_type constant warms up over 1 step ") for line in lines)
        == 1
    )


def test_a_bf16_runs_float32_evaluation_is_said_once_where_trl_evaluates_in_bf16() -> None:
    config = DPOConfig(dtype="bfloat16")
    (note,) = start_notes(config, 4, lora=False, eval_float32=True)
    assert note.startswith("held-out pairs are evaluated in float32 (eval_dtype: auto")
    assert "eval_dtype: bfloat16 evaluates as TRL does" in note
    assert start_notes(config, 4, lora=False) == []  # no held-out pairs, or not in float32
    asked = DPOConfig(dtype="bfloat16", eval_dtype="float32")
    assert start_notes(asked, 4, lora=False, eval_float32=True) == []  # chosen by name


def test_the_sft_loss_says_its_mean_once_where_trl_takes_the_micro_batchs_token_mean() -> None:
    for config in (DPOConfig(loss_type=["sigmoid", "sft"]), DPOConfig(rpo_alpha=0.5)):
        (note,) = start_notes(config, 4, lora=False)
        assert note.startswith("loss sft is the mean over pairs of each chosen completion's")
    assert start_notes(DPOConfig(loss_type=["sigmoid", "hinge"]), 4, lora=False) == []


def test_a_warmup_as_long_as_the_run_is_said_with_the_peak_it_reaches() -> None:
    """warmup_steps: 100 on a run of 20 steps trained at a fifth of learning_rate at most,
    without a word."""
    config = DPOConfig(warmup_steps=100, learning_rate=1.0)
    (note,) = start_notes(config, 20, lora=False)
    assert note.startswith("warning: the warmup (100 steps) is as long as the run (20 steps)")
    assert "reaches at most 19% of learning_rate" in note
    assert max(_scheduled_lrs(config, 20)) == 0.19
    assert start_notes(DPOConfig(warmup_steps=19), 20, lora=False) == []


def _schedule(pairs: int, drop_last: bool = False) -> DataSchedule:
    return DataSchedule(
        num_examples=pairs, batch_size=2, accumulation=2, seed=0, drop_last=drop_last
    )


@pytest.mark.parametrize(
    "pairs, logging_steps, drop_last, said",
    [
        (10, 2, False, True),  # steps of 4, 4, 2 pairs: the short third logged with the fourth
        (10, 1, False, False),  # each step alone: its pairs' mean is its mean in both
        (12, 2, False, False),  # every step full: the mean of steps is the mean of pairs
        (7, 1, False, True),  # a last step of micro-batches of 2 and 1: TRL's mean of the two
        (7, 1, True, False),  # the short micro-batch dropped: a last step of one full one
        (7, 2, True, True),  # ... which a window of two steps mixes with a full step
    ],
)
def test_a_logging_window_holding_an_epochs_short_last_step_is_said(
    pairs, logging_steps, drop_last, said
) -> None:
    """logging_steps > 1 over an epoch's short last step: directpo logs the mean over the
    window's pairs, TRL's loss the mean of the step losses (and its rewards/* the mean of its
    micro-batches'); said where a window mixes a short step or micro-batch with others."""
    config = DPOConfig(logging_steps=logging_steps)
    notes = start_notes(config, 6, lora=False, schedule=_schedule(pairs, drop_last))
    assert bool(notes) == said
    if said:
        assert notes[0].startswith(f"logging_steps {logging_steps} with an epoch's last step of")


@pytest.mark.parametrize(
    "pairs, logging_steps, total_steps, trl_said",
    [
        # a window ending at a multiple of logging_steps: TRL logs its loss, the steps' mean
        (10, 2, 6, "TRL's loss is the mean of the window's step losses and its rewards/* the "
         "mean of its micro-batches', the short one weighing as a full one"),
        # the run's last window, steps 1-2 of logging_steps 4: transformers logs no loss row
        # for it (was said as if it did); the closing row's rewards/*: micro-batches of 2, 2,
        # 2 and 1 pairs, a quarter each
        (7, 4, 2, "TRL logs no loss for the run's last window (steps 1-2, short of "
         "logging_steps: only train_loss, over the run's steps) and its closing row's rewards/* "
         "are the mean of the window's micro-batches', the short one weighing as a full one"),
        # ... whose micro-batches are all full (steps of 4, 4, 2 pairs): no loss row in TRL,
        # nothing it logs weighs otherwise (was said of TRL's loss)
        (10, 4, 3, None),
    ],
)  # fmt: skip
def test_the_short_step_note_says_what_trl_logs_for_its_window(
    pairs, logging_steps, total_steps, trl_said
) -> None:
    """transformers 5.24 logs ``loss`` at multiples of logging_steps only: the run's last
    window, ending off one, has no loss row (its steps go into train_loss) and TRL's closing
    row holds its rewards/*; the note said "TRL's loss is the mean of the window's step
    losses" of that window too."""
    config = DPOConfig(logging_steps=logging_steps)
    notes = start_notes(config, total_steps, lora=False, schedule=_schedule(pairs))
    assert [trl_said in note for note in notes] == ([True] if trl_said else [])


def test_a_default_run_says_no_short_step_its_full_log_windows_hide() -> None:
    """Defaults (logging_steps 10, 8 pairs a step) over 633..639 pairs a epoch (80 steps, the
    last of 1..7 pairs), one and two epochs: every window is 10 full steps, the short one
    weighing 1/10 in TRL's mean against its share of the pairs, under VISIBLE_WEIGHT_EXCESS:
    no line (each of these said one before); logging_steps 2 over the same steps is said
    where TRL's 1/2 exceeds the short step's share by 0.1 (a last step of up to 5 pairs)."""
    for pairs in range(633, 640):
        schedule = DataSchedule(num_examples=pairs, batch_size=8, accumulation=1, seed=0)
        for epochs in (1, 2):
            total = schedule.total_steps(epochs, -1)
            assert total == 80 * epochs
            assert start_notes(DPOConfig(), total, lora=False, schedule=schedule) == []
        notes = start_notes(DPOConfig(logging_steps=2), 80, lora=False, schedule=schedule)
        assert len(notes) == (pairs - 632 <= 5)
        assert all(n.startswith("logging_steps 2 with an epoch's last step of") for n in notes)


@pytest.mark.parametrize("last, said", [(3, True), (4, False)])
def test_the_short_step_is_said_where_it_weighs_visibly_more_in_trls_mean(last, said) -> None:
    """A window of 5 steps, the last of ``last`` pairs (of 8): TRL weighs it 1/5, the pairs'
    mean 3/35 (excess 0.114, said) or 4/36 (excess 0.089, not)."""
    schedule = DataSchedule(num_examples=32 + last, batch_size=8, accumulation=1, seed=0)
    notes = start_notes(DPOConfig(logging_steps=5), 5, lora=False, schedule=schedule)
    assert bool(notes) == said


def test_the_window_means_differ_as_the_note_says() -> None:
    """The two means of a window of a full step (4 pairs) and a short one (2 pairs): equal
    where both steps hold as many pairs, not otherwise."""
    losses = [[1.0, 1.0, 1.0, 1.0], [4.0, 4.0]]
    over_pairs = sum(map(sum, losses)) / sum(map(len, losses))
    of_steps = sum(sum(step) / len(step) for step in losses) / len(losses)
    assert (over_pairs, of_steps) == (2.0, 2.5)
    full = [[1.0, 1.0], [4.0, 4.0]]
    assert sum(map(sum, full)) / 4 == sum(sum(s) / 2 for s in full) / 2


def test_disable_dropout_false_is_said_where_trl_drops_out_of_the_reference_too() -> None:
    """TRL 1.16 computes the reference of a LoRA run with its policy in training mode (its
    adapters off): with disable_dropout: false dropout acts on the reference log-probs; here
    they are computed in eval mode, as a separate reference is in both."""
    config = DPOConfig(lora_r=8, disable_dropout=False)
    (note,) = start_notes(config, 4, lora=True, policy_reference=True)
    assert note.startswith("disable_dropout: false: the reference log-probs")
    assert start_notes(config, 4, lora=True, policy_reference=False) == []  # a separate one
    assert start_notes(DPOConfig(lora_r=8), 4, lora=True, policy_reference=True) == []


def test_a_separate_reference_runs_without_dropout_as_trls(tiny_model_dirs) -> None:
    """Where it does not differ: a separate reference is in eval mode (TRL's is as
    from_pretrained leaves it), so with disable_dropout: false and dropout in the model its
    log-probs are the same on every call."""
    from transformers import AutoModelForCausalLM

    from directpo.reference import FrozenModelReference

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"], attention_dropout=0.5)
    model.train()
    reference = FrozenModelReference(model)
    ids = torch.tensor([[1, 5, 7, 9, 11, 13]])
    first = reference.model(ids).logits
    assert not reference.model.training
    assert torch.equal(first, reference.model(ids).logits)
    model.train()  # (the same model in training mode: the dropout is there to act)
    assert not torch.equal(model(ids).logits, model(ids).logits)


def test_a_model_without_dropout_is_not_told_trls_reference_drops_out(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """disable_dropout: false in a LoRA run of a model whose dropout probabilities are all 0
    (Llama, Qwen, SmolLM2): TRL's training-mode reference computes what an eval-mode one
    does, so no line (it was said on every such run); a model with attention dropout, or the
    ``ref`` adapter's own LoRA dropout, is told."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from directpo.start_notes import model_drops_out

    folder = tiny_model_dirs["llama"]
    lines: list[str] = []
    config = tiny_config(
        folder, pairs_file, tmp_path / "out", max_steps=1, lora_r=4, lora_dropout=0.1,
        disable_dropout=False,
    )  # fmt: skip
    train(config, echo=lines.append)
    assert lines and not any(line.startswith("disable_dropout: false") for line in lines)

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert not model_drops_out(model)
    lora = LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj"])
    peft_model = get_peft_model(model, lora)
    peft_model.add_adapter("ref", lora)
    assert not model_drops_out(peft_model)  # the LoRA branches' dropout: off with them
    assert model_drops_out(peft_model, adapter="ref")  # on, as the reference runs
    dropping = AutoModelForCausalLM.from_pretrained(folder, attention_dropout=0.5)
    assert model_drops_out(dropping)
    assert model_drops_out(get_peft_model(dropping, lora))
