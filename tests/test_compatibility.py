"""A tokenizer, policy and reference that do not belong together are refused before any work,
in one line: training, scoring and the Python API alike."""

from __future__ import annotations

import pytest
from tiny import build_tokenizer, save_tiny_model
from transformers import LlamaConfig, LlamaForCausalLM

from directpo.cli import main
from directpo.errors import ModelLoadError
from directpo.reward import ImplicitReward


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and the error line (transformers' own loading bars may precede it)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1] + "\n"


def train_flags(model, data, out, *more: str) -> list[str]:
    return ["train", "--model_name_or_path", str(model), "--train_file", str(data),
            "--output_dir", str(out), "--report_to", "none", "--max_steps", "1", *more]  # fmt: skip


@pytest.mark.parametrize(
    "policy, flag, other, said",
    [
        ("llama", "--ref_model_name_or_path", "gpt2", "ref_model_name_or_path '"),
        ("gpt2", "--ref_model_name_or_path", "llama", "ref_model_name_or_path '"),
        ("gpt2", "--tokenizer_name_or_path", "llama", "model_name_or_path '"),
        ("llama", "--tokenizer_name_or_path", "gpt2", "model_name_or_path '"),
    ],
)
def test_training_refuses_a_mismatched_reference_or_tokenizer(
    tiny_model_dirs, pairs_file, tmp_path, capsys, policy, flag, other, said
) -> None:
    out = tmp_path / "out"
    flags = train_flags(tiny_model_dirs[policy], pairs_file, out, flag, str(tiny_model_dirs[other]))
    code, err = run_cli(capsys, *flags)
    assert code == 2
    assert err.startswith("directpo: error: ") and err.count("\n") == 1
    assert said in err and ("another tokenizer" in err or "token embeddings" in err)
    assert not (out / "metrics.jsonl").exists()  # refused before any training


def test_a_model_with_too_few_embeddings_for_the_tokenizer(pairs_file, tmp_path, capsys) -> None:
    tokenizer = build_tokenizer("llama")
    small = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1)
    )  # fmt: skip
    folder = tmp_path / "small"
    small.save_pretrained(folder)  # no tokenizer beside it: only the sizes can tell
    code, err = run_cli(
        capsys,
        *train_flags(folder, pairs_file, tmp_path / "o", "--tokenizer_name_or_path",
                     str(save_tiny_model("llama", tmp_path / "tok"))),
    )  # fmt: skip
    assert code == 2 and "has 64 token embeddings but the tokenizer" in err
    assert f"has {len(tokenizer)} tokens" in err


def test_scoring_and_the_api_refuse_a_mismatched_reference(tiny_model_dirs, tmp_path, capsys):
    with pytest.raises(ModelLoadError, match="ref_model_name_or_path .* another tokenizer"):
        ImplicitReward(str(tiny_model_dirs["llama"]), str(tiny_model_dirs["gpt2"]), beta=0.1)
    rows = tmp_path / "pairs.jsonl"
    rows.write_text('{"prompt": "The movie was", "chosen": " good.", "rejected": " bad."}\n')
    code, err = run_cli(
        capsys, "score", "--model_name_or_path", str(tiny_model_dirs["llama"]),
        "--ref_model_name_or_path", str(tiny_model_dirs["gpt2"]), "--beta", "0.1",
        "--input", str(rows), "--output", str(tmp_path / "scored.jsonl"),
    )  # fmt: skip
    assert code == 2 and "another tokenizer" in err and err.count("\n") == 1
    assert not (tmp_path / "scored.jsonl").exists()


def test_a_reference_of_another_family_without_a_tokenizer_is_warned_of(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A reference folder with weights only (save_pretrained of the model alone) cannot have its
    vocabulary compared: a gpt2 reference of a llama policy trained silently on wrong
    log-probs. Another model_type is said in one warning line; the same family is not."""
    import shutil
    import warnings

    from tiny import tiny_config

    from directpo.trainer import train

    for style in ("gpt2", "llama"):
        bare = tmp_path / f"bare_{style}"
        bare.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(tiny_model_dirs[style] / name, bare / name)
        lines: list[str] = []
        config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / f"o_{style}",
                             ref_model_name_or_path=str(bare))  # fmt: skip
        train(config, echo=lines.append)
        notes = [line for line in lines if line.startswith("warning: ref_model_name_or_path")]
        if style == "gpt2":
            (note,) = notes
            assert "is a gpt2 model" in note and "a llama one" in note and "\n" not in note
            with pytest.warns(UserWarning, match="is a gpt2 model and .* a llama one"):
                ImplicitReward(str(tiny_model_dirs["llama"]), str(bare), beta=0.1)
        else:
            assert notes == []
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                ImplicitReward(str(tiny_model_dirs["llama"]), str(bare), beta=0.1)
