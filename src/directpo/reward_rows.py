"""score and rank's rows as ids: the encoder a run folder's rows are rendered with before its
models load (``row_encoder``: its tokenizer or processor, length limits and chat template
arguments), where a run's output folder and its tokenizer load from, one row encoded (its
problem one line naming it), the note on what truncation cut, and the tokens a reference-free
reward is divided by."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from directpo.adapters import adapter_base, tokenizer_folder
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError
from directpo.messages import Text
from directpo.model_files import model_location
from directpo.pair_truncation import CUT_BY_PROMPT
from directpo.preference_pairs import counted
from directpo.readers import RowError
from directpo.run_records import run_config
from directpo.tokenization import PairTokenizer
from directpo.tokenizer_loading import load_processor, load_tokenizer

if TYPE_CHECKING:
    from directpo.reward import ImplicitReward

# the tokens a scored sequence keeps when no run's config.yaml says (training's default)
SCORE_MAX_LENGTH = 1024


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
        f"truncated to fit max_length {scorer.encoder.limits.max_length}: {counts}; their rewards "
        "are of the kept tokens only"
    )
