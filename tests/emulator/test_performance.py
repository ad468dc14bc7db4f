"""Speed over 100,000 activities: ID filters never scan; keyset pages stay O(page).

Numbers are printed (``-s``) and documented in docs/emulator.md; the assertions use lenient bounds
because the CI box is shared. Server-side time is the envelope's ``time.processing``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.phpquery import build_query
from tests.emulator.conftest import Caller


@pytest.fixture(scope="module")
def big() -> Iterator[Caller]:
    started = time.process_time()
    emu = Bitrix24Emulator(activities=100_000, seed=1)
    print(f"\ngenerated 100,000 activities in {time.process_time() - started:.2f} s CPU")
    with emu:
        caller = Caller(emu)
        yield caller
        caller.close()


def test_batch_of_50_id_filter_lists(big: Caller) -> None:
    rng = random.Random(7)
    best = float("inf")
    for _ in range(3):
        ids = rng.sample(range(1, 100_001), 2500)
        cmd = {
            f"c{i}": "crm.activity.list?" + build_query({"filter": {"@ID": ids[i * 50 : (i + 1) * 50]}})
            for i in range(50)
        }
        body = big.ok("batch", {"halt": 0, "cmd": cmd})
        rows = [row for page in body["result"]["result"].values() for row in page]
        assert sorted(int(r["ID"]) for r in rows) == sorted(ids)
        best = min(best, body["time"]["processing"])
    print(f"\nbatch of 50 @ID list commands (2,500 rows) over 100k: {best * 1000:.1f} ms server-side")
    assert best < 0.25


def test_keyset_page_deep_in_the_table(big: Caller) -> None:
    body = big.ok(
        "crm.activity.list",
        {"order": {"ID": "ASC"}, "filter": {">ID": 99_960}, "start": -1, "select": ["ID"]},
    )
    assert [r["ID"] for r in body["result"]] == [str(i) for i in range(99_961, 100_001)]
    assert body["time"]["processing"] < 0.2


def test_offset_pages_reuse_the_match_list(big: Caller) -> None:
    query = {"filter": {">=LAST_UPDATED": "2024-07-01T00:00:00+03:00"}, "select": ["ID"]}
    first = big.ok("crm.activity.list", {**query, "start": 0})
    later = big.ok("crm.activity.list", {**query, "start": 20_000})
    assert first["total"] == later["total"] > 20_000
    assert later["time"]["processing"] < 0.1
