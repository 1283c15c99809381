"""The best evaluation so far: ``load_best_model_at_end`` and ``early_stopping_patience``.

After each evaluation the tracked metric (``metric_for_best_model``, default ``eval/loss``) is
compared with the best so far. With ``load_best_model_at_end`` every improvement writes a
checkpoint (kept whatever ``save_total_limit`` says), and the final folder holds that
checkpoint's weights. With ``early_stopping_patience: N`` training stops after N evaluations in
a row without improvement. The tracker is part of every checkpoint, so both survive a resume.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from directpo.callers import in_askers_words, spell_given
from directpo.errors import ConfigError


@dataclass
class BestModel:
    metric: str = ""  # "" when nothing is tracked
    greater_is_better: bool = False
    keep_checkpoint: bool = False  # load_best_model_at_end
    patience: int = 0  # early_stopping_patience (0: never stop early)
    threshold: float = 0.0  # early_stopping_threshold: the gain that resets the patience count
    value: float | None = None
    step: int | None = None
    checkpoint: str | None = None  # its folder's name in output_dir
    evals_without_improvement: int = 0

    def update(self, step: int, metrics: dict[str, Any]) -> bool:
        """Take an evaluation's metrics; True when it improved and its checkpoint is wanted."""
        if not self.metric:
            return False
        self.check_logged(metrics)  # a name no evaluation logs: never the best, say so now
        value = float(metrics[self.metric])
        # a NaN evaluation (a diverged policy, a bf16 overflow) is never the best: taken first,
        # no later value compared better with it, and load_best_model_at_end kept its weights
        improved = not math.isnan(value) and (
            self.value is None
            or (value > self.value if self.greater_is_better else value < self.value)
        )
        # as transformers' EarlyStoppingCallback: a gain of at most the threshold is a new best
        # (for load_best_model_at_end), but does not reset the patience count
        if improved and (self.value is None or abs(value - self.value) > self.threshold):
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        if not improved:
            return False
        self.value, self.step = value, step
        if self.keep_checkpoint:  # named before it is written: every checkpoint's state agrees
            self.checkpoint = f"checkpoint-{step}"
        return self.keep_checkpoint

    def check_logged(self, names: Iterable[str], config: Any = None) -> None:
        """A metric no evaluation logs refused, its option said as ``config``'s caller set
        it (none: the recipe's key)."""
        names = set(names)
        if self.metric and self.metric not in names:
            sets = [k[5:-5] for k in sorted(names) if _is_set_loss(k)]
            if self.metric == "eval/loss" and sets:  # the default: named sets log none
                raise ConfigError(default_metric_unlogged(sets))
            evaluated = sorted(k for k in names if k.startswith("eval/"))
            # (eval_chat/rewards/margins for a set's eval/chat_rewards/margins: say which)
            close = difflib.get_close_matches(self.metric, evaluated, n=1, cutoff=0.8)
            meant = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{metric_said(config)}: evaluations log no {self.metric}{meant} (they log "
                f"{', '.join(evaluated)})"
            )

    def patience_spent(self) -> bool:
        return self.patience > 0 and self.evals_without_improvement >= self.patience

    def describe(self) -> str:
        if self.value is None:
            return f"no evaluation had {self.metric}"
        return f"step {self.step}, {self.metric} = {self.value:.6g}"

    @classmethod
    def from_config(cls, config: Any, saved: dict[str, Any] | None = None) -> BestModel:
        tracked = config.load_best_model_at_end or config.early_stopping_patience > 0
        metric = metric_name(config.metric_for_best_model) if tracked else ""
        greater = config.greater_is_better
        if greater is None:
            greater = not metric.endswith("loss")
        best = cls(
            metric, greater, config.load_best_model_at_end, config.early_stopping_patience,
            config.early_stopping_threshold,
        )  # fmt: skip
        if saved:  # resume: what the interrupted run had found
            best.value, best.step = saved.get("value"), saved.get("step")
            best.checkpoint = saved.get("checkpoint")
            best.evals_without_improvement = saved.get("evals_without_improvement", 0)
        return best


def metric_said(config: Any) -> str:
    """metric_for_best_model as its caller set it: the recipe's key, ``--metric_for_best_model
    eval_x``, ``metric_for_best_model='eval_x'`` (a flag's and a keyword's user were told the
    recipe's key); the key alone where no one set it (its default is no one's words)."""
    name = "metric_for_best_model"
    value = getattr(config, name, None)
    if value is None:
        return name
    with in_askers_words(config, name, ()):
        return spell_given(name, value)


def _is_set_loss(name: str) -> bool:
    """``eval/<set>_loss``: a named eval set's loss."""
    return name.startswith("eval/") and name.endswith("_loss") and "/" not in name[5:]


def default_metric_unlogged(sets: Iterable[str]) -> str:
    """Named eval sets and no metric_for_best_model: its default, eval_loss, is never logged
    (the user set no such option, which the error named as if they had)."""
    names = ", ".join(f"eval_{name}_loss" for name in sets)
    return (
        "load_best_model_at_end / early_stopping_patience compare metric_for_best_model, by "
        "default eval_loss, which named eval sets do not log (each logs its own): set "
        f"metric_for_best_model to one of theirs ({names}, or another of their metrics)"
    )


def sampled_metrics(config: Any) -> list[str]:
    """What eval_generate logs (eval_samples.evaluate_generations)."""
    rewarded = config.reward_fn or config.online  # (online: the labeller's, without reward_fn)
    return ["eval/completion_length", "eval/kl"] + ["eval/reward"] * bool(rewarded)


def metric_name(name: str | None) -> str:
    """TRL's spellings (``eval_loss``, ``loss``, ``eval_rewards/accuracies``) as logged here."""
    name = name or "eval/loss"
    if name.startswith("eval/"):
        return name
    return "eval/" + name.removeprefix("eval_")
