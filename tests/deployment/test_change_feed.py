"""The change-feed watcher (``Bitrix24ActivityChangesTrigger``) in the production topology.

Scheduler, dag-processor, triggerer, two Celery workers, PostgreSQL, the emulator in its own process.
The scenario's DAG (``change_feed_dag/deploy_change_feed.py``: an asset with an ``AssetWatcher``,
``poll_interval=3``, a DAG scheduled on it that reads the IDs from ``triggering_asset_events`` and
fetches them with ``Bitrix24GetActivitiesOperator``) is deployed by this test, after it changed some
"history" activities, and removed at the end. Then:

1. an idle window of ``IDLE_POLLS`` poll intervals: the polls are counted from the client's log
   lines in the triggerer's log (``Bitrix24 batch of 2 command(s): 1 request(s)``), the HTTP
   requests by the emulator: only ``batch`` requests, one per poll;
2. wave 1 changed while the watcher runs;
3. as soon as wave 1's run exists: triggerer stopped (SIGTERM, by pid), wave 2 changed while it is
   down, triggerer started again (wave 1's delivery was not confirmed yet: it may come again);
4. once the stored cursor moved past wave 2, the triggerer is stopped and started again; once it
   runs the watcher, wave 3 is changed.

Asserted: every changed ID reaches a DAG run's fetch task (XCom in the metadata DB); no run carries
a history ID or any ID not changed by a wave; after the second restart (delivery confirmed) nothing
comes again; the change-to-run delay (change → ``dag_run.queued_at``) of waves 1 and 3 is at most
``poll_interval`` + 15 s (wave 2's includes the triggerer's downtime and start, so it is only
reported); no failed task instance. Repeats after the first restart (at least once) are reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.deploy_harness import Deployment, DeploymentError, wait_for

pytestmark = pytest.mark.deployment

DAG_FILE = Path(__file__).resolve().parent / "change_feed_dag" / "deploy_change_feed.py"
DAG_ID = "deploy_change_feed"
ASSET = "deploy_change_feed_activities"
FIRST_ID = 5801  # the watcher's filter: ID >= FIRST_ID (other scenarios reserve from 1000 up)
POLL_INTERVAL = 3.0
MAX_DELAY_S = POLL_INTERVAL + 15
IDLE_POLLS = 10
#: An idle poll takes well under a second on loopback; the window allows 2 s per poll.
POLL_LATENCY_S = 2.0
WAVE_SIZE = 4


def deploy_dag(dep: Deployment) -> list[Path]:
    """Copy the scenario's DAG file into every component's own DAG folder (as a deploy would)."""
    copies = []
    for component in dep.airflow.values():
        target = component.home / "dags" / DAG_FILE.name
        shutil.copy(DAG_FILE, target)
        copies.append(target)
    return copies


def undeploy_dag(dep: Deployment, copies: list[Path]) -> float | None:
    """Stop the watcher for the scenarios that follow, then remove the DAG file.

    Airflow keeps running a watcher while its DAG file is gone but the DAG not yet cleaned up, and
    does not look at pauses between parses: pause the DAG and have its file parsed again (the
    DAG processor then drops the watchers of a paused DAG's assets). Returns the seconds until the
    emulator saw no poll for two poll intervals (``None``: not within 90 s).
    """
    emulator = dep.emulator
    assert emulator is not None
    started = time.monotonic()
    try:
        with contextlib.suppress(DeploymentError):
            dep.api("PATCH", f"/dags/{DAG_ID}", {"is_paused": True})
            token = dep.api("GET", f"/dags/{DAG_ID}/details")["file_token"]
            dep.api("PUT", f"/parseDagFile/{token}", ok=(200, 201))
        wait_for(lambda: watcher_trigger(dep) is None, 60, "the watcher dropped", interval=0.5)
        last = [float(emulator.stats()["requests"]), time.monotonic()]

        def quiet() -> bool:
            now = float(emulator.stats()["requests"])
            if now != last[0]:
                last[:] = [now, time.monotonic()]
            return time.monotonic() - last[1] >= 2 * POLL_INTERVAL + 1

        wait_for(quiet, 60, "the watcher's polls to stop", interval=0.5)
        return round(time.monotonic() - started, 1)
    except DeploymentError:
        return None
    finally:
        for path in copies:
            path.unlink(missing_ok=True)


def watcher_trigger(dep: Deployment) -> tuple[int, int | None] | None:
    """(trigger id, triggerer job id) of the asset's watcher, once the scheduler created it."""
    rows = dep.sql(
        "SELECT t.id, t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id "
        "JOIN asset a ON a.id = w.asset_id WHERE a.name = %s",
        (ASSET,),
    )
    return (int(rows[0][0]), rows[0][1]) if rows else None


def stored_cursor(dep: Deployment) -> str | None:
    """The watcher's durable cursor: the asset state store (Airflow 3.3) or a Variable (3.1)."""
    queries = (
        "SELECT value FROM asset_state_store WHERE key LIKE 'bitrix24_changes.%%'",
        "SELECT val FROM variable WHERE key LIKE 'bitrix24_changes__%%'",
    )
    for query in queries:
        try:
            rows = dep.sql(query)
        except Exception:  # the table of the other Airflow version
            continue
        if rows:
            return str(rows[0][0])
    return None


def running_triggerer(dep: Deployment) -> int:
    rows = dep.sql("SELECT max(id) FROM job WHERE job_type='TriggererJob' AND state='running'")
    return int(rows[0][0] or 0)


def restart_triggerer(dep: Deployment, between: Any = None) -> float:
    """SIGTERM the triggerer (by pid), call ``between()``, start it; wait until it runs the watcher."""
    before = running_triggerer(dep)
    dep.stop_component("triggerer")
    if between is not None:
        between()
    dep.start_component("triggerer")
    started = time.time()

    def picked_up() -> bool:
        service = dep.airflow["triggerer"].service
        if service is None or not service.alive():
            raise DeploymentError(f"triggerer exited:\n{service.log_tail() if service else ''}")
        found = watcher_trigger(dep)
        return found is not None and found[1] is not None and int(found[1]) > before

    wait_for(picked_up, 180, "the restarted triggerer to take the watcher", interval=0.5)
    return started


def runs(dep: Deployment) -> dict[str, dict[str, Any]]:
    """run_id -> queued_at (epoch s) and the activity IDs of the asset events it consumed."""
    rows = dep.sql(
        "SELECT r.run_id, r.queued_at, e.extra, e.timestamp FROM dag_run r "
        "JOIN dagrun_asset_event d ON d.dag_run_id = r.id JOIN asset_event e ON e.id = d.event_id "
        "WHERE r.dag_id = %s",
        (DAG_ID,),
    )
    out: dict[str, dict[str, Any]] = {}
    for run_id, queued_at, extra, event_at in rows:
        data = extra if isinstance(extra, dict) else json.loads(extra)
        run = out.setdefault(run_id, {"queued_at": queued_at.timestamp(), "ids": [], "event_at": []})
        run["ids"].extend(int(i) for i in data.get("payload", {}).get("ids", []))
        run["event_at"].append(event_at.timestamp())
    return out


def first_run_of(dep: Deployment, ids: list[int]) -> dict[int, dict[str, Any]]:
    """For each of ``ids`` delivered so far: the earliest run carrying it."""
    found: dict[int, dict[str, Any]] = {}
    for run in sorted(runs(dep).values(), key=lambda r: r["queued_at"]):
        for activity_id in run["ids"]:
            if activity_id in ids and activity_id not in found:
                found[activity_id] = run
    return found


def wait_delivered(dep: Deployment, wave: list[int], what: str) -> dict[int, dict[str, Any]]:
    try:
        return wait_for(
            lambda: (found := first_run_of(dep, wave)) and set(found) == set(wave) and found,
            240,
            f"DAG runs for {what} {wave}",
            interval=0.5,
        )
    except DeploymentError as exc:
        raise DeploymentError(f"{exc}: runs {runs(dep)}\n{dep.log_tails()}") from None


def change(dep: Deployment, ids: list[int]) -> float:
    """Complete ``ids`` in the CRM (bumps LAST_UPDATED); the wall-clock time just before."""
    assert dep.emulator is not None
    at = time.time()
    dep.emulator.complete(ids)
    return at


def feed_log_lines(dep: Deployment) -> list[str]:
    """The watcher's own log lines in the triggerer's log (every start of it appends to one file)."""
    service = dep.airflow["triggerer"].service
    text = service.log_tail(20_000_000) if service else ""
    return [line for line in text.splitlines() if "Bitrix24" in line]


def logged_polls(lines: list[str], start: float, end: float) -> list[int]:
    """HTTP requests of each poll the hook logged between ``start`` and ``end`` (epoch seconds).

    Each poll is one ``Bitrix24 batch of N command(s): R request(s)`` line of the client.
    """
    found = []
    for line in lines:
        match = re.match(r"(\S+)\s.*Bitrix24 batch of \d+ command\(s\): (\d+) request\(s\)", line)
        if match and start <= datetime.fromisoformat(match.group(1)).timestamp() <= end:
            found.append(int(match.group(2)))
    return found


def test_change_feed_three_waves_with_triggerer_restarts(
    deployment: Deployment, measurements: dict[str, Any]
) -> None:
    dep = deployment
    assert dep.emulator is not None
    started = time.monotonic()
    history = dep.emulator.reserve(3, min_id=FIRST_ID)
    waves = [dep.emulator.reserve(WAVE_SIZE, min_id=FIRST_ID) for _ in range(3)]
    changed = {i for wave in waves for i in wave}
    change(dep, history)  # before the watcher exists: history, never to be delivered
    time.sleep(1.1)  # a later LAST_UPDATED second than the history's (the cursor's boundary)
    copies = deploy_dag(dep)
    try:
        _scenario(dep, measurements, history=history, waves=waves, changed=changed, started=started)
    finally:
        stopped = undeploy_dag(dep, copies)
        measurements.setdefault("change_feed", {})["watcher_stopped_after_pause_s"] = stopped
        print(f"change feed: the watcher stopped polling {stopped} s after its DAG was paused and re-parsed")


def _scenario(
    dep: Deployment,
    measurements: dict[str, Any],
    *,
    history: list[int],
    waves: list[list[int]],
    changed: set[int],
    started: float,
) -> None:
    assert dep.emulator is not None
    dep.wait_for_dags([DAG_ID])
    wait_for(lambda: stored_cursor(dep), 240, "the change-feed watcher's first cursor", interval=0.5)

    # 1. idle: only the watcher polls (the other scenarios are not running now)
    before = dep.emulator.stats()
    idle_started, idle_from = time.monotonic(), time.time()
    time.sleep(IDLE_POLLS * POLL_INTERVAL)
    idle_to = time.time()
    after = dep.emulator.stats()
    idle_window = time.monotonic() - idle_started
    idle_requests = int(after["requests"]) - int(before["requests"])
    idle_list_commands = int(after["batch_methods"].get("crm.activity.list", 0)) - int(
        before["batch_methods"].get("crm.activity.list", 0)
    )
    idle_methods = {
        m: int(n) - int(before["methods"].get(m, 0))
        for m, n in after["methods"].items()
        if int(n) != int(before["methods"].get(m, 0))
    }
    polls_max = math.floor(idle_window / POLL_INTERVAL) + 1
    polls_min = math.floor(idle_window / (POLL_INTERVAL + POLL_LATENCY_S)) - 1

    # 2. wave 1, the watcher running
    changed_at = {i: change(dep, waves[0]) for i in waves[0]}
    wait_delivered(dep, waves[0], "wave 1")

    # 3. wave 2 while the triggerer is down
    wave2_at: list[float] = []
    restarted_at = restart_triggerer(dep, between=lambda: wave2_at.append(change(dep, waves[1])))
    changed_at.update(dict.fromkeys(waves[1], wave2_at[0]))
    wait_delivered(dep, waves[1], "wave 2")

    # 4. once the delivery of wave 2 is confirmed (the stored cursor moved), another restart; then
    # wave 3 once the new triggerer runs the watcher. Nothing delivered before may come again.
    cursor = stored_cursor(dep)
    wait_for(lambda: stored_cursor(dep) != cursor, 60, "the cursor stored past wave 2", interval=0.5)
    delivered_before = set(runs(dep))
    restart_triggerer(dep)
    changed_at.update({i: change(dep, waves[2]) for i in waves[2]})
    wait_delivered(dep, waves[2], "wave 3")

    all_runs = runs(dep)
    states = dep.wait_runs_finished(DAG_ID, sorted(all_runs), timeout=300)
    first = first_run_of(dep, sorted(changed))
    delays = {i: first[i]["queued_at"] - changed_at[i] for i in changed}
    live = [delays[i] for i in waves[0] + waves[2]]
    after_restart = [first[i]["queued_at"] - restarted_at for i in waves[1]]
    event_delays = [min(first[i]["event_at"]) - changed_at[i] for i in waves[0] + waves[2]]

    fetched: set[int] = set()
    delivered: list[int] = []
    for run_id, run in all_runs.items():
        ids = dep.xcom(DAG_ID, run_id, "changed_ids")
        assert ids == sorted(set(run["ids"])), (run_id, ids, run)
        rows = dep.xcom(DAG_ID, run_id, "fetch_activities")
        assert [int(a["ID"]) for a in rows] == ids, (run_id, rows)
        assert all(a["COMPLETED"] is True for a in rows), (run_id, rows)
        fetched.update(ids)
        delivered.extend(ids)
    tis = dep.task_rows(DAG_ID)
    failed = [t for t in tis if t["state"] != "success"]
    idle_polls = logged_polls(feed_log_lines(dep), idle_from, idle_to)

    result = {
        "poll_interval_s": POLL_INTERVAL,
        "change_to_run_queued_s": {
            "median": round(statistics.median(live), 1),
            "max": round(max(live), 1),
            "per_wave_max": [round(max(delays[i] for i in w), 1) for w in waves],
        },
        "change_to_asset_event_s_max": round(max(event_delays), 1),
        "wave2_triggerer_start_to_run_s_max": round(max(after_restart), 1),
        "idle_window_s": round(idle_window, 1),
        "idle_http_requests": idle_requests,
        "idle_methods": idle_methods,
        "idle_polls_bounds": [polls_min, polls_max],
        "idle_crm_activity_list_commands": idle_list_commands,
        "idle_polls_logged": len(idle_polls),
        "idle_requests_per_poll": round(idle_requests / max(1, len(idle_polls)), 2),
        "runs": len(all_runs),
        "run_ids_per_wave": [
            sorted(len(set(r["ids"]) & set(w)) for r in all_runs.values() if set(r["ids"]) & set(w))
            for w in waves
        ],
        "ids_changed": len(changed),
        "ids_delivered_again": len(delivered) - len(set(delivered)),
        "task_instances": len(tis),
        "task_instances_failed": len(failed),
        "duration_s": round(time.monotonic() - started, 1),
    }
    measurements["change_feed"] = result
    print("\nchange feed in a deployment: " + json.dumps(result, sort_keys=True))

    assert set(states.values()) == {"success"}, (states, failed)
    assert not failed, failed
    assert fetched == changed, (sorted(fetched), sorted(changed))  # every changed ID fetched, nothing else
    assert not fetched & set(history), (history, sorted(fetched))  # no history from before the watcher
    assert max(live) <= MAX_DELAY_S, result
    # The restart after a confirmed delivery repeats nothing: later runs carry wave 3 only.
    later = [r["ids"] for run_id, r in all_runs.items() if run_id not in delivered_before]
    assert later and all(set(ids) <= set(waves[2]) for ids in later), (later, waves)
    # One HTTP request per idle poll: the client logged one request for each poll in the window, the
    # emulator saw only `batch` requests, as many as the logged polls (±1: a poll at the window's edge
    # is counted by the emulator when it arrives and logged after its answer) and as the window holds.
    assert idle_polls and set(idle_polls) == {1}, idle_polls
    assert set(idle_methods) <= {"batch"}, idle_methods
    assert abs(idle_requests - len(idle_polls)) <= 1, result
    assert polls_min <= idle_requests <= polls_max, result
