"""A hub id on a machine that cannot reach the hub: one connection attempt decides, and the
local cache is read at once (it was minutes of retries, request by request)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import huggingface_hub.constants
import pytest
from tiny import tiny_config

import directpo.hub as hub
from directpo import train
from directpo.data_sources import dataset_splits
from directpo.errors import DataError, ModelLoadError


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name looked up (none resolves), and the probe asked afresh."""
    looked_up: list[str] = []

    def unresolvable(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    for name in hub.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub._why_unreachable.cache_clear()
    yield looked_up
    hub._why_unreachable.cache_clear()


def _hub_cached_model(tiny_model: Path, cache: Path, repo: str) -> None:
    """``tiny_model``'s files as huggingface_hub's cache keeps a downloaded snapshot."""
    entry = cache / ("models--" + repo.replace("/", "--"))
    snapshot = entry / "snapshots" / "0123abc"
    shutil.copytree(tiny_model, snapshot)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abc")


def test_a_hub_model_in_the_local_cache_loads_with_one_lookup_of_the_hub(
    no_network, tiny_model_dirs, pairs_file, tmp_path
):
    cache = tmp_path / "hub"
    _hub_cached_model(tiny_model_dirs["llama"], cache, "someorg/tiny")
    config = tiny_config(Path("someorg/tiny"), pairs_file, tmp_path / "out",
                         model_init_kwargs={"cache_dir": str(cache)})  # fmt: skip
    train(config, echo=lambda _: None)
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert no_network == [hub.hub_host()]  # the probe; no loader asked the network
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # train() gave the flag back


def test_a_hub_model_the_cache_lacks_is_one_line_without_retries(no_network, pairs_file, tmp_path):
    config = tiny_config(Path("someorg/absent"), pairs_file, tmp_path / "out")
    with pytest.raises(ModelLoadError) as info:
        train(config, echo=lambda _: None)
    assert str(info.value) == (
        "'someorg/absent' is no local folder, and as a hub id it cannot be loaded: the Hub "
        "(huggingface.co) cannot be reached from this machine, and the local cache holds no "
        "copy of it"
    )
    assert no_network == ["huggingface.co"]


def test_a_hub_dataset_in_the_local_cache_is_read_at_once(no_network, tmp_path, pairs_file):
    import datasets

    cache = tmp_path / "datasets"
    datasets.load_dataset("json", data_files={"train": str(pairs_file)}, cache_dir=str(cache))
    built = next((cache / "json").glob("default-*/0.0.0/*"))
    cached = cache / "someorg___pairs" / "default" / "0.0.0" / built.name
    shutil.copytree(built, cached)
    (cached / "json-train.arrow").rename(cached / "pairs-train.arrow")
    no_network.clear()  # the json builder's own lookups
    splits = dataset_splits("someorg/pairs", None, "dataset_name", "train", cache_dir=str(cache))
    rows = [row["chosen"] for row in splits["train"]]
    assert rows == [json.loads(line)["chosen"] for line in pairs_file.read_text().splitlines()]
    assert no_network == ["huggingface.co"]
    with pytest.raises(DataError) as info:
        dataset_splits("someorg/absent", None, "dataset_name", "train", cache_dir=str(cache))
    assert str(info.value).startswith("dataset_name: cannot load (")
    assert str(info.value).endswith(
        "; the Hub (huggingface.co) cannot be reached from this machine, so only the local "
        "cache was read"
    )
    assert no_network == ["huggingface.co"]


def test_offline_mode_set_by_the_user_is_named_and_nothing_is_looked_up(
    no_network, monkeypatch, pairs_file, tmp_path
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub._why_unreachable.cache_clear()
    config = tiny_config(Path("someorg/absent"), pairs_file, tmp_path / "out")
    with pytest.raises(ModelLoadError, match=r"offline mode is set \(HF_HUB_OFFLINE\), and"):
        train(config, echo=lambda _: None)
    assert no_network == []
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


def test_local_paths_never_ask_the_hub(no_network, tiny_model_dirs, pairs_file, tmp_path):
    train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out"), echo=None)
    assert no_network == []


def test_behind_a_proxy_the_hub_counts_as_reachable(no_network, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.hub_reachable() is True
    assert hub.cache_only_where_unreachable("someorg/tiny") is False
    assert no_network == []


def test_implicit_reward_gives_the_offline_flag_back(no_network, tiny_model_dirs, tmp_path):
    """ImplicitReward (score, rank) with a hub id on a machine without the Hub left the
    libraries' offline mode set in the caller's process for good, loaded or not: train()
    gives it back."""
    from directpo import ImplicitReward

    cache = tmp_path / "hub"
    _hub_cached_model(tiny_model_dirs["llama"], cache, "someorg/tiny")
    scorer = ImplicitReward("someorg/tiny", None, beta=0.1, policy_kwargs={"cache_dir": str(cache)})
    assert len(scorer.score(["The movie was"], [" great."])) == 1
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False
    with pytest.raises(ModelLoadError):
        ImplicitReward("someorg/absent", None, beta=0.1)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False
    assert no_network == ["huggingface.co"]  # one probe for the process


def test_a_lora_runs_adapter_cards_name_their_base_as_the_hub_accepts(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """The cards peft writes into merge_lora's adapter/ and into each LoRA checkpoint named a
    local base by its absolute path (base_model: /home/me/llama, tag base_model:adapter:/...):
    the Hub refuses such a README, so an uploaded adapter was rejected. A base read from the
    Hugging Face cache is named by its hub id, as in the run's own card."""
    import yaml

    def metadata(card: Path) -> dict:
        return yaml.safe_load(card.read_text().split("---\n")[1])

    snapshot = tmp_path / "hub" / "models--me--tiny-llama" / "snapshots" / "0a1b2c"
    shutil.copytree(tiny_model_dirs["llama"], snapshot)
    for base, named in ((tiny_model_dirs["llama"], None), (snapshot, "me/tiny-llama")):
        out = tmp_path / f"out-{named is None}"
        train(tiny_config(base, pairs_file, out, lora_r=4, merge_lora=True, save_steps=1),
              echo=None)  # fmt: skip
        for card in (out / "adapter" / "README.md", out / "checkpoint-1" / "README.md"):
            found = metadata(card)
            assert found.get("base_model") == named, card
            assert found["library_name"] == "peft"
            assert not [tag for tag in found["tags"] if str(base) in tag], card
            if named:
                assert f"base_model:adapter:{named}" in found["tags"]
            assert "# Model Card" in card.read_text()  # peft's text stays
        assert metadata(out / "README.md").get("base_model") == named


def test_an_adapters_hub_base_the_cache_lacks_names_the_adapter(
    no_network, tiny_model_dirs, pairs_file, tmp_path
):
    """An adapter folder trained elsewhere (its tokenizer beside it) whose base is a hub id
    this offline machine has no copy of: transformers' 'We couldn't connect ...' of the base
    alone, after ~45 s of the hub's retries (its generation config, read for the stop tokens),
    naming neither the adapter nor where the name came from. It is said as a model's own hub
    id is, at once, with the adapter_config.json that names it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dirs["llama"] / name, adapter / name)
    settings = json.loads((adapter / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = "someorg/absent"
    (adapter / "adapter_config.json").write_text(json.dumps(settings))
    with pytest.raises(ModelLoadError) as info:
        train(tiny_config(adapter, pairs_file, tmp_path / "out"), echo=lambda _: None)
    assert str(info.value) == (
        f"model '{adapter}': its adapter's base (adapter_config.json's base_model_name_or_path):"
        " 'someorg/absent' is no local folder, and as a hub id it cannot be loaded: the Hub "
        "(huggingface.co) cannot be reached from this machine, and the local cache holds no "
        "copy of it; set it to the base model's folder"
    )
    assert no_network == ["huggingface.co"]  # the probe: no ~45 s of the hub's retries
