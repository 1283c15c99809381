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
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from directpo.adapters import adapter_base, rewrites_base, tokenizer_folder
from directpo.callers import Caller, Entry, Spelling, caller, entry_point, spell_option
from directpo.checkpoint import REFERENCE_FILE
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError
from directpo.hub import offline_flags_kept
from directpo.logprobs import evaluating, policy_logprobs_fn, sequence_logprobs, unwrap_peft
from directpo.messages import Text
from directpo.model_files import model_location
from directpo.model_fit import check_vocabulary, learned_positions
from directpo.model_locations import check_model_location
from directpo.model_preparation import LoadOptions
from directpo.models import load_causal_lm
from directpo.outputs import REFERENCE_FOLDER
from directpo.pair_truncation import CUT_BY_PROMPT
from directpo.precision import DTYPES, float32_compute
from directpo.preference_pairs import ImagePrompt, PreferenceExample, counted
from directpo.prompts import (
    parse_scored,
    with_images,
)
from directpo.readers import RowError
from directpo.reference import (
    AdapterDisabledReference,
    AdapterReference,
    FrozenModelReference,
    ReferenceProvider,
)
from directpo.run_records import run_config, run_values_missing
from directpo.sync import checkpoint_reference
from directpo.tokenization import PairTokenizer
from directpo.tokenizer_loading import load_processor, load_tokenizer, pad_token_id
from directpo.vision import image_values

ModelLike = torch.nn.Module | str

# the tokens a scored sequence keeps when no run's config.yaml says (training's default)
SCORE_MAX_LENGTH = 1024
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
        # numbers.Real / Integral: numpy's scalars too (a sweep over np.linspace's betas)
        numeric = isinstance(beta, numbers.Real) and not isinstance(beta, bool)
        if not (numeric and math.isfinite(beta) and beta > 0):
            raise ConfigError(f"beta must be a number > 0 (got {beta!r})")
        integral = isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool)
        if not integral or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
        beta, batch_size = float(beta), int(batch_size)
        if dtype not in DTYPES and dtype not in DTYPES.values():
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
        self.dtype = DTYPES.get(dtype, dtype)  # type: ignore[call-overload]
        policy, reference = _model_or_path(policy), _model_or_path(reference)
        policy_kwargs, reference_kwargs = dict(policy_kwargs or {}), dict(reference_kwargs or {})
        for key, given, kwargs in (
            ("policy", policy, policy_kwargs),
            ("reference", reference, reference_kwargs),
        ):
            if isinstance(given, str):
                check_model_location(key, given, kwargs.get("subfolder"))
        trusted = LoadOptions(trust_remote_code=trust_remote_code)
        self.policy = _load(policy, dtype, None, replace(trusted, init_kwargs=policy_kwargs))
        # train()'s reference of a continued adapter: its start, the "ref" adapter on the policy
        own = isinstance(reference, AdapterReference) and reference.model is self.policy
        self.reference_adapter = reference if own else None
        reference = None if own else _reference_model(reference, self.policy)
        if reference is not None and reference is self.policy:
            # every reward 0, without a word (a PEFT policy too: its adapters stayed on); TRL's
            # DPOTrainer refuses ref_model=model likewise
            raise ConfigError(
                "reference is the policy object itself, so every reward would be 0: give the "
                "starting model (its folder, or a copy), or for a PEFT policy its base, "
                "policy.get_base_model() (scored with the adapters off)"
            )
        # a LoRA policy scored against its own base: the base is the policy with adapters off
        self.adapters_off = reference is not None and _is_base_of(self.policy, reference)
        self.reference = None
        if reference is not None and not self.adapters_off:  # beside the policy, wherever it is
            self.reference = _load(
                reference, dtype, _device_of(self.policy),
                replace(trusted, init_kwargs=reference_kwargs),
            )  # fmt: skip
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
        models = [("model_name_or_path", _path(policy, self.policy), self.policy)]
        if self.reference is not None:
            models.append(
                ("ref_model_name_or_path", _path(reference, self.reference), self.reference)
            )
        for note in check_vocabulary(
            tokenizer, getattr(tokenizer, "name_or_path", "") or "", models
        ):
            warnings.warn(note, stacklevel=2)
        # a learned position table (GPT-2, OPT) cannot be indexed past: longer rows are cut
        # to it as to max_length, not an IndexError
        for _, _, model in models:
            limit = learned_positions(model)
            if limit is not None and (max_length is None or max_length > limit):
                max_length = limit
        self.beta = beta
        self.batch_size = batch_size
        from directpo.generate import stop_token_ids

        # responses end where the policy stops generating, as training's completions do
        self.encoder = PairTokenizer(
            tokenizer, max_length, max_prompt_length,
            chat_template_kwargs=chat_template_kwargs, processor=processor,
            stop_ids=stop_token_ids(self.policy, tokenizer), assistant_only=assistant_only_loss,
        )  # fmt: skip

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
            steps = _steps_done(run_dir) if config.sync_ref_model else None
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
        if truncated:
            warnings.warn(truncation_note(self, truncated), stacklevel=2)
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
        if truncated:
            warnings.warn(truncation_note(self, truncated), stacklevel=2)
        rewards = self.score_ids(rows).tolist()
        return list(zip(rewards[0::2], rewards[1::2], strict=True))

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
        device = _device_of(self.policy)
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
            _device_of(self.reference),  # a reference object given on another device stays there
            self.batch_size,
            progress,
        )
        return self.beta * (policy - reference)


def scored_tokens(row: tuple[Any, ...]) -> int:
    """Tokens of a (prompt ids, response ids[, image inputs, unscored spans]) row that are
    scored: a reference-free reward is per scored token, as training's length-normalised
    losses count them."""
    spans = row[3] if len(row) > 3 else ()
    return len(row[1]) - sum(end - start for start, end in spans)


def folder_tokenizer(
    path: str, policy_kwargs: dict[str, Any], trust_remote_code: bool, own_folder: bool = False
) -> tuple[Any, Any]:
    """(tokenizer, processor or None) of the policy at ``path``: its own folder's (an adapter
    folder's base's where it holds none; ``own_folder``: the folder as it is, a model object's
    name), where its ``policy_kwargs`` place it; a vision-language model's processor."""
    folder = path if own_folder else tokenizer_folder(path)
    # the policy's own location; an adapter folder holds its tokenizer itself
    own = not own_folder and adapter_base(path) is None
    location = model_location(policy_kwargs) if own else {}
    processor = load_processor(folder, trust_remote_code, location)
    if processor is None:
        return load_tokenizer(folder, trust_remote_code, location), None
    return processor.tokenizer, processor


def row_encoder(
    run_dir: str, trust_remote_code: bool = False, assistant_only: bool | None = None
) -> PairTokenizer:
    """The encoder ``ImplicitReward.from_run(run_dir)`` renders rows with, without its models,
    so that a row the chat template (or the tokenizer, the processor) refuses is said before
    they load, with every other such row: it was said alone, after rows were scored. (The
    model's stop tokens and a learned position table's limit, which only shorten rows, are
    left out.) ``assistant_only``: score's --assistant_only_loss; None, the run's."""
    config = None
    with contextlib.suppress(ConfigError):  # a config.yaml of another tool: not a run
        config = run_config(run_dir)
    tokenizer, processor = folder_tokenizer(
        run_dir, output_location(run_dir, config), trust_remote_code
    )
    if assistant_only is None:  # the run's, unless score's --assistant_only_loss gives it
        assistant_only = bool(config and config.assistant_only_loss)
    return PairTokenizer(
        tokenizer,
        config.max_length if config else SCORE_MAX_LENGTH,
        config.max_prompt_length if config else None,
        chat_template_kwargs=config.chat_template_kwargs if config else None,
        processor=processor,
        assistant_only=assistant_only,
    )


def output_location(folder: str, config: DPOConfig | None) -> dict[str, Any]:
    """from_pretrained location arguments of a run's output ``folder``: a LoRA run's adapter
    folder finds its base where training did (model_init_kwargs' revision, subfolder, ...);
    a whole model folder is complete as it is."""
    if config is None or adapter_base(folder) is None:
        return {}
    return model_location(config.model_init_kwargs)


def _reference_model(reference: Any, policy: torch.nn.Module) -> ModelLike | None:
    """A training run's reference (``train(...).reference``) as the model it scores with."""
    if isinstance(reference, FrozenModelReference):
        return reference.model
    if isinstance(reference, AdapterDisabledReference) and reference.model is policy:
        return policy.get_base_model()  # LoRA: the base, i.e. the policy with adapters off
    if reference is None or isinstance(reference, str | torch.nn.Module):
        return reference
    raise ConfigError(
        f"reference must be a model, a model folder or None, got {type(reference).__name__} "
        "(a run's precomputed or adapter reference: pass its reference folder)"
    )


def _is_base_of(policy: torch.nn.Module, reference: ModelLike) -> bool:
    """``reference`` is the model (or folder) the PEFT ``policy``'s adapters were put on: an
    object that get_peft_model changed in place holds the adapters too. Never for adapters that
    rewrote the base (PiSSA, ...): with them off it is not the base as stored."""
    configs = getattr(policy, "peft_config", None)
    if configs and any(map(rewrites_base, configs.values())):
        return False
    if configs and isinstance(reference, torch.nn.Module):
        return policy.get_base_model() is reference
    if not configs or not isinstance(reference, str):
        return False
    bases = {getattr(c, "base_model_name_or_path", None) for c in configs.values()}
    return any(b and os.path.abspath(b) == os.path.abspath(reference) for b in bases)


def _path(given: ModelLike | None, model: torch.nn.Module) -> str:
    return given if isinstance(given, str) else str(getattr(model, "name_or_path", "") or "")


def _is_single(value: Any) -> bool:
    """A string, one conversation (a list of message dicts) or one ``ImagePrompt``, rather
    than a list of them."""
    return isinstance(value, str | ImagePrompt) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def _model_or_path(model: ModelLike | os.PathLike | None) -> ModelLike | None:
    """A model object as given, a folder as a string (a ``pathlib.Path`` too)."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def _load(
    model: ModelLike,
    dtype: str | torch.dtype,
    device: torch.device | None,
    options: LoadOptions,
) -> torch.nn.Module:
    """A model object as given; a folder loaded onto ``device`` (default: CUDA if present)
    with ``options`` (from_pretrained's keyword arguments, trust_remote_code)."""
    if isinstance(model, str):
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return load_causal_lm(model, dtype, trainable=False, device=str(device), options=options)
    return model


def _steps_done(run_dir: str | os.PathLike) -> int | None:
    """The optimizer steps a run folder's (or checkpoint's) weights went through, from its
    trainer_state.json; None where it has none readable."""
    import json

    try:
        state = json.loads((Path(run_dir) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else None


def runs_in_float32(model: torch.nn.Module) -> bool:
    """Whether ``model`` can compute in float32 as it is: not a quantized base (its layers
    compute in their own dtype), nor FlashAttention (no float32 kernel)."""
    inner = unwrap_peft(model)
    attention = getattr(getattr(inner, "config", None), "_attn_implementation", None) or ""
    # (flash_attention_2/3 and the hub's kernels-community/flash-attn*: bf16/fp16 kernels)
    return not getattr(inner, "is_quantized", False) and "flash" not in attention


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _warn(note: str) -> None:
    warnings.warn(note, stacklevel=3)


def encode_row(
    scorer: ImplicitReward,
    prompt: Text,
    response: Text,
    label: str,
    images: tuple[Any, ...] | None = None,
    truncated: Counter[str] | None = None,
    template_args: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    """(prompt ids, response ids[, image inputs]) of one scored row; its problem a one-line
    DataError naming ``label``."""
    try:
        return scorer.encoder.encode_scored(prompt, response, images, truncated, template_args)
    except RowError as err:
        raise DataError(f"{label}: {err.message}") from None


def truncation_note(scorer: ImplicitReward, truncated: Counter[str]) -> str:
    """What was cut to fit max_length / max_prompt_length: those rewards cover less text."""
    counts = ", ".join(  # (which of them a long prompt cut short is training's concern)
        counted(n, what.removesuffix("s"))  # ('prompts', 'responses': 1 prompt, 2 responses)
        for what, n in sorted(truncated.items())
        if what != CUT_BY_PROMPT
    )
    return (
        f"truncated to fit max_length {scorer.encoder.max_length}: {counts}; their rewards "
        "are of the kept tokens only"
    )
