"""One production-like deployment per test session (see ``harness.py``): startup is the expensive part.

Each scenario uses its own DAGs and activities, so sharing the deployment keeps them isolated.
Everything is started by pid in one temp dir, stopped by pid and the dir removed at the end; the
teardown fails the session if a started process group is still alive.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.deploy_harness import Deployment

pytestmark = pytest.mark.deployment

DAG_IDS = [
    "deploy_sensor",
    "deploy_sensor_immediate",
    "deploy_sensor_restart",
    "deploy_sensor_immediate_retry",
    "deploy_sensor_shipped",
    "deploy_oauth",
    "deploy_export_s3",
    "b24_mapped_fetch",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deployment/" in str(item.fspath):
            item.add_marker(pytest.mark.deployment)


@pytest.fixture(scope="session")
def measurements() -> Iterator[dict[str, Any]]:
    """Numbers the scenarios measured; printed and written to ``$B24_DEPLOYMENT_RESULTS`` if set."""
    results: dict[str, Any] = {}
    yield results
    print("\n=== deployment measurements ===\n" + json.dumps(results, indent=2, sort_keys=True))
    import os

    target = os.environ.get("B24_DEPLOYMENT_RESULTS")
    if target:
        Path(target).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def deployment(measurements: dict[str, Any]) -> Iterator[Deployment]:
    root = Path(tempfile.mkdtemp(prefix="b24-deployment-"))
    dep = Deployment(root)
    started = time.monotonic()
    try:
        try:
            dep.start()
            dep.wait_for_dags(DAG_IDS)
        except Exception:
            print(dep.log_tails())
            raise
        measurements["startup"] = {**{k: round(v, 1) for k, v in dep.timings.items()},
                                   "ready_s": round(time.monotonic() - started, 1)}  # fmt: skip
        yield dep
    finally:
        dep.stop()
        left = dep.leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left running: {left}"
        assert not root.exists(), f"{root} left behind"
        assert not dep.pg_root.exists(), f"{dep.pg_root} left behind"
