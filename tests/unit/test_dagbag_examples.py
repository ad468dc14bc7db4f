"""Every DAG in ``dags_examples/`` imports cleanly, has the expected tasks and warns about nothing of ours."""

from __future__ import annotations

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
}

Loaded = tuple[Any, list[warnings.WarningMessage]]
OUR_CODE = (str(DAGS_FOLDER), str(REPO_ROOT / "airflow_provider_b24"))


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
    ours = [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
        and w.filename.startswith(OUR_CODE)
    ]
    assert ours == []


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
