"""The policy is secretly a reward model: r(x, y) = β·(log π(y|x) − log π_ref(y|x)).

`ImplicitReward` scores (prompt, response) pairs with a DPO-trained policy and its reference,
using the same layouts, rendering and boundary rules as training. For a run trained only with
reference-free losses (SimPO, ORPO), constructed without a reference, the reward is SimPO's
β·(log π(y|x) / |y|).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from directpo.callers import Caller, Entry, Spelling, caller, entry_point, spell_option
from directpo.chat_split import FIXES
from directpo.chat_templates import reply_header, scored_header_note
from directpo.checkpoint import REFERENCE_FILE
from directpo.errors import ConfigError, ConfigErrors
from directpo.hub import offline_flags_kept
from directpo.logprobs import evaluating, policy_logprobs_fn, sequence_logprobs
from directpo.messages import Text
from directpo.model_files import model_location
from directpo.model_fit import check_vocabulary, learned_positions
from directpo.model_locations import check_model_location
from directpo.model_preparation import LoadOptions
from directpo.outputs import REFERENCE_FOLDER
from directpo.precision import DTYPES, float32_compute
from directpo.preference_pairs import ImagePrompt, PreferenceExample, counted
from directpo.process_state import generators_kept
from directpo.prompts import parse_scored, with_images
from directpo.reference import AdapterReference, ReferenceProvider
from directpo.reward_models import (
    ModelLike,
    device_of,
    given_path,
    is_base_of,
    load_scoring_model,
    model_or_path,
    reference_model,
    runs_in_float32,
    steps_done,
)
from directpo.reward_rows import (
    SCORE_MAX_LENGTH,
    encode_row,
    folder_tokenizer,
    output_location,
    scored_tokens,
    truncation_note,
)
from directpo.run_records import run_config, run_values_missing
from directpo.sync import checkpoint_reference
from directpo.tokenization import PairTokenizer
from directpo.tokenizer_loading import pad_token_id
from directpo.vision import image_values

# ImplicitReward's methods called from Python (not by score, rank or train: theirs are kept)
PYTHON_CALLER = Caller(Spelling.PYTHON, Entry.IMPLICIT_REWARD)


class ImplicitReward:
    """β·log π/π_ref of responses (``score``), from a policy and its reference.

    ``policy``: a model or a model folder (a LoRA run's adapter folder too). ``reference``: a
    model, a folder, ``train(...).reference``, or None for a run trained without one (SimPO,
    ORPO): the reward is then β·log π(y|x)/|y|. After ``merge_lora``,
    ``precompute_ref_log_probs`` or under FSDP, ``train(...).reference`` is the run's reference
    loaded again (a TR-DPO run's, which moved: None; score it with
    ``ImplicitReward.from_run(result.output_dir)``). A PEFT policy whose reference is its own
    base is scored with its adapters off. ``tokenizer`` (or processor) defaults to the policy's.
    Prompts and responses are cut to ``max_length`` / ``max_prompt_length`` as in training (a
    warning says how many); ``batch_size`` sequences per forward pass; scoring computes in
    ``dtype``: a model held in bf16 in float32 while it scores (put back after, as
    ``directpo score`` of its folder reads it), folders load in it on CUDA when there is one,
    with the from_pretrained keyword arguments ``policy_kwargs`` (an adapter folder's: its
    base's) and ``reference_kwargs`` (a revision, a subfolder, ...);
    ``trust_remote_code`` runs the code a folder ships with. Models run in eval mode and keep
    their own mode. ``chat_template_kwargs``: conversations are rendered with them, as in
    training; ``assistant_only_loss``: a response's messages the model does not write (a tool's
    result, a user turn) are left out of its log-probs, as in training.
    ``ImplicitReward.from_run(run_dir)`` reads β, the reference, where the models were loaded
    from, the length limits, the chat template arguments and ``assistant_only_loss`` from a
    run's config.yaml.
    """

    # a hub id on a machine without the Hub sets the libraries' offline mode while loading
    # (hub.py): given back after, as train() does, else a notebook stayed offline for good
    @offline_flags_kept()
    @entry_point(PYTHON_CALLER)  # (built in Python: its refusals in a keyword's words)
    def __init__(
        self,
        policy: ModelLike | os.PathLike,
        reference: ModelLike | os.PathLike | ReferenceProvider | None,
        beta: float,
        tokenizer: Any = None,
        *,
        max_length: int | None = SCORE_MAX_LENGTH,
        max_prompt_length: int | None = None,
        batch_size: int = 8,
        dtype: str | torch.dtype = "float32",
        chat_template_kwargs: dict[str, Any] | None = None,
        assistant_only_loss: bool = False,
        policy_kwargs: dict[str, Any] | None = None,
        reference_kwargs: dict[str, Any] | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        beta, batch_size = _checked_numbers(beta, batch_size, dtype)
        self.dtype = DTYPES.get(dtype, dtype)  # type: ignore[call-overload]
        policy, reference = model_or_path(policy), model_or_path(reference)
        policy_kwargs, reference_kwargs = dict(policy_kwargs or {}), dict(reference_kwargs or {})
        with generators_kept():  # (an adapter's fresh weights are drawn as it loads)
            reference = self._load_models(
                policy, reference, dtype, policy_kwargs, reference_kwargs, trust_remote_code
            )
        processor = None
        if tokenizer is None and isinstance(policy, str):
            tokenizer, processor = folder_tokenizer(policy, policy_kwargs, trust_remote_code)
        elif tokenizer is None:
            tokenizer, processor = folder_tokenizer(
                self.policy.name_or_path, {}, trust_remote_code, own_folder=True
            )
        elif getattr(tokenizer, "image_processor", None) is not None:  # a processor was given
            processor, tokenizer = tokenizer, tokenizer.tokenizer
        self.tokenizer = tokenizer
        self._header_checked = False  # the reply header note is said once, at the first chat
        max_length = self._checked_vocabulary_and_length(policy, reference, max_length)
        self.beta = beta
        self.batch_size = batch_size
        from directpo.generate import stop_token_ids

        # responses end where the policy stops generating, as training's completions do
        self.encoder = PairTokenizer(
            tokenizer, max_length, max_prompt_length,
            chat_template_kwargs=chat_template_kwargs, processor=processor,
            stop_ids=stop_token_ids(self.policy, tokenizer), assistant_only=assistant_only_loss,
        )  # fmt: skip

    def _load_models(
        self,
        policy: Any,
        reference: Any,
        dtype: str | torch.dtype,
        policy_kwargs: dict[str, Any],
        reference_kwargs: dict[str, Any],
        trust_remote_code: bool,
    ) -> Any:
        """The policy and the reference loaded (``self.policy``, ``self.reference``, or the
        policy's own adapters: ``reference_adapter``, ``adapters_off``); the reference as
        given or resolved, for the messages that name it."""
        for key, given, kwargs in (
            ("policy", policy, policy_kwargs),
            ("reference", reference, reference_kwargs),
        ):
            if isinstance(given, str):
                check_model_location(key, given, kwargs.get("subfolder"))
        trusted = LoadOptions(trust_remote_code=trust_remote_code)
        self.policy = load_scoring_model(
            policy, dtype, None, replace(trusted, init_kwargs=policy_kwargs)
        )
        # train()'s reference of a continued adapter: its start, the "ref" adapter on the policy
        own = isinstance(reference, AdapterReference) and reference.model is self.policy
        self.reference_adapter = reference if own else None
        reference = None if own else reference_model(reference, self.policy)
        if reference is not None and reference is self.policy:
            # every reward 0, without a word (a PEFT policy too: its adapters stayed on); TRL's
            # DPOTrainer refuses ref_model=model likewise
            raise ConfigError(
                "reference is the policy object itself, so every reward would be 0: give the "
                "starting model (its folder, or a copy), or for a PEFT policy its base, "
                "policy.get_base_model() (scored with the adapters off)"
            )
        # a LoRA policy scored against its own base: the base is the policy with adapters off
        self.adapters_off = reference is not None and is_base_of(self.policy, reference)
        self.reference = None
        if reference is not None and not self.adapters_off:  # beside the policy, wherever it is
            self.reference = load_scoring_model(
                reference, dtype, device_of(self.policy),
                replace(trusted, init_kwargs=reference_kwargs),
            )  # fmt: skip
        return reference

    def _checked_vocabulary_and_length(
        self, policy: Any, reference: Any, max_length: int | None
    ) -> int | None:
        """The tokenizer's vocabulary checked against the models' (a warning), and
        ``max_length`` within a learned position table."""
        tokenizer = self.tokenizer
        models = [("model_name_or_path", given_path(policy, self.policy), self.policy)]
        if self.reference is not None:
            models.append(
                ("ref_model_name_or_path", given_path(reference, self.reference), self.reference)
            )
        for note in check_vocabulary(
            tokenizer, getattr(tokenizer, "name_or_path", "") or "", models
        ):
            warnings.warn(note, stacklevel=_outside_level())  # (the user's line)
        # a learned position table (GPT-2, OPT) cannot be indexed past: longer rows are cut
        # to it as to max_length, not an IndexError
        for _, _, model in models:
            limit = learned_positions(model)
            if limit is not None and (max_length is None or max_length > limit):
                max_length = limit
        return max_length

    @classmethod
    @offline_flags_kept()
    @entry_point(PYTHON_CALLER)
    def from_run(
        cls,
        run_dir: str,
        ref_model_name_or_path: str | None = None,
        beta: float | None = None,
        *,
        echo: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> ImplicitReward:
        """A trained run's folder (or one of its checkpoints): β and the reference default to
        those in the run's config.yaml, and models load where training found them (its
        model_init_kwargs' revision, subfolder, ...: a LoRA run's base, the reference).
        ``echo`` receives notes (default: ``warnings.warn``). Refusals name this method's
        keywords; called by score or rank, their flags (--ref_model_name_or_path); by train
        (its implicit_reward_model), what to write where (callers.caller())."""
        missing = run_values_missing(run_dir, ref_model_name_or_path, beta)
        if missing is not None:
            raise ConfigError(missing)
        try:
            config = run_config(run_dir)
        except ConfigError as err:  # another tool's config.yaml: a model folder like any other
            (echo or _warn)(f"config.yaml not used (not a directpo run's): {err}")
            config = None
        kwargs.setdefault("policy_kwargs", output_location(run_dir, config))
        recorded = ref_model_name_or_path is None  # the run's, as config.yaml names it
        in_checkpoint = False  # a TR-DPO checkpoint's moved reference: its reference.safetensors
        if recorded and config is not None and config.loss_needs_reference:
            start = ref_model_name_or_path = config.reference_path
            # TR-DPO's, as the policy last trained against it (TRL: the reward is relative to
            # the reference at hand): the final folder's reference/, a checkpoint's file
            moved = Path(run_dir) / REFERENCE_FOLDER
            held = any((moved / name).is_file() for name in ("config.json", "adapter_config.json"))
            if config.sync_ref_model and held:
                ref_model_name_or_path = str(moved)
            else:
                kwargs.setdefault("reference_kwargs", model_location(config.reference_init_kwargs))
                moved = Path(run_dir) / REFERENCE_FILE
                in_checkpoint = config.sync_ref_model and moved.is_file()
            steps = steps_done(run_dir) if config.sync_ref_model else None
            if config.sync_ref_model and steps is not None and steps < config.ref_model_sync_steps:
                # no sync came: reference/ holds the start, and a "moved" note misled
                (echo or _warn)(
                    f"{run_dir} trained with sync_ref_model (TR-DPO) up to step {steps}, before "
                    f"ref_model_sync_steps ({config.ref_model_sync_steps}): its reference never "
                    f"moved; rewards here are against its starting model {start}"
                )
            elif config.sync_ref_model:
                against = f"its moved reference {moved} (the starting model: {start})"
                (echo or _warn)(
                    f"{run_dir} trained with sync_ref_model (TR-DPO): its reference moved "
                    "during training; rewards here are against "
                    + (against if held or in_checkpoint else f"its starting model {start}")
                )
        subfolder = (kwargs.get("reference_kwargs") or {}).get("subfolder")
        try:
            check_model_location("ref_model_name_or_path", ref_model_name_or_path, subfolder)
        except ConfigError as err:  # moved or deleted since training: say where it came from
            if not recorded:
                raise
            # (a Python caller was told the command's --ref_model_name_or_path, and train's
            # online labeller the Python keyword: its recipe has neither, the run's config.yaml
            # is where its reference is written; train's own ref_model_name_or_path is the
            # policy's reference, not this run's)
            give = spell_option("ref_model_name_or_path", ...)
            if caller().entry is Entry.TRAIN:  # (its online labeller: implicit_reward_model)
                give = (
                    f"ref_model_name_or_path: <its folder> in {Path(run_dir) / 'config.yaml'}, "
                    "or put it back; implicit_reward_model's run is scored against it"
                )
            raise ConfigError(
                f"{err} (the run's reference, named in its config.yaml; give {give})"
            ) from None
        if config is not None:
            kwargs.setdefault("max_length", config.max_length)
            kwargs.setdefault("max_prompt_length", config.max_prompt_length)
            kwargs.setdefault("chat_template_kwargs", config.chat_template_kwargs)
            # the reward over the tokens the run trained on (a tool's result left out or not)
            kwargs.setdefault("assistant_only_loss", config.assistant_only_loss)
        reference: ModelLike | None = ref_model_name_or_path
        if in_checkpoint:
            reference = checkpoint_reference(Path(run_dir), start, kwargs)
        return cls(run_dir, reference, beta if beta is not None else config.beta, **kwargs)

    @entry_point(PYTHON_CALLER)  # (a chat template's fix: its tokenizer argument)
    def score(
        self,
        prompts: Sequence[Text] | Text,
        responses: Sequence[Text] | Text,
        images: Sequence[Any] | None = None,
    ) -> list[float] | float:
        """The implicit reward of each (prompt, response); of one, for a single prompt (a string
        or one conversation) and response. ``images``: each prompt's images (a list of paths
        or PIL images, or None) for a vision-language model. A prompt may be an ``ImagePrompt``
        (online rounds of a pairs file): rendered with its row's images, tools and
        chat_template_kwargs, as training renders it."""
        if _is_single(prompts):
            if not _is_single(responses):  # (several candidates for one prompt, as rank's)
                many = counted(len(responses := list(responses)), "response")
                raise ValueError(
                    f"score of one prompt needs one response (got {many}): give the prompt "
                    f"once for each, score([prompt] * {len(responses)}, responses)"
                )
            one = None if images is None else [images]
            return self.score([prompts], [responses], one)[0]  # type: ignore[list-item, index]
        prompts = list(prompts)  # a pandas Series, a generator
        for name, given in (("responses", responses), ("image lists", images)):
            if isinstance(given, str):  # list() of it scored its characters, one per prompt
                raise ValueError(
                    f"score of {counted(len(prompts), 'prompt')} needs a list of {name}, one "
                    "per prompt (got one string)"
                )
        responses = list(responses)
        given = images is not None
        images = list(images) if images is not None else [None] * len(prompts)
        if not len(prompts) == len(responses) == len(images):
            also = f", {counted(len(images), 'image list')}" if given else ""
            raise ValueError(
                f"score needs one response{' and one image list' * given} per prompt: got "
                f"{counted(len(prompts), 'prompt')}, {counted(len(responses), 'response')}{also}"
            )
        truncated: Counter[str] = Counter()
        rows = []
        for number, (prompt, response, given) in enumerate(
            zip(prompts, responses, images, strict=True), start=1
        ):
            where = f"score: item {number}"
            args = None
            if isinstance(prompt, ImagePrompt):
                prompt, given, args = prompt.prompt, given or prompt.images, prompt.template_args
            prompt, response = parse_scored(prompt, response, where)
            checked = image_values(given, None) if given else None
            prompt = with_images(prompt, checked)
            rows.append(encode_row(self, prompt, response, where, checked, truncated, args))
            if not checked:
                self._say_reply_header(prompt, response, args)
        if truncated:
            warnings.warn(truncation_note(self, truncated), stacklevel=_outside_level())
        return self.score_ids(rows).tolist()

    @entry_point(PYTHON_CALLER)
    def score_pairs(self, examples: Sequence[PreferenceExample]) -> list[tuple[float, float]]:
        """(chosen reward, rejected reward) of each preference pair, rendered as training
        renders it (its images, tools and chat_template_kwargs)."""
        truncated: Counter[str] = Counter()
        rows = []
        for number, example in enumerate(examples, start=1):
            where = example.where or f"score_pairs: item {number}"
            for response in (example.chosen, example.rejected):
                prompt, response = parse_scored(example.prompt, response, where)
                rows.append(
                    encode_row(
                        self,
                        prompt,
                        response,
                        where,
                        example.images,
                        truncated,
                        example.template_args,
                    )  # fmt: skip
                )
                if not example.images:
                    self._say_reply_header(prompt, response, example.template_args)
        if truncated:
            warnings.warn(truncation_note(self, truncated), stacklevel=_outside_level())
        rewards = self.score_ids(rows).tolist()
        return list(zip(rewards[0::2], rewards[1::2], strict=True))

    def _say_reply_header(self, prompt: Text, response: Text, args: dict[str, Any] | None) -> None:
        """The note score, rank, train and generate give of a chat template without a
        generation prompt (chat_templates.reply_header), once, at the first conversation
        scored: from Python, ImplicitReward said nothing and scored the assistant's header as
        each response's first tokens. score and rank (score_ids) and train's
        implicit_reward_model (its own caller) are not told it here."""
        if self._header_checked or not (isinstance(prompt, list) and isinstance(response, list)):
            return
        self._header_checked = True
        if caller().entry is not Entry.IMPLICIT_REWARD:
            return
        kwargs = self.encoder.renderer.template_kwargs
        if header := reply_header(self.tokenizer, kwargs, prompt, response, args):
            fix = FIXES[Entry.IMPLICIT_REWARD].option
            warnings.warn(scored_header_note(header, fix), stacklevel=_outside_level())

    def score_ids(self, rows: list[tuple[Any, ...]], progress: bool = False) -> torch.Tensor:
        """Rewards of (prompt ids, response ids[, image inputs]) rows, float64 on CPU."""
        # no dropout: the same text, one reward
        with evaluating(self.policy, self.reference), self._computing_in_dtype():
            return self._score_ids(rows, progress)

    def _computing_in_dtype(self) -> contextlib.AbstractContextManager[None]:
        """Models held in bf16 compute in ``dtype`` (float32 by default) while they score, and
        are put back after: train()'s LoRA policy keeps its bf16 base, which rounded its
        forward (rewards up to 20% off `directpo score` of the saved folder, which loads in
        float32). Only for the scoring: 2 bytes more per bf16 weight, given back after."""
        models = [m for m in (self.policy, self.reference) if m is not None]
        if self.dtype != torch.float32 or not all(map(runs_in_float32, models)):
            return contextlib.nullcontext()
        return float32_compute(models, [])

    def _score_ids(self, rows: list[tuple[Any, ...]], progress: bool) -> torch.Tensor:
        pad = pad_token_id(self.tokenizer)
        device = device_of(self.policy)
        policy = sequence_logprobs(
            policy_logprobs_fn(self.policy), rows, pad, device, self.batch_size, progress
        )
        if self.adapters_off or self.reference_adapter is not None:
            own = self.reference_adapter
            with own.switched_in() if own is not None else self.policy.disable_adapter():
                reference = sequence_logprobs(
                    policy_logprobs_fn(self.policy), rows, pad, device, self.batch_size, progress
                )
            return self.beta * (policy - reference)
        if self.reference is None:
            lengths = torch.tensor(
                [max(scored_tokens(row), 1) for row in rows], dtype=torch.float64
            )
            return self.beta * policy / lengths
        reference = sequence_logprobs(
            policy_logprobs_fn(self.reference),
            rows,
            pad,
            device_of(self.reference),  # a reference object given on another device stays there
            self.batch_size,
            progress,
        )
        return self.beta * (policy - reference)


def _is_single(value: Any) -> bool:
    """A string, one conversation (a list of message dicts) or one ``ImagePrompt``, rather
    than a list of them."""
    return isinstance(value, str | ImagePrompt) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def _outside_level() -> int:
    """The stacklevel of the first frame outside directpo, for its caller's warnings.warn: the
    user's line, past score's call of itself for one prompt, score_pairs and the entry_point
    wrappers, and the decorators' frames between them (from_run's offline_flags_kept runs in
    contextlib's: a fixed stacklevel=2 or 3 named directpo's or contextlib's line)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _is_ours(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    return level


def _is_ours(module: str) -> bool:
    return module.startswith("directpo.") or module in ("contextlib", "functools")


def _warn(note: str) -> None:
    warnings.warn(note, stacklevel=_outside_level())


def _checked_numbers(beta: Any, batch_size: Any, dtype: Any) -> tuple[float, int]:
    """ImplicitReward's beta, batch_size and dtype, refused unless they are what they say:
    every one refused in one error, in that order (beta=0, batch_size=0 said beta alone, and
    batch_size on the next call)."""
    refused: list[ConfigError] = []
    # numbers.Real / Integral: numpy's scalars too (a sweep over np.linspace's betas)
    numeric = isinstance(beta, numbers.Real) and not isinstance(beta, bool)
    if not (numeric and math.isfinite(beta) and beta > 0):
        refused.append(ConfigError(f"beta must be a number > 0 (got {beta!r})"))
    integral = isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool)
    if not integral or batch_size < 1:
        refused.append(ConfigError(f"batch_size must be an integer >= 1 (got {batch_size!r})"))
    if dtype not in DTYPES and dtype not in DTYPES.values():
        refused.append(ConfigError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})"))
    if refused:
        raise ConfigErrors.joined(refused)
    return float(beta), int(batch_size)
