"""DAGs for tests/e2e/test_sensor_dag.py: Bitrix24ActivitySensor in reschedule mode, deferrable, and
four mapped deferrable sensors (``sensor_fleet``, whose triggers share their polls).

The activity IDs come from the DAG run's conf (``{"ids": [...], "never": [...]}``): as an upstream
task's XComArg for one sensor and as a Jinja-rendered string for another.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor


@task
def ids_from_conf(**context: Any) -> list[int]:
    return list(context["dag_run"].conf["ids"])


@task
def summarize(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What downstream tasks see: parsed, typed activities in input order."""
    return [
        {
            "id": a["ID"],
            "completed": a["COMPLETED"],
            "id_type": type(a["ID"]).__name__,
            "start_time_type": type(a["START_TIME"]).__name__,
        }
        for a in activities
    ]


@dag(dag_id="sensor_reschedule", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def sensor_reschedule() -> None:
    wait = Bitrix24ActivitySensor(
        task_id="wait_for_calls",
        activity_ids=ids_from_conf(),
        until="completed",
        mode="reschedule",
        poke_interval=1,
        timeout=240,
    )
    Bitrix24ActivitySensor(
        task_id="wait_forever",
        activity_ids="{{ dag_run.conf['never'] }}",
        until="exists",
        mode="reschedule",
        poke_interval=1,
        timeout=3,
        soft_fail=True,
    )
    summarize(wait.output)


@dag(dag_id="sensor_deferrable", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def sensor_deferrable() -> None:
    wait = Bitrix24ActivitySensor(
        task_id="wait_for_calls",
        activity_ids="{{ dag_run.conf['ids'] }}",
        until="completed",
        deferrable=True,
        poke_interval=0.5,
        timeout=240,
    )
    summarize(wait.output)


@task
def collect(results: list[list[dict[str, Any]]]) -> list[int]:
    """Each mapped sensor pushed its own activity (the shared poll split the rows per trigger)."""
    ids = [[a["ID"] for a in rows] for rows in results]
    if ids != [[12], [4], [12], [4]] or not all(rows[0]["COMPLETED"] is True for rows in results):
        raise ValueError(f"unexpected sensor results: {results!r}")
    return [i for [i] in ids]


@dag(dag_id="sensor_fleet", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def sensor_fleet() -> None:
    """Four mapped deferrable sensors (one triggerer shares their polls).

    ``poke_interval=5``: each trigger's first poll (``first_poll_delay``: ``max(5, 10)``) comes 10 s
    after it starts, clear of Airflow's race with events fired within seconds of a deferral
    (docs/sensor.md).
    """
    waits = Bitrix24ActivitySensor.partial(
        task_id="wait", until="completed", deferrable=True, poke_interval=5, timeout=240
    ).expand(activity_ids=[[12], [4], [12], [4]])
    collect(waits.output)


sensor_reschedule()
sensor_deferrable()
sensor_fleet()
