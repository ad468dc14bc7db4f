"""Client-side pacing: the portal's leaky bucket and the per-method operating-time budget.

Bitrix24 counts requests per portal in a leaky bucket (each request adds 1, the counter drains at
2/s, above 50 the portal answers 503 ``QUERY_LIMIT_EXCEEDED``; Enterprise 5/s and 250). The
:class:`LeakyBucket` mirrors that counter so the client waits *before* sending instead of collecting
503s. One bucket per portal host is shared by every client in the process (:class:`LimiterRegistry`);
other processes (other Airflow workers) are not coordinated - use an Airflow pool per portal.

Separately, the portal sums each method's execution time over 10 minutes (``time.operating``) and
blocks the method with 429 ``OPERATION_TIME_LIMIT`` above a budget (480 s on cloud).
:class:`OperatingTracker` remembers the last ``operating`` / ``operating_reset_at`` per method and
tells the client to slow down from 80 % of the budget and to pause at it. On-premise portals send no
``operating`` fields; then the tracker never delays anything.

Time comes from a :class:`Clock` so tests run on a fake clock without sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Clock(Protocol):
    """Time source: ``monotonic`` for intervals, ``time`` for the server's unix timestamps."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class LeakyBucket:
    """A thread-safe model of the portal's request counter.

    :meth:`reserve` books a slot for one request and returns how long to wait before sending it; the
    slot is booked at once, so concurrent callers queue up fairly instead of all waking together.

    The client keeps a small headroom below the portal's capacity (4 % of the burst, at least one
    request): requests reach the portal after a variable network delay, so two requests sent exactly
    ``1/rate`` apart can arrive closer together, and a bucket run at exactly full would then get 503s.
    """

    HEADROOM_SHARE = 0.04

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._level = 0.0
        self._updated: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LeakyBucket(rate={self.rate}, burst={self.burst}, level={self._level:.1f})"

    def _drain(self, now: float) -> None:
        if self._updated is not None:
            self._level = max(0.0, self._level - max(0.0, now - self._updated) * self.rate)
        self._updated = now

    def reserve(self, now: float) -> float:
        """Book one request at monotonic time ``now``; return the seconds to wait before sending it."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            self._drain(now)
            self._level += 1.0
            capacity = max(1.0, self.burst - max(1.0, self.burst * self.HEADROOM_SHARE))
            excess = self._level - capacity
            return excess / self.rate if excess > 0 else 0.0

    def fill(self, now: float) -> None:
        """The portal said 503: assume its bucket is full, so later requests go at the drain rate."""
        with self._lock:
            self._drain(now)
            self._level = max(self._level, float(self.burst))

    @property
    def level(self) -> float:
        return self._level


class LimiterRegistry:
    """One :class:`LeakyBucket` per portal host, shared by every client in this process.

    When clients of one portal are configured differently, the most conservative setting (lowest
    rate, smallest burst) wins.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, LeakyBucket] = {}
        self._operating: dict[str, OperatingTracker] = {}
        self._lock = threading.Lock()

    def bucket(self, host: str, rate: float, burst: int) -> LeakyBucket:
        """The shared bucket of ``host`` (created on first use)."""
        key = host.lower()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = LeakyBucket(rate, burst)
            else:
                if rate > 0 and (bucket.rate <= 0 or rate < bucket.rate):
                    bucket.rate = rate
                bucket.burst = min(bucket.burst, burst)
            return bucket

    def operating(self, host: str) -> OperatingTracker:
        """The shared operating-time tracker of ``host``."""
        key = host.lower()
        with self._lock:
            tracker = self._operating.get(key)
            if tracker is None:
                tracker = self._operating[key] = OperatingTracker()
            return tracker

    def clear(self) -> None:
        """Forget every bucket (tests)."""
        with self._lock:
            self._buckets.clear()
            self._operating.clear()


#: The process-wide registry clients use unless given another.
DEFAULT_REGISTRY = LimiterRegistry()


def parse_reset_at(value: Any) -> float | None:
    """``operating_reset_at`` as unix seconds: a number, a numeric string, or an ISO 8601 string."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


@dataclass
class _MethodUsage:
    operating: float
    reset_at: float | None


@dataclass(frozen=True)
class OperatingAdvice:
    """What to do before calling a method: sleep ``delay`` s, or (``blocked``) wait until ``reset_at``."""

    delay: float = 0.0
    blocked: bool = False
    reset_at: float | None = None


class OperatingTracker:
    """Last known ``time.operating`` and ``operating_reset_at`` per method (batches under ``batch``).

    Follows the official JS SDK: from 80 % of the budget sleep 1 % of the time left to the reset
    (at most 7 s); at the budget minus a 5 s margin the method is treated as blocked until the reset.
    """

    SLOWDOWN_FROM = 0.8
    MARGIN_S = 5.0
    MAX_DELAY_S = 7.0

    def __init__(self) -> None:
        self._usage: dict[str, _MethodUsage] = {}
        self._lock = threading.Lock()

    def record(self, method: str, time_block: Mapping[str, Any] | None) -> None:
        """Remember the ``time`` block of a response (absent fields: nothing to learn)."""
        if not isinstance(time_block, Mapping) or "operating" not in time_block:
            return
        try:
            operating = float(time_block["operating"] or 0)
        except (TypeError, ValueError):
            return
        reset_at = parse_reset_at(time_block.get("operating_reset_at"))
        with self._lock:
            self._usage[method.lower()] = _MethodUsage(operating, reset_at)

    def reset_at(self, method: str) -> float | None:
        """The last ``operating_reset_at`` seen for ``method``."""
        usage = self._usage.get(method.lower())
        return usage.reset_at if usage else None

    def advise(self, method: str, now: float, budget: float) -> OperatingAdvice:
        """How to pace the next call of ``method`` at unix time ``now``."""
        usage = self._usage.get(method.lower())
        if usage is None or usage.operating < budget * self.SLOWDOWN_FROM:
            return OperatingAdvice()
        if usage.reset_at is None or usage.reset_at <= now:
            if usage.reset_at is not None and usage.reset_at <= now:
                # The oldest bucket has dropped out; the next answer tells the new figure.
                return OperatingAdvice()
            return OperatingAdvice(delay=self.MAX_DELAY_S)
        if usage.operating >= budget - self.MARGIN_S:
            return OperatingAdvice(blocked=True, reset_at=usage.reset_at)
        return OperatingAdvice(delay=min(self.MAX_DELAY_S, (usage.reset_at - now) * 0.01))


__all__ = [
    "DEFAULT_REGISTRY",
    "Clock",
    "LeakyBucket",
    "LimiterRegistry",
    "OperatingAdvice",
    "OperatingTracker",
    "SystemClock",
    "parse_reset_at",
]
