"""score and rank stream their files: a chunk at a time, through a staging file that a stopped
run leaves for the same command to continue from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from tiny import (
    NO_SYSTEM_TURN_FOLDER,
    SENTIMENT_PAIRS,
    count_ids_many,
    kept_when_interrupted,
    quiet,
    refusing_system_copy,
    save_tiny_model,
    write_jsonl,
)
from tiny import read_jsonl as read

from directpo import hub
from directpo.cli import main
from directpo.command_options import RankOptions, ScoreOptions
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError
from directpo.jsonl import StagedJsonl
from directpo.reward import ImplicitReward
from directpo.reward_files import rank_file, score_file


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """(policy, reference): two different tiny models, so that rewards are not all 0."""
    root = tmp_path_factory.mktemp("stream")
    return save_tiny_model("llama", root / "policy", seed=1), save_tiny_model("llama", root / "ref")


def mixed_rows(count: int) -> list[dict]:
    """Pairs and single-response rows, each with its id."""
    rows = []
    for i in range(count):
        pair = SENTIMENT_PAIRS[i % len(SENTIMENT_PAIRS)]
        row = {**pair, "id": i} if i % 3 else {"prompt": pair["prompt"], "response": pair["chosen"]}
        rows.append(row)
    return rows


def same_rows(got: list[dict], want: list[dict], tolerance: float = 1e-6) -> bool:
    """Equal rows, their rewards to within ``tolerance`` (another batch_size pads otherwise)."""

    def numbers(value):
        if isinstance(value, float):
            return pytest.approx(value, abs=tolerance)
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items()}
        return [numbers(v) for v in value] if isinstance(value, list) else value

    return got == numbers(want)


def options(kind, models, data: Path, out: Path, **more):
    policy, reference = models
    return kind(
        model_name_or_path=str(policy), ref_model_name_or_path=str(reference), beta=0.1,
        input=str(data), output=str(out), **more,
    )  # fmt: skip


def run_folder(models, tmp_path: Path, **options) -> Path:
    """A run's folder as training leaves it: the policy (models[0]) and a config.yaml of a run
    from models[1] with ``options`` (score and rank then take models[1] as the reference)."""
    run = tmp_path / "run"
    shutil.copytree(models[0], run)
    DPOConfig(model_name_or_path=str(models[1]), beta=0.1, **options).save_yaml(run / "config.yaml")
    return run


def stop_at_call(monkeypatch, number: int | None) -> list[int]:
    """score_ids raises KeyboardInterrupt (a Ctrl-C) at its ``number``-th call (None: never);
    returns the number of sequences each call was given."""
    calls: list[int] = []
    real = ImplicitReward.score_ids

    def score_ids(self, rows, progress=False):
        calls.append(len(rows))
        if len(calls) == number:
            raise KeyboardInterrupt
        return real(self, rows, progress)

    monkeypatch.setattr(ImplicitReward, "score_ids", score_ids)
    return calls


def test_score_and_rank_write_the_rewards_of_scoring_every_row_at_once(
    models, tmp_path, monkeypatch
) -> None:
    """Chunks are whole batches of the sequences in file order: the same rewards as one call
    over every row, in the file's order, whatever the chunk; another batch_size agrees."""
    monkeypatch.setattr("directpo.reward_files.CHUNK_SEQUENCES", 3)  # 2 batches of 2
    rows = mixed_rows(11)
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    summary = score_file(options(ScoreOptions, models, data, tmp_path / "s.jsonl", batch_size=2))
    scored = read(tmp_path / "s.jsonl")
    scorer = ImplicitReward(*models, beta=0.1, batch_size=2)
    want = scorer.score(
        [r["prompt"] for r in rows for _ in (("chosen", "rejected") if "chosen" in r else [1])],
        [r[k] for r in rows for k in (("chosen", "rejected") if "chosen" in r else ["response"])],
    )
    got = []
    for row, out in zip(rows, scored, strict=True):
        assert {k: out[k] for k in row} == row  # every field kept, in the file's order
        got += (
            [out["chosen_reward"], out["rejected_reward"]] if "chosen" in row else [out["reward"]]
        )
        if "chosen" in row:
            assert out["margin"] == out["chosen_reward"] - out["rejected_reward"]
    assert got == want  # exactly: the same batches
    assert len(scored) == summary["rows"] == 11 and summary["pairs"] == 7
    margins = [r["margin"] for r in scored if "margin" in r]
    assert summary["mean_margin"] == pytest.approx(sum(margins) / 7)
    score_file(options(ScoreOptions, models, data, tmp_path / "s5.jsonl", batch_size=5), quiet)
    assert same_rows(read(tmp_path / "s5.jsonl"), scored, 1e-5)
    # rank: a row of 5 candidates spans chunks
    cands = [
        {"prompt": "The movie was", "responses": [p["chosen"] for p in SENTIMENT_PAIRS[:n]]}
        for n in (5, 1, 3, 2)
    ]
    data = write_jsonl(tmp_path / "cands.jsonl", cands)
    rank_file(options(RankOptions, models, data, tmp_path / "r.jsonl", batch_size=2), quiet)
    ranked = read(tmp_path / "r.jsonl")
    for row, out in zip(cands, ranked, strict=True):
        rewards = scorer.score([row["prompt"]] * len(row["responses"]), row["responses"])
        want = sorted(zip(rewards, row["responses"], strict=True), key=lambda x: -x[0])
        assert [(c["reward"], c["response"]) for c in out["ranked"]] == want


@pytest.mark.parametrize("command", ["score", "rank"])
def test_a_stopped_run_keeps_its_rows_and_the_same_command_continues(
    models, tmp_path, monkeypatch, capsys, command
) -> None:
    """A Ctrl-C at row 90k kept nothing: every row was held and written at the end. Now each
    chunk is written as it is scored, to a staging file; the output appears only complete."""
    monkeypatch.setattr("directpo.reward_files.CHUNK_SEQUENCES", 4)
    if command == "score":
        rows = mixed_rows(12)
    else:
        rows = [
            {"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]]}
            for p in SENTIMENT_PAIRS * 2
        ]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out" / "scored.jsonl"
    args = [command, "--model_name_or_path", str(models[0]), "--ref_model_name_or_path",
            str(models[1]), "--beta", "0.1", "--batch_size", "2", "--input", str(data),
            "--output", str(out)]  # fmt: skip
    assert main([*args[:-1], str(tmp_path / "whole.jsonl")]) == 0
    whole = read(tmp_path / "whole.jsonl")
    capsys.readouterr()
    calls = stop_at_call(monkeypatch, 3)
    kept = kept_when_interrupted(main(args), capsys.readouterr().err, out, whole)
    # the same command again: only the rows not kept are scored
    calls = stop_at_call(monkeypatch, None)
    assert main(args) == 0
    assert f"({len(kept)} of them from an earlier run that stopped)" in capsys.readouterr().out
    assert same_rows(read(out), whole)
    assert list(out.parent.iterdir()) == [out]
    assert sum(calls) == sum(1 if "response" in row else 2 for row in rows[len(kept) :])
    # an edited row: the kept rows before it are continued, those from it on scored anew
    stop_at_call(monkeypatch, 3)
    assert main(args) == 130
    capsys.readouterr()
    [staging] = [p for p in out.parent.iterdir() if p != out]
    kept = read(staging)
    rows[1] = {**rows[1], "prompt": "Edited:"}
    write_jsonl(data, rows)
    stop_at_call(monkeypatch, None)
    assert main(args) == 0
    assert "(1 of them from an earlier run that stopped)" in capsys.readouterr().out
    again = read(out)
    assert same_rows(again[:1], whole[:1]) and again[1]["prompt"] == "Edited:"
    # other options (beta): a stopped run's rows are not continued
    stop_at_call(monkeypatch, 3)
    assert main(args) == 130
    stop_at_call(monkeypatch, None)
    assert main([*args, "--beta", "0.2"]) == 0
    assert "earlier run" not in capsys.readouterr().out
    assert list(out.parent.iterdir()) == [out]


def test_a_staging_file_is_cut_at_a_line_a_killed_run_left_half_written(tmp_path) -> None:
    target = tmp_path / "out.jsonl"
    rows = [{"a": i} for i in range(3)]
    staging = tmp_path / ".out.jsonl.k.partial"
    staging.write_text('{"a": 0, "r": 1}\n{"a": 1, "r": 2}\n{"a": 2, "r"')
    with StagedJsonl(target, "k") as out:
        assert out.resumed(rows[0], ["r"]) == {"a": 0, "r": 1}
        assert out.resumed(rows[1], ["r"]) == {"a": 1, "r": 2}
        assert out.resumed(rows[2], ["r"]) is None  # cut short: scored again
        out.write([{"a": 2, "r": 3}])
        out.commit()
    assert read(target) == [{"a": i, "r": i + 1} for i in range(3)]
    assert list(tmp_path.iterdir()) == [target]
    # a second process writing the same output with the same options is refused
    with StagedJsonl(target, "k") as first:
        with pytest.raises(ConfigError, match="another process is writing"):
            StagedJsonl(target, "k")
        # one of other options is discarded, unless a process is writing it now
        with StagedJsonl(target, "other"):
            assert first.staging.exists()
        first.write([{"a": 0}])
        first.commit()
    assert read(target) == [{"a": 0}]
    assert not (tmp_path / ".out.jsonl.other.partial").exists()  # nothing written: removed
    (tmp_path / ".out.jsonl.other.partial").write_text('{"a": 5}\n')
    with StagedJsonl(target, "k") as out:
        assert out.resumed({"a": 5}, ["r"]) is None  # of other options; and it lacks r
        out.commit()
    # a field of the row's own that a command adds to other rows (a pair row's "reward",
    # edited since) is the row's: compared, not taken from the staged row
    staging.write_text('{"a": 0, "reward": 1, "r": 5}\n')
    with StagedJsonl(target, "k") as out:
        assert out.resumed({"a": 0, "reward": 2}, ["r"]) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_system_column_scores_and_ranks_as_the_conversation_it_opens(models, tmp_path):
    """Orca-style rows (system, question, chosen, rejected) score as conversational rows that
    open with that system turn, in score and rank alike."""
    orca, chat, candidates, chat_candidates = [], [], [], []
    for i, pair in enumerate(SENTIMENT_PAIRS[:3]):
        system = f"You are reviewer {i}."
        orca.append({"system": system, "question": pair["prompt"], **{k: pair[k] for k in
                     ("chosen", "rejected")}})  # fmt: skip
        prompt = [
            {"role": "system", "content": system},
            {"role": "user", "content": pair["prompt"]},
        ]
        answers = [[{"role": "assistant", "content": pair[k]}] for k in ("chosen", "rejected")]
        chat.append({"prompt": prompt, "chosen": answers[0], "rejected": answers[1]})
        candidates.append({"system": system, "question": pair["prompt"],
                           "responses": [pair["chosen"], pair["rejected"]]})  # fmt: skip
        chat_candidates.append({"prompt": prompt, "responses": answers})
    given = dict(prompt_column="question", system_column="system")
    score_file(options(ScoreOptions, models, write_jsonl(tmp_path / "o.jsonl", orca),
                       tmp_path / "o_out.jsonl", **given), echo=quiet)  # fmt: skip
    score_file(options(ScoreOptions, models, write_jsonl(tmp_path / "c.jsonl", chat),
                       tmp_path / "c_out.jsonl"), echo=quiet)  # fmt: skip
    as_orca, as_chat = read(tmp_path / "o_out.jsonl"), read(tmp_path / "c_out.jsonl")
    assert [r["margin"] for r in as_orca] == pytest.approx([r["margin"] for r in as_chat])
    rank_file(options(RankOptions, models, write_jsonl(tmp_path / "r.jsonl", candidates),
                      tmp_path / "r_out.jsonl", **given), echo=quiet)  # fmt: skip
    rank_file(options(RankOptions, models, write_jsonl(tmp_path / "rc.jsonl", chat_candidates),
                      tmp_path / "rc_out.jsonl"), echo=quiet)  # fmt: skip
    rewards = [c["reward"] for r in read(tmp_path / "r_out.jsonl") for c in r["ranked"]]
    chat_rewards = [c["reward"] for r in read(tmp_path / "rc_out.jsonl") for c in r["ranked"]]
    assert rewards == pytest.approx(chat_rewards)
    # without system_column the system text is not in the prompt: other rewards
    score_file(options(ScoreOptions, models, tmp_path / "o.jsonl", tmp_path / "n_out.jsonl",
                       prompt_column="question"), echo=quiet)  # fmt: skip
    plain = [r["margin"] for r in read(tmp_path / "n_out.jsonl")]
    assert plain != pytest.approx([r["margin"] for r in as_chat])


def test_a_runs_column_the_input_lacks_gives_way_to_the_inputs_default_named_one(
    models, tmp_path, capsys
):
    """A run trained on custom columns (question, good, bad) could not score a file of the
    default names (prompt, chosen, rejected): its inherited columns failed with "missing
    field" after the note. Now an inherited column the file lacks, where the file has the
    default-named one, is that one, said in one line; a given option still wins."""
    run = run_folder(
        models, tmp_path, prompt_column="question", chosen_column="good", rejected_column="bad"
    )
    data = write_jsonl(tmp_path / "rows.jsonl", SENTIMENT_PAIRS[:3])
    said: list[str] = []
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(data),
                            output=str(tmp_path / "run.jsonl")), said.append)  # fmt: skip
    assert said[0] == (
        "the input's own columns (no option gave them): prompt_column: prompt (the input has "
        "no 'question', the run's), chosen_column: chosen (the input has no 'good', the "
        "run's), rejected_column: rejected (the input has no 'bad', the run's)"
    )
    score_file(options(ScoreOptions, models, data, tmp_path / "plain.jsonl"), quiet)
    assert read(tmp_path / "run.jsonl") == read(tmp_path / "plain.jsonl")
    # rank: the prompt column alike
    cands = [{"prompt": p["prompt"], "responses": [p["chosen"]]} for p in SENTIMENT_PAIRS[:2]]
    ranked = write_jsonl(tmp_path / "cands.jsonl", cands)
    rank_file(RankOptions(model_name_or_path=str(run), input=str(ranked),
                          output=str(tmp_path / "ranked.jsonl")), quiet)  # fmt: skip
    assert len(read(tmp_path / "ranked.jsonl")) == 2
    # a column given on the command line is not replaced
    args = ["score", "--model_name_or_path", str(run), "--input", str(data),
            "--output", str(tmp_path / "given.jsonl"), "--prompt_column", "question"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 2
    assert "no 'question' column" in capsys.readouterr().err


def test_a_runs_columns_and_system_turn_are_taken_from_its_config_yaml(models, tmp_path):
    """A run trained with system_column (and its own column names) was scored, ranked and
    sampled from without them unless each was given again: with a default prompt column its
    rows silently lost their system turn (and the chat rendering it brings). Now the options
    left unset are the run's, said in one line; a given option still wins."""
    run = run_folder(
        models, tmp_path, chosen_column="good", rejected_column="bad", system_column="system"
    )
    rows = [
        {"system": f"You are reviewer {i}.", "prompt": p["prompt"], "good": p["chosen"],
         "bad": p["rejected"]}
        for i, p in enumerate(SENTIMENT_PAIRS[:3])
    ]  # fmt: skip
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    said: list[str] = []
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(data),
                            output=str(tmp_path / "run.jsonl")), said.append)  # fmt: skip
    assert said[0] == (
        "from the run's config.yaml (no option gave them): system_column: system, "
        "chosen_column: good, rejected_column: bad"
    )
    given = dict(system_column="system", chosen_column="good", rejected_column="bad")
    score_file(options(ScoreOptions, models, data, tmp_path / "given.jsonl", **given), quiet)
    assert read(tmp_path / "run.jsonl") == read(tmp_path / "given.jsonl")
    # rank, and a given option over the run's
    candidates = [
        {k: r[k] for k in ("system", "prompt")} | {"responses": [r["good"]]} for r in rows
    ]
    data = write_jsonl(tmp_path / "cands.jsonl", candidates)
    said.clear()
    rank_file(RankOptions(model_name_or_path=str(run), input=str(data),
                          output=str(tmp_path / "ranked.jsonl")), said.append)  # fmt: skip
    assert said[0] == "from the run's config.yaml (no option gave them): system_column: system"
    rank_file(options(RankOptions, models, data, tmp_path / "r2.jsonl", system_column="system"),
              quiet)  # fmt: skip
    assert read(tmp_path / "ranked.jsonl") == read(tmp_path / "r2.jsonl")
    other = write_jsonl(
        tmp_path / "other.jsonl", [{**c, "persona": "Be brief."} for c in candidates]
    )
    said.clear()
    rank_file(RankOptions(model_name_or_path=str(run), input=str(other), system_column="persona",
                          output=str(tmp_path / "r3.jsonl")), said.append)  # fmt: skip
    assert not any("config.yaml" in line for line in said)
    assert read(tmp_path / "r3.jsonl")[0]["ranked"] != read(tmp_path / "r2.jsonl")[0]["ranked"]
    # a file without the run's system column: scored without a system turn, and said so
    # (it was silent: the scores then differ from those of the rows the run trained on)
    bare = write_jsonl(tmp_path / "bare.jsonl", [{k: r[k] for k in ("prompt", "responses")}
                                                 for r in candidates])  # fmt: skip
    said.clear()
    rank_file(RankOptions(model_name_or_path=str(run), input=str(bare),
                          output=str(tmp_path / "r4.jsonl")), said.append)  # fmt: skip
    assert said[1] == (
        "the input's own columns (no option gave them): system_column: system of the run, "
        "which the input lacks: its prompts go without a system turn"
    )
    # ... but one of another name or case (System, system_prompt) is the input's system turn:
    # it went unread, its prompts scored without the system turn the run trained with
    cased = write_jsonl(tmp_path / "cased.jsonl", [
        {"System": c["system"], "prompt": c["prompt"], "responses": c["responses"]}
        for c in candidates
    ])  # fmt: skip
    said.clear()
    rank_file(RankOptions(model_name_or_path=str(run), input=str(cased),
                          output=str(tmp_path / "r5.jsonl")), said.append)  # fmt: skip
    assert said[:1] == [
        "the input's own columns (no option gave them): system_column: System (the input has "
        "no 'system', the run's)"
    ]
    assert read(tmp_path / "r5.jsonl")[0]["ranked"] == read(tmp_path / "r2.jsonl")[0]["ranked"]


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_a_failed_command_leaves_no_empty_output_folder_behind(
    models, tmp_path, monkeypatch, capsys, command
) -> None:
    """The output's missing folders were made before the rows were checked: a bad row (or a
    model that would not load) left them behind, empty. Now they are made once the rows
    passed, and taken back while empty when the command fails."""
    good = {"prompt": "The movie was", "response": " x", "responses": [" x", " y"]}
    rows = [good, good, {**good, "prompt": 5}]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "new" / "deeper" / "out.jsonl"
    args = [
        command,
        "--model_name_or_path",
        str(models[0]),
        "--ref_model_name_or_path",
        str(models[1]),
        "--beta",
        "0.1",
        "--input",
        str(data),
        "--output",
        str(out),
    ]
    if command == "generate":
        args = [a for a in args if a not in ("--ref_model_name_or_path", str(models[1]))]
        args = [a for a in args if a not in ("--beta", "0.1")]
    assert main(args) == 2
    assert f"{data}: line 3: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]

    def refuse(*args, **kwargs):
        raise ConfigError("model_name_or_path: cannot load (a test's refusal)")

    monkeypatch.setattr(f"directpo.{'generate_files' if command == 'generate' else 'reward_models'}"
                        ".load_causal_lm", refuse)  # fmt: skip
    write_jsonl(data, rows[:2])
    assert main(args) == 2
    assert "a test's refusal" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_score_out_of_memory_is_one_line_naming_the_rows_kept(
    models, tmp_path, monkeypatch, capsys
) -> None:
    """Out of GPU memory, score printed torch's traceback and kept its rows without a word."""
    monkeypatch.setattr("directpo.reward_files.CHUNK_SEQUENCES", 2)
    data = write_jsonl(tmp_path / "rows.jsonl", mixed_rows(6))
    out = tmp_path / "scored.jsonl"
    args = ["score", "--model_name_or_path", str(models[0]), "--ref_model_name_or_path",
            str(models[1]), "--beta", "0.1", "--input", str(data),
            "--output", str(out)]  # fmt: skip
    real = ImplicitReward.score_ids
    calls = []

    def score_ids(self, rows, progress=False):
        calls.append(len(rows))
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, rows, progress)

    monkeypatch.setattr(ImplicitReward, "score_ids", score_ids)
    assert main([*args, "--batch_size", "2"]) == 2
    err = capsys.readouterr().err
    [staging] = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    written = len(read(staging))
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"directpo: error: batch_size: out of memory after {written} rows; lower --batch_size "
        f"({written} rows are kept in {staging}; the same command continues from there, "
        "another batch_size too)"
    )
    monkeypatch.setattr(ImplicitReward, "score_ids", real)
    assert main([*args, "--batch_size", "1"]) == 0
    assert f"({written} of them from an earlier run that stopped)" in capsys.readouterr().out
    # score_file with options built in Python was told the flag, --batch_size: its keyword now
    calls.clear()
    monkeypatch.setattr(ImplicitReward, "score_ids", score_ids)
    with pytest.raises(ConfigError) as error:
        score_file(options(ScoreOptions, models, data, tmp_path / "py.jsonl", batch_size=2), quiet)
    assert str(error.value).startswith(
        "batch_size: out of memory after 2 rows; pass a lower batch_size=... ("
    )


def test_an_empty_system_column_scores_without_the_runs_system_turn(models, tmp_path):
    """--system_column '' says no system turn, whatever the run had: a run's inherited
    system_column could not be switched off ('none' reads as unset, which inherits it)."""
    run = run_folder(models, tmp_path, system_column="system")
    rows = [{"system": f"You are reviewer {i}.", **p} for i, p in enumerate(SENTIMENT_PAIRS[:3])]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    said: list[str] = []
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(data), system_column="",
                            output=str(tmp_path / "off.jsonl")), said.append)  # fmt: skip
    assert not any(line.startswith("from the run") for line in said)
    plain = write_jsonl(tmp_path / "plain.jsonl", [
        {k: v for k, v in row.items() if k != "system"} for row in rows])  # fmt: skip
    score_file(options(ScoreOptions, models, plain, tmp_path / "plain_out.jsonl"), quiet)
    off = [r["margin"] for r in read(tmp_path / "off.jsonl")]
    assert off == pytest.approx([r["margin"] for r in read(tmp_path / "plain_out.jsonl")])
    score_file(ScoreOptions(model_name_or_path=str(run), input=str(data),
                            output=str(tmp_path / "on.jsonl")), quiet)  # fmt: skip
    assert [r["margin"] for r in read(tmp_path / "on.jsonl")] != pytest.approx(off)
    with pytest.raises(ConfigError, match="system_column must be a column name, or None"):
        DPOConfig(system_column="")


def test_a_long_prompt_is_counted_once_per_row_in_the_truncation_note(models, tmp_path):
    """A pair whose prompt was cut was reported as "2 prompts" (its prompt is encoded with
    each response), and a rank row as one prompt per candidate. Now a row's prompt counts once."""
    long = "word " * 1500
    pair = write_jsonl(tmp_path / "pair.jsonl", [{**SENTIMENT_PAIRS[0], "prompt": long}])
    said: list[str] = []
    score_file(options(ScoreOptions, models, pair, tmp_path / "s.jsonl"), said.append)
    assert said[0].startswith("truncated to fit max_length 1024: 1 prompt, 2 responses; ")
    cands = write_jsonl(tmp_path / "c.jsonl", [{"prompt": long, "responses": [" a", " b", " c"]}])
    said.clear()
    rank_file(options(RankOptions, models, cands, tmp_path / "r.jsonl"), said.append)
    assert said[0].startswith("truncated to fit max_length 1024: 1 prompt, 3 responses; ")


def test_a_row_that_has_a_field_to_be_written_is_refused_and_a_prefix_writes_others(
    models, tmp_path, capsys
):
    """score wrote its rewards over fields the rows had (a dataset's own 'reward' label, a file
    scored before by another model), and rank its 'ranked': their values were lost. Now such a
    row is refused in one line naming it and --output_prefix, which writes prefixed fields."""
    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1"]  # fmt: skip
    labelled = [{"prompt": p["prompt"], "response": p["chosen"], "reward": 1.0}
                for p in SENTIMENT_PAIRS[:2]]  # fmt: skip
    data = write_jsonl(tmp_path / "labelled.jsonl", labelled)
    args = ["score", *common, "--input", str(data)]
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "a.jsonl")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"directpo: error: {data}: line 1: the row already has a field 'reward', which would be "
        "overwritten; give --output_prefix (e.g. --output_prefix run2_) to write run2_reward "
        "instead (1 more row like it: line 2)"
    ]
    with pytest.raises(DataError) as refused:  # (built in Python: its keywords, not --flags)
        score_file(options(ScoreOptions, models, data, tmp_path / "p.jsonl"), quiet)
    python = "; pass output_prefix=... (e.g. output_prefix='run2_') to write run2_reward"
    assert python in str(refused.value)
    assert main([*args, "--output", str(tmp_path / "b.jsonl"), "--output_prefix", "m_"]) == 0
    got = read(tmp_path / "b.jsonl")
    assert [r["reward"] for r in got] == [1.0, 1.0] and all("m_reward" in r for r in got)
    # a file scored before: pairs
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2])
    score_file(options(ScoreOptions, models, pairs, tmp_path / "scored.jsonl"), quiet)
    again = ["score", *common, "--input", str(tmp_path / "scored.jsonl")]
    assert main([*again, "--output", str(tmp_path / "c.jsonl")]) == 2
    assert "field 'chosen_reward'" in capsys.readouterr().err
    # rank's output ranked again
    cands = [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]]}
             for p in SENTIMENT_PAIRS[:2]]  # fmt: skip
    data = write_jsonl(tmp_path / "cands.jsonl", cands)
    rank_file(options(RankOptions, models, data, tmp_path / "ranked.jsonl"), quiet)
    rank = ["rank", *common, "--input", str(tmp_path / "ranked.jsonl")]
    assert main([*rank, "--output", str(tmp_path / "d.jsonl")]) == 2
    assert "field 'ranked'" in capsys.readouterr().err
    assert main([*rank, "--output", str(tmp_path / "e.jsonl"), "--output_prefix", "x_"]) == 0
    assert all(r["x_ranked"] and r["ranked"] for r in read(tmp_path / "e.jsonl"))


def test_a_row_without_its_responses_field_names_the_fields_it_has_and_the_option(
    models, tmp_path, capsys
):
    """generate --completions_column samples, then rank: the error was "missing field
    'responses'", as if the row held no candidates; it now names the fields the row has and
    the option that reads them (score's single responses alike)."""
    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1"]  # fmt: skip
    rows = [{"prompt": p["prompt"], "samples": [p["chosen"], p["rejected"]]}
            for p in SENTIMENT_PAIRS[:2]]  # fmt: skip
    data = write_jsonl(tmp_path / "sampled.jsonl", rows)
    capsys.readouterr()
    assert main(["rank", *common, "--input", str(data), "--output", str(tmp_path / "r.jsonl")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"directpo: error: {data}: line 1: missing field 'responses' (nor 'completions'); the "
        "row has 'prompt', 'samples': name the field of its responses with --responses_column "
        "(1 more row like it: line 2)"
    ]
    assert not (tmp_path / "r.jsonl").exists()
    args = ["--input", str(data), "--output", str(tmp_path / "r.jsonl")]
    assert main(["rank", *common, *args, "--responses_column", "samples"]) == 0
    assert [len(r["ranked"]) for r in read(tmp_path / "r.jsonl")] == [2, 2]
    single = write_jsonl(tmp_path / "single.jsonl", [{"prompt": "x", "answer": " y"}])
    args = ["--input", str(single), "--output", str(tmp_path / "s.jsonl")]
    assert main(["score", *common, *args]) == 2
    assert (
        "missing field 'response' (nor 'completion'); the row has 'prompt', 'answer': "
        "name the field of its responses with --response_column" in capsys.readouterr().err
    )
    assert main(["score", *common, *args, "--response_column", "answer"]) == 0


def test_headers_of_another_case_are_named_in_score_s_and_rank_s_refusal(models, tmp_path, capsys):
    """A spreadsheet's Prompt / Chosen / Rejected (a pairs file) was told "missing field
    'response' ...: name the field of its responses with --response_column", which is not the
    fix; score and rank now name each column as the header writes it."""
    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1"]  # fmt: skip
    pairs = [{"Prompt": p["prompt"], "Chosen": p["chosen"], "Rejected": p["rejected"]}
             for p in SENTIMENT_PAIRS[:2]]  # fmt: skip
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    args = ["--input", str(data), "--output", str(tmp_path / "s.jsonl")]
    assert main(["score", *common, *args]) == 2
    said = "give --chosen_column Chosen, --rejected_column Rejected, --prompt_column Prompt"
    assert said in (capsys.readouterr().err)
    named = ["--prompt_column", "Prompt", "--chosen_column", "Chosen", "--rejected_column"]
    assert main(["score", *common, *args, *named, "Rejected"]) == 0
    ranked = write_jsonl(tmp_path / "k.jsonl", [{"Prompt": "x", "Responses": [" a", " b"]}])
    args = ["--input", str(ranked), "--output", str(tmp_path / "r.jsonl")]
    assert main(["rank", *common, *args]) == 2
    said = "give --prompt_column Prompt, --responses_column Responses"
    assert said in capsys.readouterr().err


def test_a_prompt_column_of_another_name_is_said_as_scores_refusal(models, tmp_path, capsys):
    """A pairs file whose prompt is in a 'question' column was told by score that its text
    'would go untrained', though score trains nothing: it would never reach the model."""
    policy, _ = models
    data = write_jsonl(tmp_path / "q.jsonl", [{"question": "Is it good?", "chosen": " Yes.",
                                               "rejected": " No."}])  # fmt: skip
    args = ["--input", str(data), "--output", str(tmp_path / "s.jsonl")]
    assert main(["score", "--model_name_or_path", str(policy), *args]) == 2
    said = capsys.readouterr().err
    assert (
        "column 'question', which would never reach the model; give --prompt_column question"
        in said
    )
    assert "untrained" not in said


def test_every_bad_row_of_score_and_rank_is_said_in_one_line_before_loading(
    models, tmp_path, monkeypatch, capsys
):
    """score and rank stopped at their first bad row (a 50k-row file was fixed one row per
    run); every row is now checked first and the bad ones said in one line (refused, not
    skipped: each input row has its output row), before any model loads, nothing written."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before every row was checked")

    monkeypatch.setattr(ImplicitReward, "from_run", refuse)
    good = SENTIMENT_PAIRS[0]
    pairs = [good, {"prompt": "a", "rejected": "b"}, {**good, "chosen": ""}, good,
             {**good, "chosen": 5}, {**good, "rejected": good["chosen"]}]  # fmt: skip
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    data.write_text(data.read_text() + "\n{oops\n")  # a blank line, then not JSON: line 8
    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1", "--output", str(tmp_path / "out.jsonl")]  # fmt: skip
    assert main(["score", *common, "--input", str(data)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"directpo: error: {data}: line 2: missing field 'chosen'; line 3: field 'chosen' is "
        "empty; line 5: field 'chosen' must be a string, got a number; 2 more rows with other "
        "problems: line 6, line 8"
    ]
    # a folder that is not a directpo run, without --beta / --ref_model_name_or_path: said with
    # the rows' problems, in the same line (it was said only after the rows were fixed)
    lone = ["--model_name_or_path", str(policy), "--output", str(tmp_path / "out.jsonl")]
    assert main(["score", *lone, "--input", str(data)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "directpo: error: 1 option cannot be used:",
        f"  {policy} has no config.yaml from a directpo run: give --ref_model_name_or_path and "
        "--beta",
        "and the data files' rows:",
        f"  {data}: line 2: missing field 'chosen'; line 3: field 'chosen' is empty; line 5: "
        "field 'chosen' must be a string, got a number; 2 more rows with other problems: line "
        "6, line 8",
    ]
    good_file = write_jsonl(tmp_path / "good.jsonl", [good])  # good rows: the option alone
    assert main(["score", *lone, "--input", str(good_file)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"directpo: error: {policy} has no config.yaml from a directpo run: give "
        "--ref_model_name_or_path and --beta"
    )
    # --beta given: only the reference is asked for (it was asked for with --beta again)
    assert main(["score", *lone, "--beta", "0.1", "--input", str(good_file)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"directpo: error: {policy} has no config.yaml from a directpo run: give "
        "--ref_model_name_or_path"
    )
    csv = tmp_path / "pairs.csv"  # a CSV's rows by their line, as training names them
    csv.write_text("prompt,chosen,rejected\na,b,c\na,,c\na,b,b\n")
    assert main(["score", *common, "--input", str(csv)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"directpo: error: {csv}: line 3: field 'chosen' is empty; line 4: chosen and rejected "
        "are identical"
    )
    rows = [{"prompt": "a", "responses": [" b", " c"]}, {"prompt": "a"}, {"prompt": 3,
            "responses": [" b"]}, {"prompt": "a", "responses": " b"}]  # fmt: skip
    data = write_jsonl(tmp_path / "candidates.jsonl", rows)
    assert main(["rank", *common, "--input", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"directpo: error: {data}: line 2: missing field")
    assert err[0].endswith(
        "; line 3: field 'prompt' must be a string, got a number; line 4: "
        "field 'responses' must be a list of candidate responses, got a string"
    )
    # a row the chat template refuses was said alone, after the rows before it were scored
    strict = refusing_system_copy(policy, tmp_path / "strict")
    chat = [{"role": "user", "content": "Hi"}]
    system = [{"role": "system", "content": "Be nice"}, *chat]
    rows = [{"prompt": p, "responses": [" a", " b"]} for p in (chat, system, chat, system)]
    data = write_jsonl(tmp_path / "chats.jsonl", rows)
    common[1] = str(strict)
    assert main(["rank", *common, "--input", str(data)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"directpo: error: {data}: line 2: the chat template refused the row (no system)"
        f"{NO_SYSTEM_TURN_FOLDER} (1 more row like it: line 4)"
    )
    assert not (tmp_path / "out.jsonl").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_one_row_is_counted_in_the_singular(models, tmp_path) -> None:
    """score, rank and generate of one row said '1 pairs: preference accuracy', 'wrote 1 rows',
    'ranked 1 candidates of 1 prompts', 'wrote 1 completions for 1 prompts' (the start line's
    '1 steps per round' and '1 pairs tokenized' alike): each counts in the singular now."""
    from directpo.command_options import GenerateOptions
    from directpo.generate_files import generate_file

    said: list[str] = []
    pair = write_jsonl(tmp_path / "pair.jsonl", SENTIMENT_PAIRS[:1])
    score_file(options(ScoreOptions, models, pair, tmp_path / "s.jsonl"), said.append)
    assert said[0].startswith("1 pair: preference accuracy ")
    assert said[1] == f"wrote 1 row to {tmp_path / 's.jsonl'}"
    one = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Hi", "responses": [" a"]}])
    said.clear()
    rank_file(options(RankOptions, models, one, tmp_path / "r.jsonl"), said.append)
    assert said == [f"ranked 1 candidate of 1 prompt into {tmp_path / 'r.jsonl'}"]
    said.clear()
    generate_file(
        GenerateOptions(model_name_or_path=str(models[0]), input=str(one),
                        output=str(tmp_path / "g.jsonl"), max_new_tokens=2),
        said.append,
    )  # fmt: skip
    assert said[-1] == f"wrote 1 completion for 1 prompt to {tmp_path / 'g.jsonl'}"


def test_rank_reads_the_prompts_generate_sampled_from_a_pairs_file(models, tmp_path) -> None:
    """generate --input hh.jsonl (Anthropic HH: chosen and rejected alone), then rank of its
    output: rank said "missing field 'prompt'" of every row generate wrote, whose prompts it
    had read as the pairs' shared start (an OpenAI-format row's input.messages, a
    conversation's shared turns likewise). rank now reads the prompt as generate does: the
    rewards are those of the same candidates under that prompt written out."""
    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1"]  # fmt: skip
    prompt, candidates = "\n\nHuman: Tell me a joke.\n\nAssistant:", [" Sure.", " No way."]
    hh = {"chosen": f"{prompt} Sure, here is one.", "rejected": f"{prompt} No.",
          "completions": candidates}  # fmt: skip
    user = [{"role": "user", "content": "Tell me a joke."}]
    openai = {"input": {"messages": user}, "preferred_output": [{"role": "assistant",
              "content": "Sure."}], "non_preferred_output": [{"role": "assistant",
              "content": "No."}], "completions": candidates}  # fmt: skip
    implicit = write_jsonl(tmp_path / "generated.jsonl", [hh, openai])
    written = [{"prompt": prompt, "completions": candidates},
               {"prompt": user, "completions": candidates}]  # fmt: skip
    explicit = write_jsonl(tmp_path / "explicit.jsonl", written)
    for data in (implicit, explicit):
        out = ["--output", str(tmp_path / f"ranked-{data.name}")]
        assert main(["rank", *common, "--input", str(data), *out]) == 0
    ranked = [r["ranked"] for r in read(tmp_path / "ranked-generated.jsonl")]
    assert ranked == [r["ranked"] for r in read(tmp_path / "ranked-explicit.jsonl")]
    assert ranked[0] != ranked[1]  # the text prompt and the conversation scored apart


def test_rank_reads_a_csv_list_column_of_candidates(models, tmp_path) -> None:
    """A CSV of candidates saved by pandas holds each list as its Python repr ("['a', 'b']"),
    or as JSON: rank said "field 'responses' must be a list of candidate responses, got a
    string". The cell is read as the list, ranked as the JSON Lines row with that list."""
    import pandas as pd

    policy, reference = models
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1"]  # fmt: skip
    candidates = [" Sure, it is fine.", " No way, never.", " Maybe."]
    rows = [{"prompt": "Question: Can you help me?", "responses": candidates}] * 2
    jsonl = write_jsonl(tmp_path / "c.jsonl", rows)
    sheet = tmp_path / "c.csv"
    frame = pd.DataFrame(rows)
    frame.loc[1, "responses"] = json.dumps(candidates)  # the second cell as JSON
    frame.to_csv(sheet, index=False)
    for data in (jsonl, sheet):
        out = ["--output", str(tmp_path / f"ranked-{data.suffix[1:]}.jsonl")]
        assert main(["rank", *common, "--input", str(data), *out]) == 0
    from_csv = read(tmp_path / "ranked-csv.jsonl")
    assert [r["ranked"] for r in from_csv] == [
        r["ranked"] for r in read(tmp_path / "ranked-jsonl.jsonl")
    ]
    assert from_csv[0]["responses"] == from_csv[1]["responses"] == candidates


def test_a_spreadsheets_blank_unnamed_columns_are_not_written(models, tmp_path) -> None:
    """An Excel CSV's trailing empty columns came back in score's and rank's rows as
    ``"Unnamed: 3": ""`` (pandas' name for them). A column without a name or any value is
    left out; an unnamed one holding values (pandas' index) and every named one are kept."""
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        ",prompt,chosen,rejected,responses,,\n"
        "0,Question: hi?, Sure., No.,\"['a', 'b']\",,\n"
        "1,Question: yo?, Yes., Nope.,\"['c', 'd']\",, \n"
    )
    for kind, call in ((ScoreOptions, score_file), (RankOptions, rank_file)):
        out = tmp_path / f"{kind.__name__}.jsonl"
        call(options(kind, models, sheet, out), quiet)
        rows = read(out)
        assert [row["Unnamed: 0"] for row in rows] == ["0", "1"]
        assert not any(key.startswith("Unnamed: 5") or key == "Unnamed: 6" for row in rows
                       for key in row), rows[0]  # fmt: skip
        assert rows[1]["chosen"] == " Yes." and "responses" in rows[1]


def test_score_takes_assistant_only_loss_as_a_flag(tmp_path, capsys) -> None:
    """assistant_only_loss was only ImplicitReward's keyword: ``directpo score`` of a plain
    folder scored a tool's result as the policy's own tokens, with no flag to leave it out.
    ``--assistant_only_loss true`` now does (the rewards are ImplicitReward's with it); a run
    folder scored against its own option says so."""
    from test_turn_masks import QWEN_TOOLS, ROW, SMOLLM2, _tiny_model
    from transformers import AutoTokenizer

    from directpo.data import load_preferences

    if not SMOLLM2.is_dir():
        pytest.skip("SmolLM2's tokenizer is not here")
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    tokenizer.chat_template = QWEN_TOOLS
    policy = _tiny_model(tokenizer, tmp_path / "policy", seed=0)
    reference = _tiny_model(tokenizer, tmp_path / "ref", seed=1)
    data = write_jsonl(tmp_path / "pairs.jsonl", [ROW])
    common = ["--model_name_or_path", str(policy), "--ref_model_name_or_path", str(reference),
              "--beta", "0.5", "--input", str(data)]  # fmt: skip

    def scored(name: str, *flags: str) -> float:
        out = tmp_path / f"{name}.jsonl"
        assert main(["score", *common, "--output", str(out), *flags]) == 0
        return read(out)[0]["chosen_reward"]

    scorer = ImplicitReward(policy, reference, 0.5, assistant_only_loss=True)
    expected = scorer.score_pairs(load_preferences([ROW]).examples)[0][0]
    rewards = {False: scored("False"), True: scored("True", "--assistant_only_loss", "true")}
    assert rewards[True] == pytest.approx(expected, rel=1e-5)
    assert abs(rewards[True] - rewards[False]) > 0.1  # (the tool's tokens weigh in)
    capsys.readouterr()
    (policy / "config.yaml").write_text(  # a run trained with it: the flag turns it off
        f"model_name_or_path: {reference}\noutput_dir: {policy}\nbeta: 0.5\n"
        "assistant_only_loss: true\n"
    )
    assert scored("off", "--assistant_only_loss", "false") == pytest.approx(rewards[False])
    assert (
        "assistant_only_loss false, where the run trained with true: the rewards are over other "
        "tokens than the run's log-probs" in capsys.readouterr().out
    )


def test_score_and_rank_call_the_tokenizer_once_per_batch_of_rows(
    models, tmp_path, monkeypatch, capsys
) -> None:
    """Both passes over the file (the check before loading, the scoring) encode a batch of
    rows in one tokenizer call: a call per response made the check of a 60k-row file take
    minutes before the model loaded. A row the chat template refuses is still said in the
    file's order among the rows refused for their fields."""
    monkeypatch.setattr("directpo.prompts.CHECKED_TOGETHER", 4, raising=False)
    monkeypatch.setattr("directpo.reward_files.CHECKED_TOGETHER", 4, raising=False)
    calls = count_ids_many(monkeypatch)
    rows = [dict(SENTIMENT_PAIRS[i % len(SENTIMENT_PAIRS)], id=i) for i in range(10)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    score_file(options(ScoreOptions, models, data, tmp_path / "s.jsonl", batch_size=4), quiet)
    assert len(calls) == 6  # 3 batches of rows (4, 4, 2) in each pass; it was 2 x 20
    calls.clear()
    scored = read(tmp_path / "s.jsonl")
    scorer = ImplicitReward(*models, beta=0.1, batch_size=4)
    want = scorer.score(
        [r["prompt"] for r in rows for _ in range(2)],
        [r[k] for r in rows for k in ("chosen", "rejected")],
    )
    assert [v for r in scored for v in (r["chosen_reward"], r["rejected_reward"])] == want
    strict = refusing_system_copy(models[0], tmp_path / "strict")
    chat = [{"role": "user", "content": "Hi"}]
    system = [{"role": "system", "content": "Be nice"}, *chat]
    candidates = [{"prompt": p, "responses": [" a", " b"]} for p in (chat, system, chat, chat)]
    candidates[2] = {"prompt": chat}  # refused for its fields, in the same batch as line 2
    data = write_jsonl(tmp_path / "chats.jsonl", candidates)
    policy, reference = models
    common = ["--model_name_or_path", str(strict), "--ref_model_name_or_path", str(reference),
              "--beta", "0.1", "--output", str(tmp_path / "r.jsonl")]  # fmt: skip
    capsys.readouterr()  # (the scoring's progress)
    assert main(["rank", *common, "--input", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"directpo: error: {data}: line 2: the chat template refused the row (no system)"
        f"{NO_SYSTEM_TURN_FOLDER}; line 3: missing field"
    )


def test_a_template_without_a_generation_prompt_is_noted_by_score_and_rank(
    models, tmp_path
) -> None:
    """A model folder whose chat template has no add_generation_prompt branch scores each
    completion with the assistant's header as its first tokens: train and generate said so,
    score and rank said nothing. Now they say it before loading (once, naming the header);
    the header's log-ratio is the same for both replies of a pair, so the margin is the one a
    template that writes the header gives. A folder whose template writes it says nothing."""
    from tiny import CHATML_TEMPLATE

    policy = tmp_path / "policy"
    shutil.copytree(models[0], policy)
    chat = [{"role": "user", "content": "Hi"}]
    pair = write_jsonl(tmp_path / "pair.jsonl", [{
        "prompt": chat, "chosen": [{"role": "assistant", "content": "Good day"}],
        "rejected": [{"role": "assistant", "content": "Go away"}],
    }])  # fmt: skip
    ranks = write_jsonl(tmp_path / "rank.jsonl", [{"prompt": chat, "responses": [
        [{"role": "assistant", "content": "Good day"}], [{"role": "assistant", "content": "No"}]
    ]}])  # fmt: skip
    without = CHATML_TEMPLATE.split("{% if add_generation_prompt %}")[0]
    notes, margins = {}, {}
    for name, template in (("without", without), ("with", CHATML_TEMPLATE)):
        (policy / "chat_template.jinja").write_text(template)
        said: list[str] = []
        scored = options(ScoreOptions, (policy, models[1]), pair, tmp_path / f"{name}.s.jsonl")
        score_file(scored, said.append)
        margins[name] = read(tmp_path / f"{name}.s.jsonl")[0]["margin"]
        ranked = options(RankOptions, (policy, models[1]), ranks, tmp_path / f"{name}.r.jsonl")
        rank_file(ranked, said.append)
        notes[name] = [line for line in said if "generation prompt" in line]
    note = (
        "note: the chat template writes no generation prompt (it has no add_generation_prompt "
        "branch), so each completion is scored with the assistant turn's header "
        "('<|im_start|>assistant\\n') as its first tokens: every reward of a prompt holds the "
        "header's log-ratio (the same for each completion: margins and rankings are "
        "unchanged); give a template that writes it in the model folder's chat template (its "
        "chat_template.jinja)"
    )
    assert notes == {"without": [note, note], "with": []}
    assert margins["without"] == pytest.approx(margins["with"], abs=1e-4)


def test_a_mistyped_run_folder_is_said_missing_not_a_run_without_beta(
    tmp_path, capsys, monkeypatch
):
    """score / rank / ImplicitReward.from_run of a relative run folder that does not exist (a
    typo: runs/my-dpo2, shaped as a hub id) said '... has no config.yaml from a directpo run:
    give --ref_model_name_or_path and --beta', sending the user after a model's settings; it
    says there is no such folder (a hub model, no run, still told what it needs)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "_why_unreachable", lambda: None)  # a hub id could be loaded
    data = write_jsonl(tmp_path / "pairs.jsonl", [SENTIMENT_PAIRS[0]])
    missing = "runs/my-dpo2"
    for command in ("score", "rank"):
        args = ["--model_name_or_path", str(missing), "--input", str(data)]
        assert main([command, *args, "--output", str(tmp_path / "out.jsonl")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        line = (
            f"{missing}: no such run folder (for a hub model, which holds no directpo run's "
            "config.yaml: give --ref_model_name_or_path and --beta)"
        )
        assert (err[0] if command == "score" else err[1].strip()) == (
            f"directpo: error: {line}" if command == "score" else line
        )
        assert "has no config.yaml" not in "\n".join(err)
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(ConfigError, match="no such run folder"):
        ImplicitReward.from_run(missing)


def test_a_run_folder_before_its_final_save_names_its_latest_checkpoint(tmp_path, capsys):
    """score / rank / generate of a run's output_dir still training (checkpoints only, no
    final model yet) said it 'is not a model folder' and listed checkpoint-3, ... among its
    files; the line now names the latest checkpoint (by step, not by name), a model folder."""
    run = tmp_path / "run"
    for step in (3, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n')
    (run / "checkpoint-notes").write_text("not a checkpoint\n")  # a file is none
    data = write_jsonl(tmp_path / "pairs.jsonl", [SENTIMENT_PAIRS[0]])
    for command in ("score", "generate"):
        args = ["--model_name_or_path", str(run), "--input", str(data)]
        assert main([command, *args, "--output", str(tmp_path / "out.jsonl")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].endswith(
            f"; a run still training or stopped before its final save: its latest checkpoint, "
            f"{run / 'checkpoint-10'}, is a model folder"
        )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_hub_id_that_cannot_load_offline_is_said_so_before_beta_is_asked(
    tmp_path, capsys, monkeypatch
):
    """score / rank of a hub id (org/model) on a machine that cannot reach the hub, with no
    copy in the local cache, said 'no such run folder (for a hub model ...: give
    --ref_model_name_or_path and --beta)'; given them, the user then learnt no model could load.
    The first line says why at once; a cached copy (or a reachable hub) is still asked for
    --beta, as the model loads."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "_why_unreachable", lambda: "the Hub (h) cannot be reached")
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    data = write_jsonl(tmp_path / "pairs.jsonl", [SENTIMENT_PAIRS[0]])
    offline = (
        "org/model: no such run folder, and as a hub id it cannot be loaded: the Hub (h) "
        "cannot be reached, and the local cache holds no copy of it"
    )
    for command in ("score", "rank"):
        args = ["--model_name_or_path", "org/model", "--input", str(data)]
        assert main([command, *args, "--output", str(tmp_path / "out.jsonl")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (err[0] if command == "score" else err[1].strip()) == (
            f"directpo: error: {offline}" if command == "score" else offline
        )
    with pytest.raises(ConfigError) as raised:
        ImplicitReward.from_run("org/model")
    assert str(raised.value) == offline
    (cache / "models--org--model").mkdir(parents=True)  # a copy the cache holds loads
    with pytest.raises(ConfigError) as raised:
        ImplicitReward.from_run("org/model")
    assert "no such run folder (for a hub model" in str(raised.value)
    assert "cannot be loaded" not in str(raised.value)
