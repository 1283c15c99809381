from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import NO_SYSTEM_TURN_FOLDER, NO_SYSTEM_TURN_TRAIN, SENTIMENT_PAIRS, write_jsonl

from directpo.cli import main
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError, DirectpoError
from directpo.preflight import check_environment
from directpo.tracking import read_metrics
from directpo.trainer import train

REWARD_MODULE = """
def good(prompts, completions):
    return [float(len(c)) for c in completions]

def raises(prompts, completions):
    raise ValueError("scorer offline")

def short(prompts, completions):
    return [0.0]

def answer(completions, completion_ids, ground_truth, **kwargs):  # TRL's reward_funcs form
    return [1000.0 * ord(g) + len(ids) for ids, g in zip(completion_ids, ground_truth)]

def texts(prompts, completions):
    return ["0.5"] * len(completions)

def scalar(prompts, completions):
    return 1.0
"""


@pytest.fixture
def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARD_MODULE)
    return path


def test_training_logs_kl_reward_and_samples(
    tiny_model_dirs, pairs_file, tmp_path, reward_file
) -> None:
    out = tmp_path / "out"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]),
        train_file=str(pairs_file),
        eval_file=str(pairs_file),
        output_dir=str(out),
        report_to=["none"],
        learning_rate=5e-3,
        per_device_train_batch_size=6,
        max_steps=4,
        eval_steps=2,
        logging_steps=2,
        save_steps=0,
        eval_generate=3,
        eval_generate_samples=2,
        generate_max_new_tokens=5,
        reward_fn=f"{reward_file}:good",
    )
    result = train(config, echo=lambda _: None)
    evals = [r for r in result.metrics if "eval/kl" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[-1]["eval/kl"] > 0
    assert "eval/rewards/accuracies" in evals[-1] and "eval/rewards/margins" in evals[-1]
    samples = [
        json.loads(line) for line in (out / "samples" / "step-4.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 6
    assert evals[-1]["eval/reward"] == pytest.approx(sum(len(s["completion"]) for s in samples) / 6)
    assert {s["prompt"] for s in samples} == {p["prompt"] for p in SENTIMENT_PAIRS[:3]}


def test_reward_fn_gets_the_held_out_rows_columns_and_completion_ids(
    tiny_model_dirs, pairs_file, tmp_path, reward_file
) -> None:
    """As TRL passes them: eval_prompts_file's other columns and each sample's token ids (a
    function taking ground_truth was refused: 'missing ... argument')."""
    heldout = write_jsonl(
        tmp_path / "heldout.jsonl",
        [{"prompt": "hello world,", "ground_truth": "a"}, {"prompt": "The acting was",
                                                          "ground_truth": "e"}],
    )  # fmt: skip
    out = tmp_path / "out"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        eval_file=str(pairs_file), eval_prompts_file=str(heldout), output_dir=str(out),
        report_to=["none"], max_steps=1, eval_steps=1, save_steps=0, eval_generate=2,
        eval_generate_samples=2, generate_max_new_tokens=5, reward_fn=f"{reward_file}:answer",
    )  # fmt: skip
    result = train(config, echo=lambda _: None)
    samples = [json.loads(x) for x in (out / "samples" / "step-1.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    truth = {"hello world,": "a", "The acting was": "e"}
    for sample in samples:  # each sample got its own prompt's row and its <= 5 token ids
        assert sample["reward"] // 1000 == ord(truth[sample["prompt"]])
        assert 1 <= sample["reward"] % 1000 <= 5
    assert [r["eval/reward"] for r in result.metrics if "eval/reward" in r] == [
        pytest.approx(sum(s["reward"] for s in samples) / 4)
    ]


def test_reward_fn_gets_the_eval_pairs_rows_columns(
    tiny_model_dirs, pairs_file, tmp_path, reward_file
) -> None:
    """Held-out prompts taken from eval_file's pairs pass their rows' other columns on, as an
    eval_prompts_file's do (they passed none: 'missing ... ground_truth')."""
    truth = {"The movie was": "a", "I love this film,": "e"}
    rows = [{**p, "ground_truth": truth[p["prompt"]]} for p in SENTIMENT_PAIRS[:2]]
    eval_pairs = write_jsonl(tmp_path / "eval_pairs.jsonl", [*rows, rows[0]])  # a repeat
    out = tmp_path / "out"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        eval_file=str(eval_pairs), output_dir=str(out), report_to=["none"], max_steps=1,
        eval_steps=1, save_steps=0, eval_generate=2, generate_max_new_tokens=5,
        reward_fn=f"{reward_file}:answer",
    )  # fmt: skip
    train(config, echo=lambda _: None)
    samples = [json.loads(x) for x in (out / "samples" / "step-1.jsonl").read_text().splitlines()]
    assert sorted(s["prompt"] for s in samples) == sorted(truth)
    for sample in samples:  # its own pair row's ground_truth
        assert sample["reward"] // 1000 == ord(truth[sample["prompt"]])


@pytest.mark.parametrize(
    "function, message",
    [
        ("raises", "reward_fn '{spec}' raised ValueError: scorer offline"),
        ("short", "reward_fn '{spec}' returned 1 values for 2 completions"),
        (
            "texts",
            "reward_fn '{spec}' must return one number per completion; item 1 is a string ('0.5')",
        ),
        ("scalar", "reward_fn '{spec}' must return a list of numbers, got float"),
    ],
)
def test_a_bad_reward_fn_gives_one_line_naming_it(
    tiny_model_dirs, pairs_file, tmp_path, capsys, reward_file, function, message
) -> None:
    spec = f"{reward_file}:{function}"
    code = main(
        [
            "train",
            "--model_name_or_path",
            str(tiny_model_dirs["gpt2"]),
            "--train_file",
            str(pairs_file),
            "--eval_file",
            str(pairs_file),
            "--max_steps",
            "1",
            "--eval_generate",
            "2",
            "--generate_max_new_tokens",
            "3",
            "--reward_fn",
            spec,
            "--report_to",
            "none",
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    # found before any model loads: the error is the only line
    assert err == f"directpo: error: {message.format(spec=spec)}\n"
    assert "Traceback" not in err
    # called once before training: no model loaded, nothing trained or logged
    assert "Loading weights" not in err
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_reward_fn_module_in_the_current_folder(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cwd_rewards_xyz.py").write_text(REWARD_MODULE)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        eval_file=str(pairs_file), eval_generate=2, report_to=["none"],
        reward_fn="cwd_rewards_xyz:good",
    )  # fmt: skip
    check_environment(config)  # imports from the current folder


def test_reward_fn_is_checked_before_training(tiny_model_dirs, pairs_file, tmp_path) -> None:
    base = dict(
        model_name_or_path=str(tiny_model_dirs["gpt2"]),
        train_file=str(pairs_file),
        eval_file=str(pairs_file),
        eval_generate=2,
        report_to=["none"],
        output_dir=str(tmp_path / "o"),
    )
    with pytest.raises(ConfigError, match="reward_fn 'no_such_module_xyz:f': cannot import"):
        check_environment(DPOConfig(**base, reward_fn="no_such_module_xyz:f"))
    with pytest.raises(ConfigError, match="expected 'module:function'"):
        check_environment(DPOConfig(**base, reward_fn="justaname"))
    with pytest.raises(ConfigError, match="generate_temperature is set but eval_generate is 0"):
        DPOConfig(generate_temperature=0.7)
    with pytest.raises(ConfigError, match="eval_generate needs held-out prompts"):
        check_environment(DPOConfig(**{**base, "eval_file": None}))


def test_eval_prompts_file_feeds_generation(tiny_model_dirs, pairs_file, tmp_path) -> None:
    prompts = write_jsonl(
        tmp_path / "heldout.jsonl", [{"prompt": "hello world,"}, {"prompt": "The acting was"}]
    )
    out = tmp_path / "out"
    train(
        DPOConfig(
            model_name_or_path=str(tiny_model_dirs["llama"]),
            train_file=str(pairs_file),
            output_dir=str(out),
            report_to=["none"],
            max_steps=1,
            eval_generate=5,
            eval_prompts_file=str(prompts),
            generate_max_new_tokens=4,
        ),
        echo=lambda _: None,
    )
    samples = [
        json.loads(line) for line in (out / "samples" / "step-1.jsonl").read_text().splitlines()
    ]
    assert [s["prompt"] for s in samples] == ["hello world,", "The acting was"]


def test_reference_only_for_the_kl_when_the_losses_do_not_need_it(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    import directpo.reference as reference_module

    calls = []
    real = reference_module.FrozenModelReference.logprobs
    monkeypatch.setattr(
        reference_module.FrozenModelReference,
        "logprobs",
        lambda self, batch: calls.append(batch.num_pairs) or real(self, batch),
    )
    result = train(
        DPOConfig(
            model_name_or_path=str(tiny_model_dirs["gpt2"]),
            train_file=str(pairs_file),
            output_dir=str(tmp_path / "out"),
            report_to=["none"],
            max_steps=3,
            loss_type=["sft"],
            eval_generate=2,
            eval_file=str(pairs_file),
            generate_max_new_tokens=3,
        ),
        echo=lambda _: None,
    )
    assert calls and set(calls) == {0}  # only sampled sequences (no pairs) reached it
    assert "eval/kl" in result.metrics[-1]


def test_generate_reads_a_datasets_folder_and_keeps_an_old_output_on_failure(
    tiny_model_dirs, tmp_path, capsys
) -> None:
    import datasets

    folder = tmp_path / "prompts-dataset"
    datasets.Dataset.from_list([{"prompt": "The movie was", "id": 1}]).save_to_disk(str(folder))
    output = tmp_path / "out.jsonl"
    argv = ["generate", "--model_name_or_path", str(tiny_model_dirs["gpt2"]),
            "--input", str(folder), "--output", str(output), "--max_new_tokens", "3"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["id"], len(r["completions"])) for r in rows] == [(1, 1)]
    before = output.read_text()
    # a row that cannot be used: one line, and the earlier output is left as it was
    write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": None}])
    argv[argv.index("--input") + 1] = str(tmp_path / "bad.jsonl")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"directpo: error: {tmp_path / 'bad.jsonl'}: line 2")
        and err.count("\n") == 1
    )
    assert output.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.jsonl",
        "out.jsonl",
        "prompts-dataset",
    ]


def test_eval_generate_takes_its_prompts_from_an_eval_dataset(
    tiny_model_dirs, tmp_path, reward_file
) -> None:
    """train(eval_dataset=...) is held-out data like eval_file: its prompts feed eval_generate
    (refused before as 'set eval_prompts_file or eval_file')."""
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), output_dir=str(tmp_path / "out"),
        report_to=["none"], max_steps=1, save_steps=0, eval_generate=2,
        generate_max_new_tokens=3, reward_fn=f"{reward_file}:good",
    )  # fmt: skip
    result = train(config, SENTIMENT_PAIRS, SENTIMENT_PAIRS[:3], echo=lambda _: None)
    last = result.metrics[-1]
    assert "eval/kl" in last and "eval/loss" in last and last["eval/reward"] > 0
    samples = (tmp_path / "out" / "samples" / "step-1.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in samples] == [
        p["prompt"] for p in SENTIMENT_PAIRS[:2]
    ]


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    "{% endif %}"
)


def test_sampled_prompts_are_rendered_with_chat_template_kwargs(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """eval_generate, online rounds and the generate command on a run's folder render their
    prompts as training does: with the chat_template_kwargs option (Qwen3's enable_thinking:
    false writes <think></think>), where they rendered the template's default."""
    import directpo.generate
    from directpo.generate import encode_prompts
    from directpo.tokenizer_loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dirs["gpt2"]))
    tokenizer.chat_template = THINKING_TEMPLATE
    prompt = [{"role": "user", "content": "hello world"}]
    for kwargs, thinks in ((None, True), ({"enable_thinking": False}, False)):
        ((ids, _),) = encode_prompts(tokenizer, [prompt], None, chat_template_kwargs=kwargs)
        assert tokenizer.decode(ids).endswith("<think></think>") != thinks
    seen: list[dict | None] = []

    def spy(*args, chat_template_kwargs=None, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(chat_template_kwargs)
        return encode_prompts(*args, chat_template_kwargs=chat_template_kwargs, **kwargs)

    monkeypatch.setattr(directpo.generate, "encode_prompts", spy)
    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "chosen": p["chosen"],
             "rejected": p["rejected"]} for p in SENTIMENT_PAIRS]  # fmt: skip
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    rewards = tmp_path / "letters.py"
    rewards.write_text(
        "def score(prompts, completions):\n    return [len(c) for c in completions]\n"
    )
    common = dict(model_name_or_path=str(tiny_model_dirs["gpt2"]), report_to=["none"],
                  chat_template=THINKING_TEMPLATE, chat_template_kwargs={"enable_thinking": False},
                  generate_max_new_tokens=3)  # fmt: skip
    train(DPOConfig(**common, train_file=str(pairs), output_dir=str(tmp_path / "eval"),
                    eval_file=str(pairs), eval_generate=2, eval_steps=2, max_steps=2),
          echo=lambda _: None)  # fmt: skip
    train(DPOConfig(**common, train_file=str(pairs), output_dir=str(tmp_path / "online"),
                    online=True, reward_fn=f"{rewards}:score", online_prompts_per_round=2,
                    online_samples_per_prompt=2, steps_per_round=1, per_device_train_batch_size=1,
                    max_steps=2),
          echo=lambda _: None)  # fmt: skip
    assert len(seen) >= 2 and all(kwargs == {"enable_thinking": False} for kwargs in seen)
    # the generate command on the run's folder renders as the run trained
    seen.clear()
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows[:1])
    argv = ["generate", "--model_name_or_path", str(tmp_path / "eval"), "--input", str(prompts),
            "--output", str(tmp_path / "out.jsonl"), "--max_new_tokens", "2"]  # fmt: skip
    assert main(argv) == 0 and seen == [{"enable_thinking": False}]


def test_a_prompt_the_chat_template_refuses_is_said_before_training(tiny_model_dirs, tmp_path):
    """eval_prompts_file's and online prompt_file's prompts are first rendered when sampled: one
    the chat template refuses (a system message it does not take) was a RowError traceback at
    the first evaluation, after training; it is now the file's one-line error, before it."""
    from tiny import tiny_config

    from directpo.errors import DataError

    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    chat = [{"role": "user", "content": "Hi"}]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": chat, "chosen": [
        {"role": "assistant", "content": "Hello!"}], "rejected": [
        {"role": "assistant", "content": "No."}]}] * 2)  # fmt: skip
    system = [{"role": "system", "content": "Be nice"}, *chat]
    other = [{"role": "system", "content": "Be kind"}, *chat]  # each refused prompt is counted
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl", [{"prompt": p} for p in (chat, system, other)]
    )
    rewards = tmp_path / "rewards.py"
    rewards.write_text("def length(prompts, completions):\n    return [1.0] * len(completions)\n")
    runs = [
        ("eval_prompts_file", dict(eval_file=str(pairs), eval_prompts_file=str(prompts),
                                   eval_generate=3)),
        ("prompt_file", dict(online=True, prompt_file=str(prompts),
                             reward_fn=f"{rewards}:length")),
    ]  # fmt: skip
    for name, options in runs:
        out = tmp_path / name
        config = tiny_config(tiny_model_dirs["llama"], pairs, out, chat_template=template,
                             generate_max_new_tokens=2, **options)  # fmt: skip
        with pytest.raises(DataError) as info:
            train(config, echo=lambda _: None)
        assert str(info.value) == (  # (the file's rows: "prompt 2" was counted by the run)
            f"{name} {prompts}: line 2: the chat template refused the row (System role not "
            f"supported){NO_SYSTEM_TURN_TRAIN} (1 more row like it: line 3)"
        )
        assert not (out / "metrics.jsonl").exists()


def test_sampling_ignores_the_models_generation_defaults(tiny_model_dirs, tmp_path) -> None:
    """An instruct model's generation_config.json (repetition_penalty, min_p,
    no_repeat_ngram_size) does not change what is sampled: transformers filled the options
    directpo left unset from it, so online rounds and eval/kl sampled from another distribution
    than the policy."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from directpo.generate import sample_completions

    plain = tiny_model_dirs["llama"]
    instruct = tmp_path / "instruct"
    shutil.copytree(plain, instruct)
    defaults = json.loads((instruct / "generation_config.json").read_text())
    defaults |= {"repetition_penalty": 3.0, "min_p": 0.3, "no_repeat_ngram_size": 1}
    (instruct / "generation_config.json").write_text(json.dumps(defaults))
    tokenizer = AutoTokenizer.from_pretrained(plain)

    def samples(folder: Path) -> list[list[int]]:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        before = model.generation_config.to_dict()
        drawn = sample_completions(
            model, tokenizer, ["The movie was", "A film"], num_samples=3, max_new_tokens=8, seed=3
        )
        assert model.generation_config.to_dict() == before  # the model keeps its own
        return [s.completion_ids for s in drawn]

    assert samples(instruct) == samples(plain)


def test_generate_names_the_row_a_chat_template_refuses_before_loading_the_model(
    tiny_model_dirs, tmp_path, capsys, monkeypatch
) -> None:
    """A prompt the template refuses (Gemma's "System role not supported") was said after the
    model loaded, naming the file but not the row."""
    import shutil

    from test_tokenization import STRICT_TEMPLATE

    import directpo.generate_files

    model = tmp_path / "strict"
    shutil.copytree(tiny_model_dirs["gpt2"], model)
    (model / "chat_template.jinja").write_text(STRICT_TEMPLATE)
    user = {"role": "user", "content": "Hi"}
    prompts = write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": [user]}, {"prompt": [{"role": "system", "content": "Be brief."}, user]}],
    )
    monkeypatch.setattr(directpo.generate_files, "load_causal_lm", None)  # never reached
    argv = ["generate", "--model_name_or_path", str(model), "--input", str(prompts),
            "--output", str(tmp_path / "out.jsonl"), "--max_new_tokens", "2"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"directpo: error: {prompts}: line 2: the chat template refused the row (Conversation "
        f"roles must alternate user/assistant/user/assistant){NO_SYSTEM_TURN_FOLDER}\n"
    )


def test_eval_generate_samples_the_prompts_of_a_dataset_name_test_split(
    tiny_model_dirs, tmp_path
) -> None:
    """dataset_name's test split gives the held-out pairs as eval_file does, but eval_generate
    was refused beside it ('set eval_prompts_file or eval_file'). Its distinct prompts are
    sampled; a missing test split is said in one line (the run had nothing to sample)."""
    import datasets

    test = [{**SENTIMENT_PAIRS[0], "prompt": "A held-out prompt:"}]
    folder = tmp_path / "prefs"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(SENTIMENT_PAIRS),
            "test": datasets.Dataset.from_list(test),
        }
    ).save_to_disk(str(folder))
    options = dict(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), dataset_name=str(folder),
        report_to=["none"], max_steps=1, save_steps=0, eval_generate=2, generate_max_new_tokens=2,
    )  # fmt: skip
    result = train(DPOConfig(**options, output_dir=str(tmp_path / "run")), echo=lambda _: None)
    assert "eval/kl" in result.metrics[-1] and "eval/loss" in result.metrics[-1]
    samples = (tmp_path / "run" / "samples" / "step-1.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in samples] == ["A held-out prompt:"]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(SENTIMENT_PAIRS)}).save_to_disk(
        str(tmp_path / "no-test")
    )
    config = DPOConfig(**{**options, "dataset_name": str(tmp_path / "no-test")},
                       output_dir=str(tmp_path / "x"))  # fmt: skip
    with pytest.raises(DataError, match=r"no split 'test' .* eval_generate samples; pass dataset"):
        train(config, echo=lambda _: None)


def test_a_best_metric_sampling_does_not_log_is_refused_before_training(
    tiny_model_dirs, tmp_path
) -> None:
    """early_stopping_patience / load_best_model_at_end with eval_generate as the only
    evaluation tracked the default eval/loss, which sampling never logs: the run failed at its
    first evaluation, after the steps before it. Refused before step 1; sampling's metrics
    work."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    options = dict(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs),
        output_dir=str(tmp_path / "run"), report_to=["none"], max_steps=2, eval_steps=1,
        save_steps=0, eval_generate=1, eval_prompts_file=str(prompts), generate_max_new_tokens=2,
        early_stopping_patience=5, logging_steps=1,
    )  # fmt: skip
    lines: list[str] = []
    for metric in (None, "rewards/accuracies", "eval_reward"):
        with pytest.raises(ConfigError) as err:
            train(DPOConfig(**options, metric_for_best_model=metric), echo=lines.append)
        written = f"={metric!r}" * (metric is not None)  # (as the keyword was passed)
        assert str(err.value) == (
            f"metric_for_best_model{written}: evaluations log no eval/"
            f"{(metric or 'loss').removeprefix('eval_')} (they log eval/completion_length, "
            "eval/kl)"
        )
    assert not any(line.startswith("step ") for line in lines)  # no step trained
    config = DPOConfig(**options, metric_for_best_model="eval_kl", greater_is_better=False)
    result = train(config, echo=lambda _: None)
    assert [row["step"] for row in result.metrics if "eval/kl" in row] == [1, 2]


def test_a_precomputed_run_that_samples_returns_the_reference_it_kept(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """precompute_ref_log_probs with eval_generate keeps the reference model for the samples'
    KL: train()'s result returns it rather than loading a second copy from disk."""
    import directpo.finish as finish_module

    reloads = []
    monkeypatch.setattr(finish_module, "reload_reference", lambda *a: reloads.append(a))
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["llama"]), train_file=str(pairs_file),
        eval_file=str(pairs_file), output_dir=str(tmp_path / "run"), report_to=["none"],
        max_steps=1, eval_steps=1, save_steps=0, eval_generate=2, generate_max_new_tokens=3,
        precompute_ref_log_probs=True,
    )  # fmt: skip
    result = train(config, echo=lambda _: None)
    assert result.reference is not None and result.reference.model is not result.policy
    assert reloads == [] and result.reference_source is None


def test_trls_sampling_options_reach_generate_and_change_the_samples(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """OnlineDPOConfig's repetition_penalty, min_p, cache_implementation and generation_kwargs
    were refused. They reach model.generate's GenerationConfig (eval_generate here; online
    rounds sample through the same call): a repetition penalty of 2.0 gives other completions
    than none (greedy: a random tiny model's near-uniform logits hardly move a sample), and
    the seed still makes a run's samples repeat."""
    from transformers import GenerationMixin

    seen: list[dict] = []
    generate = GenerationMixin.generate

    def recording(self, *args, **kwargs):
        seen.append(kwargs["generation_config"].to_dict())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", recording)

    def samples(name: str, **sampling) -> list[str]:
        out = tmp_path / name
        config = DPOConfig(
            model_name_or_path=str(tiny_model_dirs["llama"]), train_file=str(pairs_file),
            eval_file=str(pairs_file), output_dir=str(out), report_to=["none"], max_steps=1,
            save_steps=0, eval_generate=3, generate_max_new_tokens=12, **sampling,
        )  # fmt: skip
        train(config, echo=lambda _: None)
        lines = (out / "samples" / "step-1.jsonl").read_text().splitlines()
        return [json.loads(line)["completion"] for line in lines]

    plain = samples("plain", temperature=0)
    assert seen[-1]["repetition_penalty"] in (None, 1.0) and seen[-1]["min_p"] is None
    penalised = samples("penalised", temperature=0, repetition_penalty=2.0)
    assert seen[-1]["repetition_penalty"] == 2.0
    assert penalised != plain
    drawn = samples("drawn", eval_generate_samples=2, repetition_penalty=2.0)
    assert samples("again", eval_generate_samples=2, repetition_penalty=2.0) == drawn
    samples(
        "all", min_p=0.05, cache_implementation="static",
        generation_kwargs={"no_repeat_ngram_size": 2, "suppress_tokens": [5]},
    )  # fmt: skip
    wanted = {"min_p": 0.05, "cache_implementation": "static", "no_repeat_ngram_size": 2}
    assert {key: seen[-1][key] for key in wanted} == wanted
    assert seen[-1]["suppress_tokens"] == [5] and seen[-1]["temperature"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.5}, "generation_kwargs['temperature'] is set by directpo's own "
         "options: use generate_temperature=..."),
        ({"num_return_sequences": 2},
         "use eval_generate_samples=... / online_samples_per_prompt=..."),
        ({"no_repeat_ngram": 2}, "generation_kwargs['no_repeat_ngram'] is not an option of "
         "transformers' "
         "GenerationConfig; did you mean no_repeat_ngram_size?"),
        # transformers' refusals at generate time stopped the run at its first evaluation, in
        # a traceback: one line before the run
        ({"num_beams": 2}, "generation_kwargs: `num_return_sequences` (3) has to be smaller or "
         "equal to `num_beams` (2). (num_return_sequences: eval_generate_samples / "
         "online_samples_per_prompt)"),
        ({"stop_strings": ["."]}, "generation_kwargs['stop_strings'] is not supported"),
    ],
)  # fmt: skip
def test_generation_kwargs_that_directpo_sets_or_transformers_lacks_are_refused(
    kwargs, message
) -> None:
    base = dict(model_name_or_path="m", eval_generate=2)
    with pytest.raises(ConfigError, match=re.escape(message)):
        DPOConfig(**base, generation_kwargs=kwargs, eval_generate_samples=3)
    if "num_beams" in kwargs:  # as many beams as samples: sampled by beam search, as asked
        DPOConfig(**base, generation_kwargs=kwargs, eval_generate_samples=2)
    with pytest.raises(ConfigError, match="^cache_implementation .*Invalid `cache_implementation`"):
        DPOConfig(**base, cache_implementation="bogus")
    with pytest.raises(ConfigError, match="repetition_penalty .* must be > 0"):
        DPOConfig(**base, repetition_penalty=0)
    with pytest.raises(
        ConfigError, match=r"^min_p \(directpo: generate_min_p\) is set but eval_generate is 0"
    ):
        DPOConfig(model_name_or_path="m", min_p=0.1)


def test_eval_generate_samples_each_named_sets_prompts_in_turn(tiny_model_dirs, tmp_path) -> None:
    """With named eval sets, the first eval_generate held-out prompts were the first set's alone
    (set after set): a large first set left the others unsampled. They are taken in turn."""
    from directpo.trainer import train

    def pairs(prefix: str, count: int) -> list[dict]:
        return [{"prompt": f"{prefix} {i}:", "chosen": " good.", "rejected": " bad."}
                for i in range(count)]  # fmt: skip

    big, small = pairs("Big", 5), pairs("Small", 2)
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), output_dir=str(tmp_path / "out"),
        report_to=["none"], max_steps=1, save_steps=0, eval_generate=5,
        generate_max_new_tokens=2,
    )  # fmt: skip
    train(config, train_dataset=big, eval_dataset={"big": big, "small": small}, echo=None)
    rows = (tmp_path / "out" / "samples" / "step-1.jsonl").read_text().splitlines()
    prompts = [json.loads(row)["prompt"] for row in rows]
    assert prompts == ["Big 0:", "Small 0:", "Big 1:", "Small 1:", "Big 2:"]


FLAKY_JUDGE = """
import os
calls = 0

def flaky(prompts, completions):  # a judge that goes down at its second call
    global calls
    calls += 1
    if os.environ.get("JUDGE_DOWN") and calls >= 2:
        raise ConnectionError("judge unreachable")
    return [float(len(c)) for c in completions]
"""


def test_an_evaluation_whose_labeller_failed_runs_again_on_resume(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """eval_generate's reward function failing at the last step's evaluation kept the steps in
    a checkpoint, and the resume trained nothing, evaluated nothing and wrote the final model:
    the run's final evaluation (its eval row, its samples, the best-model comparison) was never
    made. The checkpoint marks the evaluation pending; the resume runs it first, and the run
    ends with the uninterrupted run's metrics, samples and weights."""
    judge = tmp_path / "flaky_judge.py"
    judge.write_text(FLAKY_JUDGE)

    def config(out: Path) -> DPOConfig:
        return DPOConfig(
            model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
            eval_file=str(pairs_file), output_dir=str(out), report_to=["none"], max_steps=2,
            learning_rate=5e-3, per_device_train_batch_size=6, eval_steps=2, save_steps=0,
            eval_generate=2, generate_max_new_tokens=4, reward_fn=f"{judge}:flaky",
        )  # fmt: skip

    straight, out = tmp_path / "straight", tmp_path / "out"
    train(config(straight), echo=None)
    monkeypatch.setenv("JUDGE_DOWN", "1")  # checked before training (call 1), step 2's fails
    with pytest.raises(DirectpoError, match="kept in checkpoint-2: fix it and continue") as failed:
        train(config(out), echo=None)
    # the line says when it failed (it read as the check before training did)
    assert str(failed.value).startswith(
        f"eval_generate at step 2: reward_fn '{judge}:flaky' raised ConnectionError"
    )
    assert not (out / "model.safetensors").exists()
    monkeypatch.delenv("JUDGE_DOWN")
    resumed = config(out)
    resumed.resume_from_checkpoint = "latest"
    lines: list[str] = []
    train(resumed, echo=lines.append)

    def evals(folder: Path) -> list[dict]:
        return [r for r in read_metrics(folder) if "eval/reward" in r]

    assert [r["step"] for r in evals(out)] == [2]
    assert evals(out) == evals(straight)
    assert (out / "samples" / "step-2.jsonl").read_text() == (
        straight / "samples" / "step-2.jsonl"
    ).read_text()
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the checkpoint saved again after its evaluation: a second resume evaluates nothing again
    assert f"saved {out / 'checkpoint-2'}" in lines
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["directpo"]["evaluation_pending"] is False
