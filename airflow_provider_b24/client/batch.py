"""``batch``: commands in, per-command results and errors out; any number of commands, ≤ 50 per request.

The server answers HTTP 200 even when commands fail, with five sections under ``result``
(``result``, ``result_error``, ``result_total``, ``result_next``, ``result_time``). Empty sections
arrive as ``[]`` (a PHP empty array) and sections keyed by numbers may arrive as lists; both are
normalised to dicts keyed by the command key. Per-command errors become the same exception classes a
single call raises (a legacy ``{"error": "", "error_description": "Not found"}`` is a
:class:`Bitrix24NotFound`), and successful commands are always kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_b24.client.encoding import batch_command, excerpt, referenced_keys
from airflow_provider_b24.client.errors import (
    Bitrix24ArgumentError,
    Bitrix24Error,
    Bitrix24ServerError,
    classify_error,
)

MAX_BATCH = 50

#: A command: ``(method, params)`` or a ready ``"method?query"`` string.
Command = tuple[str, Mapping[str, Any] | None] | str


@dataclass
class BatchResult:
    """The merged outcome of one logical batch (possibly several HTTP requests).

    :ivar results: ``{key: result}`` of the commands that succeeded, in command order.
    :ivar errors: ``{key: Bitrix24Error}`` of the commands that failed.
    :ivar totals: ``{key: total}`` for list commands that reported one.
    :ivar next: ``{key: next start}`` for list commands with more pages.
    :ivar times: ``{key: time block}`` per command.
    :ivar requests: HTTP requests used (retries included).
    """

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Bitrix24Error] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)
    requests: int = 0

    @property
    def ok(self) -> bool:
        """True when no command failed."""
        return not self.errors

    def raise_first_error(self) -> None:
        """Raise the first per-command error, if any (for callers that want all-or-nothing)."""
        for error in self.errors.values():
            raise error


@dataclass(frozen=True)
class PreparedCommand:
    key: str
    method: str
    text: str


def prepare_commands(commands: Mapping[str, Command]) -> list[PreparedCommand]:
    """Encode every command to ``method?query`` text, validating keys and methods."""
    prepared = []
    for raw_key, command in commands.items():
        key = str(raw_key)
        if not key or any(ch in key for ch in "[]?&= "):
            raise Bitrix24ArgumentError(
                f"batch key {raw_key!r} must be non-empty without '[', ']', '?', '&', '=' or spaces"
            )
        if isinstance(command, str):
            text = command.strip()
            method = text.split("?", 1)[0]
        elif isinstance(command, tuple | list) and len(command) == 2 and isinstance(command[0], str):
            method, params = command
            if params is not None and not isinstance(params, Mapping):
                raise Bitrix24ArgumentError(
                    f"batch command {key!r}: params must be a dict, got {type(params).__name__}"
                )
            text = batch_command(method, params)
        else:
            raise Bitrix24ArgumentError(f"batch command {key!r} must be (method, params) or 'method?query'")
        if not method or method.lower() == "batch":
            raise Bitrix24ArgumentError(f"batch command {key!r}: method {method!r} is not allowed in a batch")
        prepared.append(PreparedCommand(key=key, method=method, text=text))
    return prepared


def split_commands(prepared: list[PreparedCommand], size: int = MAX_BATCH) -> list[list[PreparedCommand]]:
    """Split into chunks of ``size`` in order; a ``$result[key]`` reference must stay in its chunk."""
    chunks = [prepared[i : i + size] for i in range(0, len(prepared), size)]
    all_keys = {c.key for c in prepared}
    for chunk in chunks:
        keys = {c.key for c in chunk}
        for command in chunk:
            for ref in referenced_keys(command.text):
                if ref in all_keys and ref not in keys:
                    raise Bitrix24ArgumentError(
                        f"batch command {command.key!r} refers to $result[{ref}], which lands in another "
                        f"request of {size} commands; keep referencing commands within one chunk"
                    )
    return chunks


def _section(value: Any, keys: list[str]) -> dict[str, Any]:
    """A result section as a dict: ``[]`` -> ``{}``; a list -> by position or by numeric key."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        if not value:
            return {}
        numeric = all(k.isdigit() for k in keys)
        if numeric:
            return {str(i): v for i, v in enumerate(value)}
        return dict(zip(keys, value, strict=False))
    return {}


def merge_response(into: BatchResult, chunk: list[PreparedCommand], envelope: Mapping[str, Any]) -> None:
    """Merge one batch response into ``into`` (in command order)."""
    body = envelope.get("result")
    if not isinstance(body, Mapping):
        body = {}
    keys = [c.key for c in chunk]
    methods = {c.key: c.method for c in chunk}
    results = _section(body.get("result"), keys)
    errors = _section(body.get("result_error"), keys)
    totals = _section(body.get("result_total"), keys)
    nexts = _section(body.get("result_next"), keys)
    times = _section(body.get("result_time"), keys)
    for key in keys:
        if errors.get(key):
            raw = errors[key]
            if isinstance(raw, Mapping):
                code, description = raw.get("error", ""), raw.get("error_description", "")
            else:
                code, description = "", str(raw)
            description = excerpt(str(description), ())  # a 10 MB description must not become the message
            into.errors[key] = classify_error(code, description, http_status=None, method=methods[key])
        elif key in results:
            into.results[key] = results[key]
        elif not errors:
            # Neither a result nor an error, and no command failed (so no `halt` stopped it): the answer
            # is incomplete. Treating it as "no rows" would silently lose data.
            into.errors[key] = Bitrix24ServerError(
                "the batch answer has neither a result nor an error for this command",
                method=methods[key],
            )
        if key in totals:
            with contextlib.suppress(TypeError, ValueError):
                into.totals[key] = int(totals[key])
        if key in nexts and nexts[key] not in (None, ""):
            with contextlib.suppress(TypeError, ValueError):
                into.next[key] = int(nexts[key])
        if key in times:
            into.times[key] = times[key]


def iter_chunks(commands: Mapping[str, Command], size: int = MAX_BATCH) -> Iterator[list[PreparedCommand]]:
    """Prepared chunks of at most ``size`` commands, in order."""
    yield from split_commands(prepare_commands(commands), size)


__all__ = [
    "MAX_BATCH",
    "BatchResult",
    "Command",
    "PreparedCommand",
    "iter_chunks",
    "merge_response",
    "prepare_commands",
    "split_commands",
]
