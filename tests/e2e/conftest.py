"""End-to-end fixtures: real DAG runs with ``airflow dags test`` on a throwaway SQLite metadata DB.

``airflow db migrate`` runs once per session into a template home; each test gets a new home with a
copy of that DB (fast, isolated). Every home is a temp dir removed at teardown (see tests/e2e/harness.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_b24.testing.airflow_home import AirflowHome
from tests.e2e.harness import AirflowRunner


@pytest.fixture(scope="session")
def airflow_db_template() -> Iterator[Path]:
    """A migrated SQLite metadata DB, made once per session."""
    with AirflowHome() as home:
        home.migrate()
        yield home.db_path


@pytest.fixture
def airflow_runner(airflow_db_template: Path) -> Iterator[AirflowRunner]:
    """A fresh AIRFLOW_HOME with a copy of the migrated DB."""
    with AirflowRunner() as runner:
        runner.copy_db_from(airflow_db_template)
        yield runner
