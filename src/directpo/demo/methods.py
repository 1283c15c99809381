"""The demo's methods, each measured the same way: held-out KL and reward every few steps.

* offline DPO, Preferred-FT and Unlikelihood: ``directpo.train`` on the pairs sampled from the
  reference (``eval_generate`` measures the points);
* online DPO: ``directpo.train`` with ``online: true``: the reference's samples (the offline
  pairs) are round 0, later rounds sample from the current policy and VADER labels them;
* RL on the true reward ("RL (true reward)", the paper's PPO-GT role) and RLHF (RL against a
  reward model that TRL's ``RewardTrainer`` fits to the same pairs): TRL's ``RLOOTrainer`` (TRL
  1.16 has no PPO; RLOO, Ahmadian et al. 2024, is the published simpler alternative), with the
  same prompts, completion length and sampling settings, measured by a callback that calls
  directpo's ``evaluate_generations`` at the same steps.

Every method reports its cost: wall seconds, peak resident memory of the process while it ran,
the models it held in memory, and the completions it sampled.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from directpo.config import DPOConfig
from directpo.demo.sentiment import Judge, vader_reward
from directpo.errors import TrainingStopped
from directpo.signals import exit_code_of
from directpo.trainer import train

REWARD_FN = "directpo.demo.sentiment:vader_reward"


@dataclass(frozen=True)
class Method:
    name: str  # DPO, Preferred-FT, Unlikelihood, Online DPO, RL (true reward), RLHF
    loss_type: tuple[str, ...] = ("sigmoid",)
    beta: float | None = None  # DPO's beta; RL's KL coefficient
    learning_rate: float = 1e-5
    kind: str = "offline"  # offline | online | rl

    @property
    def slug(self) -> str:
        name = self.name.lower().replace(" ", "-").replace("(", "").replace(")", "")
        suffix = f"-beta{self.beta}" if self.beta is not None and self.kind != "rl" else ""
        return name + suffix + (f"-lr{self.learning_rate:g}" if self.kind == "rl" else "")


@dataclass
class Experiment:
    """What every method shares: data files, prompts, judge and the profile's settings."""

    model_dir: Path
    out: Path
    pairs_file: Path
    train_prompts_file: Path
    heldout_file: Path
    train_prompts: list[str]
    heldout: list[str]
    judge: Judge
    profile: Any
    seed: int
    echo: Callable[[str], None]
    pairs: int  # offline pairs, sampled from the reference
    reference_samples: int  # completions the reference sampled to build them


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall seconds and the process's peak resident memory (MB) while inside."""
    import psutil

    process = psutil.Process()
    cost = {"seconds": 0.0, "peak_rss_mb": process.memory_info().rss / 2**20}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            cost["peak_rss_mb"] = max(cost["peak_rss_mb"], process.memory_info().rss / 2**20)

    watcher = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        yield cost
    finally:
        done.set()
        watcher.join()
        cost["seconds"] = round(time.perf_counter() - start, 1)
        cost["peak_rss_mb"] = round(cost["peak_rss_mb"])


def run_method(method: Method, exp: Experiment) -> dict[str, Any]:
    run_dir = exp.out / "runs" / method.slug
    exp.echo(f"[demo] training {method.name}" + (f" beta={method.beta}" if method.beta else ""))
    with measured() as cost:
        if method.kind == "rl":
            rows, models, samples = _rloo(method, exp, run_dir)
        else:
            rows, models, samples = _directpo(method, exp, run_dir)
    points = _points(rows, run_dir, exp.judge)
    cost |= {"models_in_memory": models, "samples_generated": samples}
    best = max(points, key=lambda p: p["reward"])
    exp.echo(
        f"[demo] {method.slug}: best reward {best['reward']:.3f} (judge {best['judge']:.3f}) at "
        f"KL {best['kl']:.2f}; {cost['seconds']:.0f} s, peak {cost['peak_rss_mb']:.0f} MB"
    )
    return {
        "method": method.name,
        "slug": method.slug,
        "beta": method.beta,
        "loss_type": list(method.loss_type),
        "learning_rate": method.learning_rate,
        "points": points,
        "cost": cost,
    }


def _eval_samples(exp: Experiment) -> int:
    """Completions one evaluation samples (held-out prompts × samples each)."""
    return len(exp.heldout) * exp.profile.eval_samples


def _evaluations(exp: Experiment) -> int:
    return math.ceil(exp.profile.max_steps / exp.profile.eval_steps)


def _directpo(method: Method, exp: Experiment, run_dir: Path) -> tuple[list[dict], int, int]:
    profile = exp.profile
    online = method.kind == "online"
    options: dict[str, Any] = {}
    if online:
        options = dict(
            online=True,
            prompt_file=str(exp.train_prompts_file),
            online_prompts_per_round=profile.online_prompts_per_round,
            online_samples_per_prompt=profile.samples_per_prompt,
            online_pairs="above_gap",
            online_reward_gap=max(profile.gap_threshold, 0.0),
            online_max_pairs_per_prompt=profile.max_pairs_per_prompt,
            steps_per_round=profile.steps_per_round,
        )
    config = DPOConfig(
        model_name_or_path=str(exp.model_dir),
        train_file=str(exp.pairs_file),
        output_dir=str(run_dir),
        overwrite_output_dir=True,
        loss_type=list(method.loss_type),
        beta=method.beta if method.beta is not None else 0.1,
        learning_rate=method.learning_rate,
        lr_scheduler_type="constant_with_warmup",  # (TRL's run's name: nothing to say)
        warmup_steps=2,
        per_device_train_batch_size=profile.batch_size,
        per_device_eval_batch_size=32,
        max_steps=profile.max_steps,
        max_length=128,
        max_prompt_length=32,
        logging_steps=1,
        save_steps=0,
        eval_steps=profile.eval_steps,
        eval_generate=len(exp.heldout),
        eval_generate_samples=profile.eval_samples,
        eval_prompts_file=str(exp.heldout_file),
        generate_max_new_tokens=profile.completion_tokens,
        reward_fn=REWARD_FN,
        report_to=["none"],
        seed=exp.seed,
        **options,
    )
    result = train(config, echo=lambda line: exp.echo(f"  {line}"))
    if result.stopped_by:  # Ctrl-C stops the demo, not only this method's training
        stopped = TrainingStopped(f"the demo stopped: {result.stopped_by} during {method.name}")
        stopped.exit_code = exit_code_of(result.stopped_by)  # (it exited 1: as train's, now)
        raise stopped
    sampled = exp.reference_samples  # the offline pairs were sampled from the reference
    sampled += sum(int(r.get("online/samples", 0)) for r in result.metrics)
    sampled += _evaluations(exp) * _eval_samples(exp)
    return result.metrics, 2, sampled  # policy + reference (VADER labels: no model)


def _points(rows: list[dict[str, Any]], run_dir: Path, judge: Judge) -> list[dict[str, Any]]:
    points = []
    for row in rows:
        if "eval/kl" not in row:
            continue
        path = run_dir / "samples" / f"step-{row['step']}.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        judged = judge.score([r["prompt"] + r["completion"] for r in records])
        points.append(
            {
                "step": row["step"],
                "kl": row["eval/kl"],
                "reward": row["eval/reward"],
                "judge": sum(judged) / max(len(judged), 1),
            }
        )
    return points


# -- RL with TRL's RLOOTrainer -----------------------------------------------------------------


def vader_for_trl(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """VADER with TRL's reward-function signature (it passes extra columns as keywords)."""
    return vader_reward(prompts, completions)


def _rloo(method: Method, exp: Experiment, run_dir: Path) -> tuple[list[dict], int, int]:
    """RLOO against VADER, or (RLHF) against a reward model fitted to the pairs first."""
    import datasets
    import trl
    from transformers import AutoTokenizer, TrainerCallback

    profile = exp.profile
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(exp.model_dir)
    rewards: Any = vader_for_trl
    weights = None
    models = 2  # policy and TRL's reference (which the KL measurement shares)
    if method.name == "RLHF":
        model_path, weights = _reward_model(exp, run_dir)
        rewards, models = str(model_path), models + 1
    completions_per_step = profile.rl_prompts_per_step * profile.samples_per_prompt
    config = trl.RLOOConfig(
        output_dir=str(run_dir),
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=exp.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # TRL's default is bf16 and checkpointing, even on a CPU
        gradient_checkpointing=False,
        learning_rate=method.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=2,
        max_steps=profile.max_steps,
        per_device_train_batch_size=completions_per_step,  # completions, not prompts
        num_generations=profile.samples_per_prompt,
        max_completion_length=profile.completion_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=method.beta,
        disable_dropout=True,
        reward_weights=weights,
    )
    trainer = trl.RLOOTrainer(
        model=str(exp.model_dir),
        reward_funcs=rewards,
        args=config,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in exp.train_prompts]),
        processing_class=tokenizer,
    )
    reference = trainer.ref_model  # the start model, frozen: what DPO's KL is measured against
    if reference is None:  # beta 0: TRL holds no reference, the measurement needs its own
        from directpo.models import load_causal_lm

        reference, models = load_causal_lm(str(exp.model_dir), "float32", trainable=False), 3
    evaluator = _Evaluator(exp, run_dir, tokenizer, reference)

    class Evaluate(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = state.global_step
            if step % profile.eval_steps == 0 or step == profile.max_steps:
                evaluator(kwargs["model"], step)

    trainer.add_callback(Evaluate())
    trainer.train()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evaluator.rows))
    sampled = profile.max_steps * completions_per_step + len(evaluator.rows) * _eval_samples(exp)
    if method.name == "RLHF":  # its reward model learned from the pairs sampled from the reference
        sampled += exp.reference_samples
    return evaluator.rows, models, sampled


class _Evaluator:
    """directpo's held-out measurement (eval/kl, eval/reward, samples) of a TRL policy."""

    def __init__(self, exp: Experiment, run_dir: Path, tokenizer: Any, reference: Any):
        from directpo.reference import FrozenModelReference
        from directpo.rewardfn import load_reward_fn

        self.exp, self.run_dir, self.tokenizer = exp, run_dir, tokenizer
        self.reference = FrozenModelReference(reference)
        self.reward_fn = load_reward_fn(REWARD_FN)
        self.config = DPOConfig(
            eval_generate=len(exp.heldout),
            eval_generate_samples=exp.profile.eval_samples,
            generate_max_new_tokens=exp.profile.completion_tokens,
            per_device_eval_batch_size=32,
            max_prompt_length=32,
            max_length=128,
            seed=exp.seed,
        )
        self.rows: list[dict[str, Any]] = []

    def __call__(self, model: Any, step: int) -> None:
        from directpo.eval_samples import evaluate_generations
        from directpo.jsonl import write_jsonl

        metrics, records = evaluate_generations(
            model, self.reference, self.tokenizer, self.exp.heldout, self.config, step,
            self.reward_fn,
        )  # fmt: skip
        samples = self.run_dir / "samples"
        samples.mkdir(exist_ok=True)
        write_jsonl(samples / f"step-{step}.jsonl", records)
        self.rows.append({"step": step, **metrics})


def _reward_model(exp: Experiment, run_dir: Path) -> tuple[Path, list[float]]:
    """TRL's RewardTrainer on the offline pairs; returns the folder and the reward weight that
    gives its scores VADER's spread (so that beta means the same for both rewards)."""
    import datasets
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = run_dir / "reward_model"
    tokenizer = AutoTokenizer.from_pretrained(exp.model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(exp.model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = [json.loads(line) for line in exp.pairs_file.read_text().splitlines()]
    config = trl.RewardConfig(
        output_dir=str(folder),
        report_to="none",
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        gradient_checkpointing=False,
        learning_rate=exp.profile.reward_model_learning_rate,
        num_train_epochs=exp.profile.reward_model_epochs,
        per_device_train_batch_size=8,
        logging_steps=5,
        seed=exp.seed,
        max_length=128,
    )
    trainer = trl.RewardTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(
            [{key: r[key] for key in ("prompt", "chosen", "rejected")} for r in rows]
        ),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    texts = [r["prompt"] + r[side] for r in rows for side in ("chosen", "rejected")]
    scores = _reward_scores(trainer.model, tokenizer, texts)
    vader = vader_reward([""] * len(texts), texts)
    spread = _std(scores)
    return folder, [_std(vader) / spread if spread else 1.0]


@torch.no_grad()
def _reward_scores(model: Any, tokenizer: Any, texts: list[str]) -> list[float]:
    model.eval()
    scores: list[float] = []
    for start in range(0, len(texts), 16):
        batch = tokenizer(texts[start : start + 16], return_tensors="pt", padding=True)
        scores += model(**batch.to(model.device)).logits[:, 0].float().tolist()
    return scores


def reward_model_accuracy(run_dir: Path, pairs: list[dict[str, Any]]) -> dict[str, float]:
    """Held-out pair accuracy of the learned reward model and its correlation with VADER."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = run_dir / "reward_model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    chosen = _reward_scores(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs])
    rejected = _reward_scores(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs])
    texts = [p["prompt"] + p[s] for p in pairs for s in ("chosen", "rejected")]
    scores = [x for pair in zip(chosen, rejected, strict=True) for x in pair]
    vader = vader_reward([""] * len(texts), texts)
    correlation = float(np.corrcoef(scores, vader)[0, 1]) if len(texts) > 2 else 0.0
    accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / max(len(pairs), 1)
    return {"heldout_pair_accuracy": accuracy, "correlation_with_vader": correlation}


def _std(values: list[float]) -> float:
    mean = sum(values) / max(len(values), 1)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values), 1))
