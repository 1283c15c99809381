"""bench/: the GPU script's control flow and the benchmark's option checks, without a GPU.

A lent GPU is 15 minutes a session: a bash arithmetic or quoting slip in bench/gpu.sh, or a
misspelt run name, must show here, not there. ``DRY_RUN=1`` runs gpu.sh's control flow on a
virtual clock (each part "takes" its limit, or DRY_SECONDS) and prints what it would run.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclass looks its module up)
    spec.loader.exec_module(module)
    return module


def _dry_run(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """bench/gpu.sh in DRY_RUN mode, this interpreter as its python3."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    environ = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "DRY_RUN": "1"}
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), *args],
        env={**environ, "OUT": str(out), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _limits(stdout: str) -> dict[str, int]:
    """Each part's time limit, as its dry-run line says it."""
    return {
        name: int(limit)
        for name, limit in re.findall(r"^dry run: (\w+), limit (\d+) s", stdout, re.M)
    }


def _budget(stdout: str) -> int:
    return int(re.search(r"--budget (\d+)", stdout).group(1))


def _near(a: int, b: int) -> bool:
    return abs(a - b) <= 10  # the real seconds the dry run itself takes (a loaded machine)


def test_the_default_run_fits_total_when_every_part_takes_its_whole_limit(tmp_path: Path) -> None:
    done = _dry_run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    limits = _limits(done.stdout)
    assert list(limits) == ["smoke", "offload", "bench", "precision"]
    expected = {"smoke": 120, "offload": 90, "bench": 180, "precision": 150}
    assert all(_near(limits[k], v) for k, v in expected.items()), limits
    assert sum(limits.values()) <= 540
    # the benchmark stops starting runs 60 s before its timeout; the precision check keeps 150
    assert _near(_budget(done.stdout), 120)
    assert f"--out {tmp_path}/bench.jsonl" in done.stdout
    for name in ("versions", "smoke", "offload", "bench", "precision"):
        assert (tmp_path / f"{name}.txt").is_file(), name
    assert done.stdout.count(": ok\n") == 4


def test_a_short_total_skips_the_first_parts_and_keeps_the_last_ones(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, TOTAL="300")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped smoke: time budget" in done.stdout
    assert "skipped offload: time budget" in done.stdout
    limits = _limits(done.stdout)
    assert _near(_budget(done.stdout), 90) and _near(limits["bench"], 150), limits
    assert _near(limits["precision"], 150)
    assert (tmp_path / "smoke.txt").read_text().startswith("skipped smoke: time budget (0 s")


def test_parts_that_finish_early_leave_their_time_to_the_benchmark(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, DRY_SECONDS="10", COMPILE_CHECK="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compile" in _limits(done.stdout)
    assert _near(_budget(done.stdout), 300)  # BUDGET's 300: three 10 s parts leave plenty


def test_a_failed_or_timed_out_part_is_said_and_the_exit_code_is_1(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, DRY_FAIL="offload", DRY_TIMEOUT="precision")
    assert done.returncode == 1
    assert "gpu.sh: offload: FAILED (exit 1)" in done.stdout
    assert re.search(r"gpu.sh: precision: timed out after \d+ s", done.stdout)
    assert "gpu.sh: bench: ok" in done.stdout  # the parts after a failure still ran


def test_a_misspelt_benchmark_option_stops_before_any_part(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--runs", "directpo lora r8")
    assert done.returncode == 2
    assert "--runs: unknown ['directpo lora r8']" in done.stderr
    assert not (tmp_path / "smoke.txt").exists()


def test_the_benchmarks_options_are_checked_before_any_model() -> None:
    vs_trl = _bench("vs_trl")

    def problem(*argv: str) -> int:
        """main's exit code for these options with --check (0: accepted)."""
        sys_argv, sys.argv = sys.argv, ["vs_trl.py", "--plan", "gpu", *argv, "--check"]
        try:
            vs_trl.main()
        except SystemExit as stopped:
            return int(stopped.code)
        finally:
            sys.argv = sys_argv
        return 0

    assert problem() == 0
    assert problem("--runs", "directpo no per-token stats,trl defaults") == 0
    assert problem("--runs", "directpo lora r8") == 2
    assert vs_trl.check_args(_args(vs_trl, models="qwen2.5-7b")).startswith("--models: unknown")
    assert vs_trl.check_args(_args(vs_trl, sets="image-prompt", plan="gpu")).startswith("--sets")
    assert "--plan gpu" in vs_trl.check_args(_args(vs_trl, runs="trl defaults"))
    assert "--plan cpu" in vs_trl.check_args(_args(vs_trl, plan="gpu", directpo_options="{}"))
    assert "no step would be timed" in vs_trl.check_args(_args(vs_trl, steps=3, warmup=3))
    assert "JSON object" in vs_trl.check_args(_args(vs_trl, directpo_options="[1]"))
    # a vision model's rows without images, or text models' rows named image-prompt
    assert "--plan cpu" in vs_trl.check_args(_args(vs_trl, plan="gpu", models="tiny-vlm"))
    assert "tiny-vlm alone" in vs_trl.check_args(_args(vs_trl, sets="image-prompt"))
    assert vs_trl.check_args(_args(vs_trl, models="tiny-vlm", sets="image-prompt")) is None


def _args(vs_trl: ModuleType, **given: object) -> object:
    defaults = dict(
        plan="cpu", models="tiny", sets="long-prompt", runs="", directpo_options="",
        gradient_checkpointing=None, steps=6, warmup=1,
    )  # fmt: skip
    return type("Args", (), {**defaults, **given})()


def test_the_gpu_plan_measures_what_no_call_measured_before_the_other_models() -> None:
    vs_trl = _bench("vs_trl")
    cases = [("0.5b", "long"), ("0.5b", "short"), ("1.5b", "long")]
    plan = [(case, run[1]) for case, run in vs_trl.plan_order(cases, True, "")]
    first_ablation = plan.index((cases[0], "directpo no per-token stats"))
    assert first_ablation == len(vs_trl.MAIN_RUNS)  # right after the first case's main runs
    assert plan.index((cases[1], "directpo defaults")) > first_ablation
    only = vs_trl.plan_order(cases, True, "trl defaults")
    assert [case for case, _ in only] == cases


def test_a_run_whose_package_is_missing_is_skipped_by_name() -> None:
    vs_trl = _bench("vs_trl")
    missing = importlib.util.find_spec("bitsandbytes") is None
    assert (vs_trl.missing_package({"load_in_4bit": True}) == "bitsandbytes") == missing
    assert vs_trl.missing_package({"lora_r": 16}) is None


def test_pairs_longer_than_max_length_stop_the_benchmark() -> None:
    vs_trl = _bench("vs_trl")
    vs_trl.check_lengths([(1000, 500, 400)], "tiny/long-prompt")
    with pytest.raises(SystemExit, match="over max_length 4096"):
        vs_trl.check_lengths([(3800, 500, 400)], "tiny/long-prompt")


def test_the_in_process_plan_reports_no_peak_rss_on_a_cpu() -> None:
    """The gpu plan runs every run in one process: ru_maxrss there is the largest peak so far,
    not the run's; on a CPU the memory is not reported rather than reported wrong."""
    vs_trl = _bench("vs_trl")
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA: the allocator's peak, reset per run")
    assert vs_trl.peak_memory_mb(own_process=False) is None
    assert vs_trl.peak_memory_mb(own_process=True) > 0
    assert "memory n/a" in vs_trl._mb({"memory_mb": None})


def test_the_workers_import_this_checkouts_directpo() -> None:
    """cpu plan workers are processes of their own: without src/ on their path they measured
    whichever directpo was installed (another checkout's)."""
    code = (
        "import runpy, sys; sys.argv = ['vs_trl.py', '--check'];"
        f"runpy.run_path({str(ROOT / 'bench' / 'vs_trl.py')!r}, run_name='__main__');"
        "import directpo; print(directpo.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == str(ROOT / "src" / "directpo" / "__init__.py"), done.stderr


def test_a_misspelt_smoke_group_stops_at_once() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_smoke.py"), "precison"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "usage: gpu_smoke.py [features | compile | precision | offload]" in done.stdout


def test_the_benchmarks_budget_and_out_are_gpu_shs_own(tmp_path: Path) -> None:
    """A --budget given after gpu.sh's own was silently overridden by it."""
    done = _dry_run(tmp_path, "--budget", "400")
    assert done.returncode == 2
    assert "set BUDGET=N" in done.stderr
    done = _dry_run(tmp_path, BUDGET="50")
    assert _near(_budget(done.stdout), 50)


def test_a_cpu_run_with_directpo_options_is_named_by_them() -> None:
    vs_trl = _bench("vs_trl")
    assert vs_trl.cpu_run_name("trl", {}) == "trl defaults"
    named = vs_trl.cpu_run_name("directpo", {"prefix_sharing": False, "padding_free": False})
    assert named == "directpo prefix_sharing: false, padding_free: false"


def test_a_part_left_under_a_third_of_its_limit_is_skipped(tmp_path: Path) -> None:
    """COMPILE_CHECK=1 at the default TOTAL was started with 30 s of its 150: cut before its
    first result, those seconds lost to the benchmark."""
    done = _dry_run(tmp_path, COMPILE_CHECK="1")
    assert re.search(r"skipped compile: time budget \(\d+ s of its 150", done.stdout)
    assert "compile" not in _limits(done.stdout)
    assert _near(_budget(done.stdout), 120)
    assert done.returncode == 0


def test_a_part_that_takes_sigterm_as_finish_the_step_is_killed(tmp_path: Path) -> None:
    """directpo's train() answers SIGTERM with 'finish the step, checkpoint, return', so a part
    calling it (gpu_smoke's checks, vs_trl's runs) went on past its limit: KILL follows."""
    script = (ROOT / "bench" / "gpu.sh").read_text()
    assert 'timeout --kill-after=10 "$((limit - 10))"' in script


def test_a_benchmark_run_stopped_by_a_signal_stops_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its few steps were reported as a measurement, and the plan went on to the next run."""
    import directpo.finish
    import directpo.trainer

    vs_trl = _bench("vs_trl")
    # _run_directpo replaces it for its process: restored after this test
    monkeypatch.setattr(directpo.finish, "save_final_model", directpo.finish.save_final_model)
    stopped = type("Result", (), {"stopped_by": "SIGTERM", "metrics": []})()
    monkeypatch.setattr(directpo.trainer, "train", lambda config, echo: stopped)
    spec = vs_trl.RunSpec(
        "directpo", "directpo defaults", str(tmp_path), str(tmp_path / "d.jsonl"),
        str(tmp_path / "out"), 4, 2, 1, False, {},
    )  # fmt: skip
    with pytest.raises(SystemExit, match="stopped by SIGTERM"):
        vs_trl._run_directpo(spec, {"max_steps": 4}, cuda=False)


def test_fsdp_memorys_device_is_cpu_or_cuda() -> None:
    """--device gpu (any word but cpu) ran in float32 on whatever device the run found, its rows
    labelled "gpu"."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fsdp_memory.py"), "--device", "gpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid choice: 'gpu'" in done.stderr


def _each_run(vs_trl: ModuleType, cuda: bool) -> list[tuple[str, object, dict]]:
    """(framework, spec, config fields) of every gpu-plan run, built as vs_trl.run builds them;
    TRL's are checked as trl.DPOConfig's keywords (its bf16 refuses a machine without CUDA)."""
    import dataclasses

    trl = pytest.importorskip("trl")
    built = []
    for framework, name, checkpointing, options in vs_trl.MAIN_RUNS + vs_trl.ABLATIONS:
        spec = vs_trl.RunSpec(
            framework, name, "model", "pairs.jsonl", "/tmp/directpo-bench-test", 8, 4, 3,
            checkpointing, options,
        )  # fmt: skip
        common = vs_trl.shared_options(spec)
        if framework == "directpo":
            own = {k: v for k, v in options.items() if k != vs_trl.STATS}
            config = vs_trl.directpo_config(spec, common, own, cuda)
            fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        else:
            fields = vs_trl.trl_options(spec, common, cuda)
            # a keyword TRL renamed or dropped fails here, not minutes into a lent GPU's call
            unknown = set(fields) - {f.name for f in dataclasses.fields(trl.DPOConfig)}
            assert not unknown, f"{name}: trl.DPOConfig takes no {sorted(unknown)}"
            checked = {**fields, "bf16": False, "use_cpu": True} if cuda else fields
            config = trl.DPOConfig(**checked)
            fields = {**vars(config), "bf16": fields["bf16"]}
        built.append((framework, spec, fields))
    return built


@pytest.mark.parametrize("cuda", [False, True])
def test_both_sides_of_every_run_get_the_same_batch_steps_length_and_precision(
    cuda: bool,
) -> None:
    """A ratio between unequal setups is a false claim: every run's config, directpo's and TRL's,
    has the same batch, steps, learning rate, beta, max_length (no truncation) and
    accumulation, and the same precision policy (bf16 compute on CUDA, float32 on a CPU)."""
    vs_trl = _bench("vs_trl")
    same = ("per_device_train_batch_size", "max_steps", "learning_rate", "beta", "max_length",
            "gradient_accumulation_steps", "logging_steps")  # fmt: skip
    runs = _each_run(vs_trl, cuda)
    assert {framework for framework, _, _ in runs} == {"directpo", "trl"}
    first = runs[0][2]
    for framework, spec, fields in runs:
        assert {key: fields[key] for key in same} == {key: first[key] for key in same}, spec.name
        assert fields["max_length"] == vs_trl.MAX_LENGTH
        assert fields["gradient_checkpointing"] == spec.gradient_checkpointing, spec.name
        if framework == "directpo":
            assert fields["dtype"] == ("bfloat16" if cuda else "float32"), spec.name
            assert fields["master_weights"] == "float32"  # float32 masters, as TRL's weights
        else:
            assert fields["bf16"] is cuda and not fields.get("fp16"), spec.name


# a documented command: `python bench/NAME.py ...` or `bash bench/gpu.sh ...`, up to its closing
# backtick (a command may wrap onto the next line of its paragraph)
COMMAND = re.compile(r"(?:python3?|bash) bench/(\w+)\.(?:py|sh)\b((?:[^`\n]|\n(?!\n))*)")


def _documented_commands() -> list[tuple[str, str, str]]:
    """(document, script, its arguments) of every bench command README.md and docs/ show."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for script, rest in COMMAND.findall(doc.read_text()):
            found.append((doc.name, script, " ".join(rest.split())))
    return found


def _flags(script: str) -> set[str]:
    source = (ROOT / "bench" / f"{script}.py").read_text()
    return set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source))


def test_the_documented_bench_commands_use_the_scripts_real_options() -> None:
    """A documented command whose flag the script does not take (renamed, or never there) fails
    the moment a user copies it, or minutes into a lent GPU's one call."""
    import shlex

    vs_trl = _bench("vs_trl")
    commands = _documented_commands()
    assert {script for _, script, _ in commands} >= {"vs_trl", "gpu", "trl_curves", "gpu_smoke"}
    gpu_sh = (ROOT / "bench" / "gpu.sh").read_text()
    gpu_defaults = shlex.split(re.search(r"bench_args=\(([^)]*)", gpu_sh).group(1))
    gpu_defaults.remove("$@")  # (where the documented arguments go)
    for doc, script, rest in commands:
        where = f"{doc}: bench/{script} {rest}"
        if script == "gpu_smoke":
            group = rest.split()[0] if rest else ""
            assert group in ("", *_bench_groups()), where
            continue
        if script == "gpu_wheels":
            continue
        known = _flags("vs_trl" if script == "gpu" else script)
        unknown = [f for f in re.findall(r"(?<![\w-])--[a-z_]+", rest) if f not in known]
        assert not unknown, f"{where}: no {unknown}"
        if script in ("vs_trl", "gpu") and "..." not in rest and "[" not in rest:
            # run names, model names and set names checked as the script checks them
            argv = shlex.split(rest) + (gpu_defaults if script == "gpu" else [])
            sys_argv, sys.argv = sys.argv, ["vs_trl.py", *argv, "--check"]
            try:
                vs_trl.main()
            except SystemExit as stopped:
                pytest.fail(f"{where}: exits {stopped.code}")
            finally:
                sys.argv = sys_argv


def _bench_groups() -> tuple[str, ...]:
    source = (ROOT / "bench" / "gpu_smoke.py").read_text()
    return tuple(re.findall(r"\"(\w+)\"", re.search(r"GROUPS = \(([^)]*)\)", source).group(1)))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["gpu_smoke.py"], "gpu_smoke.py (all checks) needs a CUDA device"),
        (["gpu_smoke.py", "compile"], "gpu_smoke.py compile needs a CUDA device"),
        (["fsdp_memory.py", "--device", "cuda", "--worlds", "1"], "needs a CUDA device per"),
    ],
)
def test_a_bench_that_needs_cuda_says_so_in_one_line_without_one(
    argv: list[str], said: str
) -> None:
    """Was an AssertionError's traceback (gpu_smoke), or torchrun's workers' tracebacks after
    building a 2 GB model (fsdp_memory)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs them")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 1
    assert said in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_table_says_directpo_over_trl_for_speed_and_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ratios are directpo / TRL, both ways: pairs/s (above 1: directpo faster) and peak
    memory (below 1: directpo smaller), as docs/performance.md reads them."""
    vs_trl = _bench("vs_trl")
    flops = {"directpo": 1.0, "trl": 2.0}
    row = dict(model="tiny", data="long-prompt", device="cpu", flops=flops, memory="RSS")
    vs_trl.table(
        [
            {**row, "name": "directpo defaults", "framework": "directpo",
             "pairs_per_second": 3.0, "memory_mb": 500.0},
            {**row, "name": "trl defaults", "framework": "trl",
             "pairs_per_second": 1.5, "memory_mb": 1000.0},
        ]
    )  # fmt: skip
    line = next(x for x in capsys.readouterr().out.splitlines() if "directpo defaults" in x)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[3:8] == ["3.00", "2.00x", "n/a", "500", "0.50x"]


@pytest.mark.parametrize("recipe", ["lora", "full", "lora-sft", "lora-truncate", "full-bf16"])
def test_trl_curves_recipes_give_both_sides_the_same_settings(recipe: str, tmp_path: Path) -> None:
    """Each recipe's shared options are taken by trl.DPOConfig (a keyword TRL renamed failed
    only after the first side had trained) and by directpo's, with the same values on both."""
    import dataclasses

    trl = pytest.importorskip("trl")
    curves = _bench("trl_curves")
    shared, theirs, ours = curves.recipe(recipe, 4)
    options = curves.trl_options(shared, tmp_path / "trl", bf16=False)
    unknown = set(options) - {f.name for f in dataclasses.fields(trl.DPOConfig)}
    assert not unknown, f"trl.DPOConfig takes no {sorted(unknown)}"
    theirs_config = trl.DPOConfig(**options)
    ours_config = curves.directpo_config(tmp_path, shared, ours, tmp_path / "dpo", bf16=False)
    for key, value in shared.items():
        assert getattr(theirs_config, key) == getattr(ours_config, key) == value, key
    assert (theirs.get("peft") is None) == (ours.get("lora_r") is None)
    assert theirs.get("peft") == ours.get("lora_r")  # the same rank, alpha 16 on both


def test_memory_an_earlier_run_still_holds_is_said_beside_the_peak() -> None:
    """The gpu plan runs everything in one process: the allocator's peak of a run includes
    what an earlier run left allocated, so the line says how much of it was there before."""
    vs_trl = _bench("vs_trl")
    leaked = {"memory_mb": 9000.0, "memory": "allocated", "memory_held_before_mb": 1500.0}
    assert vs_trl._mb(leaked) == "9000 MB allocated (1500 MB of it held before the run)"
    assert vs_trl._mb({**leaked, "memory_held_before_mb": 0.0}) == "9000 MB allocated"
    assert vs_trl._mb({"memory_mb": 500.0, "memory": "RSS"}) == "500 MB RSS"


def test_both_sides_train_two_steps_on_the_same_pairs_to_the_same_loss(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer's call as the bench makes it (TRL's DPOTrainer, its dataset, the step clock) runs
    with the installed TRL, and both sides see the same pairs, batch, learning rate and beta:
    after one update their second step's loss is the same (float32, no checkpointing)."""
    pytest.importorskip("trl")
    import directpo.finish

    vs_trl = _bench("vs_trl")
    workloads = sys.modules["workloads"]  # the one vs_trl imported
    monkeypatch.setattr(directpo.finish, "save_final_model", directpo.finish.save_final_model)
    data = tmp_path / "pairs.jsonl"
    workloads.make_data(data, 8, 4, 2, seed=0)
    results = {}
    for framework in ("directpo", "trl"):
        spec = vs_trl.RunSpec(
            framework, f"{framework} defaults", str(tiny_model_dirs["llama"]), str(data),
            str(tmp_path / framework), 2, 1, 1, False, {},
        )  # fmt: skip
        results[framework] = vs_trl.run(spec, own_process=False)
        assert len(results[framework]["step_seconds"]) == 2, framework
    assert results["directpo"]["loss"] != pytest.approx(math.log(2), abs=1e-9)  # it moved
    assert results["directpo"]["loss"] == pytest.approx(results["trl"]["loss"], abs=1e-5)


def test_a_run_that_patches_transformers_modules_leaves_them_as_they_were(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liger's apply functions (the "liger" ablations) replace a model type's RMSNorm and MLP
    classes and rotary function module-wide: every later run of the gpu plan's one process,
    the other models' "defaults" rows included, trained with Liger's kernels."""
    from transformers.models.llama import modeling_llama

    vs_trl = _bench("vs_trl")
    before = (modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb)
    for name in ("LlamaRMSNorm", "apply_rotary_pos_emb"):  # put back by pytest should it fail
        monkeypatch.setattr(modeling_llama, name, getattr(modeling_llama, name))

    def patching_run(spec: object, common: dict, cuda: bool) -> tuple[list[float], dict]:
        modeling_llama.LlamaRMSNorm = type("LigerRMSNorm", (), {})  # as Liger's apply does
        modeling_llama.apply_rotary_pos_emb = lambda *args: args
        modeling_llama.liger_added = True
        return [1.0, 1.0], {"loss": 0.69}

    monkeypatch.setattr(vs_trl, "_run_directpo", patching_run)
    spec = vs_trl.RunSpec(
        "directpo", "directpo liger", str(tiny_model_dirs["llama"]), str(tmp_path / "d.jsonl"),
        str(tmp_path / "out"), 2, 1, 1, False, {"use_liger_kernel": True},
    )  # fmt: skip
    assert vs_trl.run(spec, own_process=False)["loss"] == 0.69
    assert (modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb) == before
    assert not hasattr(modeling_llama, "liger_added")
