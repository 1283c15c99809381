"""dataset_mixture: the alignment-handbook's (and TRL's) way to give several sources."""

from __future__ import annotations

import re
import shutil

import datasets
import pytest
import torch
import yaml
from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl

from directpo.config import DPOConfig, load_config
from directpo.data import Columns
from directpo.errors import ConfigError, DataError
from directpo.mixture import load_mixture
from directpo.preflight import check_environment

A_ROWS = [
    {"prompt": f"Question {i}?", "chosen": f" good {i}", "rejected": f" bad {i}", "score": i}
    for i in range(10)
]
B_ROWS = [
    {"prompt": f"Other {i}?", "chosen": f" yes {i}", "rejected": f" no {i}", "id": f"b{i}"}
    for i in range(8)
]

# an alignment-handbook recipe (recipes/smollm2/dpo/config.yaml) as written, but for its hub
# sources (local files here) and push_to_hub
HANDBOOK_RECIPE = """\
model_name_or_path: {model}
torch_dtype: null
dataset_mixture:
  datasets:
    - id: {a}
      columns:
        - prompt
        - chosen
        - rejected
      weight: 1.0
    - id: {b}
      split: train
      columns: [prompt, chosen, rejected]
      weight: 0.5
  test_split_size: 0.25
  seed: 3
dataset_num_proc: 12
beta: 0.5
do_eval: true
hub_private_repo: true
eval_strategy: steps
eval_steps: 2
gradient_accumulation_steps: 1
gradient_checkpointing_kwargs:
  use_reentrant: False
hub_model_id: smollm2-1.7B-dpo
learning_rate: 1.0e-3
log_level: info
logging_steps: 1
lr_scheduler_type: cosine
max_length: 64
optim: adamw_torch
output_dir: {out}
per_device_train_batch_size: 2
per_device_eval_batch_size: 4
push_to_hub: false
report_to: [none]
save_strategy: "no"
seed: 42
warmup_ratio: 0.1
"""


def _sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", A_ROWS)
    b = tmp_path / "b.parquet"
    datasets.Dataset.from_list(B_ROWS).to_parquet(str(b))
    return a, b


def _handbook(seed: int, test_size: float | int) -> tuple[list, list]:
    """The handbook's get_dataset, with datasets' own operations, on the same rows."""
    parts = []
    for rows, weight in ((A_ROWS, 1.0), (B_ROWS, 0.5)):
        ds = datasets.Dataset.from_list(rows).select_columns(["prompt", "chosen", "rejected"])
        parts.append(ds.shuffle(seed=seed).select(range(int(len(ds) * weight))))
    mixed = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    split = mixed.train_test_split(test_size=test_size, seed=seed)
    return [
        [(r["prompt"], r["chosen"], r["rejected"]) for r in split[name]]
        for name in ("train", "test")
    ]


def _triples(data) -> list[tuple]:
    return [(e.prompt, e.chosen, e.rejected) for e in data.examples]


def test_a_handbook_recipe_loads_and_mixes_the_handbooks_rows(tiny_model_dirs, tmp_path) -> None:
    """dataset_mixture was refused ('list the files'); an alignment-handbook recipe now loads,
    and its pairs are the handbook's, row for row and in order: weight 0.5 keeps 4 of b's 8
    rows (shuffled by seed), columns drop the others, test_split_size 0.25 holds out
    ceil(0.25 * 14) = 4 of the 14 (a count too), each as datasets' own operations do."""
    a, b = _sources(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(HANDBOOK_RECIPE.format(model=tiny_model_dirs["gpt2"], a=a, b=b,
                                             out=tmp_path / "out"))  # fmt: skip
    config = load_config(str(recipe))
    assert config.dataset_mixture["seed"] == 3 and config.train_file is None
    lines: list[str] = []
    mixed = load_mixture(config.dataset_mixture, Columns(), echo=lines.append)
    train_rows, test_rows = _handbook(3, 0.25)
    assert (len(mixed.train), len(mixed.test)) == (10, 4)
    assert _triples(mixed.train) == train_rows and _triples(mixed.test) == test_rows
    assert all(example.columns == {"chosen": e[1], "rejected": e[2]}
               for example, e in zip(mixed.train.examples, train_rows, strict=True))  # fmt: skip
    assert (
        f"dataset_mixture: {b}: 4 pairs, layout explicit (4 of 8 rows, weight 0.5; the 4 left "
        "out are not checked)" in (lines)
    )
    assert mixed.train.examples[0].where.startswith((f"{a}: line ", f"{b}: row "))
    # a count of rows; another seed draws other rows, the same counts
    value = {**config.dataset_mixture, "test_split_size": 3}
    mixed = load_mixture(value, Columns())
    assert (_triples(mixed.train), _triples(mixed.test)) == tuple(_handbook(3, 3))
    other = load_mixture({**value, "seed": 4}, Columns())
    assert len(other.test) == 3 and _triples(other.train) != _triples(mixed.train)
    # TRL's DatasetMixtureConfig at the top level (trl dpo --config), with its spellings
    trl = DPOConfig(datasets=[{"path": str(a), "columns": ["prompt", "chosen", "rejected"]},
                              {"path": str(b), "split": "train"}], test_split_size=0.2)  # fmt: skip
    assert trl.dataset_mixture == {
        "datasets": [{"path": str(a), "columns": ["prompt", "chosen", "rejected"]},
                     {"path": str(b), "split": "train"}], "test_split_size": 0.2,
        "shuffle": False,
    }  # fmt: skip
    mixed = load_mixture(trl.dataset_mixture, Columns())
    assert (len(mixed.train), len(mixed.test)) == (14, 4)  # each used whole: 18 rows
    assert sorted(_triples(mixed.train) + _triples(mixed.test)) == sorted(
        (r["prompt"], r["chosen"], r["rejected"]) for r in A_ROWS + B_ROWS
    )


def test_a_mixture_trains_evaluates_records_and_resumes_exactly(tiny_model_dirs, tmp_path) -> None:
    """Its test split is evaluated; config.yaml and the model card record the mixture (a rerun
    of config.yaml reads the same pairs); an interrupted run resumes on the same pairs, to the
    same weights."""
    from directpo.trainer import train

    a, b = _sources(tmp_path)
    mixture = {"datasets": [{"id": str(a), "weight": 1.0}, {"id": str(b), "weight": 0.5}],
               "seed": 1, "test_split_size": 2}  # fmt: skip
    settings = dict(dataset_mixture=mixture, max_steps=4, save_steps=2, eval_steps=4,
                    per_device_train_batch_size=4)  # fmt: skip
    lines: list[str] = []
    full = train(
        tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "full", **settings),
        echo=lines.append,
    )
    assert any(line.startswith("train: dataset_mixture[train] of ") and ": 12 pairs" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("eval: dataset_mixture[test]") and ": 2 pairs" in line
               for line in lines)  # fmt: skip
    assert any("eval/loss" in row for row in full.metrics)
    recorded = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert recorded["dataset_mixture"] == mixture
    card = (tmp_path / "full" / "README.md").read_text()
    assert "dataset_mixture[train] of" in card and "test_split_size: 2" in card

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train(
        tiny_config(tiny_model_dirs["gpt2"], None, resumed_dir, resume_from_checkpoint="latest",
                    **settings),
        echo=lambda _: None,
    )  # fmt: skip
    for key, tensor in full.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[key]), key
    other = {**mixture, "seed": 2}  # other pairs: refused, not trained on silently
    with pytest.raises(ConfigError, match="was trained on other pairs"):
        train(
            tiny_config(tiny_model_dirs["gpt2"], None, resumed_dir,
                        resume_from_checkpoint="checkpoint-2", **{**settings,
                                                                  "dataset_mixture": other}),
            echo=lambda _: None,
        )  # fmt: skip


def test_a_mixtures_bad_sources_rows_and_combinations_are_one_line(
    tiny_model_dirs, tmp_path
) -> None:
    a, b = _sources(tmp_path)
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [*SENTIMENT_PAIRS[:2], {"prompt": "x", "chosen": 1, "rejected": "y"}],
    )
    columns = Columns()

    def mixture(*entries: dict, **more) -> dict:
        return {"datasets": list(entries), **more}

    with pytest.raises(DataError, match=re.escape(f"{bad}: line 3: ")):
        load_mixture(mixture({"id": str(a)}, {"id": str(bad)}), columns)
    skipped = load_mixture(mixture({"id": str(a)}, {"id": str(bad)}), columns,
                           skip_invalid_rows=True)  # fmt: skip
    assert len(skipped.train) == 12 and "skipped 1 invalid row (" in skipped.train.summary()
    for entry, message in (
        ({"id": str(tmp_path / "none.jsonl")}, f"{tmp_path}/none.jsonl: no such file or folder"),
        ({"id": "data/none.jsonl"}, "dataset_mixture: data/none.jsonl: no such file or folder"),
        ({"id": str(b), "columns": ["prompt", "answer"]}, "column 'answer' not found"),
        ({"id": str(a), "split": "test"}, "a file holds one split (train) and no "
         "configurations; remove split: test, or list"),  # (was split 'test', Python's)
    ):  # fmt: skip
        with pytest.raises(DataError, match=re.escape(message)):
            load_mixture(mixture(entry), columns)
    with pytest.raises(DataError, match="test_split_size 18 leaves no training pairs"):
        load_mixture(mixture({"id": str(a)}, {"id": str(b)}, test_split_size=18), columns)
    saved = tmp_path / "saved"
    splits = {"train": B_ROWS, "test": A_ROWS}
    datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}
    ).save_to_disk(str(saved))
    assert len(load_mixture(mixture({"id": str(saved), "split": "test"}), columns).train) == 10
    # the handbook's `config: default` (the hub dataset's only configuration) reads its copy
    # saved to disk, as load_dataset takes "default" for a folder of data files; another name
    # is still refused
    entry = {"id": str(saved), "config": "default", "split": "test"}
    assert len(load_mixture(mixture(entry), columns).train) == 10
    with pytest.raises(DataError, match=r"has no configurations; remove config \(en\)"):
        load_mixture(mixture({**entry, "config": "en"}), columns)
    with pytest.raises(DataError, match=r"no split 'dev' \(it has train, test\)"):
        load_mixture(mixture({"id": str(saved), "split": "dev"}), columns)
    for options, message in (
        (dict(dataset_mixture=mixture({"id": "d", "wieght": 1})),
         "dataset_mixture: datasets[0]: unknown key 'wieght'; did you mean 'weight'?"),
        (dict(dataset_mixture=mixture({"id": "d", "weight": 1.5})), "weight must be a fraction"),
        (dict(dataset_mixture=mixture({"path": "d", "fraction": 0.5})),
         "fraction (TRL's share: each source's first rows, unshuffled) needs shuffle: false"),
        (dict(dataset_mixture={"datasets": []}), "datasets must be a non-empty list"),
        # numpy's generators refuse it: a traceback once the files were read
        (dict(dataset_mixture=mixture({"id": "d"}, seed=-1)), "seed must be an integer >= 0"),
        (dict(dataset_mixture=mixture({"id": "d"}, test_split_size=1.0)),
         "test_split_size must be a fraction in (0, 1) or a number of rows"),
        (dict(dataset_mixture=mixture({"id": "d"}), train_file="a.jsonl"),
         "dataset_mixture and train_file are both set"),
        (dict(dataset_mixture=mixture({"id": "d"}), dataset_name="d"),
         "dataset_mixture and dataset_name are both set"),
        (dict(dataset_mixture=mixture({"id": "d"}, test_split_size=2), eval_file="e.jsonl"),
         "test_split_size and eval_file both give held-out pairs"),
        (dict(dataset_mixer={"d": 1.0}), "write it as dataset_mixture={"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(message)):
            DPOConfig(model_name_or_path="m", **options)
    # its test split gives eval_generate its prompts (refused: "set eval_file")
    check_environment(
        DPOConfig(model_name_or_path=str(tiny_model_dirs["gpt2"]), eval_generate=1,
                  dataset_mixture=mixture({"id": str(a)}, test_split_size=2))
    )  # fmt: skip


def test_a_runs_config_yaml_records_every_mixture_path_absolute(tmp_path, monkeypatch) -> None:
    """config.yaml recorded a mixture's local id as absolute but not TRL's spelling of it
    (path:), nor the data_files (data_dir) a builder's name reads from the working directory:
    the run's config.yaml rerun from another folder was 'p.jsonl: no such file or folder', or
    read another file of that name. A folder's own data_files (read inside it) and URLs stay."""
    work = tmp_path / "work"
    (work / "folder").mkdir(parents=True)
    for path in (work / "p.jsonl", work / "folder" / "f.jsonl"):
        write_jsonl(path, SENTIMENT_PAIRS)
    monkeypatch.chdir(work)
    mixture = {
        "datasets": [
            {"path": "p.jsonl"},
            {"id": "json", "data_files": "p.jsonl"},
            {"id": "json", "data_files": {"train": ["p.jsonl"]}},
            {"id": "json", "data_dir": "folder", "data_files": "f.jsonl"},
            {"id": "folder", "data_files": "f.jsonl"},
            {"id": "json", "data_files": "https://example.com/p.jsonl"},
        ]
    }
    config = DPOConfig(model_name_or_path="m", dataset_mixture=mixture)
    recorded = config.record()["dataset_mixture"]["datasets"]
    assert recorded == [
        {"path": str(work / "p.jsonl")},
        {"id": "json", "data_files": str(work / "p.jsonl")},
        {"id": "json", "data_files": {"train": [str(work / "p.jsonl")]}},
        {"id": "json", "data_dir": str(work / "folder"), "data_files": "f.jsonl"},
        {"id": str(work / "folder"), "data_files": "f.jsonl"},
        {"id": "json", "data_files": "https://example.com/p.jsonl"},
    ]
    assert config.dataset_mixture == mixture  # the run itself reads them as given


def test_a_sources_columns_that_leave_out_system_column_are_named(tmp_path) -> None:
    """system_column with a source whose columns list leaves it out: the error said the file
    lacked the column ("sys.jsonl: column 'system' not found ..."), which it holds."""
    rows = [{**row, "system": "Answer briefly."} for row in SENTIMENT_PAIRS[:3]]
    source = write_jsonl(tmp_path / "sys.jsonl", rows)
    columns = Columns(system="system")
    entry = {"id": str(source), "columns": ["prompt", "chosen", "rejected"]}
    with pytest.raises(DataError) as info:
        load_mixture({"datasets": [entry]}, columns)
    assert str(info.value) == (
        f"dataset_mixture: {source}: its columns (prompt, chosen, rejected) leave out "
        "system_column 'system'; add it to them"
    )
    entry["columns"].append("system")
    mixed = load_mixture({"datasets": [entry]}, columns).train
    assert [e.prompt[0] for e in mixed.examples] == [
        {"role": "system", "content": "Answer briefly."}
    ] * 3


def test_builder_entries_are_named_by_their_files(tmp_path) -> None:
    """Two `id: json` entries (the handbook's spelling for local files) were both "json[train]":
    a bad row's line named no file, and the mixture's summaries could not be told apart."""
    good = write_jsonl(tmp_path / "good.jsonl", A_ROWS[:3])
    bad = write_jsonl(tmp_path / "bad.jsonl", [*A_ROWS[3:5], {**A_ROWS[5], "rejected": None}])
    said: list[str] = []
    mixture = {
        "datasets": [
            {"id": "json", "data_files": str(good)},
            {"id": "json", "data_files": {"train": [str(bad), str(good)]}},
        ]
    }
    with pytest.raises(DataError) as refused:
        load_mixture(mixture, Columns(), echo=said.append)
    assert said[0].startswith(f"dataset_mixture: json({good})[train]: 3 pairs")
    # (the bad row by its own file and line, not its place across the entry's files)
    assert str(refused.value).startswith(f"json({bad} and 1 more)[train]: {bad}: line 3: ")


def test_a_mixtures_bad_rows_are_said_in_file_order_and_every_source_in_one_run(
    tmp_path,
) -> None:
    """The rows were validated in the shuffled order they are mixed in, so the line named a
    file's bad rows out of order (line 8, then line 16 "(like it: line 4)"), and the first
    source with bad rows stopped the read: the next one's (or a second missing file) came
    with the next run. Each file's rows are now said as written, every source in one line."""
    rows = [{"prompt": f"p{i}", "chosen": f" c{i}", "rejected": f" r{i}"} for i in range(20)]
    same, empty = {"prompt": "p", "chosen": " x", "rejected": " x"}, {**rows[0], "chosen": ""}
    first = write_jsonl(tmp_path / "first.jsonl", [
        same if i in (3, 15) else empty if i == 7 else row for i, row in enumerate(rows)
    ])  # fmt: skip
    second = write_jsonl(tmp_path / "second.jsonl", [*rows[:2], {**rows[2], "chosen": 5}, same])
    entries = [{"id": str(first)}, {"id": str(second)}]
    with pytest.raises(DataError) as info:  # (seed 1 shuffles line 8 before line 4)
        load_mixture({"datasets": entries, "seed": 1}, Columns())
    # the skip_invalid_rows hint once, at the end (it ended each source's problems)
    assert str(info.value) == (
        f"{first}: line 4: chosen and rejected are identical (1 more row like it: line 16); "
        f"line 8: field 'chosen' is empty; {second}: line 3: field 'chosen' must be a string, "
        "got a number; line 4: chosen and rejected are identical; skip_invalid_rows: true "
        "skips them"
    )
    missing = [{"id": str(tmp_path / "a.jsonl")}, {"id": str(tmp_path / "b.jsonl")}]
    with pytest.raises(DataError) as info:
        load_mixture({"datasets": missing}, Columns())
    assert str(info.value) == (
        f"dataset_mixture: {tmp_path}/a.jsonl: no such file or folder; "
        f"dataset_mixture: {tmp_path}/b.jsonl: no such file or folder"
    )


def test_a_mixtures_problems_are_said_beside_refused_values_in_one_run(tmp_path) -> None:
    """Each took a run of its own: a bad weight (only the first entry's was said), then a
    source that is not there (said once the data was read, after the model folder's check),
    and a mixture's bad rows beside a refused value (never read with it), or beside another
    entry's refused weight."""
    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    bad = write_jsonl(tmp_path / "bad.jsonl", [*SENTIMENT_PAIRS[:2], {"prompt": "x"}])
    none = tmp_path / "none.jsonl"
    entries = [{"id": str(bad), "weight": 1.5}, {"id": str(none), "weight": 0}]
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=str(tmp_path), dataset_mixture={"datasets": entries})
    assert str(info.value).splitlines()[1:] == [
        "  dataset_mixture: datasets[0]: weight must be a fraction in (0, 1] of the source's "
        "rows, got 1.5",
        "  dataset_mixture: datasets[1]: weight must be a fraction in (0, 1] of the source's "
        "rows, got 0",
        f"  dataset_mixture: {none}: no such file or folder",
    ]
    mixture = {"datasets": [{"id": str(bad)}]}
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=str(tmp_path), dataset_mixture=mixture, beta=-1)
    assert str(info.value).splitlines()[-2:] == [
        f"  {bad}: line 3: missing field 'chosen'",
        "  skip_invalid_rows=True skips them",
    ]
    # an entry's refused weight leaves the other entries' rows to be read as the run reads them
    good = write_jsonl(tmp_path / "good.jsonl", SENTIMENT_PAIRS[:2])
    mixture = {"datasets": [{"id": str(good), "weight": 2}, {"id": str(bad)}]}
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=str(tmp_path), dataset_mixture=mixture)
    assert str(info.value).splitlines()[-2:] == [
        f"  {bad}: line 3: missing field 'chosen'",
        "  skip_invalid_rows=True skips them",
    ]
    config = DPOConfig(model_name_or_path=str(tmp_path / "gone"), dataset_mixture={
        "datasets": [{"id": str(none)}]
    })  # fmt: skip
    with pytest.raises(ConfigError) as info:
        check_environment(config)
    assert str(info.value).splitlines()[1:] == [
        f"  model_name_or_path: no such model folder: {tmp_path}/gone",
        f"  dataset_mixture: {none}: no such file or folder",
    ]


def test_a_misspelt_column_of_a_json_lines_source_is_named(tmp_path) -> None:
    """An entry's columns naming one its JSON Lines rows lack (a typo) dropped it from every
    row silently, and the file was then said to lack the column it holds ("column 'rejected'
    not found ...; set chosen_column / rejected_column"), as datasets' select_columns would
    not: the entry's column is named, as for a file that declares its columns."""
    source = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2])
    entry = {"id": str(source), "columns": ["prompt", "chosen", "rejekted"]}
    with pytest.raises(DataError) as info:
        load_mixture({"datasets": [entry]}, Columns())
    assert str(info.value) == (
        f"dataset_mixture: {source}: column 'rejekted' not found (columns: prompt, chosen, "
        "rejected); fix the source's columns"
    )


def test_trls_top_level_datasets_are_its_rows_in_its_order(tmp_path) -> None:
    """TRL's DatasetMixtureConfig (trl dpo --config: datasets at the top level) concatenates its
    sources' rows as they are, and its trainer's sampler alone shuffles them; it was read as
    the handbook's mixture, each source and the concatenation shuffled by seed 0, so the same
    seed trained other pairs at each step than TRL. Its rows are now TRL's get_dataset's, in
    its order; the handbook's dataset_mixture is unchanged, and shuffle must be a boolean."""
    from trl.scripts.utils import DatasetConfig, DatasetMixtureConfig, get_dataset

    a, b = _sources(tmp_path)
    config = load_config(None, {
        "datasets": [{"path": "json", "data_files": str(a)},
                     {"path": "parquet", "data_files": str(b),
                      "columns": ["prompt", "chosen", "rejected"]}],
    })  # fmt: skip
    assert config.dataset_mixture["shuffle"] is False
    theirs = get_dataset(DatasetMixtureConfig(datasets=[
        DatasetConfig(path="json", data_files=str(a)),
        DatasetConfig(path="parquet", data_files=str(b), columns=["prompt", "chosen", "rejected"]),
    ]))["train"]  # fmt: skip
    ours = load_mixture(config.dataset_mixture, Columns()).train
    assert _triples(ours) == [(r["prompt"], r["chosen"], r["rejected"]) for r in theirs]
    handbook = load_mixture({**config.dataset_mixture, "shuffle": True}, Columns()).train
    assert sorted(_triples(handbook)) == sorted(_triples(ours)) != _triples(handbook)
    with pytest.raises(ConfigError, match="dataset_mixture: shuffle must be true or false"):
        load_mixture({**config.dataset_mixture, "shuffle": "no"}, Columns())


def test_trls_fraction_keeps_its_rows_of_each_source(tmp_path) -> None:
    """TRL's DatasetConfig.fraction (shares of the mixture: the largest mixture in which no
    source gives more rows than it has) was refused 'use weight', which keeps another number
    of rows (weight 0.5 of 10 and 8 rows: 5 + 4; TRL's fraction 0.5 / 0.5: 8 + 8). Its rows
    are TRL's get_dataset's, in its order; TRL's rules are one line each before any reading."""
    from trl.scripts.utils import DatasetConfig, DatasetMixtureConfig, get_dataset

    a, b = _sources(tmp_path)
    columns = ["prompt", "chosen", "rejected"]
    for fractions in ((0.5, 0.5), (0.3, 0.7), (2, 1), (0, 1)):
        entries = [{"path": "json", "data_files": str(a), "fraction": fractions[0]},
                   {"path": "parquet", "data_files": str(b), "columns": columns,
                    "fraction": fractions[1]}]  # fmt: skip
        said: list[str] = []
        config = load_config(None, {"datasets": entries})
        ours = load_mixture(config.dataset_mixture, Columns(), echo=said.append).train
        theirs = get_dataset(DatasetMixtureConfig(datasets=[
            DatasetConfig(**entry) for entry in entries  # type: ignore[arg-type]
        ]))["train"]  # fmt: skip
        assert _triples(ours) == [(r["prompt"], r["chosen"], r["rejected"]) for r in theirs]
        if fractions == (0.5, 0.5):
            assert len(ours.examples) == 16 and "(8 of 10 rows, fraction 0.5; the 2" in said[0]
    some = [{"path": str(a), "fraction": 0.5}, {"path": str(b)}]
    for entries, message in (
        (some, "fraction must be set for every source or none (TRL's rule)"),
        ([{**some[0], "fraction": 0}, {**some[1], "fraction": 0}], "the fractions are all 0"),
        ([{**some[0], "weight": 0.5}, some[1]], "fraction (TRL's share of the mixture) and "
         "weight (the handbook's share of this source) both set: keep one"),
        ([{**some[0], "fraction": -1}, some[1]], "fraction must be a number >= 0, got -1"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(None, {"datasets": entries})


def test_a_weights_left_out_rows_are_not_checked_and_the_start_line_says_so(tmp_path) -> None:
    """A bad row among the rows a weight leaves out passed without a word, one among those it
    keeps was refused: the handbook hands TRL only the kept rows, so only they are validated,
    and the start line says how many were left out unchecked (the early check of a refused
    config reads the same rows: with shuffle: false, the first ones)."""
    rows = [{"prompt": f"q{i}", "chosen": " b", "rejected": " c"} for i in range(4)]
    del rows[2]["rejected"]  # (seed 0 keeps rows 2 and 0; the first ones, 0 and 1)
    source = write_jsonl(tmp_path / "a.jsonl", rows)
    mixture = {"datasets": [{"id": str(source), "weight": 0.5}], "seed": 0}
    with pytest.raises(DataError, match=r"a.jsonl: line 3: missing field 'rejected'"):
        load_mixture(mixture, Columns())
    lines: list[str] = []
    first = load_mixture({**mixture, "shuffle": False}, Columns(), echo=lines.append)
    assert len(first.train) == 2
    assert lines == [
        f"dataset_mixture: {source}: 2 pairs, layout explicit (2 of 4 rows, weight 0.5; the 2 "
        "left out are not checked)"
    ]
    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    with pytest.raises(ConfigError) as info:  # a refused value: the run's rows said beside it
        DPOConfig(model_name_or_path=str(tmp_path), learning_rate=-1,
                  dataset_mixture={**mixture, "shuffle": False})  # fmt: skip
    assert str(info.value) == "learning_rate must be > 0 (got -1)"


def test_a_builders_data_files_over_a_snapshots_splits_are_refused(tmp_path, monkeypatch) -> None:
    """{id: json, data_files: data/*.jsonl} of a hub snapshot read its test file into the one
    split datasets makes of data_files without split names: the test pairs were trained on."""
    from directpo.mixture_entries import missing_sources

    (tmp_path / "data").mkdir()
    for name in ("train-00000-of-00001.jsonl", "test-00000-of-00001.jsonl"):
        write_jsonl(tmp_path / "data" / name, SENTIMENT_PAIRS)
    monkeypatch.chdir(tmp_path)
    entry = {"id": "json", "data_files": "data/*.jsonl"}
    assert missing_sources({"datasets": [entry]}) == [
        "dataset_mixture: json: data_files: data/test-00000-of-00001.jsonl is the test split's "
        "by name, beside the train split's (data/train-00000-of-00001.jsonl): held-out pairs "
        "would be trained on; give only the train split's files, or data_files: {train: ..., "
        "test: ...} naming each split's (split picks one)"
    ]
    named = {"train": "data/train-*.jsonl", "test": "data/test-*.jsonl"}
    assert missing_sources({"datasets": [{**entry, "data_files": named}]}) == []
    # a mapping's split read, matching both (was not checked: the test pairs trained)
    for split in (None, "train", "train[:50%]"):
        chosen = {} if split is None else {"split": split}
        mapped = {**entry, "data_files": {"train": "data/*.jsonl"}, **chosen}
        assert missing_sources({"datasets": [mapped]}) == [
            "dataset_mixture: json: data_files: train: data/test-00000-of-00001.jsonl is the "
            "test split's by name, beside the train split's (data/train-00000-of-00001.jsonl): "
            "held-out pairs would be trained on; give only the train split's files, or "
            "data_files: {train: ..., test: ...} naming each split's (split picks one)"
        ]
    held_out = {**entry, "data_files": {"train": "data/train-*.jsonl", "test": "data/*.jsonl"}}
    assert missing_sources({"datasets": [held_out]}) == []  # (its test split is not read)


def test_a_builders_missing_data_files_are_said_before_loading(tmp_path, monkeypatch) -> None:
    """``{id: json, data_files: x.jsonl}`` (TRL's DatasetConfig, the handbook's local files)
    with x.jsonl not there was 'cannot load (Unable to find ...); the Hub cannot be reached'
    after seconds of loading, a pattern that matched nothing 'cannot load (StopIteration)'."""
    from directpo.mixture_entries import missing_sources

    write_jsonl(tmp_path / "a.jsonl", SENTIMENT_PAIRS)
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "b.jsonl", SENTIMENT_PAIRS)
    monkeypatch.chdir(tmp_path)

    def said(**entry) -> list[str]:
        return missing_sources({"datasets": [{"id": "json", **entry}]})

    assert said(data_files="none.jsonl") == [
        "dataset_mixture: json: data_files: no such file or folder: none.jsonl"
    ]
    assert said(data_files={"train": ["a.jsonl", "none.jsonl"]}) == [
        "dataset_mixture: json: data_files: no such file or folder: none.jsonl"
    ]
    assert said(data_files="no*.jsonl") == [
        "dataset_mixture: json: data_files: no file matches the pattern no*.jsonl"
    ]
    assert said(data_dir="nowhere") == ["dataset_mixture: json: data_dir: no such folder: nowhere"]
    for there in (
        dict(data_files="a.jsonl"), dict(data_files="*.jsonl"), dict(data_files=["a.jsonl"]),
        dict(data_dir="sub", data_files="b.jsonl"), dict(data_dir="sub"),
        dict(data_files="hf://datasets/org/d/train.jsonl"),
    ):  # fmt: skip
        assert said(**there) == [], there
    # a hub dataset's data_files are its repository's
    assert missing_sources({"datasets": [{"id": "org/d", "data_files": "none.jsonl"}]}) == []
    with pytest.raises(ConfigError, match="json: data_files: no such file or folder: none.json"):
        check_environment(
            DPOConfig(model_name_or_path="org/m", output_dir=str(tmp_path / "out"),
                      dataset_mixture={"datasets": [{"id": "json", "data_files": "none.jsonl"}]})
        )  # fmt: skip


@pytest.mark.parametrize("value", ["5", "HuggingFaceH4/ultrafeedback_binarized", "[a.jsonl]"])
def test_a_mixture_that_is_no_mapping_is_told_its_shape(tmp_path, value) -> None:
    """``dataset_mixture: 5`` (or a hub id, or the list of datasets alone) was 'must be a
    mapping, got ...', the alignment-handbook's shape said nowhere."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: m\ndataset_mixture: {value}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert str(refused.value).endswith(
        "({datasets: [{id: a hub id or file, weight: 1.0}, ...]}, the alignment-handbook's; one "
        "dataset: dataset_name or train_file)"
    )


def test_a_python_mixtures_paths_are_their_files(tmp_path) -> None:
    """A notebook's ``dataset_mixture={"datasets": [{"id": Path(...)}]}`` (pathlib, as
    train_file takes it) was refused as 'id (a hub id, a dataset folder or a file) is
    required', the id given; ``id: 5`` was told so too."""
    from pathlib import Path

    from directpo.mixture_entries import parse_mixture

    data = write_jsonl(tmp_path / "a.jsonl", SENTIMENT_PAIRS[:4])
    given = parse_mixture({"datasets": [{"id": Path(data), "data_files": [Path(data)]}]})
    written = parse_mixture({"datasets": [{"id": str(data), "data_files": [str(data)]}]})
    assert given == written and given.sources[0].id == str(data)
    with pytest.raises(ConfigError, match=r"datasets\[0\]: id must be a hub id, a dataset fold"):
        parse_mixture({"datasets": [{"id": 5}]})
    with pytest.raises(ConfigError, match=r"datasets\[0\]: id \(a hub id, .*\) is required"):
        parse_mixture({"datasets": [{"split": "train"}]})


def test_a_source_is_read_holding_only_the_rows_its_weight_keeps(tmp_path, monkeypatch) -> None:
    """Each source's rows were held whole to count and shuffle them (2.7 GB to keep 21k of
    360k rows); now one pass counts them and a second keeps the rows the seeded permutation
    picks. At no time are more than those rows held, and they are the handbook's rows, in its
    order (datasets' own shuffle, select and concatenation)."""
    import weakref

    import directpo.mixture as mixture_module

    rows = [
        {"prompt": f"Question {i}?", "chosen": f" good {i}", "rejected": f" bad {i}"}
        for i in range(400)
    ]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    alive, most = [0], [0]
    opening = mixture_module.open_rows

    class Row(dict):  # (a dict that a weak set can hold)
        pass

    def watched(source, label, lazy=False):
        read, names = opening(source, label, lazy=lazy)

        def each():
            for where, row in read:
                row = Row(row)
                alive[0] += 1
                weakref.finalize(row, lambda: alive.__setitem__(0, alive[0] - 1))
                most[0] = max(most[0], alive[0])
                yield where, row

        return each(), names

    monkeypatch.setattr(mixture_module, "open_rows", watched)
    for weight, seed in ((0.05, 0), (0.1, 7)):
        mixture = {"datasets": [{"id": str(path), "weight": weight}], "seed": seed}
        most[0] = 0
        ours = load_mixture(mixture, Columns()).train
        kept = int(len(rows) * weight)
        assert len(ours.examples) == kept and most[0] <= kept + 2  # (the row read, the last)
        theirs = datasets.Dataset.from_list(rows).shuffle(seed=seed).select(range(kept))
        handbook = theirs.shuffle(seed=seed)  # (the one source's mixture, shuffled again)
        assert _triples(ours) == [(r["prompt"], r["chosen"], r["rejected"]) for r in handbook]


def test_a_source_whose_weight_keeps_every_row_is_read_once(tmp_path, monkeypatch) -> None:
    """A weight of 1 (the handbook's default) keeps every row: they are held from the pass
    that counts them, not read a second time; a smaller share reads the file twice."""
    import directpo.mixture as mixture_module

    path = write_jsonl(tmp_path / "a.jsonl", A_ROWS)
    opened: list[str] = []
    opening = mixture_module.open_rows

    def counted(source, label, lazy=False):
        opened.append(label)
        return opening(source, label, lazy=lazy)

    monkeypatch.setattr(mixture_module, "open_rows", counted)
    whole = load_mixture({"datasets": [{"id": str(path)}], "seed": 3}, Columns()).train
    assert opened == [str(path)] and len(whole.examples) == len(A_ROWS)
    opened.clear()
    half = load_mixture({"datasets": [{"id": str(path), "weight": 0.5}], "seed": 3}, Columns())
    assert opened == [str(path)] * 2 and len(half.train.examples) == len(A_ROWS) // 2
    theirs = datasets.Dataset.from_list(A_ROWS).shuffle(seed=3).shuffle(seed=3)
    assert _triples(whole) == [(r["prompt"], r["chosen"], r["rejected"]) for r in theirs]
