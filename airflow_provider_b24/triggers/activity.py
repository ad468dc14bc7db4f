"""Deferrable trigger for Bitrix24 CRM activities: wait in the triggerer until activities exist or are done.

:class:`Bitrix24ActivityTrigger` is what
:class:`~airflow_provider_b24.sensors.activity.Bitrix24ActivitySensor` defers to. It polls with the
same one-request batched ``crm.activity.list`` fetch as the sensor's ``poke``
(:func:`airflow_provider_b24.activities.fetch_activities`), running the synchronous hook and client
in a worker thread so the triggerer's event loop is never blocked, and fires exactly one
:class:`~airflow.triggers.base.TriggerEvent`:

* ``{"status": "success", "activities": [<raw rows, JSON-plain, in input order>]}`` once every ID
  satisfies ``until``;
* ``{"status": "error", "message": "..."}`` for errors that waiting will not fix (bad credentials,
  missing scope or access, a malformed request, an unknown connection...).

Transient errors that outlived the client's own retries, the portal's request-rate limit and
``OPERATION_TIME_LIMIT`` (HTTP 429, waited out until its reset time) never end the trigger: it logs
and keeps polling. The deferral ``timeout`` (the sensor's ``timeout``) bounds the wait.

The helpers at the top of this module (``UNTIL_CHOICES``, :func:`evaluate_activities`) are shared
with the sensor so that ``poke`` and the trigger decide "done" the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

# The triggerer imports this module on its event loop, so it stays light: the client, ``requests``
# and the hook are imported inside the poll, which runs in a worker thread.

#: ``until="completed"``: every activity exists and has ``COMPLETED == "Y"``;
#: ``until="exists"``: every activity exists (whatever its state).
UNTIL_COMPLETED: Final = "completed"
UNTIL_EXISTS: Final = "exists"
UNTIL_CHOICES: Final = (UNTIL_COMPLETED, UNTIL_EXISTS)

#: Seconds to wait past a 429's ``operating_reset_at`` (the portal reports whole seconds).
OPERATING_RESET_MARGIN_S: float = 1.0

#: Floor of :func:`default_first_poll_delay`, in seconds (see ``docs/sensor.md``, "The deferral race").
FIRST_POLL_DELAY_FLOOR_S: float = 10.0

#: How many IDs a log line lists before it says "... and N more".
_LOG_IDS: Final = 20


def default_first_poll_delay(poll_interval: float) -> float:
    """Seconds the trigger waits before its first poll when ``first_poll_delay`` is ``None``.

    The sensor has just poked when it defers, so an immediate poll is a wasted request; and a trigger
    that fires within seconds of the deferral races the scheduler's handling of the deferring try
    (apache/airflow#66374, #67287, #71580, #72716). Waiting ``max(poll_interval, 10 s)`` makes that race
    rare (measured in ``tests/deployment``; see ``docs/sensor.md``).
    """
    return max(float(poll_interval), FIRST_POLL_DELAY_FLOOR_S)


def format_ids(ids: Sequence[int], limit: int = _LOG_IDS) -> str:
    """``[1, 2, 3]``, or the first ``limit`` IDs and a count of the rest (for log and error lines)."""
    head = ", ".join(str(i) for i in ids[:limit])
    more = f" ... and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"[{head}{more}]"


def validate_until(until: Any) -> str:
    """Return ``until`` if it is one of :data:`UNTIL_CHOICES`, else a ``ValueError`` naming the choices."""
    if until not in UNTIL_CHOICES:
        choices = ", ".join(repr(c) for c in UNTIL_CHOICES)
        raise ValueError(f"until must be one of {choices}, got {until!r}")
    return str(until)


def select_for(select: Any, until: str) -> Any:
    """The ``select`` to fetch with: the user's, plus ``COMPLETED`` when a field list would drop it.

    ``until="completed"`` must read ``COMPLETED``; a user's explicit field list (without ``*``) might
    not name it, so it is added (``ID`` is always added by the fetch itself).
    """
    from airflow_provider_b24.activities import coerce_select  # heavy: see the module imports

    if until != UNTIL_COMPLETED or select is None:
        return select
    fields = coerce_select(select)
    if "*" not in fields and "COMPLETED" not in fields:
        fields.append("COMPLETED")
    return fields


def _is_completed(row: Mapping[str, Any]) -> bool:
    """``COMPLETED`` as sent (``"Y"``/``"N"``) or already parsed (``True``/``False``)."""
    value = row.get("COMPLETED")
    return value is True or (isinstance(value, str) and value.strip().upper() == "Y")


@dataclass
class ActivityWaitStatus:
    """How far a set of activities is from satisfying ``until``.

    :ivar done: every ID satisfies ``until``.
    :ivar missing_ids: IDs the portal did not return (not created yet, deleted, or not visible).
    :ivar pending_ids: IDs that exist but are not completed (``until="completed"`` only).
    """

    done: bool
    missing_ids: list[int] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)

    def describe(self, total: int) -> str:
        """One log line: what is still awaited."""
        parts = []
        if self.missing_ids:
            parts.append(f"{len(self.missing_ids)} not found yet {format_ids(self.missing_ids)}")
        if self.pending_ids:
            parts.append(f"{len(self.pending_ids)} not completed yet {format_ids(self.pending_ids)}")
        ready = total - len(self.missing_ids) - len(self.pending_ids)
        return f"{ready}/{total} activities ready; waiting for " + "; ".join(parts)


def evaluate_activities(
    rows: Iterable[Mapping[str, Any]], missing_ids: Sequence[int], until: str
) -> ActivityWaitStatus:
    """Decide whether fetched activities satisfy ``until`` (shared by the sensor's poke and the trigger)."""
    pending = []
    if until == UNTIL_COMPLETED:
        for row in rows:
            if not _is_completed(row):
                pending.append(int(row["ID"]))
    missing = list(missing_ids)
    return ActivityWaitStatus(done=not missing and not pending, missing_ids=missing, pending_ids=pending)


@dataclass
class _PollOutcome:
    """What one poll found: the rows and their status, or an error and how long to wait after it."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    status: ActivityWaitStatus | None = None
    error: Exception | None = None
    #: seconds to wait before the next poll after a retryable ``error``; ``None``: give up.
    wait: float | None = None


class Bitrix24ActivityTrigger(BaseTrigger):
    """Poll Bitrix24 until every activity exists (``until="exists"``) or is completed (``"completed"``).

    Every keyword argument is JSON-plain (the triggerer stores them in the metadata DB): the
    connection **ID**, never its secrets; the hook and client are rebuilt inside the triggerer.

    :param activity_ids: the activity IDs, already coerced (``list[int]``, unique, in input order).
    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``.
    :param until: ``"completed"`` or ``"exists"``.
    :param poll_interval: seconds between polls (the sensor's ``poke_interval``).
    :param select: fields to fetch (``None``: every field ``crm.activity.get`` returns).
    :param first_poll_delay: seconds between the trigger's start and its first poll; ``None``:
        :func:`default_first_poll_delay` of ``poll_interval``; ``0`` polls at once.
    """

    def __init__(
        self,
        *,
        activity_ids: list[int],
        bitrix24_conn_id: str = "bitrix24_default",
        until: str = UNTIL_COMPLETED,
        poll_interval: float = 60.0,
        select: list[str] | None = None,
        first_poll_delay: float | None = None,
    ) -> None:
        super().__init__()
        self.activity_ids = activity_ids
        self.bitrix24_conn_id = bitrix24_conn_id
        self.until = until
        self.poll_interval = poll_interval
        self.select = select
        self.first_poll_delay = first_poll_delay
        self._hook: Bitrix24Hook | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-plain kwargs that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "activity_ids": [int(i) for i in self.activity_ids],
                "bitrix24_conn_id": self.bitrix24_conn_id,
                "until": self.until,
                "poll_interval": float(self.poll_interval),
                "select": None if self.select is None else [str(f) for f in self.select],
                "first_poll_delay": None if self.first_poll_delay is None else float(self.first_poll_delay),
            },
        )

    # -- polling (sync, in a worker thread) ---------------------------------------------------------

    def _poll(self) -> _PollOutcome:
        """One poll, in a worker thread: fetch (one HTTP request per 2,500 IDs) and evaluate.

        The hook is built on the first poll, in this thread: resolving the connection may talk to the
        triggerer's supervisor synchronously, which must not happen on the event loop's thread.
        Errors are classified here too, so the event loop never imports the client.
        """
        from airflow_provider_b24.activities import fetch_activities  # heavy: see the module imports
        from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

        try:
            if self._hook is None:
                self._hook = Bitrix24Hook(bitrix24_conn_id=self.bitrix24_conn_id)
            select = select_for(self.select, self.until)
            result = fetch_activities(self._hook, self.activity_ids, select=select)
        except Exception as error:
            return _PollOutcome(error=error, wait=self._wait_after(error))
        status = evaluate_activities(result.activities, result.missing_ids, self.until)
        return _PollOutcome(rows=result.activities, status=status)

    def _wait_after(self, error: Exception) -> float | None:
        """Seconds to wait before polling again after ``error``, or ``None`` if waiting will not help."""
        from airflow_provider_b24.exceptions import (  # heavy: see the module imports
            Bitrix24Error,
            Bitrix24OperationTimeLimit,
        )

        if isinstance(error, Bitrix24OperationTimeLimit):
            reset_in = (error.reset_at - time.time()) if error.reset_at else 0.0
            return max(float(self.poll_interval), reset_in + OPERATING_RESET_MARGIN_S)
        if isinstance(error, Bitrix24Error) and error.retryable:
            return float(self.poll_interval)
        return None

    def _close(self) -> None:
        """Close the hook's HTTP session (quick: no I/O beyond closing sockets)."""
        hook, self._hook = self._hook, None
        if hook is not None:
            try:
                hook.close()
            except Exception:  # pragma: no cover - best effort
                self.log.debug("closing the Bitrix24 hook failed", exc_info=True)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done (one ``success`` event) or an unrecoverable error (one ``error`` event)."""
        ids = [int(i) for i in self.activity_ids]
        polls = 0
        delay = self.first_poll_delay
        delay = default_first_poll_delay(self.poll_interval) if delay is None else float(delay)
        try:
            if delay > 0:
                # The sensor poked just before deferring: no need to ask again at once (see
                # default_first_poll_delay for the scheduler race this also avoids).
                self.log.info("First poll in %.1f s", delay)
                await asyncio.sleep(delay)
            while True:
                polls += 1
                outcome = await sync_to_async(self._poll, thread_sensitive=False)()
                if outcome.error is not None:
                    error, wait = outcome.error, outcome.wait
                    if wait is None:
                        self.log.error("Bitrix24 activity trigger failed: %s", error)
                        self._close()
                        yield TriggerEvent({"status": "error", "message": f"{type(error).__name__}: {error}"})
                        return
                    self.log.warning(
                        "Bitrix24 poll %d failed (%s); polling again in %.1f s", polls, error, wait
                    )
                    await asyncio.sleep(wait)
                    continue
                status = outcome.status
                assert status is not None
                if status.done:
                    self.log.info(
                        "All %d activities %s after %d poll(s)",
                        len(ids),
                        "completed" if self.until == UNTIL_COMPLETED else "exist",
                        polls,
                    )
                    self._close()
                    yield TriggerEvent({"status": "success", "activities": outcome.rows})
                    return
                self.log.info("%s; polling again in %.1f s", status.describe(len(ids)), self.poll_interval)
                await asyncio.sleep(float(self.poll_interval))
        finally:
            # Also on cancellation (task cleared, triggerer shutting down). Closing a session is quick.
            self._close()
