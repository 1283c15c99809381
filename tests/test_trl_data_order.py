"""The pairs each step trains on are TRL's for the same seed / data_seed.

TRL's DPOTrainer keeps its dataset's order (it only drops rows whose prompt alone fills
max_length, none here; directpo keeps them: docs/design.md) and leaves the shuffling to
transformers' Trainer: a ``RandomSampler`` that
accelerate's ``prepare_data_loader`` turns into a ``SeedableRandomSampler``, seeded
``data_seed`` (else the global seed, ``seed``) + epoch, cut into ``per_device_train_batch_size``
batches; ``gradient_accumulation_steps`` consecutive batches make a step; under DDP,
``BatchSamplerShard`` deals the batches to the ranks in turn. Here TRL's own dataloader is
built (a tiny model, no hub) and read batch by batch.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import datasets
import pytest
import torch
from tiny import save_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl_runs import trl_and_directpo_logs

from directpo.batching import LEGACY_ORDER, TRL_ORDER, DataSchedule
from directpo.distributed import World, shard
from directpo.tokenization import TokenizedPair

trl = pytest.importorskip("trl")
accelerate_data = pytest.importorskip("accelerate.data_loader")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model("gpt2", tmp_path_factory.mktemp("order") / "policy", seed=0)


def trl_epochs(model_dir, tmp_path, n, epochs, **options) -> list[list[list[int]]]:
    """Each epoch's batches of indices as TRL's train dataloader yields them (one process)."""
    rows = [dict(prompt=f"Row {i}:", chosen=" yes", rejected=" no") for i in range(n)]
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True, bf16=False, **options
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(model_dir),
        )
    # every row kept, in the file's order (TRL sorts and shuffles nothing before the sampler)
    assert [r["prompt_ids"] for r in trainer.train_dataset] == [
        AutoTokenizer.from_pretrained(model_dir)(r["prompt"])["input_ids"] for r in rows
    ]
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.batch_sampler.sampler, accelerate_data.SeedableRandomSampler)
    batches = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)  # as Trainer._run_epoch does at each epoch's start
        batches.append([list(batch) for batch in loader.batch_sampler])
    return batches


CASES = [  # n, per_device_train_batch_size, gradient_accumulation_steps, seed, data_seed,
    # dataloader_drop_last
    (11, 3, 2, 42, None, False),
    (8, 2, 1, 7, None, False),
    (7, 4, 3, 1234, None, False),
    (10, 1, 4, 3, 17, False),
    (5, 8, 1, 2**32 - 1, None, False),  # (the largest seed: seed + epoch passes 2**32)
    (11, 3, 2, 42, None, True),
    (14, 4, 3, 5, 9, True),
]


@pytest.mark.parametrize(("n", "batch", "accumulation", "seed", "data_seed", "drop_last"), CASES)
def test_each_steps_pairs_are_those_of_trls_dataloader(
    model_dir, tmp_path, n, batch, accumulation, seed, data_seed, drop_last
) -> None:
    """Three epochs of steps, each step's micro-batches those TRL's dataloader yields in the
    same order, grouped by gradient_accumulation_steps as transformers' Trainer groups them
    (the epoch's last step may hold fewer), an epoch's short last batch dropped with
    dataloader_drop_last. Before, directpo seeded each epoch with seed x 1000003 + epoch: the
    same pairs per epoch, other ones per step; and dataloader_drop_last: true was refused."""
    theirs = trl_epochs(
        model_dir, tmp_path, n, 3, per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, seed=seed, data_seed=data_seed,
        dataloader_drop_last=drop_last,
    )  # fmt: skip
    order_seed = seed if data_seed is None else data_seed
    schedule = DataSchedule(n, batch, accumulation, order_seed, drop_last=drop_last)
    steps = schedule.steps_per_epoch
    for epoch, batches in enumerate(theirs):
        grouped = [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]
        ours = [schedule.micro_batches(epoch * steps + s) for s in range(steps)]
        assert ours == grouped, epoch
    assert schedule.epoch_of(3 * steps) == 3


def test_data_seed_alone_orders_trls_pairs(model_dir, tmp_path) -> None:
    """TRL honours data_seed (accelerate's SeedableRandomSampler takes it in place of the global
    seed): two seeds with one data_seed give one order, which is directpo's for that data_seed."""
    kwargs = dict(per_device_train_batch_size=2, data_seed=5)
    first = trl_epochs(model_dir, tmp_path, 9, 2, seed=1, **kwargs)
    assert trl_epochs(model_dir, tmp_path, 9, 2, seed=2, **kwargs) == first
    schedule = DataSchedule(9, 2, 1, 5)
    assert [schedule.micro_batches(s)[0] for s in range(10)] == first[0] + first[1]


@pytest.mark.parametrize(
    ("n", "batch", "world", "drop_last"),
    [(16, 2, 2, False), (13, 2, 2, False), (23, 3, 4, False), (5, 1, 4, False), (23, 3, 4, True)],
)
def test_ddp_ranks_take_the_batches_accelerate_deals_them(n, batch, world, drop_last) -> None:
    """Under DDP, accelerate's prepare_data_loader (run here for every rank, no launch: a
    SeedableRandomSampler seeded alike on every rank, its batches dealt by BatchSamplerShard)
    gives the ranks the per-device batches of the seeded order in turn; directpo's step
    cuts the same order into global micro-batches of per_device x processes, each rank its
    slice (distributed.shard): the same pairs on the same rank. An epoch's last, short
    global micro-batch: TRL fills every rank's batch with pairs from the epoch's start again
    (even_batches), directpo trains each remaining pair once (docs/design.md): the pairs
    there are TRL's without its repeats; dataloader_drop_last drops it in both."""
    seed, ranks = 42, []
    for rank in range(world):  # as transformers' Trainer builds its train dataloader
        loader = torch.utils.data.DataLoader(
            list(range(n)), batch_size=batch, drop_last=drop_last,
            sampler=torch.utils.data.RandomSampler(range(n)),
        )  # fmt: skip
        loader = accelerate_data.prepare_data_loader(
            loader, num_processes=world, process_index=rank, put_on_device=False,
            use_seedable_sampler=True, data_seed=seed,
        )  # fmt: skip
        loader.set_epoch(0)
        ranks.append([indices.tolist() for indices in loader])
    schedule = DataSchedule(n, batch * world, 1, seed, drop_last=drop_last)
    assert schedule.micro_batches_per_epoch == len(ranks[0])  # as many steps as TRL
    order = schedule.permutation(0)
    for step in range(schedule.steps_per_epoch):
        (indices,) = schedule.micro_batches(step)
        shards = [shard(indices, World("ddp", rank=r, size=world)) for r in range(world)]
        mine = [[] if stand_in else pairs for pairs, stand_in in shards]  # (weight-0 stand-ins)
        theirs = [ranks[r][step] for r in range(world)]
        if len(indices) == batch * world:
            assert mine == theirs
        else:  # TRL's are the remaining pairs, then repeats of the epoch's first ones
            remaining = order[step * batch * world :]
            assert sorted(sum(mine, [])) == sorted(remaining)
            assert sum(theirs, [])[: len(remaining)] == remaining
            assert set(sum(theirs, [])[len(remaining) :]) <= set(order[: batch * world])


def test_the_earlier_order_is_kept_where_asked(model_dir, tmp_path) -> None:
    """LEGACY_ORDER (a checkpoint written before TRL's order) is the earlier permutation,
    seed x 1000003 + epoch, and not TRL's."""
    legacy = DataSchedule(11, 3, 2, 42, order=LEGACY_ORDER)
    generator = torch.Generator().manual_seed(42 * 1_000_003 + 1)
    assert legacy.permutation(1) == torch.randperm(11, generator=generator).tolist()
    assert legacy.permutation(1) != DataSchedule(11, 3, 2, 42).permutation(1)


def test_a_checkpoint_of_the_earlier_order_resumes_in_it(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A checkpoint written before directpo took TRL's order has no data_order: resumed, its
    next steps are the pairs its own run would have taken (the earlier order, said in a line),
    its later checkpoints keep that order, and the weights are the uninterrupted run's; a new
    run records TRL's order."""
    from tiny import tiny_config

    from directpo import sources
    from directpo.checkpoint import _checksum
    from directpo.trainer import train
    from directpo.trainer_state import STATE_FILE

    taken: dict[str, list] = {}
    batches = sources.FixedPairs.micro_batches
    current = ["earlier"]
    monkeypatch.setattr(
        sources.FixedPairs, "micro_batches",
        lambda self, step: taken.setdefault(current[0], []).append(batches(self, step))
        or taken[current[0]][-1],
    )  # fmt: skip
    options = dict(max_steps=6, per_device_train_batch_size=2, save_steps=3, seed=3)
    with monkeypatch.context() as earlier:  # the earlier directpo: its order, no data_order
        earlier.setattr(
            sources, "DataSchedule",
            lambda *args, **kwargs: DataSchedule(*args, **kwargs, order=LEGACY_ORDER),
        )  # fmt: skip
        whole = train(
            tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "a", **options),
            echo=lambda _: None,
        ).policy.state_dict()
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-3", resumed_dir / "checkpoint-3")
    state_file = resumed_dir / "checkpoint-3" / STATE_FILE
    state = json.loads(state_file.read_text())
    own = next(iter(state["stateful_callbacks"].values()))
    assert own.pop("data_order") == LEGACY_ORDER and own.pop("drop_last") is False
    state_file.write_text(json.dumps(state))
    manifest = json.loads((state_file.parent / "manifest.json").read_text())
    manifest["files"][STATE_FILE] = {
        "size": state_file.stat().st_size,
        "blake2b": _checksum(state_file),
    }
    (state_file.parent / "manifest.json").write_text(json.dumps(manifest))
    # (the earlier order: other pairs than TRL's from step 4 on)
    assert taken["earlier"][3:] != [DataSchedule(6, 2, 1, 3).micro_batches(s) for s in (3, 4, 5)]
    said: list[str] = []
    current[0] = "resumed"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, resumed_dir, **options,
        resume_from_checkpoint="latest",
    )  # fmt: skip
    resumed = train(config, echo=said.append).policy.state_dict()
    assert taken["resumed"] == taken["earlier"][3:]
    assert all(torch.equal(resumed[key], whole[key]) for key in whole)
    notes = [line for line in said if "own order" in line]
    assert notes == [
        f"resume: {resumed_dir / 'checkpoint-3'} was written by a directpo that shuffled the "
        "pairs in its own order, not TRL's; the run goes on in that order (a new run takes TRL's)"
    ]
    later = json.loads((resumed_dir / "checkpoint-6" / STATE_FILE).read_text())
    assert next(iter(later["stateful_callbacks"].values()))["data_order"] == LEGACY_ORDER
    new = sources.FixedPairs(sources.PairSet([TokenizedPair([1], [2], [3])], ["a"]), 1, 1, 0)
    assert new.state()["data_order"] == TRL_ORDER
    assert new.restore(new.state(), "ckpt") == []


def test_steps_over_part_of_the_pairs_log_trls_values(tmp_path) -> None:
    """TRL's trainer.train() and directpo's train(), six steps of two micro-batches of one pair
    over four pairs (three epochs, each step half of them): every step's loss and rewards are
    TRL's, which they were not where a step covers only some pairs (the orders differed)."""
    from tiny import SENTIMENT_PAIRS

    policy_dir = save_tiny_model("gpt2", tmp_path / "policy", seed=0)
    ref_dir = save_tiny_model("gpt2", tmp_path / "ref", seed=1)
    rows = SENTIMENT_PAIRS[:4]
    options = dict(
        loss_type=["sigmoid"], beta=0.3, learning_rate=1e-3, max_steps=6,
        per_device_train_batch_size=1, gradient_accumulation_steps=2, logging_steps=1,
        seed=11, data_seed=5,
    )  # fmt: skip
    ours, theirs = trl_and_directpo_logs(policy_dir, ref_dir, rows, tmp_path, **options)
    assert len(ours) == len(theirs) == 6
    for mine, row in zip(ours, theirs, strict=True):
        for key in ("loss", "rewards/chosen", "rewards/rejected", "logps/chosen", "epoch"):
            assert mine[key] == pytest.approx(row[key], abs=1e-5, rel=1e-5), (row["step"], key)


def test_dataloader_drop_last_is_trls(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """TRL's dataloader_drop_last: true was refused ('directpo uses every pair'). It drops each
    epoch's short last micro-batch, as transformers' Trainer does (its order: above); a run
    whose pairs fill no batch, online rounds (their pair counts vary) and a resume with the
    other value are refused in a line, and a checkpoint from before the option resumes as
    false."""
    from tiny import tiny_config

    from directpo.config import load_config
    from directpo.errors import ConfigError
    from directpo.sources import FixedPairs, PairSet
    from directpo.trainer import train

    assert load_config(None, {"dataloader_drop_last": "true"}).dataloader_drop_last is True
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", per_device_train_batch_size=4,
        max_steps=-1, num_train_epochs=2, dataloader_drop_last=True,
    )  # fmt: skip
    said: list[str] = []
    result = train(config, echo=said.append)  # 6 pairs: one batch of 4 an epoch
    taken = [row["epoch"] for row in result.metrics if "loss" in row]
    assert taken == [1.0, 2.0]
    assert any(line.startswith("training 2 steps (1 per epoch)") and
               "6 pairs (2 left out of each epoch), batch 4" in line for line in said)  # fmt: skip
    with pytest.raises(ConfigError, match="dataloader_drop_last=True with online=True"):
        tiny_config(tiny_model_dirs["llama"], None, tmp_path / "o", online=True,
                    prompt_file=str(pairs_file), dataloader_drop_last=True)  # fmt: skip
    pairs = PairSet([TokenizedPair([1], [2], [i]) for i in range(3)], ["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"the 3 training pairs fill no batch of 4 \("):
        FixedPairs(pairs, 4, 1, 0, drop_last=True)
    dropping, keeping = FixedPairs(pairs, 2, 1, 0, drop_last=True), FixedPairs(pairs, 2, 1, 0)
    assert dropping.steps_per_epoch == 1 and keeping.steps_per_epoch == 2
    # (values as YAML and flags write them: 'resume with True' was Python's)
    with pytest.raises(
        ConfigError,
        match="drop_last=true, this run has false; .* resume with dataloader_drop_last: true,",
    ):
        keeping.restore(dropping.state(), "ckpt")
    before = {k: v for k, v in keeping.state().items() if k != "drop_last"}
    assert keeping.restore(before, "ckpt") == []
    with pytest.raises(ConfigError, match="dataloader_drop_last=false, this run has true;"):
        dropping.restore(before, "ckpt")


def test_dataloader_drop_last_leaves_the_short_eval_batch_out_as_trl() -> None:
    """transformers' Trainer builds its eval dataloader with dataloader_drop_last too: TRL's
    eval metrics are of the full eval batches (per_device_eval_batch_size x processes), where
    directpo scored every held-out pair, so its eval curves differed from TRL's. 5 pairs in
    batches of 2 are now scored as the first 4; a set that fills no batch is scored whole."""
    import copy

    from tiny import build_model, build_tokenizer, tiny_config

    from directpo.batching import eval_batches
    from directpo.logprobs import SequenceScorer
    from directpo.reference import FrozenModelReference
    from directpo.step import evaluate

    model = build_model("llama", build_tokenizer("llama"))
    policy, reference = SequenceScorer(model), FrozenModelReference(copy.deepcopy(model))
    model.train()  # (evaluate scores in eval mode: no dropout either way)
    pairs = [TokenizedPair([1, 5 + i], [7, 8 + i, 2], [9 + i, 2]) for i in range(5)]

    def scored(held_out, drop_last: bool, batch: int = 2) -> dict[str, float]:
        config = tiny_config("unused", None, "unused", per_device_eval_batch_size=batch,
                             dataloader_drop_last=drop_last)  # fmt: skip
        return evaluate(policy, reference, held_out, config, 0, torch.device("cpu"))

    assert scored(pairs, True) == scored(pairs[:4], False) != scored(pairs, False)
    assert scored(pairs, True, batch=8) == scored(pairs, False, batch=8)
    assert eval_batches(5, 2, drop_last=True) == [[0, 1], [2, 3]]


def test_the_held_out_pairs_dataloader_drop_last_leaves_out_are_said(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """dataloader_drop_last's left-out training pairs were said on the start line ('(1 left
    out of each epoch)'), the held-out pairs it leaves out of each evaluation (the short last
    eval batch, as TRL) were not: 'eval: 3 pairs' said, then metrics of 2. Both are said."""
    from tiny import tiny_config, write_jsonl

    from directpo.trainer import train

    rows = [{"prompt": f"Q{i}?", "chosen": " yes", "rejected": " no"} for i in range(3)]
    held_out = write_jsonl(tmp_path / "eval.jsonl", rows)
    lines: list[str] = []
    options = dict(eval_file=str(held_out), per_device_eval_batch_size=2, eval_steps=1,
                   eval_strategy="steps", per_device_train_batch_size=2)  # fmt: skip
    for drop_last in (True, False):
        config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / str(drop_last),
                             dataloader_drop_last=drop_last, **options)  # fmt: skip
        train(config, echo=lines.append)
    starts = [line for line in lines if line.startswith("training ")]
    said = "held-out: 1 of 3 pairs left out of each evaluation (dataloader_drop_last: the " \
           "short last eval batch)"  # fmt: skip
    assert said in starts[0] and "held-out" not in starts[1]
