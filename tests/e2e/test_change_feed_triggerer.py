"""The change-feed watcher in a real ``airflow triggerer`` (SQLite): asset events, durable cursor, restart.

``airflow dag-processor -n 1`` registers ``dags_examples/b24_on_activity_change.py`` and its watcher;
``airflow triggerer`` runs the watcher against the in-process emulator over HTTPS. Three waves of
changes, with the triggerer stopped between the first and the second (changes made while it is down)
and restarted: every changed ID reaches an asset event, nothing from before the watcher started
does, and the cursor lives where the docs say (Airflow 3.3: the asset state store; 3.1: a Variable).
Idle polls are one HTTP request each.

(The full topology with the scheduler, PostgreSQL and DAG runs is the deployment test's job.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.airflow_home import airflow_executable
from tests.e2e.harness import AirflowRunner

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL = 1.0
#: A known Fernet key, so this test can read the Variable Airflow 3.1 writes encrypted.
FERNET_KEY = "aGVyZS1pcy1hLWZlcm5ldC1rZXktZm9yLXRlc3RzISE="


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float, log: Path | None = None, tick: Any = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


class Triggerer:
    """``airflow triggerer`` in its own process group, stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.crashes = 0

    def keep_alive(self) -> None:
        """Restart the triggerer if it exited, as a process manager would (counted in ``crashes``).

        Airflow 3.1's trigger runner can die with "Response read out of order!" when triggers talk to
        the supervisor (apache/airflow#64620, fixed in 3.3); the triggerer process then exits.
        """
        if self.proc is not None and self.proc.poll() is not None:
            self.crashes += 1
            self.proc = None
            self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [airflow_executable(), "triggerer", "--skip-serve-logs"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Db:
    """Read-only looks into the triggerer's SQLite metadata DB."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as conn:
            try:
                return conn.execute(sql).fetchall()
            except sqlite3.OperationalError:  # a table of the other Airflow version, or locked
                return []

    def payloads(self) -> list[dict[str, Any]]:
        return [
            json.loads(extra)["payload"]
            for (extra,) in self.rows("SELECT extra FROM asset_event ORDER BY id")
            if json.loads(extra).get("from_trigger")
        ]

    def delivered(self) -> list[int]:
        return [i for p in self.payloads() for i in p["ids"]]

    def cursor(self) -> tuple[str, dict[str, Any]] | None:
        """(where, value) of the stored cursor: the asset state store (3.3) or a Variable (3.1)."""
        for key, value in self.rows("SELECT key, value FROM asset_state_store"):
            if str(key).startswith("bitrix24_changes."):
                return "asset_state_store", json.loads(value)
        for key, stored, encrypted in self.rows("SELECT key, val, is_encrypted FROM variable"):
            if str(key).startswith("bitrix24_changes__bitrix24_default__"):
                text = stored
                if encrypted:
                    from cryptography.fernet import Fernet

                    text = Fernet(FERNET_KEY.encode()).decrypt(stored.encode()).decode()
                return "variable", json.loads(text)
        return None


def airflow_33() -> bool:
    from importlib.metadata import version

    return tuple(int(p) for p in version("apache-airflow-core").split(".")[:2]) >= (3, 3)


@pytest.fixture
def setup(airflow_runner: AirflowRunner, tmp_path: Path, bitrix24_emulator_factory: Any) -> Iterator[Any]:
    emu: Bitrix24Emulator = bitrix24_emulator_factory(activities=300, seed=9)
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO_ROOT / "dags_examples" / "b24_on_activity_change.py", dags)
    extra = {"B24_EXAMPLE_CHANGE_POLL_INTERVAL": str(POLL_INTERVAL), "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY}
    # The connection lives in the metadata DB, as in production: an AIRFLOW_CONN_* variable is
    # resolved in a worker thread, which can crash Airflow 3.1's trigger runner (apache/airflow#64620).
    added = airflow_runner.cli(
        "connections", "add", "bitrix24_default", "--conn-json", emu.connection_json(), env=extra
    )
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]
    env = airflow_runner.env(
        {
            **extra,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        }
    )
    triggerer = Triggerer(env, tmp_path / "triggerer.log")
    try:
        yield emu, env, triggerer, Db(airflow_runner.db_path), tmp_path
    finally:
        triggerer.stop()


def test_three_waves_with_a_triggerer_restart(setup: Any) -> None:
    emu, env, triggerer, db, _tmp = setup
    emu.store.complete(1)  # before the watcher exists: history
    parsed = subprocess.run(
        [airflow_executable(), "dag-processor", "-n", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stdout[-3000:] + parsed.stderr[-3000:]
    assert db.rows("SELECT classpath FROM trigger") == [
        ("airflow_provider_b24.triggers.activity_changes.Bitrix24ActivityChangesTrigger",)
    ]
    triggerer.start()
    where, start = wait_for("the watcher's first cursor", db.cursor, 180, triggerer.log, triggerer.keep_alive)
    assert where == ("asset_state_store" if airflow_33() else "variable")
    assert start["ids"] == [] and start["source"] == "poll"

    # idle: one HTTP request per poll
    emu.stats_reset()
    time.sleep(5 * POLL_INTERVAL)
    idle = emu.stats
    assert idle["requests"] >= 3 and idle["methods"] == {"batch": idle["requests"]}
    assert idle["batch_commands"] == 2 * idle["requests"]

    def wave(ids: list[int]) -> None:
        for activity_id in ids:
            emu.store.complete(activity_id)

    wave1, wave2, wave3 = [10, 11, 12], [20, 21], [30, 31, 32]
    changed_at = time.monotonic()
    wave(wave1)
    wait_for(
        "wave 1 in asset events",
        lambda: set(wave1) <= set(db.delivered()),
        120,
        triggerer.log,
        triggerer.keep_alive,
    )
    delay1 = time.monotonic() - changed_at
    wait_for(
        "the cursor after wave 1", lambda: set(wave1) <= set((db.cursor() or ("", {}))[1].get("ids", [])), 30
    )

    triggerer.stop()
    wave(wave2)  # while no triggerer runs
    triggerer.start()
    wait_for(
        "wave 2 after the restart",
        lambda: set(wave2) <= set(db.delivered()),
        180,
        triggerer.log,
        triggerer.keep_alive,
    )
    changed_at = time.monotonic()
    wave(wave3)
    wait_for(
        "wave 3 in asset events",
        lambda: set(wave3) <= set(db.delivered()),
        120,
        triggerer.log,
        triggerer.keep_alive,
    )
    delay3 = time.monotonic() - changed_at

    delivered = db.delivered()
    assert sorted(set(delivered)) == sorted(wave1 + wave2 + wave3)  # all, and no history (ID 1)
    if triggerer.crashes == 0:
        assert len(delivered) == len(set(delivered))  # the cursor was stored before the restart: no repeat
    if airflow_33():
        assert triggerer.crashes == 0, triggerer.log.read_text(errors="replace")[-4000:]
    log = triggerer.log.read_text(errors="replace")
    assert "Bitrix24 change feed resumes from" in log
    assert all(p["source"] == "poll" and p["deleted_ids"] == [] for p in db.payloads())
    print(
        f"\nchange-to-asset-event delay: wave 1 {delay1:.1f} s, wave 3 {delay3:.1f} s "
        f"(poll_interval {POLL_INTERVAL} s); idle: {idle['requests']} polls, 1 request each; "
        f"trigger-runner crashes survived (apache/airflow#64620): {triggerer.crashes}"
    )
