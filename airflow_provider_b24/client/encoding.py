"""Wire encoding: JSON bodies, PHP bracket query strings for ``batch`` commands, and secret redaction.

Bitrix24 parses a batch command's query part with PHP's ``parse_str``, so nested parameters use
bracket syntax (``filter[>ID]=5&select[0]=ID``; see
https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html). Rules
used here, chosen to round-trip what a JSON body would mean:

* dicts and lists nest with brackets (lists by index, like PHP's ``http_build_query``);
* empty lists and dicts are left out (PHP has no way to say "empty array" in a query string);
* ``None`` becomes an empty value (``key=``), never the string ``"None"``;
* ``True``/``False`` become ``Y``/``N`` - the convention of the legacy CRM ``char`` fields
  (``COMPLETED``, ``IS_INCOMING_CHANNEL``) and of fast-bitrix24. In JSON bodies booleans stay JSON
  booleans; pass explicit strings when a method wants ``1``/``0`` or ``true``/``false``;
* dates and datetimes use ISO 8601, ``Decimal`` its exact text, enums their value;
* a :class:`ResultRef` (or a string that is exactly ``$result[key][...]``) is written unescaped so
  the server can substitute an earlier command's result.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

_REF_PATTERN = re.compile(r"^\$result\[[^\[\]]+\](\[[^\[\]]*\])*$")
REDACTED = "***"


class ResultRef(str):
    """A reference to an earlier command's result inside one batch: ``$result[key][49][ID]``.

    >>> ResultRef("page0", 49, "ID")
    '$result[page0][49][ID]'
    """

    __slots__ = ()

    def __new__(cls, key: str, *path: str | int) -> ResultRef:
        return super().__new__(cls, f"$result[{key}]" + "".join(f"[{p}]" for p in path))

    @property
    def command_key(self) -> str:
        """The batch command this reference reads."""
        return self[len("$result[") : self.index("]")]


def is_result_ref(value: Any) -> bool:
    """True for a :class:`ResultRef` or a string that is exactly a ``$result[...]`` reference."""
    return isinstance(value, str) and bool(_REF_PATTERN.match(value))


def scalar_text(value: Any) -> str:
    """The query-string text of one scalar (see the module docstring for the rules)."""
    if value is None:
        return ""
    if value is True:
        return "Y"
    if value is False:
        return "N"
    if isinstance(value, enum.Enum):
        return scalar_text(value.value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{quote(str(key), safe='')}]", item, out)
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        for index, item in enumerate(items):
            if item.__class__ is int:  # the usual ``@ID`` list: no call per element
                out.append((f"{prefix}[{index}]", item))
            else:
                _flatten(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, value))


def php_query(params: Mapping[str, Any] | None) -> str:
    """Encode ``params`` as a PHP bracket query string (values URL-encoded, references kept raw)."""
    if not params:
        return ""
    pairs: list[tuple[str, Any]] = []
    for key, value in params.items():
        _flatten(quote(str(key), safe=""), value, pairs)
    parts = []
    for key, value in pairs:
        if value.__class__ is int:  # digits and "-" need no escaping (not bool, not an IntEnum)
            text = str(value)
        elif value.__class__ is str and not value.startswith("$"):  # cannot be a ``$result`` reference
            text = quote_plus(value, safe="")
        else:
            text = value if is_result_ref(value) else quote_plus(scalar_text(value), safe="")
        parts.append(f"{key}={text}")
    return "&".join(parts)


def batch_command(method: str, params: Mapping[str, Any] | None) -> str:
    """One ``cmd`` value of a batch: ``method?query`` (no second encoding inside a JSON body)."""
    query = php_query(params)
    return f"{method}?{query}" if query else method


def referenced_keys(command: str) -> set[str]:
    """The command keys a batch command string refers to with ``$result[key]``."""
    return set(re.findall(r"\$result\[([^\[\]]+)\]", command))


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot send a {type(value).__name__} to Bitrix24; pass str, int, float, list or dict")


def json_body(payload: Mapping[str, Any]) -> bytes:
    """The UTF-8 JSON request body (dates as ISO 8601, ``Decimal`` exact, enums by value)."""
    return json.dumps(payload, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------------

#: Secrets shorter than this are not redacted (same idea as Airflow's ``min_length_masked_secret``).
MIN_SECRET_LENGTH = 4


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (and its URL-encoded form) in ``text`` with ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        encoded = quote_plus(secret, safe="")
        if encoded != secret:
            text = text.replace(encoded, REDACTED)
    return text


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL - the only part of a portal URL safe to show anywhere."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def excerpt(text: str, secrets: Iterable[str], limit: int = 200) -> str:
    """A short, single-line, secret-free excerpt of a response body for an error message."""
    flat = " ".join(text.split())
    flat = redact(flat, secrets)
    return flat if len(flat) <= limit else flat[:limit] + "..."


class _SecretFilter(logging.Filter):
    """Redacts registered secrets from records of third-party loggers (urllib3 logs request paths)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message, self._secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_SECRET_FILTER = _SecretFilter()
_FILTERED_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests", "requests_mock.adapter")
_filter_installed = False


def register_secrets(secrets: Iterable[str]) -> None:
    """Redact these secrets from urllib3's DEBUG lines (``POST /rest/1/<code>/...``) from now on."""
    global _filter_installed  # noqa: PLW0603 - one process-wide filter
    _SECRET_FILTER.add(secrets)
    if not _filter_installed:
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(_SECRET_FILTER)
        _filter_installed = True


__all__ = [
    "REDACTED",
    "ResultRef",
    "batch_command",
    "excerpt",
    "is_result_ref",
    "json_body",
    "origin",
    "php_query",
    "redact",
    "referenced_keys",
    "register_secrets",
    "scalar_text",
]
