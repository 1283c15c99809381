from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from directpo.cli import main
from directpo.command_options import RankOptions, ScoreOptions
from directpo.config import DPOConfig
from directpo.generate import evaluate_generations
from directpo.reference import FrozenModelReference
from directpo.reward import ImplicitReward, rank_file, score_file
from directpo.trainer import train


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(start model, overfit run folder, pairs file)."""
    root = tmp_path_factory.mktemp("reward")
    model = save_tiny_model("gpt2", root / "start")
    pairs = write_jsonl(root / "pairs.jsonl", SENTIMENT_PAIRS)
    config = DPOConfig(
        model_name_or_path=str(model),
        train_file=str(pairs),
        output_dir=str(root / "run"),
        report_to=["none"],
        learning_rate=5e-3,
        per_device_train_batch_size=6,
        max_steps=40,
        save_steps=0,
        beta=0.2,
        logging_steps=40,
    )
    train(config, echo=quiet)
    return model, root / "run", pairs


def plain_logprob(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """Σ log p(completion token | prefix), one token at a time, float64."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    total = 0.0
    for position in range(len(prompt_ids), len(prompt_ids) + len(completion_ids)):
        total += torch.log_softmax(logits[position - 1], -1)[ids[0, position]].item()
    return total


def test_implicit_reward_is_beta_times_the_log_ratio(trained_run) -> None:
    start, run, _ = trained_run
    tokenizer = AutoTokenizer.from_pretrained(run)
    policy = AutoModelForCausalLM.from_pretrained(run).eval()
    reference = AutoModelForCausalLM.from_pretrained(start).eval()
    prompts = ["The movie was", "I love this film,"]
    responses = [" great.", " a dull waste."]
    got = ImplicitReward(policy, reference, 0.2, tokenizer).score(prompts, responses)
    for prompt, response, reward in zip(prompts, responses, got, strict=True):
        p_ids = tokenizer(prompt).input_ids  # GPT-2 style: no BOS
        c_ids = tokenizer(response).input_ids + [tokenizer.eos_token_id]
        want = 0.2 * (plain_logprob(policy, p_ids, c_ids) - plain_logprob(reference, p_ids, c_ids))
        assert reward == pytest.approx(want, abs=1e-4)
        assert reward != 0
    # one prompt and one response: one number, not one per character
    single = ImplicitReward(policy, reference, 0.2, tokenizer).score(prompts[0], responses[0])
    assert single == pytest.approx(got[0], abs=1e-4)


def test_score_before_and_after_training(trained_run, tmp_path, capsys) -> None:
    start, run, pairs = trained_run
    # before training: the policy is its own reference, so every reward is exactly 0
    before = score_file(
        ScoreOptions(
            model_name_or_path=str(start),
            input=str(pairs),
            output=str(tmp_path / "before.jsonl"),
            ref_model_name_or_path=str(start),
            beta=0.1,
        ),
        echo=quiet,
    )
    rows = [json.loads(line) for line in (tmp_path / "before.jsonl").read_text().splitlines()]
    assert all(r["chosen_reward"] == 0 and r["rejected_reward"] == 0 for r in rows)
    assert before["accuracy"] == 0.0
    # after training, with beta and reference from the run's config.yaml (CLI)
    code = main(
        [
            "score",
            "--model_name_or_path",
            str(run),
            "--input",
            str(pairs),
            "--output",
            str(tmp_path / "after.jsonl"),
        ]
    )
    assert code == 0
    assert "6 pairs: preference accuracy 1.0000" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "after.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [p["prompt"] for p in SENTIMENT_PAIRS]  # fields kept
    assert all(
        r["margin"] == pytest.approx(r["chosen_reward"] - r["rejected_reward"]) and r["margin"] > 0
        for r in rows
    )


def test_rank_orders_by_the_scores_score_gives(trained_run, tmp_path) -> None:
    _, run, _ = trained_run
    candidates = [" wonderful and great.", " terrible.", " a dull waste.", " great."]
    write_jsonl(
        tmp_path / "cands.jsonl", [{"prompt": "The movie was", "responses": candidates, "id": 7}]
    )
    rank_file(
        RankOptions(
            model_name_or_path=str(run),
            input=str(tmp_path / "cands.jsonl"),
            output=str(tmp_path / "ranked.jsonl"),
        ),
        echo=quiet,
    )
    ranked = json.loads((tmp_path / "ranked.jsonl").read_text())
    assert ranked["id"] == 7
    write_jsonl(
        tmp_path / "single.jsonl", [{"prompt": "The movie was", "response": c} for c in candidates]
    )
    score_file(
        ScoreOptions(
            model_name_or_path=str(run),
            input=str(tmp_path / "single.jsonl"),
            output=str(tmp_path / "scored.jsonl"),
        ),
        echo=quiet,
    )
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    by_score = sorted(scored, key=lambda r: -r["reward"])
    assert [c["response"] for c in ranked["ranked"]] == [r["response"] for r in by_score]
    assert [c["reward"] for c in ranked["ranked"]] == pytest.approx([r["reward"] for r in by_score])


def test_kl_estimate_zero_at_start_positive_after_training(trained_run) -> None:
    start, run, _ = trained_run
    tokenizer = AutoTokenizer.from_pretrained(start)
    reference = FrozenModelReference(AutoModelForCausalLM.from_pretrained(start))
    config = DPOConfig(
        model_name_or_path=str(start),
        eval_generate=3,
        eval_generate_samples=2,
        generate_max_new_tokens=8,
        report_to=["none"],
    )
    prompts = [p["prompt"] for p in SENTIMENT_PAIRS[:3]]
    same = AutoModelForCausalLM.from_pretrained(start)
    metrics, records = evaluate_generations(same, reference, tokenizer, prompts, config, 1, None)
    assert len(records) == 6 and metrics["eval/kl"] == 0.0
    trained = AutoModelForCausalLM.from_pretrained(run)
    metrics, records = evaluate_generations(trained, reference, tokenizer, prompts, config, 1, None)
    assert metrics["eval/kl"] > 0
    assert all(math.isclose(r["kl"], r["logp"] - r["ref_logp"]) for r in records)


def test_generate_is_reproducible_with_a_seed(trained_run, tmp_path) -> None:
    start, _, _ = trained_run
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "The movie was"},
            {"prompt": [{"role": "user", "content": "hi"}]},  # chat template applied
        ],
    )
    outputs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code = main(
            [
                "generate",
                "--model_name_or_path",
                str(start),
                "--input",
                str(prompts),
                "--output",
                str(tmp_path / f"{name}.jsonl"),
                "--num_return_sequences",
                "2",
                "--max_new_tokens",
                "6",
                "--seed",
                seed,
            ]
        )
        assert code == 0
        outputs.append(
            [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        )
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
    assert all(len(row["completions"]) == 2 for row in outputs[0])
