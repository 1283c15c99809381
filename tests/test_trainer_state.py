"""trainer_state.json as transformers' tools read it (directpo.trainer_state)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_config
from transformers import AutoModelForCausalLM, TrainerState

from directpo.checkpoint import MANIFEST, STATE_FILE, _checksum, read_state
from directpo.tracking import read_metrics
from directpo.trainer import train


def best_run_config(model, data, out, **overrides):
    return tiny_config(
        model, data, out, max_steps=4, eval_file=str(data), eval_steps=2, save_steps=2,
        load_best_model_at_end=True, metric_for_best_model="eval_rewards/margins",
        greater_is_better=False, **overrides,
    )  # fmt: skip


@pytest.fixture
def best_run(tiny_model_dirs, pairs_file, tmp_path):
    out = tmp_path / "run"
    train(best_run_config(tiny_model_dirs["llama"], pairs_file, out), echo=lambda _: None)
    return out


def test_trainer_state_loads_as_transformers_trainer_state(best_run) -> None:
    """transformers' TrainerState.load_from_json took no directpo file (unexpected keyword
    'log_window'); its log_history and best_* fields were missing."""
    state = TrainerState.load_from_json(str(best_run / "checkpoint-4" / STATE_FILE))
    rows = read_metrics(best_run)
    assert (state.global_step, state.max_steps, state.eval_steps, state.save_steps) == (4, 4, 2, 2)
    assert state.epoch == [r for r in rows if "loss" in r][-1]["epoch"]
    assert state.train_batch_size == 6 and state.num_train_epochs >= 1
    train_rows = [e for e in state.log_history if "loss" in e]
    eval_rows = [e for e in state.log_history if "eval_loss" in e]
    assert [e["step"] for e in train_rows] == [1, 2, 3, 4]
    assert [e["step"] for e in eval_rows] == [2, 4]
    logged = {r["step"]: r for r in rows if "loss" in r}
    for entry in train_rows:
        for key in ("loss", "learning_rate", "epoch", "rewards/chosen", "grad_norm"):
            assert entry[key] == logged[entry["step"]][key]
    evals = {r["step"]: r for r in rows if "eval/loss" in r}
    for entry in eval_rows:
        assert entry["eval_rewards/chosen"] == evals[entry["step"]]["eval/rewards/chosen"]
        assert entry["epoch"] == logged[entry["step"]]["epoch"]
        assert not any(key.startswith("eval/") for key in entry)
    # the best (smallest margin) is the first evaluation's, as the tracker says
    assert state.best_model_checkpoint == str(best_run / "checkpoint-2")
    assert state.best_global_step == 2
    assert state.best_metric == evals[2]["eval/rewards/margins"]
    # the checkpoint the improvement writes names itself
    first = TrainerState.load_from_json(str(best_run / "checkpoint-2" / STATE_FILE))
    assert first.best_model_checkpoint == str(best_run / "checkpoint-2")
    assert [e["step"] for e in first.log_history] == [1, 2, 2]
    assert read_state(best_run / "checkpoint-4")["best"]["checkpoint"] == "checkpoint-2"
    # total_flos was 0: transformers' estimate, 6 × parameters (no embeddings) × the tokens the
    # policy forwarded: with prefix_sharing each pair's prompt once, where num_input_tokens_seen
    # (TRL's num_tokens) counts it for both sequences
    model = AutoModelForCausalLM.from_pretrained(best_run)
    per_token = 6 * model.num_parameters(exclude_embeddings=True)
    forwarded = state.total_flos / per_token
    assert forwarded == int(forwarded)
    assert state.num_input_tokens_seen / 2 < forwarded < state.num_input_tokens_seen
    assert 0 < first.total_flos < state.total_flos
    # the RNG state under transformers' name (it was rng_state.pt)
    assert (best_run / "checkpoint-4" / "rng_state.pth").is_file()
    assert not (best_run / "checkpoint-4" / "rng_state.pt").exists()


def test_a_checkpoint_in_the_earlier_flat_layout_still_resumes(
    best_run, tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A checkpoint of an earlier version (directpo's state at the top level, its RNG state in
    rng_state.pt) resumes to the same weights as the uninterrupted run, and the resumed run
    counts on from its total_flos."""
    resumed = tmp_path / "resumed"
    shutil.copytree(best_run, resumed)
    shutil.rmtree(resumed / "checkpoint-4")
    checkpoint = resumed / "checkpoint-2"
    saved = json.loads((checkpoint / STATE_FILE).read_text())
    flat = {**saved["stateful_callbacks"]["directpo"], "global_step": 2, "epoch": 1}
    (checkpoint / STATE_FILE).write_text(json.dumps(flat, indent=2))
    (checkpoint / "rng_state.pth").rename(checkpoint / "rng_state.pt")
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    manifest["files"]["rng_state.pt"] = manifest["files"].pop("rng_state.pth")
    file = checkpoint / STATE_FILE
    manifest["files"][STATE_FILE] = {"size": file.stat().st_size, "blake2b": _checksum(file)}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))
    assert read_state(checkpoint)["best"]["step"] == 2
    config = best_run_config(
        tiny_model_dirs["llama"], pairs_file, resumed, resume_from_checkpoint="latest"
    )
    lines: list[str] = []
    train(config, echo=lines.append)
    assert f"resumed from {checkpoint} at step 2" in lines
    straight = load_file(best_run / "checkpoint-4" / "model.safetensors")
    again = load_file(resumed / "checkpoint-4" / "model.safetensors")
    assert all(torch.allclose(straight[k], again[k], atol=1e-6) for k in straight)
    state = TrainerState.load_from_json(str(resumed / "checkpoint-4" / STATE_FILE))
    assert [e["step"] for e in state.log_history if "loss" in e] == [1, 2, 3, 4]
    straight_state = TrainerState.load_from_json(str(best_run / "checkpoint-4" / STATE_FILE))
    assert state.total_flos == straight_state.total_flos > 0


def test_the_final_folder_has_transformers_results_and_state_files(best_run) -> None:
    """An alignment-handbook user reads train_results.json, eval_results.json, all_results.json
    and trainer_state.json beside the model (transformers' save_metrics / save_state): the
    folder had none of them. eval_results are the saved (best) weights' evaluation."""
    rows = read_metrics(best_run)
    train_rows = [r for r in rows if "loss" in r]
    trained = json.loads((best_run / "train_results.json").read_text())
    assert trained["epoch"] == train_rows[-1]["epoch"]
    # each logged row is the mean of one step here (logging_steps 1)
    assert trained["train_loss"] == pytest.approx(sum(r["loss"] for r in train_rows) / 4)
    assert trained["train_runtime"] > 0 and trained["train_steps_per_second"] > 0
    assert trained["train_samples_per_second"] == pytest.approx(
        6 * trained["train_steps_per_second"], rel=0.01
    )
    evaluated = json.loads((best_run / "eval_results.json").read_text())
    best = next(r for r in rows if r["step"] == 2 and "eval/loss" in r)
    assert evaluated["eval_loss"] == best["eval/loss"]
    assert evaluated["eval_rewards/margins"] == best["eval/rewards/margins"]
    both = json.loads((best_run / "all_results.json").read_text())
    assert both == {**evaluated, **trained}
    state = TrainerState.load_from_json(str(best_run / STATE_FILE))
    assert trained["total_flos"] == state.total_flos > 0  # (it was 0: not counted)
    assert state.global_step == 4 and state.best_model_checkpoint == str(best_run / "checkpoint-2")
    assert len(state.log_history) == len(rows) + 1  # and the train summary


def test_train_returns_trls_train_output_metrics(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """TRL's ``train_result = trainer.train()`` gives ``train_result.metrics`` (a dict:
    ``metrics["train_loss"]``, the alignment-handbook's ``metrics["train_samples"] = n``) and
    ``train_result.training_loss``: directpo's result had neither, and ``metrics["train_loss"]``
    said "list indices must be integers or slices, not str". ``train_metrics`` is what
    train_results.json holds, ``training_loss`` its train_loss; a name as the index of the
    logged rows says where they are."""
    out = tmp_path / "run"
    result = train(tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=2,
                               per_device_train_batch_size=3), echo=lambda _: None)  # fmt: skip
    saved = json.loads((out / "train_results.json").read_text())
    assert result.train_metrics == saved
    assert set(saved) == {
        "epoch", "total_flos", "train_loss", "train_runtime", "train_samples_per_second",
        "train_steps_per_second",
    }  # fmt: skip
    losses = [row["loss"] for row in result.metrics if "loss" in row]
    assert len(losses) == 2 and result.training_loss == pytest.approx(sum(losses) / 2)
    assert result.training_loss == saved["train_loss"]
    assert result.metrics[-1] is result.metrics[len(result.metrics) - 1]  # a list still
    assert result.metrics == read_metrics(out)
    for use in (lambda rows: rows["train_loss"], lambda rows: rows.__setitem__("n", 6)):
        with pytest.raises(TypeError, match=r"TRL's train_result.metrics .* is result.train_m"):
            use(result.metrics)


def test_overwriting_a_run_removes_its_results_files(best_run, tiny_model_dirs, pairs_file):
    """A run that overwrites another and stops before its end must not leave the earlier run's
    results beside its own checkpoints, passing for its own."""
    from directpo.outputs import prepare_output_dir

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, best_run, overwrite_output_dir=True)
    replaced = prepare_output_dir(best_run, config)
    for name in ("train_results.json", "eval_results.json", "all_results.json", STATE_FILE):
        assert best_run / name in replaced


def test_early_stoppings_best_checkpoint_is_named_and_kept(tiny_model_dirs, pairs_file, tmp_path):
    """With early_stopping_patience alone (no load_best_model_at_end), transformers names the
    best evaluation's checkpoint in best_model_checkpoint and save_total_limit keeps it;
    directpo's deleted it (save_total_limit: 1 kept the last checkpoint only)."""
    out = tmp_path / "early"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=6, eval_file=str(pairs_file),
        eval_steps=2, save_steps=2, save_total_limit=1, early_stopping_patience=3,
        metric_for_best_model="eval_rewards/margins", greater_is_better=False,
    )  # fmt: skip
    train(config, echo=lambda _: None)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-6"]
    state = TrainerState.load_from_json(str(out / "checkpoint-6" / STATE_FILE))
    assert state.best_model_checkpoint == str(out / "checkpoint-2")
    assert state.best_global_step == 2


def test_transformers_model_card_generator_reads_the_final_trainer_state(best_run) -> None:
    """transformers' parse_log_history (its model cards' "Training results" table) finds the
    run by the train summary that ends transformers' log; directpo's log had none, and the
    card generator found no training results."""
    from transformers.modelcard import parse_log_history

    state = TrainerState.load_from_json(str(best_run / STATE_FILE))
    train_log, lines, eval_results = parse_log_history(state.log_history)
    trained = json.loads((best_run / "train_results.json").read_text())
    assert train_log == {**trained, "step": 4}
    rows = read_metrics(best_run)
    assert [line["Step"] for line in lines] == [2, 4]
    assert [line["Validation Loss"] for line in lines] == [
        r["eval/loss"] for r in rows if "eval/loss" in r
    ]
    assert lines[0]["Training Loss"] == next(r["loss"] for r in rows if r["step"] == 2)
    assert eval_results["Loss"] == lines[-1]["Validation Loss"]


def test_the_final_state_names_no_checkpoint_that_was_not_written(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Early stopping alone, the last evaluation the best, no checkpoint at the last step: the
    final trainer_state.json named checkpoint-6, which does not exist."""
    out = tmp_path / "run"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=6, eval_file=str(pairs_file),
        eval_steps=2, save_steps=4, early_stopping_patience=3,
        metric_for_best_model="eval_rewards/margins", greater_is_better=True,
    )  # fmt: skip
    train(config, echo=lambda _: None)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    state = TrainerState.load_from_json(str(out / STATE_FILE))
    assert state.best_global_step == 6 and state.best_model_checkpoint is None
    at_4 = TrainerState.load_from_json(str(out / "checkpoint-4" / STATE_FILE))
    assert at_4.best_model_checkpoint == str(out / "checkpoint-4")


def test_training_flos_and_the_rng_file_names() -> None:
    """6 × parameters × tokens (a model without transformers' num_parameters counts them all);
    the RNG file as transformers names it, each process's under several processes."""
    from directpo.random_states import rng_file
    from directpo.trainer_state import training_flos

    layer = torch.nn.Linear(3, 4)  # 16 parameters
    assert (training_flos(layer, 10), training_flos(layer, 0)) == (6 * 16 * 10, 0.0)
    assert (rng_file(0, 1), rng_file(0, 4), rng_file(3, 4)) == (
        "rng_state.pth",
        "rng_state_0.pth",
        "rng_state_3.pth",
    )
