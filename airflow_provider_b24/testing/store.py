"""The emulated portal's activities: a thread-safe, ID-indexed store in wire format.

Rows are kept exactly as the portal sends them (strings, ``null``, ``[]``) plus parsed unix times of
the datetime fields, so list queries compare instants, not text. IDs are indexed (dict) and kept
sorted (list + bisect) for keyset pages. Every write bumps ``LAST_UPDATED`` to the store clock's
current whole second, like the portal does.

Public API (``emu.store``): ``add(fields) -> id``, ``update(id, fields)``, ``complete(id)``,
``delete(id)`` (each also tells ``listeners``, e.g. the offline event queue), ``get(id)``, ``ids()``,
``len()``, ``set_hidden(id)`` (the webhook user may not see it: ``get`` says ``Access denied.``,
``list`` omits it), ``touch(id, at)``, ``save(path)``, ``load(path)``.
"""

from __future__ import annotations

import bisect
import copy
import json
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from airflow_provider_b24.testing.fields import (
    ACTIVITY_FIELDS,
    DATETIME_FIELDS,
    DEFAULT_KEYS,
    INTEGER_FIELDS,
    ON_REQUEST_KEYS,
)
from airflow_provider_b24.testing.timeutil import format_ts, parse_datetime, parse_offset

__all__ = ["NO_DEADLINE_EPOCH_UTC", "ActivityStore", "Row", "split_row"]

Row = dict[str, Any]
# 9999-12-31T00:00:00 in the portal's zone is "no deadline"; the epoch depends on the offset.
NO_DEADLINE_EPOCH_UTC = 253402214400.0  # 9999-12-31T00:00:00Z

_OBJECT_FIELDS = ("SETTINGS", "PROVIDER_PARAMS")
_BASE_GETTER = operator.itemgetter(*DEFAULT_KEYS)


def split_row(row: Mapping[str, Any]) -> tuple[Row, Row]:
    """A full row → (the ``select *`` part in wire order, the on-request fields)."""
    base = dict(zip(DEFAULT_KEYS, _BASE_GETTER(row), strict=True))
    extra = {key: row.get(key) for key in ON_REQUEST_KEYS}
    return base, extra


_LIST_FIELDS = ("COMMUNICATIONS", "FILES", "BINDINGS", "WEBDAV_ELEMENTS")


def _to_int_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return str(value)


def _to_char(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    text = str(value).upper()
    return "Y" if text in ("Y", "1", "TRUE") else "N"


class ActivityStore:
    """Thread-safe activity storage; see the module docstring for the public API."""

    def __init__(self, *, timezone: str = "+03:00", clock: Callable[[], float] = time.time) -> None:
        self.tz = parse_offset(timezone)
        self.clock = clock
        self.lock = threading.RLock()
        self._rows: dict[int, Row] = {}  # the DEFAULT_KEYS part, served as is by get and "*"
        self._extra: dict[int, Row] = {}  # COMMUNICATIONS, FILES, BINDINGS, ...
        self._ts: dict[int, dict[str, float | None]] = {}
        self._sorted: list[int] = []
        self._hidden: set[int] = set()
        self._next_id = 1
        self._next_comm_id = 1
        self.version = 0
        self.order_cache: Any = None  # owned by query.run_list
        self.default_user_id = "1"
        #: Called as ``listener(event_name, activity_id, user_id)`` after every add/update/touch/delete
        #: (not while loading fixtures); the event queue (``testing.events``) registers here.
        self.listeners: list[Callable[[str, int, str], None]] = []
        self._quiet = False

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, activity_id: object) -> bool:
        try:
            return int(activity_id) in self._rows  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def ids(self) -> list[int]:
        """All IDs, ascending (hidden ones included)."""
        with self.lock:
            return list(self._sorted)

    def get(self, activity_id: int) -> Row | None:
        """A deep copy of the stored wire row (all fields, incl. COMMUNICATIONS/FILES/BINDINGS)."""
        with self.lock:
            return copy.deepcopy(self._merged(int(activity_id)))

    def is_hidden(self, activity_id: int) -> bool:
        """True when the webhook/token user may not read this activity."""
        return int(activity_id) in self._hidden

    def hidden_ids(self) -> set[int]:
        """IDs the API user may not see."""
        with self.lock:
            return set(self._hidden)

    # Internal, lock held by the caller.
    def hidden_view(self) -> set[int]:
        """The hidden-ID set itself (no copy)."""
        return self._hidden

    def row(self, activity_id: int) -> Row | None:
        """The stored ``select *`` part itself (no copy; callers must not mutate it)."""
        return self._rows.get(activity_id)

    def on_request(self, activity_id: int) -> Row:
        """The stored on-request fields (COMMUNICATIONS, FILES, BINDINGS, ...); no copy."""
        return self._extra[activity_id]

    def _merged(self, activity_id: int) -> Row | None:
        base = self._rows.get(activity_id)
        return None if base is None else {**base, **self._extra[activity_id]}

    def _put(self, activity_id: int, row: Row, ts: dict[str, float | None]) -> None:
        self._rows[activity_id], self._extra[activity_id] = split_row(row)
        self._ts[activity_id] = ts

    def times(self, activity_id: int) -> dict[str, float | None]:
        """Parsed unix times of the row's datetime fields."""
        return self._ts[activity_id]

    def sorted_ids(self) -> list[int]:
        """The internal ascending ID list (no copy; lock held by the caller)."""
        return self._sorted

    def iter_rows(self) -> Iterator[tuple[int, Row]]:
        """(id, full row) in ID order (lock held by the caller)."""
        for activity_id in self._sorted:
            yield activity_id, {**self._rows[activity_id], **self._extra[activity_id]}

    # ----------------------------------------------------------------- writing
    def _notify(self, event_name: str, activity_id: int, user_id: Any) -> None:
        if self._quiet:
            return
        for listener in list(self.listeners):
            listener(event_name, activity_id, str(user_id or self.default_user_id))

    def set_hidden(self, activity_id: int, hidden: bool = True) -> None:
        """Mark an activity as invisible to the API user (``Access denied.``)."""
        with self.lock:
            activity_id = int(activity_id)
            if activity_id not in self._rows:
                raise KeyError(activity_id)
            if hidden:
                self._hidden.add(activity_id)
            else:
                self._hidden.discard(activity_id)
            self.version += 1

    def now(self) -> int:
        """The store clock as whole seconds (the portal's LAST_UPDATED resolution)."""
        return int(self.clock())

    def add(self, fields: Mapping[str, Any], *, activity_id: int | None = None) -> int:
        """Create an activity from (wire or Python-typed) fields; returns its ID."""
        with self.lock:
            now = self.now()
            if activity_id is None:
                activity_id = self._next_id
            activity_id = int(activity_id)
            if activity_id in self._rows:
                raise ValueError(f"activity {activity_id} exists")
            self._next_id = max(self._next_id, activity_id + 1)
            row: Row = {key: None for key in DEFAULT_KEYS}
            ts: dict[str, float | None] = dict.fromkeys(DATETIME_FIELDS)
            row.update(
                {
                    "ID": str(activity_id),
                    "ASSOCIATED_ENTITY_ID": "0",
                    "COMPLETED": "N",
                    "STATUS": "1",
                    "PRIORITY": "2",
                    "NOTIFY_TYPE": "0",
                    "NOTIFY_VALUE": "0",
                    "DESCRIPTION": "",
                    "DESCRIPTION_TYPE": "1",
                    "DIRECTION": "0",
                    "LOCATION": "",
                    "SETTINGS": [],
                    "PROVIDER_PARAMS": [],
                    "RESULT_MARK": "0",
                    "RESULT_STATUS": "0",
                    "RESULT_STREAM": "0",
                    "AUTOCOMPLETE_RULE": "0",
                    "AUTHOR_ID": self.default_user_id,
                    "EDITOR_ID": self.default_user_id,
                    "RESPONSIBLE_ID": self.default_user_id,
                    "COMMUNICATIONS": [],
                    "FILES": [],
                    "BINDINGS": [],
                    "WEBDAV_ELEMENTS": [],
                    "IS_INCOMING_CHANNEL": "N",
                    "ORIGIN_VERSION": None,
                }
            )
            self._apply(activity_id, row, ts, fields, creating=True)
            if row["CREATED"] is None:
                self._set_time(row, ts, "CREATED", now)
            if "LAST_UPDATED" not in fields:
                self._set_time(row, ts, "LAST_UPDATED", now)
            if row["START_TIME"] is None:
                self._set_time(row, ts, "START_TIME", ts["CREATED"])
            if row["END_TIME"] is None:
                self._set_time(row, ts, "END_TIME", ts["START_TIME"])
            self._derive(row, ts)
            self._put(activity_id, row, ts)
            if not self._sorted or activity_id > self._sorted[-1]:
                self._sorted.append(activity_id)
            else:
                bisect.insort(self._sorted, activity_id)
            self.version += 1
            self._notify("ONCRMACTIVITYADD", activity_id, row.get("AUTHOR_ID"))
            return activity_id

    def add_many(self, rows: Iterable[tuple[Row, Row, dict[str, float | None]]]) -> None:
        """Bulk-insert normalised (base, extra, times) triples (see ``split_row``; the generator's path)."""
        with self.lock:
            for base, extra, ts in rows:
                activity_id = int(base["ID"])
                self._rows[activity_id] = base
                self._extra[activity_id] = extra
                self._ts[activity_id] = ts
                comms = extra["COMMUNICATIONS"]
                if comms:
                    self._next_comm_id = max(self._next_comm_id, int(comms[-1]["ID"]) + 1)
            self._sorted = sorted(self._rows)
            self._next_id = (self._sorted[-1] + 1) if self._sorted else 1
            self.version += 1

    def update(self, activity_id: int, fields: Mapping[str, Any]) -> None:
        """Change fields (read-only and immutable ones are ignored, as the portal does)."""
        with self.lock:
            activity_id = int(activity_id)
            row = self._merged(activity_id)
            if row is None:
                raise KeyError(activity_id)
            ts = dict(self._ts[activity_id])
            self._apply(activity_id, row, ts, fields, creating=False)
            if "LAST_UPDATED" not in fields:
                self._set_time(row, ts, "LAST_UPDATED", self.now())
            self._derive(row, ts)
            self._put(activity_id, row, ts)
            self.version += 1
            self._notify("ONCRMACTIVITYUPDATE", activity_id, row.get("EDITOR_ID"))

    def complete(self, activity_id: int) -> None:
        """Mark an activity completed (``COMPLETED=Y``, ``STATUS=2``); bumps LAST_UPDATED."""
        self.update(activity_id, {"COMPLETED": "Y"})

    def touch(self, activity_id: int, at: Any = None) -> None:
        """Set LAST_UPDATED to ``at`` (unix seconds or ISO string) or now, changing nothing else."""
        with self.lock:
            activity_id = int(activity_id)
            row = dict(self._rows[activity_id])
            ts = dict(self._ts[activity_id])
            epoch = self.now() if at is None else parse_datetime(at, self.tz)
            self._set_time(row, ts, "LAST_UPDATED", epoch)
            self._rows[activity_id] = row
            self._ts[activity_id] = ts
            self.version += 1
            self._notify("ONCRMACTIVITYUPDATE", activity_id, row.get("EDITOR_ID"))

    def delete(self, activity_id: int) -> None:
        """Remove an activity."""
        with self.lock:
            activity_id = int(activity_id)
            del self._rows[activity_id]
            del self._extra[activity_id]
            del self._ts[activity_id]
            self._hidden.discard(activity_id)
            index = bisect.bisect_left(self._sorted, activity_id)
            del self._sorted[index]
            self.version += 1
            self._notify("ONCRMACTIVITYDELETE", activity_id, None)

    def clear(self) -> None:
        """Remove everything."""
        with self.lock:
            self._rows.clear()
            self._extra.clear()
            self._ts.clear()
            self._sorted.clear()
            self._hidden.clear()
            self._next_id = 1
            self.version += 1

    # ----------------------------------------------------------------- fixtures
    def dump(self) -> dict[str, Any]:
        """A JSON-able snapshot: ``{"timezone", "activities": [wire rows], "hidden": [ids]}``."""
        with self.lock:
            return {
                "timezone": format_ts(0, self.tz)[-6:],
                "activities": [copy.deepcopy(self._merged(i)) for i in self._sorted],
                "hidden": sorted(self._hidden),
            }

    def save(self, path: str | Path) -> None:
        """Write the snapshot to a JSON file (UTF-8)."""
        Path(path).write_text(json.dumps(self.dump(), ensure_ascii=False, indent=1), encoding="utf-8")

    def load(self, source: str | Path | Mapping[str, Any] | list[Any]) -> None:
        """Replace the contents with a JSON fixture (a file path, a snapshot dict or a row list).

        Rows keep their IDs and timestamps; missing fields get the portal's defaults.
        """
        data: Any = source
        if isinstance(source, str | Path):
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        rows = data.get("activities", []) if isinstance(data, Mapping) else data
        hidden = data.get("hidden", []) if isinstance(data, Mapping) else []
        with self.lock:
            self.clear()
            self._quiet = True  # a fixture is the portal's starting state, not a stream of changes
            try:
                for raw in rows:
                    fields = dict(raw)
                    activity_id = _to_int_str(fields.pop("ID", None))
                    self.add(fields, activity_id=int(activity_id) if activity_id else None)
            finally:
                self._quiet = False
            for activity_id in hidden:
                self._hidden.add(int(activity_id))

    # ----------------------------------------------------------------- normalising
    def _set_time(self, row: Row, ts: dict[str, float | None], name: str, epoch: float | None) -> None:
        ts[name] = epoch
        row[name] = None if epoch is None else format_ts(epoch, self.tz)

    def _derive(self, row: Row, ts: dict[str, float | None]) -> None:
        """DEADLINE follows START_TIME for calls/meetings, END_TIME otherwise; STATUS follows COMPLETED."""
        type_id = row.get("TYPE_ID")
        if type_id in ("1", "2"):
            self._set_time(row, ts, "DEADLINE", ts["START_TIME"])
        else:
            self._set_time(row, ts, "DEADLINE", ts["END_TIME"])
        if row["COMPLETED"] == "Y" and row["STATUS"] == "1":
            row["STATUS"] = "2"
        elif row["COMPLETED"] == "N" and row["STATUS"] in ("2", "3"):
            row["STATUS"] = "1"
        if not row["BINDINGS"] and row.get("OWNER_ID") and row.get("OWNER_TYPE_ID"):
            row["BINDINGS"] = [{"OWNER_TYPE_ID": row["OWNER_TYPE_ID"], "OWNER_ID": row["OWNER_ID"]}]

    def _apply(
        self,
        activity_id: int,
        row: Row,
        ts: dict[str, float | None],
        fields: Mapping[str, Any],
        *,
        creating: bool,
    ) -> None:
        for raw_name, value in fields.items():
            name = str(raw_name).upper()
            spec = ACTIVITY_FIELDS.get(name)
            if spec is None or name == "ID":
                continue
            if not creating and spec.immutable:
                continue
            if name in DATETIME_FIELDS:
                self._set_time(row, ts, name, parse_datetime(value, self.tz))
            elif name in INTEGER_FIELDS:
                row[name] = _to_int_str(value)
            elif spec.type == "char":
                row[name] = _to_char(value)
            elif spec.type == "double":
                row[name] = None if value is None or value == "" else str(value)
            elif name in _OBJECT_FIELDS:
                row[name] = dict(value) if isinstance(value, Mapping) and value else []
            elif name == "COMMUNICATIONS":
                row[name] = self._communications(activity_id, value)
            elif name == "BINDINGS":
                row[name] = [
                    {
                        "OWNER_TYPE_ID": _to_int_str(b.get("OWNER_TYPE_ID")),
                        "OWNER_ID": _to_int_str(b.get("OWNER_ID")),
                    }
                    for b in value or []
                    if isinstance(b, Mapping)
                ]
            elif name in ("FILES", "WEBDAV_ELEMENTS"):
                row[name] = [
                    {"id": int(f["id"] if isinstance(f, Mapping) else f)}
                    for f in value or []
                    if f is not None
                ]
            else:
                row[name] = None if value is None else str(value)

    def _communications(self, activity_id: int, value: Any) -> list[Row]:
        items = list(value.values()) if isinstance(value, Mapping) else list(value or [])
        out: list[Row] = []
        for item in items:
            if not isinstance(item, Mapping):
                continue
            comm_id = item.get("ID")
            if comm_id is None:
                comm_id = self._next_comm_id
                self._next_comm_id += 1
            settings = item.get("ENTITY_SETTINGS") or {}
            out.append(
                {
                    "ID": str(comm_id),
                    "TYPE": str(item.get("TYPE") or ""),
                    "VALUE": str(item.get("VALUE") or ""),
                    "ENTITY_ID": _to_int_str(item.get("ENTITY_ID")) or "0",
                    "ENTITY_TYPE_ID": _to_int_str(item.get("ENTITY_TYPE_ID")) or "0",
                    "ENTITY_SETTINGS": {str(k): (None if v is None else str(v)) for k, v in settings.items()}
                    if isinstance(settings, Mapping)
                    else {},
                }
            )
        return out
