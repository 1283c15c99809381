from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

import directpo.random_states as random_states
from directpo.random_states import current_state, resume_note, rng_file, state_file


def saved(folder: Path, *names: str) -> Path:
    folder.mkdir()
    for name in names:
        torch.save(current_state(), folder / name)
    return folder


def test_each_process_writes_and_resumes_its_own_random_state(tmp_path) -> None:
    """Process 0's state alone was saved, and every rank resumed from it: a rank whose stream
    had parted (its own dropout masks, its own sampling) went on with process 0's numbers."""
    assert [rng_file(r, 1) for r in (0,)] == ["rng_state.pth"]  # transformers' names
    assert [rng_file(r, 2) for r in (0, 1)] == ["rng_state_0.pth", "rng_state_1.pth"]
    both = saved(tmp_path / "checkpoint-2", "rng_state_0.pth", "rng_state_1.pth")
    assert [state_file(both, r).name for r in (0, 1)] == ["rng_state_0.pth", "rng_state_1.pth"]
    assert resume_note(both, 2) is None


@pytest.mark.parametrize(
    "files, processes, chosen, said",
    [
        # fewer processes now: process 0 resumes its own, the rest of the streams are gone
        (["rng_state_0.pth", "rng_state_1.pth"], 1, ["rng_state_0.pth"], "of 2 processes"),
        # more: ranks without a file of their own take process 0's
        (["rng_state_0.pth", "rng_state_1.pth"], 3, ["rng_state_0.pth", "rng_state_1.pth",
                                                     "rng_state_0.pth"], "this run has 3"),
        (["rng_state.pth"], 2, ["rng_state.pth"] * 2, "of 1 process, this run has 2"),
        # an earlier directpo's: process 0's alone under several, rng_state.pt of one process
        (["rng_state_0.pth"], 2, ["rng_state_0.pth"] * 2, "process 0's random state only"),
        (["rng_state.pt"], 1, ["rng_state.pt"], None),
        (["rng_state_0.pth"], 1, ["rng_state_0.pth"], None),
    ],
)  # fmt: skip
def test_another_process_count_takes_process_0s_state_and_says_so(
    tmp_path, files, processes, chosen, said
) -> None:
    folder = saved(tmp_path / "checkpoint-2", *files)
    assert [state_file(folder, r).name for r in range(processes)] == chosen
    note = resume_note(folder, processes)
    if said is None:
        assert note is None
    else:
        assert note.startswith("resume: checkpoint-2 holds ") and said in note, note
        assert "\n" not in note


def test_resume_on_a_machine_with_fewer_gpus_restores_the_gpus_it_has(monkeypatch) -> None:
    """rng_state.pt holds one CUDA state per GPU the saving process saw (8 on a node where all
    were visible); resumed where fewer are, torch indexed past the devices, an IndexError that
    surfaced at CUDA's lazy initialisation. The states of the GPUs present are restored."""
    state = {"python": random.getstate(), "numpy": None, "torch": None}
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    monkeypatch.setattr(random_states.np.random, "set_state", lambda state: None)
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    random_states.restore_state(state)
    assert [[int(s[0]) for s in states] for states in restored] == [[0, 1]]


def test_a_resume_refused_says_no_random_state_note_first(tiny_model_dirs, pairs_file, tmp_path):
    """A 2-process checkpoint resumed by one process with another batch is refused: the note
    that each process resumes its own random state came first, about a resume that never ran."""
    from tiny import tiny_config

    from directpo.config import DPOConfig
    from directpo.errors import ConfigError
    from directpo.trainer import train

    out = tmp_path / "run"
    train(tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=2, save_steps=2,
                      per_device_train_batch_size=2), echo=lambda _: None)  # fmt: skip
    checkpoint = out / "checkpoint-2"
    (checkpoint / "rng_state.pth").rename(checkpoint / "rng_state_0.pth")
    shutil.copy(checkpoint / "rng_state_0.pth", checkpoint / "rng_state_1.pth")  # 2 processes
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    for name in ("rng_state_0.pth", "rng_state_1.pth"):
        manifest["files"][name] = manifest["files"].pop("rng_state.pth", None) or dict(
            manifest["files"]["rng_state_0.pth"]
        )
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []

    def resumed(batch: int) -> DPOConfig:
        return tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=4,
                           resume_from_checkpoint=str(checkpoint),
                           per_device_train_batch_size=batch)  # fmt: skip

    with pytest.raises(ConfigError, match="batch_size"):
        train(resumed(1), echo=lines.append)
    assert not [line for line in lines if "random state" in line], lines
    lines.clear()
    train(resumed(2), echo=lines.append)  # the same batch: it resumes, and says it
    assert (
        sum("holds the random states of 2 processes, this run has 1" in line for line in lines) == 1
    )
