"""Deferrable trigger for Bitrix24 CRM activities: wait in the triggerer until activities exist or are done.

:class:`Bitrix24ActivityTrigger` is what
:class:`~airflow_provider_b24.sensors.activity.Bitrix24ActivitySensor` defers to. It polls with the
same one-request batched ``crm.activity.list`` fetch as the sensor's ``poke``
(:func:`airflow_provider_b24.activities.fetch_activities`), running the synchronous hook and client
in a worker thread so the triggerer's event loop is never blocked, and fires exactly one
:class:`~airflow.triggers.base.TriggerEvent`:

* ``{"status": "success", "activities": [<raw rows, JSON-plain, in input order>]}`` once every ID
  satisfies ``until``;
* ``{"status": "error", "message": "...", "outcome": "fail" | "unexpected"}`` for errors that waiting
  will not fix (bad credentials, missing scope or access, a malformed request, an unknown
  connection...); the policy is :mod:`airflow_provider_b24.failures`, shared with the operators.

Transient errors that outlived the client's own retries, the portal's request-rate limit and
``OPERATION_TIME_LIMIT`` (HTTP 429, waited out until its reset time) never end the trigger: it logs
and keeps polling. The deferral ``timeout`` (the sensor's ``timeout``) bounds the wait.

The wait logic (:mod:`airflow_provider_b24.activities.waiting`) is shared with the sensor so that
``poke`` and the trigger decide "done" the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from airflow_provider_b24.activities.waiting import ActivityWaitStatus
    from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

# The triggerer imports this module on its event loop, so it stays light: the client, ``requests``
# and the hook are imported inside the poll, which runs in a worker thread.


#: Floor of :func:`default_first_poll_delay`, in seconds (see ``docs/sensor.md``, "The deferral race").
FIRST_POLL_DELAY_FLOOR_S: float = 10.0


def default_first_poll_delay(poll_interval: float) -> float:
    """Seconds a trigger waits before its first poll when the sensor does not say: ``max(poll_interval, 10)``.

    The sensor has just poked when it defers, so polling again at once wastes a request, and an
    event fired within seconds of the deferral meets Airflow's scheduler race (apache/airflow#66374,
    #67287, #71580, #72716): the stale "success" of the deferring try must be handled by the scheduler
    before the task is queued again, which takes up to one scheduler loop (seconds on a busy
    scheduler). See ``docs/sensor.md``.
    """
    return max(float(poll_interval), FIRST_POLL_DELAY_FLOOR_S)


#: ``until="completed"`` (the constant lives with the wait logic in
#: :mod:`airflow_provider_b24.activities.waiting`; repeated here so the event loop imports nothing heavy).
UNTIL_COMPLETED: Final = "completed"


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
    :param first_poll_delay: seconds before the first poll (``None``: :func:`default_first_poll_delay`;
        ``0``: at once, as provider 0.1.0 did).
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
        from airflow_provider_b24.activities.waiting import evaluate_activities, select_for
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
            ErrorOutcome,
            error_outcome,
            seconds_until_retry,
        )

        if error_outcome(error) is ErrorOutcome.RETRY:
            return seconds_until_retry(error, self.poll_interval)
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
        first_delay = default_first_poll_delay(self.poll_interval) if delay is None else float(delay)
        try:
            if first_delay > 0:
                self.log.info("First poll in %.1f s (the sensor has just poked)", first_delay)
                await asyncio.sleep(first_delay)
            while True:
                polls += 1
                outcome = await sync_to_async(self._poll, thread_sensitive=False)()
                if outcome.error is not None:
                    error, wait = outcome.error, outcome.wait
                    if wait is None:
                        from airflow_provider_b24.failures import trigger_error_event

                        self.log.error("Bitrix24 activity trigger failed: %s", error)
                        self._close()
                        yield TriggerEvent(trigger_error_event(error))
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
