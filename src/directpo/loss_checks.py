"""The value checks of the loss options (loss_type and its weights, beta and the options each
loss reads, f-divergences, LD-DPO, AOT's sorted batches) and of the reference model's sync
(TR-DPO). Run by ``config_checks.check_values`` in its one pass."""

from __future__ import annotations

from collections.abc import Callable

from directpo.callers import Blank, said, spell_given, spell_option, spell_setting
from directpo.config import LOSS_TYPES, DPOConfig
from directpo.loss_names import F_DIVERGENCE_LOSSES, F_DIVERGENCES, LOSS_INFO
from directpo.model_locations import adapter_sync_problem
from directpo.option_hints import meant_words
from directpo.option_values import words_shown
from directpo.options import reject_if_set

# loss names of earlier TRL releases: said with the one that computes the same loss (aot_pair
# sorted chosen and rejected log-ratios apart: today's aot_unpaired, not the paired aot)
FORMER_LOSS_NAMES = {
    "aot_pair": "TRL's former aot_pair is aot_unpaired (chosen and rejected sorted apart)",
    "kto_pair": "TRL removed kto_pair: KTO is TRL's KTOTrainer, with unpaired data",
    # (OpenRLHF's and many scripts' name for the paper's loss: told the list alone)
    "dpo": "the DPO paper's loss is sigmoid (TRL's name, the default)",
}


def check_losses(config: DPOConfig, require: Callable[[bool, str, str], None]) -> None:
    if (words := getattr(config, "_words", None)) is not None:  # while constructed
        # (loss_type: null, 5 or true was 'must be a list, got None', no loss named)
        words["loss_type"] = ("one or more of", LOSS_TYPES)
    unknown = [name for name in config.loss_type if name not in LOSS_INFO]
    former = [FORMER_LOSS_NAMES[name] for name in unknown if name in FORMER_LOSS_NAMES]
    if not config.loss_type or unknown:
        typed = config._given_value("loss_type")
        config._refuse(
            "loss_type",
            f"loss_type must be one or more of {', '.join(LOSS_TYPES)}"
            + "".join(f"; {said}" for said in former)
            + f" (got {words_shown(typed, config.loss_type, 'loss_type')})"
            # (loss_type: Sigmoid, told the list)
            + meant_words(config.loss_type, typed, "loss_type", LOSS_TYPES),
        )
    if config._valid("loss_type") and len(set(config.loss_type)) < len(config.loss_type):
        # (as the unknown name's line: --loss_type sigmoid,sigmoid was '(got [sigmoid,
        # sigmoid])'; after an unknown name, a second loss_type line, '2 options' of one)
        config._refuse(
            "loss_type",
            f"loss_type must be without repeats (got "
            f"{words_shown(config._given_value('loss_type'), config.loss_type, 'loss_type')})",
        )
    if config.loss_weights is not None:
        require(
            len(config.loss_weights) == len(config.loss_type) or not config._valid("loss_type"),
            "loss_weights",
            f"one weight per loss_type ({len(config.loss_type)})",
        )
        require(
            all(w >= 0 for w in config.loss_weights) and any(config.loss_weights),
            "loss_weights",
            ">= 0 and not all 0",
        )
    require(config.beta > 0, "beta", "> 0")
    require(0 <= config.label_smoothing < 0.5, "label_smoothing", "in [0, 0.5)")
    require(config.discopop_tau > 0, "discopop_tau", "> 0")
    if "exo_pair" in config.loss_type:
        require(
            config.label_smoothing > 0,
            "label_smoothing",
            "> 0 for exo_pair (log of it is taken; the EXO paper uses 1e-3)",
        )
    if not config._valid("loss_type"):
        return  # what the chosen losses read cannot be told from a refused loss_type
    # an option that no chosen loss reads would silently do nothing: refuse it
    used = {option for name in config.loss_type for option in LOSS_INFO[name].options}
    for option_name in ("beta", "label_smoothing", "simpo_gamma", "discopop_tau"):
        if option_name not in used:
            users = [n for n, spec in LOSS_INFO.items() if option_name in spec.options]
            reject_if_set(
                config,
                (option_name,),
                f"no chosen loss uses it (loss_type: "
                f"{', '.join(config.loss_type)}); it applies to "
                f"{', '.join(users)}",
            )


def check_loss_modifiers(config: DPOConfig) -> None:
    config._one_of("f_divergence_type", F_DIVERGENCES)
    if config.f_divergence_type != "reverse_kl":
        if not config._valid("f_divergence_type", "loss_type"):
            return
        unsupported = sorted(set(config.loss_type) - F_DIVERGENCE_LOSSES)
        if unsupported:
            config._refuse(
                "f_divergence_type",
                f"{said('f_divergence_type', config.f_divergence_type)} applies to "
                f"{', '.join(sorted(F_DIVERGENCE_LOSSES))}, not {', '.join(unsupported)}",
            )
    else:
        reject_if_set(config, ("f_alpha_divergence_coef",), "f_divergence_type is reverse_kl")
    if config.ld_alpha is not None:
        config._require(0 <= config.ld_alpha <= 1, "ld_alpha", "in [0, 1]")
        # LD-DPO weighs the log-ratios π − π_ref; the reference-free losses take per-token
        # means of every token (sft's NLL as TRL's), so ld_alpha alone with them does nothing
        if config._valid("loss_type") and not config.loss_needs_reference:
            config._refuse(
                "ld_alpha",
                "ld_alpha weighs the log-ratios of policy and reference (LD-DPO), and loss_type "
                f"{', '.join(config.loss_type)} uses no reference (its per-token means already "
                f"leave length out); remove {spell_given('ld_alpha', config.ld_alpha)}",
            )
    if config.use_weighting and {"aot", "aot_unpaired"} & set(config.loss_type):
        config._refuse(
            "use_weighting",
            "use_weighting cannot weight aot / aot_unpaired (their loss couples the batch)",
        )
    sorted_losses = [name for name in ("aot", "aot_unpaired") if name in config.loss_type]
    if sorted_losses and config.per_device_train_batch_size == 1:
        # AOT matches the sorted margins of a micro-batch: sorting one pair is the identity,
        # so it trained as sigmoid DPO without a word (accumulation does not widen the sort)
        config._refuse(
            "loss_type",
            f"loss_type {' / '.join(sorted_losses)} sorts the margins within each micro-batch, "
            "and per_device_train_batch_size 1 leaves one pair to sort: that is sigmoid DPO; "
            f"{spell_setting(('per_device_train_batch_size', Blank('2 or more')))} "
            "(gradient_accumulation_steps does not widen the sort), or "
            f"{spell_option('loss_type', 'sigmoid', in_recipe=False)}",
        )
    if sorted_losses and config.auto_find_batch_size:  # batch_fit keeps per-pair losses only
        config._refuse(
            "auto_find_batch_size",
            "auto_find_batch_size splits a step's micro-batches when memory runs out, and "
            f"loss_type {' / '.join(sorted_losses)} sorts the margins within each micro-batch: "
            "the split would change the loss mid-run; remove "
            + spell_given("auto_find_batch_size", True),
        )


def check_reference_sync(config: DPOConfig) -> None:
    if not config.sync_ref_model:
        reject_if_set(
            config, ("ref_model_mixup_alpha", "ref_model_sync_steps"), "sync_ref_model is false"
        )
        return
    config._require(0 <= config.ref_model_mixup_alpha <= 1, "ref_model_mixup_alpha", "in [0, 1]")
    config._require(config.ref_model_sync_steps >= 1, "ref_model_sync_steps", ">= 1")
    problem = config.lora_r and adapter_sync_problem(config.ref_model_mixup_alpha)
    if problem and config._valid("lora_r", "ref_model_mixup_alpha"):  # (refused once loaded)
        config._refuse("ref_model_mixup_alpha", problem)
    if config._valid("loss_type") and not config.loss_needs_reference:
        config._refuse(
            "sync_ref_model", "sync_ref_model is set but no chosen loss uses a reference"
        )
    if config.precompute_ref_log_probs:
        config._refuse(
            "sync_ref_model",
            "sync_ref_model cannot be used with precompute_ref_log_probs: the reference "
            "changes during training, so log-probs computed once would go stale",
        )
    if not config.own_reference:
        config._refuse(
            "sync_ref_model",
            "sync_ref_model: the reference follows the policy, so it starts as the policy; "
            f"remove {spell_given('ref_model_name_or_path', config.ref_model_name_or_path)}",
        )
    if config.ref_model_init_kwargs is not None:  # (another revision or subfolder: not the start)
        config._refuse(
            "sync_ref_model",
            "sync_ref_model: the reference follows the policy, so it starts as the policy, "
            "loaded as it is (model_init_kwargs); remove "
            + spell_given("ref_model_init_kwargs", config.ref_model_init_kwargs),
        )
