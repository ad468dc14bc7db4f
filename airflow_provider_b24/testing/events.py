"""Event handlers and the offline event queue: ``event.bind/unbind/get``, ``event.offline.*``.

Written from the Bitrix24 docs (the ``event.offline.*`` pages and
https://apidocs.bitrix24.com/api-reference/events/safe-event-handlers.html) and the REST module's code:

* only applications (OAuth) may call these methods: a webhook gets 403 ``WRONG_AUTH_TYPE``
  "Current authorization type is denied for this method";
* ``event.bind`` with ``event_type=offline`` makes every later ``crm.activity.add/update/delete``
  (over REST or through ``emu.store``) record ``ONCRMACTIVITYADD/UPDATE/DELETE`` in that app's queue;
* the queue keeps current state, not history: a record is keyed by ``MESSAGE_ID`` =
  md5(``EVENT_NAME|json(EVENT_DATA)``); a repeat updates the unreserved record's ``TIMESTAMP_X``,
  or adds a new record when the existing one is reserved;
* ``event.offline.get`` ``clear=1`` (default) returns and deletes; ``clear=0`` reserves the records
  under a new 32-character ``process_id`` (needs ``rest_offline_extended``, else 403
  ``WRONG_LICENSE``); ``process_id=...`` re-reads a reservation (with ``clear=1`` it deletes the whole
  reservation); ``event.offline.clear`` deletes a reservation (all, or by ``message_id`` / ``id``);
  an empty ``process_id`` deletes every *unreserved* record (a documented pitfall);
  ``event.offline.error`` marks records as failed and releases them; ``event.offline.list`` reads.

Not emulated: online delivery to handler URLs (bindings are stored and listed only),
``auth_connector`` queues, non-admin users (the emulated user is an administrator).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from airflow_provider_b24.testing.errors import ApiError
from airflow_provider_b24.testing.methods import Env, MethodResult, param
from airflow_provider_b24.testing.timeutil import format_ts, parse_datetime

__all__ = ["ACTIVITY_EVENTS", "EVENT_HANDLERS", "EventHub", "OfflineRecord"]

ACTIVITY_EVENTS: Final = ("ONCRMACTIVITYADD", "ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE")
#: Which scope an event needs (the app must hold it, else ``Event not found``).
_EVENT_SCOPE: Final = dict.fromkeys(ACTIVITY_EVENTS, "crm")
_GET_FIELDS: Final = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
_LIST_FIELDS: Final = (*_GET_FIELDS, "PROCESS_ID", "ERROR")
_OPERATORS: Final = (">=", "<=", "=", ">", "<")
LIST_LIMIT: Final = 50


def wrong_auth_type() -> ApiError:
    return ApiError(403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")


def _argument(description: str) -> ApiError:
    return ApiError(400, "ERROR_ARGUMENT", description)


@dataclass
class Binding:
    """One ``event.bind``: an app's handler for an event."""

    app: str
    event: str
    offline: bool
    handler: str = ""
    auth_type: int = 0
    connector_id: str = ""


@dataclass
class OfflineRecord:
    """One queue row (``b_rest_event_offline``)."""

    id: int
    app: str
    timestamp: float
    event_name: str
    event_data: dict[str, Any]
    user_id: str
    message_id: str
    process_id: str = ""
    error: int = 0
    connector_id: str = ""

    def wire(self, tz_format: Callable[[float], str], *, full: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {
            "ID": str(self.id),
            "TIMESTAMP_X": tz_format(self.timestamp),
            "EVENT_NAME": self.event_name,
            "EVENT_DATA": self.event_data,
            "EVENT_ADDITIONAL": {"user_id": self.user_id},
            "MESSAGE_ID": self.message_id,
        }
        if full:
            row["PROCESS_ID"] = self.process_id
            row["ERROR"] = str(self.error)
        return row

    def field(self, name: str) -> Any:
        return {
            "ID": self.id,
            "TIMESTAMP_X": self.timestamp,
            "EVENT_NAME": self.event_name,
            "MESSAGE_ID": self.message_id,
            "PROCESS_ID": self.process_id,
            "ERROR": self.error,
        }[name]


def message_id(event_name: str, event_data: Mapping[str, Any]) -> str:
    """md5(EVENT_NAME|json(EVENT_DATA)), as the REST module computes it."""
    text = event_name + "|" + json.dumps(event_data, separators=(",", ":"))
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (an identifier, not security)


class EventHub:
    """Bindings and offline queues of every app of the portal; thread-safe.

    :param clock: the store's clock (``TIMESTAMP_X``); :param tz: the portal's offset.
    :param scopes: scopes granted to the app (events of other scopes are "not found").
    :param offline_extended: the plan feature ``rest_offline_extended`` (``clear=0``).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        tz: Any,
        scopes: tuple[str, ...],
        offline_extended: bool = True,
    ) -> None:
        self.clock = clock
        self.tz = tz
        self.scopes = scopes
        self.offline_extended = offline_extended
        self.lock = threading.RLock()
        self.bindings: list[Binding] = []
        self.records: list[OfflineRecord] = []
        self._next_id = 1

    def fmt(self, epoch: float) -> str:
        return format_ts(epoch, self.tz)

    # ------------------------------------------------------------------ recording
    def on_change(self, event_name: str, activity_id: int, user_id: str) -> None:
        """The store changed an activity: queue ``event_name`` for every app bound offline to it."""
        data = {"FIELDS": {"ID": str(activity_id)}}
        key = message_id(event_name, data)
        now = float(int(self.clock()))
        with self.lock:
            apps = {b.app for b in self.bindings if b.offline and b.event == event_name}
            for app in sorted(apps):
                for record in self.records:
                    if record.app == app and record.message_id == key and record.process_id == "":
                        record.timestamp = now
                        record.user_id = user_id
                        break
                else:
                    self.records.append(
                        OfflineRecord(self._next_id, app, now, event_name, data, user_id, key)
                    )
                    self._next_id += 1

    def queue(self, app: str | None = None) -> list[OfflineRecord]:
        """The queue rows (copies of the list; rows are live objects), optionally of one app."""
        with self.lock:
            return [r for r in self.records if app is None or r.app == app]

    # ------------------------------------------------------------------ helpers
    def _filter(self, raw: Any, fields: tuple[str, ...]) -> list[tuple[str, str, Any]]:
        if raw is None or raw in ([], ""):
            return []
        if not isinstance(raw, Mapping):
            raise _argument("The filter is not an array.")
        out = []
        for raw_key, value in raw.items():
            key = str(raw_key).strip()
            op = next((o for o in _OPERATORS if key.startswith(o)), "")
            name = key[len(op) :].upper()
            if not op and key[:1] in ("!", "%", "@"):
                raise _argument(f"Filter operation not allowed: {key[:1]}")
            if name not in fields:
                raise _argument(f"Filter field not allowed: {name}")
            if isinstance(value, list | dict):
                raise _argument(f"The value of an argument '{name}' has an invalid type")
            out.append((op or "=", name, value))
        return out

    def _matches(self, record: OfflineRecord, conditions: list[tuple[str, str, Any]]) -> bool:
        for op, name, value in conditions:
            have = record.field(name)
            want: Any
            if name in ("ID", "ERROR"):
                try:
                    want = int(str(value))
                except ValueError:
                    return False
            elif name == "TIMESTAMP_X":
                want = parse_datetime(value, self.tz)
                if want is None:
                    return False
            else:
                have, want = str(have).upper(), str(value).upper()
            ok = {
                "=": have == want,
                ">": have > want,
                "<": have < want,
                ">=": have >= want,
                "<=": have <= want,
            }[op]
            if not ok:
                return False
        return True

    def _order(self, raw: Any, fields: tuple[str, ...], default: dict[str, str]) -> list[tuple[str, bool]]:
        if raw is None or raw in ([], ""):
            raw = default
        if not isinstance(raw, Mapping):
            raise _argument("The order is not an array.")
        out = []
        for raw_key, direction in raw.items():
            name = str(raw_key).upper()
            if name not in fields:
                raise _argument(f"Order field not allowed: {name}")
            text = str(direction).upper()
            if text not in ("ASC", "DESC"):
                raise _argument("Order direction should be one of {ASC|DESC}")
            out.append((name, text == "DESC"))
        return out

    @staticmethod
    def _sorted(records: list[OfflineRecord], order: list[tuple[str, bool]]) -> list[OfflineRecord]:
        result = sorted(records, key=lambda r: r.id)
        for name, descending in reversed(order):
            result.sort(key=lambda r, n=name: r.field(n), reverse=descending)  # type: ignore[misc]
        return result

    # ------------------------------------------------------------------ methods
    def bind(self, app: str, params: Mapping[str, Any]) -> bool:
        event = str(param(params, "event") or "").strip().upper()
        event_type = str(param(params, "event_type") or "").strip().lower() or "online"
        handler = str(param(params, "handler") or "").strip()
        if not event:
            raise _argument("Argument 'EVENT' is null or empty")
        if event_type not in ("online", "offline"):
            raise _argument("Value must be one of {online|offline}")
        offline = event_type == "offline"
        auth_type = 0
        if offline:
            handler = ""
        else:
            if not handler:
                raise _argument("Argument 'HANDLER' is null or empty")
            parts = urlsplit(handler)
            if parts.scheme not in ("http", "https"):
                raise ApiError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported event handler protocol")
            if "." not in (parts.hostname or ""):
                raise ApiError(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
            try:
                auth_type = int(str(param(params, "auth_type") or 0))
            except ValueError:
                auth_type = 0
        if _EVENT_SCOPE.get(event) not in self.scopes:
            raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        with self.lock:
            for b in self.bindings:
                if b.app == app and b.event == event and b.offline == offline and b.handler == handler:
                    raise ApiError(400, "ERROR_CORE", "Unable to set event handler: Handler already binded")
            self.bindings.append(Binding(app, event, offline, handler, auth_type))
        return True

    def unbind(self, app: str, params: Mapping[str, Any]) -> dict[str, int]:
        event = str(param(params, "event") or "").strip().upper()
        event_type = str(param(params, "event_type") or "").strip().lower() or "online"
        handler = str(param(params, "handler") or "").strip()
        if not event:
            raise _argument("Argument 'EVENT' is null or empty")
        if event_type not in ("online", "offline"):
            raise _argument("Value must be one of {online|offline}")
        offline = event_type == "offline"
        if offline:
            handler = ""
        elif not handler:
            raise _argument("Argument 'HANDLER' is null or empty")
        with self.lock:
            keep = [
                b
                for b in self.bindings
                if not (b.app == app and b.event == event and b.offline == offline and b.handler == handler)
            ]
            count = len(self.bindings) - len(keep)
            self.bindings = keep
        return {"count": count}

    def handlers(self, app: str) -> list[dict[str, Any]]:
        with self.lock:
            out: list[dict[str, Any]] = []
            for b in self.bindings:
                if b.app != app:
                    continue
                if b.offline:
                    out.append({"event": b.event, "connector_id": b.connector_id, "offline": 1})
                else:
                    out.append(
                        {"event": b.event, "handler": b.handler, "auth_type": str(b.auth_type), "offline": 0}
                    )
            return out

    def offline_get(self, app: str, params: Mapping[str, Any]) -> dict[str, Any]:
        lowered = {str(k).lower(): v for k, v in params.items()}
        try:
            clear = 1 if "clear" not in lowered else int(str(lowered["clear"]).strip() or 0)
        except ValueError:
            clear = 0
        process_id = None if lowered.get("process_id") is None else str(lowered["process_id"]).strip()
        if not clear and not self.offline_extended:
            raise ApiError(
                403,
                "WRONG_LICENSE",
                "This feature is not enabled for the current license: extended offline events handling",
            )
        try:
            limit = int(str(lowered.get("limit", LIST_LIMIT)))
        except ValueError:
            limit = 0
        if limit <= 0:
            raise _argument("Value must be positive integer")
        conditions = self._filter(lowered.get("filter"), _GET_FIELDS)
        order = self._order(lowered.get("order"), _GET_FIELDS, {"TIMESTAMP_X": "ASC"})
        errors = 1 if str(lowered.get("error", "0")).strip() == "1" else 0
        return_pid = not clear
        with self.lock:
            mine = [
                r
                for r in self.records
                if r.app == app
                and r.connector_id == ""
                and r.error == errors
                and self._matches(r, conditions)
            ]
            if process_id is None:
                process_id = secrets.token_hex(16)
                for record in self._sorted([r for r in mine if r.process_id == ""], order)[:limit]:
                    record.process_id = process_id
            else:
                return_pid = True
            batch = self._sorted([r for r in mine if r.process_id == process_id], order)[:limit]
            events = [r.wire(self.fmt) for r in batch]
            if clear and events:
                self.records = [r for r in self.records if not (r.app == app and r.process_id == process_id)]
        return {"process_id": process_id if return_pid else None, "events": events}

    def offline_clear(self, app: str, params: Mapping[str, Any]) -> bool:
        lowered = {str(k).lower(): v for k, v in params.items()}
        if lowered.get("process_id") is None:
            raise _argument("Argument 'PROCESS_ID' is null or empty")
        process_id = str(lowered["process_id"]).strip()
        selector: Callable[[OfflineRecord], bool]
        if "message_id" in lowered:
            raw = lowered["message_id"]
            values = list(raw.values()) if isinstance(raw, Mapping) else raw
            if not isinstance(values, list) or any(len(str(v).strip()) != 32 for v in values):
                raise _argument("Value must be array of MESSAGE_ID values")
            wanted = {str(v).strip() for v in values}
            selector = lambda r: r.message_id in wanted  # noqa: E731
        elif "id" in lowered:
            raw = lowered["id"]
            values = list(raw.values()) if isinstance(raw, Mapping) else raw
            try:
                ids = {int(str(v)) for v in values} if isinstance(values, list) else set()
            except ValueError:
                ids = set()
            if not isinstance(values, list) or not ids or min(ids) <= 0:
                raise _argument("Value must be array of integers")
            selector = lambda r: r.id in ids  # noqa: E731
        else:
            selector = lambda r: True  # noqa: E731
        with self.lock:
            self.records = [
                r
                for r in self.records
                if not (r.app == app and r.connector_id == "" and r.process_id == process_id and selector(r))
            ]
        return True

    def offline_error(self, app: str, params: Mapping[str, Any]) -> bool:
        lowered = {str(k).lower(): v for k, v in params.items()}
        if lowered.get("process_id") is None:
            raise _argument("Argument 'PROCESS_ID' is null or empty")
        process_id = str(lowered["process_id"]).strip()
        raw = lowered.get("message_id")
        values = list(raw.values()) if isinstance(raw, Mapping) else raw
        if not isinstance(values, list):
            raise _argument("Value must be array of MESSAGE_ID values")
        wanted = {str(v).strip() for v in values}
        with self.lock:
            for record in self.records:
                if record.app == app and record.process_id == process_id and record.message_id in wanted:
                    record.error = 1
                    record.process_id = ""
        return True

    def offline_list(
        self, app: str, params: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], int, int | None]:
        lowered = {str(k).lower(): v for k, v in params.items()}
        conditions = self._filter(lowered.get("filter"), _LIST_FIELDS)
        order = self._order(lowered.get("order"), _LIST_FIELDS, {"ID": "ASC"})
        try:
            start = max(0, int(str(lowered.get("start", 0) or 0)))
        except ValueError:
            start = 0
        with self.lock:
            rows = self._sorted(
                [
                    r
                    for r in self.records
                    if r.app == app and r.connector_id == "" and self._matches(r, conditions)
                ],
                order,
            )
            page = [r.wire(self.fmt, full=True) for r in rows[start : start + LIST_LIMIT]]
        nxt = start + LIST_LIMIT if start + LIST_LIMIT < len(rows) else None
        return page, len(rows), nxt


# ------------------------------------------------------------------------------ REST handlers
def _app(env: Env) -> tuple[EventHub, str]:
    if env.auth_kind != "oauth":
        raise wrong_auth_type()
    hub = env.events
    if not isinstance(hub, EventHub):  # pragma: no cover - a Portal always sets it
        raise ApiError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
    return hub, f"app:{env.client_id}"


def event_bind(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    return MethodResult(hub.bind(app, params))


def event_unbind(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    return MethodResult(hub.unbind(app, params))


def event_get(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    return MethodResult(hub.handlers(app))


def offline_get(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    result = hub.offline_get(app, params)
    return MethodResult(result, rows=len(result["events"]))


def offline_clear(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    return MethodResult(hub.offline_clear(app, params))


def offline_error(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    return MethodResult(hub.offline_error(app, params))


def offline_list(env: Env, params: Mapping[str, Any]) -> MethodResult:
    hub, app = _app(env)
    rows, total, nxt = hub.offline_list(app, params)
    return MethodResult(rows, total=total, next=nxt, rows=len(rows))


EVENT_HANDLERS: dict[str, Callable[[Env, Mapping[str, Any]], MethodResult]] = {
    "event.bind": event_bind,
    "event.unbind": event_unbind,
    "event.get": event_get,
    "event.offline.get": offline_get,
    "event.offline.clear": offline_clear,
    "event.offline.error": offline_error,
    "event.offline.list": offline_list,
}
