"""The end of a run: the final model folder (``finish``, written once, whole, or not at all)
and what ``train`` returns (``TrainResult``), also after a stop."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from directpo.adapter_starts import write_as_plain_lora
from directpo.callers import spell_option
from directpo.checkpoint import write_staged
from directpo.distributed import (
    barrier,
    save_sharded_adapter,
    save_sharded_model,
)
from directpo.errors import CheckpointError
from directpo.failures import what_is_kept
from directpo.logprobs import unwrap_peft
from directpo.model_preparation import CONFIG_AS_LOADED, config_as_loaded
from directpo.outputs import (
    FINAL_STAGING,
    REFERENCE_FOLDER,
    RunRecord,
    publish_final,
    save_final_model,
    save_run_files,
)
from directpo.precision import fold_compensation, holding, kahan_compensation
from directpo.precompute import PrecomputedReference
from directpo.publish import is_complete
from directpo.reference import (
    AdapterReference,
    FrozenModelReference,
    ReferenceProvider,
    moved_reference,
    reload_reference,
)
from directpo.resume import held_out_dtype
from directpo.run import Run
from directpo.sharded_state import consolidated_model
from directpo.sync import REF_ADAPTER, in_ref_adapter, kept_weights, reference_state
from directpo.trainer_state import final_files, train_output_metrics


@dataclass
class TrainResult:
    """What ``train`` returns. Under ``distributed: fsdp`` the trained shards go with the
    process group, so ``policy`` is read back from ``output_dir`` (the final folder) on first
    use, whole, by the process that asks (a run stopped by a signal has no final folder: its
    ``policy`` says to resume it). ``reference`` is None for a run without one; after
    ``merge_lora`` (the base now holds the merge), ``precompute_ref_log_probs`` (its model was
    let go) and under FSDP it is loaded again where the run found it, on first use, as the run
    loaded it (``reload_reference``). A TR-DPO (``sync_ref_model``) run's is the reference as
    it moved, as the policy last trained against it: the one held, or ``output_dir/reference``
    loaded on first use (a run stopped by a signal has none: its checkpoint holds it). ``policy``
    is in eval mode, as from_pretrained gives the saved folder (``policy.train()`` to train it
    on). ``train_metrics`` and ``training_loss`` are TRL's ``TrainOutput.metrics`` and
    ``.training_loss`` (train_loss, train_runtime, ...: what ``train_results.json`` holds);
    ``metrics`` is every logged row."""

    trained: torch.nn.Module | None  # None: read back from output_dir on first use
    kept_reference: ReferenceProvider | None
    tokenizer: Any
    output_dir: Path
    global_step: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    # transformers' TrainOutput.metrics of this call's steps (train_results.json's fields)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    # the signal that stopped the run early (SIGTERM, SIGINT), its checkpoint saved; a caller
    # running more work after train() (the demo, a script) must stop too, not go on with it
    stopped_by: str | None = None
    # the run's reference again, when it was not kept (reference.reload_reference)
    reference_source: Callable[[], ReferenceProvider] | None = None

    def __post_init__(self) -> None:
        self.metrics = LoggedRows(self.metrics)
        # left in training mode, a disable_dropout: false policy sampled and scored with its
        # dropout on (greedy outputs that differed from the saved folder's, and from call to
        # call); its checkpointed layers are plain layers in eval mode too
        if self.trained is not None:
            self.trained.eval()
            as_saved(self.trained)

    @property
    def policy(self) -> torch.nn.Module:
        if self.trained is None and self.stopped_by is not None:  # FSDP's shards are gone
            raise CheckpointError(
                f"the run stopped by {self.stopped_by} after step {self.global_step} trained "
                f"under FSDP: its weights are checkpoint-{self.global_step}'s shards in "
                f"{self.output_dir}, which no process holds whole; resume it "
                f"({spell_option('resume_from_checkpoint', 'latest', in_recipe=False)}) to write "
                "the final model that result.policy reads"
            )
        if self.trained is None:
            from directpo.models import load_causal_lm

            self.trained = load_causal_lm(str(self.output_dir), "auto", trainable=False)
        return self.trained

    @property
    def training_loss(self) -> float:
        """TRL's ``TrainOutput.training_loss``: the mean loss of this call's steps."""
        return self.train_metrics.get("train_loss", math.nan)

    @property
    def reference(self) -> ReferenceProvider | None:
        if self.kept_reference is None and self.reference_source is not None:
            self.kept_reference = self.reference_source()
        return self.kept_reference


class LoggedRows(list[dict[str, Any]]):
    """``TrainResult.metrics``: every logged row, as metrics.jsonl holds them. TRL's
    ``train_result.metrics`` is a dict (``metrics["train_loss"]``, the alignment-handbook's
    ``metrics["train_samples"] = n``), which here met "list indices must be integers or slices,
    not str": a name as the index says where TRL's values are."""

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            raise TypeError(_by_name(index))
        return super().__getitem__(index)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, str):
            raise TypeError(_by_name(index))
        super().__setitem__(index, value)


def _by_name(name: str) -> str:
    return (
        f"result.metrics[{name!r}]: result.metrics is every logged row (a list, as "
        "metrics.jsonl: result.metrics[-1] is the last); TRL's train_result.metrics (train_loss, "
        "train_runtime, ...) is result.train_metrics, a dict"
    )


def as_saved(model: torch.nn.Module) -> None:
    """``model`` (a peft model's base) without what only training's steps needed: no activation
    checkpointing, and ``use_cache`` as the saved folder has it (gradient checkpointing turned it
    off). Kept, ``policy.train()`` in a notebook went on checkpointing every layer and the
    policy's ``save_pretrained()`` wrote use_cache: false. disable_dropout's zeros stay, as
    TRL's model keeps its dropout off: the model as trained."""
    inner = unwrap_peft(model)
    loaded = getattr(inner, CONFIG_AS_LOADED, {}).get("", {})
    if "use_cache" in loaded:
        inner.config.use_cache = loaded.pop("use_cache")
    if hasattr(inner, "activation_checkpointing_disable"):  # transformers >= 5.2x
        if inner.is_activation_checkpointing:
            inner.activation_checkpointing_disable()
    elif getattr(inner, "is_gradient_checkpointing", False):
        inner.gradient_checkpointing_disable()
    _drop_input_grad_hooks(inner)


def _drop_input_grad_hooks(model: torch.nn.Module) -> None:
    """The hooks that make the embeddings' output require grad, which checkpointing with frozen
    embeddings needs: transformers' disable removes only the last one it put on (peft's
    preparation puts on a second), and only for its own peft integration."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    hooks = getattr(embeddings, "_forward_hooks", {})
    for key, hook in list(hooks.items()):
        if getattr(hook, "__name__", "").startswith("make_inputs_require_grad"):
            del hooks[key]
    if hasattr(model, "_require_grads_hooks"):
        model._require_grads_hooks = []


def finish(run: Run, done: int | None = None) -> TrainResult:
    """The final model folder (in ``save_dtype``), written by rank 0: the last weights, or with
    ``load_best_model_at_end`` those of the best evaluation's checkpoint."""
    run.logger.close()
    if run.config.load_best_model_at_end and run.best.checkpoint:
        _load_best(run)
    policy, reference = run.policy, run.reference
    note = ""
    if run.start_sample is not None:  # every rank takes part (the counts are all-reduced)
        note = run.probe.rounding_note(run.start_sample, run.precision.save, run.start_step)
    if run.config.load_best_model_at_end and run.best.checkpoint:
        note = f"{note} Weights of the best evaluation: {run.best.describe()}.".strip()
    note = f"{note} {metrics_precision(run)}".strip()
    if run.masters is not None:
        run.masters.release()  # the policy now holds the float32 masters
    if not run.sharded:  # (FSDP2 writes from its own shard storage: _save_sharded adds them)
        fold_compensation(run.trainable, run.optimizer, run.precision.save)
    rows = run.logger.rows
    summary = train_output_metrics(run, done or run.total_steps)
    if run.config.load_best_model_at_end and run.best.checkpoint:
        # the card's metrics are the saved weights': the best evaluation's, not the last step's
        rows = [row for row in rows if row.get("step", 0) <= run.best.step]
    record = RunRecord(
        run.processor or run.tokenizer, run.config, run.train_summary, rows, note,
        run.from_python, final_files(run, done or run.total_steps, rows, summary),
    )  # fmt: skip
    final = _save_final(run, record)
    if final is not None and final is not policy:  # LoRA merged into the base
        policy, reference = final, None
    run.echo(f"model saved to {run.output_dir}")
    return train_result(run, policy, reference, done or run.total_steps, summary=summary)


def metrics_precision(run: Run) -> str:
    """The card's sentence on what its metrics were computed in, under bf16: the training
    metrics are the bf16 forward's the loss came from (they read low early), the held-out ones
    eval_dtype's (float32 by default); "" for a float32 run, where all are float32."""
    if run.precision.compute == torch.float32:
        return ""
    trained = "Training metrics (loss, rewards/*, logps/*) are those of the bfloat16 forward."
    held_out = held_out_dtype(run)
    if held_out is None:
        return trained
    return f"{trained} Held-out metrics (eval/*) were computed in {held_out} (eval_dtype)."


def train_result(
    run: Run,
    policy: torch.nn.Module | None,
    reference: ReferenceProvider | None,
    done: int,
    stopped_by: str | None = None,
    summary: dict[str, Any] | None = None,
) -> TrainResult:
    """What train() returns: a reference the run no longer holds (its precomputed table, a
    base the merge consumed, FSDP's shards) is loaded again on first use, beside the policy
    (FSDP's is read back on the CPU) in the run's compute dtype; a TR-DPO one, which moved,
    is not."""
    config = run.config
    if run.sharded:  # the shards go with the process group: policy reads the final folder
        policy, reference = None, None
    if isinstance(reference, PrecomputedReference):  # its model was let go after the pass,
        reference = run.kl_reference  # unless eval_generate's KL kept it
    reloaded = None
    device = torch.device("cpu") if run.sharded else run.world.device
    moved = run.output_dir / REFERENCE_FOLDER
    # a bf16 run's policy now holds its float32 masters: its reference is given in float32
    # too (else ImplicitReward(result.policy, result.reference) read the reference's bf16
    # rounding as reward, where `directpo score` of the folder reads float32 on both sides).
    # Not beside a LoRA policy, whose base stays bf16: a float32 reference would mix the two
    mixed = run.masters is not None and not run.sharded
    dtype = torch.float32 if mixed and not hasattr(policy, "peft_config") else None
    if dtype is not None and isinstance(reference, FrozenModelReference):
        reference = _in_float32(run, reference)
    elif mixed and isinstance(reference, AdapterReference) and run.reference_masters:
        # a continued adapter's start, the ``ref`` adapter on the policy: its float32 weights
        run.reference_masters.release(reference.model, in_ref_adapter)
        run.reference_masters = None
    if config.sync_ref_model and not isinstance(reference, FrozenModelReference):
        # TR-DPO's reference, as the final folder holds it (the ``ref`` adapter, switched in
        # on the policy, is no model ImplicitReward can take; a merge or FSDP let it go)
        reference = None
        if stopped_by is None and moved.is_dir():
            reloaded = functools.partial(moved_reference, config, moved, device, dtype)
    elif reference is None and run.reference is not None and not config.sync_ref_model:
        reloaded = functools.partial(reload_reference, config, policy, device, dtype)
    return TrainResult(
        policy, reference, run.tokenizer, run.output_dir, done, run.logger.rows,
        stopped_by=stopped_by, reference_source=reloaded,
        train_metrics=summary if summary is not None else train_output_metrics(run, done),
    )  # fmt: skip


def _in_float32(run: Run, reference: FrozenModelReference) -> FrozenModelReference | None:
    """The held reference with its float32 weights swapped in (those a float32 evaluation
    kept); None where the run held it in bf16 alone (no held-out pairs): the caller loads it
    again in float32 on first use, since upcasting its bf16 copy would keep the rounding."""
    if run.reference_masters is not None:
        run.reference_masters.release(reference.model)
        run.reference_masters = None
        return reference
    dtypes = {param.dtype for param in reference.model.parameters() if param.is_floating_point()}
    return reference if torch.bfloat16 not in dtypes else None


def _save_final(run: Run, record: RunRecord) -> torch.nn.Module | None:
    """The final folder, written whole into a staging folder by rank 0 (FSDP: every rank
    takes part) and moved into ``output_dir`` (``publish_final``); returns the model it holds
    on rank 0. A failed write (a full disk) stops in one line and leaves ``output_dir`` and its
    checkpoints as they were."""
    world, output_dir = run.world, run.output_dir
    staging = output_dir / FINAL_STAGING
    written: dict[str, torch.nn.Module] = {}

    def write_and_publish() -> None:
        if not run.sharded:
            if run.config.sync_ref_model:  # before the policy's save merges or casts it
                _save_moved_reference(run, staging / REFERENCE_FOLDER)
            written["model"] = save_final_model(staging, run.policy, record)
        publish_final(staging, output_dir)

    problem = write_staged(
        staging,
        world,
        every_rank=(lambda: _save_sharded(run, record, staging)) if run.sharded else None,
        on_main=write_and_publish,
    )
    if problem is not None and is_complete(staging):
        raise CheckpointError(
            f"cannot finish moving the final model into {output_dir} ({problem}); it is written "
            f"whole in {staging}: the next directpo train, score or ImplicitReward.from_run of "
            f"{output_dir} finishes the move"
        )
    if problem is not None:
        kept = what_is_kept(output_dir)
        raise CheckpointError(f"cannot write the final model to {output_dir} ({problem}); {kept}")
    barrier(world)
    return written.get("model")


def _save_sharded(run: Run, record: RunRecord, folder: Path) -> None:
    """FSDP2's final folder: full weights written shard by shard and consolidated into
    safetensors files, or the adapter alone gathered; no rank holds the whole model, except
    with ``merge_lora`` (merging needs the whole base: it is gathered on rank 0)."""
    policy, world, dtype = run.policy, run.world, run.precision.save
    if run.config.sync_ref_model:
        _save_moved_reference(run, folder / REFERENCE_FOLDER)
    if hasattr(policy, "peft_config") and run.config.merge_lora:
        whole = consolidated_model(run.scorer, policy, dtype, world)
        if world.is_main:
            save_final_model(folder, whole, record)
        return
    if hasattr(policy, "peft_config"):
        # an evaluation's forward leaves FSDP2's root gathered, its parameters then views of
        # a freed buffer (a modules_to_save copy of the final norm was written as garbage)
        run.scorer.reshard()
        save_sharded_adapter(folder, policy, dtype, world)
    else:
        compensations = {
            name: compensation
            for name, param in run.scorer.named_parameters()
            if (compensation := kahan_compensation(param, run.optimizer)) is not None
        }
        save_sharded_model(folder, run.scorer, policy, dtype, world, compensations)
    if world.is_main:
        save_run_files(folder, policy, record)


def _load_best(run: Run) -> None:
    """The best checkpoint's weights into the policy, for the final folder."""
    from directpo.checkpoint import load_checkpoint

    path = run.output_dir / run.best.checkpoint
    masters = run.masters.in_model() if run.masters is not None else contextlib.nullcontext()
    with masters:
        sharded = run.scorer if run.sharded else None
        load_checkpoint(path, run.policy, run.optimizer, run.scheduler, sharded, weights_only=True)
    if run.config.sync_ref_model:  # the reference that policy trained against, for reference/
        from directpo.resume import restore_reference

        restore_reference(run, path)
    run.echo(f"loaded the best model: {run.best.describe()}")


def _save_moved_reference(run: Run, folder: Path) -> None:
    """TR-DPO: the reference as the policy last trained against it (not the starting model),
    as a model folder, ``output_dir/reference``: the reference the final policy's implicit
    reward is relative to (``directpo score`` and ``ImplicitReward.from_run`` take it). A bf16
    reference is written as its float32 weights (held beside it), as the policy's masters. A
    full copy of the model (or, with LoRA, the frozen ``ref`` adapter on the same base). Under
    FSDP every rank calls."""
    reference = run.reference
    if isinstance(reference, AdapterReference):  # the ref adapter: an adapter folder
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {name.removeprefix("model."): value for name, value in reference_state(run).items()}
        if not run.world.is_main:
            return
        policy = run.policy
        tensors = get_peft_model_state_dict(policy, state_dict=state, adapter_name=REF_ADAPTER)
        folder.mkdir(parents=True)
        weights = {key: value.contiguous() for key, value in tensors.items()}
        save_file(weights, folder / "adapter_model.safetensors", metadata={"format": "pt"})
        saved = copy.copy(policy.peft_config[REF_ADAPTER])
        # the ref adapter ran on the base a PiSSA/OLoRA init rewrote (W_res), which peft
        # rebuilds on load only when the folder names that init: as written (plain), it was
        # put on the stored base, another reference than training's
        trained = [c for name, c in policy.peft_config.items() if name != REF_ADAPTER]
        saved.init_lora_weights = trained[0].init_lora_weights
        saved.save_pretrained(str(folder))
        write_as_plain_lora(policy, folder)  # ... unless written on the stored base
    elif run.sharded:  # as below: its float32 weights where it keeps them, else as stored
        held = kept_weights(run)
        stored = next(p.dtype for p in reference.scorer.parameters() if p.is_floating_point())
        dtype = torch.float32 if held else stored
        save_sharded_model(folder, reference.scorer, reference.model, dtype, run.world, None, held)
    else:  # its float32 weights where it keeps them (bf16: sync.followed_weights), as the
        # policy's masters are saved: with alpha 1 the two are then equal, every reward 0
        kept = run.reference_masters._master_of if run.reference_masters is not None else {}
        as_kept = holding([reference.model], lambda tensor: kept.get(id(tensor)))
        with config_as_loaded(reference.model), as_kept:
            reference.model.save_pretrained(folder, safe_serialization=True)
