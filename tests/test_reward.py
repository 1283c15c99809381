from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tiny import SENTIMENT_PAIRS, quiet, save_tiny_model, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from directpo.callers import Caller, Entry, Spelling, called_by
from directpo.cli import main
from directpo.command_options import RankOptions, ScoreOptions
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError
from directpo.eval_samples import evaluate_generations
from directpo.preference_pairs import PreferenceExample
from directpo.reference import FrozenModelReference
from directpo.reward import PYTHON_CALLER, ImplicitReward
from directpo.reward_files import rank_file, score_file
from directpo.tokenization import tokenize_preferences
from directpo.trainer import train


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
    # numpy's numbers, as a sweep over np.linspace gives them (np.float32's were refused)
    import numpy as np

    swept = ImplicitReward(policy, reference, np.float32(0.2), tokenizer, batch_size=np.int64(1))
    assert swept.score(prompts, responses) == pytest.approx(got, abs=1e-4)


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


def test_an_empty_sample_in_a_file_is_scored_and_ranked_as_from_python(
    trained_run, tmp_path
) -> None:
    """A sample that stops at once is an empty completion (directpo generate writes it):
    ImplicitReward.score scored it, but score and rank refused the whole file ("field
    'responses' is empty"). Its reward is β·log-ratio of the end of sequence alone."""
    start, run, _ = trained_run
    conversation = [{"role": "user", "content": "The movie was"}]
    rows = [
        {"prompt": prompt, "responses": ["", " great."]}
        for prompt in ("The movie was", conversation)
    ]
    data = write_jsonl(tmp_path / "cands.jsonl", rows)
    out = tmp_path / "ranked.jsonl"
    rank_file(RankOptions(model_name_or_path=str(run), input=str(data), output=str(out)), quiet)
    ranked = [json.loads(line)["ranked"] for line in out.read_text().splitlines()]
    scorer = ImplicitReward.from_run(str(run))
    for row, got in zip(rows, ranked, strict=True):
        empty = next(c["reward"] for c in got if c["response"] == "")
        assert empty == pytest.approx(scorer.score(row["prompt"], ""), abs=1e-6)
    single = write_jsonl(tmp_path / "single.jsonl", [{"prompt": "The movie was", "response": ""}])
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(single), output=str(out)), quiet)
    tokenizer = AutoTokenizer.from_pretrained(run)
    policy = AutoModelForCausalLM.from_pretrained(run).eval()
    reference = AutoModelForCausalLM.from_pretrained(start).eval()
    p_ids, eos = tokenizer("The movie was").input_ids, [tokenizer.eos_token_id]
    want = 0.2 * (plain_logprob(policy, p_ids, eos) - plain_logprob(reference, p_ids, eos))
    assert json.loads(out.read_text())["reward"] == pytest.approx(want, abs=1e-5)
    assert want != 0


def test_generates_and_trls_columns_score_and_rank_as_they_are(trained_run, tmp_path) -> None:
    """directpo generate writes 'completions', which rank read only as --responses_column
    completions ("missing field 'responses'"); TRL's prompt-completion rows ('completion') were
    refused by score. Each is read when a row lacks the default column, with the same rewards.
    A row with chosen but no rejected (nor response) lacks 'rejected', not 'response'."""
    _, run, _ = trained_run
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}])
    generated = tmp_path / "generated.jsonl"
    assert main(["generate", "--model_name_or_path", str(run), "--input", str(prompts),
                 "--output", str(generated), "--num_return_sequences", "3",
                 "--max_new_tokens", "4"]) == 0  # fmt: skip

    def ranked(column: str | None) -> list[dict]:
        out = tmp_path / "ranked.jsonl"
        given = {} if column is None else {"responses_column": column}
        options = RankOptions(
            model_name_or_path=str(run), input=str(generated), output=str(out), **given
        )
        rank_file(options, quiet)
        return json.loads(out.read_text())["ranked"]

    assert ranked(None) == ranked("completions")
    completions = json.loads(generated.read_text())["completions"]
    rows = [{"prompt": "The movie was", key: c} for c in completions for key in ("response",
            "completion")]  # fmt: skip
    single = write_jsonl(tmp_path / "single.jsonl", rows)
    out = tmp_path / "scored.jsonl"
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(single), output=str(out)), quiet)
    rewards = [json.loads(line)["reward"] for line in out.read_text().splitlines()]
    assert rewards[0::2] == pytest.approx(rewards[1::2], abs=1e-6)
    want = [c["reward"] for c in ranked(None)]
    assert sorted(rewards[0::2], reverse=True) == pytest.approx(want, abs=1e-6)
    for present, missing in (("chosen", "rejected"), ("rejected", "chosen")):
        half = write_jsonl(tmp_path / "half.jsonl", [{"prompt": "a", present: " b"}])
        with pytest.raises(DataError) as err:
            score_file(
                ScoreOptions(model_name_or_path=str(run), input=str(half), output=str(out)), quiet
            )
        assert str(err.value) == f"{half}: line 1: missing field '{missing}'"


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


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_an_output_that_is_not_a_jsonl_file_is_refused_up_front(
    tiny_model_dirs, pairs_file, tmp_path, capsys, monkeypatch, command
) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output was checked")

    monkeypatch.setattr("directpo.reward_models.load_causal_lm", refuse)
    monkeypatch.setattr("directpo.generate_files.load_causal_lm", refuse)
    folder = tmp_path / "out"
    folder.mkdir()
    model = str(tiny_model_dirs["gpt2"])  # not a run: score and rank are given its reference
    reward = ["--ref_model_name_or_path", model, "--beta", "0.1"] if command != "generate" else []
    for output, said in (
        (folder, f"output: {folder} is a folder; give a file name such as {folder}/out.jsonl"),
        (tmp_path / "x.parquet", "must end in .jsonl (got .parquet)"),
        (tmp_path / "x", "must end in .jsonl (got (none))"),
    ):
        code = main(
            [command, "--model_name_or_path", model, *reward, "--input", str(pairs_file),
             "--output", str(output)]
        )  # fmt: skip
        err = capsys.readouterr().err
        # (rank's rows, pairs without candidates, are said with it: one run names both)
        rows = command == "rank"
        assert code == 2 and said in err and err.count("\n") == (4 if rows else 1), err
        assert ("and the data files' rows:" in err) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pairs.jsonl"]  # nothing stray
    assert list(folder.iterdir()) == []


def test_write_jsonl_leaves_nothing_behind_when_it_fails(tmp_path) -> None:
    import datetime

    from directpo.errors import DataError
    from directpo.jsonl import write_jsonl as write

    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(DataError, match=f"cannot write {folder}"):
        write(folder, [{"a": 1}])
    old = tmp_path / "old.jsonl"
    old.write_text('{"kept": true}\n')

    def rows_then_crash():
        yield {"a": 1}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write(old, rows_then_crash())
    with pytest.raises(DataError, match="row 2: a value of type object cannot be written"):
        write(old, [{"a": 1}, {"b": object()}])
    assert old.read_text() == '{"kept": true}\n'  # the earlier file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl", "taken"]
    # values a Parquet file or a datasets folder may hold get their JSON form
    write(old, [{"when": datetime.date(2024, 5, 1), "raw": b"\x00\x01"}])
    assert json.loads(old.read_text()) == {"when": "2024-05-01", "raw": "AAE="}


def test_score_reads_a_datasets_folder_as_training_does(tiny_model_dirs, tmp_path) -> None:
    import datasets

    folder = tmp_path / "pairs-dataset"
    datasets.Dataset.from_list(SENTIMENT_PAIRS).save_to_disk(str(folder))
    model = str(tiny_model_dirs["gpt2"])
    summary = score_file(
        ScoreOptions(
            model_name_or_path=model,
            input=str(folder),
            output=str(tmp_path / "scored.jsonl"),
            ref_model_name_or_path=model,
            beta=0.1,
        ),
        echo=quiet,
    )
    assert summary["pairs"] == len(SENTIMENT_PAIRS)
    rows = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [r["chosen"] for r in rows] == [p["chosen"] for p in SENTIMENT_PAIRS]
    with pytest.raises(Exception, match="input: no such file or folder: "):
        ScoreOptions(
            model_name_or_path=model, input=str(tmp_path / "nope"), output=str(tmp_path / "o.jsonl")
        ).check_environment()


@pytest.mark.parametrize(
    "responses, got",
    [
        (" great.", "a string"),
        ([{"role": "assistant", "content": "hi"}], "one conversation"),
        ({"a": " great."}, "an object"),
    ],
)
def test_rank_needs_a_list_of_candidates(
    tiny_model_dirs, tmp_path, capsys, monkeypatch, responses, got
) -> None:
    monkeypatch.setattr("directpo.reward_models.load_causal_lm", lambda *a, **k: 1 / 0)
    good = {"prompt": "The movie was", "responses": [" great.", " bad."]}
    data = write_jsonl(
        tmp_path / "cands.jsonl", [good, {"prompt": "I was", "responses": responses}]
    )
    code = main(
        ["rank", "--model_name_or_path", str(tiny_model_dirs["gpt2"]), "--input", str(data),
         "--output", str(tmp_path / "ranked.jsonl"), "--beta", "0.1",
         "--ref_model_name_or_path", str(tiny_model_dirs["gpt2"])]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == (
        f"directpo: error: {data}: line 2: field 'responses' must be a list of candidate "
        f"responses, got {got}\n"
    )
    assert not (tmp_path / "ranked.jsonl").exists()


def test_an_output_in_a_new_folder_gets_its_folder(tmp_path) -> None:
    from directpo.command_options import check_output_file
    from directpo.jsonl import StagedJsonl

    target = tmp_path / "new" / "sub" / "scores.jsonl"
    check_output_file(str(target))  # writable: made once the rows passed (StagedJsonl)
    assert not (tmp_path / "new").exists()
    with StagedJsonl(target, "key") as out:
        out.write([{"a": 1}])
        out.commit()
    assert target.read_text() == '{"a": 1}\n'


def test_a_reference_free_reward_is_beta_times_the_mean_log_prob(trained_run, tmp_path) -> None:
    """No reference (a SimPO / ORPO run): β·log π(y|x)/|y|, from Python and from `score`
    (whose rows carry image inputs too: the length is the response's)."""
    _, run, pairs = trained_run
    tokenizer = AutoTokenizer.from_pretrained(run)
    policy = AutoModelForCausalLM.from_pretrained(run).eval()
    got = ImplicitReward(policy, None, 0.5, tokenizer).score(["The movie was"], [" great."])
    p_ids = tokenizer("The movie was").input_ids
    c_ids = tokenizer(" great.").input_ids + [tokenizer.eos_token_id]
    assert got[0] == pytest.approx(0.5 * plain_logprob(policy, p_ids, c_ids) / len(c_ids), abs=1e-5)
    simpo = tmp_path / "simpo"
    simpo.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (simpo / name).write_bytes((run / name).read_bytes())
    DPOConfig(
        model_name_or_path=str(run), output_dir=str(simpo), loss_type=["simpo"], beta=0.5
    ).save_record(simpo / "config.yaml")
    summary = score_file(
        ScoreOptions(
            model_name_or_path=str(simpo), input=str(pairs), output=str(tmp_path / "s.jsonl")
        ),
        echo=quiet,
    )
    assert summary["pairs"] == len(SENTIMENT_PAIRS)
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    scorer = ImplicitReward(policy, None, 0.5, tokenizer)
    want = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    assert [r["chosen_reward"] for r in rows] == pytest.approx(want, abs=1e-6)


def test_score_checks_its_arguments_and_rows_as_training_does(tiny_model_dirs) -> None:
    """Bad arguments and items are one-line directpo errors (not an AssertionError or a
    library's message); a text reply to a conversation is its assistant message, as in a file."""
    from directpo.errors import DataError

    llama = tiny_model_dirs["llama"]
    scorer = ImplicitReward(llama, str(llama), beta=0.1)  # a pathlib.Path is a folder too
    conversation = [{"role": "user", "content": "Hi"}]
    reply = [{"role": "assistant", "content": " Hello!"}]
    assert scorer.score([conversation], [" Hello!"]) == scorer.score([conversation], [reply])
    assert scorer.score([conversation], [""]) == [0.0]  # an empty sample is scored too
    bad = [
        (([conversation], [{"role": "assistant", "content": "x"}]), "score: item 1: field "
         "'response' must be a list of messages, got an object (one message); write it as a "
         'list of messages, [{"role": "assistant", "content": ...}]'),
        ((["Hi", 3], [" a", " b"]), "score: item 2: field 'prompt' must be a string, got a number"),
        ((["Hi"], [reply]), "score: item 1: field 'response' must be a string, got a list"),
    ]  # fmt: skip
    for (prompts, responses), message in bad:
        with pytest.raises(DataError) as err:
            scorer.score(prompts, responses)
        assert str(err.value) == message
    for kwargs, message in [
        ({"beta": "0.1"}, "beta must be a number > 0 (got '0.1')"),
        ({"beta": 0.1, "batch_size": 0}, "batch_size must be an integer >= 1 (got 0)"),
        ({"beta": 0.1, "dtype": "fp16"}, "dtype must be one of float32, bfloat16 (got 'fp16')"),
    ]:
        with pytest.raises(ConfigError) as err:
            ImplicitReward(str(llama), None, **kwargs)
        assert str(err.value) == message
    # every bad number in one error (beta said alone, batch_size and dtype a call later each)
    with pytest.raises(ConfigError) as err:
        ImplicitReward(str(llama), None, beta=0, batch_size=0, dtype="fp16")
    assert str(err.value).splitlines()[1:] == [
        "  beta must be a number > 0 (got 0)",
        "  batch_size must be an integer >= 1 (got 0)",
        "  dtype must be one of float32, bfloat16 (got 'fp16')",
    ]
    with pytest.raises(ConfigError, match="^reference: no such model folder: /no/such/base$"):
        ImplicitReward(str(llama), "/no/such/base", beta=0.1)
    # any sequence of prompts (a pandas Series, a generator); lengths must agree, images too
    import pandas as pd

    got = scorer.score(pd.Series(["Hi", "Yo"]), (r for r in [" a", " b"]))
    assert got == scorer.score(["Hi", "Yo"], [" a", " b"])
    with pytest.raises(ValueError, match="^score needs one response and one image list per "
                       "prompt: got 1 prompt, 1 response, 2 image lists$"):  # fmt: skip
        scorer.score(["Hi"], [" a"], [None, None])
    # one string for a list of prompts was read as a list of its characters: score(["ab", "cd"],
    # "xy") scored "x" and "y" without a word, other lengths said "got 2 prompts, 6 responses"
    for prompts in (["ab", "cd"], (p for p in ["ab", "cd"])):
        with pytest.raises(ValueError, match=r"^score of 2 prompts needs a list of responses, one "
                           r"per prompt \(got one string\)$"):  # fmt: skip
            scorer.score(prompts, "xy")
    with pytest.raises(ValueError, match=r"^score of 1 prompt needs a list of image lists, one "):
        scorer.score(["Hi"], [" a"], "cat.png")
    # one prompt with its candidates (rank's rows) was 'a single prompt needs a single
    # response (or pass lists)', the list to pass said nowhere
    with pytest.raises(ValueError, match=r"^score of one prompt needs one response \(got 2 "
                       r"responses\): give the prompt once for each, score\(\[prompt\] \* 2, "
                       r"responses\)$"):  # fmt: skip
        scorer.score("Hi", (r for r in [" a", " b"]))
    assert scorer.score(["Hi"] * 2, [" a", " b"]) == [scorer.score("Hi", r) for r in [" a", " b"]]


def test_a_response_cut_to_max_length_is_said(tiny_model_dirs, tmp_path) -> None:
    llama = str(tiny_model_dirs["llama"])
    scorer = ImplicitReward(llama, None, beta=0.1, max_length=12)
    with pytest.warns(UserWarning, match=r"^truncated to fit max_length 12: 1 response; "):
        cut = scorer.score(["Hi", "Hi"], [" a b", " word" * 40])
    with pytest.warns(UserWarning, match="1 response;"):
        assert cut[1] == scorer.score("Hi", " word" * 40)  # the kept tokens' reward
    lines: list[str] = []
    long = {"prompt": "Hi", "response": " word" * 1100}  # over the default max_length, 1024
    data = write_jsonl(tmp_path / "rows.jsonl", [long, {"prompt": "Hi", "response": " a"}])
    options = ScoreOptions(
        model_name_or_path=llama, input=str(data), output=str(tmp_path / "out.jsonl"),
        ref_model_name_or_path=llama, beta=0.1,
    )  # fmt: skip
    score_file(options, echo=lines.append)
    assert lines[0] == (
        "truncated to fit max_length 1024: 1 response; their rewards are of the kept tokens only"
    )


def test_rank_returns_each_candidate_as_written(trained_run, tmp_path) -> None:
    """A text candidate of a conversation stays text in ``ranked`` (it came back as a message
    list), a message-list candidate stays a message list."""
    _, run, _ = trained_run
    prompt = [{"role": "user", "content": "The movie was"}]
    candidates = [" great.", [{"role": "assistant", "content": " terrible."}]]
    data = write_jsonl(tmp_path / "cands.jsonl", [{"prompt": prompt, "responses": candidates}])
    out = tmp_path / "ranked.jsonl"
    rank_file(RankOptions(model_name_or_path=str(run), input=str(data), output=str(out)), quiet)
    ranked = json.loads(out.read_text())["ranked"]
    assert sorted(map(json.dumps, (c["response"] for c in ranked))) == sorted(
        map(json.dumps, candidates)
    )


def test_models_given_as_objects_score_in_eval_mode_against_the_right_reference(
    tiny_model_dirs,
) -> None:
    """A model in train mode (fresh from training) scores with dropout off and is left in its
    mode; a PEFT policy against the base object get_peft_model changed in place is scored
    with its adapters off (it scored 0: that 'base' held the adapters too); a training run's
    reference (``train(...).reference``) is taken as its model."""
    from peft import LoraConfig, get_peft_model

    from directpo.reference import AdapterDisabledReference

    llama = str(tiny_model_dirs["llama"])
    tokenizer = AutoTokenizer.from_pretrained(llama)
    noisy = AutoModelForCausalLM.from_pretrained(llama, attention_dropout=0.5).train()
    scorer = ImplicitReward(noisy, llama, 0.1, tokenizer)
    rewards = [scorer.score("The movie was", " great.") for _ in range(3)]
    assert rewards == [rewards[0]] * 3 and noisy.training
    assert rewards[0] == ImplicitReward(noisy.eval(), llama, 0.1, tokenizer).score(
        "The movie was", " great."
    )

    base = AutoModelForCausalLM.from_pretrained(llama)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    policy = get_peft_model(base, lora).train()
    want = ImplicitReward(policy, llama, 0.1, tokenizer).score(["The movie was"], [" great."])
    assert want[0] != 0
    separate = FrozenModelReference(AutoModelForCausalLM.from_pretrained(llama))
    for reference in (base, AdapterDisabledReference(policy), separate):
        got = ImplicitReward(policy, reference, 0.1, tokenizer).score(
            ["The movie was"], [" great."]
        )
        assert got == pytest.approx(want, abs=1e-6)


def test_the_policy_object_as_its_own_reference_is_refused(tiny_model_dirs) -> None:
    """``ImplicitReward(policy, policy, beta)`` scored every response 0 without a word (a PEFT
    policy too: its adapters stayed on for the reference's pass), as TRL's DPOTrainer refuses
    ``ref_model=model``; it is refused, naming what to give (a PEFT policy's base scores as
    its run's reference does)."""
    from peft import LoraConfig, get_peft_model

    llama = str(tiny_model_dirs["llama"])
    tokenizer = AutoTokenizer.from_pretrained(llama)
    plain = AutoModelForCausalLM.from_pretrained(llama)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(llama), lora)
    for model, reference in (
        (plain, plain),
        (policy, policy),
        (plain, FrozenModelReference(plain)),
    ):
        with pytest.raises(ConfigError, match=r"^reference is the policy object itself, so every"):
            ImplicitReward(model, reference, 0.1, tokenizer)
    want = ImplicitReward(policy, llama, 0.1, tokenizer).score("The movie was", " great.")
    base = ImplicitReward(policy, policy.get_base_model(), 0.1, tokenizer)
    assert want != 0 and base.score("The movie was", " great.") == pytest.approx(want, abs=1e-6)


def test_an_adapter_that_rewrote_its_base_scores_against_the_base_as_stored(
    tiny_model_dirs, tmp_path
) -> None:
    """A PiSSA adapter's base with the adapter off is W_res, not the base: a fresh adapter (the
    base itself) scored a nonzero reward against its base, which ran as the adapters off."""
    from peft import LoraConfig, get_peft_model

    llama = str(tiny_model_dirs["llama"])
    pissa = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights="pissa")
    get_peft_model(AutoModelForCausalLM.from_pretrained(llama), pissa).save_pretrained(
        tmp_path / "pissa"
    )
    scorer = ImplicitReward(
        str(tmp_path / "pissa"), llama, 1.0, AutoTokenizer.from_pretrained(llama)
    )
    assert scorer.score(["The movie was"], [" great."]) == pytest.approx([0.0], abs=1e-5)


def test_a_reference_folder_loads_beside_a_policy_object(tiny_model_dirs, monkeypatch) -> None:
    """A policy object with a reference folder: the reference goes where the policy is. It was
    loaded onto CUDA whenever a GPU was present, beside a policy the user kept on the CPU (a
    device mismatch at the first score); here CUDA is made to look present."""
    llama = str(tiny_model_dirs["llama"])
    tokenizer = AutoTokenizer.from_pretrained(llama)
    policy = AutoModelForCausalLM.from_pretrained(llama)
    want = ImplicitReward(policy, llama, 0.1, tokenizer).score("The movie was", " great.")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    scorer = ImplicitReward(policy, llama, 0.1, tokenizer)
    assert next(scorer.reference.parameters()).device.type == "cpu"
    assert scorer.score("The movie was", " great.") == want


def test_a_checkpoint_scores_with_its_runs_beta_and_reference(tiny_model_dirs, tmp_path) -> None:
    """A checkpoint folder has no config.yaml of its own: its run's (the folder above) gives β
    and the reference (it was refused: 'give --ref_model_name_or_path and --beta')."""
    llama = tiny_model_dirs["llama"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    run = tmp_path / "run"
    train(tiny_config(llama, pairs, run, max_steps=1, save_steps=1, beta=0.3), echo=quiet)
    checkpoint = str(run / "checkpoint-1")
    scorer = ImplicitReward.from_run(checkpoint)
    assert scorer.beta == 0.3
    want = ImplicitReward(checkpoint, str(llama), 0.3).score(["The movie was"], [" great."])
    assert scorer.score(["The movie was"], [" great."]) == want and want[0] != 0


def test_a_tr_dpo_run_says_which_reference_its_rewards_are_against(
    tiny_model_dirs, tmp_path
) -> None:
    """sync_ref_model moves the reference during training: the final folder is scored against
    the moved reference it holds in reference/, a checkpoint against its reference.safetensors
    (test_sync.py), a folder without either against the starting model; each says so (it was
    silent)."""
    llama = tiny_model_dirs["llama"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    run = tmp_path / "run"
    config = tiny_config(llama, pairs, run, max_steps=2, sync_ref_model=True,
                         ref_model_sync_steps=1, save_steps=1)  # fmt: skip
    train(config, echo=quiet)
    with pytest.warns(UserWarning, match=f"sync_ref_model .*moved reference {run}/reference"):
        ImplicitReward.from_run(str(run))
    checkpoint = run / "checkpoint-1"
    with pytest.warns(UserWarning, match=f"moved reference {checkpoint}/reference.safetensors"):
        ImplicitReward.from_run(str(checkpoint))
    (checkpoint / "reference.safetensors").unlink()  # (as one written by an older directpo)
    with pytest.warns(UserWarning, match=f"sync_ref_model .*starting model {llama}$"):
        scorer = ImplicitReward.from_run(str(checkpoint))
    lines: list[str] = []
    ImplicitReward.from_run(str(checkpoint), echo=lines.append)
    assert len(lines) == 1 and "TR-DPO" in lines[0]
    assert scorer.score("The movie was", " great.") != 0


def test_a_run_scores_conversations_rendered_with_its_chat_template_kwargs(
    tiny_model_dirs, tmp_path
) -> None:
    """A run trained with chat_template_kwargs (enable_thinking: false) scores with them: its
    prompts were rendered after the template's default (thinking) generation prompt."""
    from test_eval_generate import THINKING_TEMPLATE

    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "chosen": p["chosen"],
             "rejected": p["rejected"]} for p in SENTIMENT_PAIRS]  # fmt: skip
    run = tmp_path / "run"
    train(tiny_config(tiny_model_dirs["gpt2"], write_jsonl(tmp_path / "p.jsonl", rows), run,
                      max_steps=1, chat_template=THINKING_TEMPLATE,
                      chat_template_kwargs={"enable_thinking": False}), echo=quiet)  # fmt: skip
    scorer = ImplicitReward.from_run(str(run))
    ids = scorer.encoder.prompt_ids(rows[0]["prompt"])
    assert scorer.tokenizer.decode(ids).endswith("<|im_start|>assistant\n<think></think>")
    given = ImplicitReward(str(run), str(tiny_model_dirs["gpt2"]), 0.1)  # none given: none used
    assert not given.tokenizer.decode(given.encoder.prompt_ids(rows[0]["prompt"])).endswith(
        "</think>"
    )


@pytest.mark.parametrize("lora_r", [0, 4])
def test_a_run_whose_model_is_in_a_subfolder_scores_as_one_in_a_plain_folder(
    tiny_model_dirs, tmp_path, lora_r
) -> None:
    """model_init_kwargs' subfolder (or revision, ...) is where training found the model: score
    and generate found the reference (and a LoRA run's base) at the folder's root and refused
    ('... is not a model folder'). The layout must not change a reward."""
    import shutil

    llama = tiny_model_dirs["llama"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    shutil.copytree(llama, tmp_path / "nested" / "policy")
    runs = {}
    for name, model, kwargs in (
        ("plain", llama, None),
        ("nested", tmp_path / "nested", {"subfolder": "policy"}),
    ):
        runs[name] = tmp_path / f"run-{name}"
        config = tiny_config(model, pairs, runs[name], lora_r=lora_r, model_init_kwargs=kwargs)
        train(config, echo=quiet)
        if lora_r:  # training continues the adapter: the subfolder is its base's (it was
            # refused: 'no such model folder: run/policy (its subfolder option)')
            runs[f"{name}-continued"] = tmp_path / f"run-{name}-continued"
            config = tiny_config(runs[name], pairs, runs[f"{name}-continued"],
                                 model_init_kwargs=kwargs)  # fmt: skip
            train(config, echo=quiet)
    prompts, responses = ["The movie was", "I love this film,"], [" great.", " a dull waste."]
    for plain in [name for name in runs if "plain" in name]:
        want = ImplicitReward.from_run(str(runs[plain])).score(prompts, responses)
        nested = runs[plain.replace("plain", "nested")]
        assert ImplicitReward.from_run(str(nested)).score(prompts, responses) == want
        assert any(reward != 0 for reward in want)
    prompt_file = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}])
    out = tmp_path / "samples.jsonl"
    args = ["generate", "--model_name_or_path", str(runs["nested"]), "--input", str(prompt_file)]
    assert main([*args, "--output", str(out), "--max_new_tokens", "2"]) == 0


def test_a_run_trained_from_a_relative_folder_scores_from_any_folder(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """config.yaml and a LoRA run's adapter_config.json recorded the model folder as given,
    relative to where training ran: score (and peft's AutoPeftModelForCausalLM) run from any
    other folder looked for a hub model 'base' ("couldn't connect to huggingface.co")."""
    import shutil

    from peft import AutoPeftModelForCausalLM

    shutil.copytree(tiny_model_dirs["llama"], tmp_path / "project" / "base")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    monkeypatch.chdir(tmp_path / "project")
    prompts, responses = ["The movie was", "I love this film,"], [" great.", " a dull waste."]
    runs, here = {"full": tmp_path / "full", "lora": tmp_path / "lora"}, {}
    for name, run in runs.items():
        config = tiny_config(Path("base"), pairs, run, lora_r=4 if name == "lora" else 0)
        train(config, echo=quiet)
        here[name] = ImplicitReward.from_run(str(run)).score(prompts, responses)
    monkeypatch.chdir(tmp_path)
    for name, run in runs.items():
        assert ImplicitReward.from_run(str(run)).score(prompts, responses) == here[name]
    AutoPeftModelForCausalLM.from_pretrained(runs["lora"])  # its base, found from here too
    shutil.rmtree(tmp_path / "project" / "base")  # deleted since: one line saying so
    base = tmp_path / "project" / "base"
    with pytest.raises(ConfigError, match=f"folder: {base} \\(the run's reference, named in"):
        ImplicitReward.from_run(str(runs["full"]))
    # from Python, the keyword to give (it was score's --ref_model_name_or_path); score's flag
    score = Caller(Spelling.FLAGS, Entry.FOLDER)
    for who, give in ((None, "ref_model_name_or_path=..."), (score, "--ref_model_name_or_path")):
        with pytest.raises(ConfigError) as refused, called_by(who or PYTHON_CALLER):
            ImplicitReward.from_run(str(runs["full"]))
        assert str(refused.value).endswith(f"named in its config.yaml; give {give})")


def test_a_merged_runs_adapter_folder_scores_as_its_merged_model(tiny_model_dirs, tmp_path):
    """merge_lora writes the adapter beside the merged model, in output_dir/adapter: scoring
    it asked for --ref_model_name_or_path and --beta, as if it were no run's."""
    import shutil

    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    run = tmp_path / "run"
    config = tiny_config(tiny_model_dirs["llama"], pairs, run, lora_r=4, merge_lora=True, beta=0.3)
    result = train(config, echo=quiet)
    prompts, responses = ["The movie was", "I love this film,"], [" great.", " a dull waste."]
    adapter = ImplicitReward.from_run(str(run / "adapter"))
    assert adapter.beta == 0.3 and adapter.adapters_off  # its reference: its base
    want = ImplicitReward.from_run(str(run)).score(prompts, responses)
    assert adapter.score(prompts, responses) == pytest.approx(want, abs=1e-5)
    # in memory: the merge consumed the base the reference ran on; it is loaded again (it was
    # None, which ImplicitReward reads as a reference-free run: another reward, silently)
    in_memory = ImplicitReward(result.policy, result.reference, beta=0.3)
    assert in_memory.score(prompts, responses) == pytest.approx(want, abs=1e-5)
    assert any(abs(reward) > 1e-4 for reward in want)
    # an adapter folder beside another tool's config.yaml is no run's: scored as given
    other = shutil.copytree(run / "adapter", tmp_path / "other" / "adapter")
    (other.parent / "config.yaml").write_text("base_model: x\n")
    given = ImplicitReward.from_run(str(other), str(tiny_model_dirs["llama"]), beta=0.3)
    assert given.score(prompts, responses) == pytest.approx(want, abs=1e-5)


def test_a_model_whose_code_ships_in_its_folder_scores_and_generates_when_trusted(
    tiny_model_dirs, tmp_path, capsys
) -> None:
    """A run trained with trust_remote_code writes the architecture's code beside its weights:
    score, rank and generate had no option to run it (a dead end naming transformers' argument)."""
    import shutil

    custom = shutil.copytree(tiny_model_dirs["llama"], tmp_path / "custom")
    (custom / "configuration_tiny.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass TinyConfig(LlamaConfig):\n"
        "    model_type = 'tiny_custom'\n"
    )
    (custom / "modeling_tiny.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_tiny import TinyConfig"
        "\n\n\nclass TinyForCausalLM(LlamaForCausalLM):\n    config_class = TinyConfig\n"
    )
    fields = json.loads((custom / "config.json").read_text())
    fields.update(model_type="tiny_custom", architectures=["TinyForCausalLM"], auto_map={
        "AutoConfig": "configuration_tiny.TinyConfig",
        "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
    })  # fmt: skip
    (custom / "config.json").write_text(json.dumps(fields))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    run = tmp_path / "run"
    train(tiny_config(custom, pairs, run, trust_remote_code=True), echo=quiet)
    score = ["score", "--model_name_or_path", str(run), "--input", str(pairs)]
    score += ["--output", str(tmp_path / "scored.jsonl")]
    assert main(score) == 2
    # (a command line's user is told the flag: it was told the recipe's key)
    assert "allow its code: give --trust_remote_code\n" in capsys.readouterr().err
    assert main([*score, "--trust_remote_code", "true"]) == 0
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}])
    generate = ["generate", "--model_name_or_path", str(run), "--input", str(prompts)]
    generate += ["--output", str(tmp_path / "samples.jsonl"), "--max_new_tokens", "2"]
    assert main([*generate, "--trust_remote_code", "true"]) == 0


def test_score_pairs_renders_each_rows_tools_as_training_did(tiny_model_dirs) -> None:
    """score_pairs scored a row with tools as if it had none (a prompt training never saw)."""
    from test_tokenization import TOOLS_TEMPLATE, WEATHER_ROW, WEATHER_TOOL

    from directpo.data import load_preferences

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["gpt2"])
    tokenizer.chat_template = TOOLS_TEMPLATE
    tool = WEATHER_TOOL
    row = WEATHER_ROW
    data = load_preferences([{**row, "tools": [tool]}, row])
    scorer = ImplicitReward(model, None, 1.0, tokenizer)  # reference-free: β·log π / |y|
    with_tools, without = scorer.score_pairs(data.examples)
    pairs = tokenize_preferences(data, tokenizer, 1024).pairs
    for (chosen, rejected), pair in zip((with_tools, without), pairs, strict=True):
        for reward, ids in ((chosen, pair.chosen_ids), (rejected, pair.rejected_ids)):
            want = plain_logprob(model, pair.prompt_ids, ids) / len(ids)
            assert reward == pytest.approx(want, abs=1e-4)
    assert with_tools != without


def test_score_rank_and_prompt_rows_render_their_tools_as_pair_rows_do(tmp_path) -> None:
    """A row's tools / chat_template_kwargs rendered a pair row's prompt (score on pairs), but
    a prompt/response row (score), a rank row and a prompt row (generate, eval_prompts_file,
    prompt_file) with the same columns were rendered without them: another prompt, silently."""
    from test_tokenization import TOOLS_TEMPLATE, WEATHER_ROW, WEATHER_TOOL

    from directpo.data import ImagePrompt
    from directpo.errors import DataError
    from directpo.prompts import load_prompt_rows, load_prompts

    policy = save_tiny_model("gpt2", tmp_path / "policy", seed=1)
    reference = save_tiny_model("gpt2", tmp_path / "reference", seed=2)
    (policy / "chat_template.jinja").write_text(TOOLS_TEMPLATE)
    tool = WEATHER_TOOL
    chat, chosen, rejected = (WEATHER_ROW[k] for k in ("prompt", "chosen", "rejected"))
    rows = [
        {"prompt": chat, "chosen": chosen, "rejected": rejected, "tools": [tool]},
        {"prompt": chat, "response": chosen, "tools": [tool]},
        {"prompt": chat, "response": chosen},
    ]
    common = dict(model_name_or_path=str(policy), ref_model_name_or_path=str(reference), beta=1.0)
    scored = tmp_path / "scored.jsonl"
    options = ScoreOptions(
        input=str(write_jsonl(tmp_path / "s.jsonl", rows)), output=str(scored), **common
    )
    score_file(options, echo=quiet)
    pair, single, bare = map(json.loads, scored.read_text().splitlines())
    assert single["reward"] == pytest.approx(pair["chosen_reward"], abs=1e-6)
    assert bare["reward"] != pytest.approx(pair["chosen_reward"], abs=1e-6)
    ranks = [{"prompt": chat, "responses": [chosen, rejected], "tools": [tool]}]
    rank_file(RankOptions(input=str(write_jsonl(tmp_path / "r.jsonl", ranks)),
                          output=str(tmp_path / "ranked.jsonl"), **common), echo=quiet)  # fmt: skip
    ranked = json.loads((tmp_path / "ranked.jsonl").read_text())["ranked"]
    want = sorted([pair["chosen_reward"], pair["rejected_reward"]], reverse=True)
    assert [c["reward"] for c in ranked] == pytest.approx(want, abs=1e-6)
    prompt_rows = [{"prompt": chat, "tools": json.dumps([tool])}, {"prompt": chat}]
    for load in (load_prompts, load_prompt_rows):
        (with_tools, plain), _ = load(prompt_rows)
        assert with_tools == ImagePrompt(chat, (), {"tools": [tool]}) and plain == chat
    with pytest.raises(DataError, match="row 1: field 'tools' needs conversational rows"):
        load_prompts([{"prompt": "Weather?", "tools": [tool]}])


def test_one_image_prompt_scores_as_a_list_of_one(tiny_model_dirs) -> None:
    """score(prompt, response) takes one ImagePrompt (a row's prompt with its tools) as it takes
    one text or conversation; it was iterated as a list of prompts (TypeError)."""
    from test_tokenization import TOOLS_TEMPLATE, WEATHER_ROW, WEATHER_TOOL

    from directpo.data import ImagePrompt

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["gpt2"])
    tokenizer.chat_template = TOOLS_TEMPLATE
    tool = WEATHER_TOOL
    prompt = ImagePrompt(WEATHER_ROW["prompt"], (), {"tools": [tool]})
    scorer = ImplicitReward(model, None, 1.0, tokenizer)
    assert scorer.score(prompt, "Sunny.") == scorer.score([prompt], ["Sunny."])[0]


def test_a_pairs_rows_text_prompt_over_whole_conversations_is_their_shared_turns() -> None:
    """HuggingFaceH4/ultrafeedback_binarized as a prompt file (generate, prompt_file,
    eval_prompts_file): its prompt column is a bare text, its chosen / rejected whole
    conversations. Training reads the prompt as their shared turns (with the system turn); the
    prompt files read the bare text, which a chat model then got without its template."""
    from directpo.errors import DataError
    from directpo.prompts import load_prompt_rows, load_prompts

    system = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "How do I bake bread?"}
    row = {
        "prompt": "How do I bake bread?",
        "chosen": [system, user, {"role": "assistant", "content": "Knead, rise, bake."}],
        "rejected": [system, user, {"role": "assistant", "content": "Buy some."}],
        "score_chosen": 8.0,
    }
    for load in (load_prompts, load_prompt_rows):
        prompts, others = load([row])
        assert prompts == [[system, user]] and others[0]["score_chosen"] == 8.0
    assert load_prompts([{"prompt": "Bread?"}])[0] == ["Bread?"]  # a prompt file as before
    with pytest.raises(DataError, match="row 1: .*no user message they share is that text"):
        load_prompts([{**row, "prompt": "Something else"}])


def test_a_precomputed_runs_result_scores_against_its_reference(tiny_model_dirs, tmp_path):
    """precompute_ref_log_probs lets the reference model go after its pass: the result's
    reference (the cache, which scores no new response) is loaded again on first use."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    run = tmp_path / "run"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs, run, precompute_ref_log_probs=True, learning_rate=1e-2
    )
    result = train(config, echo=quiet)
    prompts, responses = ["The movie was"], [" great."]
    want = ImplicitReward.from_run(str(run)).score(prompts, responses)
    got = ImplicitReward(result.policy, result.reference, config.beta).score(prompts, responses)
    assert got == pytest.approx(want, abs=1e-5) and abs(want[0]) > 1e-4


def test_a_results_reloaded_reference_scores_as_the_kept_one(tiny_model_dirs, tmp_path) -> None:
    """A reference the run let go of (a merge, a precomputed table) is loaded again as the run
    loaded it: in the run's compute dtype (a bf16-saved model trained in float32 came back in
    bf16, rewards 50% off the kept reference's) and, for a LoRA run, as the policy with its
    adapters off (not a second copy of the base)."""
    folder = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]).to(
        torch.bfloat16
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dirs["llama"]).save_pretrained(folder)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    prompts, responses = ["The movie was", "The movie was"], [" great.", " a dull waste."]

    def rewards(**options) -> tuple[list[float], object]:
        out = tmp_path / "-".join(options) if options else tmp_path / "plain"
        result = train(tiny_config(folder, pairs, out, **options), echo=quiet)
        scorer = ImplicitReward(result.policy, result.reference, beta=0.1)
        return scorer.score(prompts, responses), result

    kept, result = rewards()
    assert next(result.reference.model.parameters()).dtype == torch.float32
    assert any(abs(reward) > 1e-4 for reward in kept)
    assert rewards(precompute_ref_log_probs=True)[0] == kept
    lora, _ = rewards(lora_r=4)
    assert rewards(lora_r=4, merge_lora=True)[0] == pytest.approx(lora, abs=1e-6)
    lora_precomputed, result = rewards(lora_r=4, precompute_ref_log_probs=True)
    assert lora_precomputed == lora and result.reference.model is result.policy


def test_a_continued_adapters_returned_reference_scores_in_memory(
    tiny_model_dirs, tmp_path
) -> None:
    """Continuing an adapter, train()'s reference is the adapter's start, the "ref" adapter on
    the policy: ImplicitReward(result.policy, result.reference, beta) refused it ("pass its
    reference folder"), though the README scores what train() returned that way."""
    llama = tiny_model_dirs["llama"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    common = dict(max_steps=1, learning_rate=5e-2)
    train(tiny_config(llama, pairs, tmp_path / "first", lora_r=4, **common), echo=quiet)
    result = train(tiny_config(tmp_path / "first", pairs, tmp_path / "on", **common), echo=quiet)
    trainable = [n for n, p in result.policy.named_parameters() if p.requires_grad]
    in_memory = ImplicitReward(result.policy, result.reference, beta=0.1)
    rewards = in_memory.score(["The movie was", "I love this film,"], [" great.", " dull."])
    on_disk = ImplicitReward.from_run(str(tmp_path / "on"), beta=0.1)
    assert rewards == pytest.approx(
        on_disk.score(["The movie was", "I love this film,"], [" great.", " dull."]), abs=1e-6
    )
    assert max(abs(r) for r in rewards) > 1e-4  # the policy moved from its start
    # the policy is as it was: its own adapter active, the same weights trainable
    assert result.policy.active_adapter == "default"
    assert [n for n, p in result.policy.named_parameters() if p.requires_grad] == trainable


def test_implicit_rewards_warnings_point_at_the_users_own_line(tiny_model_dirs, tmp_path) -> None:
    """ImplicitReward's older warnings had a fixed stacklevel (2 or 3): through score's call of
    itself for one prompt, score_pairs and the entry_point wrapper, or from_run's decorator,
    they named directpo's or contextlib's file, not the user's. Each names the user's line."""
    import warnings

    llama = str(tiny_model_dirs["llama"])
    model = shutil.copytree(tiny_model_dirs["llama"], tmp_path / "model")
    (model / "config.yaml").write_text("base_model: llama\n")  # another tool's: not used
    scorer = ImplicitReward(llama, None, beta=0.1, max_length=12)
    long = " word" * 40
    pair = PreferenceExample("Hi", long, " a", "")
    calls = {
        "score": lambda: scorer.score(["Hi", "Hi"], [" a", long]),
        "score one": lambda: scorer.score("Hi", long),
        "score_pairs": lambda: scorer.score_pairs([pair]),
        "from_run": lambda: ImplicitReward.from_run(str(model), llama, 0.1),
    }
    places = {}
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        places[name] = sorted({(Path(w.filename).name, str(w.message)[:16]) for w in caught})
    assert places == {
        "score": [("test_reward.py", "truncated to fit")],
        "score one": [("test_reward.py", "truncated to fit")],
        "score_pairs": [("test_reward.py", "truncated to fit")],
        "from_run": [("test_reward.py", "config.yaml not ")],
    }


def test_a_model_folder_with_another_tools_config_yaml_scores_when_beta_and_reference_are_given(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """A model folder holding another tool's config.yaml could not be scored at all: the file
    was read as a directpo run's, and its first unknown key was the error even with
    --ref_model_name_or_path and --beta given. Now it is said, in one line, not to be used;
    without them the error says what to give. generate said nothing of it."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], model)
    (model / "config.yaml").write_text("base_model: llama\nsequence_len: 64\n")
    out = str(tmp_path / "scored.jsonl")
    args = ["score", "--model_name_or_path", str(model), "--input", str(pairs_file)]
    given = ["--ref_model_name_or_path", str(tiny_model_dirs["llama"]), "--beta", "0.1"]
    assert main([*args, *given, "--output", out]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith(f"config.yaml not used (not a directpo run's): {model}/config.yaml")
    rows = [json.loads(line) for line in Path(out).read_text().splitlines()]
    assert all(row["margin"] == 0 for row in rows)  # the same model as policy and reference
    assert main([*args, "--output", str(tmp_path / "other.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(
        "(not a directpo run's config.yaml? give --ref_model_name_or_path and --beta)\n"
    )
    generate = ["generate", "--model_name_or_path", str(model), "--input", str(pairs_file),
                "--max_new_tokens", "2", "--output", str(tmp_path / "samples.jsonl")]  # fmt: skip
    assert main(generate) == 0
    assert "config.yaml not used (not a directpo run's)" in capsys.readouterr().out


def test_from_run_of_a_plain_folder_names_its_own_keywords(tiny_model_dirs) -> None:
    """ImplicitReward.from_run from Python asked for the commands' flags ('give
    --ref_model_name_or_path and --beta'); it names its keywords, only the missing ones."""
    model = str(tiny_model_dirs["llama"])
    asked = r"directpo run: pass ref_model_name_or_path=\.\.\. and beta=\.\.\.$"
    with pytest.raises(ConfigError, match=asked):  # (was 'give ref_model_name_or_path= and beta=')
        ImplicitReward.from_run(model)
    with pytest.raises(ConfigError, match=r"directpo run: pass ref_model_name_or_path=\.\.\.$"):
        ImplicitReward.from_run(model, beta=0.1)


@pytest.mark.parametrize("continued", [False, True])
def test_a_bf16_lora_results_in_memory_rewards_equal_its_folders(
    tiny_model_dirs, tmp_path, continued
) -> None:
    """The README's ImplicitReward(result.policy, result.reference, beta) of a bf16 LoRA run:
    the policy keeps its bf16 base, so its forward rounded (rewards up to 20% off `directpo
    score` of the saved folder, which loads in float32). The scoring now computes in float32
    (dtype) and puts the bf16 weights back after: the folder's rewards, a continued adapter's
    (its start the reference) too, and no lasting float32 copy."""
    base = tmp_path / "bf16"  # a base stored in bf16, as most are: the run's base is it exactly
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"], dtype=torch.bfloat16)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    if continued:  # an adapter trained first, continued in bf16 (no held-out pairs)
        train(tiny_config(base, pairs, tmp_path / "first", lora_r=4), echo=quiet)
        base = tmp_path / "first"
    options = {"dtype": "bfloat16", "learning_rate": 1e-2, "max_steps": 2}
    options |= {} if continued else {"lora_r": 4}
    out = tmp_path / "run"
    result = train(tiny_config(base, pairs, out, **options), echo=quiet)
    prompts = ["The movie was", "I love this film,", "The movie was"]
    responses = [" great.", " a dull waste.", " a dull waste."]
    want = ImplicitReward.from_run(str(out)).score(prompts, responses)
    before = {name: p.dtype for name, p in result.policy.named_parameters()}
    got = ImplicitReward(result.policy, result.reference, beta=0.1).score(prompts, responses)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert max(map(abs, want)) > 1e-3  # (trained: rewards away from 0)
    assert {name: p.dtype for name, p in result.policy.named_parameters()} == before
    assert torch.bfloat16 in before.values()


def test_a_bf16_model_that_cannot_run_float32_scores_as_it_is(tiny_model_dirs) -> None:
    """Scoring upcasts a bf16-held model to float32, except where float32 cannot run:
    FlashAttention (flash_attention_2/3, the hub's flash-attn kernels) and quantized bases;
    there it scores in bf16 as before, its weights untouched."""
    import contextlib

    from directpo.reward_models import runs_in_float32

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"], dtype=torch.bfloat16)
    assert runs_in_float32(model)
    for attention in ("flash_attention_2", "kernels-community/flash-attn3"):
        model.config._attn_implementation = attention
        assert not runs_in_float32(model)
    model.config._attn_implementation = "eager"
    model.is_quantized = True
    assert not runs_in_float32(model)
    scorer = ImplicitReward(model, None, beta=0.1)
    assert isinstance(scorer._computing_in_dtype(), contextlib.nullcontext)


def test_from_run_names_a_recipes_option_where_train_calls_it(tiny_model_dirs) -> None:
    """Each caller its own wording: Python's keywords, score's flags, train's recipe option."""
    model = str(tiny_model_dirs["llama"])
    for who, give in (
        (PYTHON_CALLER, "pass ref_model_name_or_path=... and beta=..."),
        (Caller(Spelling.FLAGS, Entry.FOLDER), "give --ref_model_name_or_path and --beta"),
        (Caller(Spelling.RECIPE, Entry.TRAIN), "implicit_reward_model takes a folder directpo"),
    ):
        with pytest.raises(ConfigError) as refused, called_by(who):
            ImplicitReward.from_run(model)
        assert give in str(refused.value)


def test_implicit_reward_notes_a_template_without_a_generation_prompt_once(
    tiny_model_dirs, recwarn
) -> None:
    """score, rank, train and generate note a chat template that writes no generation prompt
    (each completion scored with the assistant's header first); ImplicitReward from Python
    said nothing. It warns once, at the first conversation, with its own fix (its tokenizer
    argument); a template that writes the header, or text prompts, say nothing."""
    from tiny import CHATML_TEMPLATE

    folder = str(tiny_model_dirs["gpt2"])
    chat = [{"role": "user", "content": "Hi"}]
    replies = [[{"role": "assistant", "content": "Good day"}], "Go away"]
    pair = PreferenceExample(chat, replies[0], [{"role": "assistant", "content": "No"}], "")
    without = CHATML_TEMPLATE.split("{% if add_generation_prompt %}")[0]
    notes = {}
    for name, template in (("without", without), ("with", CHATML_TEMPLATE)):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.chat_template = template
        scorer = ImplicitReward(folder, folder, 0.1, tokenizer)
        recwarn.clear()
        scorer.score(["The movie was"], [" great"])  # (text: no header to note)
        scorer.score([chat, chat], replies)
        scorer.score(chat, replies[1])
        scorer.score_pairs([pair])
        notes[name] = [str(w.message) for w in recwarn if "generation prompt" in str(w.message)]
        assert all(w.filename == __file__ for w in recwarn if "generation prompt" in str(w.message))
        fresh = ImplicitReward(folder, folder, 0.1, tokenizer)
        recwarn.clear()
        fresh.score_pairs([pair])
        notes[name] += [str(w.message) for w in recwarn if "generation prompt" in str(w.message)]
    note = (
        "note: the chat template writes no generation prompt (it has no add_generation_prompt "
        "branch), so each completion is scored with the assistant turn's header "
        "('<|im_start|>assistant\\n') as its first tokens: every reward of a prompt holds the "
        "header's log-ratio (the same for each completion: margins and rankings are "
        "unchanged); give a template that writes it in the tokenizer's chat template "
        "(ImplicitReward's tokenizer argument, or the model folder's chat_template.jinja)"
    )
    assert notes == {"without": [note, note], "with": []}


@pytest.mark.filterwarnings("ignore:.is_gradient_checkpointing. is deprecated:FutureWarning")
def test_loading_an_adapter_to_score_leaves_the_callers_generators_alone(
    tiny_model_dirs, tmp_path
) -> None:
    """``ImplicitReward(adapter_folder, base, beta)`` drew from torch's generator (peft draws an
    adapter's fresh weights before the saved ones replace them): a notebook that had seeded
    torch drew other numbers after it than its seed gives, where train() gives them back."""
    from peft import LoraConfig, get_peft_model

    llama = tiny_model_dirs["llama"]
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(llama), lora).save_pretrained(tmp_path)
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    scorer = ImplicitReward(str(tmp_path), str(llama), 0.1)
    assert torch.equal(torch.rand(4), expected)
    assert scorer.adapters_off  # (scored against its own base: the adapter did load)
