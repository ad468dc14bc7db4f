"""Deferrable trigger for Bitrix24 CRM activities: wait in the triggerer until activities exist or are done.

:class:`Bitrix24ActivityTrigger` is what
:class:`~airflow_provider_b24.sensors.activity.Bitrix24ActivitySensor` defers to. The triggers of one
triggerer that use the same connection **share their polls**
(:mod:`airflow_provider_b24.triggers.shared_poller`): one batched ``crm.activity.list`` fetch
(:func:`airflow_provider_b24.activities.fetch_activities`, 2,500 IDs per HTTP request) asks for the
union of their IDs and fields, and each trigger gets its own rows, as its own fetch would have
returned them. The synchronous hook and client run in a worker thread so the triggerer's event loop
is never blocked. Each trigger fires exactly one :class:`~airflow.triggers.base.TriggerEvent`:

* ``{"status": "success", "activities": [<raw rows, JSON-plain, in input order>]}`` once every ID
  satisfies ``until``;
* ``{"status": "error", "message": "...", "outcome": "fail" | "unexpected"}`` for errors that waiting
  will not fix (bad credentials, missing scope or access, a malformed request, an unknown
  connection...); the policy is :mod:`airflow_provider_b24.failures`, shared with the operators.

Transient errors that outlived the client's own retries, the portal's request-rate limit and
``OPERATION_TIME_LIMIT`` (HTTP 429, waited out until its reset time) never end the trigger: it logs
and keeps polling. The deferral ``timeout`` (the sensor's ``timeout``) bounds the wait. A final
error that is the connection's (bad credentials, an unknown connection...) ends every trigger of
that connection with an error event; one the portal raises for one trigger's request ends only it.

The wait logic (:mod:`airflow_provider_b24.activities.waiting`) is shared with the sensor so that
``poke`` and the trigger decide "done" the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_b24.triggers.shared_poller import PollReport, join_shared_poll

if TYPE_CHECKING:
    from airflow_provider_b24.activities.shared_poll import MemberAnswer

# The triggerer imports this module on its event loop, so it stays light: the client, ``requests``
# and the hook are imported by the shared poller in a worker thread.


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


class Bitrix24ActivityTrigger(BaseTrigger):
    """Poll Bitrix24 until every activity exists (``until="exists"``) or is completed (``"completed"``).

    Every keyword argument is JSON-plain (the triggerer stores them in the metadata DB): the
    connection **ID**, never its secrets; the hook and client are rebuilt inside the triggerer.

    :param activity_ids: the activity IDs, already coerced (``list[int]``, unique, in input order).
    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``.
    :param until: ``"completed"`` or ``"exists"``.
    :param poll_interval: seconds between polls (the sensor's ``poke_interval``): how stale the
        trigger's answer may get. A shared poll runs at the smallest interval among its triggers.
    :param select: fields to fetch (``None``: every field ``crm.activity.get`` returns).
    :param first_poll_delay: seconds before the first poll (``None``: :func:`default_first_poll_delay`;
        ``0``: at once, as provider 0.1.0 did). The first answer is never earlier; it comes with the
        first shared poll after that (at once when no other trigger is polling).
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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait in the shared poll until done (one ``success`` event) or a final error (one ``error`` event).

        The first answer comes no earlier than ``first_poll_delay`` after this starts. Leaving the
        shared poll is in ``finally``, so a cancelled trigger (task cleared, triggerer shutting
        down) leaves it too; the last one out closes the connection's hook.
        """
        delay = self.first_poll_delay
        first_delay = default_first_poll_delay(self.poll_interval) if delay is None else float(delay)
        poller, member = await join_shared_poll(
            bitrix24_conn_id=self.bitrix24_conn_id,
            activity_ids=self.activity_ids,
            select=self.select,
            until=self.until,
            poll_interval=float(self.poll_interval),
            first_poll_delay=first_delay,
        )
        polls = 0
        try:
            while True:
                report = await member.reports.get()
                polls += 1
                if report.kind == "error":
                    from airflow_provider_b24.failures import trigger_error_event

                    assert report.error is not None
                    self.log.error("Bitrix24 activity trigger failed: %s", report.error)
                    yield TriggerEvent(trigger_error_event(report.error))
                    return
                if report.kind == "retry":
                    self.log.warning(
                        "Bitrix24 poll %d failed (%s); polling again in %.1f s",
                        polls,
                        report.error,
                        report.wait,
                    )
                    continue
                answer = report.answer
                assert answer is not None
                if answer.status.done:
                    self.log.info(
                        "All %d activities %s after %d poll(s)%s",
                        len(answer.rows),
                        "completed" if self.until == UNTIL_COMPLETED else "exist",
                        polls,
                        _shared(report),
                    )
                    yield TriggerEvent({"status": "success", "activities": answer.rows})
                    return
                self.log.info(
                    "%s; polling again in %.1f s%s",
                    _describe(answer),
                    float(self.poll_interval),
                    _shared(report),
                )
        finally:
            # Also on cancellation (task cleared, triggerer shutting down).
            poller.leave(member)


def _describe(answer: MemberAnswer) -> str:
    total = len(answer.rows) + len(answer.missing_ids)
    return answer.status.describe(total)


def _shared(report: PollReport) -> str:
    """`` (poll shared by N triggers, R request(s))`` when other triggers shared the poll."""
    if report.members <= 1:
        return ""
    return f" (poll shared by {report.members} triggers, {report.requests} request(s))"
