"""Each step's pairs for a run (``build_pair_source``): the data file's, in a fixed order
(``FixedPairs``), or online rounds sampled from the live policy (``OnlineRounds``), built
from the config and the run's data. Split from run.py, which sets the rest of a run up."""

from __future__ import annotations

from pathlib import Path

from directpo.config import DPOConfig
from directpo.distributed import World
from directpo.online import RoundBuilder
from directpo.run_data import RunData
from directpo.sources import FixedPairs, OnlineRounds


def build_pair_source(
    config: DPOConfig, data: RunData, world: World, output_dir: Path
) -> FixedPairs | OnlineRounds:
    """Each step's pairs: the file's, or online rounds (the first one the file's pairs)."""
    global_batch = config.per_device_train_batch_size * world.size  # one process's batch
    accumulation = config.gradient_accumulation_steps
    # data_seed (transformers'): the order alone; seed keeps initialisation, dropout, sampling
    order_seed = config.seed if config.data_seed is None else config.data_seed
    if not config.online:
        return FixedPairs(
            data.train, global_batch, accumulation, order_seed, config.dataloader_drop_last
        )
    builder = RoundBuilder(
        config, world, data.tokenizer, data.online_prompts, data.online_rows,
        labeller=data.labeller, output_dir=output_dir,
    )  # fmt: skip
    return OnlineRounds(
        num_prompts=len(data.online_prompts),
        prompts_per_round=config.online_prompts_per_round,
        steps_per_round=config.steps_per_round,
        batch_size=global_batch,
        accumulation=accumulation,
        seed=order_seed,
        build_round=builder,
        first_round=data.train if data.train.pairs else None,
        sampling={key: getattr(config, key) for key in ONLINE_SAMPLING_OPTIONS},
    )


# what online rounds sample, label and pair with (per_device_eval_batch_size: the chunks, each
# with its own seed; max_prompt_length cuts the prompts, the chat template renders them)
ONLINE_SAMPLING_OPTIONS = (
    "online_samples_per_prompt", "online_pairs", "online_reward_gap",
    "online_max_pairs_per_prompt", "generate_max_new_tokens", "generate_temperature",
    "generate_top_p", "generate_top_k", "generate_min_p", "generate_repetition_penalty",
    "generate_cache_implementation", "generation_kwargs", "per_device_eval_batch_size", "reward_fn",
    "reward_model_name_or_path", "implicit_reward_model", "reward_weights", "missing_eos_penalty",
    "max_length", "max_completion_length",
    "max_prompt_length", "chat_template", "chat_template_kwargs",
)  # fmt: skip
