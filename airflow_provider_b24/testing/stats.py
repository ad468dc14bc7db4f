"""Request counters of the emulated portal (``emu.stats``): thread-safe, snapshot as a plain dict."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["Stats"]


class Stats:
    """Thread-safe counters; ``snapshot()`` is what ``emu.stats`` returns."""

    _SCALARS = (
        "requests",
        "rejected_rate_limit",
        "rejected_operating",
        "rejected_auth",
        "errors",
        "batch_requests",
        "batch_commands",
        "rows_returned",
        "token_requests",
        "token_refreshes",
        "token_errors",
        "oauth_secrets_in_query",
        "faults_injected",
        "connections",
        "plain_http_requests",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero everything."""
        with self._lock:
            self.values: Counter[str] = Counter(dict.fromkeys(self._SCALARS, 0))
            self.methods: Counter[str] = Counter()
            self.batch_methods: Counter[str] = Counter()
            self.error_codes: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()

    def add(self, key: str, amount: int = 1) -> None:
        """Increment a scalar counter."""
        with self._lock:
            self.values[key] += amount

    def record(self, status: int, error: str | None = None) -> None:
        """Count one response status (and its error code)."""
        with self._lock:
            self.statuses[status] += 1
            if error is not None:
                self.values["errors"] += 1
                self.error_codes[error or "(empty)"] += 1

    def method(self, name: str, *, in_batch: bool = False) -> None:
        """Count one call of a method."""
        with self._lock:
            (self.batch_methods if in_batch else self.methods)[name] += 1

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict copy."""
        with self._lock:
            out: dict[str, Any] = dict(self.values)
            out["methods"] = dict(self.methods)
            out["batch_methods"] = dict(self.batch_methods)
            out["error_codes"] = dict(self.error_codes)
            out["statuses"] = dict(self.statuses)
            return out
