"""Hourly incremental export of Bitrix24 activities to JSON lines files, one file per interval.

What it shows
-------------
* ``Bitrix24ExportActivitiesOperator`` exports the activities whose ``LAST_UPDATED`` falls in the
  run's data interval, ``[data_interval_start, data_interval_end)``: consecutive runs cover every
  change exactly once, even at the hour boundaries and whatever the portal's time zone. (The window
  is written as "the hour ending at ``data_interval_end``", which is the same interval for scheduled
  runs and still one hour for manual runs, whose data interval is empty on Airflow 3.)
* ``schedule=timedelta(hours=1)`` gives every run a one-hour data interval (a cron string such as
  ``"@hourly"`` would give zero-length intervals on Airflow 3, which the operator refuses), and
  ``catchup=True`` backfills every hour since ``start_date``: change ``start_date`` to where your
  history should begin. ``max_active_runs`` keeps a backfill within the portal's rate limit.
* One file per interval, named after the interval, not the run:
  ``<root>/<YYYY-MM-DD>/activities_<YYYYMMDDTHHMMSS>.jsonl``. The file appears only when complete
  (temporary sibling + rename), so a failed try leaves nothing behind and clearing a run rewrites
  the same file.
* Only a small summary goes through XCom (``path``, ``rows``, ``requests``, the bounds sent); the
  ``report`` task reads the file back with ``airflow_provider_b24.export.read_jsonl`` (typed values:
  ``int``, ``bool``, pendulum ``DateTime`` with the portal's offset, ``Decimal``).
* Lineage: the export declares the Airflow asset ``export_asset(PATH)``, the export folder (the file
  name is templated, so the folder is what is known when the DAG is parsed). Each successful run
  records an asset event whose ``extra`` names the file (``path``, ``rows``, ``updated_from``,
  ``updated_to``), and the second DAG here, ``b24_incremental_export_consumer``, is scheduled on
  that asset and reads the file from its triggering event. With the OpenLineage provider, the
  export reports its input ``bitrix24://<portal host>`` / ``crm.activity`` and the file as its
  output (``docs/lineage.md``).

Connection
----------
``bitrix24_default`` (type ``bitrix24``): an incoming webhook with the ``crm`` scope, or OAuth. With
the bundled emulator: ``python -m airflow_provider_b24.testing`` prints a ready
``AIRFLOW_CONN_BITRIX24_DEFAULT=...`` line (its data spans 2024).

Output
------
``<root>`` is the environment variable ``B24_EXPORT_ROOT`` when set (a local folder, ``file://``
URL, or an object storage URL such as ``s3://bucket/bitrix24`` with the matching Airflow provider
installed), else ``$AIRFLOW_HOME/exports/bitrix24/activities``.

Try it
------
``airflow dags test b24_incremental_export 2024-03-01T05:00:00+00:00`` exports 04:00-05:00 UTC.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_b24.export import is_local_path, read_jsonl
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator, export_asset

log = logging.getLogger(__name__)

CONN_ID = "bitrix24_default"
INTERVAL = timedelta(hours=1)
#: The window's start, as Jinja: the hour that ends at ``data_interval_end``. For scheduled runs that
#: is exactly ``data_interval_start``; manual runs (and ``airflow dags test``) get a zero-length data
#: interval on Airflow 3, and this still gives them the hour before their logical date.
WINDOW_START = "(data_interval_end - macros.timedelta(hours=1))"
#: One file per interval, named after the interval (not the run): clearing a run rewrites that file.
FILE_TEMPLATE = "/{{ START | ds }}/activities_{{ START | ts_nodash }}.jsonl".replace("START", WINDOW_START)


def _export_root() -> str:
    """Where the files go (see the module docstring); resolved when the DAG is parsed."""
    root = os.environ.get("B24_EXPORT_ROOT")
    if root:
        return root.rstrip("/")
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return str(home / "exports" / "bitrix24" / "activities")


PATH = _export_root() + FILE_TEMPLATE
#: The asset the export declares (its folder): ``None`` only for a relative ``B24_EXPORT_ROOT``.
EXPORT_ASSET = export_asset(PATH)


@dag(
    dag_id="b24_incremental_export",
    schedule=INTERVAL,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=True,
    max_active_runs=3,
    tags=["bitrix24", "example"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
)
def b24_incremental_export() -> None:
    export = Bitrix24ExportActivitiesOperator(
        task_id="export_activities",
        bitrix24_conn_id=CONN_ID,
        updated_from="{{ " + WINDOW_START + " }}",  # inclusive
        updated_to="{{ data_interval_end }}",  # exclusive
        path=PATH,  # outlets: [EXPORT_ASSET] by default
        format="jsonl",
    )

    @task
    def report(summary: dict[str, Any]) -> dict[str, Any]:
        """Read the exported file back (typed rows) and count the activities per type."""
        by_type: Counter[int] = Counter()
        if is_local_path(summary["path"]):
            for activity in read_jsonl(summary["path"]):
                by_type[activity["TYPE_ID"]] += 1
        log.info(
            "%s: %d activities updated in [%s, %s) in %d requests; by TYPE_ID: %s",
            summary["path"],
            summary["rows"],
            summary["updated_from"],
            summary["updated_to"],
            summary["requests"],
            dict(sorted(by_type.items())),
        )
        return {"rows": summary["rows"], "by_type": {str(k): v for k, v in sorted(by_type.items())}}

    report(export.output)


b24_incremental_export()


@dag(
    dag_id="b24_incremental_export_consumer",
    schedule=[EXPORT_ASSET] if EXPORT_ASSET is not None else None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bitrix24", "example"],
    doc_md="Runs after each export of ``b24_incremental_export`` (scheduled on its asset) and reads "
    "the file named by the triggering asset event.",
)
def b24_incremental_export_consumer() -> None:
    @task
    def newest_export(**context: Any) -> list[dict[str, Any]]:
        """The files the triggering export runs wrote (from their asset events' ``extra``)."""
        events = context["triggering_asset_events"][EXPORT_ASSET] if EXPORT_ASSET is not None else []
        files = [
            {key: event.extra.get(key) for key in ("path", "rows", "updated_from", "updated_to")}
            for event in events
        ]
        for file in files:
            log.info("exported %s rows to %s", file["rows"], file["path"])
        return files

    newest_export()


b24_incremental_export_consumer()
