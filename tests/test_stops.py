"""Completions end at the token that stops generation (stops.py), for each chat model family."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tiny import save_tiny_model, train_byte_level_bpe
from transformers import PreTrainedTokenizerFast

from directpo.data import PreferenceExample
from directpo.stops import end_at_stop, generation_stop_ids
from directpo.tokenization import PairTokenizer

# the families' chat templates as their tokenizer_config.json write them
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA2 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
# (template, bos, eos, end-of-turn, other special tokens); the end-of-turn is not the EOS, and
# the model's generation_config.json lists both as eos_token_id
FAMILIES = {
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
               ["<|start_header_id|>", "<|end_header_id|>"]),
    "gemma2": (GEMMA2, "<bos>", "<eos>", "<end_of_turn>", ["<start_of_turn>"]),
    "phi3": (PHI3, "<s>", "<|endoftext|>", "<|end|>", ["<|system|>", "<|user|>", "<|assistant|>"]),
}  # fmt: skip


def family_tokenizer(name: str) -> tuple[PreTrainedTokenizerFast, int]:
    """A byte-level tokenizer with the family's special tokens and template; its end-of-turn id."""
    template, bos, eos, end, others = FAMILIES[name]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe([bos, eos, end, *others]),
        bos_token=bos,
        eos_token=eos,
        chat_template=template,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [end, *others]})
    return tokenizer, tokenizer.convert_tokens_to_ids(end)


PAIR = PreferenceExample(
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "the movie?"},
    ],
    [{"role": "assistant", "content": "wonderful"}],
    [{"role": "assistant", "content": "dull"}],
)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_completion_ends_at_the_end_of_turn_the_model_stops_at(family) -> None:
    tokenizer, end = family_tokenizer(family)
    encoder = PairTokenizer(tokenizer, 256, stop_ids=[tokenizer.eos_token_id, end])
    pair = encoder.encode(PAIR, Counter())
    end_token = FAMILIES[family][3]
    # the turn's end-of-turn is the last token: no EOS after it (never sampled: generation
    # stops at the end-of-turn), nor what Phi-3's template writes after it ("\n<|endoftext|>")
    assert tokenizer.decode(pair.chosen_ids) == "wonderful" + end_token
    assert tokenizer.decode(pair.rejected_ids) == "dull" + end_token
    # the prompt is as sampling sees it, and prompt + completion is the rendered conversation
    conversation = [*PAIR.prompt, *PAIR.chosen]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert rendered.startswith(tokenizer.decode(pair.prompt_ids + pair.chosen_ids))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_end_of_turn_the_model_does_not_stop_at_is_followed_by_eos(family) -> None:
    # a base model given a chat template: its generation config stops only at EOS, which ends
    # the completion (after the newline Phi-3's template writes before it, as rendered)
    tokenizer, _ = family_tokenizer(family)
    pair = PairTokenizer(tokenizer, 256).encode(PAIR, Counter())
    between = "\n" if family == "phi3" else ""
    expected = "wonderful" + FAMILIES[family][3] + between + tokenizer.eos_token
    assert tokenizer.decode(pair.chosen_ids) == expected


def test_end_at_stop_keeps_up_to_the_first_stop_of_the_trailing_run() -> None:
    blank = {9}.__contains__  # token 9: a newline
    assert end_at_stop([1, 2, 7, 9, 8], {7, 8}, blank) == [1, 2, 7]
    assert end_at_stop([1, 7, 2, 8], {7, 8}, blank) == [1, 7, 2, 8]  # a stop mid-way stays
    assert end_at_stop([1, 2, 9], {7, 8}, blank) == [1, 2, 9]  # no stop: left as it is
    assert end_at_stop([1, 9, 8], {8}, blank) == [1, 9, 8]  # whitespace before the stop stays


def test_generation_stop_ids_read_the_folder_without_loading_weights(tmp_path: Path) -> None:
    folder = save_tiny_model("gpt2", tmp_path / "m")
    assert generation_stop_ids(str(folder), {}, False) == [0]  # config.json's eos
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    assert generation_stop_ids(str(folder), {}, False) == [0, 2]
    assert generation_stop_ids(str(tmp_path / "nothing"), {}, False) == []


def test_training_reads_the_models_stop_tokens(tmp_path: Path) -> None:
    import torch
    from tiny import tiny_config

    from directpo.run_data import load_run_data

    folder = save_tiny_model("gpt2", tmp_path / "m")  # ChatML: <|im_end|> ends each turn
    rows = [{"prompt": PAIR.prompt, "chosen": PAIR.chosen, "rejected": PAIR.rejected}]
    config = tiny_config(folder, None, tmp_path / "out")
    data = load_run_data(config, rows, None, torch.device("cpu"), lambda line: None)
    tokenizer = data.tokenizer
    # a base model's generation config stops at EOS only: EOS follows the end of turn
    assert tokenizer.decode(data.train.pairs[0].chosen_ids) == "wonderful<|im_end|><|endoftext|>"
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, end]}))
    data = load_run_data(config, rows, None, torch.device("cpu"), lambda line: None)
    assert tokenizer.decode(data.train.pairs[0].chosen_ids) == "wonderful<|im_end|>"


def test_scoring_ends_a_response_where_the_policy_stops(tmp_path: Path) -> None:
    from directpo.reward import ImplicitReward

    folder = save_tiny_model("gpt2", tmp_path / "m")  # ChatML: <|im_end|> ends each turn
    scorer = ImplicitReward(str(folder), str(folder), 0.1)
    end = scorer.tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompt, response = PAIR.prompt, PAIR.chosen
    _, ids = scorer.encoder.encode_response(prompt, response, Counter())
    assert scorer.tokenizer.decode(ids) == "wonderful<|im_end|><|endoftext|>"
    scorer.policy.generation_config.eos_token_id = [0, end]  # an instruct model's
    scorer = ImplicitReward(scorer.policy, str(folder), 0.1, scorer.tokenizer)
    _, ids = scorer.encoder.encode_response(prompt, response, Counter())
    assert scorer.tokenizer.decode(ids) == "wonderful<|im_end|>"  # as training's completions
