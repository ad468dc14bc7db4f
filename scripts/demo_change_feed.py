"""``make demo``, event-driven part: the emulator changes activities and a run of the DAG appears.

Used by ``scripts/demo.py`` (:func:`run`, :func:`summary`); it only needs the demo's ``spawn``,
``wait``, ``rest``, ``say``, ``emulator_stats``, ``home`` (an ``AirflowHome``) and ``logs``.

1. The watcher of ``dags_examples/b24_on_activity_change.py``'s asset is registered when the DAG
   files are parsed (``airflow dags test`` syncs them; ``airflow dag-processor -n 1`` if needed); a
   real ``airflow triggerer`` runs the watcher's
   ``Bitrix24ActivityChangesTrigger`` against the emulator (poll interval 2 s).
2. Idle polls are counted on the emulator (one HTTP request each).
3. "A user" completes three open calls and renames another activity (``crm.activity.update``);
   the watcher's event becomes an asset event in the metadata DB (the delay is measured).
4. The DAG runs on that asset event (``scripts/run_on_asset_events.py --pending``: ``DAG.test()``
   with the triggerer's asset events as its triggering events; the scheduler would start the same
   run), fetches the changed activities and sums up the completed calls.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from airflow_provider_b24.testing.airflow_home import stop_process_group

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "b24_on_activity_change"
ASSET = "bitrix24_activities"
POLL_INTERVAL = 2
#: For every Airflow command of the demo: the DAG files are parsed (and the watcher registered) by
#: the earlier ``airflow dags test`` runs too, and a watcher whose arguments change between parses
#: is dropped for one parse cycle by Airflow's DAG processor (see docs/events.md).
ENV = {"B24_EXAMPLE_CHANGE_POLL_INTERVAL": str(POLL_INTERVAL)}
IDLE_POLLS = 3


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # the other Airflow version's table, or busy
            return []


def _payloads(db: Path) -> list[dict[str, Any]]:
    out = []
    for (extra,) in _rows(db, "SELECT extra FROM asset_event ORDER BY id"):
        data = json.loads(extra)
        if data.get("from_trigger"):
            out.append(data["payload"])
    return out


def _cursor_stored(db: Path) -> str | None:
    if _rows(db, "SELECT key FROM asset_state_store WHERE key LIKE 'bitrix24_changes.%'"):
        return "the asset state store"
    if _rows(db, "SELECT key FROM variable WHERE key LIKE 'bitrix24_changes__%'"):
        return "an Airflow Variable"
    return None


def _wait(demo: Any, what: str, predicate: Any, timeout: float, log: str, *, tick: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = (demo.logs / f"{log}.log").read_text(errors="replace").splitlines()[-30:]
    raise demo.demo_error(
        f"{what} did not happen within {timeout:.0f} s; {log}.log ends with:\n" + "\n".join(tail)
    )


def run(demo: Any, *, airflow: Path, error: type[Exception]) -> dict[str, Any]:
    """The event-driven step; returns what :func:`summary` prints. Raises ``error`` when a step fails."""
    demo.demo_error = error
    db = demo.home.db_path
    env = demo.home.env(ENV)
    demo.say(
        f"event-driven: {DAG_ID} is scheduled on the asset {ASSET!r} "
        "(watched by Bitrix24ActivityChangesTrigger)"
    )
    # The `airflow dags test` runs above synced the DAG files, watcher included; parse again only
    # if the watcher is not linked (a trigger whose arguments changed is linked on the next parse).
    for attempt in range(1, 4):
        if _rows(db, "SELECT trigger_id FROM asset_watcher") or _rows(
            db, "SELECT trigger_id FROM asset_trigger"
        ):
            break
        name = f"dag-processor-{attempt}"
        demo.wait(name, demo.spawn(name, [str(airflow), "dag-processor", "-n", "1"], env), 300)
    # The triggerer reads the connection from the metadata DB, as in production. (An AIRFLOW_CONN_*
    # variable is resolved in a worker thread, which can crash Airflow 3.1's trigger runner:
    # apache/airflow#64620, fixed in 3.3; see docs/events.md.)
    conn = env["AIRFLOW_CONN_BITRIX24_DEFAULT"]
    demo.wait(
        "connections-add",
        demo.spawn(
            "connections-add",
            [str(airflow), "connections", "add", "bitrix24_default", "--conn-json", conn],
            env,
        ),
        120,
    )
    triggerer_env = {k: v for k, v in env.items() if k != "AIRFLOW_CONN_BITRIX24_DEFAULT"}
    args = [str(airflow), "triggerer", "--skip-serve-logs"]
    triggerer = demo.spawn("triggerer", args, triggerer_env)
    restarts = 0

    def keep_alive() -> None:
        """Restart the triggerer if it exited, as a process manager would: Airflow 3.1's trigger
        runner can die with "Response read out of order!" (apache/airflow#64620, fixed in 3.3)."""
        nonlocal triggerer, restarts
        if triggerer.poll() is not None and restarts < 3:
            restarts += 1
            demo.say(
                f"  the triggerer exited (code {triggerer.returncode}; apache/airflow#64620?); restarting it"
            )
            triggerer = demo.spawn(f"triggerer-{restarts + 1}", args, triggerer_env)

    try:
        began = time.monotonic()
        store = _wait(
            demo, "the watcher's start", lambda: _cursor_stored(db), 240, "triggerer", tick=keep_alive
        )
        demo.say(
            f"  airflow triggerer runs the watcher (after {time.monotonic() - began:.0f} s); "
            f"its cursor is in {store}"
        )
        before = demo.emulator_stats()
        time.sleep(IDLE_POLLS * POLL_INTERVAL)
        after = demo.emulator_stats()
        idle = None
        if before and after:
            polls = int(after["methods"].get("batch", 0)) - int(before["methods"].get("batch", 0))
            idle = (polls, int(after["requests"]) - int(before["requests"]))
        calls = demo.rest(
            "crm.activity.list",
            {
                "filter": {"TYPE_ID": 2, "COMPLETED": "N"},
                "select": ["ID"],
                "order": {"ID": "DESC"},
                "start": -1,
            },
        )
        call_ids = sorted(int(c["ID"]) for c in calls[:3])
        other = demo.rest(
            "crm.activity.list",
            {"filter": {"!TYPE_ID": 2}, "select": ["ID"], "order": {"ID": "DESC"}, "start": -1},
        )
        renamed = int(other[0]["ID"])
        changed_at = time.monotonic()
        for call_id in call_ids:
            demo.rest("crm.activity.update", {"id": call_id, "fields": {"COMPLETED": "Y"}})
        demo.rest("crm.activity.update", {"id": renamed, "fields": {"SUBJECT": "Renamed during the demo"}})
        changed = sorted([*call_ids, renamed])
        demo.say(f"  'a user' completed calls {call_ids} and renamed #{renamed} (crm.activity.update)")
        _wait(
            demo,
            "an asset event with the changed IDs",
            lambda: set(changed) <= {i for p in _payloads(db) for i in p["ids"]},
            120,
            "triggerer",
            tick=keep_alive,
        )
        delay = time.monotonic() - changed_at
        demo.say(f"  asset event(s) in the metadata DB {delay:.1f} s after the change: {_payloads(db)}")
    finally:
        stop_process_group(triggerer)
    began = time.monotonic()
    demo.say(f"  running {DAG_ID} on those asset events (as the scheduler would)")
    name = f"run-{DAG_ID}"
    demo.wait(
        name,
        demo.spawn(
            name,
            [
                sys.executable,
                str(REPO / "scripts" / "run_on_asset_events.py"),
                env["AIRFLOW__CORE__DAGS_FOLDER"],
                DAG_ID,
                ASSET,
                "--pending",
            ],
            env,
        ),
        240,
    )
    return {
        "changed": changed,
        "delay": delay,
        "idle": idle,
        "store": store,
        "payloads": _payloads(db),
        "run_took": time.monotonic() - began,
    }


def summary(result: Mapping[str, Any], xcom: Any) -> Iterator[str]:
    """Lines for the demo's closing summary (``xcom(task_id)`` reads the run's XComs)."""
    yield ""
    yield f"{DAG_ID} (event-driven, asset {ASSET!r}):"
    idle = result["idle"]
    if idle:
        window = IDLE_POLLS * POLL_INTERVAL
        yield f"  idle: {idle[0]} polls in {window} s, {idle[1]} HTTP requests (one per poll)"
    yield (
        f"  changed {result['changed']} -> asset event {result['delay']:.1f} s later "
        f"(poll interval {POLL_INTERVAL} s); cursor kept in {result['store']}"
    )
    yield f"  payload: {result['payloads'][-1]}"
    fetched = len(xcom("fetch_activities"))
    yield f"  run: changed_ids={xcom('changed_ids')}; fetched {fetched} typed activities"
    yield f"  completed_calls: {xcom('completed_calls')}"
