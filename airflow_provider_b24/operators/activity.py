"""Operators for Bitrix24 CRM activities (``crm.activity.*``).

:class:`Bitrix24GetActivitiesOperator` fetches activities by ID (typically IDs an upstream task
produced) and pushes them, parsed and typed, to XCom. It is a thin adapter: ID coercion, the
fetch-by-ID strategy and parsing live in :mod:`airflow_provider_b24.activities` (no Airflow there),
HTTP, retries and rate limits in the hook's client, the failure policy in
:mod:`airflow_provider_b24.failures`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from airflow.sdk import BaseOperator

from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.activities import (
    FetchProgress,
    FetchResult,
    FetchStrategy,
    coerce_activity_ids,
    coerce_select,
    fetch_activities,
    format_ids,
    max_requests,
    parse_activities,
)
from airflow_provider_b24.datasets import Read
from airflow_provider_b24.exceptions import Bitrix24ArgumentError
from airflow_provider_b24.failures import fail_task, permanent_errors_fail_the_task
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.lineage import operator_lineage, read_by

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

__all__ = ["XCOM_WARN_THRESHOLD", "Bitrix24GetActivitiesOperator", "OnMissing", "format_ids"]

#: More activities than this in one XCom is a smell (the metadata DB stores XComs): warn and point
#: to the export operator.
XCOM_WARN_THRESHOLD: Final = 20_000


class OnMissing(StrEnum):
    """What :class:`Bitrix24GetActivitiesOperator` does when requested IDs are not returned."""

    #: Fail the task (no retries), listing the first 20 missing IDs and the count.
    FAIL = "fail"
    #: Log a warning listing them, and succeed.
    WARN = "warn"
    #: Succeed silently (the IDs are still pushed as XCom ``missing_ids``).
    IGNORE = "ignore"


def _choice(enum: type[StrEnum], name: str, value: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise Bitrix24ArgumentError(f"{name} must be one of {choices}; got {value!r}") from None


class _ProgressLog:
    """Logs one line per HTTP request of a fetch (the ``progress`` callback of ``fetch_activities``)."""

    def __init__(self, log: logging.Logger | Any) -> None:
        self.log = log

    def __call__(self, progress: FetchProgress) -> None:
        self.log.info(
            "fetched %d/%d activities in %d requests (%.1f s rate-limit wait)",
            progress.done,
            progress.total,
            progress.requests,
            progress.limiter_wait_s,
        )


class Bitrix24GetActivitiesOperator(BaseOperator):
    """Fetch Bitrix24 CRM activities by ID and push them, parsed, to XCom.

    The IDs usually come from an upstream task: pass its output (an ``XComArg``, preferred), a
    list, an int, a numeric string, a Jinja-rendered list such as ``"{{ ti.xcom_pull('ids') }}"``,
    or rows with an ``ID`` key. They are validated and de-duplicated before any request; anything
    that is not an ID fails the task, naming the value and its position.

    With the default ``strategy="list"`` the activities are fetched with ``crm.activity.list``
    (``@ID`` filter, 50 IDs per command, 50 commands per batch): at most ``ceil(N / 2500)`` HTTP
    requests for N IDs. ``strategy="get"`` uses one ``crm.activity.get`` per ID (50 per request)
    and tells, per missing ID, "not found" from "access denied".

    XCom:

    * ``return_value``: the list of found activities, **in input order**, parsed by
      :func:`airflow_provider_b24.activities.parse_activity` (``int``, ``bool``, pendulum
      ``DateTime`` with the portal's offset, ``Decimal``, ``None`` for "no deadline").
    * ``missing_ids``: the requested IDs that were not returned (always pushed, possibly ``[]``).
      ``crm.activity.list`` cannot tell a deleted activity from one the connection's user may not see.

    Auth, scope, access and bad-request errors fail the task without retries; transient errors that
    outlived the hook's own retries are raised for Airflow's ``retries``. Works with
    ``.partial(...).expand(activity_ids=...)`` (each mapped task then gets one ID).

    .. seealso:: ``docs/activities.md`` in the provider's repository.

    :param activity_ids: the IDs to fetch (templated).
    :param bitrix24_conn_id: the Bitrix24 connection (templated).
    :param select: fields to return (templated). Default: every field ``crm.activity.get`` returns
        (``["*"]``). Naming only ``COMMUNICATIONS``, ``FILES`` or ``BINDINGS`` adds them to that;
        naming plain fields returns just those (plus ``ID``).
    :param on_missing: ``"fail"`` (default), ``"warn"`` or ``"ignore"``: what to do when some IDs are
        not returned.
    :param strategy: ``"list"`` (default) or ``"get"``.
    """

    template_fields: Sequence[str] = ("activity_ids", "bitrix24_conn_id", "select")
    template_fields_renderers = {"activity_ids": "py", "select": "py"}
    ui_color = "#2fc6f6"  # Bitrix24 blue

    def __init__(
        self,
        *,
        activity_ids: Any,
        bitrix24_conn_id: str = Bitrix24Hook.default_conn_name,
        select: Sequence[str] | str | None = None,
        on_missing: OnMissing | str = OnMissing.FAIL,
        strategy: FetchStrategy | str = FetchStrategy.LIST,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.activity_ids = activity_ids
        self.bitrix24_conn_id = bitrix24_conn_id
        self.select = select
        self.on_missing = _choice(OnMissing, "on_missing", on_missing).value
        self.strategy = _choice(FetchStrategy, "strategy", strategy).value
        #: What execute read, for the lineage (portal, select, rows; never rows' data).
        self._lineage_read: Read | None = None

    @cached_property
    def hook(self) -> Bitrix24Hook:
        """The Bitrix24 hook (created on first use, never at DAG parse time)."""
        return Bitrix24Hook(bitrix24_conn_id=self.bitrix24_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        try:
            ids = coerce_activity_ids(self.activity_ids)
            select = coerce_select(self.select)
        except Bitrix24ArgumentError as err:
            raise fail_task("Checking activity_ids and select", err) from err

        ti = context["ti"]
        if not ids:
            self.log.info("No activity IDs given: nothing to fetch.")
            ti.xcom_push(key="missing_ids", value=[])
            return []
        if len(ids) > XCOM_WARN_THRESHOLD:
            self.log.warning(
                "Fetching %d activities into XCom (more than %d): XCom lives in the metadata database and "
                "is not meant for bulk data. For exports use Bitrix24ExportActivitiesOperator, which "
                "writes the activities to storage and pushes only their location.",
                len(ids),
                XCOM_WARN_THRESHOLD,
            )
        self.log.info(
            "Fetching %d activities from Bitrix24 (connection %r, strategy %r, select %s): %d request(s).",
            len(ids),
            self.bitrix24_conn_id,
            self.strategy,
            select,
            max_requests(len(ids), self.strategy),
        )
        with permanent_errors_fail_the_task("Fetching activities from Bitrix24"):
            self._lineage_read = read_by(self.hook, select)
            try:
                result = fetch_activities(
                    self.hook, ids, select=select, strategy=self.strategy, progress=_ProgressLog(self.log)
                )
            finally:
                self.hook.close()  # the HTTP session; a later call would open a new one
            activities = parse_activities(result.activities)  # ActivityParseError: FAIL

        ti.xcom_push(key="missing_ids", value=result.missing_ids)
        self._lineage_read = read_by(self.hook, select, rows=len(activities))
        self.log.info(
            "Fetched %d of %d activities in %d requests (%.1f s rate-limit wait); %d missing.",
            len(activities),
            len(ids),
            result.requests,
            result.limiter_wait_s,
            len(result.missing_ids),
        )
        if result.missing_ids:
            self._handle_missing(result, len(ids))
        return activities

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the input ``bitrix24://<portal host>`` / ``crm.activity``, its fields and rows.

        Built from what ``execute`` remembered (no request); see ``docs/lineage.md``.
        """
        return operator_lineage(self._lineage_read)

    def _handle_missing(self, result: FetchResult, requested: int) -> None:
        missing = result.missing_ids
        if self.on_missing == OnMissing.IGNORE:
            return
        if result.strategy is FetchStrategy.GET:
            reasons = [f"{i} ({type(result.errors[i]).__name__})" for i in missing if i in result.errors]
            detail = format_ids(reasons) if len(reasons) == len(missing) else format_ids(missing)
            why = "crm.activity.get answered with an error"
        else:
            detail = format_ids(missing)
            why = "deleted, or not visible to the connection's user: crm.activity.list cannot tell which"
        message = f"{len(missing)} of {requested} activities were not returned ({why}): {detail}"
        if self.on_missing == OnMissing.FAIL:
            raise AirflowFailException(
                f"{message}. Set on_missing='warn' or 'ignore' to continue without them; the IDs are "
                "in XCom 'missing_ids'."
            )
        self.log.warning("%s", message)


def __getattr__(name: str) -> Any:
    """Deprecated path: ``Bitrix24ExportActivitiesOperator`` lives in :mod:`.export`; import it there."""
    if name == "Bitrix24ExportActivitiesOperator":
        warnings.warn(
            "Importing Bitrix24ExportActivitiesOperator from airflow_provider_b24.operators.activity is "
            "deprecated and stops working in 0.3.0; import it from airflow_provider_b24.operators.export.",
            DeprecationWarning,
            stacklevel=2,
        )
        from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator

        return Bitrix24ExportActivitiesOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
