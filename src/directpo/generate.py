"""Sampling completions, and the sequence-level KL(π‖π_ref) estimated from them.

Prompts go through the same rendering and BOS/truncation rules as training
(`tokenization.PairTokenizer`), so a conversational prompt gets the chat template with the
generation prompt. Sampling uses an explicit `GenerationConfig` (the model's own defaults, such
as a top_k of 50, are not applied), and runs inside a forked RNG seeded from ``seed``: the same
seed gives the same samples, and the caller's RNG stream (training's) is left untouched.

The KL estimate is the mean over samples y ~ π(·|x) of Σ_t log π(y_t|x, y_<t) − log π_ref(y_t|…),
an unbiased estimate of KL(π‖π_ref) only when sampling is from π itself: temperature 1, no
top-k/top-p truncation (the defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from directpo.command_options import GenerateOptions
from directpo.config import DPOConfig
from directpo.data import RowError, Text, parse_prompt, read_rows
from directpo.errors import DataError
from directpo.jsonl import write_jsonl
from directpo.logprobs import policy_logprobs_fn, sequence_logprobs
from directpo.models import load_causal_lm, load_tokenizer, pad_token_id
from directpo.reference import ReferenceProvider
from directpo.rewardfn import RewardFn
from directpo.tokenization import PairTokenizer


@dataclass
class Sample:
    prompt_index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str


def encode_prompts(
    tokenizer: Any, prompts: Sequence[Text], max_prompt_length: int | None
) -> list[list[int]]:
    encoder = PairTokenizer(
        tokenizer,
        max_length=None if max_prompt_length is None else max_prompt_length + 1,
        max_prompt_length=max_prompt_length,
    )
    return [encoder.prompt_ids(prompt) for prompt in prompts]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS of the tokenizer plus any the model's generation config lists (e.g. end-of-turn)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Text],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    max_prompt_length: int | None = 512,
    progress: bool = False,
    synced: bool = False,
) -> list[Sample]:
    """``num_samples`` completions per prompt, grouped by prompt in input order.

    ``synced``: every rank of a sharded (FSDP) model runs this together; each keeps stepping
    until all are done, so their collectives stay in step (transformers' ``synced_gpus``).
    """
    prompt_ids = encode_prompts(tokenizer, prompts, max_prompt_length)
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    config = GenerationConfig(
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_p=top_p if temperature > 0 else None,
        top_k=top_k if temperature > 0 else None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_samples,
        eos_token_id=stops,
        pad_token_id=pad_id,
    )
    was_training = model.training
    model.eval()
    samples: list[Sample] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        starts = range(0, len(prompt_ids), batch_size)
        for start in tqdm(starts, desc="generate", disable=not progress, dynamic_ncols=True):
            chunk = prompt_ids[start : start + batch_size]
            width = max(map(len, chunk))
            # left padding: every prompt ends where generation starts
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, ids in enumerate(chunk):
                input_ids[i, width - len(ids) :] = torch.tensor(ids)
                attention_mask[i, width - len(ids) :] = 1
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=config,
                synced_gpus=synced,
            )
            for row, generated in enumerate(output[:, width:].tolist()):
                index = start + row // num_samples
                completion = _until_stop(generated, stops)
                text = tokenizer.decode(completion, skip_special_tokens=True)
                samples.append(Sample(index, prompt_ids[index], completion, text))
    model.train(was_training)
    return samples


def _until_stop(ids: list[int], stops: list[int]) -> list[int]:
    for position, token in enumerate(ids):
        if token in stops:
            return ids[: position + 1]
    return ids


def generate_file(options: GenerateOptions, echo: Callable[[str], None] = print) -> int:
    """Sample completions for every prompt row; rows keep their fields and gain
    ``completions`` (a list of ``num_return_sequences`` strings)."""
    options.check_environment()
    rows = read_rows(options.input)
    prompts = [
        parse_prompt(row, options.prompt_column, f"{options.input}: {where}") for where, row in rows
    ]
    tokenizer = load_tokenizer(options.model_name_or_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(
        options.model_name_or_path, options.dtype, trainable=False, device=device
    )
    try:
        samples = sample_completions(
            model,
            tokenizer,
            prompts,
            num_samples=options.num_return_sequences,
            max_new_tokens=options.max_new_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            seed=options.seed,
            batch_size=options.batch_size,
            max_prompt_length=options.max_prompt_length,
            progress=True,
        )
    except RowError as err:
        raise DataError(f"{options.input}: {err.message}") from None
    completions: list[list[str]] = [[] for _ in rows]
    for sample in samples:
        completions[sample.prompt_index].append(sample.text)
    write_jsonl(
        options.output,
        ({**row, "completions": texts} for (_, row), texts in zip(rows, completions, strict=True)),
    )
    echo(f"wrote {len(samples)} completions for {len(rows)} prompts to {options.output}")
    return len(samples)


def evaluate_generations(
    policy: torch.nn.Module,
    reference: ReferenceProvider,
    tokenizer: Any,
    prompts: Sequence[Text],
    config: DPOConfig,
    step: int,
    reward_fn: RewardFn | None,
    synced: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Sample held-out completions; (eval/kl, eval/reward, ... metrics, one record per sample)."""
    device = next(policy.parameters()).device
    samples = sample_completions(
        policy,
        tokenizer,
        prompts,
        num_samples=config.eval_generate_samples,
        max_new_tokens=config.generate_max_new_tokens,
        temperature=config.generate_temperature,
        top_p=config.generate_top_p,
        top_k=config.generate_top_k,
        seed=config.seed + step,
        batch_size=config.per_device_eval_batch_size,
        max_prompt_length=config.prompt_limit,
        synced=synced,
    )
    rows = [(s.prompt_ids, s.completion_ids) for s in samples]
    pad = pad_token_id(tokenizer)
    was_training = policy.training
    policy.eval()
    logps = sequence_logprobs(
        policy_logprobs_fn(policy), rows, pad, device, config.per_device_eval_batch_size
    )
    policy.train(was_training)
    ref_logps = sequence_logprobs(
        reference.logprobs, rows, pad, device, config.per_device_eval_batch_size
    )
    kls = (logps - ref_logps).tolist()
    texts = [s.text for s in samples]
    sample_prompts = [prompts[s.prompt_index] for s in samples]
    rewards = reward_fn(sample_prompts, texts) if reward_fn else None
    metrics = {
        "eval/kl": sum(kls) / len(kls),
        "eval/completion_length": sum(len(s.completion_ids) for s in samples) / len(samples),
    }
    if rewards is not None:
        metrics["eval/reward"] = sum(rewards) / len(rewards)
    records = [
        {
            "step": step,
            "prompt": prompt,
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
