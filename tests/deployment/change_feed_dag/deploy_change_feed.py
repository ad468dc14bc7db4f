"""Deployment scenario: DAG runs started by Bitrix24ActivityChangesTrigger (docs/events.md).

Not in ``tests/deployment/dags``: ``test_change_feed.py`` copies this file into every component's DAG
folder once it has changed some "history" activities, so the watcher starts after them (and polls
only during that test). It reads only this scenario's activities (``ID >= FIRST_ID``; the test
reserves them with ``min_id=FIRST_ID``), so the other scenarios' changes start no run here.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetWatcher, dag, get_current_context, task

from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.triggers.activity_changes import Bitrix24ActivityChangesTrigger

FIRST_ID = 5801
POLL_INTERVAL = 3.0

changes = Asset(
    "deploy_change_feed_activities",
    watchers=[
        AssetWatcher(
            name="deploy_changes",
            trigger=Bitrix24ActivityChangesTrigger(
                bitrix24_conn_id="bitrix24_default",
                poll_interval=POLL_INTERVAL,
                source="poll",
                filter={">=ID": FIRST_ID},
            ),
        )
    ],
)


@dag(
    dag_id="deploy_change_feed",
    schedule=[changes],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["deployment"],
)
def deploy_change_feed() -> None:
    @task(retries=0)
    def changed_ids() -> list[int]:
        """The IDs of the asset events that started this run."""
        ids: set[int] = set()
        for event in get_current_context()["triggering_asset_events"][changes]:
            ids.update(int(i) for i in (event.extra or {}).get("payload", {}).get("ids", []))
        return sorted(ids)

    Bitrix24GetActivitiesOperator(
        task_id="fetch_activities",
        activity_ids=changed_ids(),
        bitrix24_conn_id="bitrix24_default",
        select=["ID", "COMPLETED", "LAST_UPDATED"],
        retries=0,
    )


deploy_change_feed()
