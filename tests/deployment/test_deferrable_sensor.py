"""Deferrable sensors under a real scheduler, triggerer and two Celery workers.

* 20 DAG runs at once, each waiting on its own activity; the test completes an activity only once
  its sensor is seen ``deferred``; then the fetch operator runs downstream.
* The deferral race (apache/airflow#66374, #67287, #71580, #72716): the quickest deferrals, on the
  Celery and the Local executor, in four interleaved batches: first poll immediate
  (``first_poll_delay=0``, 0.1.0's behaviour) or after the default delay, each with ``retries=0`` or
  the deferrable sensor's default retry. The ``retries=0`` batches are measurements (written to the
  session's measurements), never asserted; what ships (delay + retry) and the retry alone must lose
  no run and no task.
* The triggerer is stopped (SIGTERM) while sensors are deferred and started again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deployment.deploy_harness import Deployment, DeploymentError, wait_for

pytestmark = pytest.mark.deployment


@dataclass
class Batch:
    """Runs of one sensor DAG started together, each on its own activities."""

    dag_id: str
    runs: dict[str, list[int]] = field(default_factory=dict)  # run_id -> activity IDs
    deferred_at: dict[str, float] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)


def start_batch(dep: Deployment, dag_id: str, n: int, tag: str, *, quickest: bool = False) -> Batch:
    """Trigger ``n`` runs; ``quickest``: each activity completes right after the sensor's poke."""
    assert dep.emulator is not None
    batch = Batch(dag_id)
    ids = dep.emulator.reserve(n, min_id=1000)
    if quickest:
        dep.emulator.complete_after_read(ids)
    for index, activity_id in enumerate(ids):
        run_id = dep.trigger(dag_id, {"activity_ids": [activity_id]}, run_id=f"{tag}_{index:02d}")
        batch.runs[run_id] = [activity_id]
    return batch


def deferred_runs(dep: Deployment, dag_id: str) -> set[str]:
    rows = dep.sql(
        "SELECT run_id FROM task_instance WHERE dag_id=%s AND task_id='wait' AND state='deferred'", (dag_id,)
    )
    return {r[0] for r in rows}


def complete_when_deferred(dep: Deployment, batches: list[Batch], timeout: float = 420) -> None:
    """Complete each run's activities as soon as its sensor is seen deferred (a quick deferral)."""
    assert dep.emulator is not None
    deadline = time.monotonic() + timeout
    while any(len(b.completed) < len(b.runs) for b in batches):
        for batch in batches:
            newly = (deferred_runs(dep, batch.dag_id) & set(batch.runs)) - batch.completed
            for run_id in sorted(newly):
                batch.deferred_at[run_id] = time.monotonic()
                dep.emulator.complete(batch.runs[run_id])
                batch.completed.add(run_id)
            if not newly:
                # A run whose sensor failed or finished without deferring would never be seen deferred.
                states = dep.run_states(batch.dag_id)
                for run_id in set(batch.runs) - batch.completed:
                    if states.get(run_id) in ("success", "failed"):
                        batch.completed.add(run_id)
                        dep.emulator.complete(batch.runs[run_id])
        if time.monotonic() > deadline:
            missing = {b.dag_id: sorted(set(b.runs) - b.completed) for b in batches}
            raise DeploymentError(f"sensors not deferred in {timeout} s: {missing}\n{dep.log_tails()}")
        time.sleep(0.2)


def watch_deferrals(dep: Deployment, batches: list[Batch], timeout: float = 420) -> None:
    """Note when each run's sensor is seen deferred (its activity completes by itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = False
        for batch in batches:
            states = dep.run_states(batch.dag_id)
            for run_id in deferred_runs(dep, batch.dag_id) & set(batch.runs):
                batch.deferred_at.setdefault(run_id, time.monotonic())
            pending |= any(states.get(r) not in ("success", "failed") for r in batch.runs)
        if not pending:
            return
        time.sleep(0.2)


def outcome(dep: Deployment, batch: Batch) -> dict[str, Any]:
    """Failed task instances, retried ones and scheduler state mismatches of a batch."""
    rows = [r for r in dep.task_rows(batch.dag_id) if r["run_id"] in batch.runs]
    states = dep.run_states(batch.dag_id)
    return {
        "runs": len(batch.runs),
        "runs_failed": sum(states.get(r) != "success" for r in batch.runs),
        "tis_failed": sum(r["state"] != "success" for r in rows),
        "tis_retried": sum(int(r["try_number"]) > 1 for r in rows),
        "sensor_failed": sum(r["state"] != "success" for r in rows if r["task_id"] == "wait"),
        "state_mismatch_logs": dep.sql(
            "SELECT count(*) FROM log WHERE event='state mismatch' AND dag_id=%s AND run_id = ANY(%s)",
            (batch.dag_id, list(batch.runs)),
        )[0][0],
        "seen_deferred": len(batch.deferred_at),
    }


def emulator_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {
        "http_requests": after["requests"] - before["requests"],
        "rejected_503": after["rejected_rate_limit"] - before["rejected_rate_limit"],
    }


def check_fetched(dep: Deployment, batch: Batch) -> None:
    """Each run's sensor and fetch pushed exactly its own activities, completed, once."""
    for run_id, ids in batch.runs.items():
        for task_id in ("wait", "fetch"):
            rows = dep.sql(
                "SELECT count(*) FROM xcom WHERE dag_id=%s AND run_id=%s AND task_id=%s "
                "AND key='return_value'",
                (batch.dag_id, run_id, task_id),
            )
            assert rows[0][0] == 1, (run_id, task_id, rows)
            value = dep.xcom(batch.dag_id, run_id, task_id)
            assert [a["ID"] for a in value] == ids, (run_id, task_id, value)
            assert all(a["COMPLETED"] is True for a in value), (run_id, task_id, value)


def test_twenty_deferrable_sensor_runs(deployment: Deployment, measurements: dict[str, Any]) -> None:
    dep = deployment
    assert dep.emulator is not None
    before = dep.emulator.stats()
    started = time.monotonic()
    batch = start_batch(dep, "deploy_sensor", 20, "twenty")
    complete_when_deferred(dep, [batch])
    states = dep.wait_runs_finished(batch.dag_id, list(batch.runs), timeout=600)
    result = outcome(dep, batch)
    result.update(emulator_delta(before, dep.emulator.stats()))
    result["duration_s"] = round(time.monotonic() - started, 1)
    measurements["twenty_deferrable_runs"] = result

    assert set(states.values()) == {"success"}, (states, result, dep.log_tails())
    assert result["seen_deferred"] == 20
    assert result["tis_failed"] == 0 and result["tis_retried"] == 0, result
    check_fetched(dep, batch)


@pytest.mark.parametrize("executor", ["CeleryExecutor", "LocalExecutor"])
def test_deferral_race_before_and_after(
    deployment: Deployment, measurements: dict[str, Any], executor: str
) -> None:
    """The quickest deferrals, immediate first poll vs the default delay, interleaved under one load.

    Each activity completes right after the sensor's poke, so the trigger can fire on its first poll.
    With ``LocalExecutor`` (the issue's setup) the scheduler runs the tasks itself; it is restarted
    with that executor for this measurement and with the Celery one afterwards.
    """
    dep = deployment
    if executor != "CeleryExecutor":
        dep.restart_scheduler(executor)
        try:
            _race(dep, measurements, executor)
        finally:
            dep.restart_scheduler("CeleryExecutor")
    else:
        _race(dep, measurements, executor)


def _race(dep: Deployment, measurements: dict[str, Any], executor: str) -> None:
    assert dep.emulator is not None
    n = 20
    before = dep.emulator.stats()
    started = time.monotonic()
    immediate = Batch("deploy_sensor_immediate")
    delayed = Batch("deploy_sensor")
    retried = Batch("deploy_sensor_immediate_retry")
    shipped = Batch("deploy_sensor_shipped")
    batches = (
        (immediate, "race_immediate"),
        (delayed, "race_delayed"),
        (retried, "race_retry"),
        (shipped, "race_shipped"),
    )
    for index in range(n):  # interleaved, so all see the same scheduler and worker load
        for batch, tag in batches:
            one = start_batch(dep, batch.dag_id, 1, f"{tag}_{executor}_{index:02d}", quickest=True)
            batch.runs.update(one.runs)
    watch_deferrals(dep, [b for b, _tag in batches])
    for batch, _tag in batches:
        dep.wait_runs_finished(batch.dag_id, list(batch.runs), timeout=600)
    without, with_, recovered = outcome(dep, immediate), outcome(dep, delayed), outcome(dep, retried)
    default = outcome(dep, shipped)
    measurements[f"deferral_race_{executor}"] = {
        "without_mitigation_first_poll_delay_0": without,
        "with_mitigation_default_first_poll_delay": with_,
        "first_poll_delay_0_with_default_retries": recovered,
        "shipped_default_delay_and_default_retries": default,
        **emulator_delta(before, dep.emulator.stats()),
        "duration_s": round(time.monotonic() - started, 1),
    }
    print(
        f"\ndeferral race ({executor}): immediate {without}; delay only {with_}; "
        f"immediate + retry {recovered}; shipped (delay + retry) {default}"
    )

    # Asserted: what ships (the first-poll delay and the default retry) loses no run and no task, and
    # the retry alone recovers every raced try. Measured only: the immediate first poll (0.1.0's
    # behaviour) and the delay alone with retries=0, which under a heavily loaded scheduler can still
    # lose a run (seen: 2 of 20 while the machine also ran the unit tests).
    # (A deferral shorter than the 0.2 s DB poll may go unseen, so seen_deferred is only reported.)
    assert default["runs_failed"] == 0 and default["tis_failed"] == 0, default
    assert recovered["runs_failed"] == 0 and recovered["tis_failed"] == 0, recovered
    check_fetched(dep, shipped)
    check_fetched(dep, retried)


def test_triggerer_restart_while_sensors_are_deferred(
    deployment: Deployment, measurements: dict[str, Any]
) -> None:
    dep = deployment
    assert dep.emulator is not None
    before = dep.emulator.stats()
    started = time.monotonic()
    batch = start_batch(dep, "deploy_sensor_restart", 5, "restart")

    def all_deferred_and_assigned() -> bool:
        rows = dep.sql(
            "SELECT ti.run_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id=%s AND ti.task_id='wait' AND ti.state='deferred' AND t.triggerer_id IS NOT NULL",
            (batch.dag_id,),
        )
        return set(batch.runs) <= {r[0] for r in rows}

    wait_for(all_deferred_and_assigned, 420, "5 sensors deferred and picked up by the triggerer", 0.5)
    batch.deferred_at = dict.fromkeys(batch.runs, time.monotonic())
    dep.stop_component("triggerer")  # SIGTERM, by pid
    stopped_at = time.monotonic()
    dep.emulator.complete([i for ids in batch.runs.values() for i in ids])
    time.sleep(3)
    assert set(deferred_runs(dep, batch.dag_id)) >= set(batch.runs)  # nobody resumed them meanwhile
    dep.start_component("triggerer")
    states = dep.wait_runs_finished(batch.dag_id, list(batch.runs), timeout=600)
    result = outcome(dep, batch)
    result.update(emulator_delta(before, dep.emulator.stats()))
    result["duration_s"] = round(time.monotonic() - started, 1)
    result["resumed_after_restart_s"] = round(time.monotonic() - stopped_at, 1)
    measurements["triggerer_restart"] = result

    assert set(states.values()) == {"success"}, (states, result)
    assert result["tis_failed"] == 0 and result["tis_retried"] == 0, result
    check_fetched(dep, batch)
