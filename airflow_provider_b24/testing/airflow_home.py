"""``AirflowHome``: a throwaway ``AIRFLOW_HOME`` with a SQLite metadata DB, for running real DAGs.

The provider's end-to-end, UI and secrets tests and ``make demo`` build their Airflow this way; your
own tests can too::

    from airflow_provider_b24.testing.airflow_home import AirflowHome

    with AirflowHome(dags_folder="dags") as home:  # a new b24-airflow-home-* temp dir
        home.migrate()  # airflow db migrate
        proc = home.cli("dags", "test", "my_dag", env={"AIRFLOW_CONN_BITRIX24_DEFAULT": conn_json})
        state = home.rows("SELECT state FROM dag_run WHERE dag_id=?", "my_dag")
    # the folder, its DB and its logs are gone

It imports no Airflow: every Airflow command runs as a subprocess (the ``airflow`` script next to
``sys.executable``) whose environment points at this home and inherits no ``AIRFLOW_*`` variable of
the calling process, so a test session's own Airflow settings and connections do not leak in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

__all__ = ["AirflowHome", "AirflowHomeError", "airflow_executable", "stop_process_group"]

TEMP_PREFIX = "b24-airflow-home-"


class AirflowHomeError(RuntimeError):
    """An Airflow command of the home failed; the message ends with the tail of its output."""


def airflow_executable() -> str:
    """The ``airflow`` script of this interpreter's environment (else the one on ``PATH``)."""
    script = Path(sys.executable).parent / "airflow"
    if script.exists():
        return str(script)
    found = shutil.which("airflow")
    if found is None:
        raise AirflowHomeError(f"no `airflow` executable next to {sys.executable} or on PATH")
    return found


class AirflowHome:
    """An ``AIRFLOW_HOME`` directory, the environment that selects it, and Airflow CLI calls in it.

    Args:
        dags_folder: ``[core] dags_folder`` (None: Airflow's default, ``<home>/dags``).
        env: extra environment for every command (``AIRFLOW__SECTION__KEY`` settings, connections).
        path: use this directory (created if missing, never removed: the caller owns it); None
            creates a ``b24-airflow-home-*`` temp dir that :meth:`remove` (and ``with``) deletes.
    """

    def __init__(
        self,
        *,
        dags_folder: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.dags_folder = dags_folder
        self.extra_env = dict(env or {})
        self.requested_path = path
        self._path: Path | None = None
        self._owned = False

    # ------------------------------------------------------------------ lifecycle
    def create(self) -> AirflowHome:
        """Make the directory (idempotent); returns self."""
        if self._path is None:
            if self.requested_path is None:
                self._path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
                self._owned = True
            else:
                self._path = Path(self.requested_path).resolve()
                self._path.mkdir(parents=True, exist_ok=True)
        return self

    def remove(self) -> None:
        """Delete the directory if this object made it (idempotent)."""
        if self._path is not None and self._owned:
            shutil.rmtree(self._path, ignore_errors=True)
        self._path = None
        self._owned = False

    def __enter__(self) -> AirflowHome:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # ------------------------------------------------------------------ paths
    @property
    def path(self) -> Path:
        """The ``AIRFLOW_HOME`` directory (after :meth:`create`)."""
        if self._path is None:
            raise RuntimeError("the Airflow home is not created (use `with AirflowHome(...)` or create())")
        return self._path

    @property
    def db_path(self) -> Path:
        """The SQLite metadata DB file."""
        return self.path / "airflow.db"

    @property
    def logs_path(self) -> Path:
        """Where Airflow writes task logs (``[logging] base_log_folder``'s default)."""
        return self.path / "logs"

    # ------------------------------------------------------------------ commands
    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a command in this home: the caller's minus every ``AIRFLOW_*`` variable,
        plus the home's settings, ``env`` and ``extra`` (later ones win)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
        base.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            }
        )
        if self.dags_folder is not None:
            base["AIRFLOW__CORE__DAGS_FOLDER"] = str(self.dags_folder)
        base.update(self.extra_env)
        base.update(extra or {})
        return base

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` to completion; output captured as text, exit code not checked."""
        return subprocess.run(  # noqa: S603 (the venv's own airflow script)
            [airflow_executable(), *args],
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def check_cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`cli`, raising :class:`AirflowHomeError` with the output's tail on a non-zero exit."""
        proc = self.cli(*args, env=env, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
            raise AirflowHomeError(f"`airflow {' '.join(args)}` exited with {proc.returncode}:\n{tail}")
        return proc

    def migrate(self, *, timeout: float = 300) -> AirflowHome:
        """``airflow db migrate``: create the metadata DB; returns self."""
        self.check_cli("db", "migrate", timeout=timeout)
        return self

    def copy_db_from(self, source: str | Path) -> AirflowHome:
        """Use a copy of an already migrated SQLite DB (faster than migrating each home); returns self."""
        shutil.copy(source, self.db_path)
        return self

    def popen(
        self, *args: str, log: IO[Any] | int | None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """Start ``airflow <args>`` (a server, a triggerer) in a new process group; stop it with
        :func:`stop_process_group`. ``log`` receives stdout and stderr."""
        return subprocess.Popen(  # noqa: S603 (the venv's own airflow script)
            [airflow_executable(), *args],
            env=self.env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the metadata DB (e.g. ``dag_run``, ``task_instance``, ``xcom``)."""
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as conn:
            return conn.execute(sql, params).fetchall()

    def log_text(self) -> str:
        """Every file under ``logs/`` (task, DAG-processor logs), concatenated: for text scans."""
        if not self.logs_path.exists():
            return ""
        files = sorted(p for p in self.logs_path.rglob("*") if p.is_file())
        return "\n".join(p.read_text(errors="replace") for p in files)


def stop_process_group(proc: subprocess.Popen[Any], *, grace: float = 10) -> None:
    """SIGTERM a process started in its own session, wait ``grace`` s, then SIGKILL what is left of its
    group (uvicorn workers and task runners can outlive their parent for a moment)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
