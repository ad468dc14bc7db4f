"""Suite-wide setup: an isolated AIRFLOW_HOME (before Airflow is imported) and shared fixtures.

Unit tests need no metadata DB: connections come from ``AIRFLOW_CONN_*`` environment variables.
End-to-end tests (``tests/e2e``) build their own SQLite AIRFLOW_HOME with ``airflow db migrate``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="b24-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "tests" / "data"  # copies of ../shared/samples (documented payloads)

pytest_plugins = ["airflow_provider_b24.testing.pytest_plugin"]
