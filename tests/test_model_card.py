"""model_card.py: the card's exact text, pinned for the sections each option adds or leaves out
(a Hub base and datasets, an adapter, TR-DPO's reference, metrics with a skipped step and an
evaluation, a vision model's loading code)."""

from __future__ import annotations

from directpo.config import DPOConfig
from directpo.model_card import model_card


def test_the_model_card_of_every_section_is_the_text_it_was() -> None:
    """Each line of the card in its order: the step it names is the last measured one (a NaN
    row skipped), the eval row's metrics after the train row's."""
    metrics = [
        {"step": 1, "loss": 0.69, "rewards/margins": 0.0},
        {"step": 2, "loss": float("nan")},
        {"step": 2, "eval/loss": 0.5, "eval/rewards/accuracies": 1.0},
    ]
    config = DPOConfig(
        model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
        output_dir="/runs/it's",
        beta=0.2,
        dataset_name="trl-lib/ultrafeedback_binarized",
        sync_ref_model=True,
    )
    card = model_card(config, "6 pairs from p.jsonl", metrics, "saved in bfloat16.", adapter=True)
    assert card.split("\n") == [
        "---",
        "library_name: peft",
        "tags: [dpo, directpo]",
        "base_model: HuggingFaceTB/SmolLM2-135M-Instruct",
        "datasets: [trl-lib/ultrafeedback_binarized]",
        "---",
        "",
        "# it's",
        "",
        "Trained with [directpo](https://pypi.org/project/directpo/) using Direct Preference "
        "Optimization (loss `sigmoid`, beta 0.2) from `HuggingFaceTB/SmolLM2-135M-Instruct`.",
        "",
        "## Data",
        "",
        "- 6 pairs from p.jsonl",
        "",
        "## Options (differing from the defaults)",
        "",
        "```yaml",
        "model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct",
        "sync_ref_model: true",
        "dataset_name: trl-lib/ultrafeedback_binarized",
        "beta: 0.2",
        "output_dir: /runs/it's",
        "```",
        "",
        "## Precision",
        "",
        "Trained in float32; weights saved in float32. saved in bfloat16.",
        "",
        "## Reference",
        "",
        "TR-DPO (`sync_ref_model`): the reference moved with the policy. `reference/` holds it as"
        " the policy last trained against it; implicit rewards (`directpo score`, `ImplicitReward"
        ".from_run`) are relative to it, not to the starting model "
        "`HuggingFaceTB/SmolLM2-135M-Instruct`.",
        "",
        "## Final metrics",
        "",
        "At step 2, the weights saved here:",
        "",
        "| metric | value |",
        "|---|---|",
        "| loss | 0.69 |",
        "| rewards/margins | 0 |",
        "| eval/loss | 0.5 |",
        "| eval/rewards/accuracies | 1 |",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("/runs/it\'s")',
        'tokenizer = AutoTokenizer.from_pretrained("/runs/it\'s")',
        "```",
        "",
    ]


def test_the_model_card_of_a_local_vision_base_without_metrics_is_the_text_it_was() -> None:
    config = DPOConfig(model_name_or_path="/models/local", output_dir="/out", hub_model_id="me/m")
    card = model_card(config, "2 pairs", [], vision=True)
    assert card.split("\n") == [
        "---",
        "library_name: transformers",
        "tags: [dpo, directpo]",
        "---",
        "",
        "# out",
        "",
        "Trained with [directpo](https://pypi.org/project/directpo/) using Direct Preference "
        "Optimization (loss `sigmoid`, beta 0.1) from `/models/local`.",
        "",
        "## Data",
        "",
        "- 2 pairs",
        "",
        "## Options (differing from the defaults)",
        "",
        "```yaml",
        "model_name_or_path: /models/local",
        "output_dir: /out",
        "hub_model_id: me/m",
        "```",
        "",
        "## Precision",
        "",
        "Trained in float32; weights saved in float32.",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "|---|---|",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "model = AutoModelForImageTextToText.from_pretrained('me/m')",
        "processor = AutoProcessor.from_pretrained('me/m')",
        "```",
        "",
    ]
