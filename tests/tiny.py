"""Tiny random-initialised models and a real byte-level BPE tokenizer, built offline.

Two styles, so that tokenization rules are exercised both ways:

* ``llama``: LlamaForCausalLM; the tokenizer adds BOS by default and its chat template writes
  its own BOS and ends assistant turns with EOS followed by a newline.
* ``gpt2``: GPT2LMHeadModel with tied embeddings; the tokenizer adds no BOS, BOS = EOS =
  ``<|endoftext|>``, and its ChatML template ends turns with ``<|im_end|>`` (not EOS).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from directpo.config import DPOConfig

CORPUS = [
    "The movie was wonderful and the acting was great.",
    "The movie was terrible and the plot was boring.",
    "Question: What is the capital of France? Answer: Paris is the capital.",
    "Human: Can you help me? Assistant: Sure, I would be glad to help you.",
    "Human: Tell me a joke. Assistant: Sorry, I cannot do that right now.",
    "I love this film, a truly delightful and moving story.",
    "I hate this film, a dull and painful waste of time.",
    "hello world, this is a small corpus for a tiny tokenizer with numbers 0123456789",
] * 20

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% else %}<|im_end|>{% endif %}{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_byte_level_bpe(specials: list[str], corpus: list[str] = CORPUS) -> Tokenizer:
    """A 400-token byte-level BPE trained on ``corpus``, with ``specials`` first."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    return tok


def build_tokenizer(style: str) -> PreTrainedTokenizerFast:
    if style == "llama":
        specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_byte_level_bpe(specials)
    if style == "llama":
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            chat_template=LLAMA_TEMPLATE,
        )
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            chat_template=CHATML_TEMPLATE,
        )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return fast


def build_model(style: str, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if style == "llama":
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
            **common,
        )
        return LlamaForCausalLM(config)
    config = GPT2Config(n_positions=512, n_embd=32, n_layer=2, n_head=4, **common)
    return GPT2LMHeadModel(config)


def save_tiny_model(style: str, folder: Path, seed: int = 0) -> Path:
    tokenizer = build_tokenizer(style)
    model = build_model(style, tokenizer, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# a chat template that refuses a system message (a row's refusal said by the template itself)
REFUSES_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
    "{% endif %}{{ m['content'] }}\n{% endfor %}"
)


def refusing_system_copy(model: Path, folder: Path) -> Path:
    """The model folder copied to ``folder`` with the REFUSES_SYSTEM chat template."""
    shutil.copytree(model, folder)
    (folder / "chat_template.jinja").write_text(REFUSES_SYSTEM)
    return folder


def bf16_grid_copy(model: Path, folder: Path) -> Path:
    """The tiny model with every weight on bf16's grid (as hub models are stored), in float32:
    the run's bf16 reference and its float32 masters then start equal."""
    shutil.copytree(model, folder)
    tensors = load_file(folder / "model.safetensors")
    rounded = {k: v.to(torch.bfloat16).float() for k, v in tensors.items()}
    save_file(rounded, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def tiny_config(model: Path, data: Path | None, out: Path, **overrides: Any) -> DPOConfig:
    """A fast training config for the tiny models; ``overrides`` win."""
    values: dict[str, Any] = dict(
        model_name_or_path=str(model),
        train_file=str(data) if data else None,
        output_dir=str(out),
        report_to=["none"],
        logging_steps=1,
        save_steps=0,
        learning_rate=5e-3,
        per_device_train_batch_size=6,
        max_steps=1,
    )
    return DPOConfig(**{**values, **overrides})


def quiet(_: str) -> None:
    """An ``echo`` that says nothing (train, score, rank and generate print their lines)."""


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


SENTIMENT_PAIRS = [
    {"prompt": "The movie was", "chosen": " wonderful and great.", "rejected": " terrible."},
    {
        "prompt": "I love this film,",
        "chosen": " a truly delightful story.",
        "rejected": " a dull waste.",
    },
    {
        "prompt": "Question: What is the capital of France? Answer:",
        "chosen": " Paris.",
        "rejected": " boring.",
    },
    {
        "prompt": "Human: Can you help me? Assistant:",
        "chosen": " Sure, I would be glad to help.",
        "rejected": " Sorry, I cannot.",
    },
    {"prompt": "The acting was", "chosen": " great.", "rejected": " painful."},
    {"prompt": "hello world,", "chosen": " this is a small corpus.", "rejected": " dull."},
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def kept_when_interrupted(exit_code: int, stderr: str, out: Path, whole: list[dict]) -> list[dict]:
    """The rows a streamed command (score, rank, generate) kept when a Ctrl-C stopped it
    (``exit_code``, its ``stderr``): exit 130, no ``out`` yet, one staging file beside it holding
    a proper prefix of the uninterrupted run's rows ``whole``, and the line that says so."""
    assert exit_code == 130
    assert not out.exists()
    [staging] = out.parent.iterdir()
    kept = read_jsonl(staging)
    assert kept == whole[: len(kept)] and 0 < len(kept) < len(whole)
    assert stderr.splitlines()[-1] == (
        f"directpo: interrupted: {len(kept)} rows are kept in {staging}; the same command "
        "continues from there"
    )
    return kept


class CountedBackend:
    """A fast tokenizer's Rust backend that records the texts of each call that encodes
    (``batches``), whether the tokenizer's ``__call__`` or directpo's direct path made it."""

    def __init__(self, backend: Tokenizer):
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "batches", [])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def __setattr__(self, name: str, value: Any) -> None:  # (the tokenizer sets the backend's)
        setattr(self.backend, name, value)

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.batches.append([text])
        return self.backend.encode(text, *args, **kwargs)

    def encode_batch(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.batches.append(list(texts))
        return self.backend.encode_batch(texts, *args, **kwargs)

    def encode_batch_fast(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.batches.append(list(texts))
        return self.backend.encode_batch_fast(texts, *args, **kwargs)


def count_ids_many(monkeypatch: Any) -> list[int]:
    """The number of texts of each ``PairTokenizer._ids_many`` call from now on (a list filled
    as they come; ``monkeypatch`` restores it): one call per batch, not per row."""
    from directpo.tokenization import PairTokenizer

    calls: list[int] = []
    real = PairTokenizer._ids_many

    def counting(self: Any, texts: list[str]) -> list[list[int]]:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(PairTokenizer, "_ids_many", counting)
    return calls


def count_encoding(tokenizer: PreTrainedTokenizerFast, monkeypatch: Any) -> list[list[str]]:
    """The texts of each encoding call ``tokenizer`` makes from now on (a list filled as they
    come; ``monkeypatch`` restores the backend)."""
    counted = CountedBackend(tokenizer._tokenizer)
    monkeypatch.setattr(tokenizer, "_tokenizer", counted)
    return counted.batches


# what a refusal by a template without a system turn adds (chat_render.no_system_turn), as
# train and as score / rank / generate say it
_NO_SYSTEM_TURN = (
    "; the template has no system turn (it renders the row without its system message): drop "
    "the system messages (or the system_column option that adds them), put their text in the "
    "first user message, or give a template that takes one "
)
NO_SYSTEM_TURN_TRAIN = _NO_SYSTEM_TURN + "with the chat_template option"
NO_SYSTEM_TURN_FOLDER = _NO_SYSTEM_TURN + (
    "in the model folder's chat template (its chat_template.jinja: score, rank and generate "
    "render with the model's own)"
)


SKIP_HINTS = {
    "python": "skip_invalid_rows=True skips them",
    "recipe": "skip_invalid_rows: true skips them",
    "flags": "--skip_invalid_rows skips them",
}


def with_skip_hint(line: str, caller: str = "python") -> str:
    """A train source's refused-rows ``line`` as it is said: ending in what skips the rows, in
    the ``caller``'s words (a single refused row too)."""
    return f"{line}; {SKIP_HINTS[caller]}"
