"""Retry policy: which failures are repeated inside one call, and how long to wait between tries.

Repeated (up to ``max_retries`` times, capped exponential backoff with jitter):

* 503 ``QUERY_LIMIT_EXCEEDED`` (the shared bucket is also marked full), 500/502/504 and
  ``ERROR_UNEXPECTED_ANSWER``, HTML or unreadable 5xx bodies;
* connection failures where the request never reached the server (refused, DNS, connect timeout);
* read timeouts, dropped connections and truncated bodies - **only for read methods**: the request
  may have been executed, and re-sending ``crm.activity.add`` could create a duplicate.

Handled elsewhere: 429 ``OPERATION_TIME_LIMIT`` (wait for the reset or raise), 401 ``expired_token``
(refresh once, repeat once), 302 (repeat at the new address). Everything else is raised at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

#: Methods that only read, beyond the ``*.get`` / ``*.list`` / ``*.fields`` patterns.
READ_METHODS = frozenset(
    {
        "profile",
        "scope",
        "app.info",
        "server.time",
        "methods",
        "method.get",
        "user.current",
        "user.access",
        "feature.get",
        "access.name",
    }
)
_READ_SUFFIXES = ("get", "list", "fields")
#: Named like reads but not: ``event.offline.get`` deletes (``clear=1``) or reserves (``clear=0``)
#: the records it returns, so a repeat after a lost answer would lose or strand them.
NOT_READ_METHODS = frozenset({"event.offline.get"})


def is_read_method(method: str) -> bool:
    """True when calling ``method`` twice cannot change data (``*.get``, ``*.list``, ``*.fields``...)."""
    name = method.strip().lower()
    if name.endswith(".json"):
        name = name[: -len(".json")]
    if name in NOT_READ_METHODS:
        return False
    if name in READ_METHODS:
        return True
    last = name.rsplit(".", 1)[-1]
    return last in _READ_SUFFIXES or name.startswith("crm.enum.")


def is_read_batch(methods: Iterable[str]) -> bool:
    """True when every command of a batch is a read."""
    return all(is_read_method(m) for m in methods)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped, ±20 % jitter."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.0, raw * rng.uniform(0.8, 1.2))


__all__ = ["NOT_READ_METHODS", "READ_METHODS", "backoff_delay", "is_read_batch", "is_read_method"]
