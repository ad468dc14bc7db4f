"""Event-driven: a run starts within seconds of CRM activities changing, and fetches exactly those.

What it shows
-------------
* An :class:`~airflow.sdk.Asset` watched by an :class:`~airflow.sdk.AssetWatcher` whose trigger,
  ``Bitrix24ActivityChangesTrigger``, runs in the **triggerer**: it polls the portal (one HTTP
  request per idle poll) and emits an asset event per batch of changed activity IDs (at most 2,500).
  The DAG is scheduled on the asset, so each event starts a run (several events may share one run).
* ``changed_ids`` reads the IDs from ``triggering_asset_events`` (``extra["payload"]["ids"]``).
* ``Bitrix24GetActivitiesOperator`` fetches them (IDs from XCom, one request per 2,500), typed.
* ``completed_calls`` uses the typed rows: the completed calls among the changes and how long they
  took (``END_TIME - START_TIME``), per responsible user.

Delivery is at least once (a triggerer restart may repeat the last event): the tasks are idempotent.
``source="poll"`` (any connection) does not see deletions; ``source="offline_events"`` (OAuth
application connections) does, in ``payload["deleted_ids"]``. See docs/events.md.

Connection
----------
``bitrix24_default`` (type ``bitrix24``): an incoming webhook with the ``crm`` scope, or OAuth. With
the bundled emulator: ``python -m airflow_provider_b24.testing`` prints a ready
``AIRFLOW_CONN_BITRIX24_DEFAULT=...`` line.

Try it
------
Run a triggerer (``airflow triggerer``) next to the scheduler and DAG processor, unpause this DAG,
then change an activity in Bitrix24. ``B24_EXAMPLE_CHANGE_POLL_INTERVAL`` (seconds, default 30)
sets the poll interval. ``make demo`` shows it on the emulator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetWatcher, dag, get_current_context, task

from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger

log = logging.getLogger(__name__)

CONN_ID = "bitrix24_default"
CALL = 2  # TYPE_ID of a call
POLL_INTERVAL = float(os.environ.get("B24_EXAMPLE_CHANGE_POLL_INTERVAL", "30"))
SELECT = ["ID", "TYPE_ID", "SUBJECT", "RESPONSIBLE_ID", "START_TIME", "END_TIME", "COMPLETED", "LAST_UPDATED"]

activity_changes = Asset(
    "bitrix24_activities",
    watchers=[
        AssetWatcher(
            name="b24_changes",
            trigger=Bitrix24ActivityChangesTrigger(
                bitrix24_conn_id=CONN_ID,
                poll_interval=POLL_INTERVAL,
                source="poll",
                filter=None,
            ),
        )
    ],
)


def _call_seconds(activity: Mapping[str, Any]) -> int:
    start, end = activity.get("START_TIME"), activity.get("END_TIME")
    if start is None or end is None:
        return 0
    return max(0, int((end - start).total_seconds()))


@dag(
    dag_id="b24_on_activity_change",
    schedule=[activity_changes],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bitrix24", "example"],
    doc_md=__doc__,
)
def b24_on_activity_change() -> None:
    @task
    def changed_ids() -> list[int]:
        """The changed activity IDs of every asset event that triggered this run (ascending, unique)."""
        events = get_current_context()["triggering_asset_events"][activity_changes]
        ids: set[int] = set()
        deleted: set[int] = set()
        for event in events:
            payload = (event.extra or {}).get("payload") or {}
            ids.update(int(i) for i in payload.get("ids", []))
            deleted.update(int(i) for i in payload.get("deleted_ids", []))
        log.info(
            "%d asset event(s): %d changed activities, %d deleted %s",
            len(events),
            len(ids),
            len(deleted),
            sorted(deleted)[:20],
        )
        return sorted(ids - deleted)

    fetch = Bitrix24GetActivitiesOperator(
        task_id="fetch_activities",
        activity_ids=changed_ids(),
        bitrix24_conn_id=CONN_ID,
        select=SELECT,
        on_missing="warn",  # deleted since the change was seen: logged, pushed as XCom "missing_ids"
    )

    @task
    def completed_calls(activities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The completed calls among the changes: how many, and their seconds per responsible user."""
        calls = [a for a in activities if a["TYPE_ID"] == CALL and a["COMPLETED"]]
        per_user: dict[int, int] = {}
        for call in calls:
            per_user[call["RESPONSIBLE_ID"]] = per_user.get(call["RESPONSIBLE_ID"], 0) + _call_seconds(call)
        summary = {
            "changed": len(activities),
            "completed_calls": sorted(c["ID"] for c in calls),
            "call_seconds_by_user": {str(user): per_user[user] for user in sorted(per_user)},
        }
        log.info("changes: %s", summary)
        return summary

    completed_calls(fetch.output)


b24_on_activity_change()
