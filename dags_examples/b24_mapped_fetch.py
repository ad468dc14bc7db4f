"""Fetch many Bitrix24 activities with dynamic task mapping, inside the portal's request budget.

What it shows
-------------
* ``chunk_ids`` splits the activity IDs into chunks (``chunk_size``, default 2,500: one HTTP request
  per chunk), and ``Bitrix24GetActivitiesOperator.partial(...).expand(activity_ids=chunks)`` creates
  one mapped task instance per chunk, each receiving its own list of IDs.
* A Bitrix24 portal allows about 2 requests/s (bursts of 50) per portal, shared by every client.
  All mapped instances run in the **pool** ``bitrix24_portal``, so however wide the fan-out, at most
  that pool's slots call the portal at once; ``max_active_tis_per_dagrun`` caps one run further.
  Create the pool once (the scheduler leaves tasks of a missing pool unscheduled)::

      airflow pools set bitrix24_portal 2 "Bitrix24 portal request budget"

  Use one pool per portal, and put every Bitrix24 task of every DAG that uses that portal in it.
* ``combine`` reads all chunks' results (a lazy sequence of lists) and the ``missing_ids`` XCom of
  every mapped instance, and returns a summary.

Connection
----------
``bitrix24_default`` (type ``bitrix24``): an incoming webhook with the ``crm`` scope, or OAuth.

Try it
------
``airflow dags test b24_mapped_fetch --conf '{"first_id": 1, "last_id": 10000}'``
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pendulum
from airflow.sdk import Param, XComArg, dag, get_current_context, task

from airflow_provider_b24.activities import ActivityType
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator

log = logging.getLogger(__name__)

CONN_ID = "bitrix24_default"
POOL = "bitrix24_portal"
MAX_CHUNK = 2500  # what one HTTP request can fetch (50 commands x 50 IDs per batch)


@dag(
    dag_id="b24_mapped_fetch",
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
            description="Activity IDs to fetch (empty: the range first_id..last_id).",
        ),
        "first_id": Param(1, type="integer", minimum=1, description="First ID of the range."),
        "last_id": Param(5000, type="integer", minimum=1, description="Last ID of the range (inclusive)."),
        "chunk_size": Param(
            MAX_CHUNK, type="integer", minimum=1, maximum=MAX_CHUNK, description="IDs per mapped task."
        ),
    },
)
def b24_mapped_fetch() -> None:
    @task
    def chunk_ids() -> list[list[int]]:
        """Split the IDs into chunks, one mapped fetch each."""
        params = get_current_context()["params"]
        ids = [int(i) for i in params["activity_ids"]] or list(
            range(params["first_id"], params["last_id"] + 1)
        )
        size = params["chunk_size"]
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        log.info("%d IDs in %d chunks of up to %d", len(ids), len(chunks), size)
        return chunks

    chunks = chunk_ids()

    fetch = Bitrix24GetActivitiesOperator.partial(
        task_id="fetch_chunk",
        bitrix24_conn_id=CONN_ID,
        select=["ID", "TYPE_ID", "COMPLETED", "RESPONSIBLE_ID"],
        on_missing="warn",
        pool=POOL,  # the portal's request budget, shared with every DAG that calls it
        max_active_tis_per_dagrun=2,  # and at most 2 chunks of this run at a time
        retries=2,
    ).expand(activity_ids=chunks)

    @task
    def combine(
        results: Iterable[Sequence[Mapping[str, Any]]], missing: Iterable[Sequence[int] | None]
    ) -> dict[str, int]:
        """Totals over every chunk (the mapped results arrive as a lazy sequence, in map order)."""
        summary = {"chunks": 0, "fetched": 0, "calls": 0, "completed": 0, "missing": 0}
        for chunk in results:
            summary["chunks"] += 1
            summary["fetched"] += len(chunk)
            summary["calls"] += sum(a["TYPE_ID"] == ActivityType.CALL for a in chunk)
            summary["completed"] += sum(a["COMPLETED"] for a in chunk)  # bools, parsed
        summary["missing"] = sum(len(ids or []) for ids in missing)
        log.info("summary: %s", summary)
        return summary

    combine(fetch.output, XComArg(fetch, key="missing_ids"))


b24_mapped_fetch()
