"""DAG for tests/e2e/test_lineage_dag.py: every way the provider reads Bitrix24, for OpenLineage.

``lineage_reads`` fetches activities by ID (the operator), waits for them (the sensor, poke mode),
reads through ``Bitrix24Hook`` in a plain ``@task`` (hook lineage) and exports a window to the
file named by the environment variable ``B24_LINEAGE_EXPORT`` (the export operator).

The hook task runs first: ``airflow dags test`` runs every task in one process, whose hook-lineage
collector is never emptied between tasks (a real worker runs each task in a process of its own), so
a hook task after the others would also report their hooks' reads.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor


@task
def read_with_the_hook() -> int:
    """A PythonOperator using the hook: two reads of crm.activity (reported once)."""
    hook = Bitrix24Hook()
    rows = list(hook.iter_activities(filter={"TYPE_ID": 2}, select=["ID", "SUBJECT"]))
    hook.get_activity(rows[0]["ID"] if rows else 1)
    return len(rows)


@dag(dag_id="lineage_reads", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def lineage_reads() -> None:
    first = read_with_the_hook()
    first >> Bitrix24GetActivitiesOperator(
        task_id="get_activities", activity_ids=[1, 2, 3], select=["SUBJECT", "TYPE_ID"]
    )
    first >> Bitrix24ActivitySensor(
        task_id="wait_for_activities", activity_ids=[1, 2], until="exists", poke_interval=1, timeout=60
    )
    first >> Bitrix24ExportActivitiesOperator(
        task_id="export_activities",
        updated_from="2024-01-01T00:00:00+00:00",
        updated_to="2025-01-01T00:00:00+00:00",
        select=["SUBJECT", "LAST_UPDATED", "COMMUNICATIONS"],
        path=os.environ.get("B24_LINEAGE_EXPORT", "/tmp/b24-lineage-unset.jsonl"),
    )


lineage_reads()
