"""What stops a run without being a bug: said in one line, with what is kept."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from directpo.errors import DirectpoError
from directpo.failures import trained_steps_kept


def _run(output_dir: Path, enabled: bool, start_step: int = 0) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        output_dir=output_dir, start_step=start_step, world=types.SimpleNamespace(enabled=enabled)
    )


def _never(run: object, done: int) -> Path:
    raise AssertionError("a torchrun rank alone must not enter the checkpoint's collectives")


@pytest.mark.parametrize(
    ("folders", "said"),
    [
        ((), "no checkpoint holds the 6 step(s) trained (under torchrun only save_steps writes "
             "one): fix it and train again"),
        (("checkpoint-2", "checkpoint-4"), "the newest checkpoint is checkpoint-4, the 2 step(s) "
         "since are not kept (save_steps): fix it and continue with resume_from_checkpoint: "
         "latest"),
        (("checkpoint-6",), "the newest checkpoint is checkpoint-6: fix it and continue with "
         "resume_from_checkpoint: latest"),
    ],
)  # fmt: skip
def test_a_labeller_failing_under_torchrun_says_what_is_kept(tmp_path, folders, said) -> None:
    """Under torchrun a labeller's failure at round 40 (a judge gone) wrote no checkpoint and
    said the labeller's error alone: nothing of the steps trained, of the save_steps
    checkpoint to continue from, or of how. The line now says them (no checkpoint written)."""
    for name in folders:
        (tmp_path / name).mkdir()
    run = _run(tmp_path, enabled=True)
    with pytest.raises(DirectpoError) as failed, trained_steps_kept(run, 6, _never):
        raise DirectpoError("reward_fn 'judge.py:score' raised ConnectionError: gone")
    assert str(failed.value) == f"reward_fn 'judge.py:score' raised ConnectionError: gone; {said}"


def test_a_labeller_failing_at_the_resumed_step_names_its_checkpoint(tmp_path) -> None:
    """A resume whose labeller fails again before a step trains said the error alone; the
    checkpoint it resumed from is named (nothing is written again)."""
    (tmp_path / "checkpoint-4").mkdir()
    run = _run(tmp_path, enabled=False, start_step=4)
    with pytest.raises(DirectpoError) as failed, trained_steps_kept(run, 4, _never):
        raise DirectpoError("judge down")
    assert str(failed.value) == (
        "judge down; the 4 step(s) trained are kept in checkpoint-4: fix it and continue with "
        "resume_from_checkpoint: latest"
    )


def test_a_save_only_model_checkpoint_is_replaced_by_one_that_resumes(tmp_path) -> None:
    """With save_only_model, a labeller failing at the round after a save_steps checkpoint
    named that checkpoint (weights only) and said to continue with resume_from_checkpoint:
    latest, which then refused it as not resumable: the steps' optimizer and schedule were
    lost. A full checkpoint of the step is written in its place."""
    from directpo.trainer_state import trainer_state

    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(
        json.dumps(trainer_state(4, {"model_only": True}, {}))
    )
    saved: list[int] = []

    def save(run: object, done: int) -> Path:
        saved.append(done)
        return folder

    run = _run(tmp_path, enabled=False)
    with pytest.raises(DirectpoError) as failed, trained_steps_kept(run, 4, save):
        raise DirectpoError("judge down")
    assert saved == [4]
    assert str(failed.value).endswith("kept in checkpoint-4: fix it and continue with "
                                      "resume_from_checkpoint: latest")  # fmt: skip
    (folder / "trainer_state.json").write_text(json.dumps(trainer_state(4, {}, {})))
    with pytest.raises(DirectpoError), trained_steps_kept(run, 4, save):
        raise DirectpoError("judge down")
    assert saved == [4]  # a resumable one is kept as it is
    # under torchrun (no checkpoint written there) a weights-only one is not named to resume
    (folder / "trainer_state.json").write_text(
        json.dumps(trainer_state(4, {"model_only": True}, {}))
    )
    torchrun = _run(tmp_path, enabled=True)
    with pytest.raises(DirectpoError) as failed, trained_steps_kept(torchrun, 6, _never):
        raise DirectpoError("judge down")
    assert str(failed.value) == (
        "judge down; no checkpoint holds the 6 step(s) trained (under torchrun only save_steps "
        "writes one) (save_only_model's checkpoint-4 holds weights only): fix it and train again"
    )
