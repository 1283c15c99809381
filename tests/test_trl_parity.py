"""Parity with TRL's DPOTrainer: same tiny policy, a different reference, the same pairs.

For every loss both support, directpo's loss and its rewards/* and logps/* metrics equal TRL's
(1e-5, float32). Where we differ on purpose, the test shows the difference:
* ``sigmoid`` with ``label_smoothing``: TRL 1.16 ignores it; we apply cDPO;
* ``sft``: TRL takes the token mean over the batch, we the per-sequence mean (equal when chosen
  lengths are equal), and alone it is reference-free here, so no reference is loaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import pytest
import torch
from tiny import SENTIMENT_PAIRS, save_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl_runs import dpo_trainer, trl_and_directpo_logs

from directpo.batching import collate_pairs
from directpo.config import DPOConfig
from directpo.data import load_preferences
from directpo.losses import LOSSES
from directpo.reference import FrozenModelReference
from directpo.step import METRIC_ORDER, TOKEN_MEANS, pair_losses
from directpo.tokenization import tokenize_preferences
from directpo.tokenizer_loading import pad_token_id

trl = pytest.importorskip("trl")

# rewards/* and logps/*, and the token means logits/*, entropy, mean_token_accuracy (TRL's names)
METRICS = (*METRIC_ORDER[1:], *TOKEN_MEANS)
SHARED = sorted(n for n in LOSSES if n not in ("simpo", "orpo", "unlikelihood"))  # TRL DPO set
SMOOTHED = {"robust", "exo_pair", "aot", "aot_unpaired"}
EQUAL_CHOSEN = [dict(row, chosen=" great.") for row in SENTIMENT_PAIRS]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("parity")
    return save_tiny_model("gpt2", root / "policy", seed=0), save_tiny_model(
        "gpt2", root / "ref", seed=1
    )


def trl_step(
    models, rows, tmp_path, auto=AutoModelForCausalLM, processing=AutoTokenizer, **options
) -> dict[str, float]:
    """TRL's loss and metrics on one batch holding every row (``auto``: the model class,
    ``processing``: the tokenizer or processor class)."""
    policy_dir, ref_dir = models
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=len(rows),
        report_to="none",
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16 autocast, which it applies to the reference only
        **options,
    )
    trainer = dpo_trainer(policy_dir, ref_dir, rows, args, auto, processing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.train()
        loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()}
    # TRL tokenizes text rows ahead; image rows are processed in its collator
    tokenized = [
        (r["prompt_ids"], r["chosen_ids"], r["rejected_ids"])
        for r in trainer.train_dataset
        if "prompt_ids" in r
    ]
    return {"loss": loss.item(), **metrics, "_tokenized": tokenized}


def directpo_step(models, rows, **options) -> dict[str, float]:
    policy_dir, ref_dir = models
    config = DPOConfig(
        model_name_or_path=str(policy_dir),  # (the reference is built below, from ref_dir)
        report_to=["none"],
        **options,
    )
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    data = tokenize_preferences(
        load_preferences(datasets.Dataset.from_list(rows)),
        tokenizer,
        config.max_length,
        config.max_prompt_length,
    )
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    reference = None
    if config.loss_needs_reference:
        reference = FrozenModelReference(
            AutoModelForCausalLM.from_pretrained(ref_dir), ld_alpha=config.ld_alpha
        )
    _, stats = pair_losses(
        policy, reference, collate_pairs(data.pairs, pad_token_id(tokenizer)), config
    )
    tokenized = [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in data.pairs]
    return {**stats.means(), "_tokenized": tokenized}


def assert_same(ours: dict, theirs: dict, keys) -> None:
    for key in keys:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-5, rel=1e-5), key


@pytest.mark.parametrize("loss_type", [n for n in SHARED if n != "sft"])
def test_same_loss_and_metrics_as_trl(models, tmp_path, loss_type) -> None:
    options = {"loss_type": [loss_type], "beta": 0.3}
    if loss_type in SMOOTHED:
        options["label_smoothing"] = 0.1
    if loss_type == "discopop":
        options["discopop_tau"] = 0.2
    theirs = trl_step(models, SENTIMENT_PAIRS, tmp_path, **options)
    ours = directpo_step(models, SENTIMENT_PAIRS, **options)
    # the same token ids (TRL joins prompt+completion then splits; we tokenize them apart)
    assert sorted(ours["_tokenized"]) == sorted(theirs["_tokenized"])
    assert ours["rewards/margins"] != 0  # a different reference: the comparison is not trivial
    assert_same(ours, theirs, ("loss", *METRICS))


def test_combined_sigmoid_and_sft_match_trl(models, tmp_path) -> None:
    options = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.2], "beta": 0.1}
    theirs = trl_step(models, EQUAL_CHOSEN, tmp_path, **options)
    ours = directpo_step(models, EQUAL_CHOSEN, **options)
    assert_same(ours, theirs, ("loss", *METRICS))


def test_rpo_with_ld_alpha_takes_the_nll_of_every_chosen_token_as_trl(models, tmp_path) -> None:
    """rpo_alpha's NLL (the sft loss) under ld_alpha was -(LD-weighted sum)/n: the chosen
    tokens past the rejected one's length counted alpha times in the NLL too. TRL (and RPO)
    take the NLL of every token; LD-DPO weighs only the log-ratios."""
    # chosen completions of one length, each longer than its rejected one: LD weighs their tail
    rows = [dict(row, chosen=" a truly delightful story.", rejected=" dull.") for row in
            SENTIMENT_PAIRS]  # fmt: skip
    options = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.2], "beta": 0.1}
    theirs = trl_step(models, rows, tmp_path, **options, ld_alpha=0.3)
    ours = directpo_step(models, rows, **options, ld_alpha=0.3)
    assert_same(ours, theirs, ("loss", *METRICS))
    unweighted = directpo_step(models, rows, **options)
    assert ours["loss/sft"] == pytest.approx(unweighted["loss/sft"], rel=1e-6)
    assert ours["logps/chosen"] > unweighted["logps/chosen"] + 1  # the log-ratios are LD's


def test_sft_matches_trl_on_equal_lengths_and_differs_by_design_otherwise(models, tmp_path) -> None:
    theirs = trl_step(models, EQUAL_CHOSEN, tmp_path, loss_type=["sft"])
    ours = directpo_step(models, EQUAL_CHOSEN, loss_type=["sft"])
    assert_same(ours, theirs, ("loss",))
    # reference-free here: logps/* are per-token means (TRL's DPOTrainer logs sums)
    (length,) = {len(c) for _, c, _ in ours["_tokenized"]}
    assert ours["logps/chosen"] * length == pytest.approx(theirs["logps/chosen"], rel=1e-5)
    # unequal lengths: TRL weighs tokens, we weigh sequences
    theirs = trl_step(models, SENTIMENT_PAIRS, tmp_path, loss_type=["sft"])
    ours = directpo_step(models, SENTIMENT_PAIRS, loss_type=["sft"])
    lengths = [len(c) for _, c, _ in ours["_tokenized"]]
    assert len(set(lengths)) > 1
    token_mean = -theirs["logps/chosen"] * len(lengths) / sum(lengths)  # TRL's: sums
    assert theirs["loss"] == pytest.approx(token_mean, rel=1e-6)
    assert ours["loss"] != pytest.approx(theirs["loss"], rel=1e-5)  # a real, visible difference


def test_label_smoothing_on_sigmoid_is_applied_here_and_ignored_by_trl(models, tmp_path) -> None:
    theirs = trl_step(models, SENTIMENT_PAIRS, tmp_path, loss_type=["sigmoid"], label_smoothing=0.2)
    plain = directpo_step(models, SENTIMENT_PAIRS, loss_type=["sigmoid"])
    smoothed = directpo_step(models, SENTIMENT_PAIRS, loss_type=["sigmoid"], label_smoothing=0.2)
    assert theirs["loss"] == pytest.approx(plain["loss"], abs=1e-5)  # TRL: as if ε = 0
    assert abs(smoothed["loss"] - plain["loss"]) > 1e-3
    assert_same(smoothed, theirs, METRICS)  # rewards do not depend on ε


@pytest.mark.parametrize(
    "options",
    [
        {"use_weighting": True},
        {"ld_alpha": 0.5},
        {"ld_alpha": 0.0, "loss_type": ["ipo"]},
        {"f_divergence_type": "forward_kl"},
        {"f_divergence_type": "js_divergence"},
        {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3},
        {"f_divergence_type": "js_divergence", "loss_type": ["hinge"], "use_weighting": True},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_loss_modifiers_match_trl(models, tmp_path, options) -> None:
    """WPO, LD-DPO and f-DPO: the first batch's loss and metrics equal TRL's."""
    options = {"loss_type": ["sigmoid"], "beta": 0.3, **options}
    theirs = trl_step(models, SENTIMENT_PAIRS, tmp_path, **options)
    ours = directpo_step(models, SENTIMENT_PAIRS, **options)
    plain = directpo_step(models, SENTIMENT_PAIRS, loss_type=options["loss_type"], beta=0.3)
    assert abs(ours["loss"] - plain["loss"]) > 1e-4  # the modifier changes the loss
    assert_same(ours, theirs, ("loss", *METRICS))


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_tr_dpo_sync_equals_trls_callback(models, alpha) -> None:
    """The first sync moves the reference as TRL's SyncRefModelCallback does (float32; the two
    formulas, lerp and (1 − α)·ref + α·policy, round differently in the last bit)."""
    from types import SimpleNamespace

    import torch
    from trl.trainer.callbacks import SyncRefModelCallback

    from directpo.logprobs import SequenceScorer
    from directpo.sync import sync_reference

    path = models[0]
    policy = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():  # the policy has trained a little: it differs from the reference
        for param in policy.parameters():
            param.add_(0.01 * torch.randn_like(param))
    ours, theirs = (AutoModelForCausalLM.from_pretrained(path) for _ in range(2))
    run = SimpleNamespace(
        scorer=SequenceScorer(policy),
        reference=FrozenModelReference(ours),
        masters=None,
        reference_masters=None,
    )
    sync_reference(run, alpha)
    SyncRefModelCallback._sync_target_model(policy, theirs, alpha)
    pairs = list(zip(ours.named_parameters(), theirs.parameters(), strict=True))
    for (name, mine), trl_param in pairs:
        torch.testing.assert_close(mine, trl_param, rtol=2e-7, atol=1e-8, msg=name)
    start = AutoModelForCausalLM.from_pretrained(path)
    assert all(
        not torch.equal(m, s) for m, s in zip(ours.parameters(), start.parameters(), strict=True)
    )


@pytest.mark.parametrize("style", ["llava", "qwen2vl", "gemma3"])
def test_vision_language_first_batch_equals_trl(tmp_path, style) -> None:
    """A tiny VLM with images: TRL's first-batch loss and rewards (TRL encodes each image
    twice; directpo once per pair with prefix sharing). TRL 1.16's vision collator adds neither
    BOS nor EOS (its text path adds EOS); directpo keeps its one rule for both (BOS as the
    tokenizer adds it, completions end with EOS), so the rows spell BOS and EOS out and both
    frameworks see the same ids."""
    from tiny_vlm import make_image, save_tiny_vlm
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from directpo.vision import attach_rope_positions

    policy_dir = save_tiny_vlm(style, tmp_path / "policy", seed=0)
    ref_dir = save_tiny_vlm(style, tmp_path / "ref", seed=1)
    bos, placeholder, eos = {
        "llava": ("<s>", "<image>", "</s>"),
        "qwen2vl": ("", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>"),
        "gemma3": ("<bos>", "<start_of_image>", "<eos>"),  # its image tokens see each other
    }[style]
    rows = [
        {"images": [make_image(seed=i, size=40 + 8 * i)],
         "prompt": f"{bos}{placeholder}Describe the image {i}:",
         "chosen": " a bright scene" + "!" * i + eos, "rejected": " a dull photo" + eos}
        for i in range(3)
    ]  # fmt: skip
    theirs = trl_step(
        (policy_dir, ref_dir), rows, tmp_path, auto=AutoModelForImageTextToText,
        processing=AutoProcessor, beta=0.2, max_length=None,
    )  # fmt: skip

    config = DPOConfig(model_name_or_path=str(policy_dir), ref_model_name_or_path=str(ref_dir),
                       report_to=["none"], beta=0.2, max_length=None)  # fmt: skip
    processor = AutoProcessor.from_pretrained(policy_dir)
    data = tokenize_preferences(
        load_preferences(datasets.Dataset.from_list(rows)), processor.tokenizer, None,
        processor=processor,
    )  # fmt: skip
    policy = AutoModelForImageTextToText.from_pretrained(policy_dir)
    attach_rope_positions(policy, data.pairs)
    reference = FrozenModelReference(AutoModelForImageTextToText.from_pretrained(ref_dir))
    from directpo.batching import Layout

    pad = processor.tokenizer.pad_token_id
    # Gemma 3 trains in plain rows (choose_layout: its image tokens see each other)
    for layout in (None,) if style == "gemma3" else (None, Layout(share_prefix=True, pack=True)):
        collated = collate_pairs(data.pairs, pad) if layout is None else collate_pairs(
            data.pairs, pad, layout=layout
        )  # fmt: skip
        ours = pair_losses(policy, reference, collated, config)[1].means()
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-5)
        assert_same(ours, theirs, METRICS)
    assert ours["rewards/margins"] != 0


def trl_reference_free_step(models, rows, tmp_path, trainer: str, **options) -> dict[str, float]:
    """TRL's CPOTrainer (``trainer="cpo"``) or ORPOTrainer: loss and metrics of one batch."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    cpo = trainer == "cpo"
    config, trainer_class = (CPOConfig, CPOTrainer) if cpo else (ORPOConfig, ORPOTrainer)
    args = config(
        output_dir=str(tmp_path / trainer), per_device_train_batch_size=len(rows),
        report_to="none", use_cpu=True, bf16=False, **options,
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(models[0])
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # these trainers need one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = trainer_class(
            model=AutoModelForCausalLM.from_pretrained(models[0]),
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        run.model.train()
        batch = next(iter(run.get_train_dataloader()))
        loss, metrics = run.get_batch_loss_metrics(run.model, batch)
    return {"loss": loss.item(), **{key: float(value) for key, value in metrics.items()}}


def test_simpo_and_orpo_metrics_are_those_of_trls_cpo_and_orpo_trainers(tmp_path) -> None:
    """Without a reference, logps/* are per-token means and rewards/* = β·logps/*, as TRL's
    CPOTrainer (loss_type: simpo) and ORPOTrainer log them (they were sums here: n times
    TRL's curve). SimPO's loss equals CPO's with cpo_alpha = 0; ORPO's differs by design (TRL's
    NLL also counts the prompt's tokens, docs/losses.md), its log_odds_* metrics do not.
    Llama: its tokenizer adds BOS, which these two trainers add to every prompt (GPT-2's would
    get one that DPOTrainer leaves out)."""
    models = (save_tiny_model("llama", tmp_path / "llama"), None)
    simpo = {"beta": 2.0, "simpo_gamma": 0.5, "label_smoothing": 0.1}
    theirs = trl_reference_free_step(
        models, SENTIMENT_PAIRS, tmp_path, "cpo", loss_type="simpo", cpo_alpha=0.0, **simpo
    )
    ours = directpo_step(models, SENTIMENT_PAIRS, loss_type=["simpo"], **simpo)
    # (their logits/* average every position of the padded rows, prompt and padding too)
    assert_same(ours, theirs, ("loss", *METRIC_ORDER[1:]))
    theirs = trl_reference_free_step(models, SENTIMENT_PAIRS, tmp_path, "orpo", beta=0.2)
    ours = directpo_step(models, SENTIMENT_PAIRS, loss_type=["orpo"], beta=0.2)
    assert_same(ours, theirs, (*METRIC_ORDER[1:], "log_odds_ratio", "log_odds_chosen"))
    # independently: the mean over pairs of each completion's mean token log-prob
    policy = AutoModelForCausalLM.from_pretrained(models[0])
    means = []
    for prompt, chosen, _ in ours["_tokenized"]:
        ids = torch.tensor([[*prompt, *chosen]])
        with torch.no_grad():
            logp = policy(ids).logits[0, :-1].float().log_softmax(-1)
        token = logp[len(prompt) - 1 :].gather(1, ids[0, len(prompt) :, None])
        means.append(token.mean().item())
    assert ours["logps/chosen"] == pytest.approx(sum(means) / len(means), rel=1e-5)
    assert ours["rewards/chosen"] == pytest.approx(0.2 * ours["logps/chosen"], rel=1e-5)


def test_three_steps_log_every_metric_trl_logs_with_its_value(models, tmp_path) -> None:
    """trainer.train() of TRL and directpo's train(), three optimizer steps on the whole batch:
    each step's row holds every name TRL logs, with its value (num_tokens: the prompt and
    completion tokens of every sequence so far; grad_norm before clipping; the step's lr)."""
    options = dict(
        loss_type=["sigmoid"], beta=0.3, learning_rate=1e-3, lr_scheduler_type="linear",
        max_steps=3, max_grad_norm=1.0, per_device_train_batch_size=len(SENTIMENT_PAIRS),
        logging_steps=1, seed=42,
    )  # fmt: skip
    policy_dir, ref_dir = models
    ours, theirs = trl_and_directpo_logs(policy_dir, ref_dir, SENTIMENT_PAIRS, tmp_path, **options)
    assert len(ours) == len(theirs) == 3
    for mine, row in zip(ours, theirs, strict=True):
        assert {"num_tokens", "entropy", "logits/chosen", "mean_token_accuracy"} <= row.keys()
        for key, value in row.items():
            assert mine[key] == pytest.approx(value, abs=1e-5, rel=1e-5), (row["step"], key)
    assert ours[-1]["num_tokens"] == 3 * sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in directpo_step(models, SENTIMENT_PAIRS)["_tokenized"]
    )


def trl_lora(r: int = 8):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")


# (options both spell alike, TRL's own, directpo's own, the rows' indices in SENTIMENT_PAIRS)
SETTINGS = {
    "accumulation-warmup-clip": ({}, {}, {}, (0, 1, 2, 3)),
    "lora-r8": ({}, {"peft_config": 8}, {"lora_r": 8, "lora_alpha": 16}, (0, 1, 2, 3)),
    "loss-list-weights": (
        {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
        {}, {}, (0, 1, 2, 3),
    ),
    "precompute-use_weighting": (
        {"precompute_ref_log_probs": True, "use_weighting": True}, {}, {}, (0, 1, 2, 3),
    ),
    "max_length-cosine": (
        {"max_length": 10, "lr_scheduler_type": "cosine", "warmup_steps": 0.3}, {}, {},
        (0, 1, 4, 5),  # prompts that fit: TRL drops a pair whose prompt fills max_length
    ),
}  # fmt: skip


def accumulated_runs(models, tmp_path, shared, theirs_only, ours_only, indices):
    """TRL's trainer.train() and directpo's train() of five optimizer steps of four
    micro-batches of one pair, linear warmup from 0, clipping: each one's logged rows."""
    from directpo.trainer import train

    rows = [SENTIMENT_PAIRS[i] for i in indices]
    options = dict(
        loss_type=["sigmoid"], beta=0.3, learning_rate=1e-3, lr_scheduler_type="linear",
        warmup_steps=2, max_steps=5, max_grad_norm=0.5, per_device_train_batch_size=1,
        gradient_accumulation_steps=4, logging_steps=1, seed=42,
    ) | shared  # fmt: skip
    lora = theirs_only.get("peft_config")
    policy_dir, ref_dir = models
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True, save_strategy="no",
        disable_tqdm=True, bf16=theirs_only.get("bf16", False), **options,
    )  # fmt: skip
    trainer = dpo_trainer(
        policy_dir, ref_dir, rows, args, peft_config=trl_lora(lora) if lora else None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    theirs = [row for row in trainer.state.log_history if "loss" in row]
    config = DPOConfig(
        model_name_or_path=str(policy_dir), output_dir=str(tmp_path / "ours"),
        ref_model_name_or_path=None if lora else str(ref_dir), report_to=["none"],
        save_steps=0, **options, **ours_only,
    )  # fmt: skip
    ours = train(config, train_dataset=rows, echo=lambda *_: None).metrics
    assert len(ours) == len(theirs) == 5
    assert theirs[0]["learning_rate"] == 0 and theirs[-1]["rewards/margins"] > 0.01
    return ours, theirs


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_five_accumulated_steps_log_trls_values(models, tmp_path, setting) -> None:
    """Five optimizer steps of four micro-batches of one pair (every pair once a step; steps
    over part of the pairs: test_trl_data_order.py), a linear warmup from 0 and clipping: each
    step's loss, rewards/*, logps/*, grad_norm (before clipping), learning_rate and num_tokens equal
    TRL's (float32). logits/* and mean_token_accuracy are token means over the step here, means
    of micro-batch means in TRL (docs/design.md): only their presence is compared. LoRA: the
    same seed draws the same adapters (the reference is the adapters off in both)."""
    ours, theirs = accumulated_runs(models, tmp_path, *SETTINGS[setting])
    token_means = set(TOKEN_MEANS)
    for mine, row in zip(ours, theirs, strict=True):
        assert row.keys() <= mine.keys()
        for key in row.keys() - token_means:
            assert mine[key] == pytest.approx(row[key], abs=1e-5, rel=1e-5), (row["step"], key)


def test_bf16_steps_are_trls_within_bf16_rounding(models, tmp_path) -> None:
    """bf16 (TRL: autocast over float32 weights; directpo: a bf16 compute copy of float32
    masters): the same matmuls in bf16, other rounding in the norms, softmax and sums. bf16
    keeps 8 bits: a token's log-prob is off by ~|log p|·2^-9, a sequence's (10 tokens, ~60
    nats) by ~0.01 at most, β = 0.3 times that in a reward. Measured: loss within 1.5e-3
    relative, grad_norm 7e-4, rewards 2e-3 absolute, logps 2e-4 relative of TRL's; bounds
    at ~3x, while learning_rate and num_tokens stay exact."""
    bf16 = ({}, {"bf16": True}, {"bf16": True}, (0, 1, 2, 3))
    ours, theirs = accumulated_runs(models, tmp_path, *bf16)
    for mine, row in zip(ours, theirs, strict=True):
        step = row["step"]
        assert (
            mine["learning_rate"] == row["learning_rate"]
            and mine["num_tokens"] == row["num_tokens"]
        )
        for key, rel in (("loss", 5e-3), ("grad_norm", 3e-3), ("logps/chosen", 1e-3),
                         ("logps/rejected", 1e-3)):  # fmt: skip
            assert mine[key] == pytest.approx(row[key], rel=rel), (step, key)
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
            assert mine[key] == pytest.approx(row[key], abs=5e-3), (step, key)
