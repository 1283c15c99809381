"""Lines said once at a run's start for settings that train otherwise than a user may expect:
a TRL recipe's settings that directpo trains otherwise by design (docs/migrating.md, "Curves
step by step against TRL 1.16"), said only where the recipe sets them, so that a curve that
parts from TRL's is not a surprise found later."""

from __future__ import annotations

from typing import Any

import torch

from directpo.callers import spell_change, spell_option
from directpo.foreign_defaults import foreign_defaults_note
from directpo.model_locations import is_adapter_folder
from directpo.options import options_passed
from directpo.preference_pairs import counted


def start_notes(
    config: Any,
    total_steps: int,
    lora: bool,
    eval_float32: bool = False,
    schedule: Any = None,
    policy_reference: bool = False,
    drops_out: bool = True,
    peft_config: Any = None,
) -> list[str]:
    """The lines a run of ``total_steps`` says at start; ``lora``: it trains adapters (lora_r,
    or a peft_config); ``eval_float32``: its held-out pairs are evaluated in float32;
    ``schedule``: its file's ``batching.DataSchedule`` (None: online rounds);
    ``policy_reference``: its reference log-probs are the policy's own forward (adapters off,
    or its ``ref`` adapter), computed as it trains; ``drops_out``: the policy has dropout
    that acts in training mode (``model_drops_out``); ``peft_config``: train()'s, which
    chooses the adapted modules itself."""
    notes = []
    if note := foreign_defaults_note(config):  # (OpenRLHF's, torchtune's, TRL's, left out)
        notes.append(note)
    if note := _short_step_note(config, schedule, total_steps):
        notes.append(note)
    if policy_reference and drops_out and not config.disable_dropout:
        # TRL 1.16 computes them with self.model in training mode (use_adapter, no eval()):
        # dropout acts on its reference too; a separate reference is in eval mode in both.
        # A model without dropout (Llama, Qwen, SmolLM2: every probability 0.0) computes the
        # same in either mode: nothing to say
        notes.append(
            f"{_named('disable_dropout', False)}: the reference log-probs (the policy with its "
            "adapters off) "
            "are computed without dropout, as a reference is; TRL's run the policy in training "
            "mode, dropout acting on them too (its rewards noisier, and not the same in "
            f"expectation): compare with {_named('disable_dropout', True)}"
        )
    if eval_float32 and config.eval_dtype == "auto":  # (asked for by name: nothing to say)
        notes.append(
            f"held-out pairs are evaluated in float32 ({_named('eval_dtype', 'auto')}; bf16 "
            f"rounds a young policy's change away): {_named('eval_dtype', 'bfloat16')} "
            "evaluates as TRL does"
        )
    if config.precision.master == torch.bfloat16 and config.optimizer != "adamw_kahan":
        notes.append(
            f"warning: {_named('master_weights', 'bfloat16')} with "
            f"{_named('optimizer', config.optimizer)}: updates below 1/256 of a weight are "
            f"rounded away; {_named('optimizer', 'adamw_kahan')} keeps them"
        )
    warmup = config.warmup_for(total_steps)
    if warmup >= total_steps > 0:  # (a recipe's warmup_steps: 100 on a run of 20 steps)
        peak = (total_steps - 1) / warmup  # the last step's learning rate, of learning_rate
        notes.append(
            f"warning: the warmup ({counted(warmup, 'step')}) is as long as the run "
            f"({counted(total_steps, 'step')}): the learning rate reaches at most {peak:.0%} of "
            f"learning_rate; {spell_change('lower', 'warmup_steps', 'warmup_ratio')}"
        )
    if config.lr_scheduler_type == "constant" and warmup > 0:
        # transformers' constant ignores num_warmup_steps: a warmup asked for is done here
        notes.append(
            f"lr_scheduler_type constant warms up over {counted(warmup, 'step')} (as "
            f"constant_with_warmup; TRL's constant would not): {_named('warmup_steps', 0)} (and "
            f"{_named('warmup_ratio', 0)}) for TRL's schedule"
        )
    if lora and config.lora_dropout > 0 and config.disable_dropout:
        # TRL's disable_dropout zeroes the LoRA branch's dropout too; here it stays as set
        notes.append(
            f"lora_dropout {config.lora_dropout:g} acts although disable_dropout is on (TRL's "
            f"disable_dropout would set it to 0): {_named('lora_dropout', 0.0)} for TRL's training"
        )
    if lora and peft_config is None and _trl_peft_targets_differ(config):
        notes.append(
            "use_peft trains adapters on every linear layer here "
            f"({_named('lora_target_modules', 'all-linear')}, directpo's default); TRL's "
            "use_peft without lora_target_modules adapts peft's choice for the architecture "
            f"(q_proj and v_proj on Llama, Qwen, Mistral): {_named('lora_target_modules', None)} "
            "for TRL's adapters"
        )
    if "sft" in config.loss_type:  # (rpo_alpha too: TRL 1.16 writes it as this sft)
        notes.append(
            "loss sft is the mean over pairs of each chosen completion's token mean (each pair "
            "weighs alike; TRL's: the token mean over each micro-batch, equal where the chosen "
            "completions have one length)"
        )
    return notes


def _trl_peft_targets_differ(config: Any) -> bool:
    """A TRL recipe's or command line's use_peft (trl/scripts/dpo.py's --use_peft --lora_r 32)
    with lora_target_modules at directpo's all-linear: TRL's ModelConfig leaves target_modules
    to peft (q_proj, v_proj on Llama), so its run trains a fraction of these adapters; an
    adapter folder as the model continues with its own modules."""
    passed = options_passed(config)  # (all-linear written is the caller's: TRL's too)
    return (
        bool(config.use_peft)
        and config.lora_target_modules == ["all-linear"]
        and (passed is None or "lora_target_modules" not in passed)
        and not is_adapter_folder(config.model_name_or_path)
    )


def model_drops_out(model: torch.nn.Module, adapter: str | None = None) -> bool:
    """Whether ``model`` has dropout that acts in training mode as the reference runs (its
    adapters off, or ``adapter`` alone on): a Dropout module above 0 (a LoRA branch's only
    where it is ``adapter``'s) or a probability above 0 in its config, which attention reads
    (``attention_dropout``, GPT-2's ``attn_pdrop``, ...)."""
    from directpo.logprobs import text_config, unwrap_peft

    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Dropout) or module.p <= 0:
            continue
        if ".lora_dropout." not in name or (adapter and name.endswith(f".{adapter}")):
            return True
    inner = unwrap_peft(model)
    configs = {id(c): c for c in (getattr(inner, "config", None), text_config(inner)) if c}
    return any(
        ("dropout" in key or "pdrop" in key) and isinstance(value, float) and value > 0
        for config in configs.values()
        for key, value in vars(config).items()
    )


# How much more a short step (or micro-batch) must weigh in TRL's mean than its share of the
# window's pairs before it is said: the logged point moves by that excess times the gap between
# the short part's mean and the rest's, and under a tenth of that gap it sits inside the
# window's own noise. A full window of the default logging_steps 10 stays under it whatever
# the pairs (at most 1/10 - 1/73 with 8 pairs a step), where the note was said on ~4 of 5
# default runs; a window of a few steps (logging_steps 2, or a run's short last window,
# whose rewards/* TRL logs in its closing row) over a step of few pairs is said.
VISIBLE_WEIGHT_EXCESS = 0.1


def _short_step_note(config: Any, schedule: Any, total_steps: int) -> str | None:
    """What a logging window holding an epoch's short last step logs otherwise than TRL: here
    each metric is the mean over the window's pairs; TRL 1.16 logs ``loss`` as the mean of
    the window's step losses (transformers' tr_loss over the steps since the last log) and
    ``rewards/*``, ``logps/*`` as the mean of its micro-batches' means, so the short step (or
    micro-batch) weighs as a full one. The run's last window, where it ends off a multiple of
    logging_steps, transformers 5.24 logs no ``loss`` for (its on_step_end logs at multiples
    only; the window's step losses go into ``train_loss``, the mean over the run's steps):
    TRL's closing row holds its rewards/* alone, so there only the micro-batches' weights
    differ. None where no window mixes it with others, or where its weight in TRL's mean
    exceeds its share of the window's pairs by less than ``VISIBLE_WEIGHT_EXCESS``."""
    if schedule is None:
        return None
    batch, accumulation = schedule.batch_size, schedule.accumulation
    micro = schedule.micro_batches_per_epoch
    pairs = micro * batch if schedule.drop_last else schedule.num_examples
    full, per_epoch = batch * accumulation, schedule.steps_per_epoch
    last = pairs - (per_epoch - 1) * full  # the pairs of an epoch's last step
    last_micro = pairs - (micro - 1) * batch  # and of its last micro-batch
    micro_in_last = micro - (per_epoch - 1) * accumulation
    every = max(config.every("logging_steps", total_steps), 1)
    for step in range(per_epoch, total_steps + 1, per_epoch):  # each epoch's last step
        opened = (step - 1) // every * every  # the step the window opens after
        if config.logging_first_step and opened == 0 and step > 1:
            opened = 1  # (step 1 is logged alone)
        closes = min(opened + every, total_steps)
        steps = closes - opened
        unlogged = closes % every != 0 and not (config.logging_first_step and closes == 1)
        window_pairs = (steps - 1) * full + last
        excess = 0.0
        if steps > 1 and last < full and not unlogged:  # loss: each step weighs 1 / steps
            excess = 1 / steps - last / window_pairs
        micro_batches = (steps - 1) * accumulation + micro_in_last
        if micro_batches > 1 and last_micro < batch:  # rewards/*: each micro-batch alike
            excess = max(excess, 1 / micro_batches - last_micro / window_pairs)
        if excess < VISIBLE_WEIGHT_EXCESS:
            continue
        trl = (
            "TRL's loss is the mean of the window's step losses and its rewards/* the mean of "
            "its micro-batches'"
            if not unlogged
            else f"TRL logs no loss for the run's last window (steps {opened + 1}-{closes}, "
            f"short of logging_steps: only train_loss, over the run's steps) and its closing "
            "row's rewards/* are the mean of the window's micro-batches'"
        )
        return (
            f"logging_steps {every} with an epoch's last step of {counted(last, 'pair')} "
            f"(a full one: {full}): each logged metric is the mean over its window's pairs; "
            f"{trl}, the short one weighing as a full one: the curves agree where an epoch's "
            f"pairs are a multiple of {full}"
        )
    return None


def _named(option: str, value: object) -> str:
    """A setting a note points to, as the run's caller writes it (lora_dropout=0.0 for train())."""
    return spell_option(option, value, in_recipe=False)
