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
has the lines read.
"""

from __future__ import annotations

from typing import Any

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
        messages = [*prompt, {"role": "assistant", "content": completion}]
        # a text classifier's template is written for string contents, as a policy's is
        text = tokenizer.apply_chat_template(
            text_contents(messages), tokenize=False, **(template_args or {})
        )
        # the template writes its own special tokens (a second BOS would change the score)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token
    # RewardTrainer's add_eos: every text it trained on ended with EOS, where a reward model
    # whose pad is not its EOS reads its score; without it the score was read at the
    # completion's last word, a position the model never learnt to score
    if eos and not completion.endswith(eos):
        completion += eos
    return tokenizer(prompt + completion)["input_ids"]


def kept_end(ids: list[int], limit: int | None, bos_token_id: int | None) -> list[int]:
    """``ids`` cut to ``limit`` from the start, never the completion the reward judges; a
    leading BOS stays first (every input the model was trained on began with it, and a
    Llama-like model without it reads the text otherwise)."""
    if limit is None or len(ids) <= limit:
        return ids
    if bos_token_id is not None and ids[0] == bos_token_id and limit > 1:
        return [ids[0], *ids[len(ids) - limit + 1 :]]
    return ids[-limit:]
