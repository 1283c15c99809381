"""OmegaConf's interpolations in a config file, with the flags given beside it."""

from __future__ import annotations

import pytest

from directpo.cli_flags import yaml_and_flags
from directpo.config import DPOConfig, load_config


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
    from directpo.errors import ConfigError
    from directpo.yaml_interpolation import resolved

    with pytest.raises(ConfigError, match=r"f.yaml: m.y: .*loops \(m.y -> m -> m\)"):
        resolved({"m": {"y": "${m}"}}, "f.yaml")
