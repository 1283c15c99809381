"""TRL's model-loading and PEFT options: any PEFT method, continuing an adapter, QLoRA's
one-line refusal where bitsandbytes cannot run, model_init_kwargs, trust_remote_code."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny import quiet, tiny_config

from directpo.cli import main
from directpo.errors import ConfigError, ModelLoadError
from directpo.preflight import check_environment
from directpo.trainer import train

pytest.importorskip("peft")


def rows(result) -> list[dict]:
    return [r for r in result.metrics if "loss" in r]


@pytest.mark.parametrize(
    "options, check",
    [
        ({"use_dora": True}, "use_dora"),
        ({"use_rslora": True}, "use_rslora"),
        ({"lora_modules_to_save": ["lm_head"]}, "modules_to_save"),
    ],
)
def test_lora_variants(tiny_model_dirs, pairs_file, tmp_path, options, check) -> None:
    out = tmp_path / "out"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, out, lora_r=4, max_steps=4,
                         learning_rate=5e-2, **options)  # fmt: skip
    result = rows(train(config, echo=quiet))
    assert result[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # reference: adapters off
    assert result[-1]["loss"] < result[0]["loss"]
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved[check] not in (False, None)
    weights = load_file(out / "adapter_model.safetensors")
    if check == "modules_to_save":
        assert any("lm_head" in name for name in weights)
    if check == "use_dora":
        assert any("lora_magnitude_vector" in name for name in weights)


def test_any_peft_config_from_python(tiny_model_dirs, pairs_file, tmp_path) -> None:
    from peft import AdaLoraConfig, IA3Config, PromptTuningConfig

    out = tmp_path / "ia3"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=3,
                         learning_rate=5e-2)  # fmt: skip
    peft_config = IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                            feedforward_modules=["down_proj"])  # fmt: skip
    result = rows(train(config, echo=quiet, peft_config=peft_config))
    assert result[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert result[-1]["loss"] != result[0]["loss"]
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "IA3"
    prompt = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    config.output_dir = str(tmp_path / "prompt")
    # refused before any model loads (ConfigError), as apply_peft refuses them after
    with pytest.raises(ConfigError, match="prepends virtual tokens"):
        train(config, echo=quiet, peft_config=prompt)
    adalora = AdaLoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj"], total_step=3)
    with pytest.raises(ConfigError, match="AdaLoraConfig reallocates its ranks"):
        train(config, echo=quiet, peft_config=adalora)
    config.output_dir, config.lora_r = str(tmp_path / "both"), 4
    with pytest.raises(ConfigError, match="peft_config and lora_r are both given"):
        train(config, echo=quiet, peft_config=peft_config)


def test_a_peft_config_for_another_task_is_refused_before_any_model_loads(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """``LoraConfig(task_type="SEQ_CLS")`` wrapped the causal LM in
    PeftModelForSequenceClassification and trained: the output's adapter_config.json then
    loaded in no AutoPeftModelForCausalLM, where ``lora_task_type: SEQ_CLS`` is refused. It is
    refused the same way, before the model loads (as prompt tuning now is)."""
    from peft import LoraConfig, PromptTuningConfig, TaskType

    import directpo.trainer as trainer_module

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(trainer_module, "prepare_run", no_load)
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out")
    for task in ("SEQ_CLS", TaskType.TOKEN_CLS):
        lora = LoraConfig(r=4, target_modules=["q_proj"], task_type=task)
        with pytest.raises(ConfigError, match=r"^peft_config: task_type '(SEQ|TOKEN)_CLS' is not"):
            train(config, echo=quiet, peft_config=lora)
    with pytest.raises(ConfigError, match="prepends virtual tokens"):
        train(config, echo=quiet, peft_config=PromptTuningConfig(num_virtual_tokens=4))
    assert not (tmp_path / "out").exists()


def test_a_peft_config_beside_an_adapter_folder_says_to_remove_it(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """An adapter folder as model_name_or_path continues that adapter: with a LoraConfig given
    beside it the refusal said "remove lora_r (and the other lora_* options)", which the user
    had not written, and an IA3Config met "AttributeError: 'IA3Config' object has no attribute
    'init_lora_weights'" once the model had loaded. Both say to remove peft_config, before
    any model loads."""
    from peft import IA3Config, LoraConfig

    import directpo.trainer as trainer_module

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(trainer_module, "prepare_run", no_load)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    config = tiny_config(adapter, pairs_file, tmp_path / "out")
    ia3 = IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"])
    for peft_config in (LoraConfig(r=4, target_modules=["q_proj"]), ia3):
        with pytest.raises(ConfigError) as refused:
            train(config, echo=quiet, peft_config=peft_config)
        assert str(refused.value) == (
            f"model_name_or_path {adapter} is an adapter folder: training continues that "
            "adapter as it was saved; remove peft_config (or give the base model as "
            "model_name_or_path to train new adapters)"
        )


def test_a_lora_config_without_target_modules_is_recorded_as_peft_s_choice(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """TRL's examples' ``LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM")`` (peft's
    modules for the architecture) was said to be "a LoraConfig that no lora_* option expresses"
    and config.yaml recorded no adapters, its rerun a full fine-tune: it is
    ``lora_target_modules: null``, which reruns the same adapters."""
    from peft import LoraConfig

    from directpo.config import load_config

    first = tmp_path / "first"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, first, max_steps=2,
                         learning_rate=5e-2)  # fmt: skip
    lines: list[str] = []
    lora = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM")
    losses = [r["loss"] for r in rows(train(config, echo=lines.append, peft_config=lora))]
    assert not any("no lora_* option expresses" in line for line in lines)
    recorded = load_config(first / "config.yaml")
    assert (recorded.lora_r, recorded.lora_alpha, recorded.lora_target_modules) == (4, 8, None)
    recorded.output_dir = str(tmp_path / "rerun")
    assert [r["loss"] for r in rows(train(recorded, echo=quiet))] == pytest.approx(losses)
    saved = json.loads((tmp_path / "rerun" / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == {"q_proj", "v_proj"}  # peft's for Llama
    assert saved["task_type"] == "CAUSAL_LM"


def test_a_lora_config_of_a_regex_is_recorded_as_that_regex(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """peft's docs' ``LoraConfig(target_modules=r".*\\.(q|v)_proj")`` was said to be "a
    LoraConfig that no lora_* option expresses" and config.yaml recorded no adapters (its rerun
    a full fine-tune), though lora_target_modules now takes one regex alone: it is recorded as
    that regex, and the recorded file reruns the same adapters."""
    from peft import LoraConfig

    from directpo.config import load_config

    regex = r".*\.(q|v)_proj"
    first = tmp_path / "first"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, first, max_steps=2,
                         learning_rate=5e-2)  # fmt: skip
    lines: list[str] = []
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=regex, task_type="CAUSAL_LM")
    losses = [r["loss"] for r in rows(train(config, echo=lines.append, peft_config=lora))]
    assert not any("no lora_* option expresses" in line for line in lines)
    recorded = load_config(first / "config.yaml")
    assert (recorded.lora_r, recorded.lora_alpha, recorded.lora_target_modules) == (4, 8, [regex])
    recorded.output_dir = str(tmp_path / "rerun")
    assert [r["loss"] for r in rows(train(recorded, echo=quiet))] == pytest.approx(losses)
    saved = json.loads((tmp_path / "rerun" / "adapter_config.json").read_text())
    assert saved["target_modules"] == regex
    # a plain name as peft's string matches whole module names (none here): no option says it
    from directpo.lora_options import lora_options_of

    assert lora_options_of(LoraConfig(r=4, target_modules="q_proj")) is None


def test_trainable_token_indices_train_those_embedding_rows(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """peft's trainable_token_indices wraps the input embeddings in a TrainableTokensWrapper,
    which has no num_embeddings: the run stopped in an AttributeError traceback (the LM head
    check read the vocabulary size there)."""
    from peft import LoraConfig

    out = tmp_path / "out"
    lora = LoraConfig(r=4, target_modules=["c_attn"], trainable_token_indices=[5, 9, 20])
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, learning_rate=5e-2)
    result = train(config, echo=quiet, peft_config=lora)
    assert rows(result)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    trainable = sum(p.numel() for p in result.policy.parameters() if p.requires_grad)
    assert trainable == result.policy.get_nb_trainable_parameters()[0]
    delta = load_file(out / "adapter_model.safetensors")
    rows_trained = [v for k, v in delta.items() if "trainable_tokens_delta" in k]
    assert [tuple(v.shape) for v in rows_trained] == [(3, 32)] and rows_trained[0].any()


def test_a_peft_config_serves_another_model_after_a_run(tiny_model_dirs, pairs_file, tmp_path):
    """peft filled the caller's config object for the first model (target_modules, the base's
    path): a notebook reusing its IA3Config for another architecture was refused ("Target
    modules {'k_proj', ...} not found"). train() leaves the caller's object as it was."""
    from peft import IA3Config

    ia3 = IA3Config(task_type="CAUSAL_LM")  # peft's default modules for each model type
    before = ia3.to_dict()
    for style in ("llama", "gpt2"):
        config = tiny_config(tiny_model_dirs[style], pairs_file, tmp_path / style)
        train(config, echo=quiet, peft_config=ia3)
        assert ia3.to_dict() == before
        saved = json.loads((tmp_path / style / "adapter_config.json").read_text())
        assert saved["base_model_name_or_path"] == str(tiny_model_dirs[style])


def test_a_python_lora_config_is_recorded_as_options_that_rerun_it(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """config.yaml of a run given peft.LoraConfig recorded lora_r: 0, so rerunning it trained
    the whole model; an expressible LoraConfig now becomes the lora_* options (same adapters,
    same losses), one that is not is said."""
    from peft import IA3Config, LoraConfig

    from directpo.config import load_config

    # (lora_alpha 8.0: a whole alpha written as a float is the option's 8)
    lora = LoraConfig(r=4, lora_alpha=8.0, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")  # fmt: skip
    first = tmp_path / "first"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, first, max_steps=3,
                         learning_rate=5e-2)  # fmt: skip
    losses = [r["loss"] for r in rows(train(config, echo=quiet, peft_config=lora))]
    recorded = load_config(first / "config.yaml")
    assert (recorded.lora_r, recorded.lora_alpha) == (4, 8)
    assert recorded.lora_target_modules == ["q_proj", "v_proj"]
    assert config.lora_r is None  # the caller's object is left as it was
    recorded.output_dir = str(tmp_path / "rerun")
    rerun = [r["loss"] for r in rows(train(recorded, echo=quiet))]
    assert rerun == pytest.approx(losses, abs=1e-6)
    saved = json.loads((tmp_path / "rerun" / "adapter_config.json").read_text())
    assert (saved["r"], set(saved["target_modules"])) == (4, {"q_proj", "v_proj"})

    lines: list[str] = []
    ia3 = IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj"], feedforward_modules=[])
    config.output_dir = str(tmp_path / "ia3")
    train(config, echo=lines.append, peft_config=ia3)
    assert any("a IA3Config that no lora_* option expresses" in line for line in lines)
    assert load_config(tmp_path / "ia3" / "config.yaml").lora_r is None


def test_use_peft_with_a_peft_config_from_python_trains_that_config(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """TRL's DPOTrainer(peft_config=get_peft_config(model_args)): use_peft: true turns PEFT on,
    the peft_config says which. use_peft's default rank 16 stood beside it: "peft_config and
    lora_r are both given" though no lora_r was. An explicit lora_r still is refused."""
    from peft import IA3Config, LoraConfig

    from directpo.config import load_config

    llama = tiny_model_dirs["llama"]
    for name, peft_config, rank in (
        ("lora", LoraConfig(r=4, target_modules=["q_proj"]), 4),
        ("ia3", IA3Config(target_modules=["k_proj"], feedforward_modules=[]), None),
    ):
        out = tmp_path / name
        config = tiny_config(llama, pairs_file, out, max_steps=1, use_peft=True)
        train(config, echo=quiet, peft_config=peft_config)
        saved = json.loads((out / "adapter_config.json").read_text())
        assert saved["peft_type"] == peft_config.peft_type.value and saved.get("r") == rank
        assert load_config(out / "config.yaml").lora_r == rank  # reruns what trained
    config = tiny_config(llama, pairs_file, tmp_path / "x", max_steps=1, use_peft=True, lora_r=8)
    with pytest.raises(ConfigError, match="peft_config and lora_r are both given"):
        train(config, echo=quiet, peft_config=LoraConfig(r=4, target_modules=["q_proj"]))


def test_continuing_an_adapter_keeps_its_start_as_the_reference(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    first = tmp_path / "first"
    train(tiny_config(tiny_model_dirs["llama"], pairs_file, first, lora_r=4, max_steps=4,
                      learning_rate=5e-2), echo=quiet)  # fmt: skip
    start = load_file(first / "adapter_model.safetensors")
    second = tmp_path / "second"
    # (a fresh Adam moves every A and B factor by ~lr at once: a small lr continues smoothly)
    result = rows(train(tiny_config(first, pairs_file, second, max_steps=3, learning_rate=3e-3),
                        echo=quiet))  # fmt: skip
    # the reference is the adapter as it was: policy == reference at the first step
    assert result[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert result[-1]["loss"] < result[0]["loss"]
    end = load_file(second / "adapter_model.safetensors")
    assert start.keys() == end.keys()  # the same adapter, continued ("ref" is not output)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    config = tiny_config(first, pairs_file, tmp_path / "x", lora_r=8)
    with pytest.raises(ConfigError, match="is an adapter folder: training continues"):
        check_environment(config)
    # TRL's use_peft: true kept beside an adapter folder asks for PEFT training: the adapter
    # is continued (it meant a new rank-16 adapter, refused: "remove lora_r", never set)
    config = tiny_config(first, pairs_file, tmp_path / "peft", max_steps=1, use_peft=True)
    assert config.lora_r is None
    train(config, echo=quiet)
    assert load_file(tmp_path / "peft" / "adapter_model.safetensors").keys() == start.keys()
    # a lora_* option beside it was refused with "set lora_r: 16", which is refused in turn
    with pytest.raises(
        ConfigError,
        match="^lora_dropout is set but model_name_or_path .* is an "
        "adapter folder, continued with the settings of its adapter_config",
    ):
        tiny_config(first, pairs_file, tmp_path / "y", lora_dropout=0.1)  # fmt: skip


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_adapters_that_rewrite_the_base_keep_the_starting_model_as_the_reference(
    tiny_model_dirs, pairs_file, tmp_path, init
) -> None:
    """PiSSA and OLoRA move part of each base weight into the adapter (W = W_res + B0 A0): with
    the adapters off the model was W_res, which served as the reference (the first loss was
    not ln 2), and continuing such an adapter loaded it a second time as the reference, which
    made peft rewrite the base again under the policy too."""
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    llama, first = tiny_model_dirs["llama"], tmp_path / "first"
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=init)
    config = tiny_config(llama, pairs_file, first, max_steps=2, learning_rate=5e-2)
    assert rows(train(config, echo=quiet, peft_config=lora))[0]["loss"] == pytest.approx(
        math.log(2), abs=1e-6
    )
    continued = train(tiny_config(first, pairs_file, tmp_path / "second", max_steps=1,
                                  learning_rate=1e-3), echo=quiet)  # fmt: skip
    assert rows(continued)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    saved = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama), first)
    trained = dict(continued.policy.get_base_model().named_parameters())
    for name, weight in saved.get_base_model().named_parameters():
        if "base_layer" in name:  # the base under the adapter, as peft loads the folder once
            assert torch.equal(trained[name], weight), name


@pytest.mark.parametrize("init, step", [("eva", "initialize_lora_eva_weights"),
                                        ("lora_ga", "preprocess_loraga")])  # fmt: skip
def test_initialisations_computed_from_data_are_refused(
    tiny_model_dirs, pairs_file, tmp_path, init, step
) -> None:
    """EVA and LoRA-GA start from a peft pass over data that directpo never runs: peft then
    started plain LoRA adapters without a word. (Refused before any model loads.)"""
    from peft import LoraConfig

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=1)
    lora = LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=init)
    with pytest.raises(ConfigError, match=f"init_lora_weights '{init}' .* {step}"):
        train(config, echo=quiet, peft_config=lora)


@pytest.mark.parametrize(
    "options, python, error",
    [
        ({"lora_target_modules": ["q_proj", "v_prj"]}, False,
         r"lora_target_modules .*'v_prj' matches no layer .*: down_proj, .*v_proj"),
        ({"lora_modules_to_save": ["lm_head", "embed_out"]}, False,
         r"lora_modules_to_save .*'embed_out' matches no module .*: embed_tokens, lm_head"),
        ({"target_modules": ["q_proj", "nope"], "modules_to_save": ["norm"]}, True,
         r"target_modules\): 'nope' matches no layer"),
        ({"lora_target_parameters": ["mlp.experts.gate_up_proj"]}, False,
         r"lora_target_parameters .*'mlp.experts.gate_up_proj' matches no parameter"),
    ],
)  # fmt: skip
def test_a_listed_module_that_matches_nothing_is_refused(
    tiny_model_dirs, pairs_file, tmp_path, options, python, error
) -> None:
    """peft drops a target, modules_to_save or target_parameters name that matches nothing
    without a word (it stops only when no target matches): a typo or another architecture's
    name trained less than asked, e.g. no head trained in full, no expert adapted on a dense
    model."""
    from peft import LoraConfig

    lora = {"peft_config": LoraConfig(r=4, **options)} if python else {}
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=1,
                         **({} if python else {"lora_r": 4, **options}))  # fmt: skip
    with pytest.raises(ModelLoadError, match=error):
        train(config, echo=quiet, **lora)


def test_fifty_misspelt_target_modules_are_said_shortened_with_their_count(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Fifty names that match no layer ran the refusal to a screenful; they are said as a
    value is (80 characters and '...'), with their count, before the layers to choose from."""
    typos = [f"q_proj_{i:02d}" for i in range(50)]
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=1,
                         lora_r=4, lora_target_modules=typos)  # fmt: skip
    with pytest.raises(ModelLoadError) as refused:
        train(config, echo=quiet)
    said = str(refused.value)
    names = said.removeprefix("lora_target_modules (target_modules): ").split(" (50 names)")[0]
    assert len(names) == 80 and names.startswith("'q_proj_00', 'q_proj_01'"), said
    assert names.endswith("...") and "q_proj_49" not in said and "its linear layers: " in said


def test_ref_model_init_kwargs_load_a_separate_reference_beside_adapters(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """LoRA with a separate reference (TRL's force_use_ref_model): ref_model_init_kwargs load
    it (they were refused as 'no separate reference model is loaded'). Where the reference is
    the policy's own adapter start, they are refused (they were ignored without a word)."""
    from tiny import save_tiny_model

    other = tmp_path / "other"
    save_tiny_model("llama", other / "inner", seed=1)
    llama = tiny_model_dirs["llama"]
    common = dict(lora_r=4, max_steps=1)
    direct = train(
        tiny_config(llama, pairs_file, tmp_path / "direct",
                    ref_model_name_or_path=str(other / "inner"), **common),
        echo=quiet,
    )  # fmt: skip
    kwargs = train(
        tiny_config(llama, pairs_file, tmp_path / "kwargs", ref_model_name_or_path=str(other),
                    ref_model_init_kwargs={"subfolder": "inner"}, **common),
        echo=quiet,
    )  # fmt: skip
    assert abs(rows(direct)[0]["loss"] - math.log(2)) > 1e-4  # the other model is the reference
    assert rows(kwargs)[0]["loss"] == rows(direct)[0]["loss"]
    adapter = tmp_path / "kwargs"  # an adapter folder: continuing it, π_ref is its start
    config = tiny_config(adapter, pairs_file, tmp_path / "x", ref_model_init_kwargs={"a": 1})
    with pytest.raises(ConfigError, match="no separate reference model is loaded .the reference "
                       "is the policy's adapter as it starts"):  # fmt: skip
        train(config, echo=quiet)


def test_an_adapter_folder_without_a_tokenizer_reads_its_bases(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """peft's save_pretrained writes the adapter alone: continuing it (and scoring with it) takes
    the base's tokenizer (it failed: "tokenizer '<adapter>': cannot load (Couldn't instantiate
    the backend tokenizer from one of: )")."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from directpo.reward import ImplicitReward

    base = tiny_model_dirs["llama"]
    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    assert not (adapter / "tokenizer.json").exists()
    result = train(tiny_config(adapter, pairs_file, tmp_path / "out"), echo=quiet)
    assert rows(result)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert (tmp_path / "out" / "tokenizer.json").is_file()  # the output has one to load with
    scorer = ImplicitReward(str(adapter), str(base), beta=0.1)
    assert scorer.tokenizer.get_vocab() == result.tokenizer.get_vocab()


def test_an_adapter_whose_base_folder_is_gone_is_one_line(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """An adapter folder naming a base folder that is not there (moved, trained elsewhere):
    generate ended in huggingface_hub's traceback (the path taken for a hub id), train and
    score in "model '/gone/llama': cannot load as a causal LM (Repo id must be in the form
    ...)", naming neither the adapter folder nor its adapter_config.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    fields = json.loads((adapter / "adapter_config.json").read_text())
    gone = str(tmp_path / "gone" / "llama")
    (adapter / "adapter_config.json").write_text(
        json.dumps({**fields, "base_model_name_or_path": gone})
    )
    capsys.readouterr()
    io = ["--input", str(pairs_file), "--output", str(tmp_path / "out.jsonl")]
    for argv in (
        ["generate", *io],
        ["score", *io, "--ref_model_name_or_path", str(tiny_model_dirs["llama"]), "--beta", "0.1"],
        ["train", "--train_file", str(pairs_file), "--output_dir", str(tmp_path / "o")],
    ):
        assert main([*argv, "--model_name_or_path", str(adapter)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == (
            f"directpo: error: model '{adapter}': its adapter_config.json names "
            f"base_model_name_or_path '{gone}', which is no folder here (moved, or the adapter "
            "was trained on another machine): put the base model there, or set "
            "base_model_name_or_path to its folder or hub id"
        )


def test_a_folder_holding_a_model_and_an_adapter_is_refused_for_training(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """config.json and adapter_config.json in one folder: transformers loads the model with the
    adapter frozen on it, so training stopped at "no trainable parameters" (with lora_r: "is
    an adapter folder: training continues that adapter", which it did not)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    both = tmp_path / "both"
    shutil.copytree(tiny_model_dirs["llama"], both)
    model = AutoModelForCausalLM.from_pretrained(both)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(both)
    for lora in ({}, {"lora_r": 4}):
        config = tiny_config(both, pairs_file, tmp_path / "out", max_steps=1, **lora)
        with pytest.raises(ConfigError, match="holds a model .config.json. and an adapter"):
            train(config, echo=quiet)


def test_qlora_is_one_line_where_bitsandbytes_cannot_run(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine can run QLoRA")
    code = main(["train", "--model_name_or_path", str(tiny_model_dirs["llama"]),
                 "--train_file", str(pairs_file), "--output_dir", str(tmp_path / "o"),
                 "--lora_r", "4", "--load_in_4bit", "--bnb_4bit_quant_type", "nf4"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith(  # said in preflight, before any row or weight loads
        "directpo: error: --load_in_4bit needs a CUDA GPU (bitsandbytes' quantized kernels)"
    )
    for option in ("load_in_4bit", "load_in_8bit"):  # TRL: "cannot fine-tune purely quantized"
        quantized = tiny_config(
            tiny_model_dirs["llama"], pairs_file, tmp_path / option, **{option: True}
        )
        with pytest.raises(ConfigError, match=f"{option} needs adapters"):
            train(quantized, echo=quiet)
        # any PEFT method from Python may adapt a quantized base (it was refused as lora_r 0)
        from peft import IA3Config

        with pytest.raises(ConfigError, match=f"{option}=True needs a CUDA GPU"):
            train(quantized, echo=quiet, peft_config=IA3Config(task_type="CAUSAL_LM"))
    with pytest.raises(ConfigError, match="bnb_4bit_quant_type is set but load_in_4bit is off"):
        tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path, bnb_4bit_quant_type="fp4")


REMOTE_CONFIG = """
from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "tiny_remote"
"""
REMOTE_MODEL = """
from transformers import LlamaForCausalLM

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig
    marker = "remote code ran"
"""


def test_trust_remote_code_and_model_init_kwargs(tiny_model_dirs, pairs_file, tmp_path):
    remote = tmp_path / "remote"
    shutil.copytree(tiny_model_dirs["llama"], remote)
    (remote / "configuration_tiny_remote.py").write_text(REMOTE_CONFIG)
    (remote / "modeling_tiny_remote.py").write_text(REMOTE_MODEL)
    config = json.loads((remote / "config.json").read_text())
    config["model_type"] = "tiny_remote"
    config["auto_map"] = {
        "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
        "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM",
    }
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="cannot load as a causal LM"):
        train(tiny_config(remote, pairs_file, tmp_path / "no"), echo=quiet)
    result = train(
        tiny_config(remote, pairs_file, tmp_path / "yes", trust_remote_code=True,
                    model_init_kwargs={"low_cpu_mem_usage": True}),
        echo=quiet,
    )  # fmt: skip
    assert type(result.policy).marker == "remote code ran"
    # TRL's spelling (its dpo script puts it in model_init_kwargs): the same trust
    result = train(
        tiny_config(remote, pairs_file, tmp_path / "trl", max_steps=1,
                    model_init_kwargs={"trust_remote_code": True}),
        echo=quiet,
    )  # fmt: skip
    assert type(result.policy).marker == "remote code ran"
    with pytest.raises(
        ConfigError, match="model_init_kwargs: dtype: float16 is directpo.s dtype option"
    ):
        tiny_config(remote, pairs_file, tmp_path / "x", model_init_kwargs={"dtype": "float16"})


def test_model_init_kwargs_subfolder_reads_config_weights_and_tokenizer_there(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """README: model_init_kwargs take from_pretrained's location arguments (subfolder,
    revision). The config comes from there too, not from the folder above (here another
    architecture), and a folder whose tokenizer is in the subfolder finds it."""
    root = tmp_path / "repo"
    shutil.copytree(tiny_model_dirs["llama"], root)
    shutil.copytree(tiny_model_dirs["gpt2"], root / "gpt2")
    nested = tmp_path / "nested"
    shutil.copytree(tiny_model_dirs["gpt2"], nested / "inner")
    for folder, name in ((root, "a"), (nested, "b")):
        config = tiny_config(
            folder, pairs_file, tmp_path / name,
            model_init_kwargs={"subfolder": "gpt2" if folder == root else "inner"},
        )  # fmt: skip
        result = train(config, echo=quiet)
        assert type(result.policy).__name__ == "GPT2LMHeadModel"
        assert rows(result)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert config.tokenizer_path == str(nested / "inner")
    with pytest.raises(ConfigError, match=r"no such model folder: .*nested/gone \(its subfolder"):
        gone = {"subfolder": "gone"}
        train(tiny_config(nested, pairs_file, tmp_path / "c", model_init_kwargs=gone), echo=quiet)


def test_all_linear_lora_on_a_mamba_hybrid_skips_what_peft_refuses() -> None:
    """lora_r on Falcon-H1 (the default all-linear targets) stopped with peft's 'Module
    out_proj is incompatible with Mamba-based models': peft picks the mixers' out_proj and conv1d
    for all-linear, then refuses them. all-linear now means every layer LoRA can adapt."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from directpo.adapters import apply_peft
    from directpo.lora_options import lora_config

    config = AutoConfig.for_model(
        "falcon_h1", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, mamba_d_ssm=32,
        mamba_n_heads=2, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=8,
    )  # fmt: skip
    model = apply_peft(
        AutoModelForCausalLM.from_config(config), lora_config(4, 8, 0.0, ["all-linear"])
    )
    adapted = {name.split(".")[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert {"in_proj", "q_proj", "o_proj", "down_proj"} <= adapted
    assert not adapted & {"out_proj", "conv1d"}
    named = lora_config(4, 8, 0.0, ["q_proj", "out_proj"])  # named by the user: peft's refusal
    with pytest.raises(ModelLoadError, match="out_proj.*incompatible"):
        apply_peft(AutoModelForCausalLM.from_config(config), named)


def _completion_logps(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(["The movie was wonderful.", "Human: Hi Assistant: Sure."], padding=True,
                    return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        logits = model(**ids).logits.float()
    return logits.log_softmax(-1)[:, :-1].gather(-1, ids.input_ids[:, 1:, None])[..., 0]


@pytest.mark.parametrize(
    "init, merge",
    [("pissa_niter_2", False), ("pissa_niter_2", True), ("pissa", False), ("olora", False)],
)
def test_adapters_that_rewrite_the_base_reload_as_trained(
    tiny_model_dirs, pairs_file, tmp_path, init, merge
) -> None:
    """A PiSSA / OLoRA adapter trains on W_res = W - B0 A0, which peft computes again whenever
    the folder is loaded: with the randomized SVD (pissa_niter_N) another W_res, so the saved
    folder (and merge_lora's, merged through it) was another model than the one trained. The
    folders hold plain LoRA on the stored base (peft's conversion: [A | A0], [B | -B0]), which
    transformers + peft load as trained, and checkpoints resume from them."""
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llama, out = tiny_model_dirs["llama"], tmp_path / "out"
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=init)
    config = tiny_config(llama, pairs_file, out, max_steps=3, learning_rate=5e-2,
                         merge_lora=merge, save_steps=1)  # fmt: skip
    result = train(config, echo=quiet, peft_config=lora)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    trained = _completion_logps(result.policy, tokenizer)
    torch.manual_seed(123)  # another randomized SVD than training's
    if merge:
        reloaded = AutoModelForCausalLM.from_pretrained(out)
    else:
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama), out)
    torch.testing.assert_close(_completion_logps(reloaded, tokenizer), trained,
                               atol=1e-5, rtol=0)  # fmt: skip
    if merge:
        return
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8  # [A | A0]
    saved = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama),
                                      out / "checkpoint-3")  # fmt: skip
    torch.testing.assert_close(_completion_logps(saved, tokenizer), trained, atol=1e-5, rtol=0)
    config.resume_from_checkpoint = str(out / "checkpoint-2")
    resumed = train(config, echo=quiet, peft_config=lora)
    assert rows(resumed)[-1]["loss"] == pytest.approx(rows(result)[-1]["loss"], abs=1e-6)
