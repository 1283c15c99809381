"""Whether the Hugging Face Hub can be reached from this machine, asked once, quickly.

A hub id on a machine without network (or a typo of a folder name, which reads as a hub id)
made huggingface_hub retry each request five times with backoff (~30 s, "Retrying in 8s" lines)
before the one-line error, and a dataset or model the local cache holds was read only after
those retries, request by request (7 minutes for a cached tiny model). One TCP connection to
the hub's endpoint (``HF_ENDPOINT``) decides instead: where it fails, the libraries' offline
mode is set (the local cache at once) and the error says why.

Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) a direct connection says nothing about the
hub, so the hub counts as reachable and the libraries' own behaviour is kept.

Also the names the Hub accepts in a model card: a base model read from a local folder has no
hub id there, unless the folder is the Hugging Face cache's copy of one (``hub_model_name``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

PROBE_TIMEOUT_S = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_host() -> str:
    """The host of the hub endpoint the libraries use (``HF_ENDPOINT``, or huggingface.co)."""
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT


def hub_reachable() -> bool:
    """False where offline mode is set, or a TCP connection to the hub cannot be opened."""
    return _why_unreachable() is None


def unreachable_reason() -> str:
    """Why the hub is not asked, for an error message."""
    return _why_unreachable() or "the Hub is reachable"


@functools.cache
def _why_unreachable() -> str | None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode is set (HF_HUB_OFFLINE)"
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((hub_host(), port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError:  # no DNS, no route, refused, timed out
        return f"the Hub ({hub_host()}) cannot be reached from this machine"


def cache_only_where_unreachable(name: str) -> bool:
    """For ``name`` a hub id (no local path): where the hub cannot be reached, huggingface_hub's,
    transformers' and datasets' offline mode is set for the process (they read it at call
    time), so every later load reads the local cache at once; returns whether it is set.
    ``train()`` and ``ImplicitReward`` (score, rank) give the caller the flags back as they
    were (``offline_flags_kept``); generate leaves them set (its process ends with them)."""
    if os.path.exists(os.path.expanduser(name)) or hub_reachable():
        return False
    for module in _offline_flags():
        module.HF_HUB_OFFLINE = True
    return True


def uncached_where_unreachable(name: str) -> str | None:
    """For ``name`` shaped as a hub id (``org/model``) and no local path: why it cannot be
    loaded where the hub cannot be reached and the local cache holds no copy of it (the words
    model_files.check_hub_reachable says at load), else None. Asks nothing but the one probe,
    imports no torch: score and rank say it in their first pass over the options."""
    if os.path.exists(os.path.expanduser(name)) or not HUB_ID.fullmatch(name):
        return None
    if hub_reachable():
        return None
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    if os.path.isdir(
        os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=name, repo_type="model"))
    ):
        return None
    return (
        f"as a hub id it cannot be loaded: {unreachable_reason()}, and the local cache holds "
        "no copy of it"
    )


@contextlib.contextmanager
def offline_flags_kept() -> Iterator[None]:
    """The offline flags as they were before the block."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    datasets_before = _datasets_config().HF_HUB_OFFLINE if _datasets_config() else None
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if datasets_before is not None:
            _datasets_config().HF_HUB_OFFLINE = datasets_before


def _datasets_config() -> Any:
    module = sys.modules.get("datasets")  # datasets copies the flag at its import
    return module.config if module is not None else None


def _offline_flags() -> list[Any]:
    from huggingface_hub import constants

    return [constants] + ([_datasets_config()] if _datasets_config() else [])


# a Hub repository id, [user/]name: what a model card's metadata and code may name
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# a repository's folder in the Hugging Face cache: HF_HUB_CACHE/KINDs--ORG--NAME/snapshots/REV
CACHE_SNAPSHOT = re.compile(r"(models|datasets)--([^/]+)/snapshots/[^/]+/?$")


def hub_model_name(name: str, kind: str = "models") -> str | None:
    """``name`` as the Hub knows it: a hub id as it is, the id of a folder of the Hugging Face
    cache (``.../models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/REV``, as a machine
    without internet names the model; ``kind`` datasets: ``datasets--ORG--NAME/...``), else
    None: a local folder is no id the Hub accepts in a card's metadata (it refuses the
    README)."""
    if not (os.path.exists(name) or os.path.isabs(name)):
        return name
    found = CACHE_SNAPSHOT.search(name.replace("\\", "/"))
    found = found if found and found.group(1) == kind else None
    hub_id = found.group(2).replace("--", "/", 1) if found else None
    return hub_id if hub_id and HUB_ID.fullmatch(hub_id) else None


def hub_safe_card(folder: Path) -> None:
    """The README.md peft writes into an adapter folder, with its base named as the Hub knows
    it (``hub_model_name``): peft writes the base as given, a local folder's absolute path in
    ``base_model`` and a ``base_model:adapter:PATH`` tag, and the Hub refused the uploaded
    adapter ('Invalid metadata in README.md')."""
    card = folder / "README.md"
    text = card.read_text() if card.is_file() else ""
    parts = text.split("---\n", 2)
    if len(parts) < 3 or parts[0]:
        return
    metadata = yaml.safe_load(parts[1]) or {}
    base = metadata.get("base_model")
    name = hub_model_name(base) if isinstance(base, str) else base
    if name == base:  # a hub id already, or no base named
        return
    metadata.pop("base_model")
    tags = [tag for tag in metadata.get("tags") or [] if tag != f"base_model:adapter:{base}"]
    if name is not None:
        metadata["base_model"] = name
        tags.append(f"base_model:adapter:{name}")
    metadata["tags"] = tags
    front = yaml.safe_dump(metadata, sort_keys=False)
    card.write_text(f"---\n{front}---\n{parts[2]}")
