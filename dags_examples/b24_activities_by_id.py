"""Fetch Bitrix24 activities by ID from XCom, use their typed values downstream, write a CSV report.

What it shows
-------------
* An upstream task produces activity IDs: the ``activity_ids`` param if given, else it looks them up
  with ``Bitrix24Hook.iter_activities`` (the activities of one CRM owner when ``owner_type_id`` and
  ``owner_id`` are set, otherwise the ``limit`` most recent activities of the portal).
* ``Bitrix24GetActivitiesOperator`` takes those IDs as an XComArg (``activity_ids=ids``) and fetches
  them in as few HTTP requests as Bitrix24 allows (2,500 activities per request). Its return value
  (XCom ``return_value``) is a list of **parsed** activities: ``int`` IDs, ``bool`` flags, pendulum
  ``DateTime`` times with the portal's offset, ``Decimal`` sums, ``None`` for "no deadline". IDs that
  were not found (deleted, or invisible to the connection's user) are pushed as XCom ``missing_ids``.
* Downstream tasks compute with those values directly (no string parsing): per responsible user
  the activities, calls, call seconds (``END_TIME - START_TIME``), open and overdue open activities;
  the most overdue open activities; totals of the calls.
* ``write_report`` writes ``report.csv`` under the run's folder,
  ``$AIRFLOW_HOME/reports/b24_activities_by_id/<run_id>/`` (or ``<report_dir>/`` if the param is
  set), and returns its path.

Connection
----------
``bitrix24_default`` (type ``bitrix24``): an incoming webhook with the ``crm`` scope, or OAuth. With
the bundled emulator: ``python -m airflow_provider_b24.testing`` prints a ready
``AIRFLOW_CONN_BITRIX24_DEFAULT=...`` line.

Try it
------
``airflow dags test b24_activities_by_id --conf '{"activity_ids": [1, 2, 3]}'``
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, XComArg, dag, get_current_context, task

from airflow_provider_b24.activities import ActivityType
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator

log = logging.getLogger(__name__)

CONN_ID = "bitrix24_default"
#: Only the fields this DAG uses: smaller responses and a smaller XCom than every field.
SELECT = [
    "ID",
    "TYPE_ID",
    "SUBJECT",
    "RESPONSIBLE_ID",
    "OWNER_TYPE_ID",
    "OWNER_ID",
    "START_TIME",
    "END_TIME",
    "DEADLINE",
    "COMPLETED",
    "DIRECTION",
]
REPORT_COLUMNS = ["responsible_id", "activities", "calls", "call_seconds", "open", "overdue_open"]


def _as_of() -> pendulum.DateTime:
    """The instant "overdue" is measured against: the ``as_of`` param, else when the run was due."""
    context = get_current_context()
    text = context["params"].get("as_of") or ""
    if text:
        parsed = pendulum.parse(text)
        if not isinstance(parsed, pendulum.DateTime):
            raise ValueError(f"as_of must be an ISO 8601 date-time, got {text!r}")
        return parsed
    return pendulum.instance(context["dag_run"].run_after)


def _is_overdue(activity: Mapping[str, Any], as_of: pendulum.DateTime) -> bool:
    deadline = activity.get("DEADLINE")  # None means "no deadline"
    return not activity["COMPLETED"] and deadline is not None and deadline < as_of


def _call_seconds(activity: Mapping[str, Any]) -> int:
    start, end = activity.get("START_TIME"), activity.get("END_TIME")
    if activity["TYPE_ID"] != ActivityType.CALL or start is None or end is None:
        return 0
    return max(0, int((end - start).total_seconds()))


@dag(
    dag_id="b24_activities_by_id",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bitrix24", "example"],
    doc_md=__doc__,
    params={
        "activity_ids": Param(
            [],
            type="array",
            items={"type": "integer", "minimum": 1},
            description="Activity IDs to fetch. Empty: look them up (see owner_type_id, owner_id, limit).",
        ),
        "owner_type_id": Param(
            None, type=["null", "integer"], description="CRM owner type for the lookup (2 = deal)."
        ),
        "owner_id": Param(None, type=["null", "integer"], description="CRM owner ID for the lookup."),
        "limit": Param(500, type="integer", minimum=1, description="At most this many IDs from a lookup."),
        "as_of": Param(
            "",
            type="string",
            description="ISO 8601 instant that 'overdue' is measured against (empty: the run's time).",
        ),
        "report_dir": Param(
            "",
            type="string",
            description="Folder for report.csv (empty: $AIRFLOW_HOME/reports/<dag_id>/<run_id>).",
        ),
    },
)
def b24_activities_by_id() -> None:
    @task
    def find_activity_ids() -> list[int]:
        """The IDs to fetch: from the params, or found on the portal (IDs only, newest first)."""
        params = get_current_context()["params"]
        if params["activity_ids"]:
            return [int(i) for i in params["activity_ids"]]
        query: dict[str, Any] = {}
        if params["owner_type_id"] is not None and params["owner_id"] is not None:
            query = {"OWNER_TYPE_ID": params["owner_type_id"], "OWNER_ID": params["owner_id"]}
        hook = Bitrix24Hook(bitrix24_conn_id=CONN_ID)
        try:
            rows = hook.iter_activities(filter=query, select=["ID"], order={"ID": "DESC"})
            ids = [int(row["ID"]) for row in islice(rows, params["limit"])]  # lazy: stops at the limit
        finally:
            hook.close()
        log.info("found %d activity IDs with filter %s", len(ids), query)
        return ids

    ids = find_activity_ids()

    fetch = Bitrix24GetActivitiesOperator(
        task_id="fetch_activities",
        activity_ids=ids,  # XComArg: the upstream task's list[int], as is
        bitrix24_conn_id=CONN_ID,
        select=SELECT,
        on_missing="warn",  # deleted or invisible IDs: log them, push XCom "missing_ids", go on
    )
    activities = fetch.output  # list of parsed activities
    missing_ids = XComArg(fetch, key="missing_ids")

    @task
    def per_user_stats(activities: Sequence[Mapping[str, Any]]) -> list[dict[str, int]]:
        """Per responsible user: activities, calls, call seconds, open and overdue open activities."""
        as_of = _as_of()
        stats: dict[int, dict[str, int]] = {}
        for activity in activities:
            user = activity["RESPONSIBLE_ID"]  # an int, parsed by the operator
            row = stats.setdefault(user, dict.fromkeys(REPORT_COLUMNS, 0) | {"responsible_id": user})
            row["activities"] += 1
            if activity["TYPE_ID"] == ActivityType.CALL:
                row["calls"] += 1
                row["call_seconds"] += _call_seconds(activity)
            if not activity["COMPLETED"]:
                row["open"] += 1
                row["overdue_open"] += _is_overdue(activity, as_of)
        return [stats[user] for user in sorted(stats)]

    @task
    def overdue_open(activities: Sequence[Mapping[str, Any]], top: int = 10) -> list[dict[str, Any]]:
        """The most overdue open activities, with their (typed) deadlines."""
        as_of = _as_of()
        overdue = sorted(
            (a for a in activities if _is_overdue(a, as_of)), key=lambda a: (a["DEADLINE"], a["ID"])
        )
        log.info("%d open activities are overdue as of %s", len(overdue), as_of.isoformat())
        return [
            {
                "ID": a["ID"],
                "SUBJECT": a["SUBJECT"],
                "RESPONSIBLE_ID": a["RESPONSIBLE_ID"],
                "DEADLINE": a["DEADLINE"],
                "days_overdue": as_of.diff(a["DEADLINE"]).in_days(),
            }
            for a in overdue[:top]
        ]

    @task
    def call_totals(activities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """How many calls, and how long they took in total (END_TIME - START_TIME)."""
        calls = [a for a in activities if a["TYPE_ID"] == ActivityType.CALL]
        seconds = sum(_call_seconds(a) for a in calls)
        average = (Decimal(seconds) / len(calls)).quantize(Decimal("0.1")) if calls else Decimal(0)
        return {"calls": len(calls), "total_seconds": seconds, "average_seconds": average}

    @task
    def write_report(
        per_user: Sequence[Mapping[str, int]],
        totals: Mapping[str, Any],
        overdue: Sequence[Mapping[str, Any]],
        missing: Iterable[int] | None,
    ) -> str:
        """Write report.csv (one row per responsible user, then a total row) and return its path."""
        context = get_current_context()
        folder = context["params"]["report_dir"]
        if not folder:
            home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
            run_id = re.sub(r"[^A-Za-z0-9._-]", "_", context["run_id"])
            folder = home / "reports" / context["dag"].dag_id / run_id
        path = Path(folder) / "report.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        total = {col: sum(row[col] for row in per_user) for col in REPORT_COLUMNS[1:]}
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(per_user)
            writer.writerow({"responsible_id": "TOTAL", **total})
        missing = list(missing or [])
        log.info(
            "report: %s (%d users, %d calls, %d s on calls, %d most overdue listed, %d IDs missing)",
            path,
            len(per_user),
            totals["calls"],
            totals["total_seconds"],
            len(overdue),
            len(missing),
        )
        return str(path)

    write_report(per_user_stats(activities), call_totals(activities), overdue_open(activities), missing_ids)


b24_activities_by_id()
