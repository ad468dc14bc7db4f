"""The portal's two limits: the per-portal leaky bucket and per-method operating-time accounting.

* :class:`LeakyBucket`: each request adds 1; the level drains at ``rate`` per second; a request that
  would push the level above ``burst`` is refused (503 ``QUERY_LIMIT_EXCEEDED``) and not counted.
* :class:`OperatingMeter`: seconds charged per (credential, method) in one-minute buckets over a
  sliding 10 minutes. A method whose sum exceeds the budget is refused (429
  ``OPERATION_TIME_LIMIT``) *before* it runs, so the call that crosses the limit still completes.
  ``operating_reset_at`` = 600 s after the first charge in the oldest live bucket.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["WINDOW_SECONDS", "LeakyBucket", "OperatingMeter"]

WINDOW_SECONDS = 600.0


class LeakyBucket:
    """Thread-safe leaky bucket; ``rate=None`` disables it."""

    def __init__(self, rate: float | None, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.level = 0.0
        self.updated = clock()
        self._lock = threading.Lock()

    def _drain(self, now: float) -> None:
        if self.rate is not None:
            self.level = max(0.0, self.level - (now - self.updated) * self.rate)
        self.updated = now

    def try_acquire(self) -> bool:
        """Count one request; False when the bucket is full (the request must be refused)."""
        if self.rate is None:
            return True
        with self._lock:
            self._drain(self.clock())
            if self.level + 1 > self.burst:
                return False
            self.level += 1
            return True

    def reset(self) -> None:
        """Empty the bucket."""
        with self._lock:
            self.level = 0.0
            self.updated = self.clock()


class OperatingMeter:
    """Per (credential, method) execution-time accounting; ``budget=None`` disables blocking."""

    def __init__(self, budget: float | None, clock: Callable[[], float]) -> None:
        self.budget = budget
        self.clock = clock
        # key -> deque of [minute_index, first_charge_time, seconds]
        self._buckets: dict[tuple[str, str], deque[list[float]]] = {}
        self._lock = threading.Lock()

    def _live(self, key: tuple[str, str], now: float) -> deque[list[float]]:
        buckets = self._buckets.setdefault(key, deque())
        while buckets and buckets[0][1] + WINDOW_SECONDS <= now:
            buckets.popleft()
        return buckets

    def state(self, credential: str, method: str) -> tuple[float, int]:
        """(operating seconds in the window, operating_reset_at unix time)."""
        now = self.clock()
        with self._lock:
            buckets = self._live((credential, method), now)
            total = sum(b[2] for b in buckets)
            reset_at = buckets[0][1] + WINDOW_SECONDS if buckets else now
        return total, int(reset_at)

    def blocked(self, credential: str, method: str) -> int | None:
        """``operating_reset_at`` if the method is over budget, else None."""
        if self.budget is None:
            return None
        total, reset_at = self.state(credential, method)
        return reset_at if total > self.budget else None

    def charge(self, credential: str, method: str, seconds: float) -> None:
        """Add execution time to the current minute's bucket."""
        now = self.clock()
        minute = float(int(now // 60))
        with self._lock:
            buckets = self._live((credential, method), now)
            if buckets and buckets[-1][0] == minute:
                buckets[-1][2] += seconds
            else:
                buckets.append([minute, now, seconds])

    def reset(self) -> None:
        """Forget all charges."""
        with self._lock:
            self._buckets.clear()
