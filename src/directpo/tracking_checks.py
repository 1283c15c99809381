"""The value checks of the logging options: WANDB_DISABLED, log_level, hub_model_id, the
trackers of report_to and trackio's project. Run by ``config_checks.check_values`` in its one
pass."""

from __future__ import annotations

import importlib.util
import os

from directpo.callers import spell_given, spell_option, spell_value
from directpo.config import LOG_LEVELS, TRACKER_MODULES, TRACKERS, DPOConfig
from directpo.hub import HUB_ID
from directpo.option_hints import meant_words
from directpo.option_values import value_shown, words_shown
from directpo.trl_table import OTHER_TRACKERS


def check_tracking(config: DPOConfig) -> None:
    """Logging: WANDB_DISABLED, log_level, the Hub id, the trackers of report_to and
    trackio's project."""
    require, one_of = config._require, config._one_of
    check_wandb_disabled(config)
    one_of("log_level", LOG_LEVELS)
    hub_id = config.hub_model_id is None or bool(HUB_ID.fullmatch(str(config.hub_model_id)))
    require(hub_id, "hub_model_id", "a Hub repository id, user/name")
    if (words := getattr(config, "_words", None)) is not None:  # while constructed
        # (report_to: null, or an empty value, was 'must be a list, got None', no word named)
        words["report_to"] = ("one of", (*TRACKERS, "all"))
    unknown = [t for t in config.report_to if t not in TRACKERS]
    off = [t for t in unknown if str(t).lower() in ("no", "off", "false", "disabled")]
    if off:  # (the word other options take for nothing; transformers refuses it here too)
        written = spell_option("report_to", off[0], in_recipe=False)
        config._refuse("report_to", f"{written} is written {spell_value('none')} (no tracker)")
    foreign = [t for t in unknown if str(t).lower() in OTHER_TRACKERS]
    if foreign and not off:  # (transformers' own tracker names: told the list alone before)
        # each named ([comet_ml, neptune] said comet_ml alone: dropped, neptune came next run)
        named = [value_shown(t) for t in foreign]
        trackers = (
            f"{', '.join(named[:-1])} and {named[-1]} are transformers trackers"
            if named[1:]
            else f"{named[0]} is a transformers tracker"
        )
        config._refuse(
            "report_to",
            f"{spell_given('report_to', config._given_value('report_to'))}: {trackers} "
            f"directpo does not log to; it logs to {', '.join(TRACKERS[:-1])} (or "
            f"{spell_value('none')} for no tracker)",
        )
    elif unknown and not off:  # (report_to: wand or WandB: told the words alone)
        typed = config._given_value("report_to")
        config._refuse(
            "report_to",
            f"report_to must be a list of {', '.join(TRACKERS)} (got "
            f"{words_shown(typed, config.report_to, 'report_to')})"
            f"{meant_words(config.report_to, typed, 'report_to', TRACKERS)}",
        )
    if "none" in config.report_to and len(config.report_to) > 1:
        config._refuse(
            "report_to",
            f"{spell_given('report_to', config._given_value('report_to'))}: "
            f"{spell_value('none')} cannot be combined with other trackers",
        )
    if config.project != "huggingface" and "trackio" not in config.report_to and not unknown:
        # transformers' project is trackio's alone: a wandb user's project went nowhere
        config._refuse(
            "project",
            "project names trackio's project, and report_to has no trackio: add it to "
            "report_to (wandb's project is WANDB_PROJECT in the environment)",
        )


def check_wandb_disabled(config: DPOConfig) -> None:
    """``report_to: all`` as transformers took it (every tracker installed), and wandb with
    WANDB_DISABLED set (TRL users' way to turn it off; transformers 5 no longer reads it):
    left out of all, refused where named, instead of a run logged to wandb regardless."""
    disabled = os.environ.get("WANDB_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")
    if config.report_to == ["all"]:
        config.report_to = [
            name
            for name, module in TRACKER_MODULES.items()
            if importlib.util.find_spec(module) is not None and not (disabled and name == "wandb")
        ] or ["none"]
    if disabled and "wandb" in config.report_to:
        config._refuse(
            "report_to",
            "report_to has wandb but WANDB_DISABLED is set: remove wandb from report_to, or "
            "unset WANDB_DISABLED (WANDB_MODE=offline logs without uploading)",
        )
