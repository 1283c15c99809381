"""Did the optimizer step move the weights? The silent non-learning guard and ``update_ratio``.

A run can log a healthy loss, rewards and gradient norm while its weights do not move: bf16
weights round small updates away, a learning rate can be below the weights' resolution, a
gradient can be exactly zero. None of the peers checks. Here a fixed sample of the trainable
weights (at most ``SAMPLE`` elements, spread over every tensor by a stride) is read before and
after an optimizer step:

* after the first step whose learning rate is at least a tenth of the peak (so that warmup's
  near-zero first steps do not count) and whose loss is not zero (a batch at the loss's
  minimum has a zero gradient and says nothing), if the gradient is exactly zero or fewer than
  half of the sampled weights whose gradient is non-zero changed, the run stops with one line
  naming the cause and the fix;
* at logging steps, ``update_ratio`` = ‖Δw‖ / ‖w‖ over the sample is logged.

The effective weight of a Kahan-compensated optimizer is the weight plus its compensation, so
updates held back in the compensation buffer count as made. Under FSDP each rank samples its own
shards and the counts are summed over ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from directpo.callers import spell_change, spell_setting
from directpo.distributed import SINGLE_PROCESS, World, all_reduce_sum
from directpo.errors import TrainingStopped
from directpo.health import recipe_rates_both
from directpo.precision import kahan_compensation

SAMPLE = 1 << 16
MOVED_ENOUGH = 0.5  # fraction of weights with a non-zero gradient that must change


@dataclass(frozen=True)
class Snapshot:
    weights: torch.Tensor  # float32 sample of the effective weights
    movable: torch.Tensor  # bool: the weight's gradient is non-zero


@dataclass(frozen=True)
class UpdateStats:
    changed: int  # sampled weights with a non-zero gradient that changed
    movable: int  # sampled weights with a non-zero gradient
    ratio: float  # ‖Δw‖ / ‖w‖ over the whole sample

    @property
    def changed_fraction(self) -> float:
        return self.changed / self.movable if self.movable else 1.0


class UpdateProbe:
    """A strided sample of every trainable tensor (local shards under FSDP)."""

    def __init__(
        self,
        parameters: list[torch.Tensor],
        optimizer: torch.optim.Optimizer | None = None,
        world: World = SINGLE_PROCESS,
        sample: int = SAMPLE,
    ):
        self.parameters = parameters
        self.optimizer = optimizer
        self.world = world
        total = sum(_local(p).numel() for p in parameters)
        self.stride = max(1, math.ceil(total / sample))

    def _sampled(self, tensor: torch.Tensor) -> torch.Tensor:
        return _local(tensor).detach().reshape(-1)[:: self.stride].float()

    def weights(self) -> torch.Tensor:
        parts = []
        for param in self.parameters:
            values = self._sampled(param)
            compensation = kahan_compensation(param, self.optimizer)
            if compensation is not None:
                values = values + self._sampled(compensation)
            parts.append(values)
        return torch.cat(parts).cpu() if parts else torch.zeros(0)

    def before(self) -> Snapshot:
        """The sample and which of its weights have a non-zero gradient (call before step)."""
        movable = [
            self._sampled(p.grad) != 0
            if p.grad is not None
            else torch.zeros_like(self._sampled(p), dtype=torch.bool)
            for p in self.parameters
        ]
        weights = self.weights()
        empty = torch.zeros(0, dtype=torch.bool)
        return Snapshot(weights, torch.cat(movable).cpu() if movable else empty)

    def after(self, snapshot: Snapshot) -> UpdateStats:
        now = self.weights()
        moved = now != snapshot.weights
        sums = all_reduce_sum(
            [
                float((moved & snapshot.movable).sum()),
                float(snapshot.movable.sum()),
                float((now - snapshot.weights).double().pow(2).sum()),
                float(snapshot.weights.double().pow(2).sum()),
            ],
            self.world,
        )
        ratio = math.sqrt(sums[2]) / math.sqrt(sums[3]) if sums[3] > 0 else 0.0
        return UpdateStats(int(sums[0]), int(sums[1]), ratio)

    def rounding_note(self, start: torch.Tensor, dtype: torch.dtype, since_step: int) -> str:
        """How much of the update since ``start`` (a ``weights()`` sample) survives rounding the
        weights to ``dtype``: one sentence for the model card."""
        now = self.weights()
        rounded = now.to(dtype).float()
        changed = now != start
        survived = changed & (rounded != start.to(dtype).float())
        sums = all_reduce_sum(
            [
                float(changed.sum()),
                float(survived.sum()),
                float((rounded - now).double().pow(2).sum()),
                float((now - start).double().pow(2).sum()),
                float(now.numel()),
            ],
            self.world,
        )
        name = str(dtype).removeprefix("torch.")
        since = f" since step {since_step}" if since_step else ""
        if not sums[0]:
            return f"No sampled weight changed in training{since}."
        error = math.sqrt(sums[2]) / math.sqrt(sums[3]) if sums[3] else 0.0
        return (
            f"Rounding to {name} for saving: {sums[1] / sums[0]:.1%} of the weights that "
            f"training changed{since} still differ from their start, and the rounding error "
            f"is {error:.2f}x the norm of the update (over a sample of {int(sums[4]):,} weights)."
        )


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP DTensor, or the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def check_trainable(parameters: list[torch.Tensor]) -> None:
    """Stop before any work if nothing can be trained."""
    if not parameters:
        raise TrainingStopped(
            "no trainable parameters: every weight of the policy is frozen, so training cannot "
            "change it (check lora_target_modules, or the requires_grad of a model passed in)"
        )


def check_update(
    stats: UpdateStats,
    step: int,
    learning_rate: float,
    grad_norm: float,
    loss: float,
    weights_dtype: torch.dtype,
    optimizer_name: str,
) -> bool:
    """Stop with one line if the step just taken left the weights where they were.

    Returns whether the step could be judged: a zero gradient at a zero loss is the loss's
    minimum on this batch (hinge with every margin beyond 1/beta, a saturated sigmoid), not a
    loss cut off from the weights, so the next step is checked instead."""
    if grad_norm == 0.0:
        if loss == 0.0:
            return False
        raise TrainingStopped(
            f"step {step}: the gradient is exactly zero, so no weight can move: the loss does "
            "not depend on the trainable parameters (check loss_type and the data: are the "
            "completions empty after truncation?)"
        )
    if stats.movable == 0 or stats.changed_fraction >= MOVED_ENOUGH:
        return True
    moved = f"{stats.changed_fraction:.1%} of the sampled weights with a non-zero gradient changed"
    if weights_dtype in (torch.bfloat16, torch.float16) and optimizer_name != "adamw_kahan":
        raise TrainingStopped(
            f"step {step}: the update vanished ({moved}): the weights are stored in "
            f"{str(weights_dtype).removeprefix('torch.')}, which rounds away updates below 1/256 "
            f"of a weight; {_keeping_updates()}"
        )
    raise TrainingStopped(
        f"step {step}: the update vanished ({moved}): learning_rate {learning_rate:.3g} moves "
        f"the weights by less than {str(weights_dtype).removeprefix('torch.')} can represent; "
        f"{spell_change('raise', 'learning_rate')} (DPO's usual range: {recipe_rates_both()})"
    )


def _keeping_updates() -> str:
    """The settings that keep a bf16 run's small updates, as the run's caller writes options
    (a recipe's 'master_weights: float32' was said to a flag's and a keyword's user too)."""
    settings = spell_setting(
        ("master_weights", "float32"), ("optimizer", "adamw_kahan"), last=" or "
    )
    return f"{settings} (float32 master weights are the default)"
