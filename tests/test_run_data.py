"""What a run reads before any model loads (run_data.py): notes said once at start, and what
it keeps of the rows."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch
from tiny import (
    NO_SYSTEM_TURN_TRAIN,
    REFUSES_SYSTEM,
    SENTIMENT_PAIRS,
    save_tiny_model,
    tiny_config,
    with_skip_hint,
    write_jsonl,
)

from directpo import run_data
from directpo.data import PreferenceExample
from directpo.errors import DataError
from directpo.run_data import load_run_data

USER = {"role": "user", "content": "weather in Paris?"}
CHECK = {"role": "assistant", "content": "let me check"}


def start_lines(config, rows, about: str = "does not write") -> list[str]:
    """The lines a run says about ``about`` while it reads ``rows`` (before any model loads)."""
    lines: list[str] = []
    load_run_data(config, rows, None, torch.device("cpu"), lines.append)
    return [line for line in lines if about in line]


def test_completions_with_turns_the_model_does_not_write_are_said_at_start(tmp_path: Path) -> None:
    folder = save_tiny_model("gpt2", tmp_path / "m")
    reply = {"role": "assistant", "content": "sunny"}
    rows = [
        {"prompt": [USER], "chosen": [reply], "rejected": [{"role": "assistant", "content": "no"}]},
        {
            "prompt": [USER],
            "chosen": [CHECK, {"role": "tool", "content": "22C"}, reply],
            "rejected": [{"role": "assistant", "content": "no idea"}],
        },
    ]
    config = tiny_config(folder, None, tmp_path / "out")
    assert start_lines(config, rows) == [
        "note: train: 1 pair's completions hold messages the model does not write (first: "
        "train_dataset: row 2, a 'tool' message): their tokens train as the policy's own (as "
        "in TRL); set assistant_only_loss: true to score only its replies"
    ]
    # (as each caller sets it: 'set assistant_only_loss true' was said to all, as none writes it)
    from directpo.callers import Caller, Entry, Spelling, called_by

    for spelling, on in (
        (Spelling.FLAGS, "; give --assistant_only_loss to score only its replies"),
        (Spelling.PYTHON, "; pass assistant_only_loss=True to score only its replies"),
    ):
        with called_by(Caller(spelling, Entry.TRAIN)):
            (line,) = start_lines(config, rows)
        assert line.endswith(on), line
    masked = tiny_config(folder, None, tmp_path / "out", assistant_only_loss=True)
    assert start_lines(masked, rows) == [
        "note: train: 1 pair's completions hold messages the model does not write (first: "
        "train_dataset: row 2, a 'tool' message): their tokens are left out of the log-probs "
        "(assistant_only_loss)"
    ]
    assert start_lines(masked, rows[:1], "assistant_only_loss") == [
        "note: train: assistant_only_loss changes nothing: no completion holds a message the "
        "model does not write (a tool's result, a user turn)"
    ]
    assert not start_lines(config, rows[:1])


def test_hh_completions_that_go_on_past_the_reply_are_said_at_start(tmp_path: Path) -> None:
    # Anthropic HH rows whose conversations part at an earlier turn: the chosen completion
    # holds the user's next turn, trained as the policy's own; said for messages, not texts
    folder = save_tiny_model("gpt2", tmp_path / "m")
    ask = "\n\nHuman: A?\n\nAssistant:"
    on = f"{ask} B.\n\nHuman: C?\n\nAssistant: D."
    rows = [
        {"chosen": f"{ask} Yes.", "rejected": f"{ask} No."},
        {"chosen": on, "rejected": f"{ask} X."},
    ]
    config = tiny_config(folder, None, tmp_path / "out")
    notes = start_lines(config, rows)
    assert len(notes) == 1 and "(first: train_dataset: row 2, a 'Human' message)" in notes[0]
    masked = tiny_config(folder, None, tmp_path / "out", assistant_only_loss=True)
    assert start_lines(masked, rows)[0].endswith(
        "message): those of 1 text completions (an HH transcript's 'Human' turn) train as the "
        "policy's own, as assistant_only_loss finds turns in messages only: end each text "
        "completion before its next 'Human:' turn"
    )
    assert not start_lines(config, rows[:1])


def test_an_adapter_folders_completions_end_at_its_bases_stop_tokens(tmp_path: Path) -> None:
    from directpo.run_tokenizing import run_stop_ids

    base = save_tiny_model("gpt2", tmp_path / "base")
    (base / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    adapter = tmp_path / "adapter"  # a LoRA run's output: adapter files, no config.json
    adapter.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):  # and its own tokenizer
        (adapter / name).write_bytes((base / name).read_bytes())
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(base), "peft_type": "LORA"})
    )
    assert run_stop_ids(tiny_config(adapter, None, tmp_path / "out")) == [0, 2]
    assert run_stop_ids(tiny_config(base, None, tmp_path / "out")) == [0, 2]


def test_chat_template_names_a_jinja_file_a_json_file_or_a_folder(tmp_path: Path) -> None:
    import pytest

    from directpo.errors import ConfigError

    folder = save_tiny_model("gpt2", tmp_path / "m")
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    other = tmp_path / "other"  # another model's folder, as TRL's chat_template_path takes
    other.mkdir()
    (other / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    (tmp_path / "t.jinja").write_text(template)
    named = [{"name": "default", "template": template}, {"name": "tool_use", "template": "x"}]
    (tmp_path / "named.json").write_text(json.dumps({"chat_template": named}))
    rows = [{"prompt": [USER], "chosen": "sunny", "rejected": "no"}]
    for given in ("t.jinja", "chat_template.json", "named.json", "other"):
        config = tiny_config(folder, None, tmp_path / "out", chat_template=str(tmp_path / given))
        data = load_run_data(config, rows, None, torch.device("cpu"), lambda line: None)
        # (a JSON file was the template itself: every prompt rendered as '{"chat_template": ...')
        assert data.tokenizer.chat_template == template, given
        assert data.tokenizer.decode(data.train.pairs[0].prompt_ids).startswith("[user] weather")
    (tmp_path / "bad.json").write_text(json.dumps({"template": template}))
    (tmp_path / "empty").mkdir()
    for given, message in (("bad.json", "JSON without a chat_template"), ("empty", "no chat")):
        config = tiny_config(folder, None, tmp_path / "out", chat_template=str(tmp_path / given))
        with pytest.raises(ConfigError, match=f"^chat_template: .*{message}"):
            load_run_data(config, rows, None, torch.device("cpu"), lambda line: None)


def test_the_validated_rows_are_let_go_once_tokenized(tiny_model_dirs, tmp_path) -> None:
    """A run held every validated row (its texts: 400-600 MB for 100k pairs) while its models
    loaded and trained, for one summary line: only the tokenized pairs and that line are kept."""
    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs, tmp_path / "out", eval_file=str(pairs))
    said: list[str] = []
    data = load_run_data(config, None, None, torch.device("cpu"), said.append)
    gc.collect()
    # (other test modules hold examples of their own: only this file's rows count)
    kept = [o for o in gc.get_objects() if type(o) is PreferenceExample]
    assert not [o for o in kept if str(pairs) in o.where]
    assert len(data.train.pairs) == len(SENTIMENT_PAIRS)
    assert data.train_data.summary() == f"{pairs}: {len(SENTIMENT_PAIRS)} pairs, layout explicit"
    assert said[0] == f"train: {data.train_data.summary()}"


def test_the_memory_of_the_rows_let_go_is_handed_back(tiny_model_dirs, tmp_path, monkeypatch):
    """Once tokenized, the rows' texts were freed into the main thread's malloc arena, which
    kept them (20k chat rows: 483 of 489 MB still held; 200k: about a GB in every process for
    the whole run): the heap is now trimmed, once, after the last of them is let go."""
    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs, tmp_path / "out", eval_file=str(pairs))
    alive: list[int] = []

    def trimmed() -> None:
        gc.collect()
        kept = [o for o in gc.get_objects() if type(o) is PreferenceExample]
        alive.append(len([o for o in kept if str(pairs) in o.where]))

    monkeypatch.setattr(run_data, "give_back_freed_memory", trimmed)
    load_run_data(config, None, None, torch.device("cpu"), lambda line: None)
    assert alive == [0]
    run_data.give_back_freed_memory()  # (the real one: harmless wherever it runs)


def test_a_stream_with_max_steps_is_read_only_as_far_as_the_run_trains(tmp_path: Path) -> None:
    """An endless IterableDataset (``load_dataset(..., streaming=True)``) with max_steps was
    read until memory ran out, before the first step; now its first max_steps × pairs-per-step
    rows are read, as TRL's run reads them (``world_size`` processes take that many each step)."""
    import datasets

    folder = save_tiny_model("gpt2", tmp_path / "m")
    read: list[int] = []

    def endless():  # noqa: ANN202
        number = 0
        while True:
            number += 1
            read.append(number)
            yield {"prompt": f"Q: {number}?", "chosen": " yes", "rejected": " no"}

    stream = datasets.IterableDataset.from_generator(endless)
    lines: list[str] = []
    config = tiny_config(
        folder, None, tmp_path / "out", max_steps=3, per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
    )  # fmt: skip
    data = load_run_data(config, stream, None, torch.device("cpu"), lines.append, world_size=2)
    assert len(data.train.pairs) == 3 * 2 * 2 * 2
    assert len(read) < 100  # (a generator may run a row or two ahead)
    assert any("its first 24 pairs are read" in line for line in lines)
    # rows skipped as invalid do not count: the steps get the pairs they take (they were fewer,
    # and the last steps trained the first pairs again)
    gappy = datasets.IterableDataset.from_generator(
        lambda: ({"prompt": "Q"} if n % 3 == 0 else row for n, row in enumerate(endless()))
    )
    config.skip_invalid_rows = True
    data = load_run_data(config, gappy, None, torch.device("cpu"), lines.append, world_size=2)
    assert len(data.train.pairs) == 24
    # without max_steps a (finite) stream is read whole, and said to be
    lines.clear()
    finite = datasets.IterableDataset.from_generator(lambda: (row for row in SENTIMENT_PAIRS))
    config = tiny_config(folder, None, tmp_path / "all", max_steps=-1)
    data = load_run_data(config, finite, None, torch.device("cpu"), lines.append)
    assert len(data.train.pairs) == len(SENTIMENT_PAIRS)
    assert any("without max_steps: it is read whole" in line for line in lines)
    # a stream shorter than max_steps takes: said as what happens (it was "its first N pairs
    # are read" of a stream of fewer, which the run then went over again)
    lines.clear()
    steps = len(SENTIMENT_PAIRS)  # of 2 pairs each: twice the stream
    config = tiny_config(folder, None, tmp_path / "short", max_steps=steps,
                         per_device_train_batch_size=2)  # fmt: skip
    data = load_run_data(config, finite, None, torch.device("cpu"), lines.append)
    assert len(data.train.pairs) == len(SENTIMENT_PAIRS)
    assert lines[0] == (
        f"train_dataset: a stream (IterableDataset): it ends after {len(SENTIMENT_PAIRS)} pairs, "
        f"fewer than the {2 * steps} of {steps} steps of 2 pairs (max_steps): the run goes over "
        "them again, 2 passes, each in the stream's order as TRL reads it "
        "(stream.shuffle(seed=..., buffer_size=...) mixes it)"
    )


def test_the_bad_rows_of_the_train_file_and_of_each_eval_file_are_said_together(
    tiny_model_dirs, tmp_path: Path
) -> None:
    """A bad eval file was said only once the train file's rows were fixed (two runs, the
    second perhaps after minutes of reading); every file's bad rows are now one line."""
    import pytest

    from directpo.errors import DataError

    good = SENTIMENT_PAIRS[0]
    train = write_jsonl(tmp_path / "train.jsonl", [good, {**good, "chosen": ""}])
    chat = write_jsonl(tmp_path / "chat.jsonl", [good, {"prompt": "a", "rejected": "b"}])
    code = write_jsonl(tmp_path / "code.jsonl", [good, good])
    config = tiny_config(tiny_model_dirs["llama"], train, tmp_path / "out",
                         eval_file={"chat": str(chat), "code": str(code)})  # fmt: skip
    with pytest.raises(DataError) as err:
        load_run_data(config, None, None, torch.device("cpu"), lambda _: None)
    assert str(err.value) == (
        f"{train}: line 2: field 'chosen' is empty; {chat}: line 2: missing field 'chosen'; "
        "skip_invalid_rows: true skips them"  # (one row a file: said once, after the last)
    )
    # one file given as train and eval file: its bad row said once, not twice
    config = tiny_config(tiny_model_dirs["llama"], train, tmp_path / "out", eval_file=str(train))
    with pytest.raises(DataError) as err:
        load_run_data(config, None, None, torch.device("cpu"), lambda _: None)
    assert str(err.value) == with_skip_hint(f"{train}: line 2: field 'chosen' is empty", "recipe")
    # ... and streamed, read only as far as max_steps takes it: the row said once too
    write_jsonl(train, [good, {**good, "chosen": ""}, good, {"prompt": "p"}])
    config = tiny_config(tiny_model_dirs["llama"], train, tmp_path / "out", eval_file=str(train),
                         dataset_streaming=True, per_device_train_batch_size=2)  # fmt: skip
    with pytest.raises(DataError) as err:
        load_run_data(config, None, None, torch.device("cpu"), lambda _: None)
    assert str(err.value) == (
        f"{train}: line 2: field 'chosen' is empty; line 4: missing field 'chosen'; "
        "skip_invalid_rows: true skips them"
    )
    # rows refused when tokenized (a system message the template refuses) likewise
    template = REFUSES_SYSTEM
    user = [{"role": "user", "content": "Hi"}]
    pair = {"prompt": user, "chosen": [{"role": "assistant", "content": "Hello"}],
            "rejected": [{"role": "assistant", "content": "No"}]}  # fmt: skip
    bad = {**pair, "prompt": [{"role": "system", "content": "Be nice"}, *user]}
    train = write_jsonl(tmp_path / "train.jsonl", [pair, bad])
    chat = write_jsonl(tmp_path / "chat.jsonl", [bad, pair])
    config = tiny_config(tiny_model_dirs["llama"], train, tmp_path / "out", chat_template=template,
                         eval_file={"chat": str(chat), "code": str(code)})  # fmt: skip
    with pytest.raises(DataError) as err:
        load_run_data(config, None, None, torch.device("cpu"), lambda _: None)
    refused = f"the chat template refused the row (no system){NO_SYSTEM_TURN_TRAIN}"
    assert str(err.value) == with_skip_hint(
        f"{train}: line 2: {refused}; {chat}: line 1: {refused}", "recipe"
    )


def _endless_pairs(read: list[int], cap: int = 2_000):  # noqa: ANN202
    """An endless generator of pairs, counting what was read; past ``cap`` rows it raises, so
    that a run reading it whole fails instead of hanging."""
    number = 0
    while True:
        number += 1
        if number > cap:
            raise RuntimeError(f"read past {cap} rows of an endless stream")
        read.append(number)
        yield {"prompt": f"Q: {number}?", "chosen": " yes", "rejected": " no"}


def test_held_out_sets_are_read_only_as_far_as_max_eval_samples(tmp_path: Path) -> None:
    """An endless IterableDataset given as eval_dataset was read whole before the first step
    (it never ended); max_eval_samples reads only each set's first N rows, of a stream or a
    file (the rest never read), and a stream without it is said to be read whole."""
    import datasets

    folder = save_tiny_model("gpt2", tmp_path / "m")
    read: list[int] = []
    stream = datasets.IterableDataset.from_generator(lambda: _endless_pairs(read))
    pairs = write_jsonl(tmp_path / "eval.jsonl", SENTIMENT_PAIRS + [{"broken": 1}])
    config = tiny_config(folder, None, tmp_path / "out", max_eval_samples=5)
    lines: list[str] = []
    evals = {"endless": stream, "file": [str(pairs), str(pairs)]}
    data = load_run_data(config, SENTIMENT_PAIRS, evals, torch.device("cpu"), lines.append)
    assert len(data.evaluations["endless"].pairs) == 5
    assert data.evaluations["endless"].sources[-1] == "eval_dataset['endless']: row 5"
    assert len(read) < 100  # (a generator may run a row or two ahead)
    # a file's bad last row is never read: the first five rows are the set
    assert len(data.evaluations["file"].pairs) == 5
    assert not any("without max_eval_samples" in line for line in lines)
    lines.clear()
    finite = datasets.IterableDataset.from_generator(lambda: (row for row in SENTIMENT_PAIRS))
    config = tiny_config(folder, None, tmp_path / "all")
    data = load_run_data(config, SENTIMENT_PAIRS, finite, torch.device("cpu"), lines.append)
    assert len(data.evaluations[""].pairs) == len(SENTIMENT_PAIRS)
    assert any("without max_eval_samples: it is read whole" in line for line in lines)


def test_online_dpo_reads_of_a_stream_only_the_prompts_its_rounds_sample(tmp_path: Path) -> None:
    """Online DPO read an endless stream of prompts whole before the first round (it never
    ended); with max_steps it reads the prompts of its rounds: ceil(max_steps / steps_per_round)
    rounds of online_prompts_per_round."""
    import datasets

    folder = save_tiny_model("gpt2", tmp_path / "m")
    rewards = tmp_path / "rewards.py"
    rewards.write_text(
        "def length(prompts, completions, **kw):\n    return [len(c) for c in completions]\n"
    )
    read: list[int] = []

    def prompts():  # noqa: ANN202
        yield from ({"prompt": row["prompt"]} for row in _endless_pairs(read))

    stream = datasets.IterableDataset.from_generator(prompts)
    config = tiny_config(
        folder, None, tmp_path / "out", online=True, reward_fn=f"{rewards}:length", max_steps=3,
        steps_per_round=2, online_prompts_per_round=4,
    )  # fmt: skip
    lines: list[str] = []
    data = load_run_data(config, stream, None, torch.device("cpu"), lines.append)
    assert [str(p) for p in data.online_prompts] == [f"Q: {n}?" for n in range(1, 9)]
    assert len(read) < 100
    assert any("its first 8 rows are read, 2 online rounds of 4 prompts" in line for line in lines)


def test_dataset_streaming_reads_a_dataset_folder_as_a_stream(tmp_path: Path) -> None:
    """dataset_streaming with dataset_name (a local folder of data files) loads its splits with
    load_dataset(..., streaming=True), offline: the train split's first max_steps × pairs per
    step pairs are read, and the test split is a stream whose reading the run says."""
    folder = save_tiny_model("gpt2", tmp_path / "m")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", SENTIMENT_PAIRS * 3)
    config = tiny_config(
        folder, None, tmp_path / "out", dataset_name=str(data_dir), dataset_streaming=True,
        max_steps=1, per_device_train_batch_size=2,
    )  # fmt: skip
    lines: list[str] = []
    data = load_run_data(config, None, None, torch.device("cpu"), lines.append)
    assert len(data.train.pairs) == 2 and data.train.streamed
    assert len(data.evaluations[""].pairs) == 3 * len(SENTIMENT_PAIRS)
    assert any(line.startswith("train: dataset_streaming: its first 2 pairs") for line in lines)
    assert any("[test]: a stream (IterableDataset) without max_eval_samples" in x for x in lines)


def test_a_mixtures_bad_rows_and_the_eval_files_are_said_in_one_run(
    tiny_model_dirs, tmp_path: Path
) -> None:
    """A dataset_mixture's bad rows were said alone (an eval_file's bad rows, read after it,
    came with the next run), where train_file's are said with the eval file's."""
    import pytest

    from directpo.errors import DataError

    good = {"prompt": "a", "chosen": " b", "rejected": " c"}
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [good, {**good, "chosen": ""}])
    held = write_jsonl(tmp_path / "held.jsonl", [good, {**good, "rejected": " b"}])
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out", eval_file=str(held),
                         dataset_mixture={"datasets": [{"id": str(mixed)}]})  # fmt: skip
    with pytest.raises(DataError) as info:
        load_run_data(config, None, None, torch.device("cpu"), lambda line: None)
    assert str(info.value) == (
        f"{mixed}: line 2: field 'chosen' is empty; {held}: line 2: chosen and rejected are "
        "identical; skip_invalid_rows: true skips them"
    )


def test_rows_other_columns_are_kept_only_where_a_reward_fn_is_given_them(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """Each validated pair held its row's other columns, for a reward_fn: an HH row's whole
    chosen and rejected conversations (UltraFeedback's ``messages`` too) beside the pair split
    from them, the texts twice or more while 100k rows were tokenized, in runs that give no
    reward_fn any row. A system prompt column (the start line's note) is still read."""
    from directpo import run_tokenizing

    hh = [
        {"chosen": f"\n\nHuman: hi {i}\n\nAssistant: hello", "rejected": f"\n\nHuman: hi {i}"
         "\n\nAssistant: go away", "source": "hh"}
        for i in range(3)
    ]  # fmt: skip
    explicit = [
        {**row, "system": "be kind", "messages": [{"role": "user", "content": row["prompt"]}]}
        for row in SENTIMENT_PAIRS[:3]
    ]
    train = write_jsonl(tmp_path / "hh.jsonl", hh)
    held_out = write_jsonl(tmp_path / "e.jsonl", explicit)
    held = {}

    def recorded(data, *args, **kwargs):
        held[kwargs["progress"] or len(held)] = [example.columns for example in data.examples]
        return tokenize(data, *args, **kwargs)

    tokenize = run_tokenizing.tokenize_preferences
    monkeypatch.setattr(run_tokenizing, "tokenize_preferences", recorded)
    config = tiny_config(
        tiny_model_dirs["gpt2"], train, tmp_path / "out", eval_file=str(held_out),
        cache_tokenized=False,
    )  # fmt: skip
    said: list[str] = []
    load_run_data(config, None, None, torch.device("cpu"), said.append)
    # (train: none kept, None; eval: the system column the start line reads)
    assert list(held.values()) == [[None] * 3, [{"system": "be kind"}] * 3]
    assert "column 'system' is not read: 3 prompts go without" in said[1]
    held.clear()
    config.eval_generate = 2  # the held-out prompts are sampled: a reward_fn may read them
    load_run_data(config, None, None, torch.device("cpu"), said.append)
    assert list(held.values())[0] == [None] * 3
    assert list(held.values())[1] == [
        {key: value for key, value in row.items() if key != "prompt"} for row in explicit
    ]


def test_an_eval_files_headers_of_another_case_name_the_train_file_too(
    tiny_model_dirs, tmp_path
) -> None:
    """An eval file of Prompt / Chosen / Rejected beside a train file of prompt / chosen /
    rejected was told 'set chosen_column: Chosen, ...', which refused the train file a run
    later (one set of column options reads both); a second train file likewise. The refusal
    says the options would not read the other file: the files' headers are to agree."""
    from directpo.errors import DataError

    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    capitalised = [{k.capitalize(): v for k, v in row.items()} for row in SENTIMENT_PAIRS]
    caps = write_jsonl(tmp_path / "caps.jsonl", capitalised)
    settings = "set chosen_column: Chosen, rejected_column: Rejected, prompt_column: Prompt"
    agree = f" would read it, but not {pairs}, read with the same column options: write one"
    for given in ({"eval_file": str(caps)}, {"train_file": [str(pairs), str(caps)]}):
        config = tiny_config(tiny_model_dirs["gpt2"], pairs, tmp_path / "out", **given)
        with pytest.raises(DataError) as refused:
            load_run_data(config, None, None, torch.device("cpu"), lambda line: None)
        assert f"{caps}: column 'chosen' not found" in str(refused.value)
        assert settings + agree in str(refused.value)
    alone = tiny_config(tiny_model_dirs["gpt2"], caps, tmp_path / "out")  # (no other file)
    with pytest.raises(DataError) as refused:
        load_run_data(alone, None, None, torch.device("cpu"), lambda line: None)
    assert str(refused.value).endswith(settings)


def test_prompt_files_say_the_special_tokens_written_in_their_text(tmp_path: Path) -> None:
    """train's pairs, score, rank and generate say once a file whose texts write the
    tokenizer's special tokens (read as those tokens); prompt_file (online rounds' prompts)
    and eval_prompts_file (eval_generate's) said nothing. Each says it the same way, naming
    the first rows; eval_prompts_file of the prompts it samples (eval_generate)."""
    folder = save_tiny_model("gpt2", tmp_path / "m")
    rewards = tmp_path / "rewards.py"
    rewards.write_text("def size(prompts, completions, **kw):\n    return [0.0 for _ in prompts]\n")
    rows = [{"prompt": f"a{n}<|endoftext|>b"} for n in range(4)]
    rows.insert(1, {"prompt": "plain"})
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2])
    config = tiny_config(
        folder, pairs, tmp_path / "out", online=True, prompt_file=str(prompts),
        reward_fn=f"{rewards}:size", eval_generate=2, eval_prompts_file=str(prompts),
    )  # fmt: skip
    lines: list[str] = []
    load_run_data(config, None, None, torch.device("cpu"), lines.append)
    said = "with the tokenizer's special tokens written in their text"
    tail = "read as those tokens, as TRL does: a turn ends or a text starts there"
    assert [line for line in lines if said in line] == [
        f"eval_prompts_file {prompts}: 1 row {said} (<|endoftext|> in 1; line 1), {tail}",
        f"prompt_file {prompts}: 4 rows {said} (<|endoftext|> in 4; first line 1, line 3, "
        f"line 4, ...), {tail}",
    ]
    lines.clear()  # a prompts-only train file, online DPO's prompts without prompt_file
    config = tiny_config(
        folder, prompts, tmp_path / "out", online=True, reward_fn=f"{rewards}:size"
    )
    load_run_data(config, None, None, torch.device("cpu"), lines.append)
    assert [line for line in lines if said in line] == [
        f"train {prompts}: 4 rows {said} (<|endoftext|> in 4; first line 1, line 3, line 4, ...), "
        f"{tail}"
    ]
    lines.clear()
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "plain"}])
    config = tiny_config(
        folder, pairs, tmp_path / "out", online=True, prompt_file=str(plain),
        reward_fn=f"{rewards}:size",
    )  # fmt: skip
    load_run_data(config, None, None, torch.device("cpu"), lines.append)
    assert not [line for line in lines if said in line]


def test_the_tie_note_of_a_named_dataset_or_a_mixtures_entry_says_what_to_drop_from(
    tmp_path: Path,
) -> None:
    """train(dataset_name=...) was told to 'filter tied rows out of the Dataset
    (Dataset.filter)', a Dataset the caller never had, and a dataset_mixture's hub (or folder)
    entry 'drop tied rows from the file': both are a dataset's, as a recipe's dataset_name is;
    a builder's data_files entry drops them from its files, a file entry from the file."""
    from directpo.callers import Caller, Entry, Spelling, called_by
    from directpo.data import Columns
    from directpo.mixture import load_mixture

    folder = save_tiny_model("gpt2", tmp_path / "m")
    tied = [{**pair, "score_chosen": 1, "score_rejected": 1} for pair in SENTIMENT_PAIRS]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", tied)
    config = tiny_config(folder, None, tmp_path / "out", dataset_name=str(data_dir), max_steps=1)
    hub = "(to leave them out, give a file of the dataset's other rows)"
    lines: list[str] = []
    with called_by(Caller(Spelling.PYTHON, Entry.TRAIN)):
        load_run_data(config, None, None, torch.device("cpu"), lines.append)
    said = [line for line in lines if "rate chosen and rejected alike" in line]
    assert len(said) == 2 and all(line.endswith(hub) for line in said), said
    entries = {
        "file": ({"id": str(data_dir / "train.jsonl")}, "from the file to leave them out)"),
        "folder": ({"id": str(data_dir)}, hub),
        "builder": (
            {"id": "json", "data_files": [str(data_dir / "train.jsonl")]},
            "from the files to leave them out)",
        ),
    }
    for kind, (entry, ending) in entries.items():
        echoed: list[str] = []
        load_mixture({"datasets": [entry]}, Columns(), echo=echoed.append)
        (note,) = [line for line in echoed if "rate chosen and rejected alike" in line]
        assert ending in note, (kind, note)


def test_the_tokenizers_refusal_is_said_before_the_rows_are_read(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """system_column with a tokenizer that has no chat template was refused once every row
    of the train file had been read and checked (21 s for 60k rows): the refusal needs no row,
    and is said before any is read now."""
    import shutil

    from directpo.errors import ConfigError

    plain = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((plain / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(settings))
    read: list[str] = []

    def reading(source, *args, **kwargs):
        read.append(str(source))
        raise AssertionError("the rows were read before the option's refusal")

    monkeypatch.setattr(run_data, "load_preferences", reading)
    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    config = tiny_config(plain, pairs, tmp_path / "out", system_column="system")
    with pytest.raises(ConfigError, match=r"^system_column 'system' makes each prompt a conv"):
        load_run_data(config, None, None, torch.device("cpu"), lambda _: None)
    assert read == []


def test_a_template_without_a_generation_prompt_is_noted_with_the_header_it_trains(
    tiny_model_dirs, tmp_path
) -> None:
    """A chat template with no add_generation_prompt branch (some fine-tunes ship ChatML so)
    renders the prompt without the assistant's header: every completion started with
    '<|im_start|>assistant\\n', trained as part of the reply, and samples began by writing it,
    without a word. The run says so at start (and trains as TRL does); a template that writes
    the generation prompt, or writes no header at all (Mistral v0.1's), is not noted."""
    without = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}"
    )
    bare = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"  # no header at all
    rows = [{"prompt": [USER], "chosen": [CHECK], "rejected": [{**CHECK, "content": "no"}]}]
    notes = {}
    for name, template in (("without", without), ("bare", bare), ("with", None)):
        said: list[str] = []
        options = {} if template is None else {"chat_template": template}
        config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / name, **options)
        data = load_run_data(config, rows, None, torch.device("cpu"), said.append)
        notes[name] = [line for line in said if "generation prompt" in line]
        if name == "without":
            chosen = data.tokenizer.decode(data.train.pairs[0].chosen_ids)
            assert chosen.startswith("<|im_start|>assistant\nlet me check")
    assert notes == {
        "without": [
            "note: the chat template writes no generation prompt (it has no "
            "add_generation_prompt branch), so each completion starts with the assistant "
            "turn's header ('<|im_start|>assistant\\n'), which trains as part of the reply (as "
            "TRL's would), and samples (eval_generate, generate) begin by writing it; give a "
            "template that writes it with the chat_template option"
        ],
        "bare": [],
        "with": [],
    }


def test_a_bad_file_of_prompts_is_said_before_any_pair_is_tokenized(
    tmp_path: Path, monkeypatch
) -> None:
    """train r.yaml --online --prompt_file bad.jsonl tokenized r.yaml's train_file (minutes
    for 100k pairs) before it said the prompt file's bad row; eval_prompts_file's alike. Both
    files' rows are now read (their shapes need no tokenizer) before any pair is tokenized."""
    folder = save_tiny_model("gpt2", tmp_path / "m")
    rewards = tmp_path / "rewards.py"
    rewards.write_text("def size(prompts, completions, **kw):\n    return [0.0 for _ in prompts]\n")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine"}, {"question": "no prompt"}])

    def tokenize(*args, **kwargs):
        raise AssertionError("the pairs were tokenized before the file of prompts was read")

    monkeypatch.setattr(run_data, "_tokenize_pairs", tokenize)
    for option, more in (
        ("prompt_file", {"online": True}),
        ("eval_prompts_file", {"eval_generate": 1}),
    ):
        config = tiny_config(
            folder, pairs, tmp_path / "out", reward_fn=f"{rewards}:size", **more,
            **{option: str(bad)},
        )  # fmt: skip
        with pytest.raises(DataError) as refused:
            load_run_data(config, None, None, torch.device("cpu"), lambda line: None)
        assert f"{bad}: line 2" in str(refused.value), str(refused.value)
