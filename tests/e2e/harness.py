"""End-to-end harness: run real DAGs with ``airflow dags test`` in a throwaway ``AIRFLOW_HOME``.

The home is :class:`~airflow_provider_b24.testing.airflow_home.AirflowHome` (SQLite, removed at the
end); this module adds ``run_dag`` and reads back what a run left in the metadata DB (DAG-run state,
task states, XComs decoded with Airflow's serde).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_b24._compat import serde_deserialize
from airflow_provider_b24.testing.airflow_home import AirflowHome


def decode_xcom(raw: Any) -> Any:
    """An XCom value as Airflow stored it (serde JSON in the ``xcom`` table), as Python objects."""
    return serde_deserialize(json.loads(raw) if isinstance(raw, (str, bytes)) else raw)


@dataclass
class DagRunResult:
    """What one ``airflow dags test`` run left behind."""

    home: AirflowHome
    dag_id: str
    returncode: int
    output: str
    run_id: str | None = None
    state: str | None = None
    task_states: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        """The SQLite metadata DB the run wrote (for queries the helpers here do not cover)."""
        return self.home.db_path

    def task_state(self, task_id: str, map_index: int = -1) -> str | None:
        return self.task_states.get((task_id, map_index))

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The deserialized XCom value; KeyError if the task pushed none under ``key``."""
        rows = self.home.rows(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=? AND map_index=?",
            self.dag_id, self.run_id, task_id, key, map_index,
        )  # fmt: skip
        if not rows:
            raise KeyError(f"no XCom {key!r} for task {task_id!r} (map_index {map_index})")
        return decode_xcom(rows[0][0])

    def xcoms(self, task_id: str, key: str = "return_value") -> dict[int, Any]:
        """All map indexes' XCom values of a (mapped) task."""
        rows = self.home.rows(
            "SELECT map_index, value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=?",
            self.dag_id, self.run_id, task_id, key,
        )  # fmt: skip
        return {int(idx): decode_xcom(val) for idx, val in rows}

    def rendered_fields(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        rows = self.home.rows(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
            self.dag_id, self.run_id, task_id, map_index,
        )  # fmt: skip
        return json.loads(rows[0][0]) if rows else {}

    def log_text(self) -> str:
        """Every log file in the home (for secret scans)."""
        return self.home.log_text()


class AirflowRunner(AirflowHome):
    """An Airflow home that runs whole DAGs (``airflow dags test``) and collects their results."""

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
        proc = self.cli(
            *args, env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), **(env or {})}, timeout=timeout
        )
        return self.last_run(dag_id, returncode=proc.returncode, output=proc.stdout + proc.stderr)

    def last_run(self, dag_id: str, *, returncode: int, output: str) -> DagRunResult:
        """The newest run of ``dag_id`` in the metadata DB: its state and task states (if there is one)."""
        result = DagRunResult(home=self, dag_id=dag_id, returncode=returncode, output=output)
        runs = self.rows("SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", dag_id)
        if runs:
            result.run_id, result.state = runs[0]
            result.task_states = {
                (task, int(index)): state
                for task, index, state in self.rows(
                    "SELECT task_id, map_index, state FROM task_instance WHERE dag_id=? AND run_id=?",
                    dag_id,
                    result.run_id,
                )
            }
        return result
