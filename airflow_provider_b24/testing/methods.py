"""REST method handlers: ``crm.activity.*`` and the cheap portal methods (profile, scope, ...).

Each handler takes ``(env, params)`` and returns a :class:`MethodResult` or raises
:class:`~airflow_provider_b24.testing.errors.ApiError`. Parameter names are matched
case-insensitively, like the portal's legacy CRM methods (``id`` and ``ID`` both work).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_b24.testing.errors import legacy
from airflow_provider_b24.testing.fields import (
    ACTIVITY_FIELDS,
    COMMUNICATION_FIELDS,
    DEFAULT_KEYS,
    field_description,
)
from airflow_provider_b24.testing.query import QueryError, render_row, resolve_select, run_list
from airflow_provider_b24.testing.store import ActivityStore

__all__ = ["HANDLERS", "NOT_FOUND", "Env", "MethodResult", "param", "scope_of"]

# The docs name "Activity is not found" for crm.activity.get; sibling legacy getters answer "Not found".
# The emulator answers "Not found" (``not_found_message`` switches it, e.g. to "Activity is not found");
# clients should match /not found/i.
NOT_FOUND = "Not found"


@dataclass
class MethodResult:
    """A handler's answer: ``result`` plus list pagination and the row count (for latency/cost)."""

    result: Any
    total: int | None = None
    next: int | None = None
    rows: int = 0


@dataclass
class Env:
    """What handlers may see of the portal."""

    store: ActivityStore
    base_url: str
    user_id: str
    scopes: tuple[str, ...]
    member_id: str
    auth_kind: str
    client_id: str
    not_found: str = "Not found"
    events: Any = None  # the portal's testing.events.EventHub (event.* methods)


Handler = Callable[[Env, Mapping[str, Any]], MethodResult]


def param(params: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A parameter by case-insensitive name."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if str(key).lower() == lowered:
            return value
    return default


def _activity_id(params: Mapping[str, Any]) -> int:
    raw = param(params, "id")
    try:
        value = int(str(raw).strip()) if raw is not None and not isinstance(raw, bool) else 0
    except ValueError:
        value = 0
    if value <= 0:
        raise legacy("ID is not defined or invalid.")
    return value


def _file_url(env: Env) -> Callable[[int, int], str]:
    def url(file_id: int, activity_id: int) -> str:
        return (
            f"{env.base_url}/bitrix/tools/crm_show_file.php?fileId={file_id}"
            f"&ownerTypeId=6&ownerId={activity_id}&auth="
        )

    return url


def _existing(env: Env, activity_id: int, denied: str) -> None:
    store = env.store
    if activity_id not in store:
        raise legacy(env.not_found)
    if store.is_hidden(activity_id):
        raise legacy(denied)


# ------------------------------------------------------------------------------ crm.activity.*
def activity_get(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """One activity, the documented key set (no COMMUNICATIONS/FILES/BINDINGS)."""
    activity_id = _activity_id(params)
    with env.store.lock:
        _existing(env, activity_id, "Access denied.")
        row = env.store.row(activity_id)
        assert row is not None
        pair = (row, env.store.on_request(activity_id))
        return MethodResult(render_row(pair, DEFAULT_KEYS, _file_url(env)), rows=1)


def activity_list(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """50-row pages with filter/order/select; ``start=-1`` skips the count."""
    try:
        page = run_list(
            env.store,
            filt=param(params, "filter"),
            order=param(params, "order"),
            start=param(params, "start"),
        )
    except QueryError as exc:
        raise legacy(str(exc)) from exc
    keys = resolve_select(param(params, "select"))
    url = _file_url(env)
    rows = [render_row(row, keys, url) for row in page.rows]
    return MethodResult(rows, total=page.total, next=page.next, rows=len(rows))


def activity_fields(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """The field catalogue."""
    return MethodResult({name: field_description(spec) for name, spec in ACTIVITY_FIELDS.items()})


def communication_fields(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """The communication field catalogue."""
    return MethodResult({name: field_description(spec) for name, spec in COMMUNICATION_FIELDS.items()})


def _fields_param(params: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = param(params, "fields")
    if not isinstance(fields, Mapping):
        raise legacy("The parameter 'fields' must be array.")
    return {str(k).upper(): v for k, v in fields.items()}


def _validate(fields: Mapping[str, Any], *, creating: bool) -> None:
    subject = fields.get("SUBJECT")
    if (creating or "SUBJECT" in fields) and (subject is None or str(subject).strip() == ""):
        raise legacy("The field SUBJECT is not defined or empty")
    if creating or "RESPONSIBLE_ID" in fields:
        try:
            ok = int(str(fields.get("RESPONSIBLE_ID"))) > 0
        except ValueError:
            ok = False
        if not ok:
            raise legacy("The field RESPONSIBLE_ID is not defined or invalid")
    if creating:
        type_id = str(fields.get("TYPE_ID", ""))
        if type_id not in ("1", "2", "4", "5", "6"):
            raise legacy("The field TYPE_ID is not defined or invalid")
        comms = fields.get("COMMUNICATIONS")
        if type_id != "6" and (not comms or not isinstance(comms, list | dict)):
            raise legacy("The field COMMUNICATIONS is not defined or invalid")
        try:
            owner_ok = int(str(fields.get("OWNER_ID"))) > 0 and int(str(fields.get("OWNER_TYPE_ID"))) > 0
        except ValueError:
            owner_ok = False
        if not owner_ok:
            raise legacy(_BINDING_ERROR)


_BINDING_ERROR = (
    "Could not build binding. Please ensure that owner info and communications are defined correctly"
)


def activity_add(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """Create an activity; ``result`` is the new ID as an integer."""
    fields = dict(_fields_param(params))
    _validate(fields, creating=True)
    for read_only in ("ID", "CREATED", "LAST_UPDATED", "AUTHOR_ID", "EDITOR_ID", "DEADLINE", "BINDINGS"):
        fields.pop(read_only, None)
    fields["AUTHOR_ID"] = fields["EDITOR_ID"] = env.user_id
    return MethodResult(env.store.add(fields), rows=1)


def activity_update(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """Change an activity; ``result`` is ``true``."""
    activity_id = _activity_id(params)
    with env.store.lock:
        _existing(env, activity_id, "Access denied")
        fields = dict(_fields_param(params))
        _validate(fields, creating=False)
        for read_only in ("ID", "CREATED", "LAST_UPDATED", "AUTHOR_ID", "DEADLINE", "BINDINGS"):
            fields.pop(read_only, None)
        fields["EDITOR_ID"] = env.user_id
        env.store.update(activity_id, fields)
    return MethodResult(True, rows=1)


def activity_delete(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """Delete an activity; ``result`` is ``true``."""
    activity_id = _activity_id(params)
    with env.store.lock:
        _existing(env, activity_id, "Access denied")
        env.store.delete(activity_id)
    return MethodResult(True, rows=1)


# ------------------------------------------------------------------------------ portal methods
def profile(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """The calling user's profile."""
    offset = env.store.tz.utcoffset(None) or dt.timedelta(0)
    return MethodResult(
        {
            "ID": env.user_id,
            "ADMIN": True,
            "NAME": "Emulator",
            "LAST_NAME": "Admin",
            "PERSONAL_GENDER": "",
            "PERSONAL_PHOTO": "",
            "TIME_ZONE": "",
            "TIME_ZONE_OFFSET": int(offset.total_seconds()),
        }
    )


def user_current(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """``user.current``: a short user record."""
    return MethodResult(
        {
            "ID": env.user_id,
            "ACTIVE": True,
            "NAME": "Emulator",
            "LAST_NAME": "Admin",
            "EMAIL": "admin@example.com",
            "TIME_ZONE": "",
        }
    )


def scope(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """The scopes granted to this webhook or token."""
    return MethodResult(list(env.scopes))


def app_info(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """``app.info``: who the caller is (a local app for OAuth; the webhook otherwise)."""
    return MethodResult(
        {
            "ID": 1,
            "CODE": env.client_id if env.auth_kind == "oauth" else "webhook",
            "VERSION": 1,
            "STATUS": "L",
            "INSTALLED": True,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": "en_project",
            "LICENSE_TYPE": "project",
            "LICENSE_FAMILY": "project",
            "member_id": env.member_id,
            "SCOPE": list(env.scopes),
        }
    )


def server_time(env: Env, params: Mapping[str, Any]) -> MethodResult:
    """``server.time``: now in the portal's offset."""
    return MethodResult(dt.datetime.fromtimestamp(int(env.store.clock()), env.store.tz).isoformat())


def _enum(values: list[tuple[int, str]]) -> Handler:
    def handler(env: Env, params: Mapping[str, Any]) -> MethodResult:
        return MethodResult(
            [{"ID": i, "NAME": n, "SYMBOL_CODE": None, "SYMBOL_CODE_SHORT": None} for i, n in values]
        )

    return handler


HANDLERS: dict[str, Handler] = {
    "crm.activity.get": activity_get,
    "crm.activity.list": activity_list,
    "crm.activity.fields": activity_fields,
    "crm.activity.communication.fields": communication_fields,
    "crm.activity.add": activity_add,
    "crm.activity.update": activity_update,
    "crm.activity.delete": activity_delete,
    "crm.enum.activitytype": _enum(
        [(1, "Meeting"), (2, "Call"), (3, "Task"), (4, "E-mail"), (5, "Action"), (6, "User action")]
    ),
    "crm.enum.activitystatus": _enum([(1, "Pending"), (2, "Completed"), (3, "Auto completed")]),
    "crm.enum.activitydirection": _enum([(1, "Incoming"), (2, "Outgoing")]),
    "crm.enum.activitypriority": _enum([(1, "Low"), (2, "Medium"), (3, "High")]),
    "profile": profile,
    "user.current": user_current,
    "scope": scope,
    "app.info": app_info,
    "server.time": server_time,
}


def scope_of(method: str) -> str | None:
    """The scope a method needs (None = always allowed)."""
    if method.startswith("crm."):
        return "crm"
    if method == "user.current":
        return "user"
    return None
