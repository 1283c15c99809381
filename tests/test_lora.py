from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from tiny import tiny_config
from transformers import AutoModelForCausalLM

import directpo.reference as reference_module
from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.trainer import train

pytest.importorskip("peft")


def lora_config(model, data, out, **overrides) -> DPOConfig:
    return tiny_config(
        model, data, out, **{"max_steps": 6, "lora_r": 8, "lora_alpha": 16, **overrides}
    )


def test_lora_reference_is_the_base_with_adapters_off(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    loads = []
    real = reference_module.load_causal_lm
    monkeypatch.setattr(
        reference_module,
        "load_causal_lm",
        lambda *a, **k: loads.append(k["trainable"]) or real(*a, **k),
    )
    out = tmp_path / "out"
    result = train(lora_config(tiny_model_dirs["llama"], pairs_file, out), echo=lambda _: None)
    assert loads == [True]  # one model in memory: no separate reference copy
    rows = [r for r in result.metrics if "loss" in r]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # LoRA starts as a no-op
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    # only adapters moved: the base weights equal the start model's
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]).state_dict()
    base = result.policy.get_base_model().state_dict()
    for key, tensor in start.items():
        assert torch.equal(
            base[key.replace(".weight", ".base_layer.weight")]
            if key.replace(".weight", ".base_layer.weight") in base
            else base[key],
            tensor,
        ), key
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert not (out / "model.safetensors").exists()


def test_the_policys_own_folder_spelled_otherwise_is_no_separate_reference(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """ref_model_name_or_path naming the policy's folder with a trailing slash or through a
    link loaded a second, frozen copy of the model (twice the memory) in place of the base with
    adapters off, and sync_ref_model refused it as another model."""
    loads = []
    real = reference_module.load_causal_lm
    monkeypatch.setattr(
        reference_module,
        "load_causal_lm",
        lambda *a, **k: loads.append(k["trainable"]) or real(*a, **k),
    )
    model = tiny_model_dirs["llama"]
    (tmp_path / "link").symlink_to(model, target_is_directory=True)
    for name, spelled in (("slash", f"{model}/"), ("link", str(tmp_path / "link"))):
        loads.clear()
        config = lora_config(
            model, pairs_file, tmp_path / f"out_{name}", max_steps=1, ref_model_name_or_path=spelled
        )
        result = train(config, echo=lambda _: None)
        assert loads == [True], name  # one model in memory
        assert isinstance(result.reference, reference_module.AdapterDisabledReference), name
        tiny_config(model, pairs_file, tmp_path / "tr", ref_model_name_or_path=spelled,
                    sync_ref_model=True)  # fmt: skip
    with pytest.raises(ConfigError, match="sync_ref_model: the reference follows the policy"):
        tiny_config(model, pairs_file, tmp_path / "tr", ref_model_name_or_path=str(tmp_path),
                    sync_ref_model=True)  # fmt: skip


def test_merge_lora_writes_a_plain_model_with_the_same_logits(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    out = tmp_path / "out"
    result = train(
        lora_config(tiny_model_dirs["gpt2"], pairs_file, out, merge_lora=True), echo=lambda _: None
    )
    assert (out / "adapter" / "adapter_config.json").is_file()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not hasattr(plain, "peft_config")
    ids = torch.tensor([[3, 17, 42, 99]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, result.policy.eval()(ids).logits, atol=1e-5)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(ids).logits, start(ids).logits, atol=1e-4)


def test_lora_resume_is_exact(tiny_model_dirs, pairs_file, tmp_path) -> None:
    settings = dict(max_steps=4, save_steps=2, per_device_train_batch_size=3)
    full = train(
        lora_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "full", **settings),
        echo=lambda _: None,
    )
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train(
        lora_config(
            tiny_model_dirs["llama"],
            pairs_file,
            resumed_dir,
            resume_from_checkpoint="latest",
            **settings,
        ),
        echo=lambda _: None,
    )
    want, got = full.policy.state_dict(), resumed.policy.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_lora_options_without_lora_are_refused() -> None:
    with pytest.raises(ConfigError, match="lora_alpha is set but lora_r is 0"):
        DPOConfig(lora_alpha=8)
    with pytest.raises(ConfigError, match="merge_lora is set but lora_r is 0"):
        train(DPOConfig(merge_lora=True), echo=None)


def test_merge_lora_merges_a_peft_config_from_python(tiny_model_dirs, pairs_file, tmp_path):
    """merge_lora was refused at DPOConfig(...) (lora_r 0) before train() could see the
    peft_config: a LoRA given as a Python object could not be merged."""
    from peft import LoraConfig

    out = tmp_path / "out"
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, merge_lora=True,
                         learning_rate=5e-2)  # fmt: skip
    result = train(config, echo=None, peft_config=LoraConfig(r=4, lora_alpha=8))
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([[3, 17, 42, 99]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, result.policy.eval()(ids).logits, atol=1e-5)
        start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()
        assert not torch.allclose(plain(ids).logits, start(ids).logits, atol=1e-4)


def test_a_lora_output_folder_works_where_a_model_folder_does(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """score, rank and generate open the default LoRA output (an adapter folder); the reward's
    reference is the base with the adapters off, as in training."""
    from directpo.cli import main
    from directpo.reward import ImplicitReward

    base = tiny_model_dirs["llama"]
    out = tmp_path / "lora"
    config = lora_config(base, pairs_file, out, learning_rate=5e-2, merge_lora=True)
    train(config, echo=lambda _: None)
    adapter = out / "adapter"  # the adapter folder, beside the merged model in out
    shutil.copy(out / "config.yaml", adapter / "config.yaml")
    assert not (adapter / "config.json").exists()

    rows = tmp_path / "pairs.jsonl"
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    rows.write_text(
        "".join(json.dumps({**p, "responses": [p["chosen"], p["rejected"]]}) + "\n" for p in pairs)
    )
    # the adapter's rewards equal the merged model's against the same base
    from_adapter = ImplicitReward.from_run(str(adapter))
    assert from_adapter.adapters_off and from_adapter.reference is None
    merged = ImplicitReward(str(out), str(base), beta=config.beta)
    prompts, responses = ["The movie was", "I love this film,"], [" wonderful.", " a dull waste."]
    got, expected = from_adapter.score(prompts, responses), merged.score(prompts, responses)
    assert got == pytest.approx(expected, abs=1e-4)
    assert max(abs(r) for r in got) > 1e-3  # training moved the policy away from the base

    for command, extra in (
        ("score", []),
        ("rank", []),
        ("generate", ["--max_new_tokens", "4"]),
    ):
        target = tmp_path / f"{command}.jsonl"
        code = main(
            [command, "--model_name_or_path", str(adapter), "--input", str(rows),
             "--output", str(target), *extra]
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert len(target.read_text().splitlines()) == len(rows.read_text().splitlines())


def test_an_adapter_of_a_revision_loads_onto_that_revision(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A LoRA run on model_init_kwargs' revision wrote adapter_config.json with revision: null:
    peft's AutoPeftModelForCausalLM (and directpo, given the bare adapter folder) put the
    adapter on main's weights, a silently different model."""
    import huggingface_hub.constants
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file, save_file

    from directpo.model_preparation import LoadOptions
    from directpo.models import load_causal_lm

    cache = tmp_path / "cache"
    repo = cache / "models--tiny--revised"
    for commit in ("a" * 40, "b" * 40):
        shutil.copytree(tiny_model_dirs["llama"], repo / "snapshots" / commit)
    weights = repo / "snapshots" / ("b" * 40) / "model.safetensors"
    save_file({k: v + 0.25 for k, v in load_file(weights).items()}, weights)  # revision v2
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "refs" / "v2").write_text("b" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network
    location = {"revision": "v2", "cache_dir": str(cache)}
    run = tmp_path / "run"
    train(lora_config("tiny/revised", pairs_file, run, max_steps=1, model_init_kwargs=location),
          echo=lambda _: None)  # fmt: skip
    want = AutoModelForCausalLM.from_pretrained("tiny/revised", **location).state_dict()
    by_peft = AutoPeftModelForCausalLM.from_pretrained(run, cache_dir=str(cache))
    options = LoadOptions(init_kwargs={"cache_dir": str(cache)})
    ours = load_causal_lm(str(run), "float32", trainable=False, options=options)
    for model in (by_peft, ours):
        base = model.get_base_model().state_dict()
        assert all(torch.equal(base[k], v) for k, v in want.items() if k in base)
        assert sum(k in base for k in want) > 5


def test_null_target_modules_are_peft_s_choice_as_in_trl(tiny_model_dirs, pairs_file, tmp_path):
    """TRL's ModelConfig default (lora_target_modules: None, peft's modules for the
    architecture: q_proj and v_proj for Llama) was refused as 'must be a list'."""
    out = tmp_path / "out"
    config = lora_config(tiny_model_dirs["llama"], pairs_file, out, lora_target_modules=None)
    train(config, echo=lambda _: None)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="lora_target_modules must be a non-empty list"):
        DPOConfig(lora_r=8, lora_target_modules=[])


def test_a_regex_target_is_peft_s_regex_not_a_name(tiny_model_dirs) -> None:
    """``--lora_target_modules '.*\\.(q|v)_proj'`` (peft's docs' regex form) became a list's
    one item, which peft matches as a module's name: refused only after the model had loaded
    ('matches no layer'). A regex given alone is peft's string (the whole module name must
    match); beside names, where it would still be an item, it is refused at once."""
    from directpo.adapters import apply_peft
    from directpo.lora_options import LORA_OPTIONS, lora_config_from

    regex = r".*\.(q|v)_proj"
    config = DPOConfig(lora_r=8, lora_target_modules=regex)
    assert config.lora_target_modules == [regex]
    peft_config = lora_config_from({key: getattr(config, key) for key in LORA_OPTIONS})
    assert peft_config.target_modules == regex
    model = apply_peft(AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]), peft_config)
    adapted = {name.rsplit(".", 1)[-1] for name in model.targeted_module_names}
    assert adapted == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError) as info:
        DPOConfig(lora_r=8, lora_target_modules=[regex, "o_proj"])
    assert str(info.value) == (
        "lora_target_modules must be module names, or one regex alone (peft matches it against "
        rf"each whole module name) (got [{regex!r}, 'o_proj'])"  # (Python's list, as written)
    )
    names = DPOConfig(lora_r=8, lora_target_modules=["q_proj", "v_proj"])
    assert lora_config_from({key: getattr(names, key) for key in LORA_OPTIONS}).target_modules == {
        "q_proj",
        "v_proj",
    }


def test_a_regex_target_with_a_comma_is_one_regex(tmp_path) -> None:
    """A regex's own comma (``{1,2}``) cut it into two list items, as a flag's, a YAML
    string's or a keyword's string: ``--lora_target_modules 'model\\.layers\\.[0-9]{1,2}\\..*'``
    was refused as 'one regex alone' beside a name, the user having given one. Words outside
    brackets are still split at commas."""
    from directpo.cli_flags import LIST, flag_value
    from directpo.config import load_config

    regex = r"model\.layers\.[0-9]{1,2}\.self_attn\.(q|v)_proj"
    assert DPOConfig(lora_r=8, lora_target_modules=regex).lora_target_modules == [regex]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"lora_r: 8\nlora_target_modules: '{regex}'\n")
    assert load_config(recipe).lora_target_modules == [regex]
    flagged = load_config(recipe, {"lora_target_modules": flag_value(LIST, [regex])})
    assert flagged.lora_target_modules == [regex]
    assert flag_value(LIST, ["q_proj,k_proj", "v_proj"]) == ["q_proj", "k_proj", "v_proj"]
    names = DPOConfig(lora_r=8, lora_target_modules="q_proj, v_proj").lora_target_modules
    assert names == ["q_proj", "v_proj"]
    assert DPOConfig(loss_type="sigmoid,ipo").loss_type == ["sigmoid", "ipo"]
    from directpo.option_values import comma_words

    # an escaped bracket opens nothing: the comma after it still splits
    assert comma_words(r"a\{,b") == [r"a\{", "b"]


def test_all_linear_beside_names_or_misspelt_is_refused_before_the_model_loads() -> None:
    """peft reads all-linear only as its one string: beside names (all-linear plus
    lm_head) it was a list's item, a layer's name, and all_linear / ALL-LINEAR too; each was
    refused as matching no layer only once the model had loaded."""
    with pytest.raises(ConfigError) as info:
        DPOConfig(lora_r=8, lora_target_modules=["all-linear", "lm_head"])
    assert str(info.value) == (
        "lora_target_modules must be all-linear alone (peft's word for every linear layer), "
        "or module names (got ['all-linear', 'lm_head'])"
    )
    for misspelt in ("all_linear", "ALL-LINEAR"):
        with pytest.raises(ConfigError) as info:
            DPOConfig(lora_r=8, lora_target_modules=misspelt)
        assert str(info.value) == (
            f"lora_target_modules: {misspelt} is no layer's name; did you mean all-linear "
            "(peft's word for every linear layer)?"
        )
    assert DPOConfig(lora_r=8, lora_target_modules="all-linear").lora_target_modules == [
        "all-linear"
    ]
    assert DPOConfig(lora_r=8, lora_target_modules="q_proj,lm_head").lora_target_modules == [
        "q_proj",
        "lm_head",
    ]


def test_a_regex_of_last_names_is_told_the_whole_name_regex(tiny_model_dirs) -> None:
    """``--lora_target_modules 'q_proj|v_proj'`` (a regex of the layers' last names) was
    peft's 'Target modules q_proj|v_proj not found in the base model': peft matches the whole
    module name, and the regex that does is said; a regex peft cannot read, whose re.error
    was a traceback after the model loaded, is refused with the options."""
    from peft import LoraConfig

    from directpo.adapters import apply_peft
    from directpo.errors import ModelLoadError
    from directpo.lora_options import LORA_OPTIONS, lora_config_from

    def adapted(regex: str) -> None:
        config = DPOConfig(lora_r=8, lora_target_modules=regex)
        peft_config = lora_config_from({key: getattr(config, key) for key in LORA_OPTIONS})
        apply_peft(AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]), peft_config)

    with pytest.raises(ModelLoadError) as info:
        adapted("q_proj|v_proj")
    assert str(info.value) == (
        "lora_target_modules: q_proj|v_proj matches no module of the model: peft matches a "
        "regex against each whole module name (model.layers.0.self_attn.q_proj); its layers "
        r"q_proj, v_proj end so: write '.*\.(q_proj|v_proj)'"
    )
    adapted(r".*\.(q_proj|v_proj)")
    with pytest.raises(ModelLoadError, match=r"mlp\|attn matches no module .* its linear layers: "):
        adapted("mlp|attn")
    # train(peft_config=LoraConfig(target_modules="q_proj")): peft's whole-name match too
    with pytest.raises(ModelLoadError) as info:
        apply_peft(
            AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]),
            LoraConfig(r=8, target_modules="q_proj", task_type="CAUSAL_LM"),
        )
    assert str(info.value) == (
        "peft_config: target_modules='q_proj' (a string) matches no module of the model: peft "
        "matches a string as a regex against each whole module name; a list matches a name's "
        "end: target_modules=['q_proj']"
    )
    with pytest.raises(ConfigError) as info:
        DPOConfig(lora_r=8, lora_target_modules="(q|v_proj")
    assert str(info.value) == (
        "lora_target_modules: (q|v_proj is no regex peft can read (missing ), unterminated "
        "subpattern at position 0)"
    )


def test_merge_lora_in_bf16_keeps_a_float32_base_exact(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Mixed bf16 holds the LoRA base in bf16; merged into that copy, the float32 folder would
    hold every base weight rounded to bf16 (embeddings included, never trained). The merge is
    into the float32 base as stored, as a user merging the saved adapter gets."""
    from peft import PeftModel

    out = tmp_path / "out"
    config = lora_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=2, learning_rate=1e-3,
        merge_lora=True, dtype="bfloat16",
    )  # fmt: skip
    train(config, echo=lambda _: None)
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    untrained = start.state_dict()["model.embed_tokens.weight"].clone()
    q_start = start.state_dict()[q_proj].clone()
    expected = PeftModel.from_pretrained(start, out / "adapter").merge_and_unload().state_dict()
    assert merged["model.embed_tokens.weight"].dtype == torch.float32
    assert torch.equal(merged["model.embed_tokens.weight"], untrained)
    for key, tensor in expected.items():
        assert torch.allclose(merged[key], tensor, rtol=0, atol=1e-7), key
    assert not torch.equal(merged[q_proj], q_start)  # the update is in it


def test_a_continued_adapter_can_be_merged(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """An adapter folder as model_name_or_path refuses lora_r ("remove lora_r"), and merge_lora
    without lora_r was refused too ("set lora_r: 16"): a continued adapter could not be merged.
    The merged folder is the base plus the continued adapter (not its frozen start, "ref")."""
    from peft import PeftModel

    first = tmp_path / "first"
    train(
        lora_config(tiny_model_dirs["llama"], pairs_file, first, max_steps=1), echo=lambda _: None
    )
    out = tmp_path / "out"
    config = tiny_config(first, pairs_file, out, max_steps=2, learning_rate=1e-3, merge_lora=True)
    train(config, echo=lambda _: None)
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    expected = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    assert all(torch.allclose(merged[k], expected[k], rtol=0, atol=1e-7) for k in merged)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    start = PeftModel.from_pretrained(start, first).merge_and_unload().state_dict()
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q_proj], start[q_proj], atol=1e-5)  # it trained on


def test_a_step_retried_after_the_reference_ran_out_of_memory_trains_in_train_mode(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """The reference pass (adapters off) put the policy in eval mode and, when it raised (out
    of memory, retried by auto_find_batch_size), left it there: every later step trained with
    LoRA's dropout off. Evaluations and sampling restore the mode the same way."""
    import directpo.trainer as trainer_module

    real = trainer_module.pair_losses
    modes: list[bool] = []

    def reference_out_of_memory(scorer, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def pair_losses(policy, reference, batch, *args, **kwargs):
        model = reference.model
        modes.append(model.training)
        if len(modes) == 1:  # the first micro-batch's reference pass runs out of memory
            scorer, reference.scorer = reference.scorer, reference_out_of_memory
            try:
                return real(policy, reference, batch, *args, **kwargs)
            finally:
                reference.scorer = scorer
        return real(policy, reference, batch, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "pair_losses", pair_losses)
    config = lora_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out",
                         max_steps=2, lora_dropout=0.1, auto_find_batch_size=True)  # fmt: skip
    train(config, echo=lambda _: None)
    assert len(modes) > 2 and all(modes)


def test_unreset_adapters_on_a_meta_base_get_the_seeds_draws(tiny_model_dirs) -> None:
    """init_lora_weights False on a base built on the meta device (FSDP2's load): the adapters
    were given memory and never written (peft does not reset that init), so the run started
    from whatever the memory held. They get the seed's draws, as on a real base."""
    from peft import LoraConfig, get_peft_model

    from directpo.adapter_starts import initialize_adapters

    def drawn(meta: bool) -> dict[str, torch.Tensor]:
        config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"]),
                               config)  # fmt: skip
        if meta:
            for name, module in model.named_modules():
                if name.endswith(("lora_A.default", "lora_B.default")):
                    module.to("meta")
        torch.manual_seed(3)
        initialize_adapters(model)
        return {n: p for n, p in model.named_parameters() if "lora_" in n}

    real, meta = drawn(meta=False), drawn(meta=True)
    assert real.keys() == meta.keys() and len(real) > 4
    for name, value in real.items():
        assert torch.equal(meta[name], value), name


@pytest.mark.parametrize("style", ["llama", "gpt2"])
@pytest.mark.parametrize(
    ("init", "dora"), [(True, False), ("gaussian", False), (False, False), (False, True)]
)
def test_a_seed_draws_the_adapters_trl_draws(tiny_model_dirs, style, init, dora) -> None:
    """A LoRA run of seed s starts from the adapters TRL's DPOTrainer draws (set_seed(s), then
    get_peft_model): A differed, as peft's nn.Linear constructors take from the RNG before its
    reset draws, so step-by-step curves parted from TRL's after the first step. With
    init_lora_weights False (the constructors' draws kept, which peft never resets) A and B
    were get_peft_model's unseeded draws, and DoRA's magnitudes their norms."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    def peft_config():
        return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                          init_lora_weights=init, use_dora=dora)  # fmt: skip

    folder = tiny_model_dirs[style]
    config = DPOConfig(model_name_or_path=str(folder), report_to=["none"], seed=7)
    policy, _ = reference_module.load_policy_and_reference(
        config, torch.device("cpu"), peft_config=peft_config()
    )
    set_seed(7)  # what TRL's DPOTrainer.__init__ does before it wraps the model
    theirs = get_peft_model(AutoModelForCausalLM.from_pretrained(folder), peft_config())
    ours = {n: p for n, p in policy.named_parameters() if "lora_" in n}
    expected = {n: p for n, p in theirs.named_parameters() if "lora_" in n}
    assert ours.keys() == expected.keys() and len(ours) > 4
    for name, value in expected.items():
        assert torch.equal(ours[name], value), name


def test_peft_s_deprecation_warning_is_quiet_only_while_peft_wraps(tiny_model_dirs) -> None:
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` as it wraps a model:
    directpo's runs stay quiet of it, and the caller's own code still hears it afterwards (a
    filter set at import hid it from the whole process)."""
    import warnings

    from peft import LoraConfig

    from directpo.adapters import apply_peft

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        import directpo.models  # noqa: F401 - (what set the filter when imported)

        wrapped = apply_peft(base, LoraConfig(r=4, target_modules=["q_proj"]))
        assert not [warning for warning in heard if "is_gradient_checkpointing" in str(warning)]
        assert wrapped.base_model.model.is_gradient_checkpointing is False  # the caller's read
    assert [w.category for w in heard if "is_gradient_checkpointing" in str(w.message)] == [
        FutureWarning
    ]
