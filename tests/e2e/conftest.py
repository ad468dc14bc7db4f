"""End-to-end harness: run real DAGs with ``airflow dags test`` on a throwaway SQLite metadata DB.

``airflow db migrate`` runs once per session into a template; each test copies it (fast, isolated).
Results (DAG-run state, task states, XComs) are read back from the SQLite DB the run wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")


def _deserialize(raw: Any) -> Any:
    """Decode an XCom value as Airflow stored it (serde JSON) into Python objects."""
    try:
        from airflow.sdk.serde import deserialize  # Airflow >= 3.2
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serde import deserialize
    value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return deserialize(value)


def base_env(
    home: Path, dags_folder: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for an Airflow subprocess: our own AIRFLOW_HOME, SQLite, no examples."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    if dags_folder is not None:
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    env.update(extra or {})
    return env


@dataclass
class DagRunResult:
    """What one ``airflow dags test`` run left behind."""

    dag_id: str
    returncode: int
    output: str
    db_path: Path
    run_id: str | None = None
    state: str | None = None
    task_states: dict[tuple[str, int], str] = field(default_factory=dict)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    def task_state(self, task_id: str, map_index: int = -1) -> str | None:
        return self.task_states.get((task_id, map_index))

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The deserialized XCom value; KeyError if the task pushed none under ``key``."""
        rows = self._rows(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=? AND map_index=?",
            (self.dag_id, self.run_id, task_id, key, map_index),
        )
        if not rows:
            raise KeyError(f"no XCom {key!r} for task {task_id!r} (map_index {map_index})")
        return _deserialize(rows[0][0])

    def xcoms(self, task_id: str, key: str = "return_value") -> dict[int, Any]:
        """All map indexes' XCom values of a (mapped) task."""
        rows = self._rows(
            "SELECT map_index, value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=?",
            (self.dag_id, self.run_id, task_id, key),
        )
        return {int(idx): _deserialize(val) for idx, val in rows}

    def rendered_fields(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        rows = self._rows(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
            (self.dag_id, self.run_id, task_id, map_index),
        )
        return json.loads(rows[0][0]) if rows else {}

    def log_text(self, home: Path) -> str:
        """Every task log file this run wrote (for secret scans)."""
        parts = []
        for path in sorted((home / "logs").rglob("*")):
            if path.is_file():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


class AirflowRunner:
    """Runs Airflow CLI commands against one throwaway AIRFLOW_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db_path = home / "airflow.db"

    def cli(
        self,
        *args: str,
        dags_folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIRFLOW, *args],
            env=base_env(self.home, dags_folder, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_dag(
        self,
        dag_id: str,
        dags_folder: Path,
        *,
        env: Mapping[str, str] | None = None,
        conf: Mapping[str, Any] | None = None,
        logical_date: str | None = None,
        timeout: float = 300,
    ) -> DagRunResult:
        """``airflow dags test`` one DAG and collect its run's state, task states and XCom access."""
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        proc = self.cli(*args, dags_folder=dags_folder, env=env, timeout=timeout)
        result = DagRunResult(
            dag_id=dag_id, returncode=proc.returncode, output=proc.stdout + proc.stderr, db_path=self.db_path
        )
        with sqlite3.connect(self.db_path) as conn:
            row = conn.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            if row:
                result.run_id, result.state = row
                result.task_states = {
                    (t, int(m)): s
                    for t, m, s in conn.execute(
                        "SELECT task_id, map_index, state FROM task_instance WHERE dag_id=? AND run_id=?",
                        (dag_id, result.run_id),
                    )
                }
        return result


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite metadata DB, made once per session."""
    home = tmp_path_factory.mktemp("airflow-template")
    proc = subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture
def airflow_runner(tmp_path: Path, airflow_db_template: Path) -> Iterator[AirflowRunner]:
    """A fresh AIRFLOW_HOME with a copy of the migrated DB."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    yield AirflowRunner(home)
