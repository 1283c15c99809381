"""TRL's option names and what each means here: the table ``trl_compat.translate`` reads.

* ``ALIASES``: older or renamed TRL spellings of directpo options;
* ``HINTS``: TRL arguments that are no config keys, and the option that means the same;
* ``NO_EFFECT``: TRL keys accepted when they ask for nothing directpo would do differently
  (``push_to_hub: false``, ``dataloader_num_workers: 4``, ...), each with what to write
  instead when they do;

Advice that names settings is a callable (``Advice``) that says them through callers.py when
the message is made, so each reads as the running caller writes options: ``set eval_generate:
N`` in a recipe, ``give --eval_generate N`` on a command line, ``pass eval_generate=N`` to a
Python call (a recipe's YAML rewritten afterwards by regular expressions missed every form
they did not know). Plain text names no setting.
* ``TRL_OPTIMIZERS``: TRL's ``optim`` names and directpo's optimizer of each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from directpo.callers import (
    Advice,
    Blank,
    Spelling,
    advice_text,  # noqa: F401 (trl_compat's and the tests' name for it)
    caller,
    spell_command,
    spell_name,
    spell_option,
    spell_setting,
    spell_shape,
    spell_value,
)


def said(name: str, value: Any = True) -> str:
    """``name: value`` within a sentence (not a fix's lead), as the caller writes it."""
    return spell_option(name, value, in_recipe=False)


# a BitsAndBytesConfig's fields that are directpo options of the same name: the bits, and the
# 4-bit ones (read with load_in_4bit only); TRL's ModelConfig takes them as its own options
QUANTIZATION_OPTIONS = ("load_in_4bit", "load_in_8bit")
QUANTIZATION_4BIT_OPTIONS = (
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "bnb_4bit_compute_dtype",
    "bnb_4bit_quant_storage",
)
BNB_OPTIONS = (*QUANTIZATION_OPTIONS, *QUANTIZATION_4BIT_OPTIONS)

# GenerationConfig's names of directpo's sampling options, which OnlineDPOConfig takes as they
# are: TRL's aliases of them, and the generation_kwargs keys refused as set by these options
SAMPLING_ALIASES = {
    "max_new_tokens": "generate_max_new_tokens",
    "temperature": "generate_temperature",
    "top_p": "generate_top_p",
    "top_k": "generate_top_k",
    "min_p": "generate_min_p",
    "repetition_penalty": "generate_repetition_penalty",
    "cache_implementation": "generate_cache_implementation",
}
ALIASES = {  # TRL's other names for directpo options
    "evaluation_strategy": "eval_strategy",  # transformers < 4.46
    "activation_checkpointing": "gradient_checkpointing",  # transformers >= 5.2x
    "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
    "torch_dtype": "dtype",  # ModelConfig before transformers 5
    "max_target_length": "max_completion_length",  # TRL < 0.9
    "use_bnb_nested_quant": "bnb_4bit_use_double_quant",  # ModelConfig
    "chat_template_path": "chat_template",  # SFTConfig's spelling (a file)
    # OnlineDPOConfig's sampling and reward model (online: true)
    **SAMPLING_ALIASES,
    "reward_model_path": "reward_model_name_or_path",
}
HINTS: dict[str, str | tuple[str, ...]] = {  # TRL arguments that are not config keys, and the
    # option(s) that mean the same here
    "ref_model": "ref_model_name_or_path",
    "model": "model_name_or_path",
    "processing_class": "tokenizer_name_or_path",
    "peft_config": ("use_peft", "lora_r"),  # (each named as given: --use_peft and --lora_r)
    "reward_funcs": "reward_fn",  # several: with reward_model_name_or_path and reward_weights
    "judge": "reward_fn",  # a pairwise judge: write it as a reward function
    # OnlineDPOTrainer's reward model tokenizer: read from the reward model's folder here
    # (it had no hint)
    "reward_processing_classes": "reward_model_name_or_path",
}

# `directpo train --version`: the versions are the bare command's flag
VERSION_FLAGS = ("version", "V")
VERSION_HINT = "; the versions are printed by directpo --version (before the command)"


def _nothing(value: Any) -> bool:
    return value in (None, False, 0, "", "no", "none", "None") or value == [] or value == {}


def _no_gpu(value: Any) -> bool:
    """``use_cpu: true`` asks for nothing where no GPU is visible: what a TRL user on a CPU
    machine sets (transformers refuses ``trl.DPOConfig()`` there without it or bf16=False)."""
    if _nothing(value):
        return True
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def _any(value: Any) -> bool:
    return True


def _equals(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values or _nothing(value)


VLLM_OPTIONS = (
    "vllm_model_impl", "vllm_structured_outputs_regex", "vllm_gpu_memory_utilization",
    "vllm_mode", "vllm_server_base_url", "vllm_server_host", "vllm_server_port",
    "vllm_server_timeout", "vllm_group_port", "vllm_tensor_parallel_size",
    "vllm_enable_sleep_mode",
)  # fmt: skip


def _all_default(value: Any, defaults: dict[str, Any]) -> bool:
    """A dict of options at their defaults (as a dumped TRL config writes them)."""
    missing = object()
    return isinstance(value, dict) and all(defaults.get(k, missing) == v for k, v in value.items())


# transformers' AcceleratorConfig defaults, as TrainingArguments.to_dict writes them
ACCELERATOR_DEFAULTS = {
    "split_batches": False,
    "dispatch_batches": None,
    "even_batches": True,
    "use_seedable_sampler": True,
    "non_blocking": False,
    "gradient_accumulation_kwargs": None,
}


def _mixture() -> str:
    mixture = spell_shape(
        "dataset_mixture",
        "{datasets: [{id: ..., split: ..., weight: ...}]}",
        "{'datasets': [{'id': ..., 'split': ..., 'weight': ...}]}",
    )
    return f"write it as {mixture}"


def _fsdp() -> str:
    fsdp = spell_setting(("distributed", "fsdp"))
    return f"{fsdp} (FSDP2) under torchrun, {said('fsdp_offload')} to offload"


def _streaming() -> str:  # DatasetMixtureConfig's streaming: the mixture shuffles each source whole
    return (
        f"dataset_mixture shuffles each source whole; to read only the rows max_steps trains on, "
        f"give one source as {spell_name('train_file')} or {spell_name('dataset_name')} with "
        f"{said('dataset_streaming')}"
    )


def _trackio_local() -> str:
    return (
        f"directpo does not upload: {said('report_to', 'trackio')} logs on this machine (trackio "
        "show opens it; trackio's own sync puts a project on a Space)"
    )


def _compiled() -> str:
    return f"{said('torch_compile')} compiles each decoder layer with inductor in its default mode"


def _use(*settings: tuple[str, Any] | str, then: str = "", last: str = ", ") -> Advice:
    """Advice to set ``settings`` (spell_setting's), with ``then`` after them."""
    return lambda: spell_setting(*settings, last=last) + then


def _bf16_precision() -> str:
    return f"{said('bf16')} is directpo's own mixed precision"


MIXTURE = _mixture
TOOLS = ("{tools: [...]}", "{'tools': [...]}")  # chat_template_kwargs' shape, YAML and Python
FSDP = _fsdp
STREAMING = _streaming
TRACKIO_LOCAL = _trackio_local
COMPILED = _compiled
UPLOAD = "directpo does not upload; after training run: hf upload REPO OUTPUT_DIR"
SHUFFLED = "directpo shuffles the pairs (seed sets the order); padding_free packs each micro-batch"
SFT_ROWS = (  # SFTConfig's text column: DPO reads three
    "SFTConfig's; a DPO row is prompt_column, chosen_column and rejected_column (or "
    "chosen/rejected message lists)"
)
KTO = "KTO's unpaired weights; directpo trains on preference pairs (loss_type chooses the loss)"
DEVICES = "directpo trains on CUDA or the CPU"


def _hide_gpus() -> str:
    """(a Python caller runs no directpo command: its script is what the variable goes before)"""
    if caller().spelling is Spelling.PYTHON:
        return "hide the GPUs instead: CUDA_VISIBLE_DEVICES= python your_script.py"
    return "hide the GPUs instead: CUDA_VISIBLE_DEVICES= directpo train ..."


HIDE_GPUS = _hide_gpus
EVAL_METRICS = "directpo logs its own eval metrics"
# torch_compile_backend / torch_compile_mode values that ask for what torch_compile does here
COMPILE_DEFAULTS = {"torch_compile_backend": "inductor", "torch_compile_mode": "default"}
ONE_ADAPTER = (  # TRL's two names for one adapter loaded twice: an adapter folder here
    "directpo trains one LoRA adapter: a new one (lora_r; the reference is the model without "
    "it), or an adapter folder given as model_name_or_path, continued (the reference is that "
    "adapter as it starts, loaded a second time)"
)
TRL_OPTIMIZERS = {  # TRL / transformers' optim names -> directpo's optimizer
    "adamw_torch": "adamw",
    "adamw_torch_fused": "adamw",  # torch's AdamW with its fused kernel: the same update
    # AdamW's update in another device's (or apex's) kernel: directpo places the model itself,
    # so these train as adamw_torch (they were told the list of choices alone)
    "adamw_torch_xla": "adamw",
    "adamw_torch_npu_fused": "adamw",
    "adamw_apex_fused": "adamw",
    "adamw_hf": "adamw",
    "paged_adamw_32bit": "adamw",  # bitsandbytes' AdamW with paged state: the same updates
    "adamw_anyprecision": "adamw_kahan",
    "rmsprop": "rmsprop",
    # bitsandbytes' RMSprop with 32-bit state (transformers passes it no argument torch's
    # RMSprop lacks): the same updates; 'bnb' in the name read as 8-bit, it was refused so
    "rmsprop_bnb": "rmsprop",
    "rmsprop_bnb_32bit": "rmsprop",
}
_OWN = (
    "directpo's optimizers are AdamW ({}), AdamW with bf16 state "
    "(adamw_anyprecision) and RMSprop (rmsprop)"
)
_OWN_AS_OPTIMIZER = "directpo's optimizers are adamw, adamw_kahan (AdamW, bf16 state) and rmsprop"
# transformers' optim names of another update than directpo's three, by name or prefix: what
# each is (they were told the list of choices alone, as if misspelt)
OTHER_OPTIMIZERS = {
    "sgd": "plain SGD",
    "adagrad": "Adagrad",
    "lion": "Lion (sign-of-momentum updates)",
    "paged_lion": "Lion (sign-of-momentum updates)",
    "adafactor": "Adafactor (factored second moments)",
    "ademamix": "AdEMAMix (two momenta)",
    "paged_ademamix": "AdEMAMix (two momenta)",
    "galore_": "GaLore (low-rank projected gradients)",
    "apollo_": "APOLLO (low-rank projected gradients)",
    "lomo": "LOMO (updates fused into the backward pass)",
    "adalomo": "AdaLomo (updates fused into the backward pass)",
    "grokadamw": "GrokAdamW (gradients amplified by their moving average)",
    "schedule_free_": "a schedule-free optimizer (its own iterate averaging, no LR schedule)",
    "stable_adamw": "StableAdamW (per-tensor update clipping)",
}


def other_optimizer_refusal(key: str, name: str) -> str | None:
    """The line refusing ``key: name``, one of transformers' optimizers directpo has no update
    of (``None`` for a name that is none of them: a misspelling, told the choices)."""
    for prefix, what in OTHER_OPTIMIZERS.items():
        if (
            name == prefix
            or (prefix.endswith("_") and name.startswith(prefix))
            or (name.startswith(prefix + "_") and name.removeprefix(prefix + "_") == "32bit")
        ):
            own = _OWN_AS_OPTIMIZER
            if key == "optim":
                own = _OWN.format(spell_option("optim", "adamw_torch", in_recipe=False))
            lead = spell_option(key, name, in_recipe=False)  # (as its caller wrote it)
            return f"{lead} is {what}, which directpo does not offer; {own}"
    return None


# transformers' report_to names of trackers directpo does not log to (its own: TRACKERS)
OTHER_TRACKERS = (
    "azure_ml", "comet_ml", "neptune", "codecarbon", "clearml", "dagshub", "flyte", "dvclive",
    "swanlab", "kubeflow",
)  # fmt: skip


# low-bit optimizers: bitsandbytes' 8-bit ones (adamw_8bit, paged_adamw_8bit, adamw_bnb_8bit,
# lion_8bit) and torchao's (adamw_torch_8bit, adamw_torch_4bit): directpo has none (neither is
# a dependency), so what it has for a smaller optimizer state is said first, not the list of
# choices alone
def _eight_bit() -> str:
    """What lowers optimizer memory here, in the caller's words (was a recipe's for all)."""
    kahan = [("dtype", "bfloat16"), ("master_weights", "bfloat16"), ("optimizer", "adamw_kahan")]
    said = [spell_option(name, value, in_recipe=False) for name, value in kahan]
    return (
        f"which directpo does not offer; for less optimizer memory use {said[0]}, {said[1]} "
        f"and {said[2]} (bf16 state, updates kept), an adapter ({spell_name('lora_r')}, only "
        f"its state) or {spell_option('fsdp_offload', True, in_recipe=False)} (state in CPU "
        "memory)"
    )


def is_eight_bit(name: str) -> bool:
    """A low-bit (8- or 4-bit state) optimizer's name, as transformers' optim spells them."""
    return "8bit" in name or "4bit" in name


def low_bit_refusal(key: str, name: str) -> str:
    """The line refusing ``key: name``, a low-bit optimizer, naming whose it is."""
    bits = "4-bit" if "4bit" in name else "8-bit"
    owner = "torchao's" if name.startswith("adamw_torch_") else "bitsandbytes'"
    # lion_8bit / ademamix_8bit (paged too) are another update than AdamW: said as 'an 8-bit
    # optimizer' alone, adamw_kahan read as the same update with less memory
    update = OTHER_OPTIMIZERS.get(name.replace(f"_{bits[0]}bit", ""))
    what = f"{bits} {update}" if update else f"{bits} optimizer"
    return f"{spell_option(key, name, in_recipe=False)} is {owner} {what}, {_eight_bit()}"


# key: (accepted when, what to do otherwise)
NO_EFFECT: dict[str, tuple[Callable[[Any], bool], Advice]] = {
    "push_to_hub": (_nothing, UPLOAD),
    "hub_strategy": (_any, UPLOAD),
    "hub_token": (_any, UPLOAD),
    "hub_private_repo": (_any, UPLOAD),
    "hub_always_push": (_any, UPLOAD),
    "hub_revision": (_any, UPLOAD),
    "hub_model_revision": (_any, UPLOAD),  # the alignment-handbook's (unknown, it would be
    # hinted 'did you mean model_revision?', which loads another model)
    "do_train": (_any, ""),  # read by TRL's scripts, not by the trainer
    "do_eval": (_any, ""),  # directpo evaluates whenever it has eval data
    "do_predict": (_nothing, lambda: f"directpo does not predict; use {spell_command('generate')}"),
    "log_level_replica": (_any, ""),
    "log_on_each_node": (_any, ""),
    "logging_nan_inf_filter": (_any, "directpo skips and counts non-finite steps"),
    # not _equals: its "no" (a bare YAML no: False) asks for no logging, which was then done
    "logging_strategy": (
        lambda value: value in ("steps", None),
        lambda: (
            "directpo logs every logging_steps and the last step (metrics.jsonl always; "
            f"{said('report_to', 'none')} keeps the trackers off)"
        ),
    ),
    "remove_unused_columns": (_any, ""),  # directpo reads only its own columns
    "label_names": (_any, ""),
    "length_column_name": (_any, ""),
    "dataloader_num_workers": (_any, ""),
    "dataloader_pin_memory": (_any, ""),
    "dataloader_persistent_workers": (_any, ""),
    "dataloader_prefetch_factor": (_any, ""),
    "dataloader_multiprocessing_context": (_any, ""),
    "dataloader_in_order": (_any, ""),
    "ddp_find_unused_parameters": (_any, ""),
    "ddp_bucket_cap_mb": (_any, ""),
    "ddp_broadcast_buffers": (_any, ""),
    "ddp_static_graph": (_any, ""),
    "ddp_backend": (_any, ""),  # nccl on CUDA, gloo on CPU
    "local_rank": (_any, ""),  # torchrun's LOCAL_RANK is read
    "use_cache": (_nothing, "the KV cache is off during training"),
    "skip_memory_metrics": (_any, ""),
    "include_num_input_tokens_seen": (_any, ""),
    "eval_do_concat_batches": (_any, ""),
    "eval_use_gather_object": (_any, ""),
    "eval_accumulation_steps": (_any, ""),
    "prediction_loss_only": (_any, ""),
    "batch_eval_metrics": (_nothing, EVAL_METRICS),
    "include_for_metrics": (_nothing, EVAL_METRICS),
    "save_on_each_node": (_nothing, "rank 0 writes (FSDP: every rank its shards)"),
    "ignore_data_skip": (_nothing, "resume always continues the exact data order"),
    "restore_callback_states_from_checkpoint": (_nothing, "directpo has no callbacks"),
    "average_tokens_across_devices": (_any, ""),  # DPO losses are per pair
    "lora_task_type": (_equals("CAUSAL_LM"), "directpo trains causal LMs"),
    "padding_free": (_any, ""),  # directpo always packs (padding_free option is its own)
    "pad_to_multiple_of": (_any, ""),  # torch_compile rounds rows to 128 tokens
    "pad_token": (
        _nothing,
        "padding is masked out here; set pad_token in the model folder's tokenizer files if "
        "the saved tokenizer should carry it (TRL deprecates this option)",
    ),
    "label_pad_token_id": (_any, ""),
    "padding_value": (_any, ""),
    # keep_start (TRL's default) is directpo's rule for every row whose prompt fits: the
    # completion is cut from the right to max_length; a longer prompt is cut from the left
    # (TRL drops such rows). keep_end (deprecated in TRL) would cut prompts instead.
    "truncation_mode": (
        _equals("keep_start"),
        lambda: (
            "completions are cut from the right; to keep them whole, cap prompts with "
            f"{spell_name('max_prompt_length')} (prompts are cut from the left)"
        ),
    ),
    "generate_during_eval": (_nothing, _use(("eval_generate", Blank("N")))),
    "is_encoder_decoder": (_nothing, "directpo trains decoder-only causal LMs"),
    # report_to: trackio logs on this machine (project names it); a Space is an upload
    "trackio_space_id": (_nothing, TRACKIO_LOCAL),
    "trackio_bucket_id": (_nothing, TRACKIO_LOCAL),
    "trackio_static_space_id": (_any, ""),  # read only with a trackio_space_id or a hub push
    "use_cpu": (_no_gpu, HIDE_GPUS),
    "bf16_full_eval": (
        _nothing,
        lambda: f"{spell_setting(('eval_dtype', 'bfloat16'))} (with {said('dtype', 'bfloat16')})",
    ),
    "fp16_full_eval": (
        _nothing,
        lambda: f"float16 is not supported; {said('eval_dtype', 'bfloat16')} is the bf16 one",
    ),
    # inductor and the default mode are torch_compile: true (_trl_compile); others are refused
    "torch_compile_backend": (_nothing, COMPILED),
    "torch_compile_mode": (_nothing, COMPILED),
    "neftune_noise_alpha": (_nothing, "NEFTune is an SFT technique"),
    "label_smoothing_factor": (_nothing, _use("label_smoothing", then=" (cDPO)")),
    "optim_args": (
        _nothing,
        _use("adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", last=" and "),
    ),
    "optim_target_modules": (_nothing, ""),
    "accelerator_config": (
        lambda value: _nothing(value) or _all_default(value, ACCELERATOR_DEFAULTS),
        "directpo runs under torchrun or accelerate launch as it is",
    ),
    "parallelism_config": (
        _nothing,
        lambda: f"{spell_setting(('distributed', 'ddp'))} or {spell_value('fsdp')}",
    ),
    "deepspeed": (_nothing, _use(("distributed", "fsdp"), then=" (FSDP2) under torchrun")),
    "fsdp": (_nothing, FSDP),
    "fsdp_config": (_nothing, FSDP),
    "debug": (_nothing, ""),
    "enable_jit_checkpoint": (_nothing, "SIGTERM/Ctrl-C always save a checkpoint"),
    "dataset_mixer": (_nothing, MIXTURE),
    "dataset_splits": (
        _nothing,
        _use("dataset_train_split", "dataset_test_split", last=" and "),
    ),
    "ignore_bias_buffers": (_any, ""),
    "use_flash_attention_2": (
        _nothing,
        _use(("attn_implementation", "flash_attention_2")),
    ),
    "reference_free": (  # (the option as the caller sets it: it was a recipe's bare key)
        _nothing,
        lambda: (
            f"{spell_setting(('loss_type', 'simpo'))} or another reference-free loss (orpo, ...)"
        ),
    ),
    # CPOConfig's AlphaPO reward transform; its default 0 is SimPO's reward
    "alpha": (_equals(0.0), "AlphaPO's reward transform; directpo has SimPO's (alpha 0)"),
    # OnlineDPOConfig's: online rounds sample with transformers' generate, no vLLM
    "use_vllm": (_nothing, "online rounds sample with transformers' generate"),
    "ds3_gather_for_generation": (_any, ""),  # FSDP2 gathers for generation itself
    # vLLM's settings are read only with use_vllm, which is refused above
    **dict.fromkeys(VLLM_OPTIONS, (_any, "")),
    # TrainingArguments (transformers 5): the order of the training pairs
    "train_sampling_strategy": (_equals("random"), SHUFFLED),
    # keys of TRL / transformers versions before TRL 1.x and transformers 5, so that an older
    # recipe ports too (without them it read "unknown option", with a hint to an unrelated one)
    "group_by_length": (_nothing, SHUFFLED),
    "save_safetensors": (lambda value: value in (True, None), "directpo saves safetensors"),
    "use_logits_to_keep": (_any, ""),  # only completion positions ever reach the LM head
    "use_num_logits_to_keep": (_any, ""),
    "force_use_ref_model": (_any, ""),  # ref_model_name_or_path is used with LoRA as it is
    "model_adapter_name": (_nothing, ONE_ADAPTER),
    "ref_adapter_name": (_nothing, ONE_ADAPTER),
    "use_liger_loss": (
        _nothing,
        lambda: (
            "directpo computes the completions' log-probs itself (chunked, "
            f"logprob_chunk_tokens); {said('use_liger_kernel')} applies Liger's other kernels"
        ),
    ),
    "base_model_attribute_name": (_any, ""),  # read by use_liger_loss only
    "tools": (
        _nothing,
        lambda: (
            f"give the tool schemas as {spell_shape('chat_template_kwargs', *TOOLS)} (all rows) "
            "or a 'tools' column (per row)"
        ),
    ),
    "gradient_checkpointing_use_reentrant": (_any, ""),  # the same gradients either way
    # TRL's DatasetMixtureConfig (trl dpo --config): the data is train_file / dataset_name
    "datasets": (_nothing, MIXTURE),  # when not read as dataset_mixture (_trl_mixture)
    "streaming": (_nothing, STREAMING),
    "test_split_size": (_nothing, "it belongs in dataset_mixture, with the datasets it splits"),
    # transformers 4's TrainingArguments keys, gone in transformers 5: a recipe (or a dump of
    # one, which writes every key) of that time read "unknown option" at their defaults too
    "half_precision_backend": (_equals("auto"), _bf16_precision),
    "fp16_backend": (_equals("auto"), _bf16_precision),
    "fp16_opt_level": (_any, ""),  # apex's, read only with fp16 (refused)
    "no_cuda": (_nothing, HIDE_GPUS),
    "use_mps_device": (_nothing, DEVICES),
    "use_ipex": (_nothing, DEVICES),
    "xpu_backend": (_nothing, DEVICES),
    "tpu_num_cores": (_nothing, DEVICES),
    "tpu_metrics_debug": (_nothing, DEVICES),
    "jit_mode_eval": (_nothing, "evaluation runs the model as trained"),
    "torchdynamo": (_nothing, _use(("torch_compile", True))),
    "past_index": (lambda value: value in (-1, None), "not used by causal LMs"),
    "push_to_hub_model_id": (_any, UPLOAD),
    "push_to_hub_organization": (_any, UPLOAD),
    "push_to_hub_token": (_any, UPLOAD),
    "mp_parameters": (_nothing, FSDP),
    "sharded_ddp": (_nothing, FSDP),
    "fsdp_min_num_params": (_nothing, FSDP),
    "fsdp_transformer_layer_cls_to_wrap": (_nothing, FSDP),
    "split_batches": (_nothing, "directpo runs under torchrun or accelerate launch as it is"),
    "dispatch_batches": (_nothing, "directpo runs under torchrun or accelerate launch as it is"),
    "per_gpu_train_batch_size": (_nothing, _use("per_device_train_batch_size")),
    "per_gpu_eval_batch_size": (_nothing, _use("per_device_eval_batch_size")),
    "adafactor": (
        _nothing,
        lambda: f"{spell_setting('optim')}, one of {', '.join(TRL_OPTIMIZERS)}",
    ),
    "include_tokens_per_second": (_any, ""),  # tokens/s is always logged
    "include_inputs_for_metrics": (_nothing, EVAL_METRICS),
    "use_legacy_prediction_loop": (_nothing, EVAL_METRICS),
    "ray_scope": (_any, ""),  # hyperparameter search only
    # SFTConfig's keys, in a recipe carried over from the SFT stage (the alignment-handbook's
    # habit): unknown before, some hinted to an unrelated option (packing_strategy ->
    # save_strategy, dataset_text_field -> dataset_test_split)
    "dataset_text_field": (_equals("text"), SFT_ROWS),
    "dataset_kwargs": (
        _nothing,
        "SFTConfig's; directpo tokenizes each pair itself from its prompt, chosen and rejected",
    ),
    "eos_token": (  # (SFTConfig's and RewardConfig's)
        _nothing,
        "a completion ends with the tokenizer's EOS; set eos_token in the model folder's "
        "tokenizer files to change it",
    ),
    "shuffle_dataset": (_any, ""),  # a shuffle of the rows once; the pairs are shuffled anyway
    "packing": (_any, ""),  # padding_free packs each micro-batch; no pair sees another
    "packing_strategy": (_equals("bfd"), "padding_free packs whole sequences, never cut"),
    "eval_packing": (_any, ""),
    "completion_only_loss": (
        lambda value: value in (True, None),
        lambda: (
            f"DPO's log-probs are the completions' alone ({said('assistant_only_loss')} "
            "narrows them to the assistant's turns)"
        ),
    ),
    # RewardConfig's (a recipe of the reward-model stage; was "unknown option"): at its
    # default (null) or 0 it asks for nothing
    "center_rewards_coefficient": (
        _nothing,
        "RewardConfig's, a reward model's training option (a penalty centring its scores on "
        "0); DPO trains the policy with no reward model (its implicit reward is "
        "beta x the log-ratio to the reference)",
    ),
    # KTOConfig's weights: at 1.0 they weigh nothing here
    "desirable_weight": (_equals(1.0), KTO),
    "undesirable_weight": (_equals(1.0), KTO),
}
