"""Deterministic, realistic activity data (seeded): calls, e-mails, meetings, tasks, to-dos and more.

Same ``(count, seed, timezone)`` → byte-identical rows. IDs are ``1..count`` with no gaps.
``LAST_UPDATED`` is spread uniformly over ``[DATA_FROM, DATA_TO)`` (2024-01-01 .. 2025-01-01 UTC),
``CREATED`` is up to a year earlier. About a quarter of the to-dos have no deadline
(``9999-12-31T00:00:00`` in the portal offset). Owners cover leads, deals, contacts, companies,
quotes, smart invoices (31) and smart processes (128, 130, 1032); subjects are English, Russian,
German and emoji UTF-8. 100,000 rows take about a second or two.
"""

from __future__ import annotations

import datetime as dt
import gc
import random
import threading
from collections.abc import Iterator
from typing import Any, Final

from airflow_provider_b24.testing.store import ActivityStore, Row, split_row
from airflow_provider_b24.testing.timeutil import FastFormatter, format_ts

__all__ = ["DATA_FROM", "DATA_TO", "USER_IDS", "generate", "populate"]

DATA_FROM: Final[int] = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())
DATA_TO: Final[int] = int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp())
USER_IDS: Final[tuple[str, ...]] = ("1", "1", "5", "7", "12", "505", "505", "31")

_FIRST = ("Andrew", "Maria", "Иван", "Ольга", "Jürgen", "Zoë", "Алексей", "Li", "Fatima", "Sergey")
_LAST = (
    "Johnson",
    "Petrova",
    "Иванов",
    "Смирнова",
    "Müller",
    "O'Brien",
    "Кузнецов",
    "Wang",
    "Haddad",
    "Orlov",
)
_LAST_ASCII = (
    "johnson",
    "petrova",
    "ivanov",
    "smirnova",
    "mueller",
    "obrien",
    "kuznetsov",
    "wang",
    "haddad",
    "orlov",
)
_COMPANIES = ("ООО «Ромашка»", "Acme Corp", "Müller & Söhne GmbH", "ИП Сидоров", "Globex", "Umbrella Ltd")  # noqa: RUF001
_OWNER_TYPES = ("1", "2", "2", "2", "3", "3", "4", "7", "31", "128", "130", "1032")
_CURRENCIES = ("RUB", "USD", "EUR", "KZT")


def _kind_table() -> list[tuple[str, str, str, str]]:
    """(TYPE_ID, PROVIDER_ID, PROVIDER_TYPE_ID, kind) weighted by frequency."""
    return (
        [("2", "VOXIMPLANT_CALL", "CALL", "call")] * 26
        + [("2", "CRM_CALL_TRACKER", "CALL", "call")] * 2
        + [("4", "CRM_EMAIL", "EMAIL", "email")] * 18
        + [("1", "CRM_MEETING", "MEETING", "meeting")] * 9
        + [("3", "CRM_TASKS_TASK", "TASK", "task")] * 10
        + [("6", "CRM_TODO", "TODO", "todo")] * 25
        + [("6", "CONFIGURABLE_REST_APP", "CONFIGURABLE", "configurable")] * 4
        + [("6", "IMOPENLINES_SESSION", "IMOPENLINES_SESSION", "chat")] * 4
        + [("5", "CRM_CALENDAR_SHARING", "CALENDAR_SHARING", "calendar")] * 2
    )


_KINDS = _kind_table()


def _subject(kind: str, direction: str, name: str, rng: random.Random) -> str:
    ru = rng.random() < 0.45
    choice = rng.choice
    if kind == "call":
        if ru:
            return ("Входящий звонок " if direction == "1" else "Исходящий звонок ") + name
        return ("Incoming call " if direction == "1" else "Outgoing call ") + name
    if kind == "email":
        return choice(("Re: Коммерческое предложение", "Invoice #{n}", "Angebot für {c}", "Договор 📄"))
    if kind == "meeting":
        return choice(("Встреча с клиентом", "Meeting with {c}", "Demo 🎯 {c}", "Besprechung"))  # noqa: RUF001
    if kind == "task":
        return choice(("Подготовить КП", "Send the contract", "Rückruf vereinbaren", "Проверить оплату ✅"))
    if kind == "todo":
        return choice(("Позвонить клиенту", "Follow up", "Напомнить об оплате", "", "Check 📌 status"))  # noqa: RUF001
    if kind == "chat":
        return "Открытая линия: " + name
    if kind == "calendar":
        return "Calendar slot booked"
    return "App activity: " + name


def generate(
    count: int, seed: int = 1, timezone: dt.timezone = dt.UTC
) -> Iterator[tuple[Row, dict[str, float | None]]]:
    """Yield ``count`` (wire row, parsed times) pairs, IDs 1..count."""
    rng = random.Random(seed)
    random_ = rng.random

    def randrange(low: int, high: int | None = None) -> int:
        if high is None:
            low, high = 0, low
        return low + int(random_() * (high - low))

    def choice(seq: Any) -> Any:
        return seq[int(random_() * len(seq))]

    span = DATA_TO - DATA_FROM
    no_deadline = dt.datetime(9999, 12, 31, tzinfo=timezone).timestamp()
    no_deadline_text = format_ts(no_deadline, timezone)
    fmt = FastFormatter(timezone)
    comm_id = 1
    file_id = 1000
    for activity_id in range(1, count + 1):
        type_id, provider_id, provider_type, kind = choice(_KINDS)
        first = choice(_FIRST)
        last_index = int(random_() * len(_LAST))
        last = _LAST[last_index]
        name = f"{first} {last}"
        company = choice(_COMPANIES)
        direction = choice(("1", "2")) if kind in ("call", "email") else "0"
        subject = (
            _subject(kind, direction, name, rng).replace("{n}", str(activity_id)).replace("{c}", company)
        )
        owner_type = choice(_OWNER_TYPES)
        owner_id = str(randrange(1, 5000))
        last_updated = DATA_FROM + randrange(span)
        created = last_updated - randrange(0, 365 * 86400) if random_() < 0.7 else last_updated
        start = created + randrange(-3 * 86400, 30 * 86400)
        if kind == "call":
            end = start + randrange(30, 1800)
        elif kind == "meeting":
            end = start + 3600 * randrange(1, 4)
        else:
            end = start + 86400 * randrange(0, 14)
        completed = random_() < (0.8 if kind in ("call", "email", "chat") else 0.45)
        status = ("3" if random_() < 0.1 else "2") if completed else "1"
        responsible = choice(USER_IDS)
        author = choice(USER_IDS)
        ts: dict[str, float | None] = {
            "CREATED": float(created),
            "LAST_UPDATED": float(last_updated),
            "START_TIME": float(start),
            "END_TIME": float(end),
        }
        start_text = fmt(start)
        end_text = fmt(end)
        if kind == "todo" and random_() < 0.25:
            ts["START_TIME"] = ts["END_TIME"] = no_deadline
            start_text = end_text = no_deadline_text
        deadline_text = start_text if type_id in ("1", "2") else end_text
        ts["DEADLINE"] = ts["START_TIME"] if type_id in ("1", "2") else ts["END_TIME"]

        comms: list[Row] = []
        if kind in ("call", "email", "meeting", "chat"):
            entity_type = choice(("3", "3", "4", "1"))
            if kind == "call":
                comm_type, value = "PHONE", f"+7{randrange(9000000000, 9999999999)}"
            elif kind == "email":
                comm_type, value = "EMAIL", f"{_LAST_ASCII[last_index]}{randrange(100)}@example.com"
            elif kind == "chat":
                comm_type, value = "IM", f"imol|telegrambot|{randrange(1, 99)}|{randrange(10**6)}"
            else:
                comm_type, value = "", name
            comms.append(
                {
                    "ID": str(comm_id),
                    "TYPE": comm_type,
                    "VALUE": value,
                    "ENTITY_ID": str(randrange(1, 5000)),
                    "ENTITY_TYPE_ID": entity_type,
                    "ENTITY_SETTINGS": {
                        "HONORIFIC": choice(("", "HNR_RU_1", "HNR_EN_1")),
                        "NAME": first,
                        "SECOND_NAME": "",
                        "LAST_NAME": last,
                        "COMPANY_TITLE": company if entity_type == "4" else "",
                        "COMPANY_ID": str(randrange(1, 500)) if entity_type == "4" else "",
                    },
                }
            )
            comm_id += 1
        files: list[dict[str, int]] = []
        if kind in ("email", "task", "todo") and random_() < 0.15:
            for _ in range(randrange(1, 4)):
                files.append({"id": file_id})
                file_id += 1
        bindings = [{"OWNER_TYPE_ID": owner_type, "OWNER_ID": owner_id}]
        if random_() < 0.3:
            extra_type = "3" if owner_type != "3" else "2"
            bindings.append({"OWNER_TYPE_ID": extra_type, "OWNER_ID": str(randrange(1, 5000))})

        has_result = random_() < 0.1
        if kind == "email":
            description = f"<p>Здравствуйте, {first}!</p><p>See attached.</p>"
            description_type = "3"
        elif kind == "task" and random_() < 0.5:
            description = f"[b]{company}[/b]: follow up"
            description_type = "2"
        else:
            description = "" if random_() < 0.6 else f"Note for {name}: перезвонить после 15:00"
            description_type = "1"
        row: Row = {
            "ID": str(activity_id),
            "OWNER_ID": owner_id,
            "OWNER_TYPE_ID": owner_type,
            "TYPE_ID": type_id,
            "PROVIDER_ID": provider_id,
            "PROVIDER_TYPE_ID": provider_type,
            "PROVIDER_GROUP_ID": None if kind != "configurable" else "app.123",
            "ASSOCIATED_ENTITY_ID": str(randrange(1, 90000)) if kind in ("call", "task", "email") else "0",
            "SUBJECT": subject,
            "CREATED": fmt(created),
            "LAST_UPDATED": fmt(last_updated),
            "START_TIME": start_text,
            "END_TIME": end_text,
            "DEADLINE": deadline_text,
            "COMPLETED": "Y" if completed else "N",
            "STATUS": status,
            "RESPONSIBLE_ID": responsible,
            "PRIORITY": choice(("2", "2", "2", "1", "3")),
            "NOTIFY_TYPE": choice(("0", "0", "1", "2", "3")),
            "NOTIFY_VALUE": choice(("0", "15", "30", "1")),
            "DESCRIPTION": description,
            "DESCRIPTION_TYPE": description_type,
            "DIRECTION": direction,
            "LOCATION": "Офис, переговорная 2" if kind == "meeting" else "",
            "SETTINGS": {"DISABLE_SENDING_MESSAGE_COPY": "Y"} if kind == "email" and random_() < 0.3 else [],
            "ORIGINATOR_ID": "1C" if random_() < 0.05 else None,
            "ORIGIN_ID": f"ext-{activity_id}" if random_() < 0.05 else None,
            "AUTHOR_ID": author,
            "EDITOR_ID": choice((author, responsible)),
            "PROVIDER_PARAMS": {"COLOR_ID": str(randrange(1, 8))}
            if kind == "todo" and random_() < 0.3
            else [],
            "PROVIDER_DATA": None if kind != "configurable" else '{"layout":"default"}',
            "RESULT_MARK": "0",
            "RESULT_VALUE": f"{randrange(1, 100)}.5" if has_result else None,
            "RESULT_SUM": f"{randrange(100, 500000)}.{randrange(100):02d}" if has_result else None,
            "RESULT_CURRENCY_ID": choice(_CURRENCIES) if has_result else None,
            "RESULT_STATUS": "0",
            "RESULT_STREAM": "0",
            "RESULT_SOURCE_ID": None,
            "AUTOCOMPLETE_RULE": "1" if kind == "todo" and random_() < 0.1 else "0",
            "COMMUNICATIONS": comms,
            "FILES": files,
            "BINDINGS": bindings,
            "WEBDAV_ELEMENTS": [],
            "IS_INCOMING_CHANNEL": "Y" if direction == "1" and kind != "email" else "N",
            "ORIGIN_VERSION": None,
        }
        yield row, ts


_CACHE: dict[tuple[int, int, str], list[tuple[Row, Row, dict[str, float | None]]]] = {}
_CACHE_LOCK = threading.Lock()


def populate(store: ActivityStore, count: int, seed: int = 1) -> None:
    """Replace the store's contents with ``count`` generated activities.

    The generated rows are cached per process (the two most recent data sets) and shared between
    stores: rows are never mutated in place (writes replace them), so sharing is safe and a second
    emulator with the same ``(count, seed, timezone)`` starts instantly.
    """
    store.clear()
    if count <= 0:
        return
    key = (count, seed, format_ts(0, store.tz)[19:])
    with _CACHE_LOCK:
        rows = _CACHE.get(key)
        if rows is None:
            # The cyclic GC would rescan the growing heap again and again while millions of
            # containers are allocated; pause it, then freeze the result out of future scans.
            big = count >= 20_000
            if big:  # collect real garbage now, so the freeze below keeps only live objects
                gc.collect()
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                rows = [(*split_row(row), ts) for row, ts in generate(count, seed, store.tz)]
            finally:
                if was_enabled:
                    gc.enable()
            if big:
                gc.freeze()
            while len(_CACHE) >= 2:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = rows
    store.add_many(rows)


def sample_fields(seed: int = 1) -> dict[str, Any]:
    """One generated activity as ``crm.activity.add``-style fields (handy in docs and tests)."""
    row, _ = next(generate(1, seed))
    return {k: v for k, v in row.items() if k != "ID"}
