"""The collector during an export: paused, young generations collected every N pages, state restored."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.activities.collector import young_collections_only
from airflow_provider_b24.export import export_activities
from tests.unit.export.export_fakes import BASE, FakeListClient, spread_rows


@pytest.fixture
def collections() -> Any:
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_paused_then_young_collections_every_n_ticks(collections: list[int]) -> None:
    assert gc.isenabled()
    with young_collections_only(every=3) as tick:
        assert not gc.isenabled()
        garbage = [[] for _ in range(5000)]  # no automatic collection while paused
        del garbage
        for _ in range(7):
            tick()
    assert gc.isenabled()
    assert collections == [1, 1]  # after the 3rd and the 6th page, generations 0 and 1 only


def test_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), young_collections_only():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_left_alone_when_already_off(collections: list[int]) -> None:
    gc.disable()
    try:
        with young_collections_only(every=1) as tick:
            tick()
            tick()
        assert not gc.isenabled()
        assert collections == []
    finally:
        gc.enable()


def test_an_export_pauses_the_collector_and_restores_it(tmp_path: Path) -> None:
    client = FakeListClient(spread_rows(300))
    states: list[bool] = []
    original = client.iter_list

    def iter_list(method: str, params: Any = None) -> Any:
        for row in original(method, params):
            states.append(gc.isenabled())
            yield row

    client.iter_list = iter_list  # type: ignore[method-assign]
    result = export_activities(
        client, updated_from=BASE, updated_to=BASE.replace(year=2030), path=str(tmp_path / "x.jsonl")
    )
    assert result.rows == 300 and states and not any(states)
    assert gc.isenabled()
