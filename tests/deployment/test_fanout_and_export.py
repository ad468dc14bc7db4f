"""Fan-out inside the portal's pool, and the incremental export to S3-compatible object storage.

* ``b24_mapped_fetch`` (the example DAG) over 50 chunks on both Celery workers inside the
  ``bitrix24_portal`` pool (2 slots): every chunk succeeds; HTTP requests and 503s are measured.
* ``Bitrix24ExportActivitiesOperator`` writes ``s3://`` on SeaweedFS from worker 1 and a task on
  worker 2 reads the object back; a try that fails midway leaves no object at the final key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.deploy_harness import BUCKET, POOL, Deployment

pytestmark = pytest.mark.deployment


def test_mapped_fetch_fans_out_on_both_workers_within_the_pool(
    deployment: Deployment, measurements: dict[str, Any]
) -> None:
    dep = deployment
    assert dep.emulator is not None
    dag_id = "b24_mapped_fetch"
    before = dep.emulator.stats()
    started = time.monotonic()
    run_id = dep.trigger(dag_id, {"first_id": 1, "last_id": 5000, "chunk_size": 100})
    most_in_pool = 0
    deadline = time.monotonic() + 900
    while dep.run_states(dag_id).get(run_id) not in ("success", "failed"):
        busy = dep.sql(
            "SELECT count(*) FROM task_instance WHERE pool=%s AND state IN ('queued', 'running')", (POOL,)
        )[0][0]
        most_in_pool = max(most_in_pool, int(busy))
        assert time.monotonic() < deadline, dep.log_tails()
        time.sleep(0.5)
    after = dep.emulator.stats()
    rows = [r for r in dep.task_rows(dag_id) if r["run_id"] == run_id]
    chunks = [r for r in rows if r["task_id"] == "fetch_chunk"]
    pattern = f"dag_id={dag_id}/run_id={run_id}/task_id=fetch_chunk/**/*.log"
    logs_per_worker = {
        name: len(list((dep.airflow[name].home / "logs").glob(pattern))) for name in ("worker1", "worker2")
    }
    result = {
        "duration_s": round(time.monotonic() - started, 1),
        "chunks": len(chunks),
        "http_requests": after["requests"] - before["requests"],
        "rejected_503": after["rejected_rate_limit"] - before["rejected_rate_limit"],
        "most_task_instances_in_pool": most_in_pool,
        "chunks_per_worker": logs_per_worker,
        "tis_failed": sum(r["state"] != "success" for r in rows),
        "tis_retried": sum(int(r["try_number"]) > 1 for r in rows),
    }
    measurements["fan_out_50_chunks"] = result

    assert dep.run_states(dag_id)[run_id] == "success", (result, dep.log_tails())
    assert len(chunks) == 50 and all(r["state"] == "success" for r in chunks), result
    assert result["tis_failed"] == 0 and result["tis_retried"] == 0, result
    assert most_in_pool <= 2, result
    assert all(count > 0 for count in logs_per_worker.values()), result  # both workers fetched
    assert sum(logs_per_worker.values()) == 50
    summary = dep.xcom(dag_id, run_id, "combine")
    assert summary["chunks"] == 50 and summary["fetched"] == 5000 and summary["missing"] == 0, summary


def test_export_to_s3_on_one_worker_read_back_on_the_other(
    deployment: Deployment, measurements: dict[str, Any]
) -> None:
    dep = deployment
    emu = dep.emulator
    assert emu is not None
    dag_id, key = "deploy_export_s3", "activities/2024/all.jsonl"
    conf = {
        "key": key,
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2025-01-01T00:00:00+00:00",
    }
    before = emu.stats()
    started = time.monotonic()

    # 1. The portal denies access after the first page batch: the try fails midway.
    emu.fault(
        "error",
        "batch",
        after=1,
        times=1,
        status=403,
        error="ACCESS_DENIED",
        error_description="Access denied",
    )
    failed_run = dep.trigger(dag_id, conf, run_id="export_fails_midway")
    assert dep.wait_runs_finished(dag_id, [failed_run], timeout=600) == {failed_run: "failed"}
    states = {r["task_id"]: r for r in dep.task_rows(dag_id) if r["run_id"] == failed_run}
    assert states["export"]["state"] == "failed" and states["export"]["try_number"] == 1, states
    denied = emu.stats()["error_codes"].get("ACCESS_DENIED", 0) - before["error_codes"].get(
        "ACCESS_DENIED", 0
    )
    assert denied == 1  # it failed on the injected error, after a first batch of pages had been read
    assert dep.s3_keys("activities/") == []  # neither the final key nor a temporary one
    emu.call("/faults_clear")

    # 2. The same interval again: written by worker 1, read back by worker 2.
    ok_run = dep.trigger(dag_id, conf, run_id="export_succeeds")
    assert dep.wait_runs_finished(dag_id, [ok_run], timeout=600) == {ok_run: "success"}, dep.log_tails()
    summary = dep.xcom(dag_id, ok_run, "export")
    read = dep.xcom(dag_id, ok_run, "read_back")
    exported_by = dep.xcom(dag_id, ok_run, "where_export_ran")
    after = emu.stats()
    assert dep.s3_keys("activities/") == [key]
    assert summary["path"].endswith(f"{BUCKET}/{key}") and summary["rows"] > 2500, summary
    assert read["rows"] == summary["rows"] == read["unique"], (summary, read)
    assert (
        Path(read["airflow_home"]).name == "worker2" and Path(exported_by["airflow_home"]).name == "worker1"
    )
    ok_rows = [r for r in dep.task_rows(dag_id) if r["run_id"] == ok_run]
    assert all(r["state"] == "success" and int(r["try_number"]) == 1 for r in ok_rows), ok_rows
    measurements["export_s3"] = {
        "duration_s": round(time.monotonic() - started, 1),
        "rows": summary["rows"],
        "export_requests": summary["requests"],
        "http_requests": after["requests"] - before["requests"],
        "rejected_503": after["rejected_rate_limit"] - before["rejected_rate_limit"],
        "object_bytes": dep.s3_client().head_object(Bucket=BUCKET, Key=key)["ContentLength"],
    }
