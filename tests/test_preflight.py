"""The checks before any data or model loads: every problem of a run reported in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import save_tiny_model

import directpo.config
import directpo.device_checks
import directpo.model_locations
import directpo.preflight
import directpo.run
from directpo.callers import Caller, Entry, Spelling, called_by
from directpo.cli import main
from directpo.config import DPOConfig
from directpo.device_checks import check_device
from directpo.errors import ConfigError
from directpo.preflight import check_run
from directpo.trainer import train


@pytest.fixture
def nothing_loads(monkeypatch):
    """A refused run must stop before its data or model loads."""

    def refuse(*args, **kwargs):
        raise AssertionError("data or a model was loaded before the options were checked")

    monkeypatch.setattr(directpo.run, "load_run_data", refuse)


def test_every_environment_and_device_problem_is_reported_in_one_pass(
    tmp_path: Path, capsys, monkeypatch, nothing_loads
) -> None:
    """CUDA-only options on CPU, a tracker not installed, a missing file and evaluation with
    nothing to evaluate were refused one per run (five runs to fix this command)."""
    monkeypatch.setitem(directpo.config.TRACKER_MODULES, "wandb", "a_module_nobody_has")
    model = save_tiny_model("llama", tmp_path / "model")
    capsys.readouterr()  # (its progress bar)
    code = main(
        [
            "train",
            "--model_name_or_path",
            str(model),
            "--train_file",
            str(tmp_path / "missing.jsonl"),
            "--output_dir",
            str(tmp_path / "out"),
            "--eval_strategy",
            "steps",
            "--report_to",
            "wandb",
            "--use_liger_kernel",
            "--attn_implementation",
            "flash_attention_2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == "directpo: error: 5 options cannot be used:"
    assert "eval_strategy is steps but there is nothing to evaluate" in lines[1]
    assert f"train_file: no such file or folder: {tmp_path / 'missing.jsonl'}" in lines[2]
    assert (  # (the command line's words: it was told a recipe's, report_to: 'wandb')
        "--report_to wandb: wandb is not installed: pip install a_module_nobody_has, or choose "
        "another tracker, or give --report_to none" in lines[3]
    )
    assert "--attn_implementation flash_attention_2 runs on CUDA only" in lines[4]
    assert "use_liger_kernel: Liger's kernels are Triton kernels for CUDA" in lines[5]
    assert "Traceback" not in err


def test_a_refused_value_and_a_missing_file_are_said_in_one_pass(tmp_path: Path, capsys) -> None:
    """The file checks ran on a config whose values passed: beta -1 and a missing train_file
    (score's batch_size 0 and a missing input) took two runs to fix; a command's missing model,
    reference, input and a bad output name took one run each; a resume_from_checkpoint folder
    that is not there was said only once beta was fixed."""
    nomodel, noref, missing = tmp_path / "nomodel", tmp_path / "noref", tmp_path / "gone.jsonl"
    train = [
        "train",
        "--model_name_or_path",
        str(nomodel),
        "--train_file",
        str(missing),
        "--eval_file",
        f"{{a: {missing}}}",
        "--output_dir",
        str(tmp_path),
        "--beta",
        "-1",
        "--resume_from_checkpoint",
        str(tmp_path / "nockpt"),
    ]
    score = [
        "score",
        "--model_name_or_path",
        str(nomodel),
        "--ref_model_name_or_path",
        str(noref),
        "--input",
        str(missing),
        "--output",
        str(tmp_path / "o.csv"),
    ]
    model_lines = [f"model_name_or_path: no such model folder: {nomodel}"]
    score_lines = [
        *model_lines,
        f"ref_model_name_or_path: no such model folder: {noref}",
        f"input: no such file or folder: {missing}",
        f"output: {tmp_path / 'o.csv'}: the output is JSON Lines, so it must end in .jsonl "
        "(got .csv)",
    ]
    for argv, problems in (
        (train, ["beta must be > 0 (got -1)", *model_lines,
                 f"train_file: no such file or folder: {missing}",
                 f"eval_file: no such file or folder: {missing}",
                 f"resume_from_checkpoint: no such checkpoint folder: {tmp_path / 'nockpt'}; "
                 "'latest' takes the newest in output_dir"]),
        ([*score, "--batch_size", "0"], ["batch_size must be >= 1 (got 0)", *score_lines]),
        (score, score_lines),
    ):  # fmt: skip
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"directpo: error: {len(problems)} options cannot be used:",
            *(f"  {line}" for line in problems),
        ]


def test_cuda_kernels_that_are_not_installed_are_refused_before_loading(monkeypatch) -> None:
    """On CUDA, use_liger_kernel without liger-kernel and flash_attention_2 without flash-attn
    were refused only when the model loaded, after the data was read and tokenized."""
    installed: set[str] = set()
    monkeypatch.setattr(directpo.device_checks, "_installed", lambda module: module in installed)
    config = DPOConfig(
        model_name_or_path="m", use_liger_kernel=True, attn_implementation="flash_attention_2"
    )
    with pytest.raises(ConfigError) as refused:
        check_device(config, "cuda")
    lines = str(refused.value).splitlines()
    assert lines[0] == "2 options cannot be used:"
    assert "use_liger_kernel: liger-kernel is not installed; pip install liger-kernel" in lines[1]
    assert "attn_implementation: flash_attention_2 needs flash-attn" in lines[2]
    installed |= {"liger_kernel", "kernels"}  # transformers then takes the Hub's flash-attn
    check_device(config, "cuda")


def test_qlora_off_cuda_or_without_bitsandbytes_is_refused_before_loading(monkeypatch) -> None:
    """The alignment-handbook's config_qlora.yaml (load_in_4bit: true) on a CPU machine was
    told flash_attention_2 runs on CUDA only, then, that fixed, 'load_in_4bit/load_in_8bit need
    bitsandbytes' only when the model loaded, after the data was read and tokenized: both are
    said before anything loads, in one pass; without bitsandbytes on CUDA too."""
    installed: set[str] = {"flash_attn"}
    monkeypatch.setattr(directpo.device_checks, "_installed", lambda module: module in installed)
    config = DPOConfig(
        model_name_or_path="m", lora_r=8, load_in_4bit=True, attn_implementation="flash_attention_2"
    )
    with pytest.raises(ConfigError) as refused:
        check_device(config, "cpu")
    lines = str(refused.value).splitlines()
    assert lines[0] == "2 options cannot be used:"
    assert "attn_implementation: flash_attention_2 runs on CUDA only" in lines[1]
    assert lines[2] == (
        "  load_in_4bit: true needs a CUDA GPU (bitsandbytes' quantized kernels), and this run "
        "is on cpu; remove load_in_4bit to train LoRA without quantization"
    )
    eight_bit = DPOConfig(model_name_or_path="m", lora_r=8, load_in_8bit=True)
    with pytest.raises(ConfigError, match="^load_in_8bit: true needs bitsandbytes: pip install"):
        check_device(eight_bit, "cuda")
    installed.add("bitsandbytes")
    check_device(eight_bit, "cuda")


def test_eval_strategy_no_names_the_held_out_data_given(tmp_path: Path) -> None:
    """train(eval_dataset=...) under a TRL config's eval_strategy "no" (its default) was told
    of held-out data "(eval_file / eval_generate)", neither of which it set: the line names
    what was given."""
    model = save_tiny_model("llama", tmp_path / "model")
    base = dict(model_name_or_path=str(model), output_dir=str(tmp_path / "o"), eval_strategy="no")
    given = DPOConfig(**base)
    with pytest.raises(ConfigError) as refused:
        directpo.preflight.check_run(given, "cpu", need_train_file=False, eval_dataset_given=True)
    assert str(refused.value) == (
        "eval_strategy is no but there is held-out data (eval_dataset (given to train())): "
        "remove it, or choose eval_strategy auto, steps or epoch"
    )
    both = DPOConfig(**base, eval_file=str(model / "config.json"), eval_generate=2)
    with pytest.raises(ConfigError, match=r"held-out data \(eval_file and eval_generate\):"):
        directpo.preflight.check_run(both, "cpu", need_train_file=False)


def test_max_eval_samples_with_nothing_to_evaluate_is_refused(tmp_path: Path) -> None:
    """max_eval_samples without held-out data trained without a word (eval_steps and
    eval_delay are refused so): it is now refused the same way."""
    model = save_tiny_model("llama", tmp_path / "model")
    config = DPOConfig(model_name_or_path=str(model), output_dir=str(tmp_path / "o"),
                       max_eval_samples=4)  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        directpo.preflight.check_run(config, "cpu", need_train_file=False)
    assert str(refused.value) == (
        "max_eval_samples is set but there is nothing to evaluate: set eval_file (held-out "
        "pairs) or eval_generate (sampled completions), or remove max_eval_samples"
    )
    directpo.preflight.check_run(config, "cpu", need_train_file=False, eval_dataset_given=True)


def test_a_missing_template_prompts_reward_or_dataset_file_is_said_with_the_rest(
    tmp_path,
) -> None:
    """A chat_template file that is not there was found only once the data was read (a run
    after its bad rows were fixed), and neither it, a missing eval_prompts_file, reward_fn file
    nor dataset_name folder was said beside a refused value: each took a run of its own."""
    from tiny import write_jsonl

    from directpo.config import DPOConfig
    from directpo.errors import ConfigError

    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    good = {"prompt": "a", "chosen": " b", "rejected": " c"}
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [good, {**good, "chosen": ""}])
    template, prompts = tmp_path / "none.jinja", tmp_path / "none.jsonl"
    options = dict(
        model_name_or_path=str(tmp_path), train_file=str(pairs), eval_file=str(pairs),
        chat_template=str(template), eval_generate=2, eval_prompts_file=str(prompts),
    )  # fmt: skip
    missing = [
        f"eval_prompts_file: no such file or folder: {prompts}",
        f"chat_template: {template} is neither a Jinja template nor a readable file (No such "
        "file or directory)",
    ]
    with pytest.raises(ConfigError) as info:
        DPOConfig(**options, beta=-1)
    assert info.value.problems == ["beta must be > 0 (got -1)", *missing]
    with pytest.raises(ConfigError) as info:  # at start, with the train file's bad rows
        check_run(DPOConfig(**options, output_dir=str(tmp_path / "out")), "cpu")
    assert sorted(info.value.problems) == sorted(missing)
    assert info.value.rows == [
        f"{pairs}: line 2: field 'chosen' is empty",
        "skip_invalid_rows: true skips them",
    ]
    # a reward function's file likewise (importing it is left to the start checks)
    online = dict(model_name_or_path=str(tmp_path), online=True, prompt_file=str(pairs))
    with pytest.raises(ConfigError) as info:
        DPOConfig(**online, reward_fn=f"{tmp_path}/rw.py:score", beta=-1)
    assert info.value.problems == [
        "beta must be > 0 (got -1)",
        f"reward_fn '{tmp_path}/rw.py:score': no such file {tmp_path}/rw.py",
    ]
    for name, line in (
        (f"{tmp_path}/nodata", f"no such dataset folder: {tmp_path}/nodata"),
        (str(pairs), f"{pairs} is a file; give it as train_file"),
    ):  # and a dataset_name folder that is not there, or a file
        with pytest.raises(ConfigError) as info:
            DPOConfig(model_name_or_path=str(tmp_path), dataset_name=name, beta=-1)
        assert info.value.problems[1].startswith(f"dataset_name: {line}")


def test_a_revision_of_a_local_model_folder_is_refused(
    tmp_path: Path, capsys, tiny_model_dirs, pairs_file, nothing_loads
) -> None:
    """TRL's --model_revision beside a model folder trained the folder's weights without a word
    (transformers reads a folder as it is, whatever revision is asked)."""
    model, reference = tiny_model_dirs["llama"], tiny_model_dirs["gpt2"]
    code = main([
        "train", "--model_name_or_path", str(model), "--model_revision", "v1.0",
        "--ref_model_name_or_path", str(reference),
        "--ref_model_init_kwargs", "{revision: v2}", "--train_file", str(pairs_file),
        "--output_dir", str(tmp_path / "out"),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert (
        f"model_name_or_path {model} is a local folder, which has no revisions: revision v1.0 "
        "(model_revision / model_init_kwargs) would be ignored" in err
    )
    assert f"ref_model_name_or_path {reference} is a local folder" in err
    assert "revision v2 (ref_model_init_kwargs)" in err
    # beside an unknown flag and a refused value (the revision was said a run after them)
    code = main([
        "train", "--model_name_or_path", str(model), "--model_revision", "v1.0",
        "--train_file", str(pairs_file), "--beta", "-1", "--max_len", "512",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--max_len: give --max_length" in err and "beta must be > 0" in err
    assert f"model_name_or_path {model} is a local folder" in err


@pytest.mark.parametrize(("revision", "refused"), [("main", False), ("v1.0", True)])
def test_a_local_folders_revision_main_passes(tmp_path: Path, revision, refused) -> None:
    """``model_revision: main`` is ModelConfig's default, in every recipe ``trl dpo`` writes out:
    beside a folder it names what the folder is and passes, as README and docs/migrating.md say;
    another revision is refused."""
    config = DPOConfig(model_name_or_path=str(tmp_path), model_revision=revision)
    problems = directpo.model_locations.revision_problems(config)
    assert bool(problems) is refused
    assert all(f"revision {revision} " in problem for problem in problems)


@pytest.mark.parametrize(("softcapped", "kernel"), [(True, "eager"), (False, "sdpa")])
def test_a_cpu_runs_kernel_hint_is_one_the_model_runs(tmp_path: Path, softcapped, kernel) -> None:
    """flash_attention_2 / flex_attention on CPU were told 'use auto or sdpa', which Gemma 2
    (soft-capped attention logits) refuses in transformers, a run later; its hint is eager."""
    import json

    model = tmp_path / "model"
    model.mkdir()
    values = {"model_type": "gemma2", "attn_logit_softcapping": 50.0 if softcapped else None}
    (model / "config.json").write_text(json.dumps(values))
    for attention in ("flash_attention_2", "flex_attention"):
        config = DPOConfig(model_name_or_path=str(model), attn_implementation=attention)
        with pytest.raises(ConfigError, match=f"; set attn_implementation: auto or {kernel}$"):
            check_device(config, "cpu")


@pytest.mark.parametrize("value", ["run/", "my run", "runs/dpo/", "a..b"])
def test_a_path_no_hub_id_could_be_is_a_missing_folder(tmp_path, monkeypatch, value) -> None:
    """``run/`` (a folder as a shell completes it) was taken for a hub id: score said 'run/ has
    no config.yaml from a directpo run: give --ref_model_name_or_path and --beta', train asked
    the hub for it. A hub id is org/name of letters, digits, -, _ and . alone."""
    monkeypatch.chdir(tmp_path)
    assert directpo.model_locations.looks_local(value)
    with pytest.raises(ConfigError, match=f"^model_name_or_path: no such model folder: {value}$"):
        directpo.model_locations.check_model_location("model_name_or_path", value)
    assert not any(
        map(directpo.model_locations.looks_local, ["gpt2", "org/name-1.5B", "a_b/c.d", ""])
    )


def test_a_resume_with_no_checkpoint_is_said_with_a_missing_model(tmp_path, monkeypatch):
    """resume_from_checkpoint: latest in a folder of no checkpoint raised its CheckpointError
    out of the one-pass check, alone: the missing model folder beside it was said a run later."""
    from directpo.config import DPOConfig
    from directpo.errors import CheckpointError, ConfigError
    from directpo.preflight import check_environment

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "a", "chosen": " b", "rejected": " c"}\n')
    config = DPOConfig(model_name_or_path="./m", train_file="pairs.jsonl", output_dir="out",
                       resume_from_checkpoint="latest")  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        check_environment(config)
    assert refused.value.problems == [
        "model_name_or_path: no such model folder: ./m",
        "resume_from_checkpoint: latest: no checkpoint in out to resume; set "
        "resume_from_checkpoint: null to start a new run",
    ]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="latest: no checkpoint in out"):  # (alone: its own)
        check_environment(config)


def test_an_hf_train_file_points_to_the_mixture(tmp_path: Path, capsys, nothing_loads) -> None:
    """``train_file: hf://datasets/org/name/file.jsonl`` (as datasets reads one) was 'no such
    file or folder' alone: the line says where an hf:// path is read, without the network."""
    model = save_tiny_model("llama", tmp_path / "m")
    given = "hf://datasets/org/name/file.jsonl"
    argv = ["train", "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "o")]
    assert main([*argv, "--train_file", given, "--eval_file", given]) == 2
    err = capsys.readouterr().err
    assert f"train_file: no such file or folder: {given} (an hf:// path is read by " in err
    assert f"dataset_mixture: {{datasets: [{{id: json, data_files: {given}}}]}}" in err
    assert f"eval_file: no such file or folder: {given} (hf:// paths are not read here" in err


def test_a_hub_dataset_id_as_a_file_says_where_an_id_is_read(
    tmp_path: Path, capsys, monkeypatch, nothing_loads
) -> None:
    """train_file: trl-lib/ultrafeedback_binarized (TRL's dataset_name value) was 'no such
    file or folder' alone; the line says to give it as dataset_name (score's --input: that it
    reads a local file). A missing file's path is not taken for an id."""
    monkeypatch.chdir(tmp_path)
    model = save_tiny_model("llama", tmp_path / "m")
    given = "trl-lib/ultrafeedback_binarized"
    argv = ["train", "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "o")]
    assert main([*argv, "--train_file", given, "--eval_file", given]) == 2
    err = capsys.readouterr().err
    assert f"train_file: no such file or folder: {given} (a hub dataset's id? give it as " \
        f"--dataset_name {given})" in err  # fmt: skip
    assert f"eval_file: no such file or folder: {given} (a hub dataset's id? eval_file reads " \
        "local files: download the dataset and give one of its data files, or give " \
        f"--dataset_name {given} for both (dataset_test_split evaluated))" in err  # fmt: skip
    # (said in each caller's words: a command line's --dataset_name was told a recipe's key)
    (tmp_path / "r.yaml").write_text(f"train_file: {given}\n")
    assert main(["train", "r.yaml", *argv[1:]]) == 2
    assert f"give it as dataset_name: {given} in r.yaml)" in capsys.readouterr().err
    config = DPOConfig(model_name_or_path=str(model), output_dir="o", train_file=given)
    with (
        pytest.raises(ConfigError, match=rf"give it as dataset_name='{given}'\)"),
        called_by(Caller(Spelling.PYTHON, Entry.TRAIN)),
    ):
        check_run(config, "cpu")
    score = ["score", "--model_name_or_path", str(model), "--output", "s.jsonl"]
    assert main([*score, "--input", given]) == 2
    assert "(a hub dataset's id? input reads local files" in capsys.readouterr().err
    assert main([*argv, "--train_file", "prefs/train.jsonl"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("no such file or folder: prefs/train.jsonl")


def test_a_python_caller_is_told_train_dataset_and_eval_dataset_the_command_line_its_options(
    tmp_path: Path, capsys, monkeypatch, nothing_loads
) -> None:
    """train(DPOConfig(...)) without data was told "train_file is required", and with nothing
    to evaluate "set eval_file", where a Python caller passes train_dataset= / eval_dataset=:
    its refusal names them; directpo train's keeps naming its options alone (each as its
    caller writes them: eval_file=..., --eval_file)."""
    monkeypatch.chdir(tmp_path)
    model = str(save_tiny_model("llama", tmp_path / "model"))
    config = DPOConfig(model_name_or_path=model, eval_on_start=True, report_to=["none"])
    with pytest.raises(ConfigError) as refused:
        train(config, echo=None)
    assert str(refused.value).splitlines()[1:] == [
        "  eval_on_start needs evaluations: pass eval_file=... or train(eval_dataset=...) "
        "(held-out pairs) or eval_generate=...",
        "  train_file is required (or train(train_dataset=...): a Dataset, a DataFrame or a list "
        "of dicts)",
    ]
    capsys.readouterr()
    assert (
        main(["train", "--model_name_or_path", model, "--eval_on_start", "--report_to", "none"])
        == 2
    )
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  eval_on_start needs evaluations: give --eval_file (held-out pairs) or --eval_generate",
        "  train_file is required",
    ]


def test_a_test_split_that_is_the_train_split_is_refused_before_it_is_read(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """dataset_test_split naming dataset_train_split too was refused once the train split had
    been loaded and every row checked; it needs no row, and is said with the other options'
    problems now (a missing reference model here), before any split is read."""
    from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl

    import directpo.run_data

    folder = tmp_path / "prefs"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", SENTIMENT_PAIRS)
    read: list[str] = []

    def loading(config, key, **kwargs):
        read.append(key)
        raise AssertionError("a split was read before the options' refusal")

    monkeypatch.setattr(directpo.run_data, "load_named_dataset", loading)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out",
                         dataset_name=str(folder), dataset_test_split="train")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^dataset_test_split='train' is dataset_train_split "
                       "too, so the held-out pairs would be the training pairs;.* or pass "
                       r"eval_file=\.\.\. or eval_strategy='no'$"):  # fmt: skip
        train(config, echo=lambda _: None)
    config.ref_model_name_or_path = str(tmp_path / "no-reference")
    with pytest.raises(ConfigError) as refused:
        train(config, echo=lambda _: None)
    assert len(refused.value.problems) == 2 and "dataset_test_split='train'" in str(refused.value)
    assert read == []
    config.ref_model_name_or_path = None  # (an eval set given to train() is the held-out one)
    with pytest.raises(AssertionError, match="a split was read"):
        train(config, eval_dataset=SENTIMENT_PAIRS, echo=lambda _: None)


def test_a_refusal_after_the_load_says_a_flag_beside_a_recipe_as_the_flag(
    tiny_model_dirs, tmp_path, capsys
) -> None:
    """'directpo train r.yaml --dataset_test_split train' was told the recipe's
    'dataset_test_split: train is dataset_train_split too', a key r.yaml lacks: the checks
    after the load (check_run's) now say each option as its source wrote it, as the load's
    own refusals do; the recipe's own key is still said as its key."""
    folder = tmp_path / "prefs"
    folder.mkdir()
    recipe = tmp_path / "r.yaml"
    model = tiny_model_dirs["gpt2"]
    recipe.write_text(f"model_name_or_path: {model}\ndataset_name: {folder}\nreport_to: none\n")
    argv = ["train", str(recipe), "--output_dir", str(tmp_path / "out")]
    assert main([*argv, "--dataset_test_split", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("directpo: error: --dataset_test_split train is dataset_train_split "), (
        err
    )
    recipe.write_text(recipe.read_text() + "dataset_test_split: train\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("directpo: error: dataset_test_split: train is dataset_train_split "), err
    # the data's refusals, read once the run is set up: --chosen_column foo was told the
    # recipe's 'set chosen_column / rejected_column'
    from tiny import SENTIMENT_PAIRS, write_jsonl

    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2])
    recipe.write_text(f"model_name_or_path: {model}\ntrain_file: {pairs}\nreport_to: none\n")
    assert main([*argv, "--chosen_column", "foo"]) == 2
    err = capsys.readouterr().err
    assert "column 'foo' not found" in err and "; give --chosen_column / " in err, err
    recipe.write_text(recipe.read_text() + "chosen_column: foo\n")
    assert main(argv) == 2
    assert "; set chosen_column / rejected_column" in capsys.readouterr().err


def test_a_mixtures_test_split_beside_eval_dataset_is_said_with_the_mixtures_rows(
    tiny_model_dirs, tmp_path
) -> None:
    """dataset_mixture's test_split_size with train(eval_dataset=...) was refused by the run
    once every source of the mixture had been read, so a bad row there was said alone and the
    refusal only by the next run. It needs no row: preflight says it with the other options'
    problems, the mixture's bad rows beside it (early_rows), in one error."""
    from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl

    rows = [*SENTIMENT_PAIRS, {"prompt": "p", "chosen": " a", "rejected": None}]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    mixture = {"datasets": [{"id": str(pairs)}], "test_split_size": 2}
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out", dataset_mixture=mixture)
    with pytest.raises(ConfigError) as refused:
        train(config, eval_dataset=SENTIMENT_PAIRS, echo=lambda _: None)
    said = str(refused.value)
    assert refused.value.problems == [
        "dataset_mixture's test_split_size and eval_dataset both give held-out pairs: keep one"
    ]
    assert f"line {len(rows)}: field 'rejected' is null" in said
