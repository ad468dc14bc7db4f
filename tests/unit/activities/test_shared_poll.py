"""activities.shared_poll: unions, per-waiter answers, whose error, and due-time scheduling (no Airflow)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_provider_b24.activities import (
    FetchResult,
    InvalidActivityIds,
    InvalidSelect,
    fetch_activities,
)
from airflow_provider_b24.activities.shared_poll import (
    ErrorScope,
    MemberSpec,
    PollSchedule,
    error_scope,
    poll_members,
    prepare_member,
    project_row,
    requests_for,
    split_rows,
    union_ids,
    union_select,
)
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
    Bitrix24MethodNotFound,
    Bitrix24ServerError,
    ErrorOutcome,
    error_outcome,
)
from tests.unit.activities.fakes import FakeClient


def is_final(error: BaseException) -> bool:
    return error_outcome(error) is not ErrorOutcome.RETRY


# -- what each waiter asks for ----------------------------------------------------------------------


def test_prepare_member_validates_like_the_waiters_own_fetch() -> None:
    spec = prepare_member([3, "1", 3], ["subject"], "completed")
    assert spec == MemberSpec(ids=(3, 1), fields=("ID", "SUBJECT", "COMPLETED"), until="completed")
    assert prepare_member([1], None, "exists").fields == ("*",)
    assert prepare_member([1], ["COMMUNICATIONS"], "exists").fields == ("*", "COMMUNICATIONS")
    with pytest.raises(InvalidActivityIds, match="position 1"):
        prepare_member([1, -2], None, "exists")
    with pytest.raises(InvalidSelect):
        prepare_member([1], [""], "exists")
    with pytest.raises(ValueError, match="until must be one of"):
        prepare_member([1], None, "done")


def test_union_ids_keeps_first_seen_order_once() -> None:
    specs = [prepare_member(ids, None, "exists") for ids in ([5, 1], [1, 7], [9])]
    assert union_ids(specs) == [5, 1, 7, 9]
    assert requests_for(2500) == 1 and requests_for(2501) == 2 and requests_for(0) == 0


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        ([["*"], ["*"]], ["*"]),
        ([["ID", "SUBJECT"], ["ID", "COMPLETED"]], ["ID", "SUBJECT", "COMPLETED"]),
        ([["ID", "SUBJECT"], ["*"]], ["*", "ID", "SUBJECT"]),
        ([["*", "COMMUNICATIONS"], ["*"], ["ID", "FILES"]], ["*", "COMMUNICATIONS", "ID", "FILES"]),
    ],
)
def test_union_select(lists: list[list[str]], expected: list[str]) -> None:
    assert union_select(lists) == expected


SELECTS: list[Any] = [
    None,
    ["SUBJECT"],
    ["COMMUNICATIONS"],
    ["*", "COMMUNICATIONS"],
    ["ID", "START_TIME"],
    ["SUBJECT", "COMMUNICATIONS"],
]


@pytest.mark.parametrize("until", ["exists", "completed"])
def test_each_waiter_gets_what_its_own_fetch_returns(until: str) -> None:
    """The union fetch, split and projected, equals each waiter's own fetch, for every mix of selects."""
    client = FakeClient(range(1, 40), hidden={7})
    for row_id in (2, 3):
        client.rows[row_id]["COMPLETED"] = "Y"
    specs = {
        n: prepare_member(ids, select, until)
        for n, (ids, select) in enumerate(
            zip(([1, 2], [3, 2, 99], [7], [4, 5, 6], [2], [38, 1]), SELECTS, strict=True)
        )
    }
    union = union_select(spec.fields for spec in specs.values())
    shared = fetch_activities(client, union_ids(specs.values()), select=union)
    answers = split_rows(specs, shared, union)
    for key, spec in specs.items():
        alone = fetch_activities(client, list(spec.ids), select=list(spec.fields))
        assert answers[key].rows == alone.activities, key
        assert answers[key].missing_ids == alone.missing_ids
    assert answers[1].missing_ids == [99] and answers[2].missing_ids == [7]
    assert answers[4].status.done is True
    assert answers[0].status.done is (until == "exists")
    assert shared.requests == 1


def test_project_row() -> None:
    row = {"ID": "1", "SUBJECT": "x", "COMMUNICATIONS": [], "FILES": [], "UF_CRM_X": "u"}
    assert project_row(row, ["*"]) == {"ID": "1", "SUBJECT": "x"}
    assert project_row(row, ["*", "FILES"]) == {"ID": "1", "SUBJECT": "x", "FILES": []}
    assert project_row(row, ["ID", "UF_CRM_X"]) == {"ID": "1", "UF_CRM_X": "u"}


# -- whose error ------------------------------------------------------------------------------------


def test_error_scope() -> None:
    assert error_scope(Bitrix24BadRequest("Invalid filter", http_status=400)) is ErrorScope.REQUEST
    assert error_scope(InvalidSelect("bad")) is ErrorScope.REQUEST
    assert error_scope(InvalidActivityIds("x", 0, "not an ID")) is ErrorScope.REQUEST
    for error in (
        Bitrix24MethodNotFound("no method"),
        Bitrix24ConfigError("host is required"),
        Bitrix24AuthError("bad code"),
        Bitrix24AccessDenied("Access denied."),
        Bitrix24ServerError("boom"),
        RuntimeError("bug"),
    ):
        assert error_scope(error) is ErrorScope.CONNECTION, error


class Refusing:
    """A fetch that refuses any request naming a field in ``bad_fields`` (or raises ``error``)."""

    def __init__(
        self, client: FakeClient, bad_fields: set[str] = frozenset(), error: Exception | None = None
    ):  # type: ignore[assignment]
        self.client = client
        self.bad_fields = bad_fields
        self.error = error
        self.calls: list[tuple[list[int], list[str]]] = []

    def __call__(self, ids: list[int], select: list[str]) -> FetchResult:
        self.calls.append((ids, select))
        if self.error is not None:
            raise self.error
        bad = self.bad_fields & set(select)
        if bad:
            raise Bitrix24BadRequest(f"unknown field {sorted(bad)[0]}", http_status=400)
        return fetch_activities(self.client, ids, select=select)


def _specs(n: int, bad: dict[int, str]) -> dict[int, MemberSpec]:
    return {k: prepare_member([k + 1], [bad.get(k, "SUBJECT")], "exists") for k in range(n)}


def test_one_waiters_bad_request_fails_only_it() -> None:
    fetch = Refusing(FakeClient(range(1, 70)), bad_fields={"BOGUS"})
    outcome = poll_members(fetch, _specs(64, {37: "BOGUS"}), is_final=is_final)
    assert outcome.error is None
    assert set(outcome.failed) == {37}
    assert set(outcome.answers) == set(range(64)) - {37}
    assert outcome.answers[5].rows == [{"ID": "6", "SUBJECT": "Activity 6"}]
    # 1 union request + 2 per level of the bisection (log2 64 = 6 levels), minus the failures.
    assert len(fetch.calls) <= 1 + 2 * int(math.log2(64))
    assert outcome.requests == len(fetch.calls) - (1 + int(math.log2(64)))  # failed calls count no requests


def test_two_bad_waiters_in_different_halves_fail_alone() -> None:
    fetch = Refusing(FakeClient(range(1, 20)), bad_fields={"BOGUS", "WRONG"})
    outcome = poll_members(fetch, _specs(8, {1: "BOGUS", 6: "WRONG"}), is_final=is_final)
    assert set(outcome.failed) == {1, 6}
    assert set(outcome.answers) == {0, 2, 3, 4, 5, 7}


def test_a_request_error_of_everybody_costs_two_extra_requests() -> None:
    fetch = Refusing(FakeClient(range(1, 20)), error=Bitrix24BadRequest("HTTPS required", http_status=400))
    outcome = poll_members(fetch, _specs(16, {}), is_final=is_final)
    assert set(outcome.failed) == set(range(16)) and not outcome.answers
    assert len(fetch.calls) == 3


@pytest.mark.parametrize(
    "error",
    [Bitrix24AuthError("Invalid token", http_status=401), Bitrix24ServerError("boom"), RuntimeError("x")],
)
def test_connection_and_transient_errors_end_the_poll_at_once(error: Exception) -> None:
    fetch = Refusing(FakeClient(range(1, 20)), error=error)
    outcome = poll_members(fetch, _specs(8, {}), is_final=is_final)
    assert outcome.error is error and not outcome.answers and not outcome.failed
    assert len(fetch.calls) == 1


def test_a_transient_error_while_isolating_ends_the_poll_keeping_answers() -> None:
    client = FakeClient(range(1, 20))
    calls = 0

    def fetch(ids: list[int], select: list[str]) -> FetchResult:
        nonlocal calls
        calls += 1
        if calls == 3:  # the second half, during the isolation
            raise Bitrix24ServerError("boom")
        if "BOGUS" in select:
            raise Bitrix24BadRequest("unknown field", http_status=400)
        return fetch_activities(client, ids, select=select)

    outcome = poll_members(fetch, _specs(4, {3: "BOGUS"}), is_final=is_final)
    assert isinstance(outcome.error, Bitrix24ServerError)
    assert set(outcome.answers) == {0, 1} and not outcome.failed


# -- when to poll, and whom -------------------------------------------------------------------------


def test_a_lone_waiter_polls_at_ready_then_every_interval() -> None:
    s = PollSchedule()
    s.join("a", ready_at=10.0, interval=5.0)
    assert s.next_poll_at() == 10.0
    assert s.take(9.9) == []  # never before its first_poll_delay
    assert s.take(10.0) == ["a"]
    s.polled(["a"], started_at=10.0)
    assert s.next_poll_at() == 15.0


def test_waiters_share_one_poll_per_cadence() -> None:
    s = PollSchedule(coalesce_s=0.0)
    s.join("fast", ready_at=0.0, interval=5.0)
    s.join("slow", ready_at=0.0, interval=60.0)
    assert s.cadence() == 5.0
    assert s.take(0.0) == ["fast", "slow"]
    s.polled(["fast", "slow"], started_at=0.0)
    included = {"fast": 0, "slow": 0}
    at = s.next_poll_at()
    while at is not None and at < 120:
        keys = s.take(at)
        for key in keys:
            included[key] += 1
        s.polled(keys, started_at=at)
        at = s.next_poll_at()
    assert included["fast"] == 23  # 5, 10, ..., 115
    assert included["slow"] == 2  # within 60 s of its last poll each time, never more often than needed


def test_a_waiter_joining_between_polls_waits_for_the_next_shared_poll() -> None:
    s = PollSchedule(coalesce_s=0.0)
    s.join("a", ready_at=0.0, interval=5.0)
    s.polled(s.take(0.0), started_at=0.0)
    s.join("b", ready_at=1.0, interval=5.0)  # ready at 1: no poll of its own
    assert s.next_poll_at() == 5.0
    assert s.take(5.0) == ["a", "b"]


def test_coalescing_waits_for_a_fleet_that_becomes_ready_together() -> None:
    s = PollSchedule(coalesce_s=1.0)
    for n in range(100):
        s.join(n, ready_at=5.0 + n * 0.004, interval=5.0)  # deferred over 0.4 s
    at = s.next_poll_at()
    assert at == pytest.approx(5.396)
    assert len(s.take(at)) == 100
    s.join("late", ready_at=6.5, interval=5.0)  # beyond the window: the next shared poll
    assert "late" not in s.take(at)


def test_coalescing_is_a_small_share_of_the_cadence() -> None:
    s = PollSchedule(coalesce_s=1.0)
    s.join("fast", ready_at=0.0, interval=0.1)
    s.join("slow starter", ready_at=0.4, interval=0.1)
    assert s.next_poll_at() == 0.0  # "fast" is not held back 0.4 s (more than 20 % of its 0.1 s)


def test_polls_never_faster_than_the_rate_limit_allows() -> None:
    s = PollSchedule(coalesce_s=0.0)
    s.join("a", ready_at=0.0, interval=1.0)
    s.polled(s.take(0.0), started_at=0.0, requests=40, rate=2.0)  # 100,000 IDs: 40 requests
    assert s.next_poll_at() == 20.0


def test_hold_after_a_transient_error() -> None:
    s = PollSchedule(coalesce_s=0.0)
    s.join("a", ready_at=0.0, interval=1.0)
    keys = s.take(0.0)
    s.polled([], started_at=0.0)  # failed: nobody got an answer
    s.hold(30.0)  # a 429 until its reset
    assert keys == ["a"] and s.next_poll_at() == 30.0
    s.leave("a")
    s.leave("a")
    assert s.next_poll_at() is None and len(s) == 0
