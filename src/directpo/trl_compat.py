"""TRL's option names, so that a TRL config (``DPOConfig``, ``TrainingArguments``,
``ModelConfig``, ``ScriptArguments``) ports as it is.

Every key of a YAML file or a command line goes through ``translate`` before ``DPOConfig`` is
built:

* directpo's own options, TRL's spellings that are directpo options too (``bf16``,
  ``warmup_ratio``, ``eval_strategy``, ``save_strategy``, ``optim``, ``use_peft``, ``rpo_alpha``,
  ``logging_first_step``, ``run_name``, ``gradient_checkpointing_kwargs``; see config.py) pass;
* older or renamed TRL spellings of the same options are renamed (``ALIASES``);
* TRL keys that ask for nothing directpo would do differently (``push_to_hub: false``,
  ``dataloader_num_workers: 4``, ``do_eval: true``, ...) are dropped (``NO_EFFECT``);
* OpenRLHF's and torchtune's names are renamed or refused with what to write instead
  (foreign_names.py);
* every other key is a problem, and all problems are reported at once, one line each, saying
  what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from directpo.errors import ConfigError, ConfigErrors
from directpo.foreign_names import AS_WRITTEN, REFUSED, RENAMED, component_hint, is_component
from directpo.option_hints import unknown_hint
from directpo.preflight import is_adapter_folder

ALIASES = {  # TRL's other names for directpo options
    "evaluation_strategy": "eval_strategy",  # transformers < 4.46
    "activation_checkpointing": "gradient_checkpointing",  # transformers >= 5.2x
    "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
    "torch_dtype": "dtype",  # ModelConfig before transformers 5
    "max_target_length": "max_completion_length",  # TRL < 0.9
    "use_bnb_nested_quant": "bnb_4bit_use_double_quant",  # ModelConfig
    "chat_template_path": "chat_template",  # SFTConfig's spelling (a file)
    # OnlineDPOConfig's sampling and reward model (online: true)
    "max_new_tokens": "generate_max_new_tokens",
    "temperature": "generate_temperature",
    "top_p": "generate_top_p",
    "top_k": "generate_top_k",
    "min_p": "generate_min_p",
    "repetition_penalty": "generate_repetition_penalty",
    "cache_implementation": "generate_cache_implementation",
    "reward_model_path": "reward_model_name_or_path",
}
HINTS = {  # TRL arguments that are not config keys, and the option that means the same here
    "ref_model": "ref_model_name_or_path",
    "model": "model_name_or_path",
    "processing_class": "tokenizer_name_or_path",
    "peft_config": "use_peft and lora_r",
    "reward_funcs": "reward_fn",  # several: with reward_model_name_or_path and reward_weights
    "judge": "reward_fn",  # a pairwise judge: write it as a reward function
}

# `directpo train --version`: the versions are the bare command's flag
VERSION_FLAGS = ("version", "V")
VERSION_HINT = "; the versions are printed by directpo --version (before the command)"


def as_yaml(value: Any) -> str:
    """``value`` in a message as the user writes it, in YAML (``true``, ``null``,
    ``{use_reentrant: true}``; a flag's text is YAML too): Python's spelling (``True``,
    ``None``, ``{'foo': 1}``) is no value they wrote, nor one they could write back."""
    value = list(value) if isinstance(value, tuple) else value
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False)
    except yaml.YAMLError:  # (an object no YAML writes: a Python call's own value)
        return repr(value)
    return text.removesuffix("\n").removesuffix("\n...").strip()


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
MIXTURE = "write it as dataset_mixture: {datasets: [{id: ..., split: ..., weight: ...}]}"
UPLOAD = "directpo does not upload; after training run: huggingface-cli upload REPO OUTPUT_DIR"
SHUFFLED = "directpo shuffles the pairs (seed sets the order); padding_free packs each micro-batch"
FSDP = "use distributed: fsdp (FSDP2) under torchrun, fsdp_offload: true to offload"
STREAMING = (  # DatasetMixtureConfig's streaming: the mixture shuffles each source whole
    "dataset_mixture shuffles each source whole; to read only the rows max_steps trains on, "
    "give one source as train_file or dataset_name with dataset_streaming: true"
)
COMPILED = "torch_compile: true compiles each decoder layer with inductor in its default mode"
DEVICES = "directpo trains on CUDA or the CPU"
HIDE_GPUS = "hide the GPUs instead: CUDA_VISIBLE_DEVICES= directpo train ..."
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
    "adamw_torch_fused": "adamw",
    "adamw_hf": "adamw",
    "paged_adamw_32bit": "adamw",  # bitsandbytes' AdamW with paged state: the same updates
    "adamw_anyprecision": "adamw_kahan",
    "rmsprop": "rmsprop",
}
# key: (accepted when, what to do otherwise)
NO_EFFECT: dict[str, tuple[Callable[[Any], bool], str]] = {
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
    "do_predict": (_nothing, "directpo does not predict; use directpo generate"),
    "log_level_replica": (_any, ""),
    "log_on_each_node": (_any, ""),
    "logging_nan_inf_filter": (_any, "directpo skips and counts non-finite steps"),
    # not _equals: its "no" (a bare YAML no: False) asks for no logging, which was then done
    "logging_strategy": (
        lambda value: value in ("steps", None),
        "directpo logs every logging_steps and the last step (metrics.jsonl always; "
        "report_to: none keeps the trackers off)",
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
        "completions are cut from the right; to keep them whole, cap prompts with "
        "max_prompt_length (prompts are cut from the left)",
    ),
    "generate_during_eval": (_nothing, "use eval_generate: N"),
    "is_encoder_decoder": (_nothing, "directpo trains decoder-only causal LMs"),
    "project": (_any, ""),
    "trackio_space_id": (_any, ""),
    "trackio_bucket_id": (_any, ""),
    "trackio_static_space_id": (_any, ""),
    "use_cpu": (_no_gpu, HIDE_GPUS),
    "bf16_full_eval": (_nothing, "use eval_dtype: bfloat16 (with dtype: bfloat16)"),
    "fp16_full_eval": (_nothing, "float16 is not supported; eval_dtype: bfloat16 is the bf16 one"),
    # inductor and the default mode are torch_compile: true (_trl_compile); others are refused
    "torch_compile_backend": (_nothing, COMPILED),
    "torch_compile_mode": (_nothing, COMPILED),
    "neftune_noise_alpha": (_nothing, "NEFTune is an SFT technique"),
    "label_smoothing_factor": (_nothing, "use label_smoothing (cDPO)"),
    "optim_args": (_nothing, "use adam_beta1/adam_beta2/adam_epsilon/weight_decay"),
    "optim_target_modules": (_nothing, ""),
    "accelerator_config": (
        lambda value: _nothing(value) or _all_default(value, ACCELERATOR_DEFAULTS),
        "directpo runs under torchrun or accelerate launch as it is",
    ),
    "parallelism_config": (_nothing, "use distributed: ddp or fsdp"),
    "deepspeed": (_nothing, "use distributed: fsdp (FSDP2) under torchrun"),
    "fsdp": (_nothing, FSDP),
    "fsdp_config": (_nothing, FSDP),
    "debug": (_nothing, ""),
    "enable_jit_checkpoint": (_nothing, "SIGTERM/Ctrl-C always save a checkpoint"),
    "dataset_mixer": (_nothing, MIXTURE),
    "dataset_splits": (_nothing, "use dataset_train_split and dataset_test_split"),
    "ignore_bias_buffers": (_any, ""),
    "use_flash_attention_2": (_nothing, "set attn_implementation: flash_attention_2"),
    "reference_free": (_nothing, "choose a reference-free loss_type (simpo, orpo, ...)"),
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
        "directpo computes the completions' log-probs itself (chunked, logprob_chunk_tokens); "
        "use_liger_kernel: true applies Liger's other kernels",
    ),
    "base_model_attribute_name": (_any, ""),  # read by use_liger_loss only
    "tools": (
        _nothing,
        "give the tool schemas as chat_template_kwargs: {tools: [...]} (all rows) or a "
        "'tools' column (per row)",
    ),
    "gradient_checkpointing_use_reentrant": (_any, ""),  # the same gradients either way
    # TRL's DatasetMixtureConfig (trl dpo --config): the data is train_file / dataset_name
    "datasets": (_nothing, MIXTURE),  # when not read as dataset_mixture (_trl_mixture)
    "streaming": (_nothing, STREAMING),
    "test_split_size": (_nothing, "it belongs in dataset_mixture, with the datasets it splits"),
    # transformers 4's TrainingArguments keys, gone in transformers 5: a recipe (or a dump of
    # one, which writes every key) of that time read "unknown option" at their defaults too
    "half_precision_backend": (_equals("auto"), "bf16: true is directpo's own mixed precision"),
    "fp16_backend": (_equals("auto"), "bf16: true is directpo's own mixed precision"),
    "fp16_opt_level": (_any, ""),  # apex's, read only with fp16 (refused)
    "no_cuda": (_nothing, HIDE_GPUS),
    "use_mps_device": (_nothing, DEVICES),
    "use_ipex": (_nothing, DEVICES),
    "xpu_backend": (_nothing, DEVICES),
    "tpu_num_cores": (_nothing, DEVICES),
    "tpu_metrics_debug": (_nothing, DEVICES),
    "jit_mode_eval": (_nothing, "evaluation runs the model as trained"),
    "torchdynamo": (_nothing, "use torch_compile: true"),
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
    "per_gpu_train_batch_size": (_nothing, "use per_device_train_batch_size"),
    "per_gpu_eval_batch_size": (_nothing, "use per_device_eval_batch_size"),
    "adafactor": (_nothing, f"choose optim: {', '.join(TRL_OPTIMIZERS)}"),
    "include_tokens_per_second": (_any, ""),  # tokens/s is always logged
    "include_inputs_for_metrics": (_nothing, EVAL_METRICS),
    "use_legacy_prediction_loop": (_nothing, EVAL_METRICS),
    "ray_scope": (_any, ""),  # hyperparameter search only
}


def apply_trl_meanings(config: Any) -> None:
    """TRL's options that are DPOConfig fields, given TRL's meaning (called while a DPOConfig
    is checked): optim, use_peft, rpo_alpha, attn_implementation in
    model_init_kwargs, its trust_remote_code, gradient_checkpointing_kwargs, model_revision,
    warmup."""
    if config.optim is not None:
        if config.optim not in TRL_OPTIMIZERS:
            raise ConfigError(
                f"optim must be one of {', '.join(TRL_OPTIMIZERS)} (got {config.optim!r})"
            )
        if config.optimizer != "adamw" and config.optimizer != TRL_OPTIMIZERS[config.optim]:
            raise ConfigError(f"optim: {config.optim} contradicts optimizer: {config.optimizer}")
        config.optimizer = TRL_OPTIMIZERS[config.optim]
    if config.use_peft and config.lora_r == 0:
        # (once the unset rank: a rank of 0 asked for became 16 without a word)
        raise ConfigError(
            "lora_r: 0 with use_peft: true: an adapter of rank 0 trains nothing (peft refuses "
            "it); remove lora_r for rank 16 (TRL's default), or use_peft to train every weight"
        )
    # unset stays unset without use_peft: set later (a notebook), use_peft still means TRL
    # ModelConfig's rank; an adapter folder as the model is continued with its own (use_peft
    # then asked for it: its new rank-16 adapter was refused, "remove lora_r", never set)
    continuing = is_adapter_folder(config.model_name_or_path)
    if config.use_peft and config.lora_r is None and not continuing:
        config.lora_r = 16
        config._rank_of_use_peft = True  # a peft_config given to train() replaces it
    if config.use_peft is False and config.lora_r:
        raise ConfigError("lora_r is set but use_peft is false: remove one of them")
    _nll_weight(config)
    _attention_from_init_kwargs(config)
    _trust_from_init_kwargs(config)
    if config.save_strategy == "best":  # transformers' SaveStrategy.BEST
        raise ConfigError(
            "save_strategy: best is not supported: load_best_model_at_end: true writes a "
            "checkpoint at every evaluation that improves metric_for_best_model"
        )
    kwargs = config.gradient_checkpointing_kwargs
    # use_reentrant chooses torch's implementation, not the gradients: directpo always uses the
    # non-reentrant one (which also gives frozen-embedding LoRA models their gradients)
    if kwargs and (
        set(kwargs) != {"use_reentrant"} or not isinstance(kwargs["use_reentrant"], bool)
    ):
        raise ConfigError(
            f"gradient_checkpointing_kwargs: only use_reentrant is supported (got "
            f"{as_yaml(kwargs)}); "
            "directpo always checkpoints non-reentrant (the same gradients)"
        )
    _revision_into_init_kwargs(config)
    if config.warmup_steps and config.warmup_ratio:
        raise ConfigError("warmup_steps and warmup_ratio are both set: keep one")
    steps = config.warmup_steps
    if steps >= 1 and not float(steps).is_integer():
        raise ConfigError(
            f"warmup_steps must be a whole number of steps or a fraction in (0, 1) (got {steps})"
        )


def one_beta(value: Any) -> Any:
    """``beta`` given as TRL's OnlineDPOConfig types it, ``list[float]`` (one value per epoch,
    the last one after the list ends): a one-value list is that value, as TRL reads it too.
    A longer list is refused: a schedule would also decide which beta the saved run's implicit
    reward uses, and TRL 1.16 itself fails on one (it indexes the list with the trainer's
    fractional epoch once the first step is done)."""
    if isinstance(value, str) and value.strip().startswith("["):  # a flag: --beta [0.1]
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if not isinstance(value, list | tuple):
        return value
    if len(value) == 1:
        return value[0]
    raise ConfigError(
        f"beta: a list of per-epoch values ({as_yaml(list(value))}) is not supported; give one "
        "value (a one-value list, [0.1], is that value)"
    )


def _revision_into_init_kwargs(config: Any) -> None:
    """ModelConfig's model_revision is the revision in model_init_kwargs (TRL's script puts it
    there), for the policy, its tokenizer and a reference loaded with those kwargs."""
    revision = config.model_revision
    if revision in (None, "main"):
        return
    kwargs = dict(config.model_init_kwargs or {})
    if kwargs.get("revision", revision) != revision:
        raise ConfigError(
            f"model_revision {revision!r} contradicts model_init_kwargs' revision "
            f"{kwargs['revision']!r}: keep one"
        )
    config.model_init_kwargs = {**kwargs, "revision": revision}
    config.model_revision = "main"  # now in model_init_kwargs (config.yaml says so)


def _nll_weight(config: Any) -> None:
    """rpo_alpha (DPOConfig) and cpo_alpha (CPOConfig): the chosen completion's NLL added with
    that weight, i.e. loss_type [..., sft], loss_weights [..., alpha] (config.yaml says so)."""
    if config.cpo_alpha is not None and config.loss_type != ["simpo"]:
        # TRL's CPO losses (sigmoid, hinge, ipo) compare the policy's sums without a reference
        raise ConfigError(
            f"cpo_alpha is TRL CPOTrainer's; its loss_type {', '.join(config.loss_type)} has no "
            "reference model, which directpo's losses of that name have: use loss_type simpo "
            "(SimPO, as CPOTrainer's), or drop cpo_alpha for DPO's losses"
        )
    for name in ("rpo_alpha", "cpo_alpha"):
        alpha = getattr(config, name)
        if alpha is None:
            continue
        if "sft" in config.loss_type:
            raise ConfigError(f"{name} adds the sft loss, which loss_type already has")
        if alpha:  # cpo_alpha: 0 is SimPO alone
            weights = config.loss_weights or [1.0] * len(config.loss_type)
            config.loss_type = [*config.loss_type, "sft"]
            config.loss_weights = [*weights, alpha]
        setattr(config, name, None)  # now part of loss_type / loss_weights


def _attention_from_init_kwargs(config: Any) -> None:
    """attn_implementation in model_init_kwargs (TRL's scripts put it there, over ModelConfig's)
    is the attn_implementation option, which loads policy and reference alike; another value
    beside the option (or in ref_model_init_kwargs) would be overridden without a word."""
    option = config.attn_implementation
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        attention = (getattr(config, name) or {}).get("attn_implementation")
        if attention is None or attention == option:
            continue
        if name == "model_init_kwargs" and option == "auto":
            config.attn_implementation = option = attention
            continue
        raise ConfigError(
            f"{name}: attn_implementation {attention!r} contradicts attn_implementation: "
            f"{option} (which loads policy and reference alike): keep one"
        )


def _trust_from_init_kwargs(config: Any) -> None:
    """trust_remote_code in model_init_kwargs (TRL's dpo script puts it there, and TRL's trainer
    lets it win over its own option) is the trust_remote_code option, which also loads the
    config, tokenizer and reference: left in the kwargs alone, a model folder with code failed
    with 'allow its code with trust_remote_code: true', the option the user thought was set."""
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        kwargs = getattr(config, name)
        if not kwargs or "trust_remote_code" not in kwargs:
            continue
        trust = kwargs["trust_remote_code"]
        if trust is True and not config.trust_remote_code and name == "model_init_kwargs":
            config.trust_remote_code = True
        elif trust is not config.trust_remote_code:
            raise ConfigError(
                f"{name}: trust_remote_code {as_yaml(trust)} contradicts trust_remote_code: "
                f"{as_yaml(config.trust_remote_code)}: set the option alone (it loads every "
                "model folder and tokenizer of the run)"
            )
        # now the option (config.yaml says so)
        rest = {k: v for k, v in kwargs.items() if k != "trust_remote_code"}
        setattr(config, name, rest or None)


def _typed(value: Any) -> Any:
    """A flag's text as YAML reads it ('false' -> False, '0' -> 0, '[]' -> []): `--no_push_to_hub`
    and `--push_to_hub false` ask for what `push_to_hub: false` does (they were refused)."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _trl_mixture(values: dict[str, Any]) -> dict[str, Any]:
    """TRL's DatasetMixtureConfig (``trl dpo --config``: ``datasets`` and ``test_split_size`` at
    the top level) read as ``dataset_mixture``: the same sources, each used whole and
    concatenated in order, unshuffled, as TRL's get_dataset does, so that the trainer's
    sampler (batching.py, TRL's order) trains TRL's pairs at each step (its test split is
    unseeded, here dataset_mixture's seed 0 draws it)."""
    entries = values.get("datasets")
    if not isinstance(entries, list) or not entries or "dataset_mixture" in values:
        return values
    size = values.get("test_split_size")
    mixture = {
        "datasets": entries,
        **({} if size is None else {"test_split_size": size}),
        "shuffle": False,
    }
    rest = {k: v for k, v in values.items() if k not in ("datasets", "test_split_size")}
    return {**rest, "dataset_mixture": mixture}


# the alignment-handbook's processes for its dataset map (the chat template applied to each
# row), which directpo does as it tokenizes: dataset_num_proc's processes
HANDBOOK_WORKERS = "preprocessing_num_workers"


def _handbook_workers(values: dict[str, Any]) -> dict[str, Any]:
    """``preprocessing_num_workers`` (the handbook's processes for rendering its rows) is
    ``dataset_num_proc`` here, where rendering and tokenizing are one pass: it was accepted
    and did nothing (one process tokenized). Beside ``dataset_num_proc`` (TRL's, for its
    tokenizing map: both in a handbook recipe) that option alone says how many."""
    if HANDBOOK_WORKERS not in values:
        return values
    rest = {k: v for k, v in values.items() if k != HANDBOOK_WORKERS}
    if "dataset_num_proc" in values:
        return rest
    return {**rest, "dataset_num_proc": values[HANDBOOK_WORKERS]}


def _trl_compile(values: dict[str, Any]) -> dict[str, Any]:
    """``torch_compile_backend: inductor`` / ``torch_compile_mode: default`` are what
    ``torch_compile: true`` does here, and transformers compiles whenever either is set (it
    also writes the backend into every dump of a compiled config, which was refused). Beside
    an explicit ``torch_compile: false`` they stay, and are refused as a contradiction would be."""
    asked = [k for k, default in COMPILE_DEFAULTS.items() if _typed(values.get(k)) == default]
    if not asked or ("torch_compile" in values and not _typed(values["torch_compile"])):
        return values
    rest = {k: v for k, v in values.items() if k not in asked}
    return {**rest, "torch_compile": True}


def spellings(values: dict[str, Any], where: str) -> dict[str, str]:
    """The options ``translate`` renames, each with the key as the user wrote it
    ({"generate_max_new_tokens": "max_new_tokens"}), so that a refused value is named as it
    stands in their file or call (``respelled``), not by a name they never wrote."""
    flag = "--" if where == "command line" else ""
    renames = ALIASES | RENAMED
    renamed = {
        renames[key]: f"{flag}{key}"
        for key in values
        if key in renames and renames[key] not in values
    }
    if _trl_mixture(values) is not values:  # TRL's top-level datasets: [...]
        renamed["dataset_mixture"] = f"{flag}datasets"
    if HANDBOOK_WORKERS in values and "dataset_num_proc" not in values:
        renamed["dataset_num_proc"] = f"{flag}{HANDBOOK_WORKERS}"
    return renamed


NO_STRINGS = ("logging_strategy",)  # TRL's string options with a "no" (YAML's is false)


def translate(values: dict[str, Any], known: list[str], where: str) -> dict[str, Any]:
    """``values`` with TRL's spellings renamed and no-effect keys dropped; every key that cannot
    be used is reported at once (``ConfigErrors``). ``known`` are the options' own names."""
    values = _handbook_workers(_trl_compile(_trl_mixture(values)))
    result: dict[str, Any] = {}
    problems: list[str] = []
    flag = "--" if where == "command line" else ""  # name them as they were written
    renames = ALIASES | RENAMED
    for key, value in values.items():
        value = "no" if key in NO_STRINGS and value is False else value  # YAML 1.1's no
        if key.endswith("_token") and value == f"<{key.upper()}>":
            continue  # transformers' to_dict hides every *_token value: nothing is known of it
        if is_component(value):  # torchtune's (its optimizer was 'optimizer must be a string')
            problems.append(f"{flag}{key}: {component_hint(key, value)}")
        elif key in known:
            result[key] = value
        elif key in renames and renames[key] in known:
            if renames[key] in values:
                # transformers' to_dict writes both spellings (gradient_checkpointing and
                # activation_checkpointing): only a contradiction is a problem
                if _typed(values[renames[key]]) != _typed(value):
                    problems.append(f"{flag}{key}: also given as {flag}{renames[key]}; keep one")
            else:
                result[renames[key]] = value
        elif key in REFUSED:
            if instead := REFUSED[key](value if key in AS_WRITTEN else _typed(value)):
                problems.append(f"{flag}{key}: {instead}")
        elif key in NO_EFFECT:
            accepted, instead = NO_EFFECT[key]
            if not accepted(_typed(value)):
                reason = f": {instead}" if instead else ""
                # as written: a flag's own text (--logging_strategy no, not false), a YAML
                # file's value in YAML (true, not True), a Python call's in Python
                plain = flag or key in NO_STRINGS  # (`no`, not YAML's quoted 'no')
                text = value if isinstance(value, str) and plain else as_yaml(value)
                text = repr(value) if where == "DPOConfig" else text
                given = f"--{key} {text}" if flag else f"{key}: {text}"
                problems.append(f"{given} is not supported{reason}")
        else:
            # (--lr, --data: option_hints; a flag may be --config misspelt)
            meant = HINTS.get(key)
            hint = f"; did you mean '{flag}{meant}'?" if meant else ""
            hint = hint or unknown_hint(key, [*known, *(["config"] if flag else [])], flag)
            if flag and key in VERSION_FLAGS:
                hint = VERSION_HINT
            problems.append(f"unknown option '{flag}{key}'{hint}")
    if problems:
        raise ConfigErrors("" if flag else where, problems)
    return result
