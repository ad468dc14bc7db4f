"""Every DAG in ``dags_examples/`` imports cleanly, has the expected tasks and warns about nothing of ours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

DAGS_FOLDER = REPO_ROOT / "dags_examples"

#: dag_id -> the task IDs it must have (examples written by other engineers may add DAGs: they are
#: checked for import errors and warnings, and for having tasks at all).
EXPECTED_TASKS = {
    "b24_activities_by_id": {
        "find_activity_ids",
        "fetch_activities",
        "per_user_stats",
        "overdue_open",
        "call_totals",
        "write_report",
    },
    "b24_wait_for_completion": {"wait_for_call", "follow_up"},
    "b24_mapped_fetch": {"chunk_ids", "fetch_chunk", "combine"},
    "b24_on_activity_change": {"changed_ids", "fetch_activities", "completed_calls"},
}

Loaded = tuple[Any, list[warnings.WarningMessage]]
OUR_CODE = (str(DAGS_FOLDER), str(REPO_ROOT / "airflow_provider_b24"))


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
        for w in caught
        if w.filename.startswith(OUR_CODE)  # any warning our code triggers, deprecations above all
    ]


def _dagbag_class() -> Any:
    try:  # Airflow >= 3.2 (3.3 deprecates the airflow.models path)
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag
    return DagBag


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    dagbag_cls = _dagbag_class()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dagbag_cls(dag_folder=str(DAGS_FOLDER))
    return bag, list(caught)


def test_no_import_errors(loaded: Loaded) -> None:
    bag, _ = loaded
    assert bag.import_errors == {}


def test_expected_dags_and_tasks(loaded: Loaded) -> None:
    bag, _ = loaded
    assert set(EXPECTED_TASKS) <= set(bag.dag_ids)
    for dag_id, task_ids in EXPECTED_TASKS.items():
        assert set(bag.dags[dag_id].task_ids) == task_ids, dag_id
    for dag_id in bag.dag_ids:
        assert bag.dags[dag_id].task_ids, f"{dag_id} has no tasks"


def test_every_example_file_defines_a_dag(loaded: Loaded) -> None:
    bag, _ = loaded
    files = {Path(dag.fileloc).name for dag in bag.dags.values()}
    assert files == {p.name for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_")}


def test_dags_are_documented_and_manual(loaded: Loaded) -> None:
    bag, _ = loaded
    for dag_id in EXPECTED_TASKS:
        dag = bag.dags[dag_id]
        assert dag.doc_md and "Connection" in dag.doc_md, dag_id
        assert "bitrix24" in dag.tags


def test_no_deprecation_warnings_from_our_code(loaded: Loaded) -> None:
    _, caught = loaded
    assert _ours(caught) == []


#: A fresh interpreter: our modules are imported for the first time while warnings are recorded, so
#: import-time warnings show even when other tests of this session imported them already. (Airflow is
#: imported first: its logging setup would otherwise take over ``warnings.showwarning``.)
_FRESH_PARSE = """
import json, sys, warnings
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "errors": sorted(bag.import_errors),
    "warnings": [[w.filename, w.lineno, w.category.__name__, str(w.message)] for w in caught],
}))
"""

_PROBE = """
# Not a DAG, but DagBag's safe mode only parses files that mention airflow and dag.
from __future__ import annotations
import warnings
warnings.warn("probe: this warning must be seen", DeprecationWarning, stacklevel=1)
"""


def test_no_warnings_from_our_code_in_a_fresh_interpreter(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    shutil.copytree(DAGS_FOLDER, dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "zz_warning_probe.py").write_text(_PROBE)  # proves that warnings are recorded at all
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env |= {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": ""}
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_PARSE, str(dags)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert set(EXPECTED_TASKS) <= set(report["dag_ids"])
    ours = [
        f"{Path(name).name}:{line}: {category}: {message}"
        for name, line, category, message in report["warnings"]
        if name.startswith((str(dags), str(REPO_ROOT / "airflow_provider_b24")))
    ]
    probe = [w for w in ours if w.startswith("zz_warning_probe.py")]
    assert len(probe) == 1, report["warnings"]
    assert [w for w in ours if w not in probe] == []


def test_mapped_fetch_is_bounded_by_the_portal_pool(loaded: Loaded) -> None:
    bag, _ = loaded
    fetch = bag.dags["b24_mapped_fetch"].get_task("fetch_chunk")
    assert fetch.pool == "bitrix24_portal"
    assert fetch.max_active_tis_per_dagrun == 2


def test_wait_dag_defers(loaded: Loaded) -> None:
    bag, _ = loaded
    sensor = bag.dags["b24_wait_for_completion"].get_task("wait_for_call")
    assert sensor.deferrable is True
    assert sensor.until == "completed"
