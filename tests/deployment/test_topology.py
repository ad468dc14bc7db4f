"""The topology itself: every component runs as its own process, on PostgreSQL, Redis and SeaweedFS."""

from __future__ import annotations

from tests.deployment.deploy_harness import BUCKET, POOL, Deployment


def test_components_are_separate_processes_on_shared_services(deployment: Deployment) -> None:
    pids = {name: c.service.pid for name, c in deployment.airflow.items() if c.service}
    assert set(pids) == {"api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2"}
    assert len(set(pids.values())) == len(pids)
    assert all(c.service and c.service.alive() for c in deployment.airflow.values())
    homes = {c.home for c in deployment.airflow.values()}
    assert len(homes) == len(deployment.airflow)  # no shared AIRFLOW_HOME, DAG folder or TMPDIR

    jobs = dict(deployment.sql("SELECT job_type, count(*) FROM job WHERE state='running' GROUP BY job_type"))
    assert jobs.get("SchedulerJob") == 1 and jobs.get("TriggererJob") == 1, jobs
    assert deployment.sql("SELECT slots FROM slot_pool WHERE pool=%s", (POOL,)) == [(2,)]
    conns = {r[0] for r in deployment.sql("SELECT conn_id FROM connection")}
    assert {"bitrix24_default", "seaweedfs_s3"} <= conns
    assert deployment.s3_client().head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert deployment.emulator is not None
    assert deployment.emulator.stats()["requests"] >= 0
