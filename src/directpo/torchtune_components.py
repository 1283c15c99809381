"""torchtune's components (a mapping with ``_component_``: ``model``, ``loss``, ``optimizer``,
``dataset``, ...), each refused with the directpo options that say what it built, with its own
values (``loss: {beta: 0.1}`` -> ``beta: 0.1``), in the caller's spelling; read in
foreign_names' pass (``REFUSED``'s torchtune keys).
"""

from __future__ import annotations

from typing import Any

from directpo.callers import Blank, said, spell_name, spell_setting, spell_value


def is_component(value: Any) -> bool:
    """A torchtune component that asks for something: ``{_component_: torchtune.models...}``
    (a profiler of ``enabled: false``, in every recipe, asks for nothing)."""
    return isinstance(value, dict) and "_component_" in value and value.get("enabled") is not False


def _given(value: dict, names: dict[str, str]) -> list[tuple[str, Any]]:
    """Their values as directpo options: {"lr": "learning_rate"} -> [("learning_rate", 5e-4)]."""
    return [(ours, value[theirs]) for theirs, ours in names.items() if theirs in value]


def _loss(value: dict) -> str:
    name = str(value.get("_component_", "")).rsplit(".", 1)[-1]
    # torchtune's own defaults (DPOLoss(beta=0.1), RSOLoss(gamma=0.1)) are said when the recipe
    # leaves them out: a bare 'set beta' named no value, and the user had to look it up
    options = _given({"beta": 0.1, **value}, {"beta": "beta", "label_smoothing": "label_smoothing"})
    if name == "DPOLoss":
        default = said("loss_type", "sigmoid")
        return f"DPOLoss is directpo's default loss ({default}): {spell_setting(*options)}"
    if name == "SimPOLoss":
        simpo = _given(value, {"beta": "beta", "gamma": "simpo_gamma"})
        return spell_setting(("loss_type", "simpo"), *simpo or ["beta", "simpo_gamma"])
    if name == "RSOLoss":
        gamma = value.get("gamma", 0.1)
        return f"{spell_setting(('loss_type', 'hinge'), ('beta', gamma))} (RSO's gamma)"
    return "choose loss_type (docs/losses.md)"


# torchtune's LoRA module names and the Hugging Face modules each adapts (its w1, w3, w2 are
# the MLP's gate_proj, up_proj, down_proj: apply_lora_to_mlp adapts all three)
_ATTENTION_MODULES = {
    "q_proj": "q_proj",
    "k_proj": "k_proj",
    "v_proj": "v_proj",
    "output_proj": "o_proj",
}
_MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]
# torchtune's lora_* builders' defaults (lora_llama3_1_8b(...)): a recipe that leaves one out
# trains with it, so the options say it (directpo's lora_alpha default is 32)
_LORA_DEFAULTS = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0}


def _lora_modules(value: dict) -> list[str]:
    """The Hugging Face modules a torchtune LoRA model adapts: ``lora_attn_modules`` renamed,
    the MLP's with ``apply_lora_to_mlp``, ``lm_head`` with ``apply_lora_to_output``."""
    attention = value.get("lora_attn_modules") or []
    modules = [_ATTENTION_MODULES.get(str(name), str(name)) for name in attention]
    if value.get("apply_lora_to_mlp"):
        modules += _MLP_MODULES
    if value.get("apply_lora_to_output"):
        modules.append("lm_head")
    return modules


def _adapters(value: dict, quantized: bool) -> str:
    """The LoRA options of a torchtune LoRA model: its rank, alpha, dropout (torchtune's
    defaults where left out) and the modules it adapts, which 'all-linear' (directpo's default)
    is only when they are every attention and MLP projection: the recipes' [q_proj, v_proj,
    output_proj] adapted k_proj too when the advice said all-linear."""
    lora = _given(
        {**_LORA_DEFAULTS, **value},
        {"lora_rank": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"},
    )
    modules = _lora_modules(value)
    if not modules or sorted(modules) == sorted([*_ATTENTION_MODULES.values(), *_MLP_MODULES]):
        targets = f"{said('lora_target_modules', 'all-linear')}, the default"
    else:
        lora.append(("lora_target_modules", modules))
        targets = "the modules it adapts, by their Hugging Face names"
    if value.get("use_dora"):
        lora.append(("use_dora", True))
    if quantized:  # torchtune's QLoRA: an NF4 base, as load_in_4bit's (bnb_4bit_quant_type: nf4)
        lora.append(("load_in_4bit", True))
    return f"; its adapters: {spell_setting(*lora)} ({targets})"


def _model(value: dict) -> str:
    name = str(value.get("_component_", "")).rsplit(".", 1)[-1]
    is_lora = name.startswith(("lora_", "qlora_")) or any(key in value for key in _LORA_DEFAULTS)
    quantized = name.startswith("qlora_") or bool(value.get("quantize_base"))
    adapters = _adapters(value, quantized) if is_lora else ""
    folder = spell_setting(("model_name_or_path", Blank("FOLDER")))
    return f"{folder}, the Hugging Face folder (the checkpointer's){adapters}"


GENERIC_COMPONENT = "a torchtune component: directpo builds this itself (docs/migrating.md)"


def component_hint(key: str, value: Any) -> str:
    """What a torchtune component's key is in directpo options, with its own values, each
    setting as the caller writes options."""
    if isinstance(value, list):
        files = said("train_file", ["a.jsonl", "b.jsonl"])
        return f"several datasets: {spell_name('dataset_mixture')}, or {files}"
    name = str(value.get("_component_", ""))
    if key == "loss":
        return _loss(value)
    if key == "model":
        return _model(value)
    if key in ("checkpointer", "ref_checkpointer"):
        option = "model_name_or_path" if key == "checkpointer" else "ref_model_name_or_path"
        folder = value.get("checkpoint_dir", Blank("FOLDER"))
        return spell_setting((option, folder)) + (
            "" if "checkpoint_dir" in value else ", the Hugging Face folder"
        )
    if key == "tokenizer":
        length = _given(value, {"max_seq_len": "max_length"})
        other = spell_name("tokenizer_name_or_path")
        return f"the model folder's tokenizer is loaded ({other} for another)" + (
            f"; {spell_setting(*length)}" if length else ""
        )
    if key == "optimizer":
        # torch.optim.AdamW decays by 0.01 unless told otherwise (directpo's default: 0.0)
        decay = {"weight_decay": 0.01} if name.endswith(".AdamW") else {}
        given = _given({**decay, **value}, {"lr": "learning_rate", "weight_decay": "weight_decay"})
        decays = any(option == "weight_decay" for option, _ in given)
        spared = "; biases and norms are not decayed" if decays else ""
        adamw = said("optimizer", "adamw")
        others = f"{adamw}, {spell_value('adamw_kahan')} or {spell_value('rmsprop')}"
        kind = f"AdamW; {adamw}{spared}" if name.endswith(".AdamW") else others
        return f"{spell_setting(*given or ['learning_rate'])} ({kind})"
    if key == "profiler":
        return "directpo has no profiler: run train() under torch.profiler"
    if key == "lr_scheduler":
        warmup = _given(value, {"num_warmup_steps": "warmup_steps"})
        kind = "cosine" if "cosine" in name else "linear"
        return spell_setting(("lr_scheduler_type", kind), *warmup)
    if key == "dataset":
        return _torchtune_dataset(value)
    if key == "metric_logger":
        trackers = ", ".join(spell_value(name) for name in ("wandb", "mlflow", "trackio"))
        return (
            f"{spell_setting(('report_to', 'tensorboard'))}, {trackers} or {spell_value('none')} "
            "(metrics.jsonl always)"
        )
    return GENERIC_COMPONENT


def _torchtune_dataset(value: dict) -> str:
    name = str(value.get("_component_", "")).rsplit(".", 1)[-1]
    extra = "; directpo never trains on the prompt" if value.get("train_on_input") else ""
    if name == "stack_exchange_paired_dataset":
        columns = [
            ("dataset_name", "lvwerra/stack-exchange-paired"),
            ("prompt_column", "question"),
            ("chosen_column", "response_j"),
            ("rejected_column", "response_k"),
        ]
        return (
            f"{spell_setting(*columns)} (read as plain text; the chat template renders "
            "message-list columns)" + extra
        )
    columns = value.get("column_map") or {}
    mapped = _given(columns, {"chosen": "chosen_column", "rejected": "rejected_column"})
    if value.get("data_files"):  # source: json / csv / parquet, the builder of local files
        source = ("train_file", value["data_files"])
    else:
        source = ("dataset_name", value.get("source", Blank("HUB_ID")))
    return f"{spell_setting(source, *mapped)}{extra}"
