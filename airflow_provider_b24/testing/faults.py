"""Scripted, deterministic fault injection: "the next K requests to method M fail like X".

``emu.faults.add(kind, method=None, times=1, probability=1.0, **opts)`` queues a fault. A fault
matches a request when ``method`` is None (any REST request; the token endpoint only matches
``method="oauth.token"``) or equals the called method case-insensitively (``"batch"`` matches batch
requests). It fires ``times`` times (``None`` = forever); with ``probability < 1`` it fires on a
seeded pseudo-random subset (same seed, same requests). Faults fire in the order they were added.

Kinds and options:

==========================  =========================================================================
``http_500_json``           500 ``INTERNAL_SERVER_ERROR`` JSON body
``http_500_html``           500 with an HTML page (``http_502_html``, ``http_504_html`` likewise;
                            ``http_403_html`` too)
``malformed_json``          200, ``Content-Type: application/json``, body is not JSON
``truncated_json``          200, the real answer cut in half (Content-Length matches the cut body)
``connection_reset``        headers promise the full body, half is sent, then the socket is reset
``slow``                    ``seconds`` (default 5) of delay, then the real answer
``redirect``                302 to ``location`` (full URL) or ``base_url`` + same path/query; default:
                            the other loopback name (``127.0.0.1`` ↔ ``localhost``)
``query_limit``             503 ``QUERY_LIMIT_EXCEEDED``
``operation_time_limit``    429 ``OPERATION_TIME_LIMIT``, ``time.operating_reset_at`` = now +
                            ``reset_in`` (default 2 s)
``overload``                503 ``OVERLOAD_LIMIT``
``expired_token``           401 ``expired_token``
``invalid_token``           401 ``invalid_token``
``error``                   any JSON error: ``status`` (400), ``error`` (""), ``error_description``
``batch_command_error``     inside a batch, the next ``times`` commands calling ``method`` fail
                            with ``error`` ("") / ``error_description`` ("Not found")
==========================  =========================================================================
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Fault", "FaultKind", "FaultSet"]


class FaultKind(StrEnum):
    """Every supported fault kind."""

    HTTP_500_JSON = "http_500_json"
    HTTP_500_HTML = "http_500_html"
    HTTP_502_HTML = "http_502_html"
    HTTP_503_HTML = "http_503_html"
    HTTP_504_HTML = "http_504_html"
    HTTP_403_HTML = "http_403_html"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    CONNECTION_RESET = "connection_reset"
    SLOW = "slow"
    REDIRECT = "redirect"
    QUERY_LIMIT = "query_limit"
    OPERATION_TIME_LIMIT = "operation_time_limit"
    OVERLOAD = "overload"
    EXPIRED_TOKEN = "expired_token"
    INVALID_TOKEN = "invalid_token"
    ERROR = "error"
    BATCH_COMMAND_ERROR = "batch_command_error"


@dataclass
class Fault:
    """One queued fault."""

    kind: FaultKind
    method: str | None
    times: int | None
    probability: float
    opts: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, method: str | None) -> bool:
        """True when this fault applies to a call of ``method`` (lower-case, or None)."""
        if self.method is None:
            return method != "oauth.token"
        return method == self.method


class FaultSet:
    """The queue of pending faults (thread-safe)."""

    def __init__(self, seed: int = 1) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._rng = random.Random(f"faults-{seed}")
        self.fired: list[tuple[str, str | None]] = []  # (kind, method) log

    def add(
        self,
        kind: str | FaultKind,
        method: str | None = None,
        times: int | None = 1,
        *,
        probability: float = 1.0,
        **opts: Any,
    ) -> Fault:
        """Queue a fault; see the module docstring for kinds and options."""
        fault = Fault(
            kind=FaultKind(kind),
            method=method.lower() if method else None,
            times=times,
            probability=probability,
            opts=opts,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """Faults that can still fire."""
        with self._lock:
            return list(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def take(self, method: str | None, *, batch_command: bool = False) -> Fault | None:
        """The first matching fault for this request (consuming one use), or None."""
        with self._lock:
            for fault in self._faults:
                is_command_fault = fault.kind is FaultKind.BATCH_COMMAND_ERROR
                if is_command_fault != batch_command or not fault.matches(method):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                fault.fired += 1
                if fault.times is not None and fault.fired >= fault.times:
                    self._faults.remove(fault)
                self.fired.append((fault.kind.value, method))
                return fault
        return None
