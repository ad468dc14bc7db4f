"""Run a DAG as ``airflow dags test`` does, triggered by asset events like a watcher's.

``airflow dags test`` cannot run an asset watcher and creates a manual run without asset events.
This script links asset events to the run ``DAG.test()`` creates, as the scheduler does for an
asset-triggered run (``dag_run.consumed_asset_events``), so the tasks see them in
``triggering_asset_events``. The events are either

* ``--pending``: the asset's events not consumed by any run yet (e.g. those a real triggerer
  created from a watcher's trigger events; ``make demo``), or
* ``--payloads '[{...}, ...]'``: new ones, registered exactly as the triggerer registers a trigger
  event (``AssetManager.register_asset_change(asset, extra={"from_trigger": True, "payload": ...})``).

Run it in the Airflow environment (``AIRFLOW_HOME``, the metadata DB, the connections)::

    python scripts/run_on_asset_events.py DAGS_FOLDER DAG_ID ASSET_NAME (--pending | --payloads JSON)

Exit code 0 when the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dags_folder")
    parser.add_argument("dag_id")
    parser.add_argument("asset_name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pending", action="store_true", help="the asset's events no run consumed yet")
    source.add_argument("--payloads", help="JSON list of payloads to register as trigger events")
    args = parser.parse_args(argv)
    payloads: list[dict[str, Any]] = json.loads(args.payloads) if args.payloads else []

    from airflow import settings

    if settings.Session is None:
        settings.configure_orm()

    try:  # Airflow >= 3.2
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[attr-defined,no-redef]
    import airflow.models.dagrun as dagrun_module
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    dag = DagBag(dag_folder=args.dags_folder).get_dag(args.dag_id)
    if dag is None:
        print(f"no DAG {args.dag_id!r} in {args.dags_folder}", file=sys.stderr)
        return 2
    create_run = dagrun_module.get_or_create_dagrun

    def run_with_asset_events(**kwargs: Any) -> Any:
        session = kwargs["session"]
        run = create_run(**kwargs)
        asset = session.scalar(select(AssetModel).where(AssetModel.name == args.asset_name))
        if asset is None:
            raise RuntimeError(
                f"asset {args.asset_name!r} is not in the metadata DB (is the DAG scheduled on it?)"
            )
        if args.pending:
            events = list(
                session.scalars(
                    select(AssetEvent)
                    .where(AssetEvent.asset_id == asset.id, ~AssetEvent.created_dagruns.any())
                    .order_by(AssetEvent.id)
                )
            )
        else:
            events = []
            for payload in payloads:
                event = AssetManager.register_asset_change(
                    asset=asset, extra={"from_trigger": True, "payload": payload}, session=session
                )
                if event is None:
                    raise RuntimeError(f"no asset event was registered for {args.asset_name!r}")
                events.append(event)
        if not events:
            raise RuntimeError(f"no asset events of {args.asset_name!r} to run on")
        run.consumed_asset_events.extend(events)
        session.commit()
        print(f"linked {len(events)} asset event(s) of {args.asset_name!r} to run {run.run_id}", flush=True)
        return run

    dagrun_module.get_or_create_dagrun = run_with_asset_events  # type: ignore[assignment]
    run = dag.test()
    state = str(getattr(run, "state", None))
    print(f"run state: {state}", flush=True)
    return 0 if state in ("success", "DagRunState.SUCCESS") else 1


if __name__ == "__main__":
    sys.exit(main())
