"""OAuth across machines: tokens rotated by tasks on both Celery workers and by the triggerer.

The emulator issues access tokens that live 3 s, and every refresh rotates the (single-use)
refresh token. Four tasks (two per worker; the workers have different TMPDIRs, so the token store's
file lock is not shared, as on two hosts) and a deferred sensor in the triggerer call the portal
through one OAuth connection for half a minute. The pair lives in the Variable
``bitrix24_token__bitrix24_oauth`` (the metadata DB); a process that loses a refresh race adopts the
winner's pair (``AirflowVariableTokenStore.wait_for_newer``). Nothing may fail.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.deployment.deploy_harness import Deployment, wait_for

pytestmark = pytest.mark.deployment

CONN_ID = "bitrix24_oauth"
DAG_ID = "deploy_oauth"


def test_tokens_rotated_by_two_workers_and_the_triggerer(
    deployment: Deployment, measurements: dict[str, Any]
) -> None:
    dep = deployment
    emu = dep.emulator
    assert emu is not None
    emu.call("/token_lifetime", {"seconds": 3})
    try:
        dep.put_connection(CONN_ID, emu.call("/oauth_connection"))
        dep.api("DELETE", f"/variables/bitrix24_token__{CONN_ID}", ok=(204, 404))
        [activity_id] = emu.reserve(1, min_id=3000)
        before = emu.stats()
        started = time.monotonic()
        run_id = dep.trigger(DAG_ID, {"seconds": 30, "calls_per_task": 15, "activity_ids": [activity_id]})

        def callers_done() -> bool:
            rows = [
                r for r in dep.task_rows(DAG_ID) if r["run_id"] == run_id and r["task_id"].startswith("call_")
            ]
            return len(rows) == 4 and all(r["state"] in ("success", "failed") for r in rows)

        # Besides the 3 s lifetime, expire every token at once every 2.5 s: every process that
        # adopted the same pair then refreshes at the same moment (the cross-machine race).
        stop = threading.Event()

        def expire_every_few_seconds() -> None:
            while not stop.wait(2.5):
                emu.call("/expire_tokens")

        expirer = threading.Thread(target=expire_every_few_seconds, daemon=True)
        expirer.start()
        try:
            wait_for(callers_done, 300, "the four portal-calling tasks", interval=1)
        finally:
            stop.set()
            expirer.join(timeout=10)
        emu.complete([activity_id])  # the deferred sensor (polling every second meanwhile) may now fire
        states = dep.wait_runs_finished(DAG_ID, [run_id], timeout=300)
        after = emu.stats()
    finally:
        emu.call("/token_lifetime", {"seconds": 3600})

    rows = [r for r in dep.task_rows(DAG_ID) if r["run_id"] == run_id]
    calls = {
        r["task_id"]: dep.xcom(DAG_ID, run_id, r["task_id"]) for r in rows if r["task_id"].startswith("call_")
    }
    homes = {value["airflow_home"] for value in calls.values()}
    result = {
        "duration_s": round(time.monotonic() - started, 1),
        "http_requests": after["requests"] - before["requests"],
        "rejected_503": after["rejected_rate_limit"] - before["rejected_rate_limit"],
        "token_refreshes": after["token_refreshes"] - before["token_refreshes"],
        "invalid_grant_served_and_recovered": after["token_errors"] - before["token_errors"],
        "expired_token_401": after["rejected_auth"] - before["rejected_auth"],
        "refreshes_by_task": {task: value["refreshes"] for task, value in sorted(calls.items())},
        "refreshes_by_triggerer": after["token_refreshes"]
        - before["token_refreshes"]
        - sum(value["refreshes"] for value in calls.values()),
        "tis_failed": sum(r["state"] != "success" for r in rows),
        "tis_retried": sum(int(r["try_number"]) > 1 for r in rows),
    }
    measurements["oauth_rotation"] = result

    assert states == {run_id: "success"}, (result, dep.log_tails())
    assert result["tis_failed"] == 0 and result["tis_retried"] == 0, result
    assert len(calls) == 4 and all(v["calls"] == 15 for v in calls.values()), calls
    assert len(homes) == 2  # both workers ran callers
    # Tokens really rotated, many times, by several processes; the triggerer's sensor ran throughout.
    assert result["token_refreshes"] >= 5, result
    # Both sides rotated: tasks on the workers, and the triggerer (the refreshes no task reported).
    assert sum(v["refreshes"] for v in calls.values()) >= 1, result
    assert result["token_refreshes"] - sum(v["refreshes"] for v in calls.values()) >= 1, result
    sensor = dep.xcom(DAG_ID, run_id, "wait_in_triggerer")
    assert [a["ID"] for a in sensor] == [activity_id] and sensor[0]["COMPLETED"] is True
