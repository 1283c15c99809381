"""The final folder's README.md: Hub metadata (library, base model, datasets), what was
trained from what, the options that differ from the defaults, the precision, the final
metrics and how to load it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import yaml

from directpo.config import DPOConfig, option_help
from directpo.hub import HUB_ID, hub_model_name
from directpo.option_paths import packaged_builders

CARD_TAGS = "tags: [dpo, directpo]"  # the model card's metadata line that says directpo wrote it


def model_card(
    config: DPOConfig,
    train_summary: str,
    metrics: list[dict[str, Any]],
    precision_note: str = "",
    *,
    vision: bool = False,
    adapter: bool = False,
) -> str:
    """The folder's README.md: Hub metadata, what was trained from what, the options that
    differ from the defaults, the precision, the final metrics and how to load it. ``adapter``:
    the folder holds a PEFT adapter, which the Hub knows by ``library_name: peft`` (peft's own
    card says so; as ``transformers`` the Hub offered code that loads no adapter)."""
    defaults = {name: default for name, _, default in option_help(DPOConfig)}
    changed = {k: v for k, v in config.record().items() if v != defaults[k]}
    lines = [
        *_front_matter(config, adapter),
        f"# {Path(config.output_dir).name}",
        "",
        f"Trained with [directpo](https://pypi.org/project/directpo/) using Direct Preference "
        f"Optimization (loss {_losses(config)}, beta {config.beta}) from "
        f"`{config.model_name_or_path}`.",
        "",
        "## Data",
        "",
        f"- {train_summary}",
        "",
        "## Options (differing from the defaults)",
        "",
        "```yaml",
        yaml.safe_dump(changed, sort_keys=False).rstrip(),
        "```",
        "",
        "## Precision",
        "",
        # how it was trained and saved, then what the rounding to save_dtype kept
        " ".join(filter(None, (_precision_summary(config), precision_note))),
        "",
        *(_reference_section(config) if config.sync_ref_model else []),
        *_metrics_section(metrics),
        *_use_section(config, vision),
    ]
    return "\n".join(lines)


def _front_matter(config: DPOConfig, adapter: bool) -> list[str]:
    """The card's Hub metadata, and the blank line after it."""
    base = config.model_name_or_path or ""
    # the Hub refuses a README whose base_model is no model id (a local folder): as TRL's
    # card, a local base is named in the text only
    hub_base = hub_model_name(base) if base else None
    datasets = _hub_datasets(config)  # the Hub links the card to them (TRL's card lists them)
    return [
        "---",
        f"library_name: {'peft' if adapter else 'transformers'}",
        CARD_TAGS,
        *([f"base_model: {hub_base}"] if hub_base else []),
        *([f"datasets: [{', '.join(datasets)}]"] if datasets else []),
        "---",
        "",
    ]


def _reference_section(config: DPOConfig) -> list[str]:
    """TR-DPO's: the reference saved beside the policy, which implicit rewards are relative to."""
    from directpo.outputs import REFERENCE_FOLDER  # (outputs.py imports this module)

    return [
        "## Reference",
        "",
        "TR-DPO (`sync_ref_model`): the reference moved with the policy. "
        f"`{REFERENCE_FOLDER}/` holds it as the policy last trained against it; implicit "
        "rewards (`directpo score`, `ImplicitReward.from_run`) are relative to it, not "
        f"to the starting model `{config.model_name_or_path}`.",
        "",
    ]


def _metrics_section(metrics: list[dict[str, Any]]) -> list[str]:
    """The last measured training row's metrics, then the last evaluation's, as a table."""
    # (a row of skipped non-finite steps only holds NaN: the card gives the last measured one)
    train_rows = [row for row in metrics if math.isfinite(row.get("loss", math.nan))]
    eval_rows = [row for row in metrics if any(key.startswith("eval/") for key in row)]
    final = {**(train_rows[-1] if train_rows else {}), **(eval_rows[-1] if eval_rows else {})}
    step = final.pop("step", None)
    return [
        "## Final metrics",
        "",
        *([f"At step {step}, the weights saved here:", ""] if step is not None else []),
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v:.6g} |" for k, v in final.items() if isinstance(v, int | float)),
        "",
    ]


def _use_section(config: DPOConfig, vision: bool) -> list[str]:
    """How to load the folder: a vision model with its processor, else with its tokenizer."""
    # where a reader loads it from: the Hub repository it is meant for, else this folder
    # (written with repr: a quote or a backslash stays valid)
    folder = config.hub_model_id or str(config.output_dir)
    return [
        "## Use",
        "",
        "```python",
        *(
            [
                "from transformers import AutoModelForImageTextToText, AutoProcessor",
                f"model = AutoModelForImageTextToText.from_pretrained({folder!r})",
                f"processor = AutoProcessor.from_pretrained({folder!r})",
            ]
            if vision
            else [
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                f"model = AutoModelForCausalLM.from_pretrained({folder!r})",
                f"tokenizer = AutoTokenizer.from_pretrained({folder!r})",
            ]
        ),
        "```",
        "",
    ]


def _hub_datasets(config: DPOConfig) -> list[str]:
    """The hub ids the training data came from (dataset_name, dataset_mixture's ids; a folder
    of the Hugging Face cache by its id): not a local file or folder, which the Hub refuses in
    the card's metadata, nor a datasets builder (``id: json`` with data_files)."""
    mixture = (config.dataset_mixture or {}).get("datasets") or []
    ids = [config.dataset_name, *(entry.get("id") for entry in mixture if isinstance(entry, dict))]
    named = [hub_model_name(i, "datasets") for i in ids if isinstance(i, str)]
    found = [i for i in named if i and HUB_ID.fullmatch(i) and i not in packaged_builders()]
    return list(dict.fromkeys(found))


def _precision_summary(config: DPOConfig) -> str:
    precision = config.precision

    def name(dtype: torch.dtype) -> str:
        return str(dtype).removeprefix("torch.")

    if precision.mixed:
        how = f"mixed precision ({name(precision.compute)} compute, {name(precision.master)} "
        how += "master weights)"
    else:
        how = name(precision.compute)
    return f"Trained in {how}; weights saved in {name(precision.save)}."


def _losses(config: DPOConfig) -> str:
    """`sigmoid`, or `sigmoid` x 1.0 + `sft` x 0.2 for a weighted combination."""
    if len(config.loss_type) == 1:
        return f"`{config.loss_type[0]}`"
    weights = config.loss_weights or [1.0] * len(config.loss_type)
    return " + ".join(f"`{n}` x {w:g}" for n, w in zip(config.loss_type, weights, strict=True))
