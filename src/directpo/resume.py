"""Resuming a run from a checkpoint: its weights, optimizer moments, schedule position, RNG and
data order, with this run's hyperparameters; what the replaced trajectory wrote after that step
is moved aside (checkpoints) or removed (per-step samples, online rounds)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from directpo.best import BestModel
from directpo.callers import (
    Blank,
    keeping_sources,
    said,
    spell_change,
    spell_option,
    spell_setting,
)
from directpo.checkpoint import (
    REFERENCE_FILE,
    load_checkpoint,
    read_state,
    resolve_checkpoint,
    retire_checkpoints_after,
    start_from,
)
from directpo.distributed import on_main
from directpo.errors import CheckpointError, ConfigError
from directpo.lora_options import lora_options_of
from directpo.model_identity import base_change, reference_change
from directpo.optimizers import fit_saved_groups, no_decay_ids
from directpo.options import replaced
from directpo.outputs import remove
from directpo.pair_store import PairStore
from directpo.precision import evaluates_in_float32
from directpo.random_states import resume_note
from directpo.resumable import resume_as_given, resuming
from directpo.sources import FixedPairs, OnlineRounds, pairs_fingerprint, said_change
from directpo.step import PairStats
from directpo.sync import load_reference_state
from directpo.trainer_state import STATE_FILE, logged_rows
from directpo.yaml_interpolation import read_run_record

if TYPE_CHECKING:
    from directpo.config import DPOConfig
    from directpo.distributed import World
    from directpo.run import Run

# param-group keys that come from this run's options (build_optimizer and the scheduler)
CONFIGURED = frozenset({"initial_lr", "betas", "beta1", "beta2", "eps", "weight_decay"})


def _logged_rows(checkpoint: Path) -> list[dict[str, Any]]:
    """The checkpoint's log as metrics.jsonl's rows: trainer_state.json (transformers' layout)
    gives every entry an epoch, which an evaluation's row here does not carry."""
    rows = logged_rows(checkpoint)
    for row in rows:
        if all(key.startswith("eval/") for key in row if key not in ("step", "epoch")):
            row.pop("epoch", None)
    return rows


def resume(run: Run) -> None:
    """Weights (the float32 masters under mixed precision), optimizer, schedule, RNG and the
    logging window of the checkpoint that ``resume_from_checkpoint`` names."""
    config, world = run.config, run.world
    with resume_as_given(config):
        checkpoint = on_main(
            world,
            lambda: resolve_checkpoint(config.resume_from_checkpoint, run.output_dir, run.echo),
        )
    if not config.sync_ref_model and (Path(checkpoint) / REFERENCE_FILE).is_file():
        raise CheckpointError(  # (it went on against the starting model without a word)
            f"checkpoint {checkpoint} was written by TR-DPO (sync_ref_model): its reference has "
            "moved since the start; resume with "
            f"{spell_option('sync_ref_model', True, in_recipe=False)} (or delete its "
            f"{REFERENCE_FILE} to go on as plain DPO against the starting model)"
        )
    weights = str(run.precision.master).removeprefix("torch.")
    _check_optimizer(Path(checkpoint), config.optimizer, weights)
    _check_adapter(Path(checkpoint), run.policy)
    options = [
        {k: v for k, v in group.items() if k != "params"} for group in run.optimizer.param_groups
    ]
    no_decay = no_decay_ids(run.policy, run.masters)

    def fit(saved: dict[str, Any]) -> dict[str, Any]:  # saved with(out) weight decay's groups
        return fit_saved_groups(saved, run.optimizer, run.trainable, no_decay)

    sharded = run.scorer if run.sharded and run.masters is None else None
    with run.masters.in_model() if run.masters is not None else contextlib.nullcontext():
        state = load_checkpoint(
            checkpoint, run.policy, run.optimizer, run.scheduler, sharded, fit, rank=world.rank
        )
    # the refusals first (TR-DPO's reference, other pairs, another batch, a step past this
    # run's end): a note on random states or the schedule said before them was about a resume
    # that never ran
    if config.sync_ref_model:
        restore_reference(run, Path(checkpoint))
    try:
        source_notes = list(run.source.restore(state, str(checkpoint)))
    except ConfigError as error:
        raise _with_data_changes(error, config, Path(checkpoint)) from None
    if state["global_step"] > run.total_steps:  # the final folder would get a later step's
        raise ConfigError(
            f"{resuming(str(checkpoint))} is at step {state['global_step']}, past this run's "
            f"{run.total_steps} steps: {spell_change('raise', 'max_steps', 'num_train_epochs')}, "
            "or resume from an earlier checkpoint"
        )
    if note := resume_note(Path(checkpoint), world.size):
        run.echo(note)
    _keep_this_runs_schedule(run, options, _saved_total(Path(checkpoint)))
    for note in source_notes:
        run.echo(note)
    _say_objective_changes(run, state, state["global_step"])
    run.start_step, run.window = state["global_step"], PairStats(**state["log_window"])
    run.num_tokens = state.get("num_tokens", 0)  # (not in checkpoints of earlier versions)
    run.total_flos = state.get("total_flos", 0.0)
    run.best = BestModel.from_config(config, state.get("best"))
    run.evaluation_pending = state.get("evaluation_pending", False)  # (trainer.py runs it)
    run.logged_before = _logged_rows(Path(checkpoint))  # (wherever it is)
    _say_eval_dtype_change(run, state, Path(checkpoint))
    _say_compute_dtype_change(run, state)
    _say_eval_pairs_change(run, state)
    run.echo(f"resumed from {checkpoint} at step {run.start_step}")
    on_main(world, lambda: retire_checkpoints_after(run.output_dir, run.start_step, run.echo))
    if world.is_main:
        _remove_outputs_after(run)


def run_seed(config: DPOConfig, world: World, echo: Callable[[str], None]) -> DPOConfig:
    """``config`` with ``seed: null`` (torchtune's recipes: a seed drawn each run) made the
    seed this run uses, said in a line: a resumed run's is its checkpoint's (config.yaml), so
    that the data order and random state go on as they were; a new run's is drawn on rank 0
    (every rank takes it) and recorded in config.yaml, from which a rerun repeats the run."""
    if config.seed is not None:
        return config

    # (as its caller wrote it: seed=None to train(), a recipe's seed: null)
    unset = said("seed", None)

    def chosen() -> tuple[int, str]:
        if config.resume_from_checkpoint:
            checkpoint = resolve_checkpoint(
                config.resume_from_checkpoint, config.output_dir, lambda line: None
            )
            saved = read_run_record(str(checkpoint / "config.yaml")).get("seed")
            if not isinstance(saved, int):  # (an earlier version's: it recorded no config)
                raise ConfigError(
                    f"{unset}: {checkpoint} records no seed to resume with; "
                    f"{spell_setting(('seed', Blank('N')))}, the seed the run trained with"
                )
            return saved, f"{unset}: resuming with {checkpoint.name}'s seed {saved}"
        drawn = secrets.randbelow(2**31)
        return drawn, f"{unset}: drew seed {drawn} (recorded in config.yaml)"

    seed, line = on_main(world, chosen)
    echo(line)
    return keeping_sources(config, replaced(config, seed=seed))


# the options that decide what a step optimizes: a checkpoint records them, and a resume that
# changes one says so (it trained on silently: the curves then change for no visible reason)
OBJECTIVE = (
    "loss_type", "loss_weights", "beta", "label_smoothing", "simpo_gamma", "discopop_tau",
    "ld_alpha", "use_weighting", "f_divergence_type", "f_alpha_divergence_coef", "rpo_alpha",
    "router_aux_loss_coef", "ref_model_mixup_alpha", "ref_model_sync_steps",
    "assistant_only_loss",  # which tokens log π(y|x) sums: a tool's result's, or not
)  # fmt: skip

# the options that decide the pairs' token ids and order: a resume refused for other pairs
# names those changed since the checkpoint (the refusal listed what might differ)
DATA_OPTIONS = (
    "train_file", "dataset_name", "dataset_config", "dataset_train_split", "dataset_mixture",
    "dataset_streaming", "prompt_column", "chosen_column", "rejected_column", "system_column",
    "tokenizer_name_or_path", "chat_template", "chat_template_kwargs", "max_length",
    "max_prompt_length", "max_completion_length", "skip_invalid_rows", "data_seed",
)  # fmt: skip


# assistant_only_loss changed where a checkpoint records no effect (written before it did)
UNKNOWN_EFFECT = " (a change only where a completion holds a message the model does not write)"


def objective(config: DPOConfig) -> dict[str, Any]:
    """The values of ``OBJECTIVE`` in ``config``, as trainer_state.json holds them."""
    return json.loads(json.dumps({name: getattr(config, name) for name in OBJECTIVE}))


def leaves_tokens_out(run: Run) -> bool | None:
    """Whether assistant_only_loss leaves tokens of this run's pairs unscored (a tool's result,
    a user turn inside a completion); None where that is not known: off (the pairs then hold
    no spans). Online rounds' completions are the policy's samples, one reply each: nothing is
    left out. A checkpoint records it."""
    if isinstance(run.source, OnlineRounds):
        return False
    if not run.config.assistant_only_loss or not isinstance(run.source, FixedPairs):
        return None
    pairs = run.source.pairs.pairs
    if isinstance(pairs, PairStore):
        return bool(pairs.unscored)
    return any(any(pair.unscored) for pair in pairs)


def _assistant_only_effect(run: Run, state: dict[str, Any]) -> bool | None:
    """Whether the side of a resume that has assistant_only_loss on (this run, or the
    checkpoint) leaves tokens out; None where it is not known (a checkpoint written before
    its record, now resumed with it off)."""
    if isinstance(run.source, OnlineRounds) or run.config.assistant_only_loss:
        return leaves_tokens_out(run)
    return state.get("leaves_tokens_out")


def _say_objective_changes(run: Run, state: dict[str, Any], step: int) -> None:
    saved = state.get("objective") or {}  # (none in a checkpoint from before they were)
    # assistant_only_loss turned on or off changes nothing where the side that has it on left
    # no token out (plain-text pairs, replies of one message, online samples): not said; where
    # that is not known, said with the condition under which it changes the objective
    effect = _assistant_only_effect(run, state)
    changed = [
        f"{name} {saved[name]} -> {value}"
        + (UNKNOWN_EFFECT if name == "assistant_only_loss" and effect is None else "")
        for name, value in objective(run.config).items()
        if name in saved
        and saved[name] != value
        and not (name == "assistant_only_loss" and effect is False)
    ]
    base = base_change(state.get("adapted_base"), run.model_files.get("adapted_base"))
    folded = bool(base) and state.get("reference") == state.get("adapted_base")
    if base:  # (the checkpoint holds the adapters alone: they now sit on other weights)
        run.echo(
            f"resume: {base} changed since the checkpoint: the trained adapters now apply to "
            f"other weights{' (the reference, the base with adapters off, too)' if folded else ''}"
            f", another policy from step {step} (its loss and rewards jump there); resume with "
            "the base as it was, or start a new output_dir"
        )
    reference = reference_change(state.get("reference"), run.model_files.get("reference"))
    if reference and not folded:
        changed.append(reference)  # (another reference is another objective: it went unsaid)
    if changed:
        run.echo(
            f"resume: {', '.join(changed)} changed since the checkpoint; the steps after "
            f"{step} optimize this run's objective (the loss and reward curves change there)"
        )


def _with_data_changes(error: ConfigError, config: DPOConfig, checkpoint: Path) -> ConfigError:
    """``error`` (the checkpoint's pairs are not this run's) with the options that decide the
    pairs and differ from the checkpoint's config.yaml, where it has one."""
    try:
        saved = read_run_record(str(checkpoint / "config.yaml"))
    except ConfigError:
        return error  # (a checkpoint of an earlier version: no record)
    now = config.record()
    changed = [
        said_change(name, saved[name], now[name])
        for name in DATA_OPTIONS
        if name in saved and saved[name] != now[name]
    ]
    if not changed:
        return error
    return ConfigError(f"{error} (changed since the checkpoint: {', '.join(changed)})")


def held_out_dtype(run: Run) -> str | None:
    """The dtype the held-out pair metrics are computed in (None: the run has none); each
    checkpoint records it, so that a resume that evaluates otherwise says so."""
    if not any(pair_set.pairs for pair_set in run.evals.values()):
        return None
    return "float32" if run.eval_float32 else str(run.precision.compute).removeprefix("torch.")


def held_out_pairs(run: Run) -> str | None:
    """A checksum of the held-out pairs (each set's, by name; None: the run has none); each
    checkpoint records it, so that a resume evaluating other pairs says so."""
    if not any(pair_set.pairs for pair_set in run.evals.values()):
        return None
    sets = sorted((name, pairs_fingerprint(pair_set.pairs)) for name, pair_set in run.evals.items())
    return hashlib.blake2b(json.dumps(sets).encode(), digest_size=16).hexdigest()


def _say_eval_pairs_change(run: Run, state: dict[str, Any]) -> None:
    """A resume evaluating other held-out pairs than the checkpoint's run (another eval_file,
    its rows edited): the eval curves step there, and the best value so far, measured on the
    others, was compared with this run's without a word."""
    before, now = state.get("eval_pairs"), held_out_pairs(run)
    if before is None or now is None or before == now:
        return  # (a checkpoint written before the record says nothing)
    best = run.best
    compared = (
        f"; the best {best.metric} so far ({best.value:.6g}, step {best.step}) was measured on "
        "the others, compared as it is with this run's"
        if best.value is not None and best.metric.startswith("eval")
        else ""
    )
    run.echo(
        f"resume: the held-out pairs differ from those evaluated up to step "
        f"{state['global_step']}: the eval curves step there{compared}"
    )


def _say_eval_dtype_change(run: Run, state: dict[str, Any], checkpoint: Path) -> None:
    """A checkpoint whose held-out metrics were computed in another dtype than this run's (one
    written before eval_dtype, whose bf16 runs evaluated in bf16; or another eval_dtype): the
    eval curves step at the resume, and the best value so far is compared as it was read."""
    now = held_out_dtype(run)
    before = state["eval_dtype"] if "eval_dtype" in state else _evaluated_in(checkpoint)
    if now is None or before is None or before == now:
        return
    best = run.best
    compared = (
        f"; the best {best.metric} so far ({best.value:.6g}, step {best.step}) is a {before} "
        f"value, compared as it is with this run's {now} ones"
        if best.value is not None
        else ""
    )
    run.echo(
        f"resume: the held-out metrics up to step {state['global_step']} were computed in "
        f"{before}, from here in {now} (eval_dtype): the eval curves step there{compared}"
    )


def _say_compute_dtype_change(run: Run, state: dict[str, Any]) -> None:
    """A checkpoint trained in another compute dtype (a float32 run resumed with bf16: true,
    or back): the policy's and the reference's log-probs are computed otherwise from here,
    which went unsaid. (A checkpoint written before its record says nothing.)"""
    before, now = state.get("compute_dtype"), str(run.precision.compute).removeprefix("torch.")
    if before is not None and before != now:
        run.echo(
            f"resume: the steps up to {state['global_step']} computed in {before}, from here "
            f"in {now} (dtype / bf16): the loss and reward curves may step there"
        )


def _evaluated_in(checkpoint: Path) -> str | None:
    """The dtype a checkpoint that records none (written before eval_dtype's record) had its
    held-out metrics computed in, from its config.yaml; None without evaluations or a record."""
    try:
        logged = json.loads((checkpoint / STATE_FILE).read_text()).get("log_history") or []
        options = read_run_record(str(checkpoint / "config.yaml"))
    except (OSError, ValueError, ConfigError):
        return None
    if not isinstance(options, dict) or not any(
        key.startswith("eval_") for entry in logged for key in entry
    ):
        return None
    compute = options.get("dtype")
    if compute != "bfloat16":
        return "float32" if compute == "float32" else None
    if "eval_dtype" not in options:  # before eval_dtype: bf16 runs evaluated in bf16
        return "bfloat16"
    try:
        float32 = evaluates_in_float32(
            options["eval_dtype"], torch.bfloat16, options.get("attn_implementation", ""),
            options.get("distributed") == "fsdp",
        )  # fmt: skip
    except ConfigError:
        return None
    return "float32" if float32 else "bfloat16"


def _check_optimizer(checkpoint: Path, optimizer: str, weights: str) -> None:
    """The checkpoint's optimizer state is that of the optimizer that wrote it (AdamW's moments,
    RMSprop's square averages, torch-optimi's Kahan compensation, kept for bf16 weights only):
    another one, or Kahan's over bf16 weights from a state over float32 ones, cannot continue
    from it (it failed later, with a KeyError or AttributeError traceback or "cannot restore
    ('step')")."""
    try:
        state = read_state(checkpoint)
        written, written_weights = state.get("optimizer"), state.get("weights")
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return  # load_checkpoint names a missing or damaged file
    if written is None:
        return  # a checkpoint from before these were recorded
    # Kahan's state over float32 weights has no compensation, which bf16 weights then need (the
    # other way resumes: float32 masters need none)
    missing = written_weights == "float32" and weights != "float32"
    if written == optimizer and (optimizer != "adamw_kahan" or not missing):
        return
    # an FSDP checkpoint holds shards only (sharded/): no folder a new run can start from
    anew = "" if (checkpoint / "sharded").is_dir() else (
        f", or {start_from(checkpoint)}"
    )  # fmt: skip
    if written == optimizer:
        raise CheckpointError(
            f"checkpoint {checkpoint}: written with optimizer: {optimizer} over {written_weights}"
            f" weights, this run's are {weights} (master_weights), for which its state has no "
            f"Kahan compensation: resume with master_weights: {written_weights}{anew}"
        )
    raise CheckpointError(
        f"checkpoint {checkpoint}: written with optimizer: {written}, this run has "
        f"optimizer: {optimizer}; its optimizer state fits only {written}: resume with "
        f"optimizer: {written}{anew}"
    )


# the lora_* options that decide what a checkpoint's adapter weights are (their shapes, which
# modules carry them, how they scale the update); lora_dropout may change on resume
ADAPTER_SHAPE = (
    "lora_r", "lora_alpha", "lora_target_modules", "lora_target_parameters",
    "lora_modules_to_save", "use_dora", "use_rslora",
)  # fmt: skip


def _check_adapter(checkpoint: Path, policy: Any) -> None:
    """The checkpoint's weights are those of this run's adapter settings: a LoRA checkpoint
    resumed without LoRA, a full one with it, or an adapter of another rank failed with
    "'LlamaForCausalLM' object has no attribute 'peft_config'", a list of missing keys or a
    screenful of size mismatches; another lora_alpha or rsLoRA loaded and went on with each
    update scaled otherwise than it was trained, without a word."""
    if (checkpoint / "sharded").is_dir():
        return  # FSDP's checkpoint: its state names the parameters (load_sharded says)
    mine = policy.peft_config[policy.active_adapter] if hasattr(policy, "peft_config") else None
    try:
        saved = _saved_adapter(checkpoint)
    except (OSError, ValueError, TypeError):
        return  # load_checkpoint names a damaged file
    if saved is None and mine is None:
        return
    saved_options = None if saved is None else lora_options_of(saved)
    my_options = None if mine is None else lora_options_of(mine)
    if saved_options is not None and my_options is not None:
        differ = [key for key in ADAPTER_SHAPE if saved_options[key] != my_options[key]]
        if differ:
            said = [  # (as the caller writes them: lora_alpha=32 to train())
                ", ".join(spell_option(k, o[k], in_recipe=False) for k in differ)
                for o in (saved_options, my_options)
            ]
            raise _other_adapter(checkpoint, *said, said[0])
        return
    if None not in (saved, mine) and type(saved) is type(mine):
        return  # two adapters of a kind no lora_* option expresses: loading them says
    # whole weights on one side, or adapters of other kinds (a peft_config from Python, as an
    # IA3Config: "resume with lora_r: IA3Config" named no setting that exists)
    fix = written = _adapter_kind(saved)
    if written.startswith("peft_config"):
        fix = f"train(peft_config=...) of the {type(saved).__name__} it was written with"
    raise _other_adapter(checkpoint, written, _adapter_kind(mine), fix)


def _other_adapter(checkpoint: Path, saved: str, mine: str, fix: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {checkpoint}: written with {saved}, this run has {mine}; its weights fit "
        f"only its own adapter settings: resume with {fix}, or {start_from(checkpoint)}"
    )


def _adapter_kind(adapter: Any) -> str:
    """``lora_r: r`` (0: whole weights; as the caller writes it), or the kind of an adapter
    other than LoRA."""
    if adapter is None:
        return spell_option("lora_r", 0, in_recipe=False)
    kind = getattr(adapter, "peft_type", None)
    if getattr(kind, "value", kind) == "LORA":
        return spell_option("lora_r", adapter.r, in_recipe=False)
    return f"peft_config {type(adapter).__name__}"


def _saved_adapter(checkpoint: Path) -> Any:
    """The peft config of the checkpoint's adapter, or None when it holds whole weights."""
    if not (checkpoint / "adapter_model.safetensors").is_file():
        return None
    from peft import PeftConfig

    return PeftConfig.from_pretrained(str(checkpoint))


def _remove_outputs_after(run: Run) -> None:
    """Per-step files the replaced trajectory wrote after the resumed step (eval_generate's
    samples, online rounds not yet begun): the resumed run writes its own, or none if shorter."""
    step, folder = run.start_step, run.output_dir
    stale = [p for p in folder.glob("samples/step-*.jsonl") if _number(p.stem) > step]
    if isinstance(run.source, OnlineRounds):
        per_round = run.source.steps_per_round
        rounds = folder.glob("online/round-*.jsonl")
        stale += [p for p in rounds if _number(p.stem) * per_round >= step]
    remove(stale)


def _number(stem: str) -> int:
    """N of ``step-N`` / ``round-N`` (-1 for a name of another form)."""
    tail = stem.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _saved_total(checkpoint: Path) -> int | None:
    """The total steps (max_steps / num_train_epochs') of the run that wrote ``checkpoint``, as
    its trainer_state.json records them; None where it does not (an earlier layout)."""
    try:
        total = json.loads((checkpoint / STATE_FILE).read_text()).get("max_steps")
    except (OSError, ValueError, AttributeError):
        return None
    return total if isinstance(total, int) and total > 0 else None


def _keep_this_runs_schedule(
    run: Run, options: list[dict[str, Any]], saved_total: int | None = None
) -> None:
    """A checkpoint restores the optimizer's moments and the schedule's position; the
    hyperparameters (``options``: this run's param groups before loading) and the learning-rate
    schedule stay this run's. Unchanged options give the checkpoint's values exactly; changed
    ones (a new learning_rate, max_steps, warmup or weight_decay on resume) take effect from
    the next step, and are said (loaded as they were, they would silently not). Another total
    (``saved_total``: the checkpoint's) is said whatever the schedule: a constant one's rate
    does not change with it, but the run now ends elsewhere."""
    optimizer, scheduler = run.optimizer, run.scheduler
    changed = set()
    for group, mine in zip(optimizer.param_groups, options, strict=True):
        for key, value in mine.items():
            # only the options' keys: a group also holds optimizer state (torch-optimi keeps
            # its step count and a "set up" flag there; resetting it restarts Adam's bias
            # correction)
            if key in CONFIGURED and group.get(key) != value:
                changed.add(key)
                group[key] = value
    scheduler.base_lrs = [mine["initial_lr"] for mine in options]
    for group, base, factor in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        lr = base * factor(scheduler.last_epoch)
        if group["lr"] != lr:
            changed.add("lr schedule")
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    names = {"initial_lr": "learning_rate", "betas": "adam_beta1/2", "eps": "adam_epsilon"}
    said = sorted(
        {names.get(k, k) for k in changed} & {*names.values(), "lr schedule", "weight_decay"}
    )
    if saved_total is not None and saved_total != run.total_steps:
        said.append(
            f"total steps (max_steps / num_train_epochs) {saved_total} -> {run.total_steps}"
        )
    if said:
        lr = optimizer.param_groups[0]["lr"]
        run.echo(
            f"resume: {', '.join(said)} changed since the checkpoint; the optimizer state "
            f"continues under this run's values (learning rate now {lr:.3g})"
        )


def restore_reference(run: Run, checkpoint: Path) -> None:
    """TR-DPO: the reference as it was at the checkpoint (it has moved since the start)."""
    file = checkpoint / REFERENCE_FILE
    if not file.is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint}: no {REFERENCE_FILE}: it was written without "
            "sync_ref_model, so the moved reference cannot be restored"
        )
    try:
        load_reference_state(run, load_file(file), f"checkpoint {file}")
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {file}: cannot restore ({exc})") from None
