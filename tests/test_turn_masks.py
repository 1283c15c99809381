"""assistant_only_loss: the tokens of a completion's messages the model does not write (a tool's
result, a user turn) are left out of log π(y|x), found exactly in a real chat template's
rendering, through every layout, truncation, the token cache and the reference's cache key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from directpo.batching import Layout, collate_pairs
from directpo.data import load_preferences
from directpo.errors import DataError
from directpo.logprobs import model_logprobs
from directpo.pair_store import pair_store
from directpo.precompute import data_fingerprint
from directpo.token_cache import _read, _write
from directpo.tokenization import tokenize_preferences

SMOLLM2 = Path("/root/.cache/directpo/models/SmolLM2-135M-Instruct")
pytestmark = pytest.mark.skipif(not SMOLLM2.is_dir(), reason="SmolLM2's tokenizer is not here")

# Qwen2.5's tool-calling template, cut to what decides the case: a call as <tool_call> JSON in
# the assistant's turn, a tool's result as a user turn's <tool_response>
QWEN_TOOLS = (
    "{% for m in messages %}"
    "{% if m.role in ('user', 'system') %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n'
    "</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
PROMPT = [{"role": "user", "content": "Weather in Paris?"}]
TOOL_REPLY = [
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": "18 C, sunny"},
    {"role": "assistant", "content": "It is 18 C and sunny."},
]
ROW = {
    "prompt": PROMPT,
    "chosen": TOOL_REPLY,
    "rejected": [{"role": "assistant", "content": "It rains."}],
}


@pytest.fixture(scope="module")
def tokenizer():
    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    tok.chat_template = QWEN_TOOLS
    return tok


def _pair(tokenizer, rows=(ROW,), max_length=512, **options):
    return tokenize_preferences(load_preferences(list(rows)), tokenizer, max_length, **options)


def test_the_unscored_tokens_are_exactly_the_tool_message_and_the_next_header(tokenizer) -> None:
    """The span left out is what the template writes after the call's <|im_end|> up to the
    answer's content: the tool's turn, the newline after each turn's end, and the answer's
    '<|im_start|>assistant\\n' header (written by whoever runs the model), id for id as the
    template's own renderings of the conversation's prefixes tokenize."""
    pair = _pair(tokenizer, assistant_only_loss=True).pairs[0]
    render = tokenizer.apply_chat_template
    prompt = tokenizer(render(PROMPT, tokenize=False, add_generation_prompt=True)).input_ids
    call_end = tokenizer(render(PROMPT + TOOL_REPLY[:1], tokenize=False).rstrip()).input_ids
    answer_start = tokenizer(
        render(PROMPT + TOOL_REPLY[:2], tokenize=False, add_generation_prompt=True)
    ).input_ids
    assert pair.chosen_ids[: len(answer_start) - len(prompt)] == answer_start[len(prompt) :]
    assert pair.unscored == (((len(call_end) - len(prompt), len(answer_start) - len(prompt)),), ())
    start, end = pair.unscored[0][0]
    assert tokenizer.decode(pair.chosen_ids[start:end]) == (
        "\n<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer.decode(pair.chosen_ids[end:]) == "It is 18 C and sunny.<|im_end|>"
    off = _pair(tokenizer).pairs[0]  # the option off: the same ids, nothing left out
    assert (off.prompt_ids, off.chosen_ids, off.rejected_ids) == (
        pair.prompt_ids,
        pair.chosen_ids,
        pair.rejected_ids,
    )
    assert off.unscored == ((), ())


def test_log_probs_sum_only_the_assistant_tokens_in_every_layout(tokenizer) -> None:
    """The policy's log-probs and token counts equal a hand sum over the assistant's tokens
    of the model's own forward (plain, prefix-shared and packed rows alike); with the option
    off they are today's sums over every completion token, bitwise."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    masked = _pair(tokenizer, assistant_only_loss=True).pairs[0]
    plain = _pair(tokenizer).pairs[0]
    ids = masked.prompt_ids + masked.chosen_ids
    with torch.no_grad():
        logps = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    n = len(masked.prompt_ids)
    token = [logps[n + j - 1, t].item() for j, t in enumerate(masked.chosen_ids)]
    ((start, end),) = masked.unscored[0]
    kept = [j for j in range(len(token)) if not start <= j < end]
    layouts = [Layout(), Layout(share_prefix=True), Layout(pack=True)]
    with torch.no_grad():
        for layout in layouts:
            sums, counts, *_ = model_logprobs(model, collate_pairs([masked], 0, layout=layout))
            assert sums[0].item() == pytest.approx(sum(token[j] for j in kept), abs=1e-4)
            assert counts.tolist() == [len(kept), len(masked.rejected_ids)]
        today, today_counts, *_ = model_logprobs(model, collate_pairs([plain], 0))
    assert today[0].item() == pytest.approx(sum(token), abs=1e-4)
    assert today_counts.tolist() == [len(plain.chosen_ids), len(plain.rejected_ids)]
    batch = collate_pairs([plain], 0)  # the option off builds today's batch
    assert batch.target_ids.tolist() == plain.chosen_ids + plain.rejected_ids


def test_truncation_cache_and_reference_key_keep_the_spans(tokenizer, tmp_path) -> None:
    """A completion cut inside the tool's turn keeps the part of the span it has; the token
    cache gives the spans back; the reference cache's key changes with them."""
    whole = _pair(tokenizer, assistant_only_loss=True)
    ((start, end),) = whole.pairs[0].unscored[0]
    prompt_length = len(whole.pairs[0].prompt_ids)
    cut = _pair(tokenizer, max_length=prompt_length + start + 3, assistant_only_loss=True)
    assert cut.pairs[0].unscored == (((start, start + 3),), ())
    data = load_preferences([ROW])
    path = tmp_path / "pairs.npz"
    assert _write(path, whole, data) is None
    read = _read(path, data, print, "train")
    assert read is not None and list(read.pairs) == list(whole.pairs)
    assert read.pairs[0].unscored == whole.pairs[0].unscored
    plain = _pair(tokenizer)
    assert data_fingerprint(pair_store(plain.pairs)) != data_fingerprint(whole.pairs)
    assert data_fingerprint(list(whole.pairs)) == data_fingerprint(whole.pairs)


# Qwen3's rule, cut to what decides the case: the last turn after the user's query writes a
# (here empty) think block, an earlier one without reasoning none; so the conversation up to the
# call renders it otherwise than the whole conversation does
QWEN3_TOOLS = QWEN_TOOLS.replace(
    "<|im_start|>assistant\n{{ m.content }}",
    "<|im_start|>assistant\n{% if loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}",
)


def test_a_turn_rendered_otherwise_once_others_follow_ends_at_its_stop_token(tokenizer) -> None:
    """Qwen3 writes an empty think block in the last assistant turn only: the conversation up
    to the call is then no prefix of the whole. The reply ends where the model stops, at the
    last stop token (<|im_end|>) before the tool's message: the same span, found in the whole
    rendering."""
    qwen3 = AutoTokenizer.from_pretrained(SMOLLM2)
    qwen3.chat_template = QWEN3_TOOLS
    pair = _pair(qwen3, assistant_only_loss=True).pairs[0]
    ((start, end),) = pair.unscored[0]
    assert qwen3.decode(pair.chosen_ids[:start]).endswith("</tool_call><|im_end|>")
    assert qwen3.decode(pair.chosen_ids[start:end]) == (
        "\n<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert qwen3.decode(pair.chosen_ids[end:]) == (
        "<think>\n\n</think>\n\nIt is 18 C and sunny.<|im_end|>"
    )


def test_a_template_that_leaves_no_boundary_refuses_the_row(tokenizer) -> None:
    """A template that renders an earlier assistant turn otherwise once a user turn follows,
    and writes no stop token after it there, leaves no exact place where the reply ends: the
    row is refused in one line, not trained with a wrong mask; with the option off it trains
    as before."""
    rewriting = AutoTokenizer.from_pretrained(SMOLLM2)
    rewriting.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "{% if m.role != 'assistant' or loop.last %}<|im_end|>{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    row = {
        "prompt": PROMPT,
        "chosen": [
            {"role": "assistant", "content": "Which unit?"},
            {"role": "user", "content": "Celsius."},
            {"role": "assistant", "content": "18 C."},
        ],
        "rejected": [{"role": "assistant", "content": "No idea."}],
    }
    with pytest.raises(DataError) as info:
        _pair(rewriting, [row], assistant_only_loss=True)
    assert str(info.value).startswith(
        "rows: row 1: assistant_only_loss: the chat template renders the conversation up to the "
        "completion's message 1 differently from the start of the whole one"
    )
    # the option turned off as the caller sets it ('set assistant_only_loss false' was said to
    # every caller: none writes it so)
    from directpo.callers import Caller, Entry, Spelling, called_by

    for spelling, off in (
        (Spelling.RECIPE, "or set assistant_only_loss: false"),
        (Spelling.FLAGS, "or give --assistant_only_loss false"),
        (Spelling.PYTHON, "or pass assistant_only_loss=False"),
    ):
        with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(DataError) as info:
            _pair(rewriting, [row], assistant_only_loss=True)
        assert off in str(info.value), str(info.value)
    assert len(_pair(rewriting, [row])) == 1


def test_a_stop_token_before_the_reply_is_not_taken_for_its_end() -> None:
    """gpt-oss ends a tool call with a stop token (<|call|>), the last reply with another
    (<|return|>) and earlier replies with one the model never stops at (<|end|>): with a user
    turn after a tool's answer, the last stop token before that turn is the call's. It is not
    where the answer ends (the answer would be masked out with the tool's turn, in overlapping
    spans): the row is refused, as for any template that writes no stop token after a reply."""
    oss = AutoTokenizer.from_pretrained(SMOLLM2)  # <|im_end|> a stop, <|endoftext|> not one
    oss.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "{% if m.tool_calls %}<tool_call>{{ m.tool_calls[0].function.name }}</tool_call>"
        "<|im_end|>{% elif m.role == 'assistant' and loop.last %}<|im_end|>"
        "{% else %}<|endoftext|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    row = {**ROW, "chosen": [*TOOL_REPLY, {"role": "user", "content": "And tomorrow?"}]}
    row["chosen"].append({"role": "assistant", "content": "Rain."})
    with pytest.raises(DataError) as info:
        _pair(oss, [row], assistant_only_loss=True)
    assert "completion's message 3 differently from the start of the whole one" in str(info.value)
    (pair,) = _pair(oss, [{**ROW, "chosen": TOOL_REPLY}], assistant_only_loss=True).pairs
    ((start, end),) = pair.unscored[0]  # a tool's turn alone still finds its reply's end
    assert oss.decode(pair.chosen_ids[start:end]) == (
        "<|im_start|>tool\n18 C, sunny<|endoftext|><|im_start|>assistant\n"
    )


def test_a_header_ending_in_two_newlines_is_a_boundary_between_tokens() -> None:
    """A Llama-3-style header ('...assistant' + two newlines) on SmolLM2's tokenizer: the text
    up to the answer, tokenized alone, ends in one "\\n\\n" token, which the whole text splits
    in two before "It". No token crosses that boundary: the tool's turn and the header are
    left out exactly (the row was refused as if a token crossed it)."""
    llama = AutoTokenizer.from_pretrained(SMOLLM2)
    llama.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n\n{{ m.content }}"
        "{% for c in m.tool_calls or [] %}{{ c.function.name }}{% endfor %}<|im_end|>"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n\n{% endif %}"
    )
    (pair,) = _pair(llama, assistant_only_loss=True).pairs
    ((start, end),) = pair.unscored[0]
    assert llama.decode(pair.chosen_ids[:start]) == "get_weather<|im_end|>"
    assert llama.decode(pair.chosen_ids[start:end]) == (
        "<|im_start|>tool\n\n18 C, sunny<|im_end|><|im_start|>assistant\n\n"
    )
    assert llama.decode(pair.chosen_ids[end:]) == "It is 18 C and sunny.<|im_end|>"


# Qwen3's enable_thinking: false, cut to what decides the case: the generation prompt writes an
# empty think block that a finished turn without reasoning does not (but the last one), and a
# newline goes between a turn's content and its tool call only where there is content
QWEN3_NO_THINKING = (
    "{% for m in messages %}"
    "{% if m.role in ('user', 'system') %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% elif m.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}"
    "{% for c in m.tool_calls or [] %}{% if m.content %}\n{% endif %}<tool_call>\n"
    '{"name": "{{ c.function.name }}"}\n</tool_call>{% endfor %}<|im_end|>\n'
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def test_enable_thinking_false_with_a_tool_call_first_trains_and_masks() -> None:
    """Qwen3 with enable_thinking: false and a completion starting with a tool call (empty
    content) was refused, option on or off, as "the chat template does not render the prompt
    as a prefix" (a mark put in the empty content moves the call); with assistant_only_loss,
    a reply before a later user turn was refused too (its generation prompt's empty think
    block is not in the whole rendering). The completion is now the turn after the prompt's
    think block, and a header ends where its think block would, if the turn writes none."""
    qwen3 = AutoTokenizer.from_pretrained(SMOLLM2)
    qwen3.chat_template = QWEN3_NO_THINKING
    chosen = [*TOOL_REPLY, {"role": "user", "content": "And tomorrow?"}]
    row = {**ROW, "chosen": [*chosen, {"role": "assistant", "content": "Rain."}]}
    off = {"enable_thinking": False}
    (plain,) = _pair(qwen3, [row], chat_template_kwargs=off).pairs
    (pair,) = _pair(qwen3, [row], chat_template_kwargs=off, assistant_only_loss=True).pairs
    assert qwen3.decode(pair.prompt_ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert pair.chosen_ids == plain.chosen_ids and plain.unscored == ((), ())
    (first, second) = pair.unscored[0]
    ids, decode = pair.chosen_ids, qwen3.decode
    assert decode(ids[: first[0]]) == '<tool_call>\n{"name": "get_weather"}\n</tool_call><|im_end|>'
    assert decode(ids[first[0] : first[1]]) == (
        "\n<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert decode(ids[first[1] : second[0]]) == "It is 18 C and sunny.<|im_end|>"
    assert decode(ids[second[0] : second[1]]) == (
        "\n<|im_start|>user\nAnd tomorrow?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert decode(ids[second[1] :]) == "Rain.<|im_end|>"


def _tiny_model(tokenizer, folder: Path, seed: int) -> Path:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), initializer_range=0.5,
    )  # fmt: skip  # (wide weights: the two models' log-probs differ by more than rounding)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hand_sum(model, prompt: list[int], completion: list[int], kept: list[int]) -> float:
    with torch.no_grad():
        logps = model(torch.tensor([prompt + completion])).logits[0].double().log_softmax(-1)
    n = len(prompt)
    return sum(logps[n + j - 1, completion[j]].item() for j in kept)


def test_score_uses_the_run_s_assistant_only_loss(tokenizer, tmp_path) -> None:
    """The implicit reward of a run trained with assistant_only_loss is over the tokens it
    trained: from_run reads the option from config.yaml (a reward over every token would rank
    pairs by the tool's output, which neither model writes); without it, every token."""
    from directpo.reward import ImplicitReward

    policy = _tiny_model(tokenizer, tmp_path / "run", seed=0)
    reference = _tiny_model(tokenizer, tmp_path / "ref", seed=1)
    (policy / "config.yaml").write_text(
        f"model_name_or_path: {reference}\noutput_dir: {policy}\nbeta: 0.5\n"
        "assistant_only_loss: true\n"
    )
    pair = _pair(tokenizer, assistant_only_loss=True).pairs[0]
    ((start, end),) = pair.unscored[0]
    every = list(range(len(pair.chosen_ids)))
    rewards, models = [], [LlamaForCausalLM.from_pretrained(f).eval() for f in (policy, reference)]
    for scorer, kept in (
        (ImplicitReward.from_run(str(policy)), [j for j in every if not start <= j < end]),
        (ImplicitReward(policy, reference, 0.5), every),
    ):
        chosen, _ = scorer.score_pairs(load_preferences([ROW]).examples)[0]
        expected = 0.5 * (
            _hand_sum(models[0], pair.prompt_ids, pair.chosen_ids, kept)
            - _hand_sum(models[1], pair.prompt_ids, pair.chosen_ids, kept)
        )
        assert chosen == pytest.approx(expected, rel=1e-4)
        rewards.append(chosen)
    assert abs(rewards[0] - rewards[1]) > 0.1  # (the tool's tokens weigh in the reward)


def test_score_s_assistant_only_loss_option_over_the_run_s(tokenizer, tmp_path) -> None:
    """score / rank's --assistant_only_loss: a folder that is no directpo run (trained by TRL,
    say) could only be scored over every token, and a run's reward only over the tokens it
    trained; the option gives either, the run's when unset (and says so)."""
    from directpo.command_options import ScoreOptions
    from directpo.reward import ImplicitReward
    from directpo.reward_files import score_file

    policy = _tiny_model(tokenizer, tmp_path / "run", seed=0)
    reference = _tiny_model(tokenizer, tmp_path / "ref", seed=1)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(ROW) + "\n")
    examples = load_preferences([ROW]).examples
    masked = ImplicitReward(policy, reference, 0.5, assistant_only_loss=True)
    every = ImplicitReward(policy, reference, 0.5)
    expected = {True: masked.score_pairs(examples)[0], False: every.score_pairs(examples)[0]}

    def scored(said: list[str], **options) -> tuple[float, float]:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.jsonl"
        score_file(
            ScoreOptions(
                model_name_or_path=str(policy), input=str(rows), output=str(out), **options
            ),
            echo=said.append,
        )
        row = json.loads(out.read_text())
        return row["chosen_reward"], row["rejected_reward"]

    plain = {"ref_model_name_or_path": str(reference), "beta": 0.5}
    for value in (True, False):
        assert scored([], assistant_only_loss=value, **plain) == pytest.approx(expected[value])
    (policy / "config.yaml").write_text(
        f"model_name_or_path: {reference}\noutput_dir: {policy}\nbeta: 0.5\n"
        "assistant_only_loss: true\n"
    )
    said: list[str] = []
    assert scored(said) == pytest.approx(expected[True])
    # (as the run's config.yaml writes it: was Python's 'assistant_only_loss True')
    assert "from the run's config.yaml (no option gave them): assistant_only_loss: true" in said
    assert scored([], assistant_only_loss=False) == pytest.approx(expected[False])
