"""PHP-style query strings: ``parse_str`` (``filter[>ID]=5&select[]=ID``) and its inverse.

Bitrix24 is PHP; form bodies, GET query strings and batch commands all use PHP bracket syntax.
Arrays whose keys are ``0..n-1`` (or that were built with ``[]``) decode to Python lists.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, unquote_plus

__all__ = ["build_query", "listify", "parse_str", "split_key"]


def _base_name(name: str) -> str:
    """PHP turns spaces and dots in the top-level name (and a stray ``[``) into ``_``."""
    return name.replace(" ", "_").replace(".", "_").replace("[", "_")


def split_key(key: str) -> list[str]:
    """Split ``a[b][]`` into ``["a", "b", ""]``; an unbalanced ``[`` makes it a plain name.

    As in PHP, ``filter[<=ID]=7`` splits at the first ``=``, so operator keys must be
    percent-encoded in form and query data (``filter[%3C%3DID]=7``).
    """
    first = key.find("[")
    if first <= 0 or key.find("]", first) < 0:
        return [_base_name(key)]
    parts = [_base_name(key[:first])]
    pos = first
    while pos < len(key) and key[pos] == "[":
        end = key.find("]", pos)
        if end < 0:
            break
        parts.append(key[pos + 1 : end])
        pos = end + 1
    return parts


def _insert(root: dict[str, Any], parts: list[str], value: str) -> None:
    node: Any = root
    for index, raw_part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(node, dict):
            part = str(sum(1 for k in node if k.isdigit())) if raw_part == "" else raw_part
            if last:
                node[part] = value
                return
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child


def listify(value: Any) -> Any:
    """Turn dicts keyed ``"0".."n-1"`` into lists, recursively (PHP's list-like arrays)."""
    if isinstance(value, dict):
        converted = {k: listify(v) for k, v in value.items()}
        keys = list(converted)
        if keys and all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
            return [converted[str(i)] for i in range(len(keys))]
        return converted
    if isinstance(value, list):
        return [listify(v) for v in value]
    return value


def _decode(text: str) -> str:
    return unquote_plus(text) if ("%" in text or "+" in text) else text


@functools.lru_cache(maxsize=8192)
def _key_parts(raw_key: str) -> tuple[str, ...] | None:
    """Decoded, split key (memoised: batch commands repeat the same keys thousands of times)."""
    key = _decode(raw_key)
    return tuple(split_key(key)) if key else None


def parse_str(query: str) -> dict[str, Any]:
    """Decode a PHP query string into nested dicts/lists of strings (like PHP's ``parse_str``)."""
    root: dict[str, Any] = {}
    if not query:
        return root
    for pair in query.split("&"):
        if not pair:
            continue
        raw_key, sep, raw_value = pair.partition("=")
        parts = _key_parts(raw_key)
        if parts is None:
            continue
        value = _decode(raw_value) if sep else ""
        _insert(root, list(parts), value)
    result = listify(root)
    return result if isinstance(result, dict) else {}


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}[{k}]" if prefix else str(k), v, out)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "1" if value else "0"))
    else:
        out.append((prefix, str(value)))


def build_query(params: Mapping[str, Any]) -> str:
    """Encode nested params PHP-style (``http_build_query``); used by tests and the CLI examples."""
    pairs: list[tuple[str, str]] = []
    _flatten("", params, pairs)
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)
