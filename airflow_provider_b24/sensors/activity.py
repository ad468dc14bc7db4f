"""Sensors for Bitrix24 CRM activities.

:class:`Bitrix24ActivitySensor` waits until a set of activities exists, or is completed, and pushes
the parsed activities downstream (the same shape and order as
:class:`~airflow_provider_b24.operators.activity.Bitrix24GetActivitiesOperator`'s output). Each poke is
one HTTP request for up to 2,500 IDs (the batched ``crm.activity.list`` fetch of
:func:`airflow_provider_b24.activities.fetch_activities`). It runs in ``poke`` or ``reschedule`` mode,
or defers to :class:`~airflow_provider_b24.triggers.activity.Bitrix24ActivityTrigger`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_b24._compat import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
    conf,
)
from airflow_provider_b24.activities import (
    coerce_activity_ids,
    coerce_select,
    fetch_activities,
    parse_activity,
)
from airflow_provider_b24.activities.waiting import (
    UNTIL_COMPLETED,
    evaluate_activities,
    select_for,
    validate_until,
)
from airflow_provider_b24.exceptions import (
    Bitrix24ArgumentError,
    Bitrix24OperationTimeLimit,
    ErrorOutcome,
    error_outcome,
)
from airflow_provider_b24.failures import fail_task, permanent_errors_fail_the_task, raise_for_error_event
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.lineage import operator_lineage, read_by
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_b24.datasets import Read


def _now() -> float:
    """Wall-clock unix time (a seam for tests: the 429 reset time is a unix timestamp)."""
    return time.time()


class Bitrix24ActivitySensor(BaseSensorOperator):
    """Wait until Bitrix24 activities exist or are completed, then push them (parsed) to XCom.

    Each poke fetches all IDs with ``crm.activity.list`` (``@ID`` filter, 50 commands per batch): one
    HTTP request per 2,500 IDs, so ``ceil(N / 2500)`` requests for N IDs. The sensor is done when
    every ID satisfies ``until``; its XCom ``return_value`` is then the list of parsed activities in
    input order (like ``Bitrix24GetActivitiesOperator``). IDs the portal does not return yet (not
    created, or not visible to the connection's user) keep it waiting; each poke logs which.

    Errors while poking:

    * invalid IDs or ``select``: ``AirflowFailException`` before any request;
    * auth, scope, access, malformed-request and TLS-trust errors: ``AirflowFailException`` (no
      Airflow retries); the policy is :mod:`airflow_provider_b24.failures`, shared with the operators;
    * HTTP 429 ``OPERATION_TIME_LIMIT``: not a failure; no request is sent again before the portal's
      reset time (poke mode skips pokes until then, reschedule mode reschedules to it);
    * other transient errors that outlived the client's retries (rate limit, 5xx, network): logged
      as a WARNING and treated as "not done yet"; the sensor ``timeout`` bounds the wait.

    :param activity_ids: IDs in any form the operator accepts (XComArg, list, int, numeric or
        Jinja-rendered string, rows with ``ID``). Templated.
    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``. Templated.
    :param until: ``"completed"`` (every activity has ``COMPLETED == "Y"``) or ``"exists"``.
    :param select: fields to fetch (default every field ``crm.activity.get`` returns); with
        ``until="completed"`` an explicit field list always gets ``COMPLETED`` too. Templated.
    :param deferrable: defer to :class:`Bitrix24ActivityTrigger` between polls (needs a triggerer
        with this provider installed). Default: ``[operators] default_deferrable``. The trigger
        polls every ``poke_interval`` seconds; ``timeout`` bounds the deferral. A deferrable sensor
        gets ``retries=1`` unless ``retries`` is given (argument or ``default_args``): a retry recovers
        from Airflow's deferral race (see ``docs/sensor.md``).
    :param first_poll_delay: deferrable mode: seconds the trigger waits before its first poll
        (``None``: ``max(poke_interval, 10)``, see
        :func:`~airflow_provider_b24.triggers.activity.default_first_poll_delay`; ``0``: at once).
    """

    template_fields: Sequence[str] = ("activity_ids", "bitrix24_conn_id", "select")
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        activity_ids: Any,
        bitrix24_conn_id: str = "bitrix24_default",
        until: str = UNTIL_COMPLETED,
        select: Any = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        first_poll_delay: float | None = None,
        **kwargs: Any,
    ) -> None:
        if deferrable and "retries" not in kwargs and "retries" not in (kwargs.get("default_args") or {}):
            # One retry recovers a try failed by Airflow's deferral race (docs/sensor.md).
            kwargs["retries"] = max(1, conf.getint("core", "default_task_retries", fallback=0))
        super().__init__(**kwargs)
        self.activity_ids = activity_ids
        self.bitrix24_conn_id = bitrix24_conn_id
        self.until = validate_until(until)
        self.select = select
        self.deferrable = deferrable
        self.first_poll_delay = first_poll_delay
        #: unix time before which no request is sent (set by a 429 OPERATION_TIME_LIMIT).
        self._not_before: float | None = None
        #: What the successful poke read, for the lineage (portal, select, rows; never rows' data).
        self._lineage_read: Read | None = None

    @cached_property
    def hook(self) -> Bitrix24Hook:
        """The Bitrix24 hook (built on first use: no I/O at DAG parse time)."""
        return Bitrix24Hook(bitrix24_conn_id=self.bitrix24_conn_id)

    # -- argument checks --------------------------------------------------------------------------

    def _ids(self) -> list[int]:
        """The rendered ``activity_ids`` as a clean ``list[int]`` (``AirflowFailException`` if not IDs)."""
        try:
            return coerce_activity_ids(self.activity_ids)
        except Bitrix24ArgumentError as error:
            raise fail_task(f"{self.task_id}: checking activity_ids", error) from error

    def _select(self) -> Any:
        """The ``select`` to fetch with (``COMPLETED`` added when needed); ``AirflowFailException`` if bad."""
        try:
            return select_for(self.select, self.until)
        except Bitrix24ArgumentError as error:
            raise fail_task(f"{self.task_id}: checking select", error) from error

    # -- poking -----------------------------------------------------------------------------------

    def poke(self, context: Context) -> PokeReturnValue:
        """One check: one HTTP request per 2,500 IDs; done when every ID satisfies ``until``."""
        ids = self._ids()
        select = self._select()
        if not ids:
            self.log.info("No activity IDs given: nothing to wait for")
            return PokeReturnValue(is_done=True, xcom_value=[])

        now = _now()
        if self._not_before is not None and now < self._not_before:
            self.log.info(
                "Bitrix24 operating limit: not polling before %s (%.0f s from now)",
                _iso(self._not_before),
                self._not_before - now,
            )
            return PokeReturnValue(is_done=False)

        try:
            result = fetch_activities(self.hook, ids, select=select)
        except Bitrix24OperationTimeLimit as error:
            return self._operation_time_limit(error)
        except Exception as error:
            outcome = error_outcome(error)
            if outcome is ErrorOutcome.RETRY:
                self.log.warning("Bitrix24 poll failed, will poke again: %s", error)
                return PokeReturnValue(is_done=False)
            if outcome is ErrorOutcome.FAIL:
                raise fail_task(f"{self.task_id}: polling Bitrix24", error) from error
            raise

        status = evaluate_activities(result.activities, result.missing_ids, self.until)
        if not status.done:
            self.log.info("%s (%d request(s))", status.describe(len(ids)), result.requests)
            return PokeReturnValue(is_done=False)
        self.log.info(
            "All %d activities %s (%d request(s))",
            len(ids),
            "completed" if self.until == UNTIL_COMPLETED else "exist",
            result.requests,
        )
        with permanent_errors_fail_the_task(f"{self.task_id}: parsing activities"):
            activities = [parse_activity(row) for row in result.activities]
        self._lineage_read = read_by(self.hook, select, rows=len(activities))
        return PokeReturnValue(is_done=True, xcom_value=activities)

    def _operation_time_limit(self, error: Any) -> PokeReturnValue:
        """HTTP 429 ``OPERATION_TIME_LIMIT``: wait past the reset time instead of failing."""
        reset_at = float(error.reset_at) if error.reset_at else _now() + self.poke_interval
        self._not_before = reset_at
        self.log.warning(
            "Bitrix24 OPERATION_TIME_LIMIT (HTTP 429): not polling again before %s", _iso(reset_at)
        )
        # A rescheduled try is a new operator instance: carry the reset time in the reschedule date.
        # (silent_fail/never_fail would turn this exception into an error log or a skip.)
        if (
            self.mode == "reschedule"
            and not (self.silent_fail or self.never_fail)
            and reset_at > _now() + self.poke_interval
        ):
            raise AirflowRescheduleException(datetime.fromtimestamp(reset_at, tz=UTC))
        return PokeReturnValue(is_done=False)

    # -- deferrable mode --------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Poke (poke/reschedule mode), or poke once and defer to :class:`Bitrix24ActivityTrigger`."""
        if not self.deferrable:
            return super().execute(context)
        try:
            first = self.poke(context)
        except AirflowFailException as error:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {error}") from error
            raise
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=Bitrix24ActivityTrigger(
                activity_ids=self._ids(),
                bitrix24_conn_id=self.bitrix24_conn_id,
                until=self.until,
                poll_interval=float(self.poke_interval),
                select=_plain_select(self._select()),
                first_poll_delay=self.first_poll_delay,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Resume after the trigger fired: parse and return the activities, or fail with its message."""

        if not isinstance(event, dict) or "status" not in event:
            raise AirflowFailException(f"{self.task_id}: unexpected trigger event {event!r}")
        if event["status"] == "success":
            rows = event.get("activities") or []
            self.log.info("Trigger reported %d activities ready", len(rows))
            with permanent_errors_fail_the_task(f"{self.task_id}: parsing activities"):
                activities = [parse_activity(row) for row in rows]
            self._lineage_read = read_by(self.hook, self._select(), rows=len(activities))
            return activities
        raise_for_error_event(self.task_id, event)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the input ``bitrix24://<portal host>`` / ``crm.activity``, its fields and rows.

        Built from what the last poke (or the trigger's event) returned; see ``docs/lineage.md``.
        """
        return operator_lineage(self._lineage_read)


def _iso(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, tz=UTC).isoformat(timespec="seconds")


def _plain_select(select: Any) -> list[str] | None:
    """``select`` as JSON-plain trigger kwargs: ``None`` or a list of names (validated already)."""
    if select is None:
        return None

    return list(coerce_select(select))
