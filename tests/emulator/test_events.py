"""``event.bind/unbind/get`` and the offline queue (``event.offline.get/clear/error/list``) over HTTPS.

Documented semantics (events-lineage-storage.md §1.3-1.5): applications only (webhooks get
``WRONG_AUTH_TYPE``), one record per entity and event name (a repeat updates it), reservation by
``process_id`` with ``clear=0``, whole-batch deletion, the empty-``process_id`` pitfall.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from tests.emulator.conftest import Caller


class App:
    """An OAuth application's calls to the emulator (a fresh access token per app)."""

    def __init__(self, emu: Bitrix24Emulator) -> None:
        self.emu = emu
        self.caller = Caller(emu)
        self.token = emu.access_token

    def post(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.caller.oauth(method, params or {}, self.token)

    def ok(self, method: str, params: dict[str, Any] | None = None) -> Any:
        response = self.post(method, params)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    def error(self, method: str, params: dict[str, Any] | None = None) -> tuple[int, str, str]:
        response = self.post(method, params)
        body = response.json()
        return response.status_code, body["error"], body["error_description"]


@pytest.fixture
def emu(bitrix24_emulator_factory: Any) -> Bitrix24Emulator:
    return bitrix24_emulator_factory(activities=60, seed=2)


@pytest.fixture
def app(emu: Bitrix24Emulator) -> Iterator[App]:
    caller = App(emu)
    yield caller
    caller.caller.close()


def _bind_offline(app: App, *events: str) -> None:
    for event in events:
        assert app.ok("event.bind", {"event": event, "event_type": "offline"}) is True


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("event.bind", {"event": "ONCRMACTIVITYADD", "event_type": "offline"}),
        ("event.unbind", {"event": "ONCRMACTIVITYADD", "event_type": "offline"}),
        ("event.get", {}),
        ("event.offline.get", {}),
        ("event.offline.clear", {"process_id": "x"}),
        ("event.offline.error", {"process_id": "x", "message_id": []}),
        ("event.offline.list", {}),
    ],
)
def test_webhooks_are_refused_with_wrong_auth_type(emu: Bitrix24Emulator, method: str, params: Any) -> None:
    caller = Caller(emu)
    try:
        response = caller.post(method, params)
    finally:
        caller.close()
    assert response.status_code == 403
    assert response.json() == {
        "error": "WRONG_AUTH_TYPE",
        "error_description": "Current authorization type is denied for this method",
    }


def test_bind_get_unbind(app: App) -> None:
    assert app.ok("event.get") == []
    _bind_offline(app, "ONCRMACTIVITYADD", "oncrmactivityupdate")  # upper-cased server side
    assert app.ok("event.bind", {"event": "ONCRMACTIVITYDELETE", "handler": "https://hooks.example.com/b24"})
    assert app.ok("event.get") == [
        {"event": "ONCRMACTIVITYADD", "connector_id": "", "offline": 1},
        {"event": "ONCRMACTIVITYUPDATE", "connector_id": "", "offline": 1},
        {
            "event": "ONCRMACTIVITYDELETE",
            "handler": "https://hooks.example.com/b24",
            "auth_type": "0",
            "offline": 0,
        },
    ]
    # binding the same handler again is refused; the count of removed handlers is returned
    assert app.error("event.bind", {"event": "ONCRMACTIVITYADD", "event_type": "offline"}) == (
        400,
        "ERROR_CORE",
        "Unable to set event handler: Handler already binded",
    )
    assert app.ok("event.unbind", {"event": "ONCRMACTIVITYADD", "event_type": "offline"}) == {"count": 1}
    assert app.ok("event.unbind", {"event": "ONCRMACTIVITYADD", "event_type": "offline"}) == {"count": 0}
    assert [h["event"] for h in app.ok("event.get")] == ["ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE"]


def test_bind_validation(app: App) -> None:
    assert app.error("event.bind", {"event_type": "offline"})[1:] == (
        "ERROR_ARGUMENT",
        "Argument 'EVENT' is null or empty",
    )
    assert (
        app.error("event.bind", {"event": "ONCRMACTIVITYADD"})[1] == "ERROR_ARGUMENT"
    )  # online needs handler
    assert (
        app.error("event.bind", {"event": "ONCRMACTIVITYADD", "event_type": "sometimes"})[1]
        == "ERROR_ARGUMENT"
    )
    assert app.error("event.bind", {"event": "ONCRMACTIVITYADD", "handler": "https://localhost/h"})[1] == (
        "ERROR_WRONG_HANDLER_URL"
    )
    assert app.error("event.bind", {"event": "ONCRMDEALADD", "event_type": "offline"}) == (
        400,
        "ERROR_EVENT_NOT_FOUND",
        "Event not found",
    )


def test_changes_are_queued_for_bound_events_only_and_deduplicated(app: App, emu: Bitrix24Emulator) -> None:
    emu.store.update(1, {"SUBJECT": "before binding"})  # not recorded: nothing bound yet
    _bind_offline(app, "ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE")
    new_id = emu.store.add(
        {"SUBJECT": "s", "TYPE_ID": 6, "OWNER_ID": 1, "OWNER_TYPE_ID": 2}
    )  # ADD: not bound
    for subject in ("a", "b", "c"):  # three updates of one activity → one record
        app.ok("crm.activity.update", {"id": 3, "fields": {"SUBJECT": subject}})
    emu.store.complete(4)
    emu.store.delete(5)
    rows = app.ok("event.offline.list")
    assert [(r["EVENT_NAME"], r["EVENT_DATA"]) for r in rows] == [
        ("ONCRMACTIVITYUPDATE", {"FIELDS": {"ID": "3"}}),
        ("ONCRMACTIVITYUPDATE", {"FIELDS": {"ID": "4"}}),
        ("ONCRMACTIVITYDELETE", {"FIELDS": {"ID": "5"}}),
    ]
    assert new_id not in {int(r["EVENT_DATA"]["FIELDS"]["ID"]) for r in rows}
    first = rows[0]
    assert re.fullmatch(r"[0-9a-f]{32}", first["MESSAGE_ID"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00", first["TIMESTAMP_X"])
    assert first["EVENT_ADDITIONAL"] == {"user_id": "1"}
    assert first["PROCESS_ID"] == "" and first["ERROR"] == "0"


def test_get_with_default_clear_returns_and_deletes(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYUPDATE")
    for activity_id in (1, 2, 3):
        emu.store.complete(activity_id)
    result = app.ok("event.offline.get", {"limit": 2})
    assert result["process_id"] is None
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in result["events"]] == ["1", "2"]
    assert set(result["events"][0]) == {
        "ID",
        "TIMESTAMP_X",
        "EVENT_NAME",
        "EVENT_DATA",
        "EVENT_ADDITIONAL",
        "MESSAGE_ID",
    }
    assert [r["EVENT_DATA"]["FIELDS"]["ID"] for r in app.ok("event.offline.list")] == ["3"]


def test_reservation_by_process_id_then_clear(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYUPDATE")
    emu.store.complete(1)
    emu.store.complete(2)
    reserved = app.ok("event.offline.get", {"clear": 0})
    pid = reserved["process_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", pid) and len(reserved["events"]) == 2
    # a parallel reader gets disjoint records: nothing
    assert app.ok("event.offline.get", {"clear": 0})["events"] == []
    # a change to a reserved activity makes a new record (the reserved one is not touched)
    emu.store.update(1, {"SUBJECT": "again"})
    listing = app.ok("event.offline.list", {"order": {"ID": "ASC"}})
    assert [(r["EVENT_DATA"]["FIELDS"]["ID"], r["PROCESS_ID"]) for r in listing] == [
        ("1", pid),
        ("2", pid),
        ("1", ""),
    ]
    # re-reading the reservation works until it is confirmed
    again = app.ok("event.offline.get", {"process_id": pid, "clear": 0})
    assert again["process_id"] == pid and [e["ID"] for e in again["events"]] == [
        e["ID"] for e in reserved["events"]
    ]
    assert app.ok("event.offline.clear", {"process_id": pid}) is True
    assert [(r["EVENT_DATA"]["FIELDS"]["ID"], r["PROCESS_ID"]) for r in app.ok("event.offline.list")] == [
        ("1", "")
    ]


def test_clear_by_message_id_and_error_marking(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYUPDATE")
    for activity_id in (1, 2, 3):
        emu.store.complete(activity_id)
    reserved = app.ok("event.offline.get", {"clear": 0})
    pid, events = reserved["process_id"], reserved["events"]
    app.ok("event.offline.clear", {"process_id": pid, "message_id": [events[0]["MESSAGE_ID"]]})
    app.ok("event.offline.error", {"process_id": pid, "message_id": [events[1]["MESSAGE_ID"]]})
    listing = {r["EVENT_DATA"]["FIELDS"]["ID"]: r for r in app.ok("event.offline.list")}
    assert set(listing) == {"2", "3"}
    assert listing["2"]["ERROR"] == "1" and listing["2"]["PROCESS_ID"] == ""
    assert listing["3"]["PROCESS_ID"] == pid
    # failed records come back only with error=1
    assert app.ok("event.offline.get", {"clear": 0})["events"] == []
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in app.ok("event.offline.get", {"error": 1})["events"]] == [
        "2"
    ]
    assert (
        app.error("event.offline.clear", {"process_id": pid, "message_id": ["short"]})[1] == "ERROR_ARGUMENT"
    )
    assert app.error("event.offline.clear", {})[1:] == (
        "ERROR_ARGUMENT",
        "Argument 'PROCESS_ID' is null or empty",
    )


def test_empty_process_id_clears_every_unreserved_record(app: App, emu: Bitrix24Emulator) -> None:
    """The documented pitfall: clear with process_id "" deletes the unreserved queue."""
    _bind_offline(app, "ONCRMACTIVITYUPDATE")
    emu.store.complete(1)
    pid = app.ok("event.offline.get", {"clear": 0})["process_id"]
    emu.store.complete(2)
    app.ok("event.offline.clear", {"process_id": ""})
    assert [(r["EVENT_DATA"]["FIELDS"]["ID"], r["PROCESS_ID"]) for r in app.ok("event.offline.list")] == [
        ("1", pid)
    ]


def test_get_filter_order_and_argument_errors(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE")
    emu.store.complete(1)
    emu.store.delete(2)
    deletes = app.ok("event.offline.get", {"filter": {"=EVENT_NAME": "ONCRMACTIVITYDELETE"}, "clear": 0})
    assert [e["EVENT_NAME"] for e in deletes["events"]] == ["ONCRMACTIVITYDELETE"]
    assert (
        app.error("event.offline.get", {"filter": {"!EVENT_NAME": "X"}})[2]
        == "Filter operation not allowed: !"
    )
    assert (
        app.error("event.offline.get", {"filter": {"SUBJECT": "X"}})[2] == "Filter field not allowed: SUBJECT"
    )
    assert app.error("event.offline.get", {"filter": {"ID": [1, 2]}})[1] == "ERROR_ARGUMENT"
    assert (
        app.error("event.offline.get", {"order": {"ID": "UP"}})[2]
        == "Order direction should be one of {ASC|DESC}"
    )
    assert app.error("event.offline.get", {"limit": 0})[2] == "Value must be positive integer"


def test_reservation_needs_the_extended_mode(bitrix24_emulator_factory: Any) -> None:
    emu = bitrix24_emulator_factory(activities=5, offline_extended=False)
    app = App(emu)
    try:
        assert app.error("event.offline.get", {"clear": 0}) == (
            403,
            "WRONG_LICENSE",
            "This feature is not enabled for the current license: extended offline events handling",
        )
        assert app.ok("event.offline.get")["events"] == []  # clear=1 works on every plan
    finally:
        app.caller.close()


def test_offline_get_runs_inside_batch_and_list_pages(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYUPDATE")
    for activity_id in range(1, 53):
        emu.store.complete(activity_id)
    page = app.post("event.offline.list").json()
    assert len(page["result"]) == 50 and page["total"] == 52 and page["next"] == 50
    batch = app.ok(
        "batch",
        {"cmd": {"a": "event.offline.get?clear=0&limit=10", "b": "event.offline.list?start=50"}},
    )
    assert len(batch["result"]["a"]["events"]) == 10
    assert len(batch["result"]["b"]) == 2


def test_fixture_loading_queues_nothing(app: App, emu: Bitrix24Emulator) -> None:
    _bind_offline(app, "ONCRMACTIVITYADD")
    emu.store.load([{"ID": 7, "SUBJECT": "loaded", "TYPE_ID": 6}])
    assert app.ok("event.offline.list") == []
    assert emu.events.queue() == []
