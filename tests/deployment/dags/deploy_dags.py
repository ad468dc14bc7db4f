"""DAGs of the deployment tests (tests/deployment): each scenario has its own DAGs and activities.

Parsed by the dag-processor from every component's own copy of this folder; runs are started
through the REST API with a ``conf``. ``render_template_as_native_obj`` makes
``{{ params.activity_ids }}`` a real list.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor

START = pendulum.datetime(2024, 1, 1, tz="UTC")
S3_CONN_ID = "seaweedfs_s3"
BUCKET = "bitrix24-exports"


def _where() -> dict[str, str]:
    """Which "machine" ran a task: each worker has its own AIRFLOW_HOME."""
    return {"airflow_home": os.environ.get("AIRFLOW_HOME", "")}


def sensor_dag(dag_id: str, *, first_poll_delay: float | None, retries: int | None = 0) -> DAG:
    """A deferrable sensor on the run's activities, then the fetch operator on the same IDs.

    ``retries=0`` (the default here) measures honestly: a race shows as a failed try, not a hidden
    retry; ``None`` leaves the deferrable sensor's own default (one retry).
    """
    conn_id = "bitrix24_default"
    extra: dict[str, Any] = {"retries": retries} if retries is not None else {"retry_delay": 2}
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,
        params={"activity_ids": [1]},
        tags=["deployment"],
    ) as dag:
        wait = Bitrix24ActivitySensor(
            task_id="wait",
            activity_ids="{{ params.activity_ids }}",
            bitrix24_conn_id=conn_id,
            until="completed",
            deferrable=True,
            poke_interval=2,
            timeout=900,
            first_poll_delay=first_poll_delay,
            **extra,
        )
        fetch = Bitrix24GetActivitiesOperator(
            task_id="fetch",
            activity_ids="{{ params.activity_ids }}",
            bitrix24_conn_id=conn_id,
            select=["ID", "COMPLETED", "SUBJECT"],
            retries=0,
        )
        wait >> fetch
    return dag


# The mitigation (the default first-poll delay) and today's immediate first poll, side by side.
deploy_sensor = sensor_dag("deploy_sensor", first_poll_delay=None)
deploy_sensor_immediate = sensor_dag("deploy_sensor_immediate", first_poll_delay=0)
deploy_sensor_restart = sensor_dag("deploy_sensor_restart", first_poll_delay=None)
# The immediate first poll, but with the deferrable sensor's default retries=1: recoverable.
deploy_sensor_immediate_retry = sensor_dag("deploy_sensor_immediate_retry", first_poll_delay=0, retries=None)
# What ships: the default first-poll delay and the deferrable sensor's default retries=1.
deploy_sensor_shipped = sensor_dag("deploy_sensor_shipped", first_poll_delay=None, retries=None)


with DAG(
    dag_id="deploy_oauth",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    params={"seconds": 30, "activity_ids": [1], "calls_per_task": 20},
    tags=["deployment"],
) as deploy_oauth:

    @task(retries=0)
    def call_portal(seconds: float, calls: int) -> dict[str, Any]:
        """Call the portal through the OAuth connection for ``seconds`` (tokens expire meanwhile)."""
        hook = Bitrix24Hook(bitrix24_conn_id="bitrix24_oauth")
        done, refreshes = 0, 0
        try:
            while done < calls:
                hook.call("crm.activity.get", {"id": 1 + done % 50})
                done += 1
                time.sleep(seconds / calls)
            auth = hook.get_conn().auth
            refreshes = int(getattr(auth, "refreshes", 0))
        finally:
            hook.close()
        return {"calls": done, "refreshes": refreshes, **_where()}

    seconds, calls = "{{ params.seconds }}", "{{ params.calls_per_task }}"
    for worker in ("worker1", "worker2"):
        for index in range(2):
            call_portal.override(task_id=f"call_{worker}_{index}", queue=worker)(seconds, calls)
    Bitrix24ActivitySensor(
        task_id="wait_in_triggerer",
        activity_ids="{{ params.activity_ids }}",
        bitrix24_conn_id="bitrix24_oauth",
        until="completed",
        deferrable=True,
        poke_interval=1,
        first_poll_delay=1,
        timeout=600,
        retries=0,
    )


with DAG(
    dag_id="deploy_export_s3",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "key": "activities/2024/all.jsonl",
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2025-01-01T00:00:00+00:00",
    },
    tags=["deployment"],
) as deploy_export_s3:
    export = Bitrix24ExportActivitiesOperator(
        task_id="export",
        queue="worker1",
        bitrix24_conn_id="bitrix24_default",
        updated_from="{{ params.updated_from }}",
        updated_to="{{ params.updated_to }}",
        path=f"s3://{BUCKET}/" + "{{ params.key }}",
        object_storage_conn_id=S3_CONN_ID,
        format="jsonl",
        retries=0,
    )

    @task(queue="worker2", retries=0)
    def read_back(summary: dict[str, Any]) -> dict[str, Any]:
        """Read the exported object on the other worker: rows and IDs."""
        import json

        path = ObjectStoragePath(summary["path"], conn_id=S3_CONN_ID)
        ids = []
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    ids.append(int(json.loads(line)["ID"]))
        return {"rows": len(ids), "unique": len(set(ids)), "path": str(summary["path"]),
                "export_home": "", **_where()}  # fmt: skip

    @task(queue="worker1", retries=0)
    def where_export_ran() -> dict[str, str]:
        return _where()

    read_back(export.output)
    where_export_ran()
