"""Figures: the reward-vs-KL frontier (DPO paper, Fig. 2 left) and training curves."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CURVES = (
    ("loss", "loss"),
    ("rewards/margins", "reward margin"),
    ("rewards/accuracies", "reward accuracy"),
)
# the reward and KL of sampled completions, drawn when a run logged them: an online run's
# rounds (TRL's objective/ names) and, as their eval lines, eval_generate's held-out samples
SAMPLE_CURVES = (
    ("objective/scores", "sample reward (objective/scores, eval/reward)", "eval/reward"),
    ("objective/kl", "sample KL(π‖π_ref) (objective/kl, eval/kl)", "eval/kl"),
)
EVAL_LINE_STYLES = ("--", ":", "-.")  # a run's eval sets, in the colour of its training line


def _pyplot() -> Any:
    """matplotlib's pyplot, file-only; a one-line error where matplotlib is missing (an
    install with --no-deps, a trimmed image): it was a ModuleNotFoundError traceback."""
    try:
        import matplotlib
    except ImportError as exc:
        from directpo.errors import ConfigError

        raise ConfigError(
            "drawing curves needs matplotlib, a directpo dependency not installed here "
            f"({exc}): pip install matplotlib"
        ) from None

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def check_plotting() -> None:
    """Refuse at once where matplotlib is missing: the demo draws its figures after hours of
    training, and stopped there, its runs done, on the import."""
    _pyplot()


def plot_curves(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: str | Path) -> Path:
    """One panel per training metric, one line per run (label, metrics.jsonl rows); its
    evaluations (``eval/`` rows, and each named eval set's), dashed, in the run's colour. The
    reward and KL of sampled completions (an online run's, eval_generate's) get a panel each."""
    plt = _pyplot()
    logged = {key for _, rows in runs for row in rows for key in row}
    curves = [(key, title, f"eval/{key}") for key, title in CURVES]
    curves += [curve for curve in SAMPLE_CURVES if {curve[0], curve[2]} & logged]
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6))
    for axis, (key, title, eval_key) in zip(axes, curves, strict=True):
        for label, rows in runs:
            colour = None
            eval_styles = itertools.cycle(EVAL_LINE_STYLES)
            for name, series in _series(rows, key, eval_key).items():
                points = [(r["step"], r[series]) for r in rows if series in r]
                style = "-" if name == "train" else next(eval_styles)
                shown = label if name == "train" else f"{label} {name}"
                # a series of one point (a run's single evaluation, a one-step run) is a line
                # of no length, drawn as nothing: it gets a marker (an evaluation's square)
                marker = None if len(points) > 1 else "o" if name == "train" else "s"
                (line,) = axis.plot(
                    *zip(*points, strict=True), style, label=shown, linewidth=1.5, color=colour,
                    marker=marker,
                )  # fmt: skip
                colour = line.get_color()
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def _series(rows: list[dict[str, Any]], key: str, eval_key: str | None = None) -> dict[str, str]:
    """The logged series of a training metric: its training values, the eval set's
    (``eval_key``, by default eval/KEY) and each named eval set's (eval/chat_loss, as
    transformers names an eval_dataset dict's), as {legend name: metric name}, in first-logged
    order."""
    series: dict[str, str] = {}
    eval_key = eval_key or f"eval/{key}"
    for row in rows:
        if key in row:
            series.setdefault("train", key)
        if eval_key in row:
            series.setdefault("eval", eval_key)
        # a named set logs eval/<name>_loss and eval/<name>_rewards/margins (eval/aux_loss is
        # a metric of the unnamed set, not a set "aux")
        sets = [n[5:-5] for n in row if n.startswith("eval/") and n.endswith("_loss")]
        for stem in sets:
            if f"eval/{stem}_rewards/margins" in row and f"eval/{stem}_{key}" in row:
                series.setdefault(f"eval {stem}", f"eval/{stem}_{key}")
    return series


def _save(fig: Any, path: Path) -> None:
    """Into a hidden file beside ``path``, then renamed: an earlier figure stays whole until
    the new one is."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120, format=path.suffix[1:].lower())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def plot_frontier(results: dict[str, Any], path: str | Path) -> Path:
    """Mean ground-truth reward against KL(π‖π_ref), one curve per method and β."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6.4, 4.4))
    reference = results["reference"]
    markers = {"DPO": "o", "Preferred-FT": "s", "Unlikelihood": "^", "Online DPO": "D",
               "RL (true reward)": "v", "RLHF": "P"}  # fmt: skip
    for run in results["runs"]:
        points = sorted((p["kl"], p["reward"]) for p in run["points"])
        xs, ys = zip(*[(0.0, reference["reward"]), *points], strict=True)
        label = run["method"] + (f" β={run['beta']}" if "DPO" in run["method"] else "")
        if run["method"].startswith("RL"):
            label += f" lr={run['learning_rate']:g}"
        axis.plot(xs, ys, marker=markers.get(run["method"], "x"), label=label, linewidth=1.2)
    axis.scatter([0.0], [reference["reward"]], color="black", zorder=5, label="reference")
    axis.set_xlabel("KL(π ‖ π_ref), nats per sequence")
    axis.set_ylabel(f"mean reward ({results['reward_fn']})")
    axis.set_title("Reward vs KL on held-out prompts")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


RUN_LOGS = ("metrics.jsonl", "trainer_state.json")  # the files plot reads in a run folder


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """``directpo plot RUN_DIR``: the curves of one run, from its metrics.jsonl, else from the
    log_history of its trainer_state.json (a checkpoint folder, a transformers / TRL run)."""
    from directpo.errors import DirectpoError
    from directpo.tracking import read_metrics
    from directpo.trainer_state import logged_rows

    if Path(run_dir).name in RUN_LOGS and Path(run_dir).is_file():
        run_dir = Path(run_dir).parent  # (plot run/metrics.jsonl: 'no such run folder')
    elif Path(run_dir).is_file():
        raise DirectpoError(
            f"{run_dir} is a file: give the run folder holding its metrics.jsonl (train's "
            "output_dir, or a checkpoint's folder)"
        )
    if not Path(run_dir).is_dir():
        raise DirectpoError(f"{run_dir}: no such run folder")
    rows = read_metrics(run_dir) or logged_rows(run_dir)
    if not rows:
        raise DirectpoError(
            f"{run_dir}: no metrics.jsonl with logged steps, nor a trainer_state.json with a "
            "log_history"
        )
    path = Path(output or Path(run_dir) / "curves.png")
    _check_image_path(path)
    return plot_curves([(Path(run_dir).resolve().name, rows)], path)


def _check_image_path(path: Path) -> None:
    """An image file matplotlib can write, its folder made: matplotlib wrote ``--output x`` or
    ``--output some_folder`` to x.png or some_folder.png and was said to have written x, and
    a missing folder was a traceback."""
    from directpo.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"output: {path} is a folder; give a file name such as {path}/curves.png")
    _pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    kinds = FigureCanvasAgg.get_supported_filetypes()
    kind = path.suffix[1:].lower()
    if kind not in kinds:
        raise ConfigError(
            f"output: {path}: give an image file name ending in one of "
            f"{', '.join('.' + k for k in sorted(kinds))} (got {path.suffix or '(none)'})"
        )
    try:  # a new folder for the figure is made, as score's and train's are
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"output: cannot make the folder {path.parent} ({exc.strerror})"
        ) from None
