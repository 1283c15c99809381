"""The one configuration object: every option, its default and its help text.

`DPOConfig` is the single source of truth: the CLI's `--help`, the YAML loader and the saved
`config.yaml` are all derived from its fields. Names follow TRL's `DPOConfig` where the concept
is the same, so TRL configs port by copy. Values are coerced and checked when the object is
built (`__post_init__`), so a wrong type or an impossible value fails before any model loads,
with a one-line `ConfigError` that names the key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from directpo.errors import ConfigError
from directpo.foreign_names import meant_options
from directpo.health import recipe_rates_both
from directpo.loss_names import LOSS_INFO, needs_reference
from directpo.model_locations import has_files
from directpo.option_loading import accepting_spellings, load_options
from directpo.option_paths import PATH_OPTIONS, absolute_paths
from directpo.option_values import exponent_numbers
from directpo.options import Options, as_built, option, option_help
from directpo.trl_compat import apply_trl_meanings, one_beta, spellings, translate

LOSS_TYPES = tuple(LOSS_INFO)

if TYPE_CHECKING:  # (torch's modules: imported where a run uses them, not by --help)
    from directpo.batching import Layout
    from directpo.precision import PrecisionPolicy

OPTIMIZERS = ("adamw", "adamw_kahan", "rmsprop")
EVAL_STRATEGIES = ("auto", "steps", "epoch", "no")
SAVE_STRATEGIES = ("steps", "epoch", "no")
# constant warms up as constant_with_warmup does (TRL's constant would not: said at start)
LR_SCHEDULERS = (
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
    "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay",
)  # fmt: skip
# schedules that cannot be built without lr_scheduler_kwargs (min_lr, num_decay_steps)
SCHEDULERS_NEEDING_KWARGS = (
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)
DTYPES = ("float32", "bfloat16")
SAVE_DTYPES = ("auto", "float32", "bfloat16")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio", "none")
LOG_LEVELS = ("passive", "debug", "info", "warning", "error", "critical")
# The module each tracker needs; checked before training so a missing one fails early.
DISTRIBUTED_MODES = ("auto", "none", "ddp", "fsdp")
# Liger's loss kernels replace the LM head's output by a loss: directpo needs the log-probs
LIGER_LOSS_KERNELS = ("cross_entropy", "fused_linear_cross_entropy")
ATTN_IMPLEMENTATIONS = ("auto", "varlen", "sdpa", "eager", "flex_attention", "flash_attention_2")
TRACKER_MODULES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
}


@accepting_spellings
@dataclass
class DPOConfig(Options):
    """Every option of a run, with its default (``directpo train --help`` lists them with their
    help). Built from Python (``DPOConfig(beta=0.1, ...)``, with TRL's names too: ``bf16``,
    ``optim``, ``use_peft``, ``remove_unused_columns``, ...), from YAML and flags
    (``load_config``); values are coerced and checked when it is built, and again by ``train``,
    so that attributes set afterwards are checked too."""

    # a leading ~ of these is the home folder (Options; model_init_kwargs': expand_home)
    PATH_KEYS: ClassVar[tuple[str, ...]] = PATH_OPTIONS

    # --- model --------------------------------------------------------------------------------
    model_name_or_path: str | None = option(
        None,
        "Policy start point: a local Hugging Face model folder (or a hub id on machines "
        "with network access). Required.",
    )
    model_init_kwargs: dict | None = option(
        None,
        "Keyword arguments for from_pretrained of policy and reference (TRL's option): "
        "revision, attn_implementation, device_map (one process: refused under ddp / fsdp), "
        "low_cpu_mem_usage, ... (dtype is the dtype option).",
    )
    model_revision: str = option(
        "main",
        "TRL's ModelConfig option: the model's revision (a branch, tag or commit), i.e. "
        "model_init_kwargs' revision.",
    )
    trust_remote_code: bool = option(
        False, "Allow model folders whose architecture is code shipped with them."
    )
    ref_model_name_or_path: str | None = option(
        None, "Frozen reference model. Default: the policy's own start point (model_name_or_path)."
    )
    ref_model_init_kwargs: dict | None = option(
        None,
        "from_pretrained keyword arguments of the reference model in place of model_init_kwargs "
        "(TRL's option; e.g. another revision).",
    )
    tokenizer_name_or_path: str | None = option(
        None, "Tokenizer folder. Default: model_name_or_path."
    )
    dtype: str = option(
        "float32",
        "Compute dtype, one of float32, bfloat16. bfloat16 is mixed precision: forward and "
        "backward in bf16, the trainable weights, their gradients and the optimizer state "
        "float32 (master_weights), the reference held in bf16. See docs/performance.md.",
    )
    bf16: bool = option(False, "TRL's spelling: true means dtype: bfloat16 (mixed precision).")
    fp16: bool = option(
        False, "TRL's float16 mixed precision: not supported (use bf16: true); true is refused."
    )
    master_weights: str = option(
        "float32",
        "With dtype bfloat16: storage dtype of the trainable weights, their gradients and "
        "optimizer state. float32 (default): every update is kept. bfloat16: half the "
        "parameter memory, but updates below 1/256 of a weight are rounded away unless "
        "optimizer is adamw_kahan (Kahan-compensated updates).",
    )
    save_dtype: str = option(
        "auto",
        "dtype of the final model folder: auto (the trained weights' storage dtype, float32 "
        "under mixed precision), float32, or bfloat16 (half the size; the model card then says "
        "how much of the update survived the rounding).",
    )
    eval_dtype: str = option(
        "auto",
        "Compute dtype of the held-out pair metrics (eval/rewards/*, eval/loss, and what "
        "metric_for_best_model and early stopping read): auto (float32 under dtype bfloat16, "
        "except under FSDP or flash_attention_2: bfloat16), float32 (the float32 masters, the "
        "frozen bf16 weights upcast, the reference alike (a separate one stored in float32 "
        "keeps its float32 weights): reward 0 at the start, and a young "
        "adapter's change that bf16 rounds away is seen), or bfloat16 (as training computes; "
        "transformers' bf16_full_eval: true).",
    )
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass: less memory, ~30% slower."
    )
    gradient_checkpointing_kwargs: dict | None = option(
        None,
        "TRL's spelling: only use_reentrant (either value) is accepted; directpo always "
        "checkpoints non-reentrant, with the same gradients.",
    )
    activation_offloading: bool = option(
        False,
        "Hold the activations the policy's training forward saves for backward in (pinned) CPU "
        "memory, copied back as backward needs them (TRL's option): less GPU memory, for PCIe "
        "traffic; weights and tensors under 1 KiB stay on the GPU. No effect on a CPU.",
    )
    gradient_checkpointing_every: int = option(
        1,
        "With gradient_checkpointing: recompute only every this-many-th decoder layer (1: every "
        "layer; 2: half of them, about half the recompute for more activation memory).",
    )
    torch_compile: bool = option(
        False,
        "Compile each decoder layer with torch.compile (regional compilation) and round rows "
        "up to multiples of 128 tokens so shapes repeat: faster steps on GPU once the first "
        "steps have compiled. Where compiling fails at start (no C++ compiler or Triton, an "
        "architecture it cannot trace), the run goes on uncompiled and says so.",
    )
    tf32: bool | None = option(
        None,
        "TF32 matmuls and convolutions in float32 compute on CUDA (transformers' tf32, on "
        "Ampere or newer GPUs): true allows them (faster, ~10 mantissa bits), false forbids "
        "them, null leaves torch's setting. Restored when train() returns. No effect on the CPU.",
    )
    full_determinism: bool = option(
        False,
        "transformers' enable_full_determinism: torch.use_deterministic_algorithms, cuDNN "
        "deterministic (no benchmark), CUBLAS_WORKSPACE_CONFIG=:16:8, CUDA_LAUNCH_BLOCKING=1 and "
        "FLASH_ATTENTION_DETERMINISTIC=1, so that GPU runs repeat bit for bit (slower; an op "
        "without a deterministic kernel then fails naming itself). Restored when train() returns.",
    )
    torch_empty_cache_steps: int | None = option(
        None,
        "Empty the accelerator's memory cache (torch.cuda.empty_cache) after every this many "
        "optimizer steps (transformers' option): less fragmentation and peak memory, some speed "
        "lost. null: never. No effect on the CPU.",
    )
    use_liger_kernel: bool = option(
        False,
        "Liger's Triton kernels (TRL's option; CUDA, pip install liger-kernel) for the RMSNorm, "
        "SwiGLU MLP and rotary embedding of policy and reference: fewer, fused launches. Liger's "
        "cross-entropy and fused linear DPO loss are not used: directpo's head computes the "
        "completion tokens' log-probs itself (chunked).",
    )
    liger_kernel_config: dict | None = option(
        None,
        "With use_liger_kernel: which kernels, as Liger's apply_liger_kernel_to_* keywords "
        "(TRL's option), e.g. {rope: false}; cross_entropy and fused_linear_cross_entropy "
        "cannot be turned on.",
    )
    disable_dropout: bool = option(
        True,
        "Set every dropout probability of policy and reference to 0, so that log-probs are "
        "deterministic and policy == reference gives exactly zero reward at the start "
        "(lora_dropout, the LoRA branch's, stays as set; TRL's zeroes it too).",
    )
    use_peft: bool | None = option(
        None,
        "TRL's switch for LoRA: true with lora_r unset trains LoRA adapters of rank 16 (TRL's "
        "default); false refuses lora_* options.",
    )
    freeze_vision_tower: bool = option(
        True,
        "Vision-language models: keep the vision tower's weights frozen (its projector, "
        "Qwen-VL's visual.merger inside the tower too, and the language model train). With "
        "LoRA, adapters go on the language model only.",
    )
    lora_r: int | None = option(
        None,
        "LoRA rank (peft); 0 or unset trains every weight (unset with use_peft: 16, TRL's "
        "default; 0 with use_peft is refused). With LoRA the reference is the same model "
        "with its adapters disabled, so no second copy is loaded.",
    )
    lora_alpha: int = option(32, "LoRA scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float = option(0.0, "Dropout on the LoRA branch.")
    lora_target_modules: list[str] | None = option(
        ["all-linear"],
        "Modules that get adapters: names (q_proj,v_proj,...), all-linear, or one regex alone "
        "(peft's: matched against each whole module name, e.g. '.*\\.(q|v)_proj'); null: "
        "peft's choice for the architecture (TRL's default, e.g. q_proj,v_proj for Llama). A "
        "name that matches no layer is refused (peft would drop it).",
    )
    use_dora: bool = option(False, "DoRA: weight-decomposed LoRA adapters (peft).")
    use_rslora: bool = option(False, "rsLoRA: scale the LoRA update by alpha/sqrt(r).")
    lora_target_parameters: list[str] | None = option(
        None,
        "Parameters (not modules) that get LoRA adapters, e.g. a Mixture-of-Experts model's "
        "fused expert weights (mlp.experts.gate_up_proj); peft's target_parameters.",
    )
    lora_modules_to_save: list[str] | None = option(
        None,
        "Modules trained in full beside the adapters (e.g. lm_head, embed_tokens); a name that "
        "matches no module is refused (peft would drop it).",
    )
    load_in_4bit: bool = option(
        False,
        "QLoRA: load the base 4-bit quantized (bitsandbytes, CUDA) and train LoRA adapters "
        "on it (needs lora_r); the reference is the base with the adapters off.",
    )
    load_in_8bit: bool = option(False, "Load the base 8-bit quantized (bitsandbytes, CUDA).")
    bnb_4bit_quant_type: str = option("nf4", "4-bit quantization: nf4 or fp4.")
    bnb_4bit_use_double_quant: bool = option(
        False, "Quantize the 4-bit quantization constants too (TRL: use_bnb_nested_quant)."
    )
    bnb_4bit_compute_dtype: str | None = option(
        None, "dtype the 4-bit layers compute in: float32 or bfloat16 (default: dtype)."
    )
    bnb_4bit_quant_storage: str | None = option(
        None, "dtype that stores the 4-bit weights (default uint8; bfloat16 for FSDP)."
    )
    merge_lora: bool = option(
        False,
        "Also write the adapter merged into the base weights: output_dir then holds a "
        "plain model folder and output_dir/adapter the adapter.",
    )
    logprob_chunk_tokens: int = option(
        1024,
        "Only completion positions reach the LM head, this many tokens at a time, each "
        "chunk recomputed in backward: peak memory of the log-prob step is one chunk x vocab "
        "(on an H200 as fast as one matmul over all completion tokens, with 4 GB less memory; "
        "docs/performance.md). 0: build the full logits (models that post-process logits "
        "always do).",
    )
    prefix_sharing: bool = option(
        True,
        "Encode each pair as one sequence [prompt][chosen][rejected] (the rejected tokens see "
        "the prompt, not the chosen ones): the prompt is computed once, not twice. Needs a model "
        "that takes a 4D attention mask; checked at start, else the plain layout with a notice.",
    )
    padding_free: bool = option(
        True,
        "Pack several sequences into each row (block-diagonal attention, position ids "
        "restarting per sequence), so almost no padding is computed. Checked like prefix_sharing.",
    )
    pack_max_tokens: int = option(
        0,
        "Token budget of a packed row; 0: as long as the longest sequence of the micro-batch "
        "(attention cost then never exceeds the unpacked layout's).",
    )
    attn_implementation: str = option(
        "auto",
        "Attention kernel: auto (on CUDA in bf16 with prefix_sharing/padding_free: varlen; "
        "otherwise transformers' default, SDPA for most models), varlen (prefix-shared "
        "segments through FlashAttention-2 varlen / PyTorch's varlen_attn, no dense mask; a "
        "slow exact fallback elsewhere), sdpa (a dense 4D mask per row), eager, flex_attention "
        "(FlexAttention over block-sparse masks from the layout; trains on CUDA only), "
        "flash_attention_2 (CUDA only; no 4D masks: prefix_sharing and "
        "padding_free then fall back).",
    )
    distributed: str = option(
        "auto",
        "Multi-process training under torchrun / accelerate launch: ddp (replicate the model), "
        "fsdp (shard policy and reference per transformer block with FSDP2; weights kept in "
        "float32 and computed in dtype), none, or auto (ddp when launched on several "
        "processes). See docs/distributed.md.",
    )
    ddp_timeout: int = option(
        1800,
        "TRL's (transformers') option: seconds a process of a ddp / fsdp run waits at a "
        "collective before the run fails; raise it when one process works long alone.",
    )
    fsdp_offload: bool = option(
        False,
        "With distributed: fsdp: keep parameters, gradients and optimizer state in CPU memory "
        "(FSDP2's CPUOffloadPolicy) and bring each block to the GPU only for its compute: "
        "models that do not fit otherwise, at a large cost in speed.",
    )
    precompute_ref_log_probs: bool = option(
        False,
        "Compute the reference log-probs of all pairs once before training (cached on "
        "disk, reused by a later run with the same reference, data and settings), then free the "
        "reference model.",
    )
    precompute_ref_batch_size: int | None = option(
        None,
        "Pairs per batch of the precompute_ref_log_probs pass (no gradients: it can be larger "
        "than training's). Default: per_device_eval_batch_size.",
    )
    sync_ref_model: bool = option(
        False,
        "TR-DPO (Gorbatovski et al. 2024): every ref_model_sync_steps steps the reference moves "
        "toward the policy, ref = alpha * policy + (1 - alpha) * ref. With LoRA only the hard "
        "update (ref_model_mixup_alpha: 1) is exact and allowed.",
    )
    ref_model_mixup_alpha: float = option(
        0.6, "TR-DPO's alpha in [0, 1] (1: the reference becomes the policy)."
    )
    ref_model_sync_steps: int = option(512, "TR-DPO: optimizer steps between reference updates.")

    # --- data ---------------------------------------------------------------------------------
    train_file: str | list[str] | None = option(
        None,
        "Training preferences: .jsonl, .json, .csv, .tsv (also .gz/.bz2/.xz compressed), .parquet, "
        ".arrow, or a datasets.save_to_disk folder; or a list of them, mixed into one set "
        "([a.jsonl, b.parquet]); a glob pattern (shards/*.parquet) is the files it matches, "
        "sorted (files named as a test or validation split beside the train split's, "
        "data/test-*.parquet beside data/train-*.parquet, are refused). Required unless a "
        "Dataset is passed from Python. datasets' data_files mapping "
        "({train: a.jsonl, test: c.jsonl}) is refused, naming the two options to write "
        "(train_file: a.jsonl, eval_file: c.jsonl): translated, it would replace an eval_file "
        "set beside it.",
    )
    dataset_name: str | None = option(
        None,
        "Training data through datasets.load_dataset (TRL's option): a local dataset folder "
        "(a hub snapshot, or a save_to_disk folder; a hub cache folder, datasets--org--name, "
        "is read as the snapshot its refs/main names) or a hub id where the hub is reachable, "
        "instead of train_file.",
    )
    dataset_streaming: bool = option(
        False,
        "Read the training data as a stream (TRL's option): only the rows max_steps trains on "
        "(max_steps x pairs per step), in their order, of train_file (JSON Lines, CSV, "
        "Parquet, a save_to_disk folder; a .json document is parsed whole) or dataset_name "
        "(load_dataset(..., streaming=True)); the rest is never read. Needs max_steps; a "
        "resume may raise it.",
    )
    dataset_config: str | None = option(None, "The dataset's configuration name, if any.")
    dataset_train_split: str = option(
        "train",
        "The dataset split to train on; datasets' split syntax slices and joins splits "
        "(train[:10%], train[100:200], train+test), as load_dataset(split=...) reads it.",
    )
    dataset_test_split: str = option(
        "test",
        "The split evaluated on (when no eval_file is given; test is optional, a split named "
        "otherwise must exist; one holding rows of dataset_train_split is refused: they are "
        "trained on; train[90%:] beside train[:90%] holds out).",
    )
    dataset_mixture: dict | None = option(
        None,
        "Training pairs mixed from several sources, as the alignment-handbook's recipes give "
        "them: {datasets: [{id, config, split, columns, weight}, ...], seed, "
        "test_split_size} (ids: files, dataset folders, hub ids in the local cache); "
        "test_split_size holds out the eval pairs. See docs/data.md (mixtures).",
    )
    eval_file: str | list[str] | dict[str, str | list[str]] | None = option(
        None,
        "Held-out preferences in the same formats (or a list of files, one set); evaluated every "
        "eval_steps and at the end. Named sets, {chat: a.jsonl, code: [b.jsonl, c.jsonl]}, are "
        "each evaluated and logged apart (eval/chat_loss, ...), as transformers' Trainer logs "
        "an eval_dataset dict. A set named train is datasets' data_files mapping, refused as "
        "train_file's.",
    )
    max_eval_samples: int | None = option(
        None,
        "Held-out pairs evaluated at most: the first N rows of each eval set, the rest never "
        "read (an eval_dataset stream, load_dataset(..., streaming=True), is read only that "
        "far: an endless one needs it). null: every pair.",
    )
    prompt_column: str = option(
        "prompt", "Column holding the prompt (absent in the implicit-prompt layout)."
    )
    chosen_column: str = option("chosen", "Column holding the preferred completion.")
    rejected_column: str = option("rejected", "Column holding the dispreferred completion.")
    system_column: str | None = option(
        None,
        "Column whose text opens each prompt as its system turn (Intel/orca_dpo_pairs' system): "
        "text prompts become a user turn and completions assistant turns, rendered with the "
        "chat template; an empty cell adds no system turn.",
    )
    chat_template: str | None = option(
        None,
        "A Jinja chat template replacing the tokenizer's (its text, a .jinja file, a .json file "
        "holding one, or a model folder): used for conversational rows and saved with the final "
        "model.",
    )
    chat_template_kwargs: dict | None = option(
        None,
        "Extra arguments for the tokenizer's chat template (e.g. {enable_thinking: false}). "
        "A 'tools' column (function schemas) reaches the template as its tools argument, and a "
        "row's own 'chat_template_kwargs' column (TRL's) overrides these for that row.",
    )
    skip_invalid_rows: bool = option(
        False,
        "Skip rows that fail validation (and report how many, by reason) instead of "
        "stopping at the first one.",
    )
    cache_tokenized: bool = option(
        True,
        "Cache the tokenized pairs in DIRECTPO_CACHE/tokenized (default ~/.cache/directpo), "
        "keyed by the pairs, the tokenizer and every tokenization option, so that a rerun with "
        "other hyperparameters does not tokenize again (rows with images are not cached).",
    )
    cache_tokenized_max_gb: float = option(
        10.0,
        "Disk the tokenized-pairs cache keeps, in GB (1M long pairs: about 2 GB an entry): "
        "after a write, the entries used longest ago are removed until the rest fit, never "
        "the one this run uses nor one used in the last 10 minutes (another run may be reading "
        "it). 0 keeps only those.",
    )
    dataset_num_proc: int | None = option(
        None,
        "Processes that tokenize the pairs (TRL's option): batches of rows tokenized by a pool "
        "of this many forked processes and put back in order, the same ids as one process "
        "(chat templates render in Python, one core a process). null: one process. Under "
        "torchrun, each node's tokenizing process uses them; ranks that tokenize at once "
        "(cache_tokenized false, images) share them. Measured no faster on a busy "
        "2-core CPU (docs/performance.md). The alignment-handbook's preprocessing_num_workers "
        "is this option (beside dataset_num_proc, that one counts).",
    )
    max_length: int | None = option(
        1024,
        "Maximum tokens of prompt + completion (null: no limit). Completions are cut from the "
        "right to fit after the prompt.",
    )
    max_prompt_length: int | None = option(
        None,
        "Maximum prompt tokens; longer prompts are cut from the left (a leading BOS is kept), so "
        "the text nearest the completion survives. Default (null): no separate limit, only "
        "max_length, keeping at least one completion token.",
    )
    max_completion_length: int | None = option(
        None,
        "Maximum tokens of each completion, cut from the right (null: only max_length limits "
        "them).",
    )
    assistant_only_loss: bool = option(
        False,
        "Score only the tokens of a completion's assistant messages: in a conversational "
        "completion that holds messages the model does not write (a tool's result between a "
        "tool call and the answer, a user turn between replies), their tokens (and the next "
        "reply's header) are left out of log π(y|x), of the reference's, and of the token counts "
        "that length-normalised losses and the logps/* metrics use (TRL's SFTConfig name; found "
        "by rendering prefixes of the conversation, so any template works; a row whose template "
        "leaves no exact boundary is refused; score and rank of the run read it from its "
        "config.yaml). Default false, as TRL's DPOTrainer, which sums "
        "every completion token: the paper's log π(y|x) is over the policy's own tokens, so set "
        "it true for tool-use or multi-turn completions.",
    )

    # --- online DPO -------------------------------------------------------------------------
    online: bool = option(
        False,
        "Online (iterative) DPO: rounds of sampling online_samples_per_prompt completions per "
        "prompt from the current policy (generate_* options), labelling them (reward_fn, "
        "reward_model_name_or_path or implicit_reward_model), and steps_per_round optimizer "
        "steps on the pairs built from them. Pairs in train_file are the first round. See "
        "docs/online.md.",
    )
    prompt_file: str | None = option(
        None, "Prompts for online rounds (rows with prompt_column). Default: train_file's prompts."
    )
    online_prompts_per_round: int = option(16, "Prompts sampled in each online round.")
    online_samples_per_prompt: int = option(4, "Completions sampled per prompt in a round.")
    online_pairs: str = option(
        "best_worst",
        "How a round's pairs are built per prompt: best_worst (highest against lowest reward) "
        "or above_gap (every pair whose reward gap exceeds online_reward_gap).",
    )
    online_reward_gap: float = option(
        0.0, "A pair's chosen reward must exceed its rejected one by more than this."
    )
    online_max_pairs_per_prompt: int = option(
        0, "With above_gap: at most this many pairs per prompt, largest gaps first (0: all)."
    )
    steps_per_round: int = option(1, "Optimizer steps on each online round's pairs.")
    reward_model_name_or_path: str | None = option(
        None,
        "Online labeller: an AutoModelForSequenceClassification folder of one output (a "
        "reward model, as TRL loads it); its logit of prompt + completion, encoded as TRL's "
        "RewardTrainer trained it (text with BOS and EOS, conversations through its chat "
        "template; an OpenRLHF reward model as OpenRLHF did) and computed in float32, is the "
        "reward.",
    )
    implicit_reward_model: str | None = option(
        None,
        "Online labeller: a directpo run folder (or a DPO model with a config.yaml) scored by "
        "its implicit reward beta * log pi/pi_ref.",
    )
    reward_weights: list[float] | None = option(
        None,
        "With several online labellers set (reward_fn, reward_model_name_or_path, "
        "implicit_reward_model, in this order): the weight of each in the reward, their "
        "weighted sum (TRL's reward_weights). Default: 1.0 each.",
    )
    missing_eos_penalty: float | None = option(
        None,
        "Online: subtracted from the reward of a sampled completion that never ended (no EOS "
        "within the token limit), as TRL's missing_eos_penalty (null: none).",
    )

    # --- loss ---------------------------------------------------------------------------------
    loss_type: list[str] = option(
        ["sigmoid"],
        "Preference loss, or several combined (comma-separated / a YAML list): "
        f"{', '.join(LOSS_TYPES)}. See docs/losses.md. A mapping of losses to weights "
        "({sigmoid: 1.0, sft: 0.5}) is refused, naming loss_type and loss_weights to write.",
    )
    loss_weights: list[float] | None = option(
        None,
        "Weight of each loss_type in the sum (default 1.0 each), e.g. [1.0, 0.2] for "
        "[sigmoid, sft].",
    )
    beta: float = option(
        0.1,
        "Inverse temperature of the implicit reward r = beta * log(pi/pi_ref); "
        "larger keeps the policy closer to the reference. IPO's tau; ORPO's lambda.",
    )
    label_smoothing: float = option(
        0.0,
        "Assumed probability in [0, 0.5) that a preference label is flipped (cDPO for "
        "sigmoid; robust, exo_pair, aot, aot_unpaired, simpo).",
    )
    simpo_gamma: float = option(0.5, "SimPO's target reward margin gamma.")
    use_weighting: bool = option(
        False,
        "WPO (Zhou et al. 2024): weight each pair's loss by how likely the current policy finds "
        "both completions (per-token geometric mean, relative to the policy's own likely "
        "tokens), so off-policy pairs count less.",
    )
    ld_alpha: float | None = option(
        None,
        "LD-DPO (Liu et al. 2024): in [0, 1]; the tokens of the longer completion past the "
        "shorter one's length count alpha times in the log-probs of policy and reference, so "
        "verbosity is not rewarded (the log-ratios only: the NLL of sft / rpo_alpha is over "
        "every token, as TRL's; refused with only reference-free losses). null: off.",
    )
    f_divergence_type: str = option(
        "reverse_kl",
        "f-DPO (Wang et al. 2023): the divergence that regularises the policy: reverse_kl "
        "(DPO), forward_kl, js_divergence, alpha_divergence.",
    )
    f_alpha_divergence_coef: float = option(
        0.5, "alpha of f_divergence_type: alpha_divergence (TRL's parametrisation)."
    )
    rpo_alpha: float | None = option(
        None,
        "RPO (TRL's older option): adds the sft loss (NLL of the chosen completion) with this "
        "weight, i.e. loss_type [..., sft] with loss_weights [..., rpo_alpha].",
    )
    cpo_alpha: float | None = option(
        None,
        "TRL CPOConfig's NLL weight, for loss_type simpo: adds the sft loss with this weight "
        "(0: none). TRL's default is 1.0: a CPOConfig that leaves it out trains SimPO + NLL.",
    )
    discopop_tau: float = option(0.05, "DiscoPOP's temperature tau of the mixing weight.")
    router_aux_loss_coef: float | None = option(
        None,
        "Mixture-of-Experts policies: weight of the router load-balancing loss added to the "
        "loss (logged as aux_loss). null: the coefficient the model's config declares "
        "(Mixtral, Qwen-MoE: 0.001), as TRL, or off with a notice for a model without a "
        "load-balancing loss (Llama 4); 0: off. Refused for a model without experts.",
    )

    # --- optimisation -------------------------------------------------------------------------
    learning_rate: float = option(
        1e-6,
        f"Peak learning rate (DPO recipes: {recipe_rates_both()}); one above "
        "1e-2 (0.1 with adapters) is said at start, with the typo it may be (1e4: 1e-4?).",
    )
    optim: str | None = option(
        None,
        "TRL's spelling of optimizer: adamw_torch, adamw_torch_fused, adamw_hf, "
        "paged_adamw_32bit (= adamw), adamw_anyprecision (= adamw_kahan), rmsprop.",
    )
    optimizer: str = option(
        "adamw",
        f"Optimizer, one of {', '.join(OPTIMIZERS)} (the DPO paper used rmsprop). adamw_kahan: "
        "AdamW with Kahan-compensated updates (torch-optimi), for master_weights: bfloat16.",
    )
    weight_decay: float = option(
        0.0,
        "Decoupled weight decay (adamw) or L2 penalty (rmsprop); biases and norm weights are "
        "not decayed (as in transformers' Trainer).",
    )
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_epsilon: float = option(
        1e-8, "AdamW epsilon (rmsprop takes torch's 1e-8, as transformers' Trainer builds it)."
    )
    lr_scheduler_type: str = option(
        "linear", f"Schedule after warmup, one of {', '.join(LR_SCHEDULERS)}."
    )
    lr_scheduler_kwargs: dict | None = option(
        None,
        "The schedule's own arguments (TRL's option, transformers' names), e.g. {min_lr_rate: "
        "0.1} for cosine_with_min_lr, {num_cycles: 2} for cosine_with_restarts, "
        "{num_decay_steps: 100} for warmup_stable_decay.",
    )
    warmup_steps: float = option(
        0,
        "Linear warmup from 0 to learning_rate over this many steps; a value in (0, 1) is a "
        "fraction of the total steps (TRL's meaning).",
    )
    warmup_ratio: float = option(
        0.0, "Warmup as a fraction of the total steps (TRL's older spelling)."
    )
    per_device_train_batch_size: int = option(8, "Preference pairs per micro-batch.")
    per_device_eval_batch_size: int = option(
        8,
        "Preference pairs per evaluation batch; eval_generate samples this many prompts per "
        "call, each eval_generate_samples times.",
    )
    gradient_accumulation_steps: int = option(
        1, "Micro-batches per optimizer step; the loss is the mean over all pairs of the step."
    )
    dataloader_drop_last: bool = option(
        False,
        "Drop each epoch's last micro-batch when it is short (fewer than "
        "per_device_train_batch_size x processes pairs), as transformers' Trainer does: the "
        "steps then take TRL's pairs with this setting too; an evaluation's short last batch "
        "(per_device_eval_batch_size x processes) is left out too, as TRL's eval dataloader "
        "does. false: both are used, short.",
    )
    auto_find_batch_size: bool = option(
        False,
        "A step that runs out of GPU memory is run again in micro-batches half the size "
        "(per_device_train_batch_size halved, gradient_accumulation_steps doubled: the same "
        "pairs per step, the same loss), until it fits; kept for the rest of the run, and said. "
        "One process only.",
    )
    max_grad_norm: float = option(
        1.0, "Clip the gradient's global L2 norm to this; 0 (or null) disables."
    )
    num_train_epochs: float = option(1.0, "Passes over the training data (may be fractional).")
    max_steps: int = option(
        -1,
        "Total optimizer steps; when > 0 it overrides num_train_epochs (-1, or 0 as "
        "transformers 4 read it: num_train_epochs decides).",
    )
    max_nonfinite_steps: int = option(
        10,
        "A step whose loss or gradient is NaN/Inf is skipped (weights untouched) and counted "
        "(nonfinite_steps); after more than this many in a row the run stops with a message.",
    )
    seed: int | None = option(
        42,
        "Seed for data order, initialisation of any new weights, and RNG. null (torchtune's "
        "recipes): a seed drawn at the start, said and recorded in config.yaml (a resumed run "
        "takes its checkpoint's).",
    )
    data_seed: int | None = option(
        None,
        "Seed of the data order alone (the pairs' shuffling each epoch, online rounds' prompts), "
        "as transformers' data_seed; seed then sets initialisation, dropout and sampling. null: "
        "seed.",
    )

    # --- outputs ------------------------------------------------------------------------------
    output_dir: str = option(
        "directpo-output", "Where the final model, config, metrics and checkpoints go."
    )
    overwrite_output_dir: bool = option(
        False,
        "Start afresh in an output_dir that already holds a run or other files (the earlier "
        "run's checkpoints, model files and what it wrote in runs/, samples/, online/ are "
        "deleted; other files stay, in those folders too; a README.md or config.yaml that no run "
        "wrote is refused, not replaced). Without it such a folder is refused, "
        "so no work is lost by accident.",
    )
    logging_steps: float = option(
        10,
        "Log training metrics every this many optimizer steps; a value in (0, 1) is a fraction "
        "of the total steps (TRL's meaning).",
    )
    eval_steps: float = option(
        0,
        "Evaluate on eval_file every this many steps (0: only at the end); a value in (0, 1) is "
        "a fraction of the total steps.",
    )
    eval_strategy: str = option(
        "auto",
        "When to evaluate (TRL's option): auto (every eval_steps if set, and at the end), steps "
        "(every eval_steps, default logging_steps, and at the end), epoch (at each epoch's end), "
        "no (never).",
    )
    eval_on_start: bool = option(
        False,
        "Also evaluate before the first step (TRL's option): the starting model's baseline, "
        "logged at step 0 (a resumed run does not repeat it; not a candidate for best model).",
    )
    eval_delay: float = option(
        0,
        "No evaluation before this many optimizer steps (eval_strategy steps / auto) or epochs "
        "(epoch), the last step's too (transformers' eval_delay). 0: none.",
    )
    logging_first_step: bool = option(False, "Also log the first step (TRL's option).")
    run_name: str | None = option(
        None,
        "Name of the run in wandb / mlflow / trackio, and TensorBoard's subfolder of "
        "output_dir/runs.",
    )
    project: str = option(
        "huggingface",
        "The trackio project the run logs to, with report_to: trackio (transformers' option; "
        "its default). trackio logs on this machine: trackio show opens the dashboard.",
    )
    hub_model_id: str | None = option(
        None,
        "The Hub repository output_dir is meant for, user/name (TRL's option; directpo does "
        "not upload: hf upload REPO OUTPUT_DIR): the model card's code loads it "
        "from there, not from the local folder.",
    )
    save_steps: float = option(
        500,
        "Write a resumable checkpoint every this many steps (0: none before the end); a value "
        "in (0, 1) is a fraction of the total steps.",
    )
    save_strategy: str = option(
        "steps",
        "When to write checkpoints (TRL's option): steps (every save_steps), epoch (at each "
        "epoch's end), no (none; a signal still saves one).",
    )
    save_total_limit: int | None = option(
        None,
        "Keep at most this many checkpoints (oldest deleted once a new one is complete); "
        "the best evaluation's (trainer_state.json's best_model_checkpoint, with "
        "load_best_model_at_end or early_stopping_patience) is kept too, as transformers "
        "does; default keeps all.",
    )
    save_only_model: bool = option(
        False,
        "Checkpoints hold the model (and tokenizer) without optimizer, schedule and RNG state "
        "(transformers' option): a fraction of the disk, but such a checkpoint cannot be resumed "
        "(resume_from_checkpoint refuses it; load_best_model_at_end still works). The checkpoint "
        "a signal writes (SIGTERM, Ctrl-C) stays complete, so that the run can continue.",
    )
    load_best_model_at_end: bool = option(
        False,
        "Checkpoint every evaluation that improves metric_for_best_model (kept whatever "
        "save_total_limit says) and write that model, not the last one, to output_dir.",
    )
    metric_for_best_model: str | None = option(
        None, "The evaluation metric that decides 'best' (default eval/loss; TRL's eval_loss too)."
    )
    greater_is_better: bool | None = option(
        None, "Whether a larger metric_for_best_model is better (default: not for losses)."
    )
    early_stopping_patience: int = option(
        0, "Stop after this many evaluations in a row without improvement (0: never)."
    )
    early_stopping_threshold: float = option(
        0.0,
        "With early_stopping_patience: an evaluation counts as an improvement only when it "
        "betters the best so far by more than this (transformers' EarlyStoppingCallback).",
    )
    resume_from_checkpoint: str | None = option(
        None, "Continue a run: a checkpoint folder, or 'latest' for the newest one in output_dir."
    )
    report_to: list[str] = option(
        ["tensorboard"],
        f"Trackers, any of {', '.join(TRACKERS)} (comma-separated on the "
        "command line), or all (those installed); none (a bare YAML no / off too): no tracker. "
        "metrics.jsonl is always written.",
    )
    logging_dir: str | None = option(
        None, "TensorBoard's log folder (default: output_dir/runs/RUN_NAME)."
    )
    disable_tqdm: bool = option(
        False, "Hide the training progress bar and those of transformers and datasets."
    )
    log_level: str = option(
        "passive",
        f"Verbosity of transformers' own logging on the main process, one of "
        f"{', '.join(LOG_LEVELS)} (passive: left as it is).",
    )

    # --- generation during evaluation (the reward-vs-KL measurement) ---------------------------
    eval_generate: int = option(
        0,
        "At each evaluation, sample completions for this many held-out prompts and log "
        "eval/kl (sequence-level KL(pi||pi_ref) estimated from them), eval/reward (with "
        "reward_fn; online without one: the labeller's) and the samples "
        "(output_dir/samples/); sampled in the training dtype, the KL scored in eval_dtype's. "
        "0: off.",
    )
    eval_generate_samples: int = option(1, "Completions sampled per held-out prompt.")
    eval_prompts_file: str | None = option(
        None,
        "Held-out prompts for eval_generate (rows with prompt_column). Default: the "
        "distinct prompts of eval_file.",
    )
    generate_max_new_tokens: int = option(64, "Maximum tokens per sampled completion.")
    generate_temperature: float = option(
        1.0, "Sampling temperature (0: greedy). The KL estimate assumes 1."
    )
    generate_top_p: float = option(
        1.0, "Nucleus sampling mass (1: off; the KL estimate assumes off)."
    )
    generate_top_k: int = option(0, "Top-k sampling (0: off; the KL estimate assumes off).")
    generate_min_p: float | None = option(
        None,
        "Min-p sampling (TRL's min_p): drop tokens below this fraction of the most likely one's "
        "probability, in [0, 1] (null: off; the KL estimate assumes off).",
    )
    generate_repetition_penalty: float = option(
        1.0,
        "Repetition penalty (TRL's repetition_penalty, > 0): above 1 the prompt's and the "
        "completion's tokens so far are made less likely (1: off; the KL estimate assumes off).",
    )
    generate_cache_implementation: str | None = option(
        None,
        "The KV cache of sampling (TRL's cache_implementation): static, dynamic, offloaded, ... "
        "(transformers' names). null: the model's own.",
    )
    generation_kwargs: dict | None = option(
        None,
        "More of transformers' GenerationConfig for every sampling (online rounds, "
        "eval_generate), TRL's option, e.g. {no_repeat_ngram_size: 3, suppress_tokens: [13]}. "
        "Keys that directpo's own options set (temperature: generate_temperature, ...) are "
        "refused, naming the option.",
    )
    reward_fn: str | None = option(
        None,
        "A ground-truth reward 'module:function' (or 'path/file.py:function') taking "
        "(prompts, completions) and returning one float per completion; its mean is logged as "
        "eval/reward. With online: the labeller too. Called as TRL calls reward_funcs: by "
        "keyword, with completion_ids and the prompt rows' other columns (prompt_file's, "
        "eval_prompts_file's, or the pairs file's) as keyword lists, and trainer_state (the "
        "run's progress, a transformers TrainerState), when it takes **kwargs or names "
        "them; after a message-list prompt a completion is "
        "[{'role': 'assistant', 'content': text}].",
    )

    @as_built  # (its own checks too: the base's wraps only its own)
    def __post_init__(self) -> None:
        if isinstance(self.reward_fn, list | tuple):  # TRL's reward_funcs list, of one here
            if len(self.reward_fn) != 1:
                raise ConfigError(
                    f"reward_fn takes one function (got a list of {len(self.reward_fn)}, as "
                    "TRL's reward_funcs): write one that returns their sum; a reward model "
                    "beside it is reward_model_name_or_path (or implicit_reward_model), "
                    "the weights reward_weights"
                )
            (self.reward_fn,) = self.reward_fn
        if callable(self.reward_fn):  # TRL's online trainers take functions; a config is text
            from directpo.rewardfn import import_name  # (it imports modules that import this)

            # a module's function (trl.rewards' accuracy_reward, one imported from a file) is
            # named as config.yaml records it; one defined in a script or notebook is refused
            self.reward_fn = import_name(self.reward_fn) or self.reward_fn
        if callable(self.reward_fn) and hasattr(self.reward_fn, "save_pretrained"):
            # TRL's reward_funcs takes a loaded reward model too: it was told "a function",
            # with a def to write
            source = getattr(self.reward_fn, "name_or_path", "")
            unchanged = f" ('{source}' if it is that folder's, unchanged)" if source else ""
            raise ConfigError(
                f"reward_fn is a model object ({type(self.reward_fn).__name__}): a reward model "
                "is given by its folder or hub id, reward_model_name_or_path: save it and its "
                "tokenizer there (.save_pretrained(DIR)) and give reward_model_name_or_path="
                f"DIR{unchanged}"
            )
        if callable(self.reward_fn):
            name = getattr(self.reward_fn, "__name__", "")
            name = name if name.isidentifier() else "my_reward"
            raise ConfigError(
                "reward_fn is a function: give it as 'module:function' or 'path/file.py:function' "
                f"(config.yaml records it), e.g. def {name}(prompts, completions) in "
                f"my_rewards.py and reward_fn='my_rewards.py:{name}'"
            )
        # transformers' resume_from_checkpoint=True means the newest checkpoint, False none
        resume = self.resume_from_checkpoint
        if isinstance(resume, bool) or str(resume).strip().lower() in ("true", "false"):
            self.resume_from_checkpoint = (
                "latest" if str(resume).strip().lower() == "true" else None
            )
        for key in ("eval_strategy", "save_strategy"):  # YAML reads a bare `no` as false
            if getattr(self, key) is False:
                setattr(self, key, "no")
        if self.report_to is False:  # a bare `no` / `off` too: no tracker, TRL's none
            self.report_to = ["none"]
        # transformers' null (in a file, or a flag's text): eval_steps' default (logging_steps),
        # and in transformers 4 a max_grad_norm of no clipping
        for key, meaning in (("eval_steps", 0), ("max_grad_norm", 0.0)):
            if str(getattr(self, key)).strip().lower() in ("none", "null", "~"):
                setattr(self, key, meaning)
        self.beta = one_beta(self.beta)  # OnlineDPOConfig's beta: [0.1]
        super().__post_init__()

    def _check_values(self) -> None:
        from directpo.config_checks import check_values  # it imports this module's choices

        for key in ("lr_scheduler_kwargs", "generation_kwargs"):  # (min_lr: 1e-6: a text)
            if isinstance(getattr(self, key), dict):
                setattr(self, key, exponent_numbers(getattr(self, key)))
        check_values(self)

    def _path_problems(self) -> list[str]:
        from directpo.preflight import missing_paths  # it imports this module

        return missing_paths(self)

    def _row_problems(self, refused: list[str]) -> list[str]:
        from directpo.early_rows import row_problems  # it reads rows: data imports this module

        return row_problems(self, refused)

    def _apply_trl_spellings(self) -> None:
        apply_trl_meanings(self)

    def save_record(self, path: str | Path, from_python: tuple[str, ...] = ()) -> None:
        """config.yaml of a run: every option as resolved, except where this run resumed from
        (rerunning the file must not go back to that checkpoint; transformers keeps it out of
        its saved arguments too), and without secrets (``record``). ``from_python``: the
        datasets given to train() as arguments, which no option records: a comment says that a
        rerun needs them again (without eval_dataset it would not evaluate, without a word)."""
        header = ""
        if from_python:
            again = ", ".join(f"{name}=..." for name in from_python)
            header = (
                f"# {' and '.join(from_python)} given to train(), not as options: rerun with "
                f"train(load_config('config.yaml'), {again})\n"
            )
        self.save_yaml(path, header, **{**self.record(), "resume_from_checkpoint": None})

    def record(self) -> dict[str, Any]:
        """The options as a run's files, model card and trackers show them: a hub token given
        in model_init_kwargs left out (from_pretrained then uses the login's, as on a rerun)."""
        values = absolute_paths(self.to_dict())  # rerun or resumed from any folder
        for key in ("model_init_kwargs", "ref_model_init_kwargs"):
            if values[key]:
                values[key] = {k: v for k, v in values[key].items() if k not in SECRET_KWARGS}
        return values

    def every(self, key: str, total_steps: int) -> int:
        """``logging_steps`` / ``eval_steps`` / ``save_steps`` in steps (a fraction in (0, 1)
        is of the total, rounded up as transformers does)."""
        value = getattr(self, key)
        return math.ceil(value * total_steps) if 0 < value < 1 else int(value)

    def schedule(self, optimizer: Any, total_steps: int) -> Any:
        """The learning-rate schedule of a run of ``total_steps``: transformers' scheduler of
        that name (constant warms up too: constant_with_warmup), with lr_scheduler_kwargs."""
        from transformers import get_scheduler

        name = self.lr_scheduler_type
        return get_scheduler(
            "constant_with_warmup" if name == "constant" else name,
            optimizer,
            num_warmup_steps=self.warmup_for(total_steps),
            num_training_steps=total_steps,
            scheduler_specific_kwargs=self.lr_scheduler_kwargs,
        )

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps of a run of ``total_steps`` (a fraction in (0, 1) is of the total)."""
        fraction = self.warmup_ratio or (self.warmup_steps if self.warmup_steps < 1 else 0)
        if fraction:
            return math.ceil(fraction * total_steps)
        return int(self.warmup_steps)

    @classmethod
    def spellings(cls, values: dict[str, Any], where: str) -> dict[str, str]:
        """TRL's spellings that translate renames, as the user wrote them (trl_compat.py)."""
        return spellings(values, where)

    @classmethod
    def meant(cls, values: dict[str, Any]) -> dict[str, Any]:
        """OpenRLHF's ``--dataset prefs.jsonl``: train_file (foreign_names.meant_options)."""
        return meant_options(values)

    @classmethod
    def translate(cls, values: dict[str, Any], names: list[str], where: str) -> dict[str, Any]:
        """TRL's spellings accepted with TRL's meaning (trl_compat.py)."""
        values = dict(values)
        # ModelConfig's null: the default (attn_implementation's, transformers' own choice of
        # kernel, is auto's: a ModelConfig dumped or written out was refused for its null)
        for key in ("dtype", "torch_dtype", "attn_implementation"):
            if key in values and values[key] is None:
                del values[key]
        return translate(values, names, where)

    @property
    def precision(self) -> PrecisionPolicy:
        """The dtypes of the run: compute, master (trainable weights), save."""
        from directpo.precision import PrecisionPolicy  # (torch: imported where a run uses it)

        return PrecisionPolicy.from_options(self.dtype, self.master_weights, self.save_dtype)

    @property
    def loss_needs_reference(self) -> bool:
        """Some chosen loss reads reference log-probs."""
        return needs_reference(self.loss_type)

    def liger_kernels(self) -> dict[str, Any] | None:
        """Keywords for Liger's apply function (models.apply_liger_kernels), None when off."""
        if not self.use_liger_kernel:
            return None
        return {**(self.liger_kernel_config or {}), **dict.fromkeys(LIGER_LOSS_KERNELS, False)}

    @property
    def layout(self) -> Layout:
        """The row layout asked for (``model_checks.choose_layout`` may fall back to plain)."""
        from directpo.batching import Layout  # (torch: imported where a run uses it)

        return Layout(
            self.prefix_sharing,
            self.padding_free,
            self.pack_max_tokens,
            pad_multiple=128 if self.torch_compile else 1,
        )

    @property
    def prompt_limit(self) -> int | None:
        """Prompt tokens kept: max_prompt_length, else max_length − 1, else no limit."""
        if self.max_prompt_length is not None:
            return self.max_prompt_length
        return None if self.max_length is None else self.max_length - 1

    @property
    def online_sampling(self) -> tuple[int | None, int]:
        """(prompt tokens, new tokens) of an online round's sampling: a sampled pair obeys the
        length options as a file's pair does; max_completion_length caps the new tokens, and
        the prompt gives up its start so that prompt + completion fit max_length."""
        new_tokens = self.generate_max_new_tokens
        if self.max_completion_length is not None:
            new_tokens = min(new_tokens, self.max_completion_length)
        prompt = self.prompt_limit
        if self.max_length is not None:
            room = self.max_length - new_tokens
            prompt = room if prompt is None else min(prompt, room)
        return prompt, new_tokens

    @property
    def generation_extras(self) -> dict[str, Any]:
        """The GenerationConfig keys of sampling beyond temperature, top_p and top_k: min_p,
        repetition_penalty, cache_implementation and generation_kwargs (at their off values
        none, so that sampling stays what it was)."""
        extras: dict[str, Any] = {}
        if self.generate_min_p is not None:
            extras["min_p"] = self.generate_min_p
        if self.generate_repetition_penalty != 1.0:
            extras["repetition_penalty"] = self.generate_repetition_penalty
        if self.generate_cache_implementation is not None:
            extras["cache_implementation"] = self.generate_cache_implementation
        return {**extras, **(self.generation_kwargs or {})}

    @property
    def sampling(self) -> dict[str, Any]:
        """generate.sample_completions' keywords of how a run samples (its temperature, top_p,
        top_k, chat template arguments and generation_extras): eval_generate's held-out
        samples and an online round's sample alike, one place for both."""
        return {
            "temperature": self.generate_temperature,
            "top_p": self.generate_top_p,
            "top_k": self.generate_top_k,
            "chat_template_kwargs": self.chat_template_kwargs,
            "extras": self.generation_extras,
        }

    @property
    def needs_reference(self) -> bool:
        """A reference is loaded for reference-based losses, and for the KL of eval_generate."""
        return self.eval_generate > 0 or self.loss_needs_reference

    def loss_options(self) -> dict[str, float]:
        return {
            "beta": self.beta,
            "label_smoothing": self.label_smoothing,
            "simpo_gamma": self.simpo_gamma,
            "discopop_tau": self.discopop_tau,
        }

    @property
    def reference_path(self) -> str:
        return self.ref_model_name_or_path or self.model_name_or_path or ""

    @property
    def own_reference(self) -> bool:
        """No separate reference: ref_model_name_or_path unset or naming the policy's own
        location, also spelled otherwise (a trailing slash, ./, a link to the folder): a second
        copy of it doubled the memory, and with LoRA was loaded in place of the base with
        adapters off."""
        ref, own = self.ref_model_name_or_path, self.model_name_or_path
        if ref is None or ref == own:
            return True
        return (
            bool(own) and os.path.isdir(ref) and os.path.isdir(own) and os.path.samefile(ref, own)
        )

    @property
    def reference_init_kwargs(self) -> dict[str, Any]:
        """The reference's from_pretrained keyword arguments: ref_model_init_kwargs, else
        model_init_kwargs."""
        kwargs = self.ref_model_init_kwargs
        return dict((self.model_init_kwargs or {}) if kwargs is None else kwargs)

    @property
    def tokenizer_location(self) -> dict[str, Any]:
        """Where the tokenizer of ``tokenizer_path`` is: the model's revision, cache_dir, ...
        when it is the model's own (a hub id's subfolder is tried when its root has none; a
        local folder's tokenizer_path has chosen already)."""
        from directpo.model_files import model_location

        if self.tokenizer_name_or_path:
            return {}
        location = model_location(self.model_init_kwargs)
        if os.path.isdir(self.model_name_or_path or ""):
            location.pop("subfolder", None)
        return location

    @property
    def tokenizer_path(self) -> str:
        """tokenizer_name_or_path, else the model's folder; with model_init_kwargs' subfolder,
        that subfolder when the folder itself has no tokenizer."""
        if self.tokenizer_name_or_path:
            return self.tokenizer_name_or_path
        path = self.model_name_or_path or ""
        inner = os.path.join(path, str((self.model_init_kwargs or {}).get("subfolder") or ""))
        if inner != os.path.join(path, "") and os.path.isdir(inner) and not has_files(path):
            return inner
        from directpo.adapters import tokenizer_folder  # (imports torch)

        return tokenizer_folder(path)


SECRET_KWARGS = ("token", "use_auth_token")  # from_pretrained arguments never written down


def load_config(
    path: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    interpolate: bool = True,
    overrides_from: str = "command line",
) -> DPOConfig:
    """Read the optional YAML file (or a dict of its contents: TRL's names, ``env:``), apply
    ``overrides`` on top, and validate (``interpolate``, ``overrides_from``: load_options').
    ``overrides`` are the command line's by default: flag texts (``{"beta": "0.25"}``), read
    and refused as ``--beta 0.25``; train("recipe.yaml", beta=...) names its keywords'
    source (``train()``) and is told in Python's words."""
    return load_options(DPOConfig, path, overrides, interpolate, overrides_from)


def option_names() -> list[str]:
    return [name for name, _, _ in option_help(DPOConfig)]
