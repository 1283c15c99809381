"""Model loading options: per-layer gradient checkpointing and regional compilation keep the
training trajectory of the plain run."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_config

import directpo.device_checks
from directpo.errors import ConfigError, ModelLoadError, TrainingStopped
from directpo.model_preparation import LoadOptions, decoder_layers
from directpo.models import load_causal_lm
from directpo.trainer import train


def train_rows(config) -> list[dict]:
    return [row for row in train(config, echo=lambda _: None).metrics if "loss" in row]


def assert_same_trajectory(ours: list[dict], theirs: list[dict], tolerance: float) -> None:
    for a, b in zip(ours, theirs, strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=tolerance, abs=tolerance), key


def test_checkpointing_every_other_layer(tiny_model_dirs, pairs_file, tmp_path) -> None:
    model = tiny_model_dirs["llama"]
    options = LoadOptions(gradient_checkpointing=True, checkpoint_every=2)
    loaded = load_causal_lm(str(model), "float32", trainable=True, options=options)
    assert [layer.gradient_checkpointing for layer in decoder_layers(loaded)] == [True, False]
    plain = train_rows(tiny_config(model, pairs_file, tmp_path / "plain", max_steps=3))
    every = train_rows(
        tiny_config(
            model,
            pairs_file,
            tmp_path / "every",
            max_steps=3,
            gradient_checkpointing=True,
            gradient_checkpointing_every=2,
        )  # fmt: skip
    )
    assert_same_trajectory(every, plain, 1e-5)


def test_torch_compile_keeps_the_trajectory(tiny_model_dirs, pairs_file, tmp_path) -> None:
    model = tiny_model_dirs["gpt2"]
    plain = train_rows(tiny_config(model, pairs_file, tmp_path / "plain", max_steps=2))
    said: list[str] = []
    config = tiny_config(model, pairs_file, tmp_path / "compiled", max_steps=2, torch_compile=True)
    compiled = [row for row in train(config, echo=said.append).metrics if "loss" in row]
    assert_same_trajectory(compiled, plain, 1e-4)
    # the start line says so (a GPU user could not tell whether the layers compiled)
    start = next(line for line in said if line.startswith("training "))
    assert start.endswith(", compiled decoder layers")


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("No working C++ compiler found (injected)")


@pytest.fixture
def compile_fails(monkeypatch):
    """Every ``Module.compile`` uses a backend that fails, as one without a C++ compiler or
    Triton does."""
    real = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kw: real(self, backend=failing_backend)
    )
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_a_model_that_fails_to_compile_trains_uncompiled_after_one_line(
    compile_fails, tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """It was read by the start-up checks as the model's own failure (prefix sharing and the
    chunked head off, with a misleading reason), then a traceback at the first step."""
    model = tiny_model_dirs["llama"]
    said: list[str] = []
    config = tiny_config(model, pairs_file, tmp_path / "c", max_steps=2, torch_compile=True)
    compiled = [row for row in train(config, echo=said.append).metrics if "loss" in row]
    notices = [line for line in said if "compil" in line or " off" in line]
    assert len(notices) == 1 and notices[0].startswith(
        "torch_compile: off, compiling LlamaForCausalLM's decoder layers failed ("
    )
    assert "No working C++ compiler found (injected)" in notices[0]
    assert not next(line for line in said if line.startswith("training ")).endswith("layers")
    plain = train_rows(tiny_config(model, pairs_file, tmp_path / "plain", max_steps=2))
    assert_same_trajectory(compiled, plain, 1e-5)


def test_a_compile_failure_inside_a_step_is_one_line(
    compile_fails, tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A path the start-up check did not try (another shape, the backward) fails in a step."""
    import directpo.run_models as run_models

    monkeypatch.setattr(run_models, "check_compilation", lambda *a, **k: True)
    config = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, tmp_path / "c", torch_compile=True,
        prefix_sharing=False, padding_free=False, logprob_chunk_tokens=0,
    )  # fmt: skip
    with pytest.raises(
        TrainingStopped,
        match=r"^step 1: torch.compile failed \(RuntimeError: No working C\+\+ compiler found "
        r"\(injected\)\); pass torch_compile=False$",  # (train()'s keyword: Python's words)
    ):
        train(config, echo=lambda _: None)


def test_an_unreachable_hub_id_is_said_after_one_request(pairs_file, tmp_path, monkeypatch):
    """A folder name with a typo on an offline machine is a hub id: every file of the
    processor, tokenizer and config loaders retried in turn (3 minutes here). One config
    request now decides, and no other loader runs."""
    import directpo.hub as hub
    import directpo.model_files as model_files
    import directpo.tokenizer_loading as tokenizer_loading

    asked: list[str] = []

    def offline(path, **kwargs):
        asked.append(path)
        raise OSError(
            "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't "
            "find them in the cached files."
        )

    def never(*args, **kwargs):
        raise AssertionError("a loader ran after the hub was found unreachable")

    monkeypatch.setattr(model_files.AutoConfig, "from_pretrained", offline)
    monkeypatch.setattr(tokenizer_loading, "_from_location", never)
    # the quick probe passed (behind a proxy, say), the hub still does not answer: test_hub.py
    # has the probe's own failure
    monkeypatch.setattr(hub, "_why_unreachable", lambda: None)
    config = tiny_config("nosuchdir", pairs_file, tmp_path / "out")
    with pytest.raises(ModelLoadError) as info:
        train(config, echo=lambda _: None)
    assert str(info.value) == (
        "'nosuchdir' is no local folder, and as a hub id it cannot be loaded: We couldn't "
        "connect to 'https://huggingface.co' to load the files, and couldn't find them in the "
        "cached files."
    )
    assert asked == ["nosuchdir"]
    # a repo the local cache holds anything of is left to the loaders (offline, a file it lacks
    # reads as unreachable: a tokenizer-only repo has no config.json)
    (tmp_path / "cache" / "models--org--tok").mkdir(parents=True)
    model_files.check_hub_reachable("org/tok", {"cache_dir": str(tmp_path / "cache")})
    assert asked == ["nosuchdir"]


def test_meta_build_finds_a_hub_model_in_the_local_cache(tiny_model_dirs, tmp_path, monkeypatch):
    """FSDP2's meta-device build reads a hub id's safetensors from the local Hugging Face
    cache (never downloading); an id that is not cached is loaded whole instead."""
    import shutil

    import huggingface_hub.constants

    from directpo.meta_models import meta_weights_folder

    repo = tmp_path / "hub" / "models--tiny--llama"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(tiny_model_dirs["llama"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert meta_weights_folder("tiny/llama", LoadOptions(meta=True)) == str(snapshot)
    assert meta_weights_folder("tiny/absent", LoadOptions(meta=True)) is None
    assert meta_weights_folder(str(snapshot), LoadOptions(meta=True)) == str(snapshot)


@pytest.fixture
def fake_liger(monkeypatch):
    """liger-kernel's instance API as transformers' Trainer calls it, recording its calls (the
    real kernels are Triton, CUDA only: bench/gpu_smoke.py compares them on a GPU)."""
    import sys
    import types

    calls: list[tuple[str, dict]] = []
    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None, "qwen2": None}
    patch._apply_liger_kernel_to_instance = lambda model, **kw: calls.append(
        (model.config.model_type, kw)
    )
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, patch.__name__, patch)
    return calls


def test_liger_kernels_go_on_the_model_with_its_loss_kernels_off(
    tiny_model_dirs, pairs_file, tmp_path, fake_liger
) -> None:
    from directpo.config import DPOConfig

    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["llama"]), train_file=str(pairs_file),
        use_liger_kernel=True, liger_kernel_config={"rope": False},
    )  # fmt: skip
    options = LoadOptions(liger_kernels=config.liger_kernels())
    load_causal_lm(str(tiny_model_dirs["llama"]), "float32", trainable=True, options=options)
    assert fake_liger == [
        ("llama", {"rope": False, "cross_entropy": False, "fused_linear_cross_entropy": False})
    ]
    load_causal_lm(str(tiny_model_dirs["llama"]), "float32", trainable=True)  # off by default
    assert len(fake_liger) == 1


def test_liger_refusals_are_one_line(tiny_model_dirs, pairs_file, tmp_path, monkeypatch) -> None:
    import sys

    from directpo.config import DPOConfig
    from directpo.errors import ConfigError

    with pytest.raises(ConfigError, match="liger_kernel_config is set but use_liger_kernel is off"):
        DPOConfig(model_name_or_path="m", liger_kernel_config={"rope": False})
    with pytest.raises(
        ConfigError, match=r"liger_kernel_config\[.fused_linear_cross_entropy.\] must be False"
    ):
        DPOConfig(
            model_name_or_path="m", use_liger_kernel=True,
            liger_kernel_config={"fused_linear_cross_entropy": True},
        )  # fmt: skip
    options = LoadOptions(liger_kernels={})
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # not installed
    with pytest.raises(ConfigError, match="pip install liger-kernel"):
        load_causal_lm(str(tiny_model_dirs["gpt2"]), "float32", trainable=True, options=options)
    llama = tiny_model_dirs["llama"]
    config = tiny_config(llama, pairs_file, tmp_path / "o", use_liger_kernel=True)
    with pytest.raises(ConfigError, match="Triton kernels for CUDA, and this run is on cpu"):
        train(config, echo=lambda line: None)


def test_flash_attention_off_cuda_is_refused_before_the_data_is_read(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """attn_implementation: flash_attention_2 (the handbook's recipes write it) on a CPU was
    refused by transformers only once the model loaded, after the pairs were tokenized."""
    from directpo.config import DPOConfig
    from directpo.device_checks import check_device

    config = tiny_config(
        tiny_model_dirs["llama"],
        pairs_file,
        tmp_path / "o",
        attn_implementation="flash_attention_2",
    )
    lines: list[str] = []
    with pytest.raises(
        ConfigError, match="runs on CUDA only .* on cpu; pass attn_implementation='auto'"
    ):
        train(config, echo=lines.append)
    assert lines == []  # nothing read, tokenized or loaded first
    for device in ("mps", "cpu"):
        with pytest.raises(ConfigError, match=f"this run is on {device}"):
            check_device(
                DPOConfig(model_name_or_path="m", attn_implementation="flash_attention_2"), device
            )
    monkeypatch.setattr(directpo.device_checks, "_installed", lambda module: module == "flash_attn")
    check_device(DPOConfig(model_name_or_path="m", attn_implementation="flash_attention_2"), "cuda")


def test_liger_without_kernels_for_the_architecture_is_refused(tiny_model_dirs, fake_liger):
    from directpo.errors import ConfigError

    options = LoadOptions(liger_kernels={})
    with pytest.raises(ConfigError, match="no kernels for model type 'gpt2'"):
        load_causal_lm(str(tiny_model_dirs["gpt2"]), "float32", trainable=True, options=options)


def test_sequences_past_a_learned_position_table_are_one_line(tmp_path) -> None:
    """GPT-2 / OPT index a position table: a longer sequence was an IndexError mid-run (a
    device-side assert on CUDA); rotary models have no table and are not limited."""
    from tiny import SENTIMENT_PAIRS, build_model, build_tokenizer, write_jsonl
    from transformers import GPT2Config, GPT2LMHeadModel

    from directpo.errors import ConfigError
    from directpo.generate import sample_completions
    from directpo.model_fit import learned_positions
    from directpo.reward import ImplicitReward

    tokenizer = build_tokenizer("gpt2")
    short = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_positions=12, n_embd=16, n_head=2, n_layer=1)
    )
    short.save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    assert learned_positions(short) == 12
    assert learned_positions(build_model("llama", build_tokenizer("llama"))) is None
    data = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)  # up to 24 tokens
    with pytest.raises(ConfigError, match=r"^max_length: sequences here reach 24 tokens but "):
        train(tiny_config(tmp_path / "gpt2", data, tmp_path / "out"), echo=lambda _: None)
    fits = tiny_config(tmp_path / "gpt2", data, tmp_path / "fits", max_length=12)
    assert train(fits, echo=lambda _: None).metrics[0]["loss"] > 0
    # scoring and sampling cut long prompts to the table, as to max_length / max_prompt_length
    prompt = SENTIMENT_PAIRS[3]["prompt"] * 3
    reward = ImplicitReward(str(tmp_path / "gpt2"), str(tmp_path / "gpt2"), 0.1)
    assert reward.score(prompt, " Sure.") == pytest.approx(0.0, abs=1e-6)
    samples = sample_completions(short, tokenizer, [prompt], max_new_tokens=4)
    assert len(samples[0].prompt_ids) == 8
    with pytest.raises(ConfigError, match=r"^max_new_tokens: 12 new tokens do not fit"):
        sample_completions(short, tokenizer, [prompt], max_new_tokens=12)


def test_a_hub_model_in_a_subfolder_finds_its_tokenizer_where_its_weights_are(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A hub id with model_init_kwargs' subfolder, cache_dir, ...: the tokenizer was looked up
    at the repository's root in the default cache (no such tokenizer) while the weights
    came from the subfolder in cache_dir."""
    import shutil

    import huggingface_hub.constants
    from tiny import tiny_config
    from transformers import AutoTokenizer

    repo = tmp_path / "cache" / "models--tiny--nested"
    shutil.copytree(tiny_model_dirs["llama"], repo / "snapshots" / "0123456789abcdef" / "policy")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network
    kwargs = {"subfolder": "policy", "cache_dir": str(tmp_path / "cache")}
    config = tiny_config("tiny/nested", pairs_file, tmp_path / "run", model_init_kwargs=kwargs)
    train(config, echo=lambda _: None)
    saved = AutoTokenizer.from_pretrained(tmp_path / "run").get_vocab()
    assert saved == AutoTokenizer.from_pretrained(tiny_model_dirs["llama"]).get_vocab()


@pytest.mark.parametrize(
    "options, message",
    [
        (
            dict(online=True, reward_fn="REWARD", generate_max_new_tokens=600),
            "generate_max_new_tokens: 600 new tokens do not fit the 512 learned positions",
        ),
        (
            dict(online=True, reward_fn="REWARD", generate_max_new_tokens=900,
                 max_completion_length=512),
            "max_completion_length: 512 new tokens do not fit the 512 learned positions",
        ),
        (
            dict(eval_file="PAIRS", eval_generate=1, generate_max_new_tokens=512),
            "generate_max_new_tokens: 512 new tokens do not fit the 512 learned positions",
        ),
    ],
)  # fmt: skip
def test_sampled_tokens_must_fit_learned_positions_before_training(
    tiny_model_dirs, pairs_file, tmp_path, options, message
) -> None:
    """Online rounds and eval_generate sample new tokens that a GPT-2 position table must hold:
    said before any step (it failed at the first round or evaluation, naming max_new_tokens)."""
    out = tmp_path / "out"
    reward = tmp_path / "length.py"
    reward.write_text(
        "def length(prompts, completions):\n    return [len(c) for c in completions]\n"
    )
    named = {"PAIRS": str(pairs_file), "REWARD": f"{reward}:length"}
    options = {k: named.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, **options)
    with pytest.raises(ConfigError, match=message):
        train(config, echo=lambda _: None)
    assert not (out / "metrics.jsonl").exists()


def test_a_vision_models_processor_that_cannot_load_is_named(
    tiny_model_dirs, tmp_path, monkeypatch, capsys
) -> None:
    """A vision-language model whose processor fails to load (Qwen2-VL's video processor needs
    torchvision) is refused with the loader's reason: its image rows were refused as given to
    'not a vision-language model'. A text-only folder still has no processor (None)."""
    import json

    import transformers
    from tiny_vlm import make_image, save_tiny_vlm

    from directpo.cli import main
    from directpo.tokenizer_loading import load_processor

    def fails(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - from_pretrained's
        raise ImportError(
            "\nQwen2VLVideoProcessor requires the Torchvision library but it was not found in "
            "your environment. Check out the instructions on the\ninstallation page: ..."
        )

    model_dir = save_tiny_vlm("qwen2vl", tmp_path / "vlm")
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", staticmethod(fails))
    with pytest.raises(
        ModelLoadError,
        match="vision-language model .*Qwen2VLVideoProcessor needs torchvision, which",
    ):
        load_processor(str(model_dir))
    assert load_processor(str(tiny_model_dirs["llama"])) is None
    make_image(tmp_path / "a.png")
    row = {"images": ["a.png"], "prompt": "What is it?", "chosen": " a cat.", "rejected": " a dog."}
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(row) + "\n")
    capsys.readouterr()
    code = main(["train", "--model_name_or_path", str(model_dir), "--train_file", str(data),
                 "--output_dir", str(tmp_path / "out"), "--report_to", "none"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Qwen2VLVideoProcessor needs torchvision" in err, err
    assert "not a vision-language model" not in err and len(err.splitlines()) == 1


def test_an_attention_the_model_refuses_is_told_the_option_to_set(tmp_path) -> None:
    """Gemma 2 with attn_implementation: sdpa stopped with transformers' words, cut at 300
    characters ('... please open an issue in Transfo'), naming neither the option nor what
    runs; the line says which option it refuses and what to set."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    Gemma2ForCausalLM(Gemma2Config(**sizes, num_attention_heads=2, num_key_value_heads=1,
                                   head_dim=8)).save_pretrained(tmp_path / "gemma2")  # fmt: skip
    with pytest.raises(ModelLoadError, match="it refuses attn_implementation sdpa: set "
                       "attn_implementation: auto \\(directpo picks one this model runs\\) or "
                       "eager$"):  # fmt: skip
        load_causal_lm(str(tmp_path / "gemma2"), "float32", trainable=True,
                       options=LoadOptions(attn_implementation="sdpa"))  # fmt: skip
    model = load_causal_lm(str(tmp_path / "gemma2"), "float32", trainable=True,
                           options=LoadOptions(attn_implementation="eager"))  # fmt: skip
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize(
    ("style", "needer"), [("mistral3", "PixtralProcessor"), ("smolvlm", "SmolVLMVideoProcessor")]
)
def test_a_vlm_folder_without_torchvision_says_to_install_the_one_for_this_torch(
    style, needer, tmp_path
) -> None:
    """Mistral Small 3.x vision names PixtralProcessor, which transformers offers only with
    torchvision installed (its module imports it, whatever image processor the folder names),
    and a SmolVLM2 folder's processor loads its video processor, which needs torchvision: the
    error was cut mid-sentence ('... Check out the instructions on the)'). It says what to
    install: the torchvision release built for this torch (unpinned, pip replaces torch)."""
    import importlib.util
    import json

    from tiny_vlm import save_tiny_vlm

    from directpo.tokenizer_loading import load_processor

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the processor loads")
    folder = save_tiny_vlm(style, tmp_path / "model")
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        path.write_text(path.read_text().replace("TinyPixtralProcessor", "PixtralProcessor"))
        path.write_text(path.read_text().replace("TinySmolVLMProcessor", "SmolVLMProcessor"))
    if style == "smolvlm":  # as SmolVLM2's folders hold it
        path = folder / "processor_config.json"
        video = {"video_processor_type": "SmolVLMVideoProcessor", "fps": 1, "num_frames": 64}
        path.write_text(json.dumps({**json.loads(path.read_text()), "video_processor": video}))
    version = torch.__version__.split("+")[0]
    with pytest.raises(ModelLoadError) as caught:
        load_processor(str(folder))
    assert str(caught.value).endswith(
        f"cannot load ({needer} needs torchvision, which is not installed: install the "
        f"torchvision release built for torch {version} (pip install torchvision==<that "
        "release>; unpinned, pip replaces torch))"
    ), caught.value


def test_a_missing_module_is_named_only_where_its_package_is_not_installed() -> None:
    """The one line names what is missing: a module of an installed package (an older
    transformers' model) is left to the loader's own words, and transformers' display names of
    other backends are not turned into pip commands ('PyAv' is pip's 'av')."""
    from directpo.tokenizer_loading import _missing_package

    older = ModuleNotFoundError("No module named 'transformers.models.nope'")
    older.name = "transformers.models.nope"
    absent = ModuleNotFoundError("No module named 'no_such_package.layers'")
    absent.name = "no_such_package.layers"
    backend = ImportError("\nFooProcessor requires the PyAv library but it was not found in your")
    assert _missing_package(older) is None
    assert _missing_package(absent) == (
        "its processor needs the no_such_package library, which is not installed"
    )
    assert (
        _missing_package(backend) == "FooProcessor needs the PyAv library, which is not installed"
    )


def test_a_model_folder_saved_without_its_tokenizer_says_so(tiny_model_dirs, tmp_path) -> None:
    """``model.save_pretrained(folder)`` alone (a notebook's model, its tokenizer not saved
    beside it) was "cannot load (Couldn't instantiate the backend tokenizer from one of: )":
    train() and ImplicitReward say that the folder holds no tokenizer files and what to do;
    a folder that holds them but fails otherwise keeps transformers' reason."""
    import shutil

    from directpo.reward import ImplicitReward
    from directpo.tokenizer_loading import load_tokenizer

    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_model_dirs["llama"] / name, alone / name)
    said = (
        f"tokenizer '{alone}': the folder holds no tokenizer files (tokenizer.json, "
        "tokenizer_config.json, ...), as a model saved alone: save its tokenizer there too "
        "(tokenizer.save_pretrained(folder))"
    )
    with pytest.raises(ModelLoadError) as refused:
        load_tokenizer(str(alone))
    assert str(refused.value) == f"{said}, or set tokenizer_name_or_path"  # (train's recipe)
    # what else names a tokenizer, as the caller can: 'or give tokenizer_name_or_path' was said
    # to ImplicitReward and score / rank / generate too, which have no such option
    with pytest.raises(ModelLoadError) as refused:
        ImplicitReward(str(alone), None, 0.1)
    assert str(refused.value) == (
        f"{said}, or pass ImplicitReward a tokenizer (its tokenizer argument)"
    )
    from directpo.callers import Caller, Entry, Spelling, called_by

    for who, tail in (
        (Caller(Spelling.FLAGS, Entry.TRAIN), ", or give --tokenizer_name_or_path"),
        (Caller(Spelling.PYTHON, Entry.TRAIN), ", or pass tokenizer_name_or_path=..."),
        (Caller(Spelling.FLAGS, Entry.FOLDER), ""),  # (score's: the folder's tokenizer alone)
    ):
        with called_by(who), pytest.raises(ModelLoadError) as refused:
            load_tokenizer(str(alone))
        assert str(refused.value) == f"{said}{tail}"
    (alone / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"^tokenizer '.*alone': cannot load \("):
        load_tokenizer(str(alone))


def test_liger_patches_do_not_outlive_the_run(
    tiny_model_dirs, pairs_file, tmp_path, fake_liger, monkeypatch
) -> None:
    """Liger's apply functions rebind names in transformers' modeling modules for the whole
    process (even given one model): a notebook's train(use_liger_kernel=True) made every later
    run of that model type train with Liger's kernels. They are put back when train() returns
    or raises; the run itself had them (its reference was built after the policy's patch)."""
    import sys

    from transformers.models.llama import modeling_llama

    import directpo.trainer

    originals = (modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb)
    layer_norm = torch.nn.LayerNorm
    # (undone after this test even if train() leaves them patched)
    monkeypatch.setattr(modeling_llama, "LlamaRMSNorm", originals[0])
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", originals[1])
    monkeypatch.setattr(torch.nn, "LayerNorm", layer_norm)

    class LigerRMSNorm(originals[0]):
        pass

    def apply_as_liger_does(model, **kernels) -> None:  # its apply_liger_kernel_to_llama's way
        modeling_llama.LlamaRMSNorm = LigerRMSNorm
        modeling_llama.apply_rotary_pos_emb = lambda *args, **kw: originals[1](*args, **kw)
        modeling_llama.nn.LayerNorm = LigerRMSNorm  # as its siglip / layer-norm patches do
        fake_liger.append((model.config.model_type, kernels))

    patch_module = sys.modules["liger_kernel.transformers.monkey_patch"]
    monkeypatch.setattr(patch_module, "_apply_liger_kernel_to_instance", apply_as_liger_does)
    # the kernels are CUDA's; this CPU run stands in for one on a GPU
    monkeypatch.setattr(directpo.device_checks, "_cuda_only", lambda config, device_type: [])
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "o", use_liger_kernel=True
    )
    result = train(config, echo=lambda _: None)
    assert len(fake_liger) >= 2  # the policy's and the reference's
    norms = {
        type(module)
        for module in result.reference.model.modules()
        if "Norm" in type(module).__name__
    }
    assert norms == {LigerRMSNorm}  # the run had Liger's classes
    assert (modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb) == originals
    assert torch.nn.LayerNorm is layer_norm
    # a run that raises after the kernels went on puts them back too
    monkeypatch.setattr(directpo.trainer, "_train", lambda run: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(config, output_dir=str(tmp_path / "raised"), echo=lambda _: None)
    assert (modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb) == originals
    assert torch.nn.LayerNorm is layer_norm
