"""The Rust backend's batch encoder, used where it gives to the id what a fast tokenizer's own
call gives: that call spends a third of its time on what ids do not need (offsets, attention
masks, a BatchEncoding), and tokenizing is most of a large file's start-up
(docs/performance.md, "Start-up on large data files")."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

_CALL_PATH = ("__call__", "_call_one", "encode_plus", "batch_encode_plus", "_encode_plus",
              "_batch_encode_plus", "_switch_to_input_mode", "_get_padding_truncation_strategies",
              "set_truncation_and_padding", "_convert_encoding")  # fmt: skip


def direct_backend(tokenizer: Any) -> Any:
    """The Rust backend's batch encoder (``encode_batch_fast``: no character offsets) where it
    gives the ids ``tokenizer(texts, add_special_tokens=False)`` gives, else None. That call
    spent a third of its time on what ids do not need: offsets, attention masks, a
    BatchEncoding. It is the backend's ``encode_batch`` when the tokenizer is the library's own
    fast class (a subclass overriding no method on the way or on its result: Code Llama's
    infilling does; none set on the object), its
    backend sets no truncation or padding (the call turns them off) and splits special tokens
    as the tokenizer says (the call sets that too); a tokenizer that is not, the call."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:  # (a tokenizer of another library)
        return None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return None
    kind = type(tokenizer)
    for name in _CALL_PATH:
        if getattr(kind, name, None) is not getattr(PreTrainedTokenizerFast, name, None):
            return None
        if name in getattr(tokenizer, "__dict__", {}):  # (one patched on the object itself)
            return None
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return None
    split = getattr(tokenizer, "split_special_tokens", False)
    if getattr(backend, "encode_special_tokens", False) != split:
        return None
    return getattr(backend, "encode_batch_fast", None) or backend.encode_batch


def gives_the_calls_ids(tokenizer: Any) -> bool:
    """Whether ``direct_backend(tokenizer)`` gives the ids ``tokenizer(texts,
    add_special_tokens=False)`` gives, on a probe of what rows hold (spaces, newlines, tabs,
    accents, scripts, emoji, the tokenizer's own special tokens typed as text). direct_backend
    knows transformers' call path by its methods' names; a transformers to come may add a step
    of another name, and then this says no and the call is kept. Probed once per tokenizer."""
    try:
        return _PROBED[tokenizer]
    except (KeyError, TypeError):  # (TypeError: a tokenizer no weak reference can name)
        pass
    gives = _probe(tokenizer)
    with contextlib.suppress(TypeError):
        _PROBED[tokenizer] = gives
    return gives


_PROBED: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _probe(tokenizer: Any) -> bool:
    backend = direct_backend(tokenizer)
    if backend is None:
        return False
    specials = " ".join(getattr(tokenizer, "all_special_tokens", [])[:8])
    probe = [
        "Hello world.", " leading and trailing ", "new\nline\r\n\ttab  two",
        "ünïcödé 你好 مرحبا 👍🏽", specials, "",
    ]  # fmt: skip
    try:
        called = [list(ids) for ids in tokenizer(probe, add_special_tokens=False).input_ids]
        direct = [encoding.ids for encoding in backend(probe, add_special_tokens=False)]
    except Exception:  # (a backend that cannot: the call is kept)
        return False
    return direct == called
