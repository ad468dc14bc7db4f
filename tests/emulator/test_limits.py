"""Leaky bucket (503 QUERY_LIMIT_EXCEEDED) and operating-time budget (429 OPERATION_TIME_LIMIT)."""

from __future__ import annotations

import time
from typing import Any

from tests.emulator.conftest import Caller


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_leaky_bucket_burst_then_drain(bitrix24_emulator_factory: Any) -> None:
    clock = FakeClock()
    caller = Caller(bitrix24_emulator_factory(activities=5, rate_limit=2.0, burst=5, clock=clock))
    statuses = [caller.post("crm.activity.get", {"id": 1}).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [503, 503]
    body = caller.post("crm.activity.get", {"id": 1}).json()
    assert body == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    clock.now += 1.0  # drains 2
    assert [caller.post("profile").status_code for _ in range(3)] == [200, 200, 503]
    stats = caller.emu.stats
    assert stats["rejected_rate_limit"] == 4 and stats["requests"] == 11


def test_batch_is_one_request_for_the_bucket(bitrix24_emulator_factory: Any) -> None:
    clock = FakeClock()
    caller = Caller(bitrix24_emulator_factory(activities=60, rate_limit=2.0, burst=2, clock=clock))
    cmd = {f"c{i}": f"crm.activity.get?id={i + 1}" for i in range(50)}
    assert caller.post("batch", {"cmd": cmd}).status_code == 200
    assert caller.post("batch", {"cmd": cmd}).status_code == 200
    assert caller.post("batch", {"cmd": cmd}).status_code == 503


def test_rate_limit_off_by_default(fresh: Caller) -> None:
    assert all(fresh.post("profile").status_code == 200 for _ in range(120))
    assert fresh.emu.stats["rejected_rate_limit"] == 0


def test_real_time_drain(bitrix24_emulator_factory: Any) -> None:
    caller = Caller(bitrix24_emulator_factory(activities=5, rate_limit=2.0, burst=3))
    statuses = []
    while 503 not in statuses and len(statuses) < 10:  # 10 calls outrun a 2/s drain on any machine
        statuses.append(caller.post("profile").status_code)
    assert statuses[-1] == 503 and len(statuses) >= 4
    time.sleep(0.6)  # drains at least one slot
    assert caller.post("profile").status_code == 200


def test_operating_limit_blocks_the_method_only(bitrix24_emulator_factory: Any) -> None:
    clock = FakeClock()
    caller = Caller(
        bitrix24_emulator_factory(
            activities=200, operating_limit=1.0, operating_cost_per_row=0.01, clock=clock
        )
    )
    first_at = clock.now
    page = caller.ok("crm.activity.list", {})  # 50 rows -> 0.5 s
    assert page["time"]["operating"] == 0.5 and page["time"]["operating_reset_at"] == int(first_at + 600)
    clock.now += 61  # next minute bucket
    assert caller.ok("crm.activity.list", {})["time"]["operating"] == 1.0
    clock.now += 1
    second = caller.ok("crm.activity.list", {})  # 1.0 is not over 1.0: runs and crosses the limit
    assert second["time"]["operating"] == 1.5
    blocked = caller.post("crm.activity.list", {})
    assert blocked.status_code == 429
    body = blocked.json()
    assert body["error"] == "OPERATION_TIME_LIMIT"
    assert body["error_description"] == "Method is blocked due to operation time limit."
    assert body["time"]["operating_reset_at"] == int(first_at + 600)
    assert caller.ok("crm.activity.get", {"id": 1})  # other methods unaffected
    clock.now = first_at + 600  # the oldest bucket drops out: 1.0 left, not over
    assert caller.post("crm.activity.list", {}).status_code == 200
    assert caller.emu.stats["rejected_operating"] == 1


def test_batch_operating_charged_to_batch(bitrix24_emulator_factory: Any) -> None:
    clock = FakeClock()
    emu = bitrix24_emulator_factory(
        activities=60, operating_limit=0.5, operating_cost_per_call=0.3, clock=clock
    )
    caller = Caller(emu)
    cmd = {"a": "crm.activity.list?start=-1"}
    assert caller.ok("batch", {"cmd": cmd})["time"]["operating"] == 0.3
    assert caller.ok("batch", {"cmd": cmd})["time"]["operating"] == 0.6
    assert caller.post("batch", {"cmd": cmd}).status_code == 429
    assert caller.post("crm.activity.list", {}).status_code == 200


def test_batch_operating_split_over_methods(bitrix24_emulator_factory: Any) -> None:
    clock = FakeClock()
    emu = bitrix24_emulator_factory(
        activities=60,
        operating_limit=0.5,
        operating_cost_per_call=0.6,
        batch_operating="methods",
        clock=clock,
    )
    caller = Caller(emu)
    caller.ok("batch", {"cmd": {"a": "crm.activity.list?start=-1"}})
    assert caller.post("crm.activity.list", {}).status_code == 429
    assert caller.post("batch", {"cmd": {"a": "profile"}}).status_code == 200


def test_latency_is_simulated(bitrix24_emulator_factory: Any) -> None:
    caller = Caller(bitrix24_emulator_factory(activities=100, latency_ms=30, per_row_latency_ms=0.4))
    caller.post("profile")
    started = time.perf_counter()
    caller.post("profile")
    single = time.perf_counter() - started
    started = time.perf_counter()
    caller.post("crm.activity.list", {})
    listed = time.perf_counter() - started
    assert 0.03 <= single < 0.5 and listed >= 0.03 + 50 * 0.0004
