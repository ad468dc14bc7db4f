"""Response bodies to Python: msgspec's JSON decoder first, the standard library for anything it refuses.

A batch answer for 2,500 activities is 2.5 MB of JSON, about a hundred thousand dicts and strings.
``json.loads`` builds them one allocation at a time, and every 700 allocations the cyclic garbage
collector runs; in an Airflow worker, whose heap holds a few hundred thousand objects already, those
passes cost twice the decoding itself (measured in one thread: 31 ms per batch, 9 ms with the
collector paused; msgspec 10 ms, 7.5 ms paused: it triggers far fewer passes, not none, so callers
that decode many batches at once may still pause the collector, as the export does). msgspec ships
with Airflow 3 (the Task SDK depends on it), and is a dependency of this package for the
Airflow-free client too.

The result is the same as ``requests.Response.json()`` for every body msgspec accepts (the same
types and values; a repeated key keeps its last value as in ``json``). Bodies it refuses take the
standard path unchanged, so their errors and their oddities stay as they were: a body in another
charset, a byte-order mark, invalid UTF-8 (replaced, as ``requests`` does), lone surrogates,
``NaN`` or numbers beyond a float's range.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

__all__ = ["decode_json"]

_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_UTF8 = frozenset({"utf-8", "utf8", "utf_8"})


class _ResponseLike(Protocol):
    """The slice of ``requests.Response`` decoding needs."""

    @property
    def content(self) -> bytes: ...

    encoding: str | None

    def json(self) -> Any: ...


def decode_json(response: _ResponseLike) -> Any:
    """The response's JSON body as Python objects.

    :raises ValueError: the body is not JSON (the same errors as ``response.json()``).
    """
    encoding = response.encoding
    if encoding is None or encoding.lower() in _UTF8:
        try:
            return _DECODER.decode(response.content)
        except msgspec.MsgspecError:
            pass  # not plain UTF-8 JSON: the standard path decides (and words the error)
    return response.json()
