"""directpo generate: rows streamed through a staging file that a stopped run leaves for the same
command to continue from, each call of prompts seeded from its first row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny import (
    NO_SYSTEM_TURN_FOLDER,
    NO_SYSTEM_TURN_TRAIN,
    REFUSES_SYSTEM,
    SENTIMENT_PAIRS,
    count_ids_many,
    kept_when_interrupted,
    refusing_system_copy,
    save_tiny_model,
    write_jsonl,
)
from tiny import read_jsonl as read

import directpo.generate as generate
import directpo.generate_files as generate_files
from directpo.cli import main
from directpo.config import DPOConfig
from directpo.errors import DataError
from directpo.seeded_sampling import SeededSampling


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model("llama", tmp_path_factory.mktemp("generate") / "llama")


def prompt_rows(count: int) -> list[dict]:
    return [
        {"id": i, "prompt": SENTIMENT_PAIRS[i % len(SENTIMENT_PAIRS)]["prompt"]}
        for i in range(count)
    ]


def stop_at_call(monkeypatch, number: int | None) -> list[int]:
    """sample_completions raises KeyboardInterrupt (a Ctrl-C) at its ``number``-th call (None:
    never); returns the sequences each call sampled in one forward pass."""
    calls: list[int] = []
    real = generate_files.sample_completions

    def sample(model, tokenizer, prompts, **kwargs):
        calls.append(min(len(prompts), kwargs["batch_size"]) * kwargs["num_samples"])
        if len(calls) == number:
            raise KeyboardInterrupt
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generate_files, "sample_completions", sample)
    return calls


@pytest.mark.parametrize("samples", [2, 3])
def test_a_stopped_generate_keeps_its_rows_and_the_same_command_continues(
    model, tmp_path, monkeypatch, capsys, samples
) -> None:
    """A Ctrl-C at prompt 9,000 of 10,000 lost every sample: generate held them all and wrote at
    the end, and one seeded stream ran through the file, so a second run could not take up
    where the first stopped. Now each call's rows are written as sampled, and each call is
    seeded from its first row: stopped (even mid-call, by a killed process) and continued, the
    output is the uninterrupted run's, row for row. batch_size counts sequences per forward
    pass (it counted prompts, each sampled num_return_sequences times): 3 samples with
    batch_size 2 are drawn 2, then 1."""
    rows = prompt_rows(7)
    batch_size = {2: 4, 3: 2}[samples]  # 2 prompts a call; 1 prompt a call, in 2 calls
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    out = tmp_path / "out" / "samples.jsonl"
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--max_new_tokens", "4", "--num_return_sequences", str(samples), "--batch_size",
            str(batch_size), "--output", str(out)]  # fmt: skip
    whole_path = tmp_path / "whole.jsonl"
    whole_calls = stop_at_call(monkeypatch, None)
    assert main([*args[:-1], str(whole_path)]) == 0
    assert max(whole_calls) == batch_size  # sequences per forward pass, at most
    whole = read(whole_path)
    assert [{k: r[k] for k in ("id", "prompt")} for r in whole] == rows  # order and fields kept
    assert all(len(r["completions"]) == samples for r in whole)
    assert len({json.dumps(r["completions"]) for r in whole}) > 1
    capsys.readouterr()
    stop_at_call(monkeypatch, 3)
    kept = kept_when_interrupted(main(args), capsys.readouterr().err, out, whole)
    calls = stop_at_call(monkeypatch, None)
    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"for 7 prompts to {out} ({len(kept)} of them from an earlier run that stopped)" in said
    assert read(out) == whole
    assert list(out.parent.iterdir()) == [out]
    assert 0 < len(calls) < len(whole_calls)  # the kept rows were not sampled again
    # a process killed mid-write: the staging file ends inside a call, with a cut line
    stop_at_call(monkeypatch, 3)
    assert main(args) == 130
    [staging] = [p for p in out.parent.iterdir() if p != out]
    lines = staging.read_text().splitlines(keepends=True)
    staging.write_text("".join(lines[:-1]) + lines[-1][:5])
    stop_at_call(monkeypatch, None)
    assert main(args) == 0
    assert read(out) == whole


def test_a_bad_row_is_one_line_before_the_model_loads_and_nothing_is_written(
    model, tmp_path, monkeypatch, capsys
) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before every row was checked")

    monkeypatch.setattr(generate_files, "load_causal_lm", refuse)
    # every bad row is said in the one line (each was a run of its own: the first stopped it),
    # a first line that is not JSON too (it stopped the reading of the file's column names)
    bad = [{"prompt": 5}, *prompt_rows(2), {"text": "x"}, {"prompt": "a", "completions": []}]
    data = write_jsonl(tmp_path / "prompts.jsonl", [*prompt_rows(4), *bad])
    data.write_text("not json\n" + data.read_text())
    out = tmp_path / "samples.jsonl"
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data)]
    assert main([*args, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"directpo: error: {data}: line 1: invalid JSON (Expecting value at column 1); line 6: "
        "field 'prompt' must be a string, got a number; line 9: missing field 'prompt'; line 10: "
        "the row already has a field 'completions', which generate would overwrite; name another "
        "with --completions_column"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]


def test_a_runs_prompt_column_system_turn_and_prompt_limit_are_its_config_yamls(
    model, tmp_path, capsys
) -> None:
    """generate from a run trained on a 'question' column with a system turn and a prompt
    limit sampled (or refused) its rows as plain prompts cut at 512 tokens unless each option
    was given again. Now those left unset are the run's, said in one line."""
    run = tmp_path / "run"
    shutil.copytree(model, run)
    DPOConfig(
        model_name_or_path=str(model), prompt_column="question", system_column="system",
        max_prompt_length=3,
    ).save_yaml(run / "config.yaml")  # fmt: skip
    rows = [{"question": r["prompt"], "system": f"Persona {r['id']}."} for r in prompt_rows(3)]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    args = ["generate", "--model_name_or_path", str(run), "--input", str(data),
            "--max_new_tokens", "4"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "a.jsonl")]) == 0
    assert (
        "from the run's config.yaml (no option gave them): prompt_column: question, "
        "system_column: system, max_prompt_length: 3\n"
    ) in capsys.readouterr().out
    given = ["--prompt_column", "question", "--system_column", "system", "--max_prompt_length", "3"]
    assert main([*args, *given, "--output", str(tmp_path / "b.jsonl")]) == 0
    assert "config.yaml" not in capsys.readouterr().out
    assert read(tmp_path / "a.jsonl") == read(tmp_path / "b.jsonl")


def test_out_of_memory_is_one_line_and_a_smaller_batch_size_continues_the_rows_kept(
    model, tmp_path, monkeypatch, capsys
) -> None:
    """Out of GPU memory, generate printed torch's traceback and kept its staging file without
    a word; lowering batch_size, the remedy, changed the staging key, so the rows kept were
    thrown away and sampled again. Now the error says to lower batch_size and where the rows
    are; a run with a smaller one continues them (its own rows as a run at that size)."""
    data = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows(6))
    out = tmp_path / "samples.jsonl"
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--max_new_tokens", "3", "--output", str(out)]  # fmt: skip
    real = generate_files.sample_completions
    calls = []

    def sample(model, tokenizer, prompts, **kwargs):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generate_files, "sample_completions", sample)
    assert main([*args, "--batch_size", "2"]) == 2
    [staging] = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1] == (
        "directpo: error: batch_size: out of memory after 2 rows; lower --batch_size (2 rows are "
        f"kept in {staging}; the same command continues from there, another batch_size too)"
    )
    kept = read(staging)
    calls.clear()
    monkeypatch.setattr(generate_files, "sample_completions", real)
    assert main([*args, "--batch_size", "1"]) == 0
    assert "(2 of them from an earlier run that stopped)" in capsys.readouterr().out
    assert read(out)[:2] == kept
    assert main([*args, "--batch_size", "1", "--output", str(tmp_path / "one.jsonl")]) == 0
    assert read(out)[2:] == read(tmp_path / "one.jsonl")[2:]


def test_min_p_and_repetition_penalty_reach_generate_and_change_the_samples(
    model, tmp_path, monkeypatch, capsys
) -> None:
    """generate takes the sampling options a run's online rounds take (TRL's min_p and
    repetition_penalty): a penalty reaches GenerationConfig and changes greedy samples, min_p
    changes sampled ones; min_p (top_p, top_k) beside greedy decoding, where transformers only
    warned and it changed nothing, is refused in one line."""
    from transformers import GenerationMixin

    seen: list[dict] = []
    real = GenerationMixin.generate

    def recording(self, *args, **kwargs):
        seen.append(kwargs["generation_config"].to_dict())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", recording)
    data = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows(3))

    def run(name: str, *flags: str) -> int:
        return main(["generate", "--model_name_or_path", str(model), "--input", str(data),
                     "--output", str(tmp_path / f"{name}.jsonl"), "--max_new_tokens", "12",
                     *flags])  # fmt: skip

    def completions(name: str, *flags: str) -> list:
        assert run(name, *flags) == 0
        return [row["completions"] for row in read(tmp_path / f"{name}.jsonl")]

    plain = completions("plain", "--temperature", "0")
    assert seen[-1]["repetition_penalty"] in (None, 1.0) and seen[-1]["min_p"] is None
    penalised = completions("penalised", "--temperature", "0", "--repetition_penalty", "2.0")
    assert seen[-1]["repetition_penalty"] == 2.0
    assert penalised != plain
    sampled = completions("sampled", "--seed", "3")
    assert completions("narrowed", "--seed", "3", "--min_p", "0.9") != sampled
    capsys.readouterr()
    assert run("greedy_min_p", "--temperature", "0", "--min_p", "0.05") == 2
    line = capsys.readouterr().err.strip()
    assert "--min_p 0.05 only shapes sampling, but --temperature 0 (" in line and "\n" not in line
    assert run("greedy_top", "--temperature", "0", "--top_p", "0.9", "--top_k", "5") == 2
    assert "--top_p 0.9 and --top_k 5 only shape sampling" in capsys.readouterr().err
    assert not (tmp_path / "greedy_min_p.jsonl").exists()
    assert run("x", "--min_p", "2") == 2


def test_a_row_that_has_completions_already_is_refused_and_another_field_can_be_named(
    model, tmp_path, capsys
) -> None:
    """generate wrote its samples over a 'completions' field the input rows already had (its
    own output fed back, a dataset's field), losing it without a word. Now such a row is
    refused in one line naming it and --completions_column, which writes them elsewhere."""
    rows = [{**r, "completions": [f"kept {r['id']}"]} for r in prompt_rows(3)]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--max_new_tokens", "3"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "a.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"directpo: error: {data}: line 1: the row already has a field 'completions', which "
        "generate would overwrite; name another with --completions_column (2 more rows like "
        "it: line 2, line 3)"
    ]
    assert not (tmp_path / "a.jsonl").exists()
    out = tmp_path / "b.jsonl"
    assert main([*args, "--output", str(out), "--completions_column", "second"]) == 0
    got = read(out)
    assert [r["completions"] for r in got] == [r["completions"] for r in rows]
    assert all(len(r["second"]) == 1 and isinstance(r["second"][0], str) for r in got)


def test_the_samples_of_a_row_depend_on_the_seed_and_the_row_not_on_batch_size(
    model, tmp_path
) -> None:
    """The same --seed with another --batch_size sampled other completions: every prompt of a
    call drew from one shared stream. Now each completion draws from its own generator (the
    seed, the row's index, its number), so batch_size changes only the speed; another seed
    still samples others, and a prompt's completions differ from each other."""
    data = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows(5))
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--max_new_tokens", "6", "--num_return_sequences", "3", "--top_k", "50"]  # fmt: skip
    got = {}
    for size, seed in ((1, 7), (3, 7), (16, 7), (3, 8)):
        out = tmp_path / f"b{size}-s{seed}.jsonl"
        assert (
            main([*args, "--batch_size", str(size), "--seed", str(seed), "--output", str(out)]) == 0
        )
        got[size, seed] = [row["completions"] for row in read(out)]
    assert got[1, 7] == got[3, 7] == got[16, 7]
    assert got[3, 8] != got[3, 7]
    assert all(len(set(texts)) == 3 for texts in got[1, 7])


def test_seeded_sampling_draws_from_the_warped_distribution() -> None:
    """The Gumbel-max draw of SeededSampling samples softmax(scores): its frequencies over
    many seeded rows match the probabilities, and the same seed draws the same token."""
    scores = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0]))
    rows = 20000
    processor = SeededSampling(range(rows))
    drawn = processor(None, scores.expand(rows, -1).clone()).argmax(-1)
    frequencies = torch.bincount(drawn, minlength=5).double() / rows
    assert frequencies.tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05, 0.0], abs=0.015)
    again = SeededSampling([5, 5, 6])(None, scores.expand(3, -1).clone()).argmax(-1)
    assert again[0] == again[1] == drawn[5] and again[2] == drawn[6]


@pytest.mark.parametrize(("prompts", "seeds"), [(4, 6), (5, 6), (5, 3)])
def test_seeds_not_one_a_prompt_are_refused_before_sampling(model, prompts, seeds) -> None:
    """sample_completions(seeds=...) with more seeds than prompts dropped the surplus when the
    prompts filled their last batch (4 prompts, batch 4) and failed mid-run with zip's
    ValueError when they did not (5 prompts); fewer seeds failed so too. Each is refused in
    one line before anything is sampled."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model)
    calls = []
    policy.generate = lambda *args, **kwargs: calls.append(kwargs)  # no batch is sampled
    texts = (row["prompt"] for row in prompt_rows(prompts))  # (any iterable of prompts)
    with pytest.raises(generate.ConfigError) as refused:
        generate.sample_completions(
            policy, tokenizer, texts, max_new_tokens=2, batch_size=4, seeds=list(range(seeds))
        )
    assert str(refused.value) == f"seeds: {seeds} given for {prompts} prompts; give one a prompt"
    assert calls == []


def test_prompts_cut_to_max_prompt_length_are_said(model, tmp_path, capsys) -> None:
    """generate cut a prompt longer than max_prompt_length from the left and sampled from its
    last tokens without a word (score says what it truncated). Now it says how many."""
    rows = [{"prompt": "word " * 40}, {"prompt": "short"}]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--output", str(tmp_path / "o.jsonl"), "--max_new_tokens", "2",
            "--max_prompt_length", "8", "--num_return_sequences", "3",
            "--batch_size", "2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 prompt longer than max_prompt_length 8 tokens was cut from the left\n" in out


@pytest.mark.parametrize(("new_tokens", "text"), [(3, "é"), (2, "é"), (1, "")])
def test_a_completion_cut_inside_a_character_ends_before_it(model, new_tokens, text) -> None:
    """A completion cut at max_new_tokens inside a character (CJK, emoji: several byte tokens)
    was written with U+FFFD ("é" + half of the next: "é\ufffd"), a character the model never
    wrote, which rank then scored as other tokens; its text now ends before it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model)
    lead, tail = tokenizer.convert_tokens_to_ids(["Ã", "©"])  # "é" is bytes C3 A9
    # greedy: C3 first, A9 after C3, then C3 again: "é" and the first byte of another
    bias = {(lead,): 50.0, (lead, tail): 200.0}
    (sample,) = generate.sample_completions(
        policy, tokenizer, ["The movie was"], max_new_tokens=new_tokens, temperature=0,
        extras={"sequence_bias": bias},
    )  # fmt: skip
    assert sample.completion_ids == [lead, tail, lead][:new_tokens]  # trained as sampled
    assert sample.text == text


def test_an_unread_system_column_is_said_by_generate_and_score(model, tmp_path, capsys) -> None:
    """A prompts file with a ``System`` column beside the prompt: train says the column is not
    read (its prompts go without it), but generate, score and rank sampled and scored without
    a word. They now say it as train does, with the flag that reads it; a row whose prompt
    already holds the text, or ``--system_column ''`` (none, on purpose), is not said."""
    rows = [
        {"prompt": "Hi", "System": "Be brief.", "chosen": " a", "rejected": " b"},
        {"prompt": "Be brief. Hi", "System": "Be brief.", "chosen": " a", "rejected": " b"},
    ]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    common = ["--model_name_or_path", str(model), "--input", str(data)]
    said = (
        "column 'System' is not read: 1 row goes without the system prompt it holds "
        "(--system_column System makes it their system turn)\n"
    )
    args = ["generate", *common, "--max_new_tokens", "1"]
    assert main([*args, "--output", str(tmp_path / "g.jsonl")]) == 0
    assert said in capsys.readouterr().out
    assert main([*args, "--output", str(tmp_path / "h.jsonl"), "--system_column", ""]) == 0
    assert "is not read" not in capsys.readouterr().out
    scored = [*common, "--ref_model_name_or_path", str(model), "--beta", "0.1"]
    assert main(["score", *scored, "--output", str(tmp_path / "s.jsonl")]) == 0
    assert said in capsys.readouterr().out
    # generate_file / score_file with options built in Python were told the flag: the keyword
    from directpo.command_options import GenerateOptions, ScoreOptions
    from directpo.reward_files import score_file

    keyword = said.replace("--system_column System", "system_column='System'").rstrip("\n")
    lines: list[str] = []
    generate_files.generate_file(
        GenerateOptions(model_name_or_path=str(model), input=str(data), max_new_tokens=1,
                        output=str(tmp_path / "p.jsonl")), lines.append,
    )  # fmt: skip
    score_file(
        ScoreOptions(model_name_or_path=str(model), ref_model_name_or_path=str(model), beta=0.1,
                     input=str(data), output=str(tmp_path / "ps.jsonl")), lines.append,
    )  # fmt: skip
    assert lines.count(keyword) == 2, lines
    # and a row holding the column generate writes, told the keyword that names another
    taken = write_jsonl(tmp_path / "taken.jsonl", [{"prompt": "Hi", "completions": []}])
    with pytest.raises(DataError) as error:
        generate_files.generate_file(
            GenerateOptions(model_name_or_path=str(model), input=str(taken),
                            output=str(tmp_path / "t.jsonl")), lines.append,
        )  # fmt: skip
    assert str(error.value).endswith("name another with completions_column=...")


def test_a_vlm_never_samples_its_image_token_so_its_samples_can_be_scored() -> None:
    """A policy that drew its image token (Mistral 3's [IMG] here, made the likeliest token)
    wrote a completion its own forward takes for an image's features: eval_generate's KL
    stopped the run with 'Image features and image tokens do not match'. Sampling now never
    draws a VLM's image placeholder tokens (a user's suppress_tokens kept), and the samples
    score."""
    from tiny_vlm import build_vlm, make_image

    from directpo.data import ImagePrompt
    from directpo.eval_samples import samples_logprobs

    model, processor = build_vlm("mistral3")
    image_id = model.config.image_token_index
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[image_id] = 100.0  # the image token, else the pad token, is the likeliest
        biased.bias[processor.tokenizer.pad_token_id] = 50.0
    model.lm_head = biased
    parts = [{"type": "image"}, {"type": "text", "text": "What is it?"}]
    prompt = ImagePrompt([{"role": "user", "content": parts}], (make_image(seed=1),))
    samples = generate.sample_completions(
        model, processor.tokenizer, [prompt], max_new_tokens=3, temperature=0,
        processor=processor, extras={"suppress_tokens": [processor.tokenizer.pad_token_id]},
    )  # fmt: skip
    (sample,) = samples
    assert len(sample.completion_ids) == 3
    assert image_id not in sample.completion_ids
    assert processor.tokenizer.pad_token_id not in sample.completion_ids
    logps, _ = samples_logprobs(samples, model, None, 2, torch.device("cpu"), 1)
    assert logps.isfinite().all()


def test_completions_that_drew_special_tokens_are_said(model, tmp_path, capsys, monkeypatch):
    """A sample that drew a special token mid-reply (<|im_start|>, not a stop) was written
    decoded without it, as TRL and vLLM write text, without a word: rank / score of the file
    then read other tokens than were sampled. The count is said once, by token; a reply
    ending with its stop token (</s>) is not counted."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    start, eos = tokenizer.convert_tokens_to_ids(["<|im_start|>", "</s>"])
    word = tokenizer.encode(" good", add_special_tokens=False)
    real = generate_files.sample_completions
    drawn = iter([word + [start] + word, word + [eos], [start, eos], word])

    def sample(*args, **kwargs):
        samples = real(*args, **kwargs)
        for one in samples:
            one.completion_ids = next(drawn)
            one.text = tokenizer.decode(one.completion_ids, skip_special_tokens=True)
        return samples

    monkeypatch.setattr(generate_files, "sample_completions", sample)
    data = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows(2))
    out = tmp_path / "o.jsonl"
    args = ["generate", "--model_name_or_path", str(model), "--input", str(data),
            "--output", str(out), "--max_new_tokens", "3",
            "--num_return_sequences", "2"]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    assert (
        "2 completions drew the tokenizer's special tokens mid-reply (<|im_start|> in 2), " in said
    )
    assert [row["completions"] for row in read(out)] == [[" good good", " good"], ["", " good"]]
    drawn = iter([word + [eos], word] * 2)
    assert main([*args[:6], str(tmp_path / "clean.jsonl"), *args[7:]]) == 0
    assert "special tokens" not in capsys.readouterr().out
    drawn = iter([word + [start] + word, word + [eos], [start, eos], word])
    kept = [*args[:6], str(tmp_path / "kept.jsonl"), *args[7:], "--keep_special_tokens"]
    assert main(kept) == 0
    assert "special tokens" not in capsys.readouterr().out  # (none dropped)
    assert "(--keep_special_tokens writes them)" in said
    # generate_file with options built in Python was told the flag: its keyword now
    from directpo.command_options import GenerateOptions

    drawn = iter([word + [start] + word, word + [eos], [start, eos], word])
    lines: list[str] = []
    generate_files.generate_file(
        GenerateOptions(model_name_or_path=str(model), input=str(data), max_new_tokens=3,
                        num_return_sequences=2, output=str(tmp_path / "py.jsonl")), lines.append,
    )  # fmt: skip
    assert any(line.endswith("(keep_special_tokens=True writes them)") for line in lines), lines


def test_keep_special_tokens_writes_those_drawn_mid_reply(model) -> None:
    """The text of a completion that drew <|im_start|> keeps it with keep_special (the
    tokens sampled, which score and rank read back); its stop token stays out of it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model)
    start, eos = tokenizer.convert_tokens_to_ids(["<|im_start|>", "</s>"])
    word = tokenizer.encode(" good", add_special_tokens=False)[0]
    bias = {(start,): 100.0, (start, word): 300.0, (word, eos): 300.0}  # start, word, eos
    texts = []
    for keep in (False, True):
        (sample,) = generate.sample_completions(
            policy, tokenizer, ["The movie was"], max_new_tokens=4, temperature=0,
            extras={"sequence_bias": bias}, keep_special=keep,
        )  # fmt: skip
        assert sample.completion_ids == [start, word, eos]
        texts.append(sample.text)
    assert texts == [tokenizer.decode([word]), "<|im_start|>" + tokenizer.decode([word])]


def test_the_check_before_loading_encodes_a_batch_of_prompts_in_one_call(
    model, tmp_path, monkeypatch, capsys
) -> None:
    """generate's check of every prompt called the tokenizer once per row (most of a large
    file's time before the model loaded); now once per batch of rows, and a prompt the chat
    template refuses is still said in the file's order among rows refused for their fields."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before every row was checked")

    monkeypatch.setattr(generate_files, "load_causal_lm", refuse)
    monkeypatch.setattr("directpo.prompts.CHECKED_TOGETHER", 4, raising=False)
    calls = count_ids_many(monkeypatch)
    strict = refusing_system_copy(model, tmp_path / "strict")
    chat = [{"role": "user", "content": "Hi"}]
    system = [{"role": "system", "content": "Be nice"}, *chat]
    rows = [{"prompt": chat} for _ in range(9)]
    rows[1] = {"prompt": system}  # refused by the template
    rows[2] = {"prompt": 5}  # refused for its field, in the same batch
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    args = ["generate", "--model_name_or_path", str(strict), "--input", str(data)]
    assert main([*args, "--output", str(tmp_path / "samples.jsonl")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"directpo: error: {data}: line 2: the chat template refused the row (no system)"
        f"{NO_SYSTEM_TURN_FOLDER}; line 3: field 'prompt' must be a string, got a number"
    )
    # the 8 rows that parse, 4 at a time (lines 1, 2, 4, 5: line 2 refused when rendered), one
    # call a row before
    assert calls == [3, 4]


def test_a_prompt_files_check_before_training_encodes_a_batch_in_one_call(monkeypatch) -> None:
    """check_prompts (an online run's prompt_file, held-out prompts) called the tokenizer once
    per prompt; now once per batch, each refused prompt still named in order."""
    from tiny import build_tokenizer

    from directpo.tokenization import TOKENIZE_BATCH

    calls = count_ids_many(monkeypatch)
    tokenizer = build_tokenizer("llama")
    tokenizer.chat_template = REFUSES_SYSTEM
    chat = [{"role": "user", "content": "Hi"}]
    system = [{"role": "system", "content": "Be"}, *chat]
    prompts = [chat] * (TOKENIZE_BATCH + 5)
    prompts[3] = prompts[TOKENIZE_BATCH + 1] = system
    with pytest.raises(DataError) as info:
        generate.check_prompts(tokenizer, prompts, "prompts.jsonl")
    said = str(info.value)
    assert said.startswith('prompts.jsonl: prompt 4 ([{"role": "system", "content": "Be"}')
    assert said.endswith(
        f"...): the chat template refused the row (no system){NO_SYSTEM_TURN_TRAIN} (1 more "
        "row like it: prompt "
        f"{TOKENIZE_BATCH + 2})"
    )
    assert calls == [TOKENIZE_BATCH - 1, 4]  # (the refused ones are not tokenized)
    calls.clear()
    assert generate.check_prompts(tokenizer, [chat] * 3, "p") == 3 and calls == [3]


def test_a_template_without_a_generation_prompt_is_noted_before_sampling(tmp_path, capsys) -> None:
    """A model folder whose chat template has no add_generation_prompt branch renders each
    prompt without the assistant's header, so the model writes it first and every completion
    held it ('assistant\\nHello'), without a word; generate now says so, naming the header. A
    folder whose template writes it says nothing."""
    from tiny import CHATML_TEMPLATE

    folder = save_tiny_model("gpt2", tmp_path / "m")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": [{"role": "user", "content": "Hi"}]}])
    without = CHATML_TEMPLATE.split("{% if add_generation_prompt %}")[0]
    said = {}
    for name, template in (("without", without), ("with", CHATML_TEMPLATE)):
        (folder / "chat_template.jinja").write_text(template)
        argv = ["generate", "--model_name_or_path", str(folder), "--input", str(prompts),
                "--output", str(tmp_path / f"{name}.jsonl"), "--max_new_tokens", "2"]  # fmt: skip
        assert main(argv) == 0
        captured = capsys.readouterr()
        lines = (captured.out + captured.err).splitlines()
        said[name] = [line for line in lines if "generation prompt" in line]
    assert said == {
        "without": [
            "note: the chat template writes no generation prompt (it has no "
            "add_generation_prompt branch), so the model begins each sample by writing the "
            "assistant turn's header ('<|im_start|>assistant\\n') itself, which the completions "
            "hold"
        ],
        "with": [],
    }
