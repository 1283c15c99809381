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
    options = _given(value, {"beta": "beta", "label_smoothing": "label_smoothing"})
    if name == "DPOLoss":
        default = said("loss_type", "sigmoid")
        return (
            f"DPOLoss is directpo's default loss ({default}): {spell_setting(*options or ['beta'])}"
        )
    if name == "SimPOLoss":
        simpo = _given(value, {"beta": "beta", "gamma": "simpo_gamma"})
        return spell_setting(("loss_type", "simpo"), *simpo or ["beta", "simpo_gamma"])
    if name == "RSOLoss":
        gamma = value.get("gamma", Blank("GAMMA"))
        return f"{spell_setting(('loss_type', 'hinge'), ('beta', gamma))} (RSO's gamma)"
    return "choose loss_type (docs/losses.md)"


def _model(value: dict) -> str:
    lora = _given(
        value, {"lora_rank": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"}
    )
    modules = said("lora_target_modules", "all-linear")
    adapters = f"; its adapters: {spell_setting(*lora)} ({modules} by default)" if lora else ""
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
        given = _given(value, {"lr": "learning_rate", "weight_decay": "weight_decay"})
        spared = "; biases and norms are not decayed" if "weight_decay" in value else ""
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
