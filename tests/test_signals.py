from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import torch
from safetensors.torch import load_file

from directpo.cli import main
from directpo.tracking import read_metrics


def command(model, data, out, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "directpo",
        "train",
        "--model_name_or_path",
        str(model),
        "--train_file",
        str(data),
        "--output_dir",
        str(out),
        "--max_steps",
        "60",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--save_steps",
        "0",
        "--report_to",
        "none",
        *extra,
    ]


def in_process(model, data, out, *extra: str) -> int:
    """``command``'s run through the CLI in this process: for the runs whose process is not
    what a test checks (the uninterrupted one, a resume), one interpreter's start-up less."""
    return main(command(model, data, out, *extra)[3:])


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """The stopped run exited 0, so ``directpo train ... && directpo score ...`` went on, and a
    scheduler counted a preempted run as done: it exits 128 + 15, as score and rank do, after
    its checkpoint and the command that resumes it; the resumed run that finishes exits 0."""
    model = tiny_model_dirs["gpt2"]
    out = tmp_path / "run"
    process = subprocess.Popen(
        command(model, pairs_file, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while len(read_metrics(out)) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 1 and "stopped by SIGTERM" in stdout
    resume = stdout.strip().splitlines()[-1]
    assert resume.startswith("resume: directpo train --model_name_or_path "), stdout[-2000:]
    assert resume.endswith(" --report_to none --resume_from_checkpoint latest"), resume
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 3 <= stopped_at < 60
    assert not (out / "model.safetensors").exists()  # the run is not finished

    assert in_process(model, pairs_file, out, "--resume_from_checkpoint", "latest") == 0
    assert in_process(model, pairs_file, tmp_path / "whole") == 0
    got, want = (
        load_file(out / "model.safetensors"),
        load_file(tmp_path / "whole" / "model.safetensors"),
    )
    assert all(torch.equal(got[k], want[k]) for k in want)  # the same trajectory, bit for bit
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 61))


def test_sigkill_at_several_points_then_latest_gives_the_uninterrupted_result(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    model = tiny_model_dirs["llama"]
    extra = ("--max_steps", "12", "--gradient_accumulation_steps", "2", "--save_steps", "1")
    assert in_process(model, pairs_file, tmp_path / "whole", *extra) == 0
    out = tmp_path / "killed"
    resume: tuple[str, ...] = ()
    killed = 0
    for kill_after_rows in (2, 6, 9):  # mid-epoch, mid-accumulation, mid-checkpoint: wherever
        process = subprocess.Popen(
            command(model, pairs_file, out, *extra, *resume),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while (
            len(read_metrics(out)) < kill_after_rows
            and time.time() < deadline
            and process.poll() is None
        ):
            time.sleep(0.02)
        process.kill()  # SIGKILL: no chance to clean up
        killed += process.wait() == -signal.SIGKILL
        resume = ("--resume_from_checkpoint", "latest")
    assert in_process(model, pairs_file, out, *extra, *resume) == 0
    got = load_file(out / "model.safetensors")
    want = load_file(tmp_path / "whole" / "model.safetensors")
    assert all(torch.equal(got[k], want[k]) for k in want)

    def comparable(rows):
        return [{k: v for k, v in r.items() if not k.endswith("/s")} for r in rows]

    assert comparable(read_metrics(out)) == comparable(read_metrics(tmp_path / "whole"))


def test_a_second_ctrl_c_stops_at_once(capsys) -> None:
    from directpo.signals import StopRequest

    # the handler the process had: Python's default, or SIG_IGN in a job started in the
    # background (nohup, `&`), which inherits Ctrl-C ignored
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGTERM)  # SIGTERM's notice does not talk about Ctrl-C
        assert "Ctrl-C" not in capsys.readouterr().err
        stop.requested = None
        signal.raise_signal(signal.SIGINT)  # first: only a request, handled after the step
        assert stop.requested == "SIGINT"
        assert "(Ctrl-C again to stop at once)" in capsys.readouterr().err
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            stopped_at_once = True
        else:
            stopped_at_once = False
    assert stopped_at_once
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_under_a_launcher_a_repeated_ctrl_c_is_the_same_request(capsys, monkeypatch) -> None:
    """torchrun forwards the terminal's Ctrl-C to workers that already got it: not a second one."""
    from directpo.signals import StopRequest

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: the step finishes, saves
        assert stop.requested == "SIGINT"
    err = capsys.readouterr().err
    assert err.count("finishing this step") == 1 and "Ctrl-C again" not in err


def test_under_torchrun_a_signal_saves_one_complete_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """What docs/distributed.md promises: SIGTERM to the workers (a scheduler's preemption)
    stops every rank after the same step, rank 0 checkpoints, every worker exits 143 (torchrun
    then exits 1 with its report of them); Ctrl-C (SIGINT
    to the whole process group, torchrun included) checkpoints the same way, but torchrun then
    exits 1 with its own SignalException (its behaviour, not the run's)."""
    import os

    from launch import TORCHRUN, free_port

    from directpo.checkpoint import verify_checkpoint

    def launch(out):
        # after "-m directpo"; enough steps that the run cannot end before the signal
        argv = [*command(tiny_model_dirs["llama"], pairs_file, out)[3:], "--max_steps", "5000"]
        start = [*TORCHRUN, "--nproc_per_node=2",
                 f"--master_port={free_port()}", "-m", "directpo", *argv,
                 "--distributed", "ddp"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            start, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 120
        while len(read_metrics(out)) < 3 and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        return process

    out = tmp_path / "term"
    process = launch(out)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    for pid in workers.stdout.split():
        os.kill(int(pid), signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    # the workers exit 143 (a preempted run is not a finished one), so torchrun reports them
    assert process.returncode == 1 and re.search(r"exitcode\s*:\s*143", stderr), stderr[-2000:]
    assert stdout.count("stopped by SIGTERM") == 1, stdout[-2000:]  # rank 0 speaks
    assert "resume: the same launch with --resume_from_checkpoint latest" in stdout
    assert stderr.count("directpo: SIGTERM: finishing") == 1, stderr[-2000:]  # not one per rank
    (checkpoint,) = out.glob("checkpoint-*")
    assert verify_checkpoint(checkpoint) is None

    out = tmp_path / "interrupt"
    process = launch(out)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "SignalException" in stderr, stderr[-2000:]
    assert stderr.count("directpo: SIGINT: finishing") == 1, stderr[-2000:]
    (checkpoint,) = out.glob("checkpoint-*")
    assert verify_checkpoint(checkpoint) is None  # complete: resume_from_checkpoint: latest


def test_a_signal_after_the_steps_all_reduce_waits_for_the_next_step(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Every rank stops after the step whose all-reduced flag says so; a signal landing just
    after that all-reduce on one rank must not make that rank alone checkpoint and stop (its
    collectives would then pair with the other ranks' next step)."""
    from tiny import tiny_config

    import directpo.trainer as trainer_module

    real = trainer_module._stop_requested
    calls = {"n": 0}

    def late_signal(run, stop):
        decided = real(run, stop)
        calls["n"] += 1
        if calls["n"] == 1:
            stop.requested = "SIGTERM"  # arrives right after step 1's decision
        return decided

    monkeypatch.setattr(trainer_module, "_stop_requested", late_signal)
    out = tmp_path / "run"
    config = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, out, max_steps=5, per_device_train_batch_size=2
    )
    result = trainer_module.train(config, echo=lambda _: None)
    assert result.global_step == 2  # step 1 went on; step 2's decision saw the signal
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]


def test_a_signal_during_an_evaluation_stops_after_that_step(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """The stop was decided before the evaluation: a signal during one (minutes on a large
    held-out set) trained one more step before its checkpoint."""
    from tiny import tiny_config

    import directpo.trainer as trainer_module

    real = trainer_module.evaluate_step

    def interrupted(run, done):
        line = real(run, done)
        if done == 2:
            signal.raise_signal(signal.SIGTERM)
        return line

    monkeypatch.setattr(trainer_module, "evaluate_step", interrupted)
    out = tmp_path / "run"
    config = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, out, max_steps=5, per_device_train_batch_size=2,
        eval_file=str(pairs_file), eval_steps=1, save_steps=0,
    )  # fmt: skip
    result = trainer_module.train(config, echo=lambda _: None)
    assert (result.global_step, result.stopped_by) == (2, "SIGTERM")
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]


def test_train_says_which_signal_stopped_it(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """train() stopped by a signal returned as a finished run does, so the demo went on to its
    next method after a Ctrl-C (and judged the half-trained policy); it says the signal now."""
    from tiny import tiny_config

    from directpo.trainer import train

    sent: list[str] = []

    def echo(line: str) -> None:
        if line.startswith("step 1/") and not sent:
            sent.append(line)
            signal.raise_signal(signal.SIGTERM)

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "a", max_steps=4,
                         logging_steps=1)  # fmt: skip
    stopped = train(config, echo=echo)
    assert sent and stopped.stopped_by == "SIGTERM" and stopped.global_step < 4
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "b", max_steps=2)
    assert train(config, echo=lambda _: None).stopped_by is None


def test_sigterm_before_training_says_so_cleans_up_and_exits_143(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A SIGTERM while data loaded (or models, or the reference precomputed) ended the process
    without a word, leaving the lock and the folder the run had just made; it now unwinds as
    Ctrl-C does: one line, exit 128 + 15, nothing left behind."""
    out = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "import directpo.run as run\n"
        "real = run.load_run_data\n"
        "def loading(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "run.load_run_data = loading\n"
        "from directpo.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = command(tiny_model_dirs["llama"], pairs_file, out)[3:]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 143, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == ["directpo: terminated (SIGTERM)"]
    assert not out.exists()  # its lock released and the empty folder it made removed


def test_a_precomputed_run_stopped_by_a_signal_returns_its_reference(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """The result of a run stopped early held the precomputed table as its reference, which
    ImplicitReward refused ('a run's precomputed ... reference'); it is the model again."""
    from tiny import tiny_config

    from directpo.reward import ImplicitReward
    from directpo.trainer import train

    def echo(line: str) -> None:
        if line.startswith("step 1/"):
            signal.raise_signal(signal.SIGTERM)

    model = tiny_model_dirs["llama"]
    config = tiny_config(model, pairs_file, tmp_path / "a", max_steps=4, learning_rate=1e-2,
                         precompute_ref_log_probs=True)  # fmt: skip
    stopped = train(config, echo=echo)
    assert stopped.stopped_by == "SIGTERM"
    prompts, responses = ["The movie was"], [" great."]
    got = ImplicitReward(stopped.policy, stopped.reference, 0.1).score(prompts, responses)
    want = ImplicitReward(stopped.policy, str(model), 0.1).score(prompts, responses)
    assert got == pytest.approx(want, abs=1e-6) and abs(want[0]) > 1e-4


def test_every_rank_names_the_same_signal_and_exits_with_its_code(monkeypatch) -> None:
    """A rank that got no signal said "another rank's signal" and exited 0 while the rank
    that got SIGTERM ... stopped the same run: each rank now names the signal the ranks got,
    SIGTERM (a scheduler's) first, and exits 128 + it."""
    from types import SimpleNamespace

    import directpo.trainer as trainer_module
    from directpo.cli import resume_command
    from directpo.signals import StopRequest, exit_code_of

    run = SimpleNamespace(world=SimpleNamespace(enabled=True))
    others = {"none": [0.0, 0.0, 0.0], "SIGINT": [0.0, 1.0, 0.0], "SIGTERM": [1.0, 0.0, 0.0]}
    for other, want in (("none", None), ("SIGINT", "SIGINT"), ("SIGTERM", "SIGTERM")):

        def summed(values, world, o=other):
            return [a + b for a, b in zip(values, others[o], strict=True)]

        monkeypatch.setattr(trainer_module, "all_reduce_sum", summed)
        assert trainer_module._stop_requested(run, StopRequest()) == want
    stop = StopRequest()
    stop.requested = "SIGINT"
    assert trainer_module._stop_requested(run, stop) == "SIGTERM"  # (the other rank's)
    assert (exit_code_of("SIGINT"), exit_code_of("SIGTERM")) == (130, 143)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    given = ["a.yaml", "--resume_from_checkpoint", "checkpoint-4", "--beta", "0.2"]
    want = "resume: directpo train a.yaml --beta 0.2 --resume_from_checkpoint latest"
    assert resume_command(given) == want
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resume_command(given) == "resume: the same launch with --resume_from_checkpoint latest"


def test_a_closed_output_pipe_stops_the_run_after_its_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    """``directpo train x.yaml | head -8``: the line after head exited raised BrokenPipeError
    in the loop, which ended the run with a traceback and its steps lost. A closed pipe is a
    stop request, as SIGTERM is: the step's checkpoint is saved, the lines go to stderr. One
    closed at the last step or while the final model is written lets the run finish."""
    from tiny import tiny_config

    import directpo.signals as signals
    from directpo.trainer import train

    gone: list[str] = []  # (this stdout is no pipe: its reader is gone once echo says so)
    monkeypatch.setattr(signals, "output_closed", lambda: bool(gone))

    def closed_at(start: str) -> Callable[[str], None]:
        def echo(line: str) -> None:
            if line.startswith(start) or gone:
                gone.append(line)
                raise BrokenPipeError(32, "Broken pipe")

        return echo

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "a", max_steps=6,
                         logging_steps=1)  # fmt: skip
    stopped = train(config, echo=closed_at("step 2/"))
    assert (stopped.stopped_by, stopped.global_step) == ("SIGPIPE", 2)
    assert (tmp_path / "a" / "checkpoint-2" / "manifest.json").is_file()
    assert "stopped by SIGPIPE after step 2" in capsys.readouterr().err
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "b", max_steps=1)
    gone.clear()
    finished = train(config, echo=closed_at("step 1/1"))  # (the last step: it finishes)
    assert finished.stopped_by is None and (tmp_path / "b" / "model.safetensors").is_file()
    assert "model saved to" in capsys.readouterr().err


def test_a_closed_output_pipe_ends_the_command_in_one_line_with_141() -> None:
    """Outside the loop (the data's lines, a command's output, the help) the same pipe gave a
    traceback and exit 1, and the interpreter's flush at exit another ('Exception ignored'):
    one line now, exit 128 + 13, as the shell reports a process SIGPIPE ended."""
    script = (  # the console script's entry point, with a command whose output is a line
        "import dataclasses, sys\n"
        "from directpo import cli\n"
        "lines = lambda options: print('scored', flush=True)\n"
        "cli.COMMANDS['plot'] = dataclasses.replace(cli.COMMANDS['plot'], run=lines)\n"
        "sys.argv = ['directpo', 'plot', 'run']\n"
        "from directpo.__main__ import run\n"
        "run()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # head exited before the first line
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 141, stderr[-2000:]
    assert stderr.splitlines() == ["directpo: stopped: the output's reader closed the pipe"]


def test_a_closed_stderr_pipe_stops_the_run_after_its_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """``directpo train x.yaml 2>&1 | head`` (or ``less``, quit): the progress bar drawn on the
    closed stderr raised BrokenPipeError mid-run, which ended it at exit 141 with every step
    since its last checkpoint lost. Now the run stops as for stdout's pipe: after its step,
    with its checkpoint, whatever draws on stderr later writing nowhere."""
    import os

    from tiny import tiny_config

    from directpo.trainer import train

    reading, writing = os.pipe()
    stderr = open(writing, "w", buffering=1)  # noqa: SIM115 - the process's stderr, a pipe
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "__stderr__", stderr)

    def echo(line: str) -> None:
        if line.startswith("step 2/"):
            os.close(reading)  # head exited

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "a", max_steps=6,
                         logging_steps=1, disable_tqdm=False)  # fmt: skip
    try:
        stopped = train(config, echo=echo)
    finally:
        stderr.close()
    assert (stopped.stopped_by, stopped.global_step) == ("SIGPIPE", 2)
    assert (tmp_path / "a" / "checkpoint-2" / "manifest.json").is_file()


def test_a_commands_error_on_a_closed_pipe_is_no_traceback(monkeypatch, capsys) -> None:
    """A model's load whose bar met a closed stderr (``directpo train ... 2>&1 | head -3``)
    was refused as 'cannot load as a causal LM ([Errno 32] Broken pipe)', and that line's own
    print raised BrokenPipeError again: a traceback no one read, exit 1. The pipe is said as
    the pipe (exit 141); an error of its own on a closed stderr keeps its exit code."""
    import dataclasses

    import directpo.cli as cli
    import directpo.signals as signals
    from directpo.errors import ModelLoadError

    def load(options: object) -> int:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError as exc:
            raise ModelLoadError(f"model 'm': cannot load as a causal LM ({exc})") from None

    monkeypatch.setattr(signals, "output_closed", lambda: True)
    monkeypatch.setattr(cli, "output_closed", lambda: True)
    monkeypatch.setitem(cli.COMMANDS, "plot", dataclasses.replace(cli.COMMANDS["plot"], run=load))
    assert main(["plot", "run"]) == 141
    assert "cannot load" not in capsys.readouterr().err

    def refused(options: object) -> int:
        raise cli.ConfigError("a refusal of its own")

    def closed(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    plot = dataclasses.replace(cli.COMMANDS["plot"], run=refused)
    monkeypatch.setitem(cli.COMMANDS, "plot", plot)
    monkeypatch.setattr(cli, "print", closed, raising=False)
    assert main(["plot", "run"]) == 2


def test_a_notebooks_streams_are_not_polled_for_a_closed_pipe(monkeypatch) -> None:
    """The loop polls its outputs after each step for a reader gone (2>&1 | head); in a
    notebook the streams are the kernel's (its descriptors no output of the run's), where a
    launcher's dead pipe stopped the run as 'SIGPIPE'. Only the process's own are polled."""
    import io

    import directpo.signals as signals

    monkeypatch.setattr(signals, "output_closed", lambda: True)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # (a notebook's OutStream)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not signals.KeptLines(print).reader_gone()
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    assert signals.KeptLines(print).reader_gone()


def test_the_guarded_progress_bar_is_cleared_for_the_runs_lines(monkeypatch) -> None:
    """The bar drawn through KeptLines.guarded (2>&1 | head's stop) was not taken for one on
    stderr by tqdm, which then left it uncleared before each line: 'loss=0.69]step 1/3 ...' on
    one terminal line. It is cleared as a bar on stderr is."""
    import io

    from tqdm import tqdm

    from directpo.signals import KeptLines

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "__stderr__", stderr)
    bar = tqdm(total=3, file=KeptLines(print).guarded(sys.stderr), mininterval=0)
    bar.update(1)
    drawn = stderr.getvalue()
    with tqdm.external_write_mode():
        cleared = stderr.getvalue()[len(drawn) :]
    bar.close()
    assert cleared.startswith("\r") and not cleared.strip(), repr(cleared)
