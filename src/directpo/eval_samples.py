"""Held-out completions sampled during training (eval_generate_samples): their rewards and
the sequence-level KL(π‖π_ref) estimated from them.

The KL estimate is the mean over samples y ~ π(·|x) of Σ_t log π(y_t|x, y_<t) − log π_ref(y_t|…),
an unbiased estimate of KL(π‖π_ref) only when sampling is from π itself: temperature 1, no
top-k/top-p truncation (the defaults).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from directpo.config import DPOConfig
from directpo.generate import Sample, sample_completions
from directpo.logprobs import evaluating, policy_logprobs_fn, sequence_logprobs
from directpo.messages import Text
from directpo.preference_pairs import ImagePrompt, prompt_of
from directpo.reference import ReferenceProvider
from directpo.rewardfn import RewardFn, labelling_at
from directpo.tokenizer_loading import pad_token_id


def samples_logprobs(
    samples: Sequence[Sample],
    policy: torch.nn.Module,
    reference: ReferenceProvider | None,
    pad: int,
    device: torch.device,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each sample's summed log π (the policy in eval mode: no dropout, as it sampled) and
    log π_ref (None without a reference): the KL estimates of evaluations and online rounds."""
    rows = [s.row for s in samples]
    with evaluating(policy):
        logps = sequence_logprobs(policy_logprobs_fn(policy), rows, pad, device, batch_size)
    if reference is None:
        return logps, None
    return logps, sequence_logprobs(reference.logprobs, rows, pad, device, batch_size)


def evaluate_generations(
    policy: torch.nn.Module,
    reference: ReferenceProvider,
    tokenizer: Any,
    prompts: Sequence[Text],
    config: DPOConfig,
    step: int,
    reward_fn: RewardFn | None,
    synced: bool = False,
    processor: Any = None,
    columns: Sequence[dict[str, Any]] | None = None,
    scoring: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Sample held-out completions; (eval/kl, eval/reward, ... metrics, one record per sample).
    ``columns``: each prompt's row's other columns, passed on to ``reward_fn``. ``scoring``:
    the precision the samples' log-probs (their KL) are computed in (eval_dtype's float32
    under bf16: bf16 reads a young policy's KL as rounding noise of +-0.2 nats a sample)."""
    device = next(policy.parameters()).device
    samples = sample_completions(
        policy,
        tokenizer,
        prompts,
        num_samples=config.eval_generate_samples,
        max_new_tokens=config.generate_max_new_tokens,
        seed=config.seed + step,
        batch_size=config.per_device_eval_batch_size,
        max_prompt_length=config.prompt_limit,
        synced=synced,
        processor=processor,
        **config.sampling,
    )
    with scoring():
        logps, ref_logps = samples_logprobs(
            samples, policy, reference, pad_token_id(tokenizer), device,
            config.per_device_eval_batch_size,
        )  # fmt: skip
    assert ref_logps is not None
    kls = (logps - ref_logps).tolist()
    texts = [s.text for s in samples]
    sample_prompts = [prompt_of(prompts[s.prompt_index]) for s in samples]
    extras = [
        {**(columns[s.prompt_index] if columns else {}), "completion_ids": s.completion_ids}
        for s in samples
    ]
    # the labeller gets each prompt as an online round hands it (ImagePrompt: its images and
    # its row's tools / chat_template_kwargs, which a reward model's template renders; a
    # reward_fn strips them itself): the text alone scored another input, another number
    given = [prompts[s.prompt_index] for s in samples]
    with labelling_at(f"eval_generate at step {step}"):
        rewards = reward_fn(given, texts, extras) if reward_fn else None
    metrics = {
        "eval/kl": sum(kls) / len(kls),
        "eval/completion_length": sum(len(s.completion_ids) for s in samples) / len(samples),
    }
    if rewards is not None:
        rewards = [None if math.isnan(r) else r for r in rewards]  # None: not scored
        given = [r for r in rewards if r is not None]
        if given:
            metrics["eval/reward"] = sum(given) / len(given)
    records = [
        {
            "step": step,
            "prompt": prompt,
            **_images_of(prompts[samples[i].prompt_index]),
            "completion": text,
            "logp": lp,
            "ref_logp": rp,
            "kl": kl,
            **({"reward": rewards[i]} if rewards is not None else {}),
        }
        for i, (prompt, text, lp, rp, kl) in enumerate(
            zip(sample_prompts, texts, logps.tolist(), ref_logps.tolist(), kls, strict=True)
        )
    ]
    return metrics, records


def _images_of(prompt: Text | ImagePrompt) -> dict[str, Any]:
    if isinstance(prompt, ImagePrompt) and prompt.images:
        return {"images": prompt.describe()["images"]}
    return {}
