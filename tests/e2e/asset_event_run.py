"""Run a DAG as ``airflow dags test`` does, triggered by asset events like a watcher's.

``airflow dags test`` cannot run an asset watcher (no triggerer) and creates a manual run without
asset events. This script registers the events the way the triggerer does when a watcher's trigger
fires (``AssetManager.register_asset_change(asset, extra={"from_trigger": True, "payload": ...})``)
and links them to the run ``DAG.test()`` creates (as the scheduler does for asset-triggered runs:
``dag_run.consumed_asset_events``), so the tasks see them in ``triggering_asset_events``.

Usage (in the test's AIRFLOW_HOME environment)::

    python asset_event_run.py <dags_folder> <dag_id> <asset_name> '<JSON list of payloads>'
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(dags_folder: str, dag_id: str, asset_name: str, payloads: list[dict[str, Any]]) -> int:
    from airflow import settings

    if settings.Session is None:
        settings.configure_orm()

    try:  # Airflow >= 3.2
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[attr-defined,no-redef]
    import airflow.models.dagrun as dagrun_module
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    dag = DagBag(dag_folder=dags_folder).get_dag(dag_id)
    if dag is None:
        print(f"no DAG {dag_id!r} in {dags_folder}", file=sys.stderr)
        return 2
    create_run = dagrun_module.get_or_create_dagrun

    def run_with_asset_events(**kwargs: Any) -> Any:
        session = kwargs["session"]
        run = create_run(**kwargs)
        asset = session.scalar(select(AssetModel).where(AssetModel.name == asset_name))
        if asset is None:
            raise RuntimeError(
                f"asset {asset_name!r} is not in the metadata DB (is the DAG scheduled on it?)"
            )
        for payload in payloads:
            event = AssetManager.register_asset_change(
                asset=asset, extra={"from_trigger": True, "payload": payload}, session=session
            )
            if event is None:
                raise RuntimeError(f"no asset event was registered for {asset_name!r}")
            run.consumed_asset_events.append(event)
        session.commit()
        print(f"linked {len(payloads)} asset event(s) of {asset_name!r} to run {run.run_id}", flush=True)
        return run

    dagrun_module.get_or_create_dagrun = run_with_asset_events  # type: ignore[assignment]
    run = dag.test()
    state = getattr(run, "state", None)
    print(f"run state: {state}", flush=True)
    return 0 if str(state) in ("success", "DagRunState.SUCCESS") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
