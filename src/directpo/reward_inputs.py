"""What a sequence-classification reward model is shown of a prompt and a completion: the ids
TRL's ``RewardTrainer`` (trl 1.16, ``trainer/reward_trainer.py``, ``_prepare_dataset``) trained
it on, since that is how most reward models our users load were trained.

* Text: ``prompt + completion``, with the tokenizer's EOS text appended unless the completion
  ends with it (``add_eos``), tokenized with the tokenizer's own special tokens
  (``_tokenize``: ``processing_class(text=...)``, so a Llama-style tokenizer's BOS is first).
* A conversation: ``apply_chat_template(prompt + [assistant turn], tokenize=True, tools=...,
  **chat_template_kwargs)`` with the row's tools and chat_template_kwargs; transformers
  tokenizes the rendered text with ``add_special_tokens=False`` (the template writes its own
  BOS and end of turn); no EOS is appended.

TRL's ``OnlineDPOTrainer`` (``experimental/online_dpo``, ``_calculate_rewards_from_functions``)
scores text as ``tokenizer(prompt + completion, add_special_tokens=False)``: no BOS and no EOS,
not what its ``RewardTrainer`` trained on; directpo follows the training side. docs/online.md
has the lines read. An OpenRLHF reward model (``trained_by_openrlhf``) is fed and read as
OpenRLHF trained it instead (``openrlhf_input_ids``, ``openrlhf_rewards``).
"""

from __future__ import annotations

from typing import Any

from directpo.chat_split import conversation
from directpo.messages import Text, text_contents


def reward_input_ids(
    tokenizer: Any,
    prompt: Text,
    completion: str,
    template_args: dict[str, Any] | None = None,
) -> list[int]:
    """The ids ``tokenizer``'s reward model reads for ``prompt`` + ``completion``, as TRL's
    RewardTrainer prepared its rows (module docstring); ``template_args`` are the row's tools
    and chat_template_kwargs, for a conversation's template."""
    if isinstance(prompt, list):  # a conversation: the completion as the assistant turn
        text = render_reward_input(tokenizer, prompt, completion, template_args)
        # the template writes its own special tokens (a second BOS would change the score)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token
    # RewardTrainer's add_eos: every text it trained on ended with EOS, where a reward model
    # whose pad is not its EOS reads its score; without it the score was read at the
    # completion's last word, a position the model never learnt to score
    if eos and not completion.endswith(eos):
        completion += eos
    return tokenizer(prompt + completion)["input_ids"]


def render_reward_input(
    tokenizer: Any,
    prompt: list[dict[str, Any]],
    completion: str,
    template_args: dict[str, Any] | None = None,
) -> str:
    """A conversation and its completion as the reward model's chat template writes them."""
    messages = with_completion(prompt, completion)
    return tokenizer.apply_chat_template(messages, tokenize=False, **(template_args or {}))


def with_completion(prompt: list[dict[str, Any]], completion: str) -> list[dict[str, Any]]:
    """The conversation a reward model judges: the prompt and the completion as its assistant
    turn; a prefilled prompt's last (assistant) message and the completion are one turn, as the
    policy sampled it and as TRL's online trainers hand it to reward models (its prefill was
    a closed turn, then a second assistant turn of the completion alone: an input no reward
    model was trained on)."""
    # (string contents: a text classifier's template is written for them, as a policy's is)
    return conversation(text_contents(prompt), [{"role": "assistant", "content": completion}])


def kept_end(ids: list[int], limit: int | None, bos_token_id: int | None) -> list[int]:
    """``ids`` cut to ``limit`` from the start, never the completion the reward judges; a
    leading BOS stays first (every input the model was trained on began with it, and a
    Llama-like model without it reads the text otherwise)."""
    if limit is None or len(ids) <= limit:
        return ids
    if bos_token_id is not None and ids[0] == bos_token_id and limit > 1:
        return [ids[0], *ids[len(ids) - limit + 1 :]]
    return ids[-limit:]


def trained_by_openrlhf(config: Any) -> bool:
    """OpenRLHF writes ``normalize_reward`` into every reward model's config.json
    (``get_llm_for_sequence_regression``); no other trainer does."""
    return isinstance(getattr(config, "normalize_reward", None), bool)


def openrlhf_input_ids(tokenizer: Any, prompt: Text, completion: str) -> list[int]:
    """The ids OpenRLHF's ``RewardDataset`` trained a reward model on: prompt + completion
    (a conversation through the chat template, no tools), trailing newlines stripped, ``" " +
    eos_token`` appended unless it ends with it, tokenized with ``add_special_tokens=False``
    (the template writes its BOS; a text prompt has none)."""
    if isinstance(prompt, list):
        messages = with_completion(prompt, completion)
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        text = prompt + completion
    text = text.rstrip("\n")
    eos = tokenizer.eos_token
    if eos and not text.endswith(eos):
        text += " " + eos
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def openrlhf_rewards(model: Any, input_ids: Any, attention_mask: Any) -> Any:
    """OpenRLHF's ``RewardModel.forward`` of right-padded inputs: the value head at the last
    token of the attention mask (its EOS, even where the EOS is also the pad, which
    transformers' head would skip), positions counted over the mask, and ``(reward - mean) /
    std`` with the config's mean and std when it was trained with ``normalize_reward``."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)
    hidden = model.base_model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions
    ).last_hidden_state
    values = model.score(hidden).squeeze(-1)
    last = attention_mask.size(1) - 1 - attention_mask.long().fliplr().argmax(dim=1, keepdim=True)
    rewards = values.gather(dim=1, index=last).squeeze(1)
    config = model.config
    if config.normalize_reward:
        rewards = (rewards - getattr(config, "mean", 0.0)) / getattr(config, "std", 1.0)
    return rewards
