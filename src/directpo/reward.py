"""The policy is secretly a reward model: r(x, y) = β·(log π(y|x) − log π_ref(y|x)).

`ImplicitReward` scores (prompt, response) pairs with a DPO-trained policy and its reference,
using the same layouts, rendering and boundary rules as training. For a run trained only with
reference-free losses (SimPO, ORPO), constructed without a reference, the reward is SimPO's
β·(log π(y|x) / |y|).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from directpo.command_options import RankOptions, RewardOptions, ScoreOptions
from directpo.config import check_model_location, load_config
from directpo.data import (
    Columns,
    PreferenceExample,
    RowError,
    Text,
    is_message_list,
    parse_pair,
    parse_prompt_and_responses,
    read_rows,
    row_images,
    with_images,
)
from directpo.errors import ConfigError, DataError
from directpo.jsonl import write_jsonl
from directpo.logprobs import policy_logprobs_fn, sequence_logprobs
from directpo.models import (
    check_vocabulary,
    learned_positions,
    load_causal_lm,
    load_processor,
    load_tokenizer,
    pad_token_id,
)
from directpo.readers import kind_of
from directpo.tokenization import PairTokenizer
from directpo.vision import image_values

ModelLike = torch.nn.Module | str


class ImplicitReward:
    """β·log π/π_ref of responses; ``policy`` and ``reference`` are models or folders."""

    def __init__(
        self,
        policy: ModelLike,
        reference: ModelLike | None,
        beta: float,
        tokenizer: Any = None,
        *,
        max_length: int | None = 1024,
        max_prompt_length: int | None = None,
        batch_size: int = 8,
        dtype: str = "float32",
    ):
        if not beta > 0:
            raise ConfigError(f"beta must be > 0 (got {beta!r})")
        self.policy = _load(policy, dtype)
        # a LoRA policy scored against its own base: the base is the policy with adapters off
        self.adapters_off = reference is not None and _is_base_of(self.policy, reference)
        self.reference = None
        if reference is not None and not self.adapters_off:
            self.reference = _load(reference, dtype)
        processor = None
        if tokenizer is None:
            path = policy if isinstance(policy, str) else self.policy.name_or_path
            processor = load_processor(path)  # a vision-language model scores image prompts
            tokenizer = load_tokenizer(path) if processor is None else processor.tokenizer
        elif getattr(tokenizer, "image_processor", None) is not None:  # a processor was given
            processor, tokenizer = tokenizer, tokenizer.tokenizer
        self.tokenizer = tokenizer
        models = [("model_name_or_path", _path(policy, self.policy), self.policy)]
        if self.reference is not None:
            models.append(
                ("ref_model_name_or_path", _path(reference, self.reference), self.reference)
            )
        check_vocabulary(tokenizer, getattr(tokenizer, "name_or_path", "") or "", models)
        # a learned position table (GPT-2, OPT) cannot be indexed past: longer rows are cut
        # to it as to max_length, not an IndexError
        for _, _, model in models:
            limit = learned_positions(model)
            if limit is not None and (max_length is None or max_length > limit):
                max_length = limit
        self.beta = beta
        self.batch_size = batch_size
        self.encoder = PairTokenizer(tokenizer, max_length, max_prompt_length, processor=processor)

    @classmethod
    def from_run(
        cls,
        run_dir: str,
        ref_model_name_or_path: str | None = None,
        beta: float | None = None,
        **kwargs: Any,
    ) -> ImplicitReward:
        """A trained run's folder: β and the reference default to those in its config.yaml."""
        saved = Path(run_dir) / "config.yaml"
        config = load_config(str(saved)) if saved.is_file() else None
        if config is None and (ref_model_name_or_path is None or beta is None):
            raise ConfigError(
                f"{run_dir} has no config.yaml from a directpo run: give "
                "--ref_model_name_or_path and --beta"
            )
        if ref_model_name_or_path is None and config is not None and config.loss_needs_reference:
            ref_model_name_or_path = config.reference_path
        check_model_location("ref_model_name_or_path", ref_model_name_or_path)
        if config is not None:
            kwargs.setdefault("max_length", config.max_length)
            kwargs.setdefault("max_prompt_length", config.max_prompt_length)
        return cls(
            run_dir, ref_model_name_or_path, beta if beta is not None else config.beta, **kwargs
        )

    def score(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text] | Text,
        images: Sequence[Any] | None = None,
    ) -> list[float] | float:
        """The implicit reward of each (prompt, response); of one, for a single prompt (a string
        or one conversation) and response. ``images``: each prompt's images (a list of paths
        or PIL images, or None) for a vision-language model."""
        if _is_single(prompts):
            if not _is_single(responses):
                raise ValueError("a single prompt needs a single response (or pass lists)")
            one = None if images is None else [images]
            return self.score([prompts], [responses], one)[0]  # type: ignore[list-item, index]
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        truncated: Counter[str] = Counter()
        images = images if images is not None else [None] * len(prompts)
        rows = []
        for prompt, response, given in zip(prompts, responses, images, strict=True):
            checked = image_values(given, None) if given else None
            rows.append(
                self.encoder.encode_scored(
                    with_images(prompt, checked), response, checked, truncated
                )
            )
        return self.score_ids(rows).tolist()

    def score_pairs(self, examples: Sequence[PreferenceExample]) -> list[tuple[float, float]]:
        """(chosen reward, rejected reward) of each preference pair."""
        prompts, images = [e.prompt for e in examples], [e.images for e in examples]
        chosen = self.score(prompts, [e.chosen for e in examples], images)
        rejected = self.score(prompts, [e.rejected for e in examples], images)
        return list(zip(chosen, rejected, strict=True))

    def score_ids(self, rows: list[tuple[Any, ...]], progress: bool = False) -> torch.Tensor:
        """Rewards of (prompt ids, response ids[, image inputs]) rows, float64 on CPU."""
        pad = pad_token_id(self.tokenizer)
        device = next(self.policy.parameters()).device
        policy = sequence_logprobs(
            policy_logprobs_fn(self.policy), rows, pad, device, self.batch_size, progress
        )
        if self.adapters_off:
            with self.policy.disable_adapter():
                reference = sequence_logprobs(
                    policy_logprobs_fn(self.policy), rows, pad, device, self.batch_size, progress
                )
            return self.beta * (policy - reference)
        if self.reference is None:
            lengths = torch.tensor([max(len(r), 1) for _, r in rows], dtype=torch.float64)
            return self.beta * policy / lengths
        reference = sequence_logprobs(
            policy_logprobs_fn(self.reference), rows, pad, device, self.batch_size, progress
        )
        return self.beta * (policy - reference)


def _is_base_of(policy: torch.nn.Module, reference: ModelLike) -> bool:
    """``reference`` is the folder the PEFT ``policy``'s adapters were trained on."""
    configs = getattr(policy, "peft_config", None)
    if not configs or not isinstance(reference, str):
        return False
    bases = {getattr(c, "base_model_name_or_path", None) for c in configs.values()}
    return any(b and os.path.abspath(b) == os.path.abspath(reference) for b in bases)


def _path(given: ModelLike | None, model: torch.nn.Module) -> str:
    return given if isinstance(given, str) else str(getattr(model, "name_or_path", "") or "")


def _is_single(value: Any) -> bool:
    """A string, or one conversation (a list of message dicts), rather than a list of them."""
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def _load(model: ModelLike, dtype: str) -> torch.nn.Module:
    if isinstance(model, str):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return load_causal_lm(model, dtype, trainable=False, device=device)
    return model


# ---------------------------------------------------------------------------------------------
# The score and rank commands: JSONL in, JSONL out


def _scorer(options: RewardOptions) -> ImplicitReward:
    return ImplicitReward.from_run(
        options.model_name_or_path,
        options.ref_model_name_or_path,
        options.beta,
        batch_size=options.batch_size,
        dtype=options.dtype,
    )


def score_file(options: ScoreOptions, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Add ``reward`` to single-response rows, or ``chosen_reward``, ``rejected_reward`` and
    ``margin`` to preference rows; report accuracy and mean margin over the pairs."""
    options.check_environment()
    rows = read_rows(options.input)
    base_dir = os.path.dirname(os.path.abspath(options.input))  # image paths are relative to it
    columns = Columns(options.prompt_column, options.chosen_column, options.rejected_column)
    is_pair = [options.chosen_column in row and options.rejected_column in row for _, row in rows]
    # validate every row before loading any model
    parsed = []
    for (where, row), pair in zip(rows, is_pair, strict=True):
        label = f"{options.input}: {where}"
        if pair:
            parsed.append(parse_pair(row, columns, label, base_dir))
        else:
            prompt, responses = parse_prompt_and_responses(
                row, options.prompt_column, options.response_column, label
            )
            if len(responses) != 1:
                raise DataError(
                    f"{label}: field '{options.response_column}' holds several "
                    "responses; use directpo rank"
                )
            images = row_images(row, label, base_dir)
            parsed.append((with_images(prompt, images), responses[0], images))
    scorer = _scorer(options)
    ids = []
    for (where, _), item in zip(rows, parsed, strict=True):
        label = f"{options.input}: {where}"
        if isinstance(item, PreferenceExample):
            ids.append(_encode(scorer, item.prompt, item.chosen, label, item.images))
            ids.append(_encode(scorer, item.prompt, item.rejected, label, item.images))
        else:
            ids.append(_encode(scorer, *item[:2], label, item[2]))
    rewards = iter(scorer.score_ids(ids, progress=True).tolist())
    out, margins = [], []
    for (_, row), pair in zip(rows, is_pair, strict=True):
        if pair:
            chosen, rejected = next(rewards), next(rewards)
            margins.append(chosen - rejected)
            out.append(
                {
                    **row,
                    "chosen_reward": chosen,
                    "rejected_reward": rejected,
                    "margin": chosen - rejected,
                }
            )
        else:
            out.append({**row, "reward": next(rewards)})
    write_jsonl(options.output, out)
    summary: dict[str, float] = {"rows": len(out), "pairs": len(margins)}
    if margins:
        summary["accuracy"] = sum(m > 0 for m in margins) / len(margins)
        summary["mean_margin"] = sum(margins) / len(margins)
        echo(
            f"{len(margins)} pairs: preference accuracy {summary['accuracy']:.4f}, "
            f"mean margin {summary['mean_margin']:.4f}"
        )
    echo(f"wrote {len(out)} rows to {options.output}")
    return summary


def rank_file(options: RankOptions, echo: Callable[[str], None] = print) -> int:
    """Add ``ranked``: the candidates sorted by implicit reward, best first, with their rewards."""
    options.check_environment()
    rows = read_rows(options.input)
    base_dir = os.path.dirname(os.path.abspath(options.input))
    parsed = [
        _candidates(
            row, options.prompt_column, options.responses_column, f"{options.input}: {where}"
        )
        for where, row in rows
    ]
    images = [row_images(row, f"{options.input}: {where}", base_dir) for where, row in rows]
    scorer = _scorer(options)
    ids = [
        _encode(scorer, with_images(prompt, image), response, f"{options.input}: {where}", image)
        for (where, _), (prompt, responses), image in zip(rows, parsed, images, strict=True)
        for response in responses
    ]
    rewards = iter(scorer.score_ids(ids, progress=True).tolist())
    out = []
    for (_, row), (_, responses) in zip(rows, parsed, strict=True):
        scored = [(next(rewards), i) for i in range(len(responses))]
        order = sorted(scored, key=lambda item: (-item[0], item[1]))  # stable among ties
        out.append({**row, "ranked": [{"response": responses[i], "reward": r} for r, i in order]})
    write_jsonl(options.output, out)
    echo(f"ranked {len(ids)} candidates of {len(out)} prompts into {options.output}")
    return len(out)


def _candidates(
    row: dict[str, Any], prompt_column: str, responses_column: str, where: str
) -> tuple[Text, list[Text]]:
    """A rank row's prompt and candidates: ``responses_column`` must hold a list of them (texts,
    or message lists); a single text or one conversation is not a list of candidates."""
    value = row.get(responses_column)
    if value is not None:
        one = is_message_list(value)
        if not isinstance(value, list) or one:
            got = "one conversation" if one else kind_of(value)
            raise DataError(
                f"{where}: field '{responses_column}' must be a list of candidate responses, "
                f"got {got}"
            )
    return parse_prompt_and_responses(row, prompt_column, responses_column, where)


def _encode(
    scorer: ImplicitReward,
    prompt: Text,
    response: Text,
    label: str,
    images: tuple[Any, ...] | None = None,
) -> tuple[Any, ...]:
    try:
        return scorer.encoder.encode_scored(prompt, response, images)
    except RowError as err:
        raise DataError(f"{label}: {err.message}") from None
