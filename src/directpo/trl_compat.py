"""TRL's option names, so that a TRL config (``DPOConfig``, ``TrainingArguments``,
``ModelConfig``, ``ScriptArguments``) ports as it is.

Every key of a YAML file or a command line goes through ``translate`` before ``DPOConfig`` is
built:

* directpo's own options, TRL's spellings that are directpo options too (``bf16``,
  ``warmup_ratio``, ``eval_strategy``, ``save_strategy``, ``optim``, ``use_peft``, ``rpo_alpha``,
  ``logging_first_step``, ``run_name``, ``gradient_checkpointing_kwargs``; see config.py) pass;
* older or renamed TRL spellings of the same options are renamed (``ALIASES``, in
  trl_table.py with the other tables);
* TRL keys that ask for nothing directpo would do differently (``push_to_hub: false``,
  ``dataloader_num_workers: 4``, ``do_eval: true``, ...) are dropped (``NO_EFFECT``);
* OpenRLHF's and torchtune's names are renamed or refused with what to write instead
  (foreign_names.py);
* every other key is a problem, and all problems are reported at once, one line each, saying
  what to do instead.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from directpo.callers import (
    Blank,
    Spelling,
    caller,
    source_spelling,
    spell_given,
    spell_name,
    spell_option,
    spell_pair,
    spell_setting,
    written_as,
)
from directpo.errors import ConfigError, ConfigErrors
from directpo.foreign_names import AS_WRITTEN, REFUSED, RENAMED, component_hint, is_component
from directpo.loss_names import LOSS_INFO
from directpo.model_locations import is_adapter_folder
from directpo.option_hints import setting_meant, unknown_hint
from directpo.option_values import as_yaml, value_shown
from directpo.trl_table import (
    ALIASES,
    BNB_OPTIONS,
    COMPILE_DEFAULTS,
    HINTS,
    NO_EFFECT,
    TRL_OPTIMIZERS,
    VERSION_FLAGS,
    VERSION_HINT,
    advice_text,
    is_eight_bit,
    low_bit_refusal,
    other_optimizer_refusal,
    said,
)


def apply_trl_meanings(config: Any) -> None:
    """TRL's options that are DPOConfig fields, given TRL's meaning (called while a DPOConfig
    is checked): optim, use_peft, rpo_alpha, attn_implementation in
    model_init_kwargs, its trust_remote_code, gradient_checkpointing_kwargs, model_revision,
    warmup. Each refusal is collected (``config._refuse``), so that the checks after it say
    their own in the same run (optim: adamw_8bit hid a loss_type refused, said a run later)."""
    if config.optim is not None:
        if is_eight_bit(config.optim):
            config._refuse("optim", low_bit_refusal("optim", config.optim))
        elif other := other_optimizer_refusal("optim", str(config.optim)):
            config._refuse("optim", other)
        elif config.optim not in TRL_OPTIMIZERS:
            config._refuse(
                "optim",
                f"optim must be one of {', '.join(TRL_OPTIMIZERS)} "
                f"(got {value_shown(config.optim)})",
            )
        elif config.optimizer != "adamw" and config.optimizer != TRL_OPTIMIZERS[config.optim]:
            config._refuse(
                "optim",
                spell_pair(("optim", config.optim), "contradicts", ("optimizer", config.optimizer)),
            )
        else:
            config.optimizer = TRL_OPTIMIZERS[config.optim]
    if config.use_peft and config.lora_r == 0:
        # (once the unset rank: a rank of 0 asked for became 16 without a word)
        config._refuse(
            "lora_r",
            f"{spell_pair(('lora_r', 0), 'with', ('use_peft', True))}: an adapter of rank 0 "
            f"trains nothing (peft refuses it); remove {spell_given('lora_r', 0)} for rank 16 "
            f"(TRL's default), or {spell_given('use_peft', True)} to train every weight",
        )
    # unset stays unset without use_peft: set later (a notebook), use_peft still means TRL
    # ModelConfig's rank; an adapter folder as the model is continued with its own (use_peft
    # then asked for it: its new rank-16 adapter was refused, "remove lora_r", never set)
    continuing = is_adapter_folder(config.model_name_or_path)
    if config.use_peft and config.lora_r is None and not continuing:
        config.lora_r = 16
        config._rank_of_use_peft = True  # a peft_config given to train() replaces it
    if config.use_peft is False and config.lora_r:
        # (use_peft as its caller wrote it: "use_peft is false" read as a recipe's words)
        off = spell_option("use_peft", False, in_recipe=False)
        rank = spell_given("lora_r", config.lora_r)
        config._refuse("lora_r", f"{rank} is set with {off}: remove one of them")
    _nll_weight(config)
    _attention_from_init_kwargs(config)
    _trust_from_init_kwargs(config)
    if config.save_strategy == "best":  # transformers' SaveStrategy.BEST
        config._refuse(
            "save_strategy",
            f"{said('save_strategy', 'best')} is not supported: {said('load_best_model_at_end')} "
            "writes a "
            "checkpoint at every evaluation that improves metric_for_best_model",
        )
    kwargs = config.gradient_checkpointing_kwargs
    # use_reentrant chooses torch's implementation, not the gradients: directpo always uses the
    # non-reentrant one (which also gives frozen-embedding LoRA models their gradients)
    if kwargs and (
        set(kwargs) != {"use_reentrant"} or not isinstance(kwargs["use_reentrant"], bool)
    ):
        config._refuse(
            "gradient_checkpointing_kwargs",
            f"{said('gradient_checkpointing_kwargs', kwargs)} is not supported: only "
            "use_reentrant is; directpo always checkpoints non-reentrant (the same gradients)",
        )
    _revision_into_init_kwargs(config)
    steps = config.warmup_steps
    if config.warmup_steps and config.warmup_ratio:
        config._refuse("warmup_steps", "warmup_steps and warmup_ratio are both set: keep one")
    elif steps >= 1 and not float(steps).is_integer():
        config._refuse(
            "warmup_steps",
            "warmup_steps must be a whole number of steps or a fraction in (0, 1) (got "
            f"{config._shown('warmup_steps')})",
        )


def one_beta(value: Any) -> Any:
    """``beta`` given as TRL's OnlineDPOConfig types it, ``list[float]`` (one value per epoch,
    the last one after the list ends): a one-value list is that value, as TRL reads it too.
    A longer list is refused: a schedule would also decide which beta the saved run's implicit
    reward uses, and TRL 1.16 itself fails on one (it indexes the list with the trainer's
    fractional epoch once the first step is done)."""
    if isinstance(value, str) and value.strip().startswith("["):  # a flag: --beta [0.1]
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if not isinstance(value, list | tuple):
        return value
    if len(value) == 1:
        return value[0]
    raise ConfigError(
        f"beta: a list of per-epoch values ({as_yaml(list(value))}) is not supported; give one "
        "value (a one-value list, [0.1], is that value)"
    )


def _revision_into_init_kwargs(config: Any) -> None:
    """ModelConfig's model_revision is the revision in model_init_kwargs (TRL's script puts it
    there), for the policy, its tokenizer and a reference loaded with those kwargs."""
    revision = config.model_revision
    if revision in (None, "main"):
        return
    kwargs = dict(config.model_init_kwargs or {})
    if kwargs.get("revision", revision) != revision:
        return config._refuse(
            "model_revision",
            f"model_revision {value_shown(revision)} contradicts model_init_kwargs' revision "
            f"{value_shown(kwargs['revision'])}: keep one",
        )
    config.model_init_kwargs = {**kwargs, "revision": revision}
    config.model_revision = "main"  # now in model_init_kwargs (config.yaml says so)


def _nll_weight(config: Any) -> None:
    """rpo_alpha (DPOConfig) and cpo_alpha (CPOConfig): the chosen completion's NLL added with
    that weight, i.e. loss_type [..., sft], loss_weights [..., alpha] (config.yaml says so)."""
    if config.cpo_alpha is not None and config.loss_type != ["simpo"]:
        # TRL's CPO losses (sigmoid, hinge, ipo) compare the policy's sums without a reference
        alpha = config.cpo_alpha  # (--cpo_alpha 1 said as 1, not the float read, 1.0)
        alpha = int(alpha) if float(alpha).is_integer() else alpha
        return config._refuse(
            "cpo_alpha",
            f"cpo_alpha is TRL CPOTrainer's; its loss_type {', '.join(config.loss_type)} has no "
            "reference model, which directpo's losses of that name have: "  # (the caller's words:
            # it was a recipe's 'use loss_type simpo' to a flag's and a keyword's user too)
            f"{spell_setting(('loss_type', 'simpo'))} (SimPO, as CPOTrainer's), or drop "
            f"{spell_given('cpo_alpha', alpha)} for DPO's losses",
        )
    for name in ("rpo_alpha", "cpo_alpha"):
        alpha = getattr(config, name)
        if alpha is None:
            continue
        if alpha < 0:  # (folded first, --rpo_alpha -1 was told 'loss_weights must be >= 0 and
            # not all 0 (got [1.0, -1.0])': an option the user never set, numbers never typed)
            config._require(False, name, ">= 0 (the weight of the sft loss it adds)")
            continue
        if "sft" in config.loss_type:
            config._refuse(name, f"{name} adds the sft loss, which loss_type already has")
            continue
        weights = config.loss_weights or [1.0] * len(config.loss_type)
        refused = any(loss not in LOSS_INFO for loss in config.loss_type) or (
            len(weights) != len(config.loss_type) or any(weight < 0 for weight in weights)
        )
        if refused:  # loss_type / loss_weights refused as written: folded, [1, 2] for one loss
            # was 'one weight per loss_type (2) (got [1.0, 2.0, 0.5])', [-2] '[-2.0, 0.5]', and
            # loss_type: sigmod 'did you mean [sigmoid, sft]?', which rpo_alpha then refuses
            continue
        if alpha:  # cpo_alpha: 0 is SimPO alone
            config.loss_type = [*config.loss_type, "sft"]
            config.loss_weights = [*weights, alpha]
        setattr(config, name, None)  # now part of loss_type / loss_weights


def _attention_from_init_kwargs(config: Any) -> None:
    """attn_implementation in model_init_kwargs (TRL's scripts put it there, over ModelConfig's)
    is the attn_implementation option, which loads policy and reference alike; another value
    beside the option (or in ref_model_init_kwargs) would be overridden without a word."""
    option = config.attn_implementation
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        attention = (getattr(config, name) or {}).get("attn_implementation")
        if attention is None or attention == option:
            continue
        if name == "model_init_kwargs" and option == "auto":
            config.attn_implementation = option = attention
            continue
        config._refuse(
            name,
            f"{name}: attn_implementation {value_shown(attention)} contradicts "
            "attn_implementation: "
            f"{option} (which loads policy and reference alike): keep one",
        )


def _trust_from_init_kwargs(config: Any) -> None:
    """trust_remote_code in model_init_kwargs (TRL's dpo script puts it there, and TRL's trainer
    lets it win over its own option) is the trust_remote_code option, which also loads the
    config, tokenizer and reference: left in the kwargs alone, a model folder with code failed
    with 'allow its code with trust_remote_code: true', the option the user thought was set."""
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        kwargs = getattr(config, name)
        if not kwargs or "trust_remote_code" not in kwargs:
            continue
        trust = kwargs["trust_remote_code"]
        if trust is True and not config.trust_remote_code and name == "model_init_kwargs":
            config.trust_remote_code = True
        elif trust is not config.trust_remote_code:
            config._refuse(
                name,
                f"{name}: trust_remote_code {as_yaml(trust)} contradicts trust_remote_code: "
                f"{as_yaml(config.trust_remote_code)}: set the option alone (it loads every "
                "model folder and tokenizer of the run)",
            )
            continue
        # now the option (config.yaml says so)
        rest = {k: v for k, v in kwargs.items() if k != "trust_remote_code"}
        setattr(config, name, rest or None)


# dtypes as TRL's recipes write them in model_init_kwargs, as directpo's dtype option says them
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def bf16_advice() -> str:
    """What dtype: bfloat16 does, and how to store the weights in bf16 too (caller's words)."""
    return (
        "bf16 compute over float32 master weights, which keep every update; add "
        f"{said('master_weights', 'bfloat16')} with {said('optimizer', 'adamw_kahan')} to store "
        "the weights in bf16"
    )


def refuse_loading_options(config: Any) -> None:
    """model_init_kwargs' keys that are directpo's own options (dtype, torch_dtype,
    quantization_config): TRL loads the weights by them, directpo by its options, for policy
    and reference together. Each refusal leads with what the user wrote and says the option
    that asks for it (torch_dtype: float32 was told to set dtype: bfloat16 first)."""
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        kwargs = getattr(config, name) or {}
        for key in ("dtype", "torch_dtype"):
            if key in kwargs:  # TRL loads the weights in it: bf16 weights barely learn
                config._refuse(name, _dtype_refusal(name, key, kwargs[key]))
        if "quantization_config" in kwargs:
            config._refuse(name, _quantization_refusal(name, kwargs["quantization_config"]))


def _dtype_refusal(name: str, key: str, value: Any) -> str:
    written = f"{name}: {key}: {as_yaml(value)} is directpo's dtype option"
    written += ", for policy and reference"
    dtype = DTYPE_NAMES.get(str(value).removeprefix("torch."))
    if dtype == "float32":
        default = said("dtype", "float32")
        return f"{written}: remove it there; {default} (the default) loads both in float32"
    bf16 = spell_setting(("dtype", "bfloat16"))
    if dtype == "bfloat16":
        return f"{written}: remove it there and {bf16} ({bf16_advice()})"
    return (  # float16, auto (the checkpoint's dtype): no dtype directpo trains in
        f"{written}, one of float32, bfloat16: remove it there and {bf16} ({bf16_advice()}) or "
        f"{said('dtype', 'float32')}"
    )


def _quantization_refusal(name: str, value: Any) -> str:
    """A BitsAndBytesConfig's fields said as the options of the same names (load_in_4bit,
    bnb_4bit_quant_type, ...), which the run loads the base with."""
    written = f"{name}: quantization_config is directpo's load_in_4bit / load_in_8bit and "
    fields = (
        [(k, v) for k, v in value.items() if k in BNB_OPTIONS] if isinstance(value, dict) else []
    )
    if not fields:
        return f"{written}bnb_4bit_* options; remove it there"
    unread = [k for k in value if k not in BNB_OPTIONS and not k.startswith("_")]
    left = f" (directpo has no option for {', '.join(unread)})" if unread else ""
    return f"{written}bnb_4bit_* options; remove it there and {spell_setting(*fields)}{left}"


def _typed(value: Any) -> Any:
    """A flag's text as YAML reads it ('false' -> False, '0' -> 0, '[]' -> []): `--no_push_to_hub`
    and `--push_to_hub false` ask for what `push_to_hub: false` does (they were refused)."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _trl_mixture(values: dict[str, Any]) -> dict[str, Any]:
    """TRL's DatasetMixtureConfig (``trl dpo --config``: ``datasets`` and ``test_split_size`` at
    the top level) read as ``dataset_mixture``: the same sources, each used whole and
    concatenated in order, unshuffled, as TRL's get_dataset does, so that the trainer's
    sampler (batching.py, TRL's order) trains TRL's pairs at each step (its test split is
    unseeded, here dataset_mixture's seed 0 draws it)."""
    entries = values.get("datasets")
    if not isinstance(entries, list) or not entries or "dataset_mixture" in values:
        return values
    size = values.get("test_split_size")
    mixture = {
        "datasets": entries,
        **({} if size is None else {"test_split_size": size}),
        "shuffle": False,
    }
    rest = {k: v for k, v in values.items() if k not in ("datasets", "test_split_size")}
    return {**rest, "dataset_mixture": mixture}


# the alignment-handbook's processes for its dataset map (the chat template applied to each
# row), which directpo does as it tokenizes: dataset_num_proc's processes
HANDBOOK_WORKERS = "preprocessing_num_workers"


def _handbook_workers(values: dict[str, Any]) -> dict[str, Any]:
    """``preprocessing_num_workers`` (the handbook's processes for rendering its rows) is
    ``dataset_num_proc`` here, where rendering and tokenizing are one pass: it was accepted
    and did nothing (one process tokenized). Beside ``dataset_num_proc`` (TRL's, for its
    tokenizing map: both in a handbook recipe) that option alone says how many."""
    if HANDBOOK_WORKERS not in values:
        return values
    rest = {k: v for k, v in values.items() if k != HANDBOOK_WORKERS}
    if "dataset_num_proc" in values:
        return rest
    return {**rest, "dataset_num_proc": values[HANDBOOK_WORKERS]}


def _trl_compile(values: dict[str, Any]) -> dict[str, Any]:
    """``torch_compile_backend: inductor`` / ``torch_compile_mode: default`` are what
    ``torch_compile: true`` does here, and transformers compiles whenever either is set (it
    also writes the backend into every dump of a compiled config, which was refused). Beside
    an explicit ``torch_compile: false`` they stay, and are refused as a contradiction would be."""
    asked = [k for k, default in COMPILE_DEFAULTS.items() if _typed(values.get(k)) == default]
    if not asked or ("torch_compile" in values and not _typed(values["torch_compile"])):
        return values
    rest = {k: v for k, v in values.items() if k not in asked}
    return {**rest, "torch_compile": True}


def spellings(values: dict[str, Any], where: str) -> dict[str, str]:
    """The options ``translate`` renames, each with the key as the user wrote it
    ({"generate_max_new_tokens": "max_new_tokens"}), so that a refused value is named as it
    stands in their file or call (``respelled``), not by a name they never wrote."""
    flag = "--" if source_spelling(where) is Spelling.FLAGS else ""
    renames = ALIASES | RENAMED
    renamed = {
        renames[key]: f"{flag}{key}"
        for key in values
        if key in renames and renames[key] not in values
    }
    if _trl_mixture(values) is not values:  # TRL's top-level datasets: [...]
        renamed["dataset_mixture"] = f"{flag}datasets"
    if HANDBOOK_WORKERS in values and "dataset_num_proc" not in values:
        renamed["dataset_num_proc"] = f"{flag}{HANDBOOK_WORKERS}"
    return renamed


def _takes(key: str, known: list[str]) -> bool:
    """``key`` is an option's name or one of TRL's that ``translate`` reads (renamed, refused
    with a reason, or of no effect here)."""
    return key in known or key in ALIASES or key in RENAMED or key in REFUSED or key in NO_EFFECT


NO_STRINGS = ("logging_strategy",)  # TRL's string options with a "no" (YAML's is false)
# other tools' names for packing, which padding_free does here (_packing_unpadded)
PACKING = ("packing", "eval_packing", "packing_samples", "ds.packing_samples")


def reward_model_named(value: Any) -> str | None:
    """The reward model a TRL ``reward_funcs`` value names (a folder, a hub id: ``rm/``,
    ``org/rm``; a list of one), else None: a function is ``module:function`` or a .py file's."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or ":" in value or value.endswith(".py"):
        return None
    return value if "/" in value or os.path.isdir(os.path.expanduser(value)) else None


def _reward_funcs_hint(value: Any) -> str:
    """reward_funcs, TRL's trainer argument, in a recipe or flags: a model's folder or id is
    reward_model_name_or_path's; one function (``my_rewards:score``, a list of one) was told
    only "did you mean 'reward_fn'?", the value then retyped: the setting is said with it."""
    if model := reward_model_named(value):
        return _reward_model_hint(model)
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not (":" in value or value.endswith(".py")):
        return ""  # (several functions: reward_fn's own check says to sum them in one)
    setting = spell_setting(("reward_fn", value))
    return f"; {setting} (TRL's reward_funcs of one function is reward_fn here)"


def _reward_model_hint(model: str) -> str:
    """reward_funcs naming a model: it was told "did you mean 'reward_fn'?", which takes a
    function; a model's folder or id is reward_model_name_or_path's."""
    setting = spell_setting(("reward_model_name_or_path", model))
    return f"; {model} is a reward model: {setting} ({spell_name('reward_fn')} takes a function)"


def _reward_list_hint(value: Any) -> str | None:
    """TRL's reward_funcs listing a reward model beside functions ([rm/, my_rewards:score]:
    their rewards summed) was told "did you mean 'reward_fn'?", which takes one function and
    no model: the model is reward_model_name_or_path's, a function reward_fn's (directpo sums
    its labellers too); None where the list names no model."""
    if isinstance(value, str) and "," in value:  # (a flag's list: rm/,my_rewards:score)
        value = [item.strip() for item in value.split(",")]
    if not isinstance(value, list | tuple) or len(value) < 2:
        return None
    models = [item for item in value if reward_model_named(item)]
    functions = [item for item in value if not reward_model_named(item)]
    if not models:
        return None
    if len(models) > 1:  # (one reward model a run: the others' scores are a function's)
        return (
            f"; {' and '.join(map(str, models))} are reward models, of which a run scores with "
            f"one ({spell_name('reward_model_name_or_path')}); the others' scores can be a "
            f"{spell_name('reward_fn')} function's"
        )
    if len(functions) > 1:  # (reward_fn takes one function)
        model = spell_setting(("reward_model_name_or_path", models[0]))
        return (
            f"; {models[0]} is a reward model: {model}, and {spell_name('reward_fn')} one "
            "function that returns the others' sum"
        )
    settings = spell_setting(
        ("reward_model_name_or_path", models[0]), ("reward_fn", functions[0]), last=" and "
    )
    return (
        f"; {models[0]} is a reward model and {functions[0]} a function: {settings} (their "
        f"rewards are summed, weighted by {spell_name('reward_weights')})"
    )


def translate(values: dict[str, Any], known: list[str], where: str) -> dict[str, Any]:
    """``values`` with TRL's spellings renamed and no-effect keys dropped; every key that cannot
    be used is reported at once (``ConfigErrors``). ``known`` are the options' own names;
    ``where`` names the source (a recipe's path heads its lines) and so its spelling: each
    refusal, and the tables' advice in it, reads as that source writes options."""
    with written_as(source_spelling(where)):
        return _translate(values, known, where)


def _translate(values: dict[str, Any], known: list[str], where: str) -> dict[str, Any]:
    values = _handbook_workers(_trl_compile(_trl_mixture(values)))
    result: dict[str, Any] = {}
    problems: list[str] = []
    spelling = caller().spelling
    flag = "--" if spelling is Spelling.FLAGS else ""  # name them as they were written
    renames = ALIASES | RENAMED
    for key, value in values.items():
        value = "no" if key in NO_STRINGS and value is False else value  # YAML 1.1's no
        if key.endswith("_token") and value == f"<{key.upper()}>":
            continue  # transformers' to_dict hides every *_token value: nothing is known of it
        if is_component(value):  # torchtune's (its optimizer was 'optimizer must be a string')
            problems.append(f"{flag}{key}: {component_hint(key, value)}")
        elif key in known:
            result[key] = value
        elif key in renames and renames[key] in known:
            if renames[key] in values:
                # transformers' to_dict writes both spellings (gradient_checkpointing and
                # activation_checkpointing): only a contradiction is a problem
                if _typed(values[renames[key]]) != _typed(value):
                    problems.append(f"{flag}{key}: also given as {flag}{renames[key]}; keep one")
            else:
                result[renames[key]] = value
        elif key in REFUSED:
            # (only a flag's text is read as YAML: a recipe's or a call's value is typed, and
            # its text read again made a file named 'prefs: v2.jsonl' a mapping)
            typed = _typed(value) if flag and key not in AS_WRITTEN else value
            if instead := REFUSED[key](typed):
                problems.append(f"{flag}{key}: {instead}")
        elif key in NO_EFFECT:
            accepted, instead = NO_EFFECT[key]
            if not accepted(_typed(value)):
                reason = f": {advice_text(instead)}" if instead else ""
                problems.append(f"{_as_given(key, value)} is not supported{reason}")
        elif not flag and key.startswith("no_") and _takes(key[3:], known):
            # HfArgumentParser's flag --no_remove_unused_columns written as a key (was told
            # 'did you mean rejected_column?'): its key is the option's own, set false
            written = spell_option(key[3:], False, in_recipe=False)
            problems.append(f"unknown option '{key}'; the flag --{key} is written {written} here")
        else:
            # (--lr, --data: option_hints; a flag may be --config misspelt)
            meant = HINTS.get(key)
            names = (meant,) if isinstance(meant, str) else meant or ()
            named = " and ".join(f"'{flag}{name}'" for name in names)
            hint = f"; did you mean {named}?" if names else ""
            options = [*known, *(["config"] if flag else [])]
            # (the value known: --model run/ told 'give --model_name_or_path run/')
            if setting := setting_meant(key, options, flag, value):
                hint = f"; {setting}"
            hint = hint or unknown_hint(key, options, flag, value)
            if key == "reward_funcs":
                hint = _reward_list_hint(value) or _reward_funcs_hint(value) or hint
            if flag and key in VERSION_FLAGS:
                hint = VERSION_HINT
            problems.append(f"unknown option '{flag}{key}'{hint}")
    problems += _packing_unpadded(values)
    if problems:
        raise ConfigErrors("" if flag else where, problems)
    return result


def _as_given(key: str, value: Any) -> str:
    """``key: value`` as its source wrote it: a flag's own text (``--logging_strategy no``, not
    false), a YAML file's value in YAML (true, not True), a Python call's in Python."""
    if caller().spelling is Spelling.RECIPE and key in NO_STRINGS and isinstance(value, str):
        value = Blank(value)  # (`no`, not YAML's quoted 'no')
    if caller().spelling is Spelling.FLAGS and isinstance(value, str):
        return f"--{key} {value}"  # (as typed, a switch's value too: --push_to_hub true)
    return spell_option(key, value, in_recipe=False)


def _packing_unpadded(values: dict[str, Any]) -> list[str]:
    """SFTConfig's packing / eval_packing (or OpenRLHF's packing_samples) asking to pack
    beside padding_free off: they port because padding_free packs each micro-batch, so with it
    off they were taken and dropped, every row padded, without a word."""
    if values.get("padding_free") is None or _typed(values["padding_free"]) is not False:
        return []
    asked = [key for key in PACKING if _typed(values.get(key)) is True]
    return [
        f"{said(key, True)} asks for packed sequences, which directpo packs with padding_free, "
        f"and {said('padding_free', False)} turns that off: drop one of them (padding_free "
        "is on by default)"
        for key in asked
    ]
