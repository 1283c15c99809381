"""What reward_model_name_or_path's model is shown: the ids TRL's RewardTrainer trained it on,
its score read at the last real token."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from test_tokenization import TOOLS_TEMPLATE, WEATHER_TOOL

from directpo.data import ImagePrompt
from directpo.labellers import _reward_model
from directpo.reward_inputs import kept_end, reward_input_ids

trl = pytest.importorskip("trl")

CHAT = [{"role": "user", "content": "Hi"}]


def tiny_judge(tiny_model_dirs, style: str, folder: Path, template: str | None = None) -> Path:
    """A tiny sequence classifier of one output with the tiny ``style`` model's tokenizer:
    llama (adds BOS; pad <pad>, EOS </s>) or gpt2 (no BOS added; pad = EOS = BOS)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_model_dirs[style])
    config.num_labels = 1
    config.pad_token_id = config.eos_token_id if style == "gpt2" else config.pad_token_id
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_model_dirs[style] / name).exists():
            shutil.copy(tiny_model_dirs[style] / name, folder)
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


def trl_reward_trainer_ids(tokenizer, row: dict) -> list[int]:
    """The chosen ids TRL's RewardTrainer trains on for ``row`` (its own preparation)."""
    import datasets

    with warnings.catch_warnings():  # (transformers' deprecation of a field TRL sets)
        warnings.simplefilter("ignore", FutureWarning)
        args = trl.RewardConfig(output_dir="unused", report_to="none", use_cpu=True)
    dataset = datasets.Dataset.from_list([{**row, "rejected": row["chosen"]}])
    prepared = trl.RewardTrainer._prepare_dataset(None, dataset, tokenizer, args, "train")
    return prepared[0]["chosen_ids"]


def fed_ids(monkeypatch, score, prompts, completions) -> tuple[list[float], list[list[int]]]:
    """The rewards ``score`` gives and the unpadded ids each completion reached the model as."""
    from transformers import PreTrainedModel

    seen: list[list[int]] = []
    forward = PreTrainedModel.__call__
    depth = [0]

    def recording(model, *args, **kwargs):
        if depth[0] == 0:  # the outermost model called: the classifier, or its base (OpenRLHF)
            rows = zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist(), strict=True)
            seen.extend([i for i, m in zip(ids, mask, strict=True) if m] for ids, mask in rows)
        depth[0] += 1
        try:
            return forward(model, *args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(PreTrainedModel, "__call__", recording)
    rewards = score(prompts, completions, [{} for _ in prompts])
    monkeypatch.undo()
    return rewards, seen


def direct(folder: Path, ids: list[int]) -> float:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, 0].item()


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_a_reward_model_is_fed_what_trls_reward_trainer_trained_it_on(
    tiny_model_dirs, tmp_path, monkeypatch, style
) -> None:
    """A text prompt's input lacked the EOS TRL's RewardTrainer appends to every row it trains
    on (the llama judge, whose pad is not its EOS, read its score at the completion's last
    word, a position it never learnt to score: another value); a conversation with tools was
    rendered without them. Both are now the ids RewardTrainer prepares, and the reward is the
    model's own forward of them."""
    from transformers import AutoTokenizer

    judge = tiny_judge(tiny_model_dirs, style, tmp_path / "judge", TOOLS_TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(judge)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    score = _reward_model(str(judge), torch.device("cpu"), None)
    with_tools = ImagePrompt(CHAT, (), {"tools": [WEATHER_TOOL]})
    prompts = ["The movie was", with_tools]
    completions = [" great.", "Hello!"]
    rewards, seen = fed_ids(monkeypatch, score, prompts, completions)

    text = tokenizer("The movie was great.", add_special_tokens=False)["input_ids"]
    assert seen[0] == ([bos] if style == "llama" else []) + text + [eos]
    assert seen[0] == trl_reward_trainer_ids(
        tokenizer, {"prompt": "The movie was", "chosen": " great."}
    )
    chat_row = {"prompt": CHAT, "chosen": [{"role": "assistant", "content": "Hello!"}],
                "tools": [WEATHER_TOOL]}  # fmt: skip
    assert seen[1] == trl_reward_trainer_ids(tokenizer, chat_row)
    assert tokenizer.decode(seen[1]).startswith("<|im_start|>system\ntools: get_weather")
    for reward, ids in zip(rewards, seen, strict=True):
        assert reward == pytest.approx(direct(judge, ids), abs=1e-5)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_a_reward_is_read_at_the_last_real_token(
    tiny_model_dirs, tmp_path, monkeypatch, style
) -> None:
    """A completion that ends with the EOS text gets no second one (RewardTrainer's add_eos);
    the score is the head's value at the last token that is not padding, whatever the
    completions beside it: the EOS where the pad is another token (llama), the token before
    it where the pad is the EOS (gpt2), as the RewardTrainer run read it in training."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    judge = tiny_judge(tiny_model_dirs, style, tmp_path / "judge")
    tokenizer = AutoTokenizer.from_pretrained(judge)
    eos = tokenizer.eos_token
    score = _reward_model(str(judge), torch.device("cpu"), None)
    longer = " and a much longer completion than the first one, to pad it by many tokens"
    rewards, seen = fed_ids(
        monkeypatch, score, ["Hi", "Hi", "Hi"], [" there" + eos, " there", longer]
    )
    assert seen[0] == seen[1] and seen[0].count(tokenizer.eos_token_id) == 1
    assert rewards[0] == rewards[1]

    model = AutoModelForSequenceClassification.from_pretrained(judge).eval()
    ids = seen[0]
    real = len(ids) - 1 if style == "llama" else len(ids) - 2  # gpt2: its EOS is its pad
    with torch.no_grad():
        hidden = model.base_model(torch.tensor([ids])).last_hidden_state
        expected = model.score(hidden)[0, real, 0].item()
    assert rewards[0] == pytest.approx(expected, abs=1e-5)
    alone = score(["Hi"], [" there"], [{}])[0]
    assert alone == pytest.approx(rewards[0], abs=1e-5)


def test_a_cut_input_keeps_its_bos_and_its_end() -> None:
    assert kept_end([0, 5, 6, 7, 8, 1], 4, 0) == [0, 7, 8, 1]
    assert kept_end([5, 6, 7, 8, 1], 3, 0) == [7, 8, 1]  # no BOS: the end alone
    assert kept_end([5, 6, 7, 8, 1], 3, None) == [7, 8, 1]
    assert kept_end([0, 5, 6], 3, 0) == [0, 5, 6]  # short enough: as it is
    assert kept_end([0, 5, 6], None, 0) == [0, 5, 6]


def test_a_tokenizer_without_eos_gets_none_appended(tiny_model_dirs) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["llama"])
    tokenizer.eos_token = None
    ids = reward_input_ids(tokenizer, "The movie was", " great.")
    assert ids == tokenizer("The movie was great.")["input_ids"]
    assert json.dumps(ids)  # plain ints


def openrlhf_judge(
    tiny_model_dirs, folder: Path, normalize: dict | None, head: str, prefix: str | None = None
) -> Path:
    """A reward model as OpenRLHF saves it: the gpt2-style tokenizer (pad = EOS), a head of
    one output named ``head`` (its value_head_prefix), a config that names no labels
    (transformers' default: 2) and carries OpenRLHF's normalize_reward (and the mean and std
    it was normalized with)."""
    from safetensors.torch import load_file, save_file

    tiny_judge(tiny_model_dirs, "gpt2", folder)
    weights = load_file(folder / "model.safetensors")
    weights[f"{head}.weight"] = weights.pop("score.weight")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    for key in ("num_labels", "id2label", "label2id"):
        config.pop(key, None)
    config["architectures"] = ["GPT2LMHeadModel"]
    config |= {"normalize_reward": normalize is not None, **(normalize or {})}
    if prefix is not None:  # (newer OpenRLHF writes its value_head_prefix in)
        config["value_head_prefix"] = prefix
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("normalize", "head", "prefix"),
    [
        (None, "score", None),
        ({"mean": 0.5, "std": 2.0}, "value_head", None),
        (None, "reward_head", "reward_head"),
        (None, "score", "score"),
    ],
)
def test_an_openrlhf_reward_model_reads_its_value_at_the_eos(
    tiny_model_dirs, tmp_path, monkeypatch, normalize, head, prefix
) -> None:
    """An OpenRLHF reward model (config without num_labels) was refused: 'cannot load as a
    sequence classifier (You set `ignore_mismatched_sizes` to `False` ...)' after a load
    report (TRL loads it with num_labels=1), or, its head named value_head, 'not a trained
    reward model: score.weight not in its weights'. It now loads, and is fed and read as OpenRLHF
    trained it: text + ' ' + EOS without BOS, its value at the EOS (transformers' head would
    read the token before, its EOS being its pad), normalized by the config's mean and std. A
    head of another name, its config's value_head_prefix (reward_head), was refused as value_head
    was: it is read by that name."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    judge = openrlhf_judge(tiny_model_dirs, tmp_path / "judge", normalize, head, prefix)
    tokenizer = AutoTokenizer.from_pretrained(judge)
    score = _reward_model(str(judge), torch.device("cpu"), None)
    longer = " and a much longer completion than the first one, to pad it by many tokens"
    rewards, seen = fed_ids(monkeypatch, score, ["Hi", "Hi"], [" there\n", longer])
    ids = tokenizer("Hi there <|endoftext|>", add_special_tokens=False)["input_ids"]
    assert seen[0] == ids and ids[-1] == tokenizer.eos_token_id  # (its pad: it has none)
    assert tokenizer.pad_token is None

    model = AutoModelForSequenceClassification.from_pretrained(
        judge, num_labels=1, key_mapping={f"^{head}": "score"}
    ).eval()
    with torch.no_grad():
        hidden = model.base_model(torch.tensor([ids])).last_hidden_state
        value = model.score(hidden)[0, -1, 0].item()  # at the EOS
    mean, std = (normalize or {"mean": 0.0, "std": 1.0}).values()
    assert rewards[0] == pytest.approx((value - mean) / std, abs=1e-5)
    (alone,) = score(["Hi"], [" there"], [{}])
    assert alone == pytest.approx(rewards[0], abs=1e-5)


REMOTE_MODEL = """
from torch import nn
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class TinyRemoteRewardConfig(LlamaConfig):
    model_type = "tiny_remote_reward"


class TinyRemoteReward(LlamaPreTrainedModel):
    config_class = TinyRemoteRewardConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.score(hidden)[:, -1] + 100.0)  # (it ran)
"""


def test_a_reward_model_of_its_own_code_loads_with_trust_remote_code(
    tiny_model_dirs, tmp_path
) -> None:
    """A reward model whose architecture ships with it (ArmoRM-like) was refused with the
    run's trust_remote_code: true: 'cannot load as a sequence classifier (... custom code
    ...)'. The run's trust reaches it; without it the refusal says the option."""
    from directpo.errors import ModelLoadError

    judge = tiny_judge(tiny_model_dirs, "llama", tmp_path / "remote")
    (judge / "modeling_tiny_remote_reward.py").write_text(REMOTE_MODEL)
    config = json.loads((judge / "config.json").read_text())
    config |= {"model_type": "tiny_remote_reward", "auto_map": {
        "AutoConfig": "modeling_tiny_remote_reward.TinyRemoteRewardConfig",
        "AutoModelForSequenceClassification": "modeling_tiny_remote_reward.TinyRemoteReward",
    }}  # fmt: skip
    (judge / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="allow its code: set trust_remote_code: true$"):
        _reward_model(str(judge), torch.device("cpu"), None)
    score = _reward_model(str(judge), torch.device("cpu"), None, trust_remote_code=True)
    (reward,) = score(["The movie was"], [" great."], [{}])
    assert reward > 50.0
    # a run's trust, in directpo's spelling or TRL's (model_init_kwargs)
    from tiny import tiny_config, write_jsonl

    from directpo.labellers import load_labeller

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "The movie was"}])
    for trust in ({"trust_remote_code": True}, {"model_init_kwargs": {"trust_remote_code": True}}):
        config = tiny_config(tiny_model_dirs["llama"], prompts, tmp_path / "out", online=True,
                             reward_model_name_or_path=str(judge), **trust)  # fmt: skip
        labeller = load_labeller(config, torch.device("cpu"))
        assert labeller(["The movie was"], [" great."], [{}]) == pytest.approx([reward])


def test_eval_generate_scores_a_held_out_sample_as_an_online_round_does(
    tiny_model_dirs, tmp_path
) -> None:
    """eval_generate handed the reward model a held-out conversation without its row's tools
    (eval/reward rendered another input than the online round's reward of the same completion:
    another number); the labeller now gets the prompt as the round does, tools and all."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from directpo.config import DPOConfig
    from directpo.eval_samples import evaluate_generations
    from directpo.reference import FrozenModelReference

    judge = tiny_judge(tiny_model_dirs, "llama", tmp_path / "judge", TOOLS_TEMPLATE)
    score = _reward_model(str(judge), torch.device("cpu"), None)
    policy_dir = tiny_model_dirs["llama"]
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    tokenizer.chat_template = TOOLS_TEMPLATE
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    reference = FrozenModelReference(AutoModelForCausalLM.from_pretrained(policy_dir))
    config = DPOConfig(
        model_name_or_path=str(policy_dir), eval_generate=1, eval_generate_samples=1,
        generate_max_new_tokens=4, report_to=["none"],
    )  # fmt: skip
    prompts = [ImagePrompt(CHAT, (), {"tools": [WEATHER_TOOL]})]
    _, records = evaluate_generations(policy, reference, tokenizer, prompts, config, 1, score)
    online = score(prompts, [records[0]["completion"]], [{}])[0]
    without_tools = score([CHAT], [records[0]["completion"]], [{}])[0]
    assert online != pytest.approx(without_tools, abs=1e-6)  # (the tools change the input)
    assert records[0]["reward"] == pytest.approx(online, abs=1e-6)


def test_a_reward_model_whose_tokenizer_has_no_pad_nor_eos_pads_with_its_configs_pad(
    tiny_model_dirs, tmp_path
) -> None:
    """A tokenizer saved without pad and EOS tokens failed at the first batch of two, 'scoring
    failed (ValueError: Asking to pad but the tokenizer does not have a padding token ...)';
    it pads with the pad its config names (each reward that of the input alone), and without
    that too it is refused at load, in one line saying what to save."""
    from directpo.errors import ModelLoadError

    judge = tiny_judge(tiny_model_dirs, "llama", tmp_path / "judge")
    settings = json.loads((judge / "tokenizer_config.json").read_text())
    for name in ("eos_token", "pad_token"):
        settings.pop(name, None)
    (judge / "tokenizer_config.json").write_text(json.dumps(settings))
    score = _reward_model(str(judge), torch.device("cpu"), None)
    completions = [" a", " much longer than the first"]
    together = score(["Hi", "Hi"], completions, [{}, {}])
    alone = [score(["Hi"], [c], [{}])[0] for c in completions]
    assert together == pytest.approx(alone, abs=1e-5)

    config = json.loads((judge / "config.json").read_text())
    (judge / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    with pytest.raises(ModelLoadError) as err:
        _reward_model(str(judge), torch.device("cpu"), None)
    assert str(err.value).startswith(
        f"reward_model_name_or_path '{judge}': its tokenizer has neither a pad nor an EOS token"
    )


def test_a_prefilled_prompts_completion_is_judged_as_one_assistant_turn(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """A conversation ending with an assistant message (a prefill the policy continued) was
    shown to the reward model as that turn closed and a second assistant turn of the completion
    alone; it is now the one turn the policy wrote, the ids RewardTrainer trains that answer on."""
    from transformers import AutoTokenizer

    judge = tiny_judge(tiny_model_dirs, "llama", tmp_path / "judge", TOOLS_TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(judge)
    score = _reward_model(str(judge), torch.device("cpu"), None)
    prefilled = [*CHAT, {"role": "assistant", "content": "Sure,"}]
    rewards, seen = fed_ids(monkeypatch, score, [prefilled], [" here."])
    row = {"prompt": CHAT, "chosen": [{"role": "assistant", "content": "Sure, here."}]}
    assert seen[0] == trl_reward_trainer_ids(tokenizer, row)
    assert tokenizer.decode(seen[0]).count("<|im_start|>assistant") == 1


def test_a_long_completion_is_judged_whole_with_its_prompt(tiny_model_dirs, tmp_path) -> None:
    """The reward model's inputs were cut to twice the prompt limit alone: with
    max_prompt_length 4 and 40 new tokens, a long completion was scored on its BOS and last 7
    tokens, without the prompt. The cut now counts the completion's tokens too: the whole input."""
    from transformers import AutoTokenizer

    from directpo.config import DPOConfig
    from directpo.labellers import load_labeller

    judge = tiny_judge(tiny_model_dirs, "llama", tmp_path / "judge")
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["llama"]), online=True,
        reward_model_name_or_path=str(judge), max_prompt_length=4,
        generate_max_new_tokens=40, report_to=["none"],
    )  # fmt: skip
    score = load_labeller(config, torch.device("cpu"))
    tokenizer = AutoTokenizer.from_pretrained(judge)
    completion = " and the acting was great, a truly delightful and moving story"
    ids = reward_input_ids(tokenizer, "The movie was", completion)
    assert 2 * 4 < len(ids) <= 40  # (longer than the old cut; a sample can be this long)
    (reward,) = score(["The movie was"], [completion], [{}])
    assert reward == pytest.approx(direct(judge, ids), abs=1e-5)


def test_a_reward_template_with_a_system_turn_is_not_said_to_lack_one() -> None:
    """The reward model's template check said 'that template has no system turn ...: drop the
    system messages' of any prompt its template refused and rendered without its system
    messages: Llama 2's, which takes a system message first and refuses a later one (roles
    must alternate), was told so too. Only a template refusing a system message first is."""
    from test_tokenization import GEMMA2_TEMPLATE, LLAMA2_TEMPLATE
    from tiny import build_tokenizer

    from directpo.errors import DirectpoError
    from directpo.labellers import check_templates

    system = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "hi"}
    later = [system, user, {"role": "assistant", "content": "hello"}, system, user]
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = LLAMA2_TEMPLATE
    check_templates(tokenizer, "rm", [[system, user]], "p.jsonl", None)  # (first: taken)
    with pytest.raises(DirectpoError) as info:
        check_templates(tokenizer, "rm", [later], "p.jsonl", None)
    assert "no system turn" not in str(info.value), str(info.value)
    assert "(Conversation roles must alternate user/assistant/user/assistant/...)" in str(
        info.value
    )
    tokenizer.chat_template = GEMMA2_TEMPLATE
    with pytest.raises(DirectpoError) as info:
        check_templates(tokenizer, "rm", [[system, user]], "p.jsonl", None)
    assert "(System role not supported); that template has no system turn" in str(info.value)
