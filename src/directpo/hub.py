"""Whether the Hugging Face Hub can be reached from this machine, asked once, quickly.

A hub id on a machine without network (or a typo of a folder name, which reads as a hub id)
made huggingface_hub retry each request five times with backoff (~30 s, "Retrying in 8s" lines)
before the one-line error, and a dataset or model the local cache holds was read only after
those retries, request by request (7 minutes for a cached tiny model). One TCP connection to
the hub's endpoint (``HF_ENDPOINT``) decides instead: where it fails, the libraries' offline
mode is set (the local cache at once) and the error says why.

Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) a direct connection says nothing about the
hub, so the hub counts as reachable and the libraries' own behaviour is kept.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

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
