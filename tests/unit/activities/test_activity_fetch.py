"""fetch_activities against a small in-memory fake of the client's ``batch`` contract.

The fake follows docs/architecture.md: ``batch({key: (method, params)}) -> BatchResult`` with
``.results``, ``.errors`` and ``.requests`` (≤50 commands per HTTP request, split in order). Real HTTP
against the emulator is covered in tests/integration/test_operator_emulator.py.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest

from airflow_provider_b24.activities import (
    ActivityParseError,
    FetchProgress,
    FetchStrategy,
    InvalidActivityIds,
    InvalidSelect,
    coerce_select,
    fetch_activities,
    max_requests,
    parse_activities,
)
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24Error,
    Bitrix24InsufficientScope,
    Bitrix24MethodNotFound,
    Bitrix24NotFound,
    Bitrix24RateLimited,
)
from tests.unit.activities.fakes import FakeClient, fake_row


class TestListStrategy:
    @pytest.mark.parametrize(
        ("n", "requests", "commands"),
        [(1, 1, 1), (50, 1, 1), (51, 1, 2), (2500, 1, 50), (2501, 2, 51), (10000, 4, 200)],
    )
    def test_request_counts(self, n: int, requests: int, commands: int) -> None:
        client = FakeClient(range(1, n + 1))
        result = fetch_activities(client, list(range(1, n + 1)))
        assert result.requests == client.requests == requests == math.ceil(n / 2500)
        assert sum(len(b) for b in client.batches) == commands
        assert all(len(b) <= 50 for b in client.batches)
        assert len(result.activities) == n
        assert result.missing_ids == []
        assert result.strategy is FetchStrategy.LIST

    def test_command_shape(self) -> None:
        client = FakeClient(range(1, 121))
        fetch_activities(client, list(range(1, 121)))
        (batch,) = client.batches
        assert list(batch) == ["ids0", "ids1", "ids2"]
        for number, (method, params) in enumerate(batch.values()):
            assert method == "crm.activity.list"
            assert params == {
                "filter": {"@ID": list(range(1 + 50 * number, min(121, 51 + 50 * number)))},
                "select": ["*"],
                "start": -1,
            }

    def test_input_order_is_kept(self) -> None:
        ids = list(range(1, 301))
        random.Random(7).shuffle(ids)
        client = FakeClient(range(1, 301))
        result = fetch_activities(client, ids)
        assert [int(r["ID"]) for r in result.activities] == ids

    def test_duplicates_are_fetched_once(self) -> None:
        client = FakeClient(range(1, 10))
        result = fetch_activities(client, [3, 1, 3, "1", {"ID": "2"}, 3])
        assert [int(r["ID"]) for r in result.activities] == [3, 1, 2]
        (batch,) = client.batches
        assert batch["ids0"][1]["filter"]["@ID"] == [3, 1, 2]

    def test_missing_ids_in_input_order(self) -> None:
        client = FakeClient(range(1, 100), hidden={7, 3})
        result = fetch_activities(client, [200, 7, 1, 3, 150, 2])
        assert [int(r["ID"]) for r in result.activities] == [1, 2]
        assert result.missing_ids == [200, 7, 3, 150]
        assert result.errors == {}  # the list cannot tell deleted from not visible

    def test_rows_are_raw(self) -> None:
        result = fetch_activities(FakeClient([5]), [5])
        assert result.activities[0]["ID"] == "5"
        assert result.activities[0]["SETTINGS"] == []

    @pytest.mark.parametrize(
        ("select", "sent"),
        [
            (None, ["*"]),
            (["COMMUNICATIONS"], ["*", "COMMUNICATIONS"]),
            (["*", "FILES", "COMMUNICATIONS"], ["*", "FILES", "COMMUNICATIONS"]),
            (["SUBJECT"], ["ID", "SUBJECT"]),
            ("communications", ["*", "COMMUNICATIONS"]),
        ],
    )
    def test_select(self, select: Any, sent: list[str]) -> None:
        client = FakeClient([5])
        result = fetch_activities(client, [5], select=select)
        assert client.batches[0]["ids0"][1]["select"] == sent
        assert ("COMMUNICATIONS" in result.activities[0]) == ("COMMUNICATIONS" in sent)

    def test_list_command_error_is_raised(self) -> None:
        client = FakeClient(range(1, 200))
        client.command_errors["ids1"] = Bitrix24AccessDenied("Access denied.", method="crm.activity.list")
        with pytest.raises(Bitrix24AccessDenied):
            fetch_activities(client, list(range(1, 200)))

    def test_rows_keyed_by_position_and_unrequested_rows(self) -> None:
        class Odd(FakeClient):
            def batch(self, commands: Any, *, halt: bool = False) -> Any:
                out = super().batch(commands, halt=halt)
                rows = [*out.results["ids0"], fake_row(999)]
                out.results["ids0"] = {str(i): row for i, row in enumerate(rows)}
                return out

        result = fetch_activities(Odd(range(1, 5)), [4, 2])
        assert [r["ID"] for r in result.activities] == ["4", "2"]


class TestGetStrategy:
    @pytest.mark.parametrize(("n", "requests"), [(1, 1), (50, 1), (51, 2), (120, 3)])
    def test_request_counts(self, n: int, requests: int) -> None:
        client = FakeClient(range(1, n + 1))
        result = fetch_activities(client, list(range(1, n + 1)), strategy="get")
        assert result.requests == requests
        assert [len(b) for b in client.batches] == [min(50, n - 50 * i) for i in range(requests)]
        assert all(method == "crm.activity.get" for b in client.batches for method, _ in b.values())
        assert len(result.activities) == n

    def test_bad_id_error_is_per_id(self) -> None:
        client = FakeClient(range(1, 5))
        client.command_errors["id2"] = Bitrix24BadRequest("ID is not defined or invalid.")
        result = fetch_activities(client, [1, 2], strategy="get")
        assert result.missing_ids == [2]
        assert isinstance(result.errors[2], Bitrix24BadRequest)

    def test_exact_per_id_errors(self) -> None:
        client = FakeClient(range(1, 10), hidden={4})
        result = fetch_activities(client, [1, 4, 77, 2], strategy=FetchStrategy.GET)
        assert [r["ID"] for r in result.activities] == ["1", "2"]
        assert result.missing_ids == [4, 77]
        assert isinstance(result.errors[4], Bitrix24AccessDenied)
        assert isinstance(result.errors[77], Bitrix24NotFound)

    def test_select_projects_plain_fields(self) -> None:
        result = fetch_activities(FakeClient([3]), [3], strategy="get", select=["SUBJECT"])
        assert result.activities == [{"ID": "3", "SUBJECT": "Activity 3"}]

    def test_select_only_fields_are_refused_before_any_request(self) -> None:
        client = FakeClient([3])
        with pytest.raises(InvalidSelect, match="strategy='list'"):
            fetch_activities(client, [3], strategy="get", select=["COMMUNICATIONS"])
        assert client.requests == 0

    @pytest.mark.parametrize(
        "error",
        [
            Bitrix24AuthError("Invalid request credentials", code="INVALID_CREDENTIALS"),
            Bitrix24InsufficientScope("scope", code="insufficient_scope"),
            Bitrix24RateLimited("Too many requests", code="QUERY_LIMIT_EXCEEDED"),
            Bitrix24MethodNotFound("Method not found!", code="ERROR_METHOD_NOT_FOUND"),
            RuntimeError("boom"),
        ],
    )
    def test_whole_call_errors_are_raised(self, error: Exception) -> None:
        client = FakeClient(range(1, 5))
        client.command_errors["id2"] = error
        with pytest.raises(type(error)):
            fetch_activities(client, [1, 2], strategy="get")


class TestGeneral:
    def test_invalid_ids_fail_before_any_request(self) -> None:
        client = FakeClient([1])
        with pytest.raises(InvalidActivityIds, match="position 1"):
            fetch_activities(client, [1, "abc"])
        assert client.requests == 0

    @pytest.mark.parametrize("ids", [[], "", "[]", ()])
    def test_empty_makes_no_request(self, ids: Any) -> None:
        client = FakeClient([1])
        result = fetch_activities(client, ids)
        assert (result.activities, result.missing_ids, result.requests) == ([], [], 0)
        assert client.requests == 0

    def test_unknown_strategy(self) -> None:
        with pytest.raises(ValueError, match="strategy must be one of 'list', 'get'"):
            fetch_activities(FakeClient([1]), [1], strategy="bulk")

    @pytest.mark.parametrize("concurrency", [1, 2, 4, 16])
    def test_parallel_batches_change_nothing_but_wall_time(self, concurrency: int) -> None:
        ids = list(range(12000, 0, -1))  # reverse order: the output must follow the input anyway
        client = FakeClient(range(1, 12001))
        seen: list[FetchProgress] = []
        result = fetch_activities(client, ids, progress=seen.append, concurrency=concurrency)
        assert [row["ID"] for row in result.activities] == [str(i) for i in ids]
        assert result.missing_ids == []
        assert result.requests == client.requests == 5  # ceil(12000 / 2500), whatever the concurrency
        assert len(seen) == 5  # one progress call per batch, in completion order
        assert (seen[-1].done, seen[-1].found, seen[-1].requests) == (12000, 12000, 5)

    @pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "4"])
    def test_concurrency_must_be_a_positive_int(self, concurrency: Any) -> None:
        client = FakeClient([1])
        with pytest.raises(ValueError, match="concurrency must be a positive integer"):
            fetch_activities(client, [1], concurrency=concurrency)
        assert client.requests == 0

    def test_progress_per_request(self) -> None:
        seen: list[FetchProgress] = []
        client = FakeClient(range(1, 6001))
        result = fetch_activities(client, list(range(1, 6001)), progress=seen.append, concurrency=1)
        assert [(p.done, p.total, p.found, p.requests) for p in seen] == [
            (2500, 6000, 2500, 1),
            (5000, 6000, 5000, 2),
            (6000, 6000, 6000, 3),
        ]
        assert [p.limiter_wait_s for p in seen] == [0.5, 1.0, 1.5]
        assert result.limiter_wait_s == 1.5
        assert all(p.elapsed_s >= 0 for p in seen)

    def test_parse_returns_parsed_rows_in_input_order(self) -> None:
        ids = list(range(6000, 0, -1))
        raw = fetch_activities(FakeClient(range(1, 6001)), ids)
        client = FakeClient(range(1, 6001))
        parsed = fetch_activities(client, ids, parse=True)
        assert parsed.activities == parse_activities(raw.activities)
        assert [row["ID"] for row in parsed.activities] == ids
        assert parsed.requests == client.requests == 3

    def test_parse_overlaps_the_next_batch_in_flight(self) -> None:
        """Batch 1 is parsed (and reported) while batch 2 is still waiting for its answer."""
        first_reported = threading.Event()
        events: list[str] = []

        class SlowSecond(FakeClient):
            def batch(self, commands: Any, *, halt: bool = False) -> Any:
                if commands["ids0"][1]["filter"]["@ID"][0] > 2500:  # the second batch
                    events.append(f"batch 2 answered after batch 1 parsed: {first_reported.wait(10)}")
                return super().batch(commands, halt=halt)

        def progress(p: FetchProgress) -> None:
            events.append(f"parsed {p.found}")  # called once the batch's rows are parsed
            first_reported.set()

        client = SlowSecond(range(1, 5001))
        result = fetch_activities(client, list(range(1, 5001)), parse=True, progress=progress, concurrency=2)
        assert events == ["parsed 2500", "batch 2 answered after batch 1 parsed: True", "parsed 5000"]
        assert result.activities[0]["ID"] == 1 and len(result.activities) == 5000
        assert client.requests == 2

    def test_parse_error_names_the_activity(self) -> None:
        client = FakeClient(range(1, 3))
        client.rows[2]["START_TIME"] = "yesterday"
        with pytest.raises(ActivityParseError, match="activity 2: field START_TIME"):
            fetch_activities(client, [1, 2], parse=True)

    def test_client_without_stats(self) -> None:
        class Bare:
            def __init__(self) -> None:
                self.inner = FakeClient([1])

            def batch(self, commands: Any, *, halt: bool = False) -> Any:
                return self.inner.batch(commands, halt=halt)

        assert fetch_activities(Bare(), [1]).limiter_wait_s == 0.0

    def test_errors_are_bitrix24_errors(self) -> None:
        client = FakeClient([])
        result = fetch_activities(client, [1], strategy="get")
        assert isinstance(result.errors[1], Bitrix24Error)


class TestCoerceSelect:
    @pytest.mark.parametrize(
        ("select", "expected"),
        [
            (None, ["*"]),
            ([], ["*"]),
            (["*"], ["*"]),
            (["communications", "files"], ["*", "COMMUNICATIONS", "FILES"]),
            (["ID", "SUBJECT"], ["ID", "SUBJECT"]),
            (["SUBJECT", "subject"], ["ID", "SUBJECT"]),
            (["SUBJECT", "COMMUNICATIONS"], ["ID", "SUBJECT", "COMMUNICATIONS"]),
            ("['COMMUNICATIONS']", ["*", "COMMUNICATIONS"]),
            ("SUBJECT, DEADLINE", ["ID", "SUBJECT", "DEADLINE"]),
            (("*", "FILES"), ["*", "FILES"]),
        ],
    )
    def test_forms(self, select: Any, expected: list[str]) -> None:
        assert coerce_select(select) == expected

    @pytest.mark.parametrize("select", [5, [1], [""], {"ID": 1}, "[1, "])
    def test_rejected(self, select: Any) -> None:
        with pytest.raises(InvalidSelect):
            coerce_select(select)


@pytest.mark.parametrize(
    ("n", "strategy", "expected"),
    [
        (0, "list", 0),
        (1, "list", 1),
        (2500, "list", 1),
        (2501, "list", 2),
        (10_000, "list", 4),
        (51, "get", 2),
    ],
)
def test_max_requests(n: int, strategy: str, expected: int) -> None:
    assert max_requests(n, strategy) == expected


class _CollectorWatchingClient(FakeClient):
    """Records whether the cyclic collector was running during each batch."""

    def __init__(self, ids: range) -> None:
        super().__init__(ids)
        self.collector_on: list[bool] = []

    def batch(self, commands: Any, *, halt: bool = False) -> Any:
        import gc

        self.collector_on.append(gc.isenabled())
        return super().batch(commands, halt=halt)


@pytest.mark.parametrize("parse", [False, True])
def test_a_large_fetch_pauses_the_collector_and_restores_it(parse: bool) -> None:
    import gc

    client = _CollectorWatchingClient(range(1, 6001))
    assert gc.isenabled()
    result = fetch_activities(client, list(range(1, 6001)), parse=parse)
    assert len(result.activities) == 6000
    assert client.collector_on == [False, False, False]  # 3 batches, all with the collector paused
    assert gc.isenabled()


def test_a_small_fetch_leaves_the_collector_alone_and_an_error_restores_it() -> None:
    import gc

    client = _CollectorWatchingClient(range(1, 101))
    fetch_activities(client, list(range(1, 101)))
    assert client.collector_on == [True]

    failing = _CollectorWatchingClient(range(1, 3001))
    failing.command_errors["ids0"] = Bitrix24AccessDenied("Access denied.", method="crm.activity.list")
    with pytest.raises(Bitrix24AccessDenied):
        fetch_activities(failing, list(range(1, 3001)), concurrency=1)
    assert failing.collector_on == [False]
    assert gc.isenabled()
