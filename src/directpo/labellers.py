"""Online DPO's labellers (``load_labeller``), each ``(prompts, completions, columns) ->
rewards``, and their check before training (``check_labeller``):

* ``reward_fn: module:function`` (TRL's convention: called by keyword with prompts,
  completions, completion_ids and the prompt rows' other columns; rewardfn.py);
* ``reward_model_name_or_path``: an ``AutoModelForSequenceClassification`` folder; the first
  logit of prompt + completion, encoded as TRL's RewardTrainer trained it (reward_inputs.py:
  text with BOS and EOS, conversations through its tokenizer's chat template);
* ``implicit_reward_model``: a directpo run (or DPO model) scored as β·log π/π_ref.

Several of them are summed with ``reward_weights``, as TRL sums a list of ``reward_funcs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from directpo.callers import (
    Caller,
    Entry,
    Spelling,
    called_by,
    caller,
    speaking_as,
    spell_setting,
)
from directpo.chat_render import renders_without_system
from directpo.config import DPOConfig
from directpo.errors import DirectpoError, ModelLoadError, first_line
from directpo.hub import cache_only_where_unreachable
from directpo.messages import Text
from directpo.model_fit import learned_positions
from directpo.preference_pairs import ImagePrompt, prompt_of
from directpo.refusals import RefusedRows
from directpo.reward_inputs import (
    kept_end,
    openrlhf_input_ids,
    openrlhf_rewards,
    render_reward_input,
    reward_input_ids,
    trained_by_openrlhf,
    with_completion,
)
from directpo.rewardfn import PROBE_COMPLETION, probe_rows

# a saved tokenizer writes one of these at least (save_pretrained: both)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# a prompt is a row's text or messages, or an ImagePrompt with the row's own chat template
# arguments (a pairs file's tools, chat_template_kwargs): each labeller reads what it can use
Labeller = Callable[[list[Text | ImagePrompt], list[str], list[dict[str, Any]]], list[float]]


def load_labeller(
    config: DPOConfig,
    device: torch.device,
    prompts: PromptsToCheck | None = None,
    echo: Callable[[str], None] | None = None,
) -> Labeller:
    """The online labeller the config names: one of three, or the ``reward_weights``-weighted
    sum of those set (in the order reward_fn, reward_model_name_or_path,
    implicit_reward_model), as TRL sums its ``reward_funcs``. ``prompts``: the rounds' prompts,
    which a reward model's chat template renders each before its weights load. ``echo``:
    where a labeller's notes go (its template's missing generation prompt)."""
    parts: list[Labeller] = []
    if config.reward_fn:
        from directpo.rewardfn import load_reward_fn

        parts.append(load_reward_fn(config.reward_fn))
    if config.reward_model_name_or_path:
        path = config.reward_model_name_or_path
        # the run's trust (model_init_kwargs' trust_remote_code, TRL's spelling, is already
        # this option: trl_compat._trust_from_init_kwargs)
        trusted = config.trust_remote_code
        # (each completion sampled, online or by eval_generate, has at most this many tokens)
        tokens = config.generate_max_new_tokens
        model = _reward_model(path, device, config.prompt_limit, trusted, tokens, prompts)
        parts.append(_reported(f"reward_model_name_or_path '{path}'", model))
    if config.implicit_reward_model:
        parts.append(_implicit(config, prompts, echo))
    assert parts
    if len(parts) == 1 and config.reward_weights is None:
        return parts[0]
    weights = config.reward_weights or [1.0] * len(parts)

    def weighted(prompts: list[Any], completions: list[str], rows: list[dict]) -> list[float]:
        # TRL's nansum: a part that does not score a completion (None, NaN) adds nothing; no
        # part scoring it leaves it unscored (NaN), out of the pairs
        terms = [part(prompts, completions, rows) for part in parts]
        totals = []
        for values in zip(*terms, strict=True):
            given = [
                w * float(v) for w, v in zip(weights, values, strict=True) if not math.isnan(v)
            ]
            totals.append(math.fsum(given) if given else math.nan)
        return totals

    return weighted


def _implicit(
    config: DPOConfig,
    prompts: PromptsToCheck | None = None,
    echo: Callable[[str], None] | None = None,
) -> Labeller:
    from directpo.generate import prompt_problems
    from directpo.reward import ImplicitReward
    from directpo.tokenization import TOKENIZE_BATCH

    path = config.implicit_reward_model
    # train's option: its refusals say what a recipe writes (train's own caller kept)
    with called_by(Caller(Spelling.RECIPE, Entry.TRAIN)):
        scorer = ImplicitReward.from_run(path, trust_remote_code=config.trust_remote_code)
    if prompts is not None:  # each rendered with its folder's template, as it will score them
        # (not the policy's: 'score: item 1: the chat template refused the row' at the probe,
        # told to change the chat_template option, which the implicit reward does not read)
        prompt_list, label, places = prompts
        refused = RefusedRows(label)
        # (said as its folder's template: the run's chat_template option is not its)
        with speaking_as(dataclasses.replace(caller(), entry=Entry.FOLDER)):
            for start in range(0, len(prompt_list), TOKENIZE_BATCH):
                chunk = prompt_list[start : start + TOKENIZE_BATCH]
                for number, problem in enumerate(prompt_problems(scorer.encoder, chunk), start):
                    if problem is not None:
                        where = places[number] if places else f"prompt {number + 1}"
                        refused.add(where, f"implicit_reward_model '{path}': {problem}")
        refused.raise_if_any()
        if echo is not None:
            _say_reply_header(scorer, path, prompts[0], echo)

    def implicit(
        prompts: list[Text | ImagePrompt], completions: list[str], _: list[dict]
    ) -> list[float]:
        return list(scorer.score(prompts, completions))

    return _reported(f"implicit_reward_model '{config.implicit_reward_model}'", implicit)


def _say_reply_header(
    scorer: Any, path: str, prompt_list: list[Text | ImagePrompt], echo: Callable[[str], None]
) -> None:
    """The note score, rank, train's policy, generate and ImplicitReward give of a chat template
    without a generation prompt, for implicit_reward_model's folder: its template labelled each
    sample with the assistant's header as its first tokens without a word (ImplicitReward is
    not told it under train's caller: reward.py's _say_reply_header)."""
    from directpo.chat_templates import reply_header, scored_header_note

    for prompt in prompt_list:  # the first conversation without images, as train's policy
        args = None
        if isinstance(prompt, ImagePrompt):
            if prompt.images:
                continue
            prompt, args = prompt.prompt, prompt.template_args
        if not isinstance(prompt, list):
            continue
        reply = [{"role": "assistant", "content": PROBE_COMPLETION}]
        kwargs = scorer.encoder.renderer.template_kwargs
        if header := reply_header(scorer.tokenizer, kwargs, prompt, reply, args):
            # (the run's chat_template option is its policy's: this folder's is not an option)
            fix = f"in {path}'s chat template (its chat_template.jinja)"
            echo(scored_header_note(header, fix, f"implicit_reward_model '{path}': its"))
        return


def _reported(name: str, labeller: Labeller) -> Labeller:
    """``labeller`` whose failures (a model and tokenizer that do not match, ...) are one line
    naming it, as a reward_fn's are, not a traceback."""

    def call(prompts: list[Any], completions: list[str], rows: list[dict]) -> list[float]:
        try:
            return labeller(prompts, completions, rows)
        except DirectpoError:
            raise
        except Exception as exc:  # transformers / torch raise IndexError, RuntimeError, ...
            raise DirectpoError(
                f"{name}: scoring failed ({type(exc).__name__}: {first_line(exc)})"
            ) from None

    return call


def _reward_model(
    path: str,
    device: torch.device,
    prompt_limit: int | None,
    trust_remote_code: bool = False,
    completion_tokens: int = 0,
    prompts: PromptsToCheck | None = None,
) -> Labeller:
    """A sequence classifier's labeller; ``trust_remote_code`` (the run's) lets a reward model
    of its own code load (ArmoRM-like: it was refused, 'pass trust_remote_code=True', with the
    option set). Its inputs keep twice the policy's tokens of a prompt (``prompt_limit``) and
    a completion (``completion_tokens``): another tokenizer and template may take more.
    ``prompts``: rendered with its chat template before the model loads (``check_templates``)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from directpo.reward_models import runs_in_float32

    cache_only_where_unreachable(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        if os.path.isdir(path) and not any(
            os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES
        ):  # it said "Couldn't instantiate the backend tokenizer from one of: ", and this
            # line "cannot load as a sequence classifier", of a folder that is one
            raise ModelLoadError(
                f"reward_model_name_or_path '{path}': no tokenizer in it (neither "
                f"{' nor '.join(TOKENIZER_FILES)}); save the reward model's tokenizer there "
                "(tokenizer.save_pretrained(DIR)): it reads the prompts and completions"
            ) from None
        raise _unloadable(path, exc, trust_remote_code) from None
    if prompts is not None and tokenizer.chat_template:
        check_templates(tokenizer, path, *prompts)
    mapping = _openrlhf_head(path, trust_remote_code)
    remote = {"trust_remote_code": trust_remote_code}
    try:  # TRL's load (num_labels=1): a one-output head whose config names no labels (as
        # OpenRLHF saves its reward models: the config's default 2) was refused, 'cannot load'
        with _load_report_quiet(replay=False):
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, output_loading_info=True, key_mapping=mapping, **remote
            )
    except Exception:  # a classifier of several labels (refused below, by its labels), or a
        # folder that does not load: as stored, whose error (and report) is said
        try:
            with _load_report_quiet():
                model, loading = AutoModelForSequenceClassification.from_pretrained(
                    path, output_loading_info=True, **remote
                )
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
            raise _unloadable(path, exc, trust_remote_code) from None
    mismatched = [k[0] if isinstance(k, tuple) else k for k in loading["mismatched_keys"]]
    untrained = sorted(loading["missing_keys"]) + sorted(mismatched)
    if untrained:  # transformers initialises them at random: every reward would be noise
        raise ModelLoadError(
            f"reward_model_name_or_path '{path}': not a trained reward model: "
            f"{', '.join(untrained[:3])}{' ...' if len(untrained) > 3 else ''} not in its "
            "weights (a causal LM or base model gets a random score head); give a sequence "
            "classifier trained as a reward model"
        )
    labels = model.config.num_labels
    if labels != 1:  # its first logit was every reward: a sentiment classifier's NEGATIVE
        names = ", ".join(str(model.config.id2label.get(i, i)) for i in range(labels))
        raise ModelLoadError(
            f"reward_model_name_or_path '{path}': a classifier of {labels} labels ({names}), "
            "not a reward model of one output (TRL loads it with num_labels=1, which fails); "
            "to reward one label, write a reward_fn that returns that label's logit"
        )
    model = model.to(device).eval().requires_grad_(False)
    # a reward model stored in bf16 or fp16 (transformers loads its saved dtype) scores in
    # float32, as implicit_reward_model does: bf16 logits hold 3 significant digits, so close
    # completions tied (no pair) or swapped order (reward 3.02 read as 3.0); fp16 overflows
    halves = (
        [
            t
            for t in (*model.parameters(), *model.buffers())
            if t.dtype in (torch.bfloat16, torch.float16)
        ]
        if runs_in_float32(model)
        else []
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = _pad_token(path, tokenizer, model.config.get_text_config())
    # the head reads the score at the last token that is not this pad id (transformers:
    # input_ids != pad_token_id, rightmost), from the text config of a composite (vision)
    # model's, as TRL sets it; a pad that is the EOS leaves the appended EOS unread, as in
    # the RewardTrainer run that trained it
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    openrlhf = trained_by_openrlhf(model.config)
    # the completion's tokens count too: twice the prompt limit alone (max_prompt_length: 256,
    # 1024 new tokens) scored a long completion's last 512 tokens, without the prompt
    limit = None if prompt_limit is None else 2 * (prompt_limit + completion_tokens)
    positions = learned_positions(model)
    if positions is not None:  # GPT-2-like: a longer input has no position to index
        limit = positions if limit is None else min(limit, positions)

    def encode(prompt: Text | ImagePrompt, completion: str) -> list[int]:
        # rendered with the reward model's own template, and the row's tools and
        # chat_template_kwargs, as TRL's RewardTrainer rendered its rows (reward_inputs.py)
        args = prompt.template_args if isinstance(prompt, ImagePrompt) else None
        prompt = prompt_of(prompt)
        if isinstance(prompt, list) and not tokenizer.chat_template:
            # (transformers' error, cut at its URL, said less)
            raise DirectpoError(
                f"reward_model_name_or_path '{path}': its tokenizer has no chat template "
                "and the prompts are conversations: add the template it was trained with "
                "(chat_template.jinja in its folder), or give text prompts"
            )
        if openrlhf:  # as OpenRLHF's RewardDataset trained it (reward_inputs.py)
            ids = openrlhf_input_ids(tokenizer, prompt, completion)
        else:
            ids = reward_input_ids(tokenizer, prompt, completion, args)
        # too long: cut the prompt's start, never the completion the reward judges
        return kept_end(ids, limit, tokenizer.bos_token_id)

    @torch.no_grad()
    def score(
        prompts: list[Text | ImagePrompt], completions: list[str], _: list[dict]
    ) -> list[float]:
        encoded = [encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        rewards: list[float] = []
        with _upcast(halves):  # (once per call, not per batch of 16)
            for start in range(0, len(encoded), 16):
                chunk = [{"input_ids": ids} for ids in encoded[start : start + 16]]
                # on the right, as TRL pads its reward inputs: a tokenizer saved to pad on the
                # left shifted a short input's learned positions (GPT-2's) by its batch's
                # longest, so its reward depended on the completions scored beside it
                batch = tokenizer.pad(chunk, return_tensors="pt", padding_side="right")
                batch = batch.to(device)
                if openrlhf:  # its value at the EOS, normalized as it was trained
                    values = openrlhf_rewards(model, batch["input_ids"], batch["attention_mask"])
                else:
                    values = model(**batch).logits[:, 0]
                rewards += values.float().tolist()
        return rewards

    return score


# the rounds' prompts, what names them ("prompt_file p.jsonl") and each one's row ("line 3"),
# None where a prompt is named by its number
PromptsToCheck = tuple[list[Text | ImagePrompt], str, list[str] | None]


def check_templates(
    tokenizer: Any, path: str, prompts: list[Text | ImagePrompt], label: str, places: Any
) -> None:
    """Render each conversation with the reward model's chat template (and a completion), as
    the rounds will, so that a prompt it refuses is said before training in one line naming
    its row: Skywork-Reward-Gemma-2's template refuses a system message, which stopped the run
    at the first prompt to hold one, after rounds of sampling, as 'scoring failed
    (TemplateError: System role not supported)', naming no row."""
    refused = RefusedRows(label)
    for number, prompt in enumerate(prompts, start=1):
        args = prompt.template_args if isinstance(prompt, ImagePrompt) else None
        messages = prompt_of(prompt)
        if not isinstance(messages, list):
            continue
        try:
            render_reward_input(tokenizer, messages, PROBE_COMPLETION, args)
        except Exception as exc:  # raise_exception(...), the template's code failing
            where = places[number - 1] if places else f"prompt {number}"
            hint = ""  # (a template taking a system message first has one: said as it says)
            judged = with_completion(messages, PROBE_COMPLETION)
            if renders_without_system(tokenizer, judged, args or {}):
                hint = (
                    "; that template has no system turn (it renders the prompt without its "
                    "system message): drop the system messages, or put their text in the "
                    "first user message"
                )
            refused.add(
                where,
                f"the chat template of reward_model_name_or_path '{path}' refused the prompt "
                f"({first_line(exc)}){hint}",
            )
    refused.raise_if_any()


def _pad_token(path: str, tokenizer: Any, config: Any) -> str:
    """What a reward model's batches are padded with where its tokenizer names no pad: the EOS,
    as TRL's RewardTrainer pads then; without one, the pad its config names (the token its
    head was set to skip). Neither: refused here, not 'scoring failed (... Asking to pad but
    the tokenizer does not have a padding token ...)' at the first batch, which told of a
    tokenizer.pad_token no option sets."""
    if tokenizer.eos_token is not None:
        return tokenizer.eos_token
    configured = getattr(config, "pad_token_id", None)
    if isinstance(configured, int) and 0 <= configured < len(tokenizer):
        return tokenizer.convert_ids_to_tokens(configured)
    raise ModelLoadError(
        f"reward_model_name_or_path '{path}': its tokenizer has neither a pad nor an EOS "
        "token, and its config.json no pad_token_id: its inputs cannot be batched; save the "
        "tokenizer with the pad token it was trained with (tokenizer.pad_token = ...; "
        "tokenizer.save_pretrained(DIR))"
    )


def _openrlhf_head(path: str, trust_remote_code: bool) -> dict[str, str] | None:
    """An OpenRLHF reward model's head read as ``score``: OpenRLHF names it by its
    value_head_prefix (written into its config.json; ``value_head``, older versions' default,
    where it is not), which was refused as a causal LM's missing head, 'not a trained reward
    model: score.weight not in its weights'."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception:  # (said by the load that follows)
        return None
    if not trained_by_openrlhf(config):
        return None
    prefix = getattr(config, "value_head_prefix", None)
    prefix = prefix if isinstance(prefix, str) and prefix else "value_head"
    return None if prefix == "score" else {rf"^{re.escape(prefix)}\.": "score."}


def _unloadable(path: str, exc: Exception, trust_remote_code: bool = False) -> ModelLoadError:
    hint = ""
    if "custom code" in str(exc) and not trust_remote_code:
        hint = f"; allow its code: {spell_setting(('trust_remote_code', True))}"
    return ModelLoadError(
        f"reward_model_name_or_path '{path}': cannot load as a sequence classifier "
        f"({first_line(exc)}){hint}"
    )


@contextlib.contextmanager
def _load_report_quiet(replay: bool = True) -> Iterator[None]:
    """transformers' load report (a table of MISSING and UNEXPECTED weights, "Consider
    training on your downstream task") printed before the one line that refuses a causal LM
    given as the reward model: left out while it loads (the line names the missing weights).
    A filter, not the logger's level: transformers 5 checks a model's tensor-parallel plan,
    and warns of every layer it leaves unsharded, when that logger's level is WARNING or up.
    A load that fails says the report after all (unless not ``replay``, a load tried first):
    its error reads "look at the above report"."""
    logger = logging.getLogger("transformers.modeling_utils")
    held: list[logging.LogRecord] = []

    def not_the_report(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            held.append(record)
            return False
        return True

    logger.addFilter(not_the_report)
    try:
        yield
    except Exception:
        logger.removeFilter(not_the_report)
        for record in held if replay else []:
            logger.handle(record)
        raise
    finally:
        logger.removeFilter(not_the_report)


@contextlib.contextmanager
def _upcast(weights: list[torch.Tensor]) -> Iterator[None]:
    """``weights`` (bf16 or fp16) in float32 inside, in their own dtype again after (exact:
    both are float32 values): 2 more bytes per weight only while the reward model scores."""
    dtypes = [t.dtype for t in weights]
    for tensor in weights:
        tensor.data = tensor.data.float()
    try:
        yield
    finally:
        for tensor, dtype in zip(weights, dtypes, strict=True):
            tensor.data = tensor.data.to(dtype)


def check_labeller(
    labeller: Labeller,
    prompts: list[Text | ImagePrompt],
    columns: list[dict],
    tokenizer: Any,
    max_steps: int = 0,
) -> None:
    """Call the labeller once before training, so that a broken one fails in one line now."""
    sample = prompts[:2]
    rows = probe_rows(columns[:2], tokenizer, max_steps)
    rewards = labeller(sample, [PROBE_COMPLETION] * len(sample), rows)
    if len(rewards) != len(sample):
        raise DirectpoError(
            f"the online labeller returned {len(rewards)} rewards for {len(sample)} completions"
        )
