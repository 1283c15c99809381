"""Where a model's files are: its from_pretrained location arguments, a hub id checked
reachable once before any loader runs, a hub id's snapshot in the local cache."""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoConfig

from directpo.errors import ModelLoadError, first_line
from directpo.hub import cache_only_where_unreachable, unreachable_reason

HUB_UNREACHABLE = "couldn't connect to"  # transformers' words when the hub cannot be reached


def check_hub_reachable(path: str, location: dict[str, Any] | None) -> None:
    """A name that is no local path is a hub id: its config.json is fetched once (or found in
    the local cache) before the processor, tokenizer and weights are looked for. Where the hub
    cannot be reached and nothing is cached (a typo of a folder name on an offline machine),
    this one request fails after huggingface_hub's retries (~20 s) and says so, instead of
    every file of every loader retrying in turn (3 minutes). Other failures (a repo without
    config.json: a tokenizer alone) are left to the loaders that follow, and so is a repo the
    local cache holds anything of (offline, a file it lacks would read as unreachable)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    offline = cache_only_where_unreachable(path)
    where = dict(location or {})
    cache = where.get("cache_dir") or constants.HF_HUB_CACHE
    if os.path.isdir(os.path.join(cache, repo_folder_name(repo_id=path, repo_type="model"))):
        return
    if offline:
        raise ModelLoadError(
            f"'{path}' is no local folder, and as a hub id it cannot be loaded: "
            f"{unreachable_reason()}, and the local cache holds no copy of it"
        )
    places = [where, {k: v for k, v in where.items() if k != "subfolder"}]  # weights', root
    for place in places[: 1 + ("subfolder" in where)]:
        try:
            AutoConfig.from_pretrained(path, **place)
            return
        except Exception as exc:  # noqa: BLE001 - only the hub's unreachability is decided
            if HUB_UNREACHABLE not in str(exc):
                return
            unreachable = exc
    raise ModelLoadError(
        f"'{path}' is no local folder, and as a hub id it cannot be loaded: "
        f"{first_line(unreachable)}"
    )


# from_pretrained arguments that say where a model's files are: its config is read there too
LOCATION_KWARGS = ("revision", "subfolder", "cache_dir", "local_files_only", "token")


def model_location(init_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The ``LOCATION_KWARGS`` among from_pretrained keyword arguments (model_init_kwargs):
    where a model's files are, so also where its tokenizer, and an adapter's base, are."""
    return {key: value for key, value in (init_kwargs or {}).items() if key in LOCATION_KWARGS}


def cached_snapshot(path: str, revision: str | None = None, cache_dir: str | None = None) -> str:
    """A hub id's folder in the local Hugging Face cache at ``revision`` (main's where None),
    never downloading, else ``path``."""
    if os.path.exists(path) or path.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            path, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # noqa: BLE001 - not cached, or not a valid id: a whole load decides
        return path
