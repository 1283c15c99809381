"""OmegaConf's interpolations in a config file, with the flags given beside it."""

from __future__ import annotations

import os

import pytest

from directpo.cli_flags import yaml_and_flags
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError


def test_a_files_reference_takes_the_flags_value_as_omegaconfs_overrides_do(tmp_path) -> None:
    """``logging_dir: ${output_dir}/logs`` under ``--output_dir b`` stayed the file's folder's
    logs (the flags replaced values after the references were resolved): a second run's logs
    went into the first run's folder. The flags now take part, as torchtune's overrides are
    merged before OmegaConf resolves; a flag's own value is kept as written."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: /runs/a\nlogging_dir: ${output_dir}/logs\nrun_name: dpo-${max_steps}\n"
        "max_steps: 2\n"
    )
    flags = ["--output_dir", "/runs/b", "--max_steps", "3"]
    config = load_config(*yaml_and_flags([str(recipe), *flags], DPOConfig))
    assert (config.output_dir, config.logging_dir) == ("/runs/b", "/runs/b/logs")
    assert (config.run_name, config.max_steps) == ("dpo-3", 3)
    config = load_config(*yaml_and_flags([str(recipe), "--run_name", "x${y}"], DPOConfig))
    assert (config.logging_dir, config.run_name) == ("/runs/a/logs", "x${y}")
    # a flag of another tool's name for the option (OpenRLHF's --save_path: output_dir)
    config = load_config(*yaml_and_flags([str(recipe), "--save_path", "/runs/c"], DPOConfig))
    assert config.logging_dir == "/runs/c/logs"


def test_nested_relative_and_null_references_are_resolved_as_omegaconf_does(
    tmp_path, monkeypatch
) -> None:
    """``${oc.env:${var}}`` was left as the text '${oc.env:HOME}' (a folder of that name),
    ``${.x}`` (a key beside the value) was refused as a key '.x' the file lacks, and
    ``${oc.env:X,null}`` gave the text 'null': each is now OmegaConf's value. A loop inside a
    mapping names the key it starts from (m.y)."""
    monkeypatch.setenv("DPO_ROOT", "/data")
    monkeypatch.delenv("DPO_UNSET_Y", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "run_name: DPO_ROOT\noutput_dir: ${oc.env:${run_name}}/dpo\n"
        "logging_dir: ${oc.env:DPO_UNSET_Y,null}\n"
        "model_init_kwargs:\n  revision: main\n  subfolder: ${.revision}-sft\n"
    )
    config = load_config(*yaml_and_flags([str(recipe)], DPOConfig))
    assert (config.output_dir, config.logging_dir) == ("/data/dpo", None)
    assert config.model_init_kwargs["subfolder"] == "main-sft"
    from directpo.yaml_interpolation import resolved

    with pytest.raises(ConfigError, match=r"f.yaml: m.y: .*loops \(m.y -> m -> m\)"):
        resolved({"m": {"y": "${m}"}}, "f.yaml")


def test_a_key_other_values_refer_to_is_the_files_variable_not_an_option(tmp_path) -> None:
    """OmegaConf's users keep values in keys of their own (``model_dir: ...`` for
    ``model_name_or_path: ${model_dir}``): each was refused as an unknown option, with a
    misleading 'did you mean hub_model_id?'. A key that no option reads and that another value
    refers to is the file's variable; one nothing refers to is still refused."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_dir: /models/llama\nmodel_name_or_path: ${model_dir}\nsteps: 5\n"
        "max_steps: ${steps}\nlogging_dir: ${steps_dir.logs}\nsteps_dir: {logs: /l}\n"
    )
    config = load_config(str(recipe))
    assert (config.model_name_or_path, config.max_steps, config.logging_dir) == (
        "/models/llama",
        5,
        "/l",
    )
    recipe.write_text("model_dir: /models/llama\nmodel_name_or_path: /m\n")
    with pytest.raises(ConfigError, match="unknown option 'model_dir'"):
        load_config(str(recipe))


def test_a_files_env_block_is_set_before_its_references_read_the_environment(
    tmp_path, monkeypatch
) -> None:
    """TRL's ``env:`` block was set after ``${oc.env:...}`` were resolved: a reference to a
    variable the block sets read the shell's old value (or was refused as unset); the block is
    set first, its own references resolved as the file's others are."""
    monkeypatch.setenv("DPO_ENV_ROOT", "/old")
    monkeypatch.setenv("DPO_ENV_UNSET", "")
    monkeypatch.delenv("DPO_ENV_UNSET")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "run_name: r1\nenv:\n  DPO_ENV_ROOT: /new\n  DPO_ENV_UNSET: ${run_name}-logs\n"
        "output_dir: ${oc.env:DPO_ENV_ROOT}/out\nlogging_dir: /l/${oc.env:DPO_ENV_UNSET}\n"
    )
    config = load_config(*yaml_and_flags([str(recipe), "--run_name", "r2"], DPOConfig))
    assert (config.output_dir, config.logging_dir) == ("/new/out", "/l/r2-logs")


def test_a_record_written_before_escaping_reads_its_texts_as_written(tmp_path) -> None:
    """A run's config.yaml written before ``${`` was escaped holds a literal ``${beta}`` as it
    was given (a run_name 'sweep ${beta}'): resuming or scoring resolved it, as beta's value
    ('sweep 0.3'), and a data file named with '${' compared as another file. Such a file (a
    ``${`` without the escape) is read as written; a record written since resolves its escapes."""
    import yaml

    from directpo.reward import run_config
    from directpo.yaml_interpolation import read_run_record

    given = DPOConfig(run_name="sweep ${beta}", beta=0.3, chat_template_kwargs={"n": "${seed}"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(given.to_dict(), sort_keys=False))
    assert run_config(tmp_path).run_name == "sweep ${beta}"
    record = read_run_record(str(tmp_path / "config.yaml"))
    assert (record["run_name"], record["chat_template_kwargs"]) == (
        "sweep ${beta}",
        {"n": "${seed}"},
    )
    given.save_record(tmp_path / "config.yaml")  # (escaped)
    assert "\\${beta}" in (tmp_path / "config.yaml").read_text()
    assert read_run_record(str(tmp_path / "config.yaml"))["run_name"] == "sweep ${beta}"
    assert run_config(tmp_path).chat_template_kwargs == {"n": "${seed}"}


def test_train_on_a_record_written_before_escaping_reads_its_texts_as_written(tmp_path) -> None:
    """``directpo train out/config.yaml`` on a record written before ``${`` was escaped (a
    literal run_name 'sweep ${beta}') trained as 'sweep 0.3': the CLI's reading resolved it, as
    resume's and score's no longer did. A recipe's own references still resolve."""
    import yaml

    given = DPOConfig(run_name="sweep ${beta}", beta=0.3, chat_template_kwargs={"n": "${seed}"})
    record = tmp_path / "config.yaml"
    since = ("cache_tokenized_max_gb", "dataloader_drop_last", "dataset_num_proc")  # (added after)
    written = {key: value for key, value in given.to_dict().items() if key not in since}
    record.write_text(yaml.safe_dump(written, sort_keys=False))
    config = load_config(*yaml_and_flags([str(record), "--max_steps", "3"], DPOConfig))
    assert (config.run_name, config.chat_template_kwargs) == ("sweep ${beta}", {"n": "${seed}"})
    assert config.max_steps == 3
    given.save_record(record)  # written since: escaped, read back as given
    assert load_config(*yaml_and_flags([str(record)], DPOConfig)).run_name == "sweep ${beta}"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("beta: 0.3\nrun_name: sweep ${beta}\n")
    assert load_config(*yaml_and_flags([str(recipe)], DPOConfig)).run_name == "sweep 0.3"


def test_a_recipe_made_from_a_runs_record_resolves_its_references(tmp_path) -> None:
    """A run's config.yaml (written since ``${`` is escaped) copied and edited into a sweep's
    recipe (``output_dir: runs/b${beta}``) was taken for a record written before escaping, which
    lists nearly every option too, and read as written: the run went to a folder named
    'b${beta}' without a word. A file listing an option added since is no such record."""
    import yaml

    record = tmp_path / "config.yaml"
    DPOConfig(beta=0.1).save_record(record)
    data = yaml.safe_load(record.read_text())
    data |= {"beta": 0.3, "output_dir": "runs/b${beta}", "run_name": "sweep ${beta}"}
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(*yaml_and_flags([str(recipe)], DPOConfig))
    assert (str(config.output_dir).endswith("runs/b0.3"), config.run_name) == (True, "sweep 0.3")


def test_shell_variables_in_env_and_path_options_are_read_as_a_shell_reads_them(
    tmp_path, monkeypatch
) -> None:
    """``DIRECTPO_CACHE: $HOME/c`` in a config's ``env:`` (TRL sets the text) and
    ``output_dir: $HOME/runs`` made folders named ``$HOME`` in the working folder; they are
    expanded as a shell expands them (an earlier env key read by a later one), an unset one is
    refused in one line (nothing set), ``${HOME}`` (OmegaConf's: a key of the file) is told
    ``${oc.env:HOME}``, and a chat template's own text keeps its ``$``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("DIRECTPO_CACHE", "DIRECTPO_TEST_MORE", "DIRECTPO_TEST_NOT_SET"):
        monkeypatch.delenv(name, raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "env:\n  DIRECTPO_CACHE: $HOME/cache\n  DIRECTPO_TEST_MORE: $DIRECTPO_CACHE/more\n"
        "output_dir: $HOME/runs\nlogging_dir: $DIRECTPO_TEST_MORE/logs\n"
        "chat_template: \"{{ '$HOME' }}{% for m in messages %}{{ m.content }}{% endfor %}\"\n"
    )
    config = load_config(str(recipe))
    assert os.environ["DIRECTPO_CACHE"] == f"{tmp_path}/cache"
    assert os.environ["DIRECTPO_TEST_MORE"] == f"{tmp_path}/cache/more"
    assert config.output_dir == f"{tmp_path}/runs"
    assert config.logging_dir == f"{tmp_path}/cache/more/logs"
    assert config.chat_template.startswith("{{ '$HOME' }}")
    monkeypatch.delenv("DIRECTPO_CACHE")
    recipe.write_text("env:\n  DIRECTPO_CACHE: $HOME/c\n  X_KEY: $DIRECTPO_TEST_NOT_SET/x\n")
    with pytest.raises(ConfigError, match=r"env: X_KEY: \$DIRECTPO_TEST_NOT_SET is not set"):
        load_config(str(recipe))
    assert "DIRECTPO_CACHE" not in os.environ  # none set unless all can be
    recipe.write_text("output_dir: $DIRECTPO_TEST_NOT_SET/runs\n")
    with pytest.raises(ConfigError, match=r"output_dir: \$DIRECTPO_TEST_NOT_SET is not set"):
        load_config(str(recipe))
    monkeypatch.setenv("DIRECTPO_TEST_SECRET", "a$DIRECTPO_TEST_NOT_SET$HOME")
    recipe.write_text("env:\n  DIRECTPO_TEST_MORE: ${oc.env:DIRECTPO_TEST_SECRET}\n")
    load_config(str(recipe))  # an interpolated value is read once, as a shell reads "$X"
    assert os.environ["DIRECTPO_TEST_MORE"] == "a$DIRECTPO_TEST_NOT_SET$HOME"
    recipe.write_text("env:\n  DIRECTPO_CACHE: ${HOME}/c\n")
    with pytest.raises(ConfigError, match=r"\$\{oc.env:HOME\} \(or \$HOME\) for the environ"):
        load_config(str(recipe))


def test_a_path_with_a_dollar_of_its_own_is_read_as_written(tmp_path, monkeypatch) -> None:
    """A folder named ``a$b`` (given quoted, the shell's reading already) was refused as
    '$b is not set', its output beside it too: a path there as written (an output by its
    folder) is kept; one that is not is still expanded, or refused where unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("b", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "a$b").mkdir()
    (tmp_path / "a$b" / "d.jsonl").write_text("{}\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train_file: a$b/d.jsonl\noutput_dir: a$b/runs\n")
    config = load_config(str(recipe))
    assert (config.train_file, config.output_dir) == ("a$b/d.jsonl", "a$b/runs")
    (tmp_path / "home" / "a$b").mkdir(parents=True)  # under the home folder, as ~/a$b
    recipe.write_text("output_dir: ~/a$b/runs\n")
    assert load_config(str(recipe)).output_dir == f"{tmp_path}/home/a$b/runs"
    recipe.write_text("output_dir: c$b/runs\n")  # no such folder: the shell's reading
    with pytest.raises(ConfigError, match=r"output_dir: \$b is not set"):
        load_config(str(recipe))
    (tmp_path / "$HOME").mkdir()  # there as written and as read: the shell's reading
    recipe.write_text("output_dir: $HOME/runs\n")
    assert load_config(str(recipe)).output_dir == f"{tmp_path}/home/runs"


def test_a_backslashed_dollar_is_a_dollar_of_the_text(tmp_path, monkeypatch) -> None:
    """A password holding ``$`` in a config's ``env:`` (``'pa$s9word'``) was refused as '$s9word
    is not set: ... write the text itself', with no way to write it: ``\\$`` is a ``$`` of the
    text, as in a shell, a variable beside it still read, and the refusal says so."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("s9word", raising=False)
    monkeypatch.delenv("DIRECTPO_TEST_SECRET", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("env:\n  DIRECTPO_TEST_SECRET: pa\\$s9word$HOME\n")
    load_config(str(recipe))
    assert os.environ["DIRECTPO_TEST_SECRET"] == f"pa$s9word{tmp_path}"
    recipe.write_text("env:\n  DIRECTPO_TEST_MORE: pa$s9word\n")
    with pytest.raises(ConfigError, match=r"\$s9word is not set .*: set it, or write \\\$ for"):
        load_config(str(recipe))
    recipe.write_text("output_dir: runs/\\$s9word\n")
    assert load_config(str(recipe)).output_dir == "runs/$s9word"


def test_a_key_the_flags_replace_is_not_resolved(tmp_path, monkeypatch) -> None:
    """``beta: ${oc.env:SWEEP_BETA}`` in a recipe run with ``--beta 0.2`` (or TRL's
    ``torch_dtype: ${oc.env:DTYPE}`` with ``--dtype``) was refused as the variable being
    unset, the key the flag replaces read anyway; OmegaConf merges the command line's before
    it resolves. A reference to the key reads the flag's value; train()'s keywords alike."""
    from directpo import train

    monkeypatch.delenv("SWEEP_BETA", raising=False)
    monkeypatch.delenv("DTYPE", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "beta: ${oc.env:SWEEP_BETA}\nrun_name: beta-${beta}\ntorch_dtype: ${oc.env:DTYPE}\n"
    )
    flags = ["--beta", "0.2", "--dtype", "bfloat16"]
    config = load_config(*yaml_and_flags([str(recipe), *flags], DPOConfig))
    assert (config.beta, config.run_name, config.dtype) == (0.2, "beta-0.2", "bfloat16")
    with pytest.raises(ConfigError, match=r"environment variable DTYPE is not set"):
        load_config(*yaml_and_flags([str(recipe), "--beta", "0.2"], DPOConfig))
    with pytest.raises(ConfigError) as info:  # (the keywords are read: then a missing option)
        train(str(recipe), beta=0.2, dtype="bfloat16", learning_rate=-1, echo=None)
    assert "SWEEP_BETA" not in str(info.value) and "learning_rate" in str(info.value)


def test_a_reference_to_a_trl_key_the_flags_replace_reads_the_flag(tmp_path, monkeypatch) -> None:
    """A recipe's 'torch_dtype: ${oc.env:DTYPE}' and 'run_name: run-${torch_dtype}' run with
    --dtype float32 (directpo's name of the key) was refused as "the file has no key
    torch_dtype", a key it has; the reference reads the flag's value, as it does beside
    --torch_dtype (OmegaConf merges the command line's before it resolves)."""
    monkeypatch.delenv("DTYPE", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("torch_dtype: ${oc.env:DTYPE}\nrun_name: run-${torch_dtype}\n")
    for flag in ("--dtype", "--torch_dtype"):
        config = load_config(*yaml_and_flags([str(recipe), flag, "float32"], DPOConfig))
        assert (config.dtype, config.run_name) == ("float32", "run-float32"), flag
    config = load_config(recipe, {"dtype": "bfloat16"}, overrides_from="train()")
    assert (config.dtype, config.run_name) == ("bfloat16", "run-bfloat16")
