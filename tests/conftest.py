"""Suite-wide setup: a private temp dir checked for leftovers, an isolated AIRFLOW_HOME (both before
Airflow is imported), shared fixtures.

Every temp file the session creates lands in a private folder that must be empty at the end (see
tests/tempdir_guard.py): a test that leaves one behind fails the run. Unit tests need no metadata DB:
connections come from ``AIRFLOW_CONN_*`` environment variables. End-to-end tests (``tests/e2e``) run
Airflow in their own SQLite homes (``airflow_provider_b24.testing.airflow_home.AirflowHome``).
Test helper modules are imported by their absolute name (``from tests.e2e.harness import ...``):
every folder under tests/ is a package.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests import tempdir_guard
from tests.tempdir_guard import (  # the check's hooks, registered as this conftest's own
    pytest_configure,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

_SESSION_TMP = tempdir_guard.start()
os.environ["AIRFLOW_HOME"] = str(_SESSION_TMP.airflow_home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "tests" / "data"  # copies of ../shared/samples (documented payloads)

pytest_plugins = ["airflow_provider_b24.testing.pytest_plugin"]
__all__ = ["REPO_ROOT", "SAMPLES_DIR", "pytest_configure", "pytest_sessionfinish", "pytest_terminal_summary"]
