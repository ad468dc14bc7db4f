"""Wait (deferred, without holding a worker slot) until a Bitrix24 call is completed, then use it.

What it shows
-------------
* ``Bitrix24ActivitySensor`` with ``deferrable=True`` and ``until="completed"``: it pokes once, and if
  the call is not completed yet it hands the waiting over to the triggerer
  (``Bitrix24ActivityTrigger``), which polls the portal every ``poke_interval`` seconds with one
  request and wakes the task up when ``COMPLETED`` is ``Y``.
* The activity ID comes from the ``activity_id`` param through Jinja (``"{{ params.activity_id }}"``
  renders to a numeric string; the sensor accepts it like an int).
* The sensor's return value (XCom ``return_value``) is the list of parsed activities, in the same
  shape as ``Bitrix24GetActivitiesOperator``'s; ``follow_up`` reads typed fields from it (``bool``
  ``COMPLETED``, pendulum ``START_TIME``/``END_TIME`` → the call's duration, ``int`` IDs).

Connection
----------
``bitrix24_default`` (type ``bitrix24``): an incoming webhook with the ``crm`` scope, or OAuth.
The triggerer needs this provider installed and the connection visible too.

Settings
--------
``B24_EXAMPLE_POKE_INTERVAL`` (environment, seconds, default 60) sets how often the portal is asked;
the demo and the tests use 1 s against the emulator. The wait gives up after ``B24_EXAMPLE_WAIT_TIMEOUT``
seconds (default one day).

Try it
------
``airflow dags test b24_wait_for_completion --conf '{"activity_id": 42}'``, then complete the call
in Bitrix24 (or ``crm.activity.update`` with ``{"COMPLETED": "Y"}``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_b24.activities import ActivityType
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor

log = logging.getLogger(__name__)

CONN_ID = "bitrix24_default"
POKE_INTERVAL = float(os.environ.get("B24_EXAMPLE_POKE_INTERVAL", "60"))
WAIT_TIMEOUT = float(os.environ.get("B24_EXAMPLE_WAIT_TIMEOUT", str(24 * 3600)))


@dag(
    dag_id="b24_wait_for_completion",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bitrix24", "example"],
    doc_md=__doc__,
    params={
        "activity_id": Param(type="integer", minimum=1, description="ID of the call activity to wait for."),
    },
)
def b24_wait_for_completion() -> None:
    wait = Bitrix24ActivitySensor(
        task_id="wait_for_call",
        activity_ids="{{ params.activity_id }}",
        bitrix24_conn_id=CONN_ID,
        until="completed",
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=WAIT_TIMEOUT,
    )

    @task
    def follow_up(activities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Use the completed call: who handled it, how long it took, what to do next."""
        call = activities[0]
        start, end = call["START_TIME"], call["END_TIME"]
        seconds = int((end - start).total_seconds()) if start is not None and end is not None else None
        is_call = call["TYPE_ID"] == ActivityType.CALL
        log.info(
            "activity %d (%s) completed=%s by user %d, %s s: %s",
            call["ID"],
            "call" if is_call else f"TYPE_ID {call['TYPE_ID']}",
            call["COMPLETED"],
            call["RESPONSIBLE_ID"],
            seconds,
            call["SUBJECT"],
        )
        return {
            "ID": call["ID"],
            "is_call": is_call,
            "COMPLETED": call["COMPLETED"],
            "RESPONSIBLE_ID": call["RESPONSIBLE_ID"],
            "SUBJECT": call["SUBJECT"],
            "END_TIME": end,
            "duration_seconds": seconds,
        }

    follow_up(wait.output)


b24_wait_for_completion()
