"""iter_list against a small fake portal (requests-mock): keyset and offset paging, no row lost."""

from __future__ import annotations

import bisect
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests_mock as rm

from airflow_provider_b24.client.errors import Bitrix24ServerError
from airflow_provider_b24.client.pagination import keyset_plan, rows_of
from airflow_provider_b24.exceptions import Bitrix24ConfigError, Bitrix24NotFound
from tests.unit.client.b24_client_helpers import BASE


def parse_php(query: str) -> dict[str, Any]:
    """A tiny PHP parse_str: ``a[b][0]=x`` -> nested dicts (numeric keys stay dict keys)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        parts = re.findall(r"^[^\[]+|\[([^\]]*)\]", key)
        head = key.split("[", 1)[0]
        path = [head] + [p for p in parts[1:]]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value, key=int)]
    return list(value or [])


class FakePortal:
    """crm.activity.list over ``n`` rows (IDs with gaps) + batch with ``$result`` substitution."""

    def __init__(self, n: int, *, duplicates: bool = False, broken_refs: bool = False) -> None:
        self.rows = [
            {"ID": str(i * 3), "SUBJECT": f"s{i}", "START_TIME": str(10_000 - i)} for i in range(1, n + 1)
        ]
        self.ids = [int(r["ID"]) for r in self.rows]
        self.duplicates = duplicates
        self.broken_refs = broken_refs
        self.requests = 0
        self.batches = 0

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        flt = params.get("filter") or {}
        rows = self.rows  # already in ID order
        if ">ID" in flt and flt[">ID"] not in ("", None):
            rows = rows[bisect.bisect_right(self.ids, int(flt[">ID"])) :]
        order = params.get("order") or {"START_TIME": "ASC"}
        keys = list(order)
        if keys != ["ID"]:
            rows = sorted(rows, key=lambda r: tuple(int(r[k]) for k in keys))
        if self.duplicates:
            rows = [r for r in rows for _ in (0, 1)]
        start = int(params.get("start", 0))
        if start == -1:
            page = rows[:50]
            result: dict[str, Any] = {"result": page, "total": 0}
        else:
            page = rows[start : start + 50]
            result = {"result": page, "total": len(rows)}
            if start + 50 < len(rows):
                result["next"] = start + 50
        select = as_list(params.get("select"))
        if select and "*" not in select:
            result["result"] = [{k: v for k, v in r.items() if k in select} for r in result["result"]]
        return result

    def handle(self, request: Any, context: Any) -> Any:
        self.requests += 1
        body = json.loads(request.body)
        method = request.path.rsplit("/", 1)[-1]
        if method == "crm.activity.list":
            return self.list(body)
        assert method == "batch"
        self.batches += 1
        results: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        for key, cmd in body["cmd"].items():
            _name, _, query = cmd.partition("?")

            def sub(match: re.Match[str]) -> str:
                path = re.findall(r"\[([^\]]*)\]", match.group(0))
                node: Any = results
                try:
                    for part in path:
                        node = node[int(part)] if isinstance(node, list) else node[part]
                except (KeyError, IndexError):
                    return ""  # Bitrix substitutes nothing for a missing row
                if self.broken_refs:
                    return ""
                return str(node)

            query = re.sub(r"\$result(\[[^\]]*\])+", sub, query)
            answer = self.list(parse_php(query))
            results[key] = answer["result"]
            totals[key] = answer["total"]
        return {"result": {"result": results, "result_error": [], "result_total": totals}, "time": {}}


def collect(client: Any, portal: FakePortal, params: dict[str, Any] | None = None, **kw: Any) -> list[Any]:
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", json=portal.handle)
        mock.post(BASE + "batch", json=portal.handle)
        return list(client.iter_list("crm.activity.list", params or {}, **kw))


@pytest.mark.parametrize("n", [0, 1, 49, 50, 51, 100, 2550, 2551, 5049, 5050, 5051])
def test_keyset_every_row_once(client, n) -> None:
    portal = FakePortal(n)
    rows = collect(client, portal, {"select": ["ID", "SUBJECT"]})
    ids = [int(r["ID"]) for r in rows]
    assert ids == [3 * i for i in range(1, n + 1)]
    # one plain call, then batches of 50 pages
    expected = 1 if n < 50 else 1 + -(-(n - 50 + 1) // 2500)
    assert portal.requests == expected


def test_keyset_10000_rows_take_five_requests(client) -> None:
    portal = FakePortal(10_000)
    rows = collect(client, portal)
    assert len(rows) == 10_000
    assert len({r["ID"] for r in rows}) == 10_000
    assert portal.requests == 5
    assert client.stats.requests == 5


def test_keyset_drops_duplicates_from_bindings(client) -> None:
    portal = FakePortal(130, duplicates=True)
    rows = collect(client, portal, {"filter": {"BINDINGS": [{"OWNER_TYPE_ID": 2}]}})
    assert [int(r["ID"]) for r in rows] == [3 * i for i in range(1, 131)]


def test_keyset_survives_broken_references(client) -> None:
    portal = FakePortal(300, broken_refs=True)
    rows = collect(client, portal)
    assert [int(r["ID"]) for r in rows] == [3 * i for i in range(1, 301)]


def test_keyset_respects_user_id_lower_bound_and_strips_added_id(client) -> None:
    portal = FakePortal(200)
    rows = collect(client, portal, {"filter": {">=ID": 300}, "select": ["SUBJECT"]})
    assert len(rows) == 101
    assert all(set(r) == {"SUBJECT"} for r in rows)


def test_offset_mode_for_user_order(client) -> None:
    portal = FakePortal(260)
    rows = collect(client, portal, {"order": {"START_TIME": "ASC"}})
    ids = [int(r["ID"]) for r in rows]
    assert sorted(ids) == [3 * i for i in range(1, 261)]
    assert len(ids) == len(set(ids))
    assert ids[0] == 780  # START_TIME ascending = ID descending here
    assert portal.requests == 2  # first page, then one batch of the 5 remaining offsets


def test_offset_mode_respects_user_start(client) -> None:
    portal = FakePortal(120)
    rows = collect(client, portal, {"order": {"ID": "ASC"}, "start": 100})
    assert [int(r["ID"]) for r in rows] == [3 * i for i in range(101, 121)]


def test_offset_mode_with_start_minus_one_is_one_page(client) -> None:
    portal = FakePortal(120)
    rows = collect(client, portal, {"order": {"ID": "ASC"}, "start": -1})
    assert len(rows) == 50


def test_fast_false_forces_offsets(client) -> None:
    portal = FakePortal(120)
    rows = collect(client, portal, fast=False)
    assert len(rows) == 120


def test_generator_is_lazy(client) -> None:
    portal = FakePortal(500)
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", json=portal.handle)
        mock.post(BASE + "batch", json=portal.handle)
        iterator = client.iter_list("crm.activity.list")
        assert portal.requests == 0
        next(iterator)
        assert portal.requests == 1


def test_page_error_inside_chain_is_raised(client) -> None:
    def batch(request: Any, context: Any) -> Any:
        return {
            "result": {"result": [], "result_error": {"p0": {"error": "", "error_description": "Not found"}}}
        }

    first = {"result": [{"ID": str(i)} for i in range(1, 51)]}
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", json=first)
        mock.post(BASE + "batch", json=batch)
        iterator = client.iter_list("crm.activity.list")
        assert len([next(iterator) for _ in range(50)]) == 50
        with pytest.raises(Bitrix24NotFound):
            next(iterator)


def test_keyset_plan_rules() -> None:
    assert keyset_plan("crm.activity.list", {}, None) is not None
    assert keyset_plan("crm.activity.list", {"order": {"id": "asc"}}, None) is not None
    assert keyset_plan("crm.activity.list", {"order": {"ID": "DESC"}}, None) is None
    assert keyset_plan("crm.activity.list", {"start": 0}, None) is None
    assert keyset_plan("crm.activity.list", {"filter": {">ID": "abc"}}, None) is None
    assert keyset_plan("some.other.list", {}, None) is None
    assert keyset_plan("some.other.list", {}, True) is not None
    with pytest.raises(Bitrix24ConfigError):
        keyset_plan("crm.activity.list", {"order": {"SUBJECT": "ASC"}}, True)


def test_rows_of_shapes() -> None:
    with pytest.raises(Bitrix24ServerError, match="without a result"):
        rows_of(None)  # a broken answer, not "no more rows"
    assert rows_of([1, 2]) == [1, 2]
    assert rows_of({"items": [{"id": 1}]}) == [{"id": 1}]
    assert rows_of({"1": {"ID": "1"}, "2": {"ID": "2"}}) == [{"ID": "1"}, {"ID": "2"}]
