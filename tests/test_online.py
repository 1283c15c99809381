"""Online DPO: rounds built from the policy's own samples, exact resume, any world size."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from launch import torchrun
from safetensors.torch import load_file
from test_distributed import assert_same_metrics
from tiny import SENTIMENT_PAIRS, read_jsonl, tiny_config, write_jsonl

from directpo.cli import main
from directpo.errors import DirectpoError
from directpo.generate import Sample
from directpo.online import build_pairs
from directpo.sources import OnlineRounds, PairSet
from directpo.tracking import read_metrics
from directpo.trainer import train

REWARDS = """
def letters(prompts, completions, **columns):
    # more 'e' than 'a' is better; a 'bonus' column (online rows) adds to it
    bonus = columns.get("bonus") or [0] * len(completions)
    return [c.count("e") - c.count("a") + b for c, b in zip(completions, bonus)]

def broken(prompts, completions):
    raise RuntimeError("judge offline")

def ties(prompts, completions):
    return [1.0] * len(completions)

def unscored(completions, **kwargs):  # a checker that applies to none of these prompts
    return [None] * len(completions)

def only_with_e(completions, **kwargs):  # TRL's None: this function does not score it
    return [float(c.count("e")) if "e" in c else None for c in completions]
"""
TIMING = {"pairs/s", "tokens/s", "online/sampling_seconds"}


@pytest.fixture
def online_files(tmp_path: Path) -> tuple[Path, Path]:
    rewards = tmp_path / "online_rewards.py"
    rewards.write_text(REWARDS)
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"prompt": p["prompt"], "bonus": i % 2} for i, p in enumerate(SENTIMENT_PAIRS)],
    )
    return rewards, prompts


def online_config(model, prompts, out, rewards, **overrides):
    values = dict(
        online=True,
        reward_fn=f"{rewards}:letters",
        online_prompts_per_round=4,
        online_samples_per_prompt=4,
        online_pairs="above_gap",
        steps_per_round=2,
        max_steps=6,
        generate_max_new_tokens=6,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        learning_rate=1e-2,
    )
    return tiny_config(model, prompts, out, **{**values, **overrides})


def sample(prompt: int, ids: list[int]) -> Sample:
    return Sample(prompt, [1, 2], ids, " ".join(map(str, ids)))


def test_round_pairs() -> None:
    scored = [(sample(0, [5]), 1.0), (sample(0, [6]), 3.0), (sample(0, [7]), 2.5),
              (sample(0, []), 9.0), (sample(0, [6]), 3.0)]  # fmt: skip
    best_worst = build_pairs(scored, "best_worst", 0.0, 0)
    assert [(c.completion_ids, r.completion_ids) for c, r, _, _ in best_worst] == [([6], [5])]
    assert build_pairs(scored, "best_worst", 2.5, 0) == []  # gap 2.0 is not above 2.5
    above = build_pairs(scored, "above_gap", 0.4, 0)
    gaps = [cr - rr for _, _, cr, rr in above]
    assert gaps == sorted(gaps, reverse=True) and min(gaps) > 0.4
    assert all(c.completion_ids != r.completion_ids for c, r, _, _ in above)  # never identical
    assert all(c.completion_ids for c, _, _, _ in above)  # empty completions never count
    assert len(build_pairs(scored, "above_gap", 0.0, 1)) == 1


TRL_STYLE = """
def only_completions(completions, **kwargs):  # TRL's most common signature
    return [len(c) for c in completions]

def keyword_only(*, prompts, completions, completion_ids, **kwargs):
    return [10 * len(p) + len(ids) for p, ids in zip(prompts, completion_ids)]

def named(prompts, completions, bonus):  # names the one column it wants
    return bonus

def positional(p, c):  # not TRL's names: (prompts, completions) by position
    return [len(x) for x in c]
"""


def test_reward_functions_are_called_as_trl_calls_them(tmp_path) -> None:
    from directpo.online import RoundBuilder
    from directpo.rewardfn import load_reward_fn

    module = tmp_path / "trl_rewards.py"
    module.write_text(TRL_STYLE)
    # a prompt file written by `directpo generate` has a completions column: not passed on
    columns = [{"bonus": b, "completions": ["old"], "prompts": "x"} for b in (1.0, 2.0)]
    prompts = ["ab", "abc"]
    samples = [sample(0, [5, 6]), sample(1, [7]), sample(1, [7, 8, 9])]

    def label(name: str) -> list[float]:
        labeller = load_reward_fn(f"{module}:{name}")
        builder = RoundBuilder(None, None, None, prompts, columns, labeller, None)
        return builder._label([0, 1], samples)

    texts = [s.text for s in samples]
    assert label("only_completions") == [float(len(t)) for t in texts]
    assert label("keyword_only") == [22.0, 31.0, 33.0]  # the samples' own token ids
    assert label("named") == [1.0, 2.0, 2.0]
    assert label("positional") == [float(len(t)) for t in texts]


def test_conversational_completions_reach_reward_functions_as_trl_passes_them(tmp_path) -> None:
    """TRL hands a reward function [{"role": "assistant", "content": text}] after a message-list
    prompt (prefixed by a prefilled assistant message); directpo passed the bare text, so a TRL
    function reading completion[0]["content"] failed."""
    from directpo.rewardfn import load_reward_fn

    module = tmp_path / "chat_rewards.py"
    module.write_text(
        "def content_length(prompts, completions, **kwargs):\n"
        "    return [float(len(c[0]['content'])) if isinstance(c, list) else -len(c)\n"
        "            for c in completions]\n"
    )
    reward = load_reward_fn(f"{module}:content_length")
    chat = [{"role": "user", "content": "Hi"}]
    prefilled = [*chat, {"role": "assistant", "content": "Well,"}]
    assert reward([chat, prefilled, "text"], [" hi", " yes", " no"], [{}, {}, {}]) == [
        3.0,
        9.0,  # "Well," + " yes"
        -3.0,  # a text prompt's completion stays text
    ]


def test_rounds_visit_every_prompt_once_per_epoch() -> None:
    rounds = OnlineRounds(10, 4, 3, 2, 1, seed=5, build_round=lambda r, p: (PairSet([], []), {}))
    assert rounds.rounds_per_epoch == 3 and rounds.steps_per_epoch == 9
    first_epoch = [i for r in range(3) for i in rounds.round_prompts(r)][:10]
    assert sorted(first_epoch) == list(range(10))
    assert rounds.round_prompts(1) == rounds.round_prompts(1)  # a function of (seed, round)
    assert rounds.total_steps(2.0, -1) == 18 and rounds.total_steps(1.0, 7) == 7


def test_online_run_samples_labels_and_trains(tiny_model_dirs, tmp_path, online_files) -> None:
    rewards, prompts = online_files
    out = tmp_path / "out"
    result = train(online_config(tiny_model_dirs["llama"], prompts, out, rewards), echo=print)
    rounds = [r for r in result.metrics if "online/round" in r]
    assert [r["step"] for r in rounds] == [1, 3, 5]  # a round every steps_per_round steps
    assert all(r["online/pairs"] > 0 and r["online/samples"] == 16 for r in rounds)
    records = [json.loads(x) for x in (out / "online" / "round-1.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(len(r["completions"]) == 4 for r in records)
    # the labeller got the prompt rows' other columns (TRL's convention): bonus shifts rewards
    for record in records:
        bonus = next(
            i % 2 for i, p in enumerate(SENTIMENT_PAIRS) if p["prompt"] == record["prompt"]
        )
        expected = [c.count("e") - c.count("a") + bonus for c in record["completions"]]
        assert record["rewards"] == expected
    assert [r["step"] for r in result.metrics if "loss" in r] == list(range(1, 7))
    assert (out / "model.safetensors").exists()


def test_sampled_pairs_obey_the_length_options(
    tiny_model_dirs, tmp_path, online_files, monkeypatch
) -> None:
    """max_completion_length caps the sampled completions and a long prompt gives up its start
    so that prompt + completion fit max_length, as a file's pair does (both were ignored)."""
    from directpo.online import RoundBuilder

    rewards, _ = online_files
    prompts = write_jsonl(
        tmp_path / "long.jsonl", [{"prompt": "word " * 40 + p["prompt"]} for p in SENTIMENT_PAIRS]
    )
    built: list = []
    build = RoundBuilder.__call__

    def keep(self, round_index, indices):
        pairs, metrics = build(self, round_index, indices)
        built.extend(pairs.pairs)
        return pairs, metrics

    monkeypatch.setattr(RoundBuilder, "__call__", keep)
    config = online_config(
        tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards, max_steps=1,
        generate_max_new_tokens=10, max_length=16, max_completion_length=4,
    )  # fmt: skip
    assert config.online_sampling == (12, 4)
    train(config, echo=lambda _: None)
    assert built
    for pair in built:
        assert max(len(pair.chosen_ids), len(pair.rejected_ids)) <= 4
        assert len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids)) <= 16
    with pytest.raises(Exception, match="max_length 8 leaves no room for a prompt"):
        online_config(tiny_model_dirs["llama"], prompts, tmp_path / "o", rewards, max_length=8,
                      generate_max_new_tokens=8)  # fmt: skip


@pytest.mark.parametrize("stop_after", [3, 4])  # inside round 1, and at its end
def test_resume_inside_or_between_rounds_is_exact(
    tiny_model_dirs, tmp_path, online_files, stop_after
) -> None:
    rewards, prompts = online_files
    straight = tmp_path / "straight"
    config = online_config(tiny_model_dirs["gpt2"], prompts, straight, rewards, save_steps=1)
    train(config, echo=lambda _: None)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for later in resumed.glob("checkpoint-*"):
        if int(later.name.split("-")[1]) > stop_after:
            shutil.rmtree(later)
    (resumed / "model.safetensors").unlink()
    kept = [r for r in read_metrics(resumed) if r["step"] <= stop_after]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    config.output_dir, config.resume_from_checkpoint = str(resumed), "latest"
    train(config, echo=lambda _: None)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(straight)]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(resumed)]
    # a sampling option changed on resume is used by the next rounds, and said
    again = tmp_path / "again"
    shutil.copytree(straight, again)
    (again / "model.safetensors").unlink()
    config.output_dir, config.resume_from_checkpoint = str(again), f"checkpoint-{stop_after}"
    config.generate_temperature = 0.5
    config.max_prompt_length = 16  # the sampled prompts' cut (it was not said)
    lines: list[str] = []
    train(config, echo=lines.append)
    assert any(
        line.startswith(
            "resume: generate_temperature 1.0 -> 0.5, max_prompt_length None -> 16 since the "
            "checkpoint"
        )
        for line in lines
    ), lines


FLAKY = """
import os
calls = 0

def flaky(prompts, completions, **columns):  # a judge that goes down at its fourth call
    global calls
    calls += 1
    if os.environ.get("JUDGE_DOWN") and calls >= 4:
        raise ConnectionError("judge unreachable")
    return [c.count("e") - c.count("a") for c in completions]
"""


def test_a_labeller_failing_mid_run_keeps_the_trained_steps(
    tiny_model_dirs, tmp_path, online_files, monkeypatch
) -> None:
    """A reward function failing in a later round (a judge server gone) stopped the run with
    the steps trained since the last save_steps checkpoint lost; they are checkpointed now,
    the line says where, and resuming ends with the uninterrupted run's weights."""
    _, prompts = online_files
    judge = tmp_path / "flaky_judge.py"
    judge.write_text(FLAKY)
    options = dict(reward_fn=f"{judge}:flaky", max_steps=4, steps_per_round=2)
    straight = tmp_path / "straight"
    train(online_config(tiny_model_dirs["llama"], prompts, straight, judge, **options), echo=None)
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], prompts, out, judge, **options)
    monkeypatch.setenv("JUDGE_DOWN", "1")  # checked (call 1), round 0 (2 chunks), round 1 fails
    with pytest.raises(DirectpoError) as failed:
        train(config, echo=None)
    assert str(failed.value) == (
        f"online round 1: reward_fn '{judge}:flaky' raised ConnectionError: judge unreachable; "
        "the 2 step(s) trained are kept in checkpoint-2: fix it and continue with "
        "resume_from_checkpoint='latest'"  # (train()'s keyword)
    )
    monkeypatch.delenv("JUDGE_DOWN")
    config.resume_from_checkpoint = "latest"
    train(config, echo=None)
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_sample_and_train_as_one(tiny_model_dirs, tmp_path, online_files):
    """DDP's run and FSDP2's (one launch) each sample, label and train as one process with
    the same global batch."""
    rewards, prompts = online_files
    single = tmp_path / "single"
    train(
        online_config(tiny_model_dirs["llama"], prompts, single, rewards,
                      per_device_train_batch_size=4),
        echo=lambda _: None,
    )  # fmt: skip
    modes = ("ddp", "fsdp")
    for mode in modes:
        config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / mode, rewards,
                               distributed=mode)  # fmt: skip
        config.save_yaml(tmp_path / f"{mode}.yaml")
    done = torchrun([tmp_path / f"{mode}.yaml" for mode in modes])
    assert done.returncode == 0, done.stderr[-3000:]

    def timeless(folder: Path) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k != "online/sampling_seconds"}
            for r in read_metrics(folder)
        ]

    for mode in modes:
        out = tmp_path / mode
        assert_same_metrics(timeless(out), timeless(single))
        for name in ("round-0.jsonl", "round-2.jsonl"):  # the same samples, whoever drew them
            assert (out / "online" / name).read_text() == (single / "online" / name).read_text()


def test_pairs_in_train_file_are_the_first_round(tiny_model_dirs, tmp_path, online_files) -> None:
    rewards, prompts = online_files
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    out = tmp_path / "out"
    config = online_config(
        tiny_model_dirs["gpt2"], pairs, out, rewards, prompt_file=str(prompts), max_steps=4,
        loss_type=["ipo"],
    )  # fmt: skip
    result = train(config, echo=lambda _: None)
    rounds = [r for r in result.metrics if "online/round" in r]
    assert rounds[0]["online/pairs"] == len(SENTIMENT_PAIRS)  # round 0: the given pairs
    assert (
        not (out / "online" / "round-0.jsonl").exists()
        and (out / "online" / "round-1.jsonl").exists()
    )


def test_a_train_file_of_pairs_and_prompts_is_refused(tiny_model_dirs, tmp_path, online_files):
    """Online DPO read a file whose first row was a prompt as prompts only: its pairs were
    silently used as prompts. Pairs and prompts in one source (or across train files) are
    refused in one line naming both; with skip_invalid_rows any pair makes it pairs."""
    from directpo.errors import DataError

    rewards, prompts = online_files
    rows = [{"prompt": "A film"}, *SENTIMENT_PAIRS]
    mixed = write_jsonl(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(DataError, match=r"line 1 has no 'chosen' but line 2 has"):
        train(online_config(tiny_model_dirs["gpt2"], mixed, tmp_path / "o1", rewards), echo=print)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    both = online_config(tiny_model_dirs["gpt2"], pairs, tmp_path / "o2", rewards)
    both.train_file = [str(pairs), str(prompts)]
    with pytest.raises(DataError, match="pairs.jsonl holds pairs but .*prompts.jsonl only"):
        train(both, echo=print)
    with pytest.raises(DataError, match=r"row 1 has no 'chosen' but row 2 has"):
        train(online_config(tiny_model_dirs["gpt2"], None, tmp_path / "o3", rewards), rows)
    lines: list[str] = []
    skipping = online_config(tiny_model_dirs["gpt2"], mixed, tmp_path / "o4", rewards,
                             skip_invalid_rows=True, max_steps=1)  # fmt: skip
    train(skipping, echo=lines.append)
    assert any(f"{len(SENTIMENT_PAIRS)} pairs" in line for line in lines if "train" in line)


def test_an_iterable_dataset_of_unknown_columns_is_told_pairs_or_prompts_by_its_rows() -> None:
    """An IterableDataset from a generator has no column_names: online DPO took its pairs as
    prompts only (no round 0 of the given pairs), and pairs mixed with prompts went unrefused."""
    import datasets

    from directpo.data import Columns
    from directpo.errors import DataError
    from directpo.run_sources import has_pairs

    def iterable(rows: list[dict]) -> datasets.IterableDataset:
        return datasets.IterableDataset.from_generator(lambda: iter(rows))

    assert iterable(SENTIMENT_PAIRS).column_names is None
    assert has_pairs(iterable(SENTIMENT_PAIRS), Columns())
    assert not has_pairs(iterable([{"prompt": p["prompt"]} for p in SENTIMENT_PAIRS]), Columns())
    with pytest.raises(DataError, match=r"train_dataset: row 1 has no 'chosen' but row 2 has"):
        has_pairs(iterable([{"prompt": "A film"}, *SENTIMENT_PAIRS]), Columns())


def test_a_broken_labeller_stops_before_training(tiny_model_dirs, tmp_path, online_files, capsys):
    rewards, prompts = online_files
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["gpt2"], prompts, out, rewards,
                           reward_fn=f"{rewards}:broken")  # fmt: skip
    config.save_yaml(tmp_path / "c.yaml")
    code = main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "reward_fn" in err and "judge offline" in err and "Traceback" not in err
    assert not (out / "metrics.jsonl").exists()
    for options, message in (
        ({"reward_fn": None}, "online=True needs a labeller"),
        ({"precompute_ref_log_probs": True}, "cannot be used with online"),
    ):
        with pytest.raises(Exception, match=message):
            online_config(tiny_model_dirs["gpt2"], prompts, out, rewards, **options)


def tiny_judge(tiny_model_dirs, folder: Path, vocab_size: int = 500) -> Path:
    """A tiny reward model (Llama sequence classifier) with the tiny Llama's tokenizer."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(
        LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                    num_labels=1)
    )  # fmt: skip
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dirs["llama"] / name, folder)
    return folder


def test_reward_model_sees_the_completion_once_rendered(tiny_model_dirs, tmp_path) -> None:
    """A prompt too long for the reward model loses its start, not the completion (the cut
    used to keep the prompt: every completion got the same reward and no pair formed), and
    keeps its BOS; a conversation is the chat template's ids, without a second BOS."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from directpo.labellers import _reward_model

    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    model = AutoModelForSequenceClassification.from_pretrained(judge).eval()
    tokenizer = AutoTokenizer.from_pretrained(judge)
    score = _reward_model(str(judge), torch.device("cpu"), prompt_limit=8)

    def direct(ids: list[int]) -> float:
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0, 0].item()

    long_prompt = "word " * 40 + "The movie was"
    completions = [" great fun.", " dull and slow."]
    rewards = score([long_prompt] * 2, completions, [{}, {}])
    assert rewards[0] != rewards[1]
    for reward, completion in zip(rewards, completions, strict=True):
        # 2 x prompt_limit, with the BOS and EOS TRL's RewardTrainer trained it with
        ids = tokenizer(long_prompt + completion + tokenizer.eos_token)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert reward == pytest.approx(direct([ids[0], *ids[-15:]]), abs=1e-5)
    chat = [{"role": "user", "content": "Hi"}]
    (reward,) = _reward_model(str(judge), torch.device("cpu"), None)([chat], [" Hello!"], [{}])
    messages = [*chat, {"role": "assistant", "content": " Hello!"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1
    assert reward == pytest.approx(direct(ids), abs=1e-5)
    # a prompt written as text parts is the same conversation to a text classifier's template
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    (same,) = _reward_model(str(judge), torch.device("cpu"), None)([parts], [" Hello!"], [{}])
    assert same == reward


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_reward_model_stored_in_half_precision_scores_in_float32(
    tiny_model_dirs, tmp_path, dtype
) -> None:
    """A reward model saved in bf16 (as hub reward models are; transformers loads the saved
    dtype) gave bf16 logits, 3 significant digits: close completions tied and formed no pair.
    It scores in float32 now, as implicit_reward_model does (bf16 again between rounds)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from directpo.labellers import _reward_model
    from directpo.reward_inputs import reward_input_ids

    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    half = AutoModelForSequenceClassification.from_pretrained(judge, dtype=dtype)
    half.save_pretrained(tmp_path / "judge_half")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(judge / name, tmp_path / "judge_half")
    exact = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "judge_half", dtype=torch.float32
    ).eval()  # the same half-precision weights, computing in float32
    score = _reward_model(str(tmp_path / "judge_half"), torch.device("cpu"), None)
    completions = [" great fun.", " great fun!", " dull and slow."]
    rewards = score(["The movie was"] * 3, completions, [{}] * 3)
    tokenizer = AutoTokenizer.from_pretrained(judge)
    for reward, completion in zip(rewards, completions, strict=True):
        ids = reward_input_ids(tokenizer, "The movie was", completion)  # (its EOS appended)
        with torch.no_grad():
            expected = exact(torch.tensor([ids])).logits[0, 0].item()
        assert reward == pytest.approx(expected, abs=1e-6)
        assert reward != torch.tensor(reward).to(dtype).item()  # not on the half grid
    # a second call (the weights cast back to bf16 after the first) scores the same
    assert score(["The movie was"], completions[:1], [{}]) == rewards[:1]


def test_a_reward_model_that_cannot_score_fails_in_one_line(
    tiny_model_dirs, tmp_path, online_files, capsys
) -> None:
    rewards, prompts = online_files
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge", vocab_size=50)  # tokenizer has 400
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], prompts, out, rewards, reward_fn=None,
                           reward_model_name_or_path=str(judge))  # fmt: skip
    config.save_yaml(tmp_path / "c.yaml")
    code = main(["train", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"directpo: error: reward_model_name_or_path '{judge}': scoring failed (IndexError: "
        "index out of range in self)"
    )
    assert not (out / "metrics.jsonl").exists()


def test_a_causal_lm_as_reward_model_is_refused(tiny_model_dirs, tmp_path, caplog) -> None:
    """reward_model_name_or_path naming a causal LM (the SFT model, by mistake) loaded with a
    randomly initialised score head: the run trained on noise, with only transformers' load
    report saying so. It is refused in one line, naming the weights it lacks (without the
    load report's table before it)."""
    from directpo.errors import ModelLoadError
    from directpo.labellers import _reward_model

    causal = tiny_model_dirs["llama"]
    with pytest.raises(ModelLoadError) as refused:
        _reward_model(str(causal), torch.device("cpu"), None)
    assert str(refused.value) == (
        f"reward_model_name_or_path '{causal}': not a trained reward model: score.weight not "
        "in its weights (a causal LM or base model gets a random score head); give a sequence "
        "classifier trained as a reward model"
    )
    assert "LOAD REPORT" not in caplog.text  # (transformers' table of the same weights)
    assert "not sharded" not in caplog.text
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    scores = _reward_model(str(judge), torch.device("cpu"), None)(["a"], [" b"], [{}])
    assert len(scores) == 1 and math.isfinite(scores[0])
    # a classifier of two labels (a sentiment model: NEGATIVE, POSITIVE) gave its first
    # label's logit as every reward, NEGATIVE's; TRL's num_labels=1 load fails on it
    from transformers import AutoModelForSequenceClassification

    classifier = AutoModelForSequenceClassification.from_pretrained(
        judge, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        ignore_mismatched_sizes=True,
    )  # fmt: skip
    classifier.save_pretrained(tmp_path / "classifier")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(judge / name, tmp_path / "classifier")
    with pytest.raises(ModelLoadError) as refused:
        _reward_model(str(tmp_path / "classifier"), torch.device("cpu"), None)
    assert str(refused.value) == (
        f"reward_model_name_or_path '{tmp_path / 'classifier'}': a classifier of 2 labels "
        "(NEGATIVE, POSITIVE), not a reward model of one output (TRL loads it with "
        "num_labels=1, which fails); to reward one label, write a reward_fn that returns that "
        "label's logit"
    )
    # a folder whose config and weights disagree: transformers' error points to its report,
    # which is said then
    config = json.loads((tmp_path / "classifier" / "config.json").read_text())
    config |= {"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    (tmp_path / "classifier" / "config.json").write_text(json.dumps(config))
    caplog.clear()
    with pytest.raises(ModelLoadError, match="look at the above report"):
        _reward_model(str(tmp_path / "classifier"), torch.device("cpu"), None)
    assert "LOAD REPORT" in caplog.text


def test_reward_model_and_implicit_reward_labellers(tiny_model_dirs, tmp_path, online_files):
    rewards, prompts = online_files
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    out = tmp_path / "rm"
    config = online_config(tiny_model_dirs["llama"], prompts, out, rewards, reward_fn=None,
                           reward_model_name_or_path=str(judge), max_steps=2)  # fmt: skip
    rounds = [r for r in train(config, echo=lambda _: None).metrics if "online/round" in r]
    assert rounds and rounds[0]["online/samples"] == 16

    dpo_run = tmp_path / "dpo"
    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    train(tiny_config(tiny_model_dirs["llama"], pairs, dpo_run, max_steps=2), echo=lambda _: None)
    # conversational prompts: the sampled text is the assistant's reply the run scores
    chats = [{"prompt": [{"role": "user", "content": p["prompt"]}]} for p in SENTIMENT_PAIRS]
    config = online_config(
        tiny_model_dirs["llama"], write_jsonl(tmp_path / "chats.jsonl", chats),
        tmp_path / "implicit", rewards, reward_fn=None, implicit_reward_model=str(dpo_run),
        max_steps=2,
    )  # fmt: skip
    rounds = [r for r in train(config, echo=lambda _: None).metrics if "online/round" in r]
    assert rounds and rounds[0]["online/samples"] == 16


def test_a_round_without_pairs_is_said_and_warns_nothing(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    rewards, prompts = online_files
    config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards,
                           reward_fn=f"{rewards}:ties", max_steps=2, steps_per_round=1)  # fmt: skip
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config, echo=lines.append)
    assert [r["online/pairs"] for r in result.metrics if "online/round" in r] == [0, 0]
    said = [line for line in lines if "found no pair" in line]
    assert said == [
        f"online round {n} found no pair (no prompt's completions differ in reward by more "
        "than online_reward_gap 0); its 1 step(s) update nothing"
        for n in (0, 1)
    ]
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]


def test_a_round_no_labeller_scored_says_so_and_logs_no_reward(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """A round whose every reward is None (or NaN) logged objective/scores, rlhf_reward and
    online/reward_max as 0, a reward no sample had, and was said as rewards that tie within
    online_reward_gap; it now logs no reward, online/scored 0, and says the labeller scored
    none of its samples."""
    from directpo.online import SampleStats, round_objective

    rewards, prompts = online_files
    options = dict(reward_fn=f"{rewards}:unscored", max_steps=1, steps_per_round=1)
    config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards, **options)
    lines: list[str] = []
    result = train(config, echo=lines.append)
    (row,) = [r for r in result.metrics if "online/round" in r]
    assert (row["online/pairs"], row["online/samples"], row["online/scored"]) == (0, 16, 0)
    assert not {"objective/scores", "objective/rlhf_reward", "online/reward_max"} & set(row)
    assert "objective/kl" in row and "objective/entropy" in row
    assert [line for line in lines if "found no pair" in line] == [
        "online round 0 found no pair: the labeller scored none of its 16 samples (each reward "
        "None or NaN); its 1 step(s) update nothing"
    ]
    stats = [SampleStats(-1.0, -1.5, True)] * 2
    partly = round_objective([math.nan, 2.0], [], stats, beta=0.5)
    assert (partly["objective/scores"], partly["objective/rlhf_reward"]) == (2.0, 1.75)
    assert "objective/scores" not in round_objective([math.nan] * 2, [], stats, beta=0.5)


def test_labellers_read_a_pairs_rows_prompt_with_its_template_args(tiny_model_dirs, tmp_path):
    """Online rounds of a pairs file (and eval_generate's check) hand the labeller a prompt
    carrying its row's tools / chat_template_kwargs (an ImagePrompt without images): a
    reward_fn got that object and the bare text, not the messages and TRL's assistant
    message; a reward model failed ('scoring failed (TypeError'); the implicit reward refused
    it; the round's record could not be written as JSON."""
    from test_tokenization import TOOLS_TEMPLATE, WEATHER_ROW, WEATHER_TOOL
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from directpo.data import ImagePrompt, load_preferences
    from directpo.labellers import _reward_model
    from directpo.reward import ImplicitReward
    from directpo.rewardfn import load_reward_fn

    tool, chat = WEATHER_TOOL, WEATHER_ROW["prompt"]
    with_tools = ImagePrompt(chat, (), {"tools": [tool]})
    module = tmp_path / "chat_rewards.py"
    module.write_text(
        "def content_length(prompts, completions):\n"
        "    assert all(isinstance(p, list) for p in prompts), prompts\n"
        "    return [float(len(c[0]['content'])) for c in completions]\n"
    )
    assert load_reward_fn(f"{module}:content_length")([with_tools], [" hi"], [{}]) == [3.0]
    judge = _reward_model(str(tiny_judge(tiny_model_dirs, tmp_path / "judge")), "cpu", None)
    assert judge([with_tools], [" Hello!"], [{}]) == judge([chat], [" Hello!"], [{}])

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["gpt2"])
    tokenizer.chat_template = TOOLS_TEMPLATE
    scorer = ImplicitReward(model, None, 1.0, tokenizer)
    row = {"prompt": chat, "chosen": [{"role": "assistant", "content": "Sunny."}],
           "rejected": [{"role": "assistant", "content": "No idea."}], "tools": [tool]}  # fmt: skip
    ((chosen, _),) = scorer.score_pairs(load_preferences([row]).examples)
    assert scorer.score([with_tools], ["Sunny."]) == pytest.approx([chosen], abs=1e-6)
    assert scorer.score([chat], ["Sunny."]) != pytest.approx([chosen], abs=1e-6)

    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARDS)
    pairs = write_jsonl(tmp_path / "tools.jsonl", [{**p, "tools": [tool]} for p in CHAT_PAIRS])
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], pairs, out, rewards, max_steps=3,
                           steps_per_round=1, online_prompts_per_round=2,
                           chat_template=TOOLS_TEMPLATE)  # one that writes the tools  # fmt: skip
    train(config, echo=lambda _: None)
    records = [json.loads(line) for line in (out / "online" / "round-1.jsonl").open()]
    assert records and all(isinstance(r["prompt"], list) for r in records)


CHAT_PAIRS = [
    {
        "prompt": [{"role": "user", "content": p["prompt"]}],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    }
    for p in SENTIMENT_PAIRS
]


def test_a_changed_chat_template_is_said_in_one_short_line_on_resume() -> None:
    """The resume note printed both values of each changed sampling option: a chat template
    given as text filled the terminal with two whole templates."""
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}" * 4

    def rounds(sampling: dict) -> OnlineRounds:
        build = lambda r, p: (PairSet([], []), {})  # noqa: E731
        return OnlineRounds(10, 4, 3, 2, 1, seed=5, build_round=build, sampling=sampling)

    saved = {**rounds({"chat_template": None, "generate_temperature": 1.0}).state(), "round": 1}
    now = rounds({"chat_template": template, "generate_temperature": 0.5})
    assert now.restore(saved, "checkpoint-2") == [
        "resume: chat_template (changed), generate_temperature 1.0 -> 0.5 since the checkpoint; "
        "rounds after round 1 sample with this run's values"
    ]


def test_round_objective_is_trls_formulas() -> None:
    """TRL OnlineDPOTrainer's objective/* of hand-computed samples (kl = log pi - log pi_ref
    summed over a completion; rlhf_reward = score - beta * kl; entropy = -log pi)."""
    from directpo.online import SampleStats, round_objective

    stats = [SampleStats(-2.0, -1.0, True), SampleStats(-4.0, -4.0, False)]
    metrics = round_objective([1.0, 3.0], [2.0], stats, beta=0.5)
    assert metrics == {
        "objective/scores": 2.0,
        "objective/scores_margin": 2.0,
        "objective/kl": -0.5,
        "objective/non_score_reward": 0.25,
        "objective/rlhf_reward": 2.25,  # (1 + 0.5) and (3 - 0), averaged
        "objective/entropy": 3.0,
        "val/contain_eos_token": 0.5,
        "beta": 0.5,
    }
    no_reference = round_objective([1.0, 3.0], [], [SampleStats(-2.0, None, True)] * 2, 0.5)
    assert "objective/kl" not in no_reference and "objective/scores_margin" not in no_reference


def test_online_rounds_log_trls_metrics(tiny_model_dirs, tmp_path, online_files) -> None:
    """A round's row carries TRL's names (it logged online/reward_mean alone): the scores of
    its records, the pairs' reward margins, and a KL of 0 while the policy is the reference."""
    rewards, prompts = online_files
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], prompts, out, rewards, max_steps=3)
    rounds = [r for r in train(config, echo=lambda _: None).metrics if "online/round" in r]
    assert len(rounds) == 2 and all("online/reward_mean" not in r for r in rounds)
    for row in rounds:
        path = out / "online" / f"round-{int(row['online/round'])}.jsonl"
        records = [json.loads(x) for x in path.read_text().splitlines()]
        scores = [r for record in records for r in record["rewards"]]
        assert row["objective/scores"] == pytest.approx(sum(scores) / len(scores))
        margins = []
        for record in records:
            reward = dict(zip(record["completions"], record["rewards"], strict=True))
            margins += [reward[chosen] - reward[rejected] for chosen, rejected in record["pairs"]]
        assert row["objective/scores_margin"] == pytest.approx(sum(margins) / len(margins))
        assert row["objective/entropy"] > 0 and 0 <= row["val/contain_eos_token"] <= 1
        assert row["beta"] == config.beta
        assert row["objective/non_score_reward"] == pytest.approx(
            -config.beta * row["objective/kl"]
        )
    first, second = rounds
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-4)  # sampled by the start model
    assert first["objective/rlhf_reward"] == pytest.approx(first["objective/scores"], abs=1e-4)
    assert abs(second["objective/kl"]) > 1e-3  # two steps at lr 1e-2 moved the policy


def test_missing_eos_penalty_lowers_completions_that_never_end(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """TRL's missing_eos_penalty: a completion without a stop token loses it (tied rewards
    then pair an ended completion against one cut by the token limit)."""
    rewards, prompts = online_files
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], model)
    generation = json.loads((model / "generation_config.json").read_text())
    generation["eos_token_id"] = list(range(1, 400, 5))  # a stop every ~5 tokens
    (model / "generation_config.json").write_text(json.dumps(generation))
    out = tmp_path / "out"
    config = online_config(model, prompts, out, rewards, reward_fn=f"{rewards}:ties",
                           missing_eos_penalty=2.5, max_steps=3)  # fmt: skip
    rounds = [r for r in train(config, echo=lambda _: None).metrics if "online/round" in r]
    for row in rounds:
        path = out / "online" / f"round-{int(row['online/round'])}.jsonl"
        scores = [r for x in path.read_text().splitlines() for r in json.loads(x)["rewards"]]
        assert set(scores) <= {1.0, -1.5}
        assert row["val/contain_eos_token"] == pytest.approx(scores.count(1.0) / len(scores))
    ended = [row["val/contain_eos_token"] for row in rounds]
    assert any(0 < share < 1 for share in ended) and all(r["online/pairs"] > 0 for r in rounds)
    with pytest.raises(Exception, match="missing_eos_penalty is set but online is off"):
        tiny_config(model, prompts, out, missing_eos_penalty=1.0)
    with pytest.raises(Exception, match="missing_eos_penalty must be a finite number >= 0"):
        online_config(model, prompts, out, rewards, missing_eos_penalty=-1.0)


def test_labellers_combine_with_reward_weights(tiny_model_dirs, tmp_path, online_files) -> None:
    """TRL's reward_funcs list with reward_weights: reward_fn and a reward model together, the
    weighted sum (refused before: 'exactly one labeller')."""
    from directpo.labellers import _reward_model, load_labeller
    from directpo.rewardfn import load_reward_fn

    rewards, prompts = online_files
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    out = tmp_path / "out"
    both = dict(reward_model_name_or_path=str(judge), reward_weights=[2.0, -0.5])
    config = online_config(tiny_model_dirs["llama"], prompts, out, rewards, **both)
    texts = ["The movie was", "A film"]
    completions = [" great eee", " bad aaa"]
    rows = [{"completion_ids": [5, 6]}, {"completion_ids": [7]}]
    combined = load_labeller(config, torch.device("cpu"))(texts, completions, rows)
    letters = load_reward_fn(f"{rewards}:letters")(texts, completions, rows)
    model = _reward_model(str(judge), torch.device("cpu"), config.prompt_limit)
    scores = model(texts, completions, rows)
    assert combined == pytest.approx(
        [2 * a - 0.5 * b for a, b in zip(letters, scores, strict=True)]
    )
    assert letters == [3.0, -4.0]
    with pytest.raises(Exception, match=r"reward_weights=\[1.0\] gives 1 weight for 2 labellers"):
        online_config(tiny_model_dirs["llama"], prompts, out, rewards,
                      reward_model_name_or_path=str(judge), reward_weights=[1.0])  # fmt: skip


def test_a_reward_of_none_is_unscored_as_in_trl(tiny_model_dirs, tmp_path, online_files):
    """TRL lets a reward function return None for a completion it does not score (NaN, left
    out of the weighted nansum); it was refused as 'item 1 is None'. Unscored by every
    labeller, a completion joins no pair and no mean."""
    from directpo.labellers import _reward_model, load_labeller
    from directpo.online import SampleStats, round_objective
    from directpo.rewardfn import load_reward_fn

    rewards, prompts = online_files
    partial = load_reward_fn(f"{rewards}:only_with_e")
    texts, completions = ["The movie was", "A film"], [" great eee", " bad aaa"]
    rows = [{"completion_ids": [5, 6]}, {"completion_ids": [7]}]
    got = partial(texts, completions, rows)
    assert got[0] == 4.0 and math.isnan(got[1])
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    both = dict(reward_fn=f"{rewards}:only_with_e", reward_model_name_or_path=str(judge),
                reward_weights=[2.0, 1.0])  # fmt: skip
    config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards, **both)
    combined = load_labeller(config, torch.device("cpu"))(texts, completions, rows)
    scores = _reward_model(str(judge), torch.device("cpu"), config.prompt_limit)(
        texts, completions, rows
    )
    assert combined == pytest.approx([2 * 4.0 + scores[0], scores[1]])  # None adds nothing

    scored = [(sample(0, [5]), math.nan), (sample(0, [6]), 1.0), (sample(0, [7]), 0.0)]
    pairs = build_pairs(scored, "best_worst", 0.0, 0)
    assert [(c.completion_ids, r.completion_ids) for c, r, _, _ in pairs] == [([6], [7])]
    assert all(not math.isnan(x) for _, _, a, b in build_pairs(scored, "above_gap", -9, 0)
               for x in (a, b))  # fmt: skip
    stats = [SampleStats(-1.0, -1.0, True)] * 3
    metrics = round_objective([math.nan, 1.0, 0.0], [1.0], stats, beta=0.5)
    assert metrics["objective/scores"] == 0.5 and metrics["objective/rlhf_reward"] == 0.5

    out = tmp_path / "run"  # a real round: unscored completions are null in its file
    config = online_config(tiny_model_dirs["llama"], prompts, out, rewards, max_steps=2,
                           steps_per_round=1, reward_fn=f"{rewards}:only_with_e")  # fmt: skip
    result = train(config, echo=lambda _: None)
    records = [json.loads(x) for x in (out / "online" / "round-1.jsonl").read_text().splitlines()]
    for record in records:
        for text, reward in zip(record["completions"], record["rewards"], strict=True):
            assert reward == (float(text.count("e")) if "e" in text else None)
    round_rows = [row for row in result.metrics if "objective/scores" in row]
    assert round_rows and all(math.isfinite(row["objective/scores"]) for row in round_rows)


SHAPED = """
def shaped(completions, trainer_state, **kwargs):  # TRL's reward shaped by the run's progress
    step = trainer_state.global_step
    progress = step / trainer_state.max_steps  # (the check before training gave 0 steps)
    assert trainer_state.max_steps == 4 and progress <= 1
    return [1000 * step + c.count("e") for c in completions]
"""


def test_reward_functions_get_trls_trainer_state(tiny_model_dirs, tmp_path, online_files):
    """TRL passes its reward functions ``trainer_state`` (the trainer's TrainerState: global
    step, max_steps, epoch), for rewards shaped by the run's progress; such a function failed
    at the check before training ('missing 1 required positional argument'). Each round's
    calls now get the state at its first step, eval_generate's at its step; the check's state
    is step 0 of the run's max_steps (it gave 0 steps: global_step / max_steps divided by 0,
    and the run never started)."""
    _, prompts = online_files
    judge = tmp_path / "shaped_judge.py"
    judge.write_text(SHAPED)
    out, held_out = tmp_path / "out", write_jsonl(tmp_path / "eval.jsonl", SENTIMENT_PAIRS)
    options = dict(reward_fn=f"{judge}:shaped", max_steps=4, steps_per_round=1,
                   online_prompts_per_round=8, eval_file=str(held_out), eval_generate=2,
                   eval_steps=3, eval_strategy="steps")  # fmt: skip
    train(online_config(tiny_model_dirs["llama"], prompts, out, judge, **options), echo=None)
    for round_index in range(4):
        records = read_jsonl(out / "online" / f"round-{round_index}.jsonl")
        steps = {int(r // 1000) for record in records for r in record["rewards"]}
        assert steps == {round_index}  # a round is sampled before its first step
    assert {row["reward"] // 1000 for row in read_jsonl(out / "samples" / "step-3.jsonl")} == {3}


def test_pairs_file_prompts_pass_their_rows_columns(tiny_model_dirs, tmp_path, online_files):
    """Online prompts taken from a pairs file give reward_fn their rows' other columns, as a
    prompt file's do (they gave only completion_ids: the bonus column never reached it)."""
    rewards, _ = online_files
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{**p, "bonus": 10 * i} for i, p in enumerate(SENTIMENT_PAIRS)]
    )
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], pairs, out, rewards, max_steps=2,
                           steps_per_round=1)  # fmt: skip
    train(config, echo=lambda _: None)
    bonus = {p["prompt"]: 10 * i for i, p in enumerate(SENTIMENT_PAIRS)}
    records = [json.loads(x) for x in (out / "online" / "round-1.jsonl").read_text().splitlines()]
    assert records
    for record in records:
        expected = [c.count("e") - c.count("a") + bonus[record["prompt"]]
                    for c in record["completions"]]  # fmt: skip
        assert record["rewards"] == expected


def test_online_rounds_sample_with_trls_sampling_options_and_data_seed(
    tiny_model_dirs, tmp_path, online_files, monkeypatch
) -> None:
    """OnlineDPOConfig's repetition_penalty, min_p and generation_kwargs (refused before)
    reach every round's model.generate; data_seed orders the rounds' prompts, seed the
    sampling (transformers' split of the two)."""
    from transformers import GenerationMixin

    rewards, prompts = online_files
    configs: list[dict] = []
    generate = GenerationMixin.generate

    def recording(self, *args, **kwargs):
        configs.append(kwargs["generation_config"].to_dict())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", recording)
    rounds: dict[str, list] = {}
    prompts_of = OnlineRounds.round_prompts
    current: list[str] = []

    def recording_prompts(self, round_index):
        indices = prompts_of(self, round_index)
        rounds.setdefault(current[0], []).append(indices)
        return indices

    monkeypatch.setattr(OnlineRounds, "round_prompts", recording_prompts)
    sampling = dict(
        repetition_penalty=1.5, min_p=0.01, generation_kwargs={"no_repeat_ngram_size": 2}
    )
    for name, seeds in {"a": (1, 7), "b": (2, 7), "c": (1, 8)}.items():
        current[:] = [name]
        config = online_config(
            tiny_model_dirs["llama"], prompts, tmp_path / name, rewards, max_steps=4,
            seed=seeds[0], data_seed=seeds[1], **sampling,
        )  # fmt: skip
        train(config, echo=lambda _: None)
    assert configs and all(
        (c["repetition_penalty"], c["min_p"], c["no_repeat_ngram_size"]) == (1.5, 0.01, 2)
        for c in configs
    )
    assert rounds["a"] == rounds["b"] != rounds["c"]
    samples = {name: (tmp_path / name / "online" / "round-1.jsonl").read_text() for name in "ab"}
    assert samples["a"] != samples["b"]  # the same prompts, sampled under another seed


def test_an_implicit_reward_runs_refusals_say_what_a_recipe_writes(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """train's online labeller was told from_run's Python keyword ('give
    ref_model_name_or_path=...', 'give ref_model_name_or_path= and beta='), which a recipe
    has not: it says what to write where, naming implicit_reward_model."""
    from directpo.config import DPOConfig
    from directpo.errors import ConfigError
    from directpo.labellers import load_labeller

    run = tmp_path / "dpo"
    run.mkdir()
    gone = tmp_path / "gone_reference"
    recorded = DPOConfig(model_name_or_path=str(tiny_model_dirs["llama"]), train_file="p.jsonl")
    recorded.save_yaml(run / "config.yaml", ref_model_name_or_path=str(gone))
    rewards, prompts = online_files
    config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards,
                           reward_fn=None, implicit_reward_model=str(run))  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_labeller(config, torch.device("cpu"))
    said = str(refused.value)
    assert str(gone) in said and "ref_model_name_or_path=..." not in said
    assert said.endswith(
        f"(the run's reference, named in its config.yaml; give ref_model_name_or_path: <its "
        f"folder> in {run / 'config.yaml'}, or put it back; implicit_reward_model's run is "
        "scored against it)"
    )
    # a folder no directpo run wrote: what implicit_reward_model takes, not Python's keywords
    config.implicit_reward_model = str(tiny_model_dirs["llama"])
    with pytest.raises(ConfigError) as refused:
        load_labeller(config, torch.device("cpu"))
    assert str(refused.value).endswith(
        "has no config.yaml from a directpo run: implicit_reward_model takes a folder directpo "
        "train wrote (its config.yaml names beta and the reference)"
    )


def test_a_reward_model_without_tokenizer_or_template_is_said_in_one_line(
    tiny_model_dirs, tmp_path
) -> None:
    """A reward model folder saved without its tokenizer (model.save_pretrained alone) was
    "cannot load as a sequence classifier (Couldn't instantiate the backend tokenizer from one
    of: )"; one whose tokenizer has no chat template, given conversation prompts, was
    transformers' error cut inside its URL. Each now says what the folder lacks."""
    from directpo.errors import ModelLoadError
    from directpo.labellers import _reward_model

    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    bare = tmp_path / "bare"
    shutil.copytree(judge, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (bare / name).unlink()
    with pytest.raises(ModelLoadError) as refused:
        _reward_model(str(bare), torch.device("cpu"), None)
    assert str(refused.value) == (
        f"reward_model_name_or_path '{bare}': no tokenizer in it (neither tokenizer.json nor "
        "tokenizer_config.json); save the reward model's tokenizer there "
        "(tokenizer.save_pretrained(DIR)): it reads the prompts and completions"
    )
    (judge / "chat_template.jinja").unlink()
    score = _reward_model(str(judge), torch.device("cpu"), None)
    assert math.isfinite(score(["a text prompt"], [" b"], [{}])[0])  # text needs no template
    with pytest.raises(DirectpoError) as refused:
        score([[{"role": "user", "content": "hi"}]], ["b"], [{}])
    assert str(refused.value) == (
        f"reward_model_name_or_path '{judge}': its tokenizer has no chat template and the "
        "prompts are conversations: add the template it was trained with (chat_template.jinja "
        "in its folder), or give text prompts"
    )


def test_a_reward_models_score_does_not_depend_on_its_batch(tiny_model_dirs, tmp_path) -> None:
    """A reward model whose tokenizer was saved to pad on the left (as many chat tokenizers
    are) was batched so: with learned positions (GPT-2) a short input's positions moved by its
    batch's longest, and its reward changed with the completions scored beside it (0.110
    alone, -0.016 beside a longer one). Inputs are padded on the right, as TRL pads them."""
    from transformers import AutoConfig, GPT2ForSequenceClassification

    from directpo.labellers import _reward_model

    policy = tiny_model_dirs["gpt2"]
    config = AutoConfig.from_pretrained(policy)
    config.num_labels = 1
    torch.manual_seed(0)
    folder = tmp_path / "gpt2_judge"
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(policy / name, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "padding_side": "left"}))
    score = _reward_model(str(folder), torch.device("cpu"), None)
    alone = score(["Hi"], [" there"], [{}])[0]
    longer = " and a much longer completion than the first one, to pad it by many tokens"
    beside = score(["Hi", "Hello my friend"], [" there", longer], [{}, {}])[0]
    assert beside == pytest.approx(alone, abs=1e-5)


def test_eval_generate_is_rewarded_by_the_reward_model_without_a_reward_fn(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """An online run labelled by a reward model alone logged no eval/reward at its
    eval_generate evaluations (only reward_fn gave one): the held-out samples were never
    judged by the reward the run optimises. They are now, by the labeller, and eval/reward is
    the mean of the rewards written beside the samples."""
    rewards, prompts = online_files
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    out = tmp_path / "rm"
    config = online_config(
        tiny_model_dirs["llama"], prompts, out, rewards, reward_fn=None,
        reward_model_name_or_path=str(judge), max_steps=2, eval_generate=2,
        eval_prompts_file=str(prompts), eval_strategy="steps", eval_steps=2,
        metric_for_best_model="eval/reward", load_best_model_at_end=True,
    )  # fmt: skip
    evaluations = [r for r in train(config, echo=lambda _: None).metrics if "eval/kl" in r]
    assert len(evaluations) == 1
    samples = read_jsonl(out / "samples" / "step-2.jsonl")
    assert len(samples) == 2 and all(math.isfinite(s["reward"]) for s in samples)
    mean = sum(s["reward"] for s in samples) / len(samples)
    assert evaluations[0]["eval/reward"] == pytest.approx(mean, rel=1e-6)


def test_a_prompt_the_reward_models_template_refuses_is_said_before_its_weights_load(
    tiny_model_dirs, tmp_path, online_files, capsys, monkeypatch
) -> None:
    """A reward model whose chat template has no system turn (Skywork-Reward-Gemma-2's, Gemma
    2's: 'System role not supported') stopped the run at the first prompt holding a system
    message, after the rounds before it were sampled, as 'reward_model_name_or_path ...:
    scoring failed (TemplateError: System role not supported)', naming no row. Each prompt is
    now rendered with the reward model's template before its weights load, a refused one said
    in one line naming its row (what to do where the template has no system turn)."""
    from test_tokenization import GEMMA2_TEMPLATE

    import directpo.labellers

    rewards, _ = online_files
    judge = tiny_judge(tiny_model_dirs, tmp_path / "judge")
    (judge / "chat_template.jinja").write_text(GEMMA2_TEMPLATE)
    user = {"role": "user", "content": "Tell me about the movie."}
    system = {"role": "system", "content": "Be brief."}
    rows = [{"prompt": [user]}, {"prompt": [system, user]}, {"prompt": [system, user, user]}]
    prompts = write_jsonl(tmp_path / "chats.jsonl", rows * 2)
    out = tmp_path / "out"
    config = online_config(tiny_model_dirs["llama"], None, out, rewards, reward_fn=None,
                           prompt_file=str(prompts),
                           reward_model_name_or_path=str(judge))  # fmt: skip
    config.save_yaml(tmp_path / "c.yaml")
    monkeypatch.setattr(directpo.labellers, "_openrlhf_head", None)  # never reached
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    refused = f"the chat template of reward_model_name_or_path '{judge}' refused the prompt"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"directpo: error: prompt_file {prompts}: line 2: {refused} (System role not supported)"
        "; that template has no system turn (it renders the prompt without its system "
        "message): drop the system messages, or put their text in the first user message (1 "
        f"more row like it: line 5); line 3: {refused} (System role not supported) (1 more row "
        "like it: line 6)"
    )
    assert not (out / "metrics.jsonl").exists()


def test_implicit_reward_models_template_without_a_generation_prompt_is_noted_once(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """score, rank, train's policy, generate and ImplicitReward note a chat template that
    writes no generation prompt; train's implicit_reward_model, whose folder's template labels
    each sample with the assistant's header as its first tokens, said nothing. It is noted
    once, worded for that option (its folder's template, not the run's chat_template option);
    a folder whose template writes the header, or text prompts, say nothing."""
    from tiny import CHATML_TEMPLATE

    from directpo.config import DPOConfig
    from directpo.labellers import load_labeller

    without = CHATML_TEMPLATE.split("{% if add_generation_prompt %}")[0]
    rewards, prompts = online_files
    base = str(tiny_model_dirs["llama"])
    user = {"role": "user", "content": "Tell me about the movie."}
    said = {}
    for name, template, chats in (
        ("without", without, [[user], [user]]),
        ("with", CHATML_TEMPLATE, [[user], [user]]),
        ("text", without, ["The movie was", "It was"]),
    ):
        run = shutil.copytree(tiny_model_dirs["llama"], tmp_path / name)
        (run / "chat_template.jinja").write_text(template)
        recorded = DPOConfig(model_name_or_path=base, train_file="p.jsonl")
        recorded.save_yaml(run / "config.yaml", ref_model_name_or_path=base)
        config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards,
                               reward_fn=None, implicit_reward_model=str(run))  # fmt: skip
        lines: list[str] = []
        load_labeller(config, torch.device("cpu"), (chats, "c.jsonl", None), lines.append)
        said[name] = [line for line in lines if "generation prompt" in line]
    run = tmp_path / "without"
    assert said == {
        "without": [
            f"note: implicit_reward_model '{run}': its chat template writes no generation "
            "prompt (it has no add_generation_prompt branch), so each completion is scored with "
            "the assistant turn's header ('<|im_start|>assistant\\n') as its first tokens: every "
            "reward of a prompt holds the header's log-ratio (the same for each completion: "
            "margins and rankings are unchanged); give a template that writes it in "
            f"{run}'s chat template (its chat_template.jinja)"
        ],
        "with": [],
        "text": [],
    }


def test_a_prompt_the_implicit_reward_runs_template_refuses_names_its_row_and_folder(
    tiny_model_dirs, tmp_path, online_files
) -> None:
    """implicit_reward_model renders the prompts with its own folder's template: one refusing a
    system message (a Gemma 2 run) stopped the run at the labeller's probe as 'score: item 1:
    the chat template refused the row (...)', told to change the chat_template option (the
    policy's, which the implicit reward does not read), and at a later prompt mid-run. Every
    prompt is now rendered with it before training, a refused one named by its row."""
    from test_tokenization import GEMMA2_TEMPLATE

    from directpo.config import DPOConfig
    from directpo.errors import DirectpoError
    from directpo.labellers import load_labeller

    run = shutil.copytree(tiny_model_dirs["llama"], tmp_path / "gemma_run")
    (run / "chat_template.jinja").write_text(GEMMA2_TEMPLATE)
    recorded = DPOConfig(model_name_or_path=str(tiny_model_dirs["llama"]), train_file="p.jsonl")
    recorded.save_yaml(run / "config.yaml", ref_model_name_or_path=str(tiny_model_dirs["llama"]))
    rewards, prompts = online_files
    config = online_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", rewards,
                           reward_fn=None, implicit_reward_model=str(run))  # fmt: skip
    user = {"role": "user", "content": "Tell me about the movie."}
    system = {"role": "system", "content": "Be brief."}
    chats = [[user], [system, user], [user]]
    with pytest.raises(DirectpoError) as refused:
        load_labeller(config, torch.device("cpu"), (chats, "prompt_file c.jsonl", None))
    assert str(refused.value) == (
        f"prompt_file c.jsonl: prompt 2: implicit_reward_model '{run}': the chat template "
        "refused the row (System role not supported); the template has no system turn (it "
        "renders the row without its system message): drop the system messages (or the "
        "system_column option that adds them), put their text in the first user message, or "
        "give a template that takes one in the model folder's chat template (its "
        "chat_template.jinja: score, rank and generate render with the model's own)"
    )
    labeller = load_labeller(config, torch.device("cpu"), ([[user]] * 2, "c.jsonl", None))
    assert len(labeller([[user]], [" fine"], [{}])) == 1
