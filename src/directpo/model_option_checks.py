"""The value checks of the options deciding how the models load and run: attention, the
distributed engine, padding-free packing, gradient checkpointing and Liger kernels; LoRA's
values; 4-bit / 8-bit loading; the reference model's options. Run by
``config_checks.check_values`` in its one pass."""

from __future__ import annotations

from directpo.callers import spell_entry, spell_unset, spell_value
from directpo.config import (
    ATTN_IMPLEMENTATIONS,
    DISTRIBUTED_MODES,
    DTYPES,
    LIGER_LOSS_KERNELS,
    DPOConfig,
)
from directpo.loss_checks import check_reference_sync
from directpo.model_locations import ALL_LINEAR, is_regex, lora_off_reason, regex_problem
from directpo.options import reject_if_set
from directpo.trl_table import QUANTIZATION_4BIT_OPTIONS


def check_engine(config: DPOConfig) -> None:
    """Attention, the distributed engine, padding-free packing, gradient checkpointing and
    Liger kernels."""
    require, one_of = config._require, config._one_of
    one_of("attn_implementation", ATTN_IMPLEMENTATIONS)
    one_of("distributed", DISTRIBUTED_MODES)
    require(config.ddp_timeout > 0, "ddp_timeout", "> 0 (seconds)")
    if config.distributed != "fsdp":
        reject_if_set(config, ("fsdp_offload",), "distributed is not fsdp")
    if not config.padding_free:
        reject_if_set(config, ("pack_max_tokens",), "padding_free is off")
    require(config.gradient_checkpointing_every >= 1, "gradient_checkpointing_every", ">= 1")
    if not config.use_liger_kernel:
        reject_if_set(config, ("liger_kernel_config",), "use_liger_kernel is off")
    for key in LIGER_LOSS_KERNELS:
        if (config.liger_kernel_config or {}).get(key):
            config._refuse(
                "liger_kernel_config",
                f"{spell_entry('liger_kernel_config', key)} must be {spell_value(False)} "
                "(Liger's loss kernels return a loss; directpo's head computes the completion "
                "tokens' log-probs itself)",
            )
    if not config.gradient_checkpointing:
        reject_if_set(config, ("gradient_checkpointing_every",), "gradient_checkpointing is off")


def check_lora(config: DPOConfig) -> None:
    """LoRA's values, and its options refused without lora_r."""
    require = config._require
    require(config.lora_r is None or config.lora_r >= 0, "lora_r", ">= 0 (0: no LoRA)")
    require(config.lora_alpha >= 1, "lora_alpha", ">= 1")
    require(0 <= config.lora_dropout < 1, "lora_dropout", "in [0, 1)")
    require(
        config.lora_target_modules is None or bool(config.lora_target_modules),
        "lora_target_modules",
        f"a non-empty list (or {spell_unset('lora_target_modules')}: peft's choice for the "
        "architecture)",
    )
    targets = config.lora_target_modules or []
    require(  # (a regex is peft's one string: beside names it would be an item, matching none)
        len(targets) == 1 or not any(is_regex(target) for target in targets),
        "lora_target_modules",
        "module names, or one regex alone (peft matches it against each whole module name)",
    )
    unreadable = len(targets) == 1 and is_regex(targets[0]) and regex_problem(targets[0])
    if unreadable:  # (peft's re.error was a traceback, after the model had loaded)
        config._refuse(
            "lora_target_modules",
            f"lora_target_modules: {targets[0]} is no regex peft can read ({unreadable})",
        )
    require(  # (peft's word for every linear layer is its one string too: beside names it was
        # an item, a layer's name that matched none, refused only once the model had loaded)
        len(targets) == 1 or ALL_LINEAR not in targets,
        "lora_target_modules",
        "all-linear alone (peft's word for every linear layer), or module names",
    )
    # (in a list peft reads all-linear as written: all_linear or ALL-LINEAR was a layer's name,
    # refused once the model had loaded as matching none)
    for target in targets:
        if target != ALL_LINEAR and target.lower().replace("_", "-") == ALL_LINEAR:
            config._refuse(
                "lora_target_modules",
                f"lora_target_modules: {target} is no layer's name; did you mean all-linear "
                "(peft's word for every linear layer)?",
            )
    if not config.lora_r:
        # merge_lora without lora_r is checked by train(), which knows of a peft_config
        reject_if_set(
            config,
            (
                "lora_alpha",
                "lora_dropout",
                "lora_target_modules",
                "use_dora",
                "use_rslora",
                "lora_modules_to_save",
                "lora_target_parameters",
            ),
            lora_off_reason(config.model_name_or_path, config.use_peft),
        )


def check_quantization(config: DPOConfig) -> None:
    """4-bit / 8-bit loading and bitsandbytes' 4-bit options."""
    if config.load_in_4bit and config.load_in_8bit:
        config._refuse("load_in_4bit", "load_in_4bit and load_in_8bit are both set: choose one")
    if not config.load_in_4bit:
        reject_if_set(config, QUANTIZATION_4BIT_OPTIONS, "load_in_4bit is off")
    config._one_of("bnb_4bit_quant_type", ("nf4", "fp4"))
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        value = getattr(config, key)
        config._require(
            value is None or value in DTYPES, key, f"{spell_unset(key)}, float32 or bfloat16"
        )


def check_reference(config: DPOConfig) -> None:
    """The reference model's options, refused where no separate reference is loaded or
    none is used; precomputing its log-probs; its sync (TR-DPO)."""
    # whether a chosen loss uses a reference cannot be told from a refused loss_type
    known = config._valid("loss_type", "lora_r")
    own_base = config.own_reference
    if (
        known
        and config.ref_model_init_kwargs is not None
        and ((config.lora_r and own_base) or not config.needs_reference)
    ):
        config._refuse(
            "ref_model_init_kwargs",
            "ref_model_init_kwargs is set but no separate reference model is loaded ("
            + ("with LoRA the reference is the base with adapters off; a separate one is "
               "loaded with ref_model_name_or_path)" if config.needs_reference
               else "no chosen loss uses a reference)")
        )  # fmt: skip
    if known and not own_base and not config.needs_reference:
        config._refuse(  # (it was not loaded, without a word)
            "ref_model_name_or_path",
            "ref_model_name_or_path is set but no chosen loss uses a reference (loss_type: "
            f"{', '.join(config.loss_type)}), nor eval_generate's KL",
        )
    if known and config.precompute_ref_log_probs and not config.loss_needs_reference:
        config._refuse(
            "precompute_ref_log_probs",
            "precompute_ref_log_probs is set but no chosen loss uses a reference",
        )
    if not config.precompute_ref_log_probs:
        reject_if_set(config, ("precompute_ref_batch_size",), "precompute_ref_log_probs is false")
    elif config.precompute_ref_batch_size is not None:
        size = config.precompute_ref_batch_size
        config._require(
            isinstance(size, int) and size >= 1,
            "precompute_ref_batch_size",
            f"{spell_unset('precompute_ref_batch_size')} or >= 1",
        )
    check_reference_sync(config)
