"""OpenRLHF's and torchtune's option names, for a DPO setup moved from either tool
(docs/migrating.md maps each one).

``trl_compat.translate`` reads them beside TRL's:

* ``RENAMED``: names whose value means exactly what a directpo option's does (OpenRLHF's
  ``--pretrain``, ``--max_epochs``; torchtune's ``epochs``, ``batch_size``) are that option;
* ``REFUSED``: every other name either tool's DPO setup writes is refused with what to write
  instead, or accepted where it asks for what directpo does anyway (``--packing_samples``);
* a torchtune component (a mapping with ``_component_``: ``model``, ``loss``, ``optimizer``,
  ``dataset``, ...) is refused with the directpo options that say what it built, with its own
  values (``loss: {beta: 0.1}`` -> ``beta: 0.1``): torchtune_components.py.

Without them each name was refused as unknown with difflib's nearest option, which misled:
``--max_epochs`` 'did you mean --max_steps?', ``--dataset`` '--data_seed', ``batch_size``
'auto_find_batch_size', ``metric_logger`` 'merge_lora'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from directpo.callers import (
    Blank,
    said,
    setting_verb,
    spell_name,
    spell_setting,
    spell_shape,
)

# (``x as x``: trl_compat and test_docs import these from here, as before torchtune's components
# had a module of their own)
from directpo.readers import DATA_ENDINGS
from directpo.torchtune_components import GENERIC_COMPONENT as GENERIC_COMPONENT
from directpo.torchtune_components import component_hint
from directpo.torchtune_components import is_component as is_component

# what a refused key's advice is: text, or words made as the message is, in the running
# caller's spelling (``set train_file: a.jsonl`` / ``give --train_file a.jsonl`` / ``pass
# train_file='a.jsonl'``)
Hint = str | Callable[[], str]


def _text(hint: Hint) -> str:
    return hint() if callable(hint) else hint


def _use(
    *settings: tuple[str, Any] | str, then: str | Callable[[], str] = "", last: str = ", "
) -> Hint:
    """A hint to set ``settings`` (spell_setting's), with ``then`` after them (words made when
    the hint is said where they name an option, in the caller's spelling)."""
    return lambda: spell_setting(*settings, last=last) + (then() if callable(then) else then)


def _number(text: Any) -> Any:
    """A flag's number as the number it is (adam_betas' '0.9' is 0.9, said unquoted)."""
    try:
        return int(text) if str(text).lstrip("-").isdigit() else float(text)
    except (TypeError, ValueError):
        return text


# OpenRLHF's train_dpo writes each option twice over its versions: flat (--pretrain) and, since
# its options were grouped, dotted (--model.model_name_or_path).
RENAMED = {
    # OpenRLHF
    "pretrain": "model_name_or_path",
    "model.model_name_or_path": "model_name_or_path",
    "ref_pretrain": "ref_model_name_or_path",
    "ref.model_name_or_path": "ref_model_name_or_path",
    "prompt_key": "prompt_column",
    "data.prompt_key": "prompt_column",
    "chosen_key": "chosen_column",
    "data.chosen_key": "chosen_column",
    "rejected_key": "rejected_column",
    "data.rejected_key": "rejected_column",
    "tokenizer_chat_template": "chat_template",
    "data.tokenizer_chat_template": "chat_template",
    "micro_train_batch_size": "per_device_train_batch_size",  # pairs per GPU per micro-step
    "train.micro_batch_size": "per_device_train_batch_size",
    "max_epochs": "num_train_epochs",
    "train.max_epochs": "num_train_epochs",
    "train.seed": "seed",
    "model.beta": "beta",
    "model.label_smoothing": "label_smoothing",  # cDPO in both
    # the chosen completion's mean token NLL, averaged over pairs, times the coefficient: what
    # rpo_alpha adds (the sft loss, docs/losses.md)
    "nll_loss_coef": "rpo_alpha",
    "model.nll_loss_coef": "rpo_alpha",
    "adam.lr": "learning_rate",
    "l2": "weight_decay",  # AdamW's decay, biases and norms spared in both
    "adam.weight_decay": "weight_decay",
    "adam.eps": "adam_epsilon",
    "max_norm": "max_grad_norm",
    "lr_warmup_ratio": "warmup_ratio",
    "lora_rank": "lora_r",  # 0: every weight trains, in both
    "ds.lora.rank": "lora_r",
    "ds.lora.alpha": "lora_alpha",
    "ds.lora.dropout": "lora_dropout",
    "target_modules": "lora_target_modules",  # all-linear by default in both
    "ds.lora.target_modules": "lora_target_modules",
    "ds.load_in_4bit": "load_in_4bit",
    "ds.attn_implementation": "attn_implementation",
    "ds.use_liger_kernel": "use_liger_kernel",
    "model.gradient_checkpointing_enable": "gradient_checkpointing",
    "logger.logging_steps": "logging_steps",
    "save_path": "output_dir",  # where the trained model is saved
    "ckpt.output_dir": "output_dir",
    "max_ckpt_num": "save_total_limit",  # the newest N checkpoints kept
    "ckpt.max_num": "save_total_limit",
    # torchtune's recipe configs (lora_dpo_single_device, full_dpo_distributed)
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",  # pairs per device per micro-step
    "enable_activation_checkpointing": "gradient_checkpointing",
    "enable_activation_offloading": "activation_offloading",
    "log_every_n_steps": "logging_steps",
    "compile": "torch_compile",
    "clip_grad_norm": "max_grad_norm",  # null: no clipping, in both
    "fsdp_cpu_offload": "fsdp_offload",
    # torchtune's command-line overrides of a component's field (tune run ... optimizer.lr=...)
    "optimizer.lr": "learning_rate",
    "loss.beta": "beta",
    "loss.label_smoothing": "label_smoothing",
    "lr_scheduler.num_warmup_steps": "warmup_steps",
    "checkpointer.checkpoint_dir": "model_name_or_path",
    "ref_checkpointer.checkpoint_dir": "ref_model_name_or_path",
    "model.lora_rank": "lora_r",
    "model.lora_alpha": "lora_alpha",
    "model.lora_dropout": "lora_dropout",
}

# flags of several values (--adam_betas 0.9 0.95), read whole so that the second is not taken
# for the config file
SEVERAL_VALUES = ("adam_betas", "adam.betas")


def _off(value: Any) -> bool:
    return value in (None, False, 0, "", "no", "none", "None", [], {})


def _unless_off(hint: Hint) -> Callable[[Any], str]:
    return lambda value: "" if _off(value) else _text(hint)


def _unless_one(hint: Hint) -> Callable[[Any], str]:
    """A size whose OpenRLHF default, 1, asks for nothing (as 0 or unset)."""
    return lambda value: "" if _off(value) or str(value) == "1" else _text(hint)


def _steps(
    value: Any, option: str, never: tuple[str, str], otherwise: Hint, after: Hint = ""
) -> str:
    """OpenRLHF's grouped save / eval steps, said as the option their value is: -1 (its
    default) as the strategy asking for it (``after``: when it asks for it), N as
    ``option: N``."""
    if str(value).strip() == "-1":
        return f"{spell_setting(never)}{_text(after)} (OpenRLHF's -1)"
    if str(value).strip().isdigit():
        return spell_setting((option, int(str(value).strip())))
    return _text(otherwise)


def _always(hint: Hint) -> Callable[[Any], str]:
    return lambda value: _text(hint)


def _same_value(option: str) -> Callable[[Any], str]:
    """``option``'s own value, said with it (named alone, no setting to paste back)."""
    plain = (str, int, float)
    return lambda value: spell_setting((option, value) if isinstance(value, plain) else option)


def _betas(value: Any) -> str:
    betas = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
    if len(betas) == 2:
        first, second = (_number(beta) for beta in betas)
        return spell_setting(("adam_beta1", first), ("adam_beta2", second), last=" and ")
    return spell_setting("adam_beta1", "adam_beta2", last=" and ")


def _dataset(value: Any) -> str:
    """OpenRLHF's path or hub id; torchtune's list of dataset components (one component is
    refused as a component before this table is read)."""
    if isinstance(value, list):
        return component_hint("dataset", value)
    # the value written as the option it is: each hint took another run to spell it out
    if _local_data(value):
        return f"{spell_setting(('train_file', value))} (a file, glob or datasets folder)"
    if isinstance(value, str) and "," not in value and value.strip():
        local = value.startswith((".", "/", "~")) or value.lower().endswith(DATA_ENDINGS)
        if "/" in value and not local:
            return (  # (train_file as the caller gives it: it was a recipe's bare key)
                f"{spell_setting(('dataset_name', value))} (a hub id; a local file is "
                f"{spell_name('train_file')})"
            )
    return (
        f"a file, glob or datasets folder is {spell_name('train_file')}, a hub id "
        f"{spell_name('dataset_name')} (several sources with weights, "
        f"{spell_name('dataset_mixture')})"
    )


def _local_data(value: Any) -> bool:
    """OpenRLHF's --dataset value names local rows (a file, glob or datasets folder)."""
    if not isinstance(value, str) or "," in value or not value.strip():
        return False
    return os.path.exists(os.path.expanduser(value)) or any(c in value for c in "*?[")


def meant_options(values: dict[str, Any]) -> dict[str, Any]:
    """The options that refused keys say to write, where their value is one (OpenRLHF's
    ``--dataset prefs.jsonl``: train_file), so that the refusal reads those rows as the run
    will: their bad rows were said a run later, once the name was fixed."""
    meant = {}
    for option, keys in MEANT.items():
        local = [v for k, v in values.items() if k in keys and _local_data(v)]
        meant |= {option: local[-1]} if local else {}
    return meant


# the option each refused data key's local file is (its rows read beside the refusal)
MEANT = {
    "train_file": ("dataset", "data.dataset"),
    "eval_file": ("eval_dataset", "eval.dataset"),
}


def _input_template(value: Any) -> str:
    """OpenRLHF's template of text prompts (``"User: {}\nAssistant: "``), applied as it reads
    each row (``template.format(prompt)``). Carried through score, rank, generate and the
    online / eval prompts it would be an option in every place that reads a prompt (where
    system_column goes: some sixty lines), so the refusal gives the file change instead: the
    one command that writes the same texts into the prompts."""
    if _off(value):
        return ""
    # a JSON string inside the shell's single quotes: Python reads it back, \n as a newline
    template = json.dumps(str(value)).replace("'", "\\u0027")
    command = (
        f'python -c \'import json, sys; t = {template}; [print(json.dumps({{**r, "prompt": '
        't.format(r["prompt"])})) for r in map(json.loads, sys.stdin)]\' < prefs.jsonl > '
        "templated.jsonl"
    )
    return (
        "directpo reads a text prompt as written: write the template into the file's prompts "
        f'(the same texts as OpenRLHF\'s: {command}; your prompt column for "prompt"), then '
        f"{said('train_file', 'templated.jsonl')} (and the same to the files score, rank and "
        "generate read); "
        "or give message lists, rendered with the chat template"
    )


# the refused keys whose value is a text, read as written (YAML read "User: {}\nAssistant: "
# as a mapping, a --dataset file named 'prefs: v2.jsonl' or a run named 'lr: 1e-5' as one)
AS_WRITTEN = ("input_template", "data.input_template", "dataset", "data.dataset", "wandb_run_name")


def _lr_scheduler(value: Any) -> str:
    """OpenRLHF's scheduler name (torchtune's component is refused as a component)."""
    return (
        f"{spell_setting(('lr_scheduler_type', value))} (OpenRLHF's cosine_with_min_lr with "
        f"min_lr_ratio 0.1: {said('lr_scheduler_kwargs', {'min_lr_rate': 0.1})})"
    )


def _device(value: Any) -> str:
    """torchtune's device: cuda is where directpo trains when it can, cpu where it cannot.
    ``device: cuda`` without a visible GPU is refused, as torchtune stops there: it trained on
    the CPU, hours slower, said only by 'on cpu' in the start line (docs/migrating.md)."""
    import torch

    gpu = torch.cuda.is_available()
    written = value.strip().lower() if isinstance(value, str) else value
    if written == "cuda" and not gpu:
        return (
            f"{value} asks for a GPU and none is visible here (torchtune stops); "
            f"{said('device', 'cpu')} trains on the CPU"
        )
    if written in ("cuda", None) or (written == "cpu" and not gpu):
        return ""
    return "directpo trains on CUDA when it can; for the CPU hide the GPUs: CUDA_VISIBLE_DEVICES="


# refused keys whose value is one directpo option's value, though not of the same meaning (so
# not renamed: the refusal says the difference): a `tune run` override of one is said as that
# option's flag (tokenizer.max_seq_len=512 was told --tokenizer.max_seq_len 512, refused next)
SAME_VALUE_AS = {
    "max_len": "max_length",
    "data.max_len": "max_length",
    "tokenizer.max_seq_len": "max_length",
    "optimizer.weight_decay": "weight_decay",
    "train_split": "dataset_train_split",
    "data.dataset_split": "dataset_train_split",
    "eval_split": "dataset_test_split",
    "eval.split": "dataset_test_split",
    "aux_loss_coef": "router_aux_loss_coef",
    "model.aux_loss_coef": "router_aux_loss_coef",
    "wandb_run_name": "run_name",
    "logger.wandb.run_name": "run_name",
    "eval.steps": "eval_steps",
}


def _save_steps() -> str:
    return (
        f"{said('save_steps', Blank('N'))} saves every N steps; {said('save_strategy', 'no')} "
        "saves none (OpenRLHF's -1)"
    )


def _batch() -> str:
    steps = Blank("train_batch_size / (per_device_train_batch_size x processes)")
    return (
        "the pairs per optimizer step are per_device_train_batch_size x "
        "gradient_accumulation_steps x processes: "
        f"{spell_setting(('gradient_accumulation_steps', steps))}"
    )


def _zero() -> str:
    return (
        f"directpo runs under torchrun without DeepSpeed: {said('distributed', 'ddp')} (each "
        "process holds the model) or fsdp (FSDP2 shards weights, gradients and optimizer state, "
        "as ZeRO-3)"
    )


def _min_lr_ratio() -> str:
    kwargs = spell_shape("lr_scheduler_kwargs", "{min_lr_rate: RATIO}", "{'min_lr_rate': RATIO}")
    return f"with {said('lr_scheduler_type', 'cosine_with_min_lr')} {setting_verb()} {kwargs}"


def _ipo() -> str:
    return (
        f"OpenRLHF's IPO squares the summed log-ratios; {said('loss_type', 'ipo')} is TRL's, on "
        "the mean token log-ratios (length-normalised), another loss"
    )


def _flash_attn() -> str:
    return (
        f"{said('attn_implementation', 'auto')} already runs packed rows through FlashAttention "
        f"varlen on CUDA in bf16; {said('attn_implementation', 'flash_attention_2')} forces it"
    )


def _env_and_wandb(variable: str) -> Hint:
    return lambda: f"set {variable} in the environment, {said('report_to', 'wandb')}"


def _tensorboard() -> str:
    return (
        f"{spell_setting(('report_to', 'tensorboard'))}, {spell_name('logging_dir')} for its folder"
    )


SAVE_STEPS = _save_steps
BATCH = _batch
ZERO = _zero
MAX_LEN = _use(
    "max_length",
    then=" (prompt + completion tokens; a longer prompt is cut from the left, where OpenRLHF "
    "drops the pair)",
)
FIRST_ROWS = "directpo reads every row: give a file of the first N (head -n N)"
MIXTURE = _use("dataset_mixture", then=" (several sources with weights)")
EVAL_DATA = _use("eval_file", "dataset_test_split", then=" (a file, or a split)", last=" or ")
OFFLOAD = lambda: f"{said('fsdp_offload')} keeps optimizer state in CPU memory (FSDP)"  # noqa: E731
REF_ONCE = lambda: (  # noqa: E731
    f"{said('precompute_ref_log_probs')} runs the reference once before training and frees it"
)
# OpenRLHF's load_enable resumes only where a checkpoint exists (a first run starts anew);
# 'latest' refuses a folder without one, so the hint says when to give it
RESUME = _use(
    ("resume_from_checkpoint", "latest"),
    then=lambda: (
        f" to continue a run whose {spell_name('output_dir')} holds a checkpoint; a first run: "
        "remove it"
    ),
)
KEEP = _use("save_total_limit", then=" (a number of checkpoints)")
# key: what it means here, as a function of its value ("": accepted, it asks for what
# directpo does anyway)
REFUSED: dict[str, Callable[[Any], str]] = {
    # OpenRLHF
    "dataset": _dataset,
    "data.dataset": _dataset,
    "dataset_probs": _always(MIXTURE),
    "data.dataset_probs": _always(MIXTURE),
    "train_split": _same_value("dataset_train_split"),
    "data.dataset_split": _same_value("dataset_train_split"),
    "eval_split": _same_value("dataset_test_split"),
    "eval.split": _same_value("dataset_test_split"),
    "eval_dataset": _always(EVAL_DATA),
    "eval.dataset": _always(EVAL_DATA),
    "max_samples": _always(FIRST_ROWS),
    "data.max_samples": _always(FIRST_ROWS),
    # (transformers' example scripts and the alignment handbook: "did you mean
    # max_eval_samples?" pointed at the held-out set's limit)
    "max_train_samples": _always(
        lambda: f"{FIRST_ROWS}, or {said('dataset_streaming')} with {spell_name('max_steps')}"
    ),
    # the same number, but OpenRLHF drops a pair whose prompt fills it, directpo cuts the
    # prompt from the left: not accepted as the same option
    "max_len": _always(MAX_LEN),
    "data.max_len": _always(MAX_LEN),
    # message lists are always rendered with the chat template here, text never
    "apply_chat_template": _always(""),
    "data.apply_chat_template": _always(""),
    "input_template": _input_template,
    "data.input_template": _input_template,
    "train_batch_size": _always(BATCH),
    "train.batch_size": _always(BATCH),
    # OpenRLHF's IPO squares the summed log-ratio; directpo's (TRL's, the IPO authors') the
    # per-token mean's: another loss of the same name
    "ipo": _unless_off(_ipo),
    "model.ipo_enable": _unless_off(_ipo),
    "aux_loss_coef": _unless_off(_use("router_aux_loss_coef", then=" (MoE)")),
    "model.aux_loss_coef": _unless_off(_use("router_aux_loss_coef", then=" (MoE)")),
    "adam_betas": _betas,
    "adam.betas": _betas,
    "lr_scheduler": _lr_scheduler,
    "min_lr_ratio": _always(_min_lr_ratio),
    "zero_stage": _always(ZERO),
    "ds.zero_stage": _always(ZERO),
    "adam_offload": _unless_off(OFFLOAD),
    "ds.adam_offload": _unless_off(OFFLOAD),
    "ds.param_dtype": _always(
        lambda: (
            f"{said('bf16')} (or {said('dtype', 'bfloat16')}) is mixed precision, as DeepSpeed's"
        )
    ),
    "flash_attn": _unless_off(_flash_attn),
    "packing_samples": _always(""),  # directpo packs rows (padding_free) by default
    "ds.packing_samples": _always(""),
    "ref_offload": _unless_off(REF_ONCE),
    "ref.offload": _unless_off(REF_ONCE),
    "ckpt_path": _always("checkpoints are written to output_dir/checkpoint-N"),
    "ckpt.path": _always("checkpoints are written to output_dir/checkpoint-N"),
    "max_ckpt_mem": _always(KEEP),
    "ckpt.max_mem": _always(KEEP),
    "load_checkpoint": _unless_off(RESUME),
    "ckpt.load_enable": _unless_off(RESUME),
    "ckpt.save_steps": lambda value: _steps(
        value, "save_steps", ("save_strategy", "no"), SAVE_STEPS
    ),
    "eval.steps": lambda value: _steps(
        value,
        "eval_steps",
        ("eval_strategy", "epoch"),
        lambda: f"{spell_setting('eval_steps')} (or {said('eval_strategy', 'epoch')})",
        # OpenRLHF evaluates once an epoch only with --eval.dataset, and nothing without one:
        # 'give --eval_strategy epoch' alone was then refused ('nothing to evaluate')
        lambda: (
            f" with held-out pairs ({spell_name('eval_file')}), or remove it: without them "
            "it evaluates nothing"
        ),
    ),
    "ckpt.save_hf": _always(""),  # every checkpoint and the final folder are HF folders
    "disable_fast_tokenizer": _unless_off("directpo loads the model folder's tokenizer as it is"),
    "data.disable_fast_tokenizer": _unless_off("directpo loads the tokenizer as it is"),
    "use_wandb": _unless_off(  # (run_name as the caller gives it: --run_name to a flag's)
        _use(("report_to", "wandb"), then=lambda: f" ({spell_name('run_name')} names the run)")
    ),
    "logger.wandb.key": _unless_off(_use(("report_to", "wandb"), then=" after wandb login")),
    "wandb_project": _unless_off(_env_and_wandb("WANDB_PROJECT")),
    "logger.wandb.project": _unless_off(_env_and_wandb("WANDB_PROJECT")),
    "wandb_run_name": lambda v: "" if _off(v) else _same_value("run_name")(v),
    "logger.wandb.run_name": lambda v: "" if _off(v) else _same_value("run_name")(v),
    "use_tensorboard": _unless_off(_tensorboard),
    "logger.tensorboard_dir": _unless_off(_tensorboard),
    # a ring of one GPU (OpenRLHF's default 1, in its scripts) is no context parallelism
    "ring_attn_size": _unless_one("directpo has no context parallelism"),
    "ds.ring_attn_size": _unless_one("directpo has no context parallelism"),
    "ring_head_stride": _unless_one("directpo has no context parallelism"),
    "zpg": _unless_one("ZeRO++'s partition size: directpo runs without DeepSpeed (distributed)"),
    "grad_accum_dtype": _unless_off(
        "gradients accumulate in the trainable weights' dtype (master_weights, float32 by default)"
    ),
    "disable_trace_cache": _unless_off("a DeepSpeed ZeRO-3 setting: directpo has no DeepSpeed"),
    "wandb_org": _unless_off(_env_and_wandb("WANDB_ENTITY")),
    "wandb_group": _unless_off(_env_and_wandb("WANDB_RUN_GROUP")),
    # torchtune (its components are refused by component_hint)
    "max_steps_per_epoch": _unless_off(
        _use("max_steps", then=" (the run's total optimizer steps)")
    ),
    "shuffle": lambda value: "" if value in (True, None) else "directpo always shuffles the pairs",
    "device": _device,
    "log_peak_memory_stats": _always(""),  # (peak memory is not logged)
    "optimizer_in_bwd": _unless_off("directpo steps the optimizer after backward"),
    "save_adapter_weights_only": _unless_off(
        lambda: f"a LoRA run's output_dir holds the adapter ({said('merge_lora')} the merged model)"
    ),
    "custom_sharded_layers": _unless_off(
        lambda: f"{said('distributed', 'fsdp')} shards each decoder layer"
    ),
    "tokenizer": _always(_use("tokenizer_name_or_path", then=" (the model folder's by default)")),
    # torchtune's AdamW decays every weight, directpo's spares biases and norm weights
    "optimizer.weight_decay": _always(
        _use("weight_decay", then=" (biases and norm weights are spared)")
    ),
    "tokenizer.max_seq_len": _always(
        _use(
            "max_length",
            then=" (prompt + completion tokens; a longer prompt is cut from the left)",
        )
    ),
    "profiler": lambda value: (
        ""
        if _off(value) or (isinstance(value, dict) and value.get("enabled") is False)
        else "directpo has no profiler: run train() under torch.profiler"
    ),
}
