"""The fault-injection matrix of issue 10: every scripted fault by every workload, with its expected outcome.

This module is plain data (no Airflow, no provider imports) so it can print the table on its own:

    python tests/reliability/matrix.py            # Markdown table (docs/reliability.md holds a copy)

``tests/reliability/test_fault_matrix.py`` is parametrized from :data:`CASES` and asserts each cell;
``test_matrix_table_is_in_the_docs`` fails when ``docs/reliability.md`` no longer matches this table.

Workloads (each runs against the bundled emulator over HTTPS; the fault is injected *mid-run*, i.e.
on the second REST request, except for the write, where it hits the write itself):

* ``fetch``: ``Bitrix24GetActivitiesOperator.execute`` on 5,000 IDs (2 HTTP requests).
* ``poke``: ``Bitrix24ActivitySensor.poke`` waiting on 10 activities (5 completed at the first poke).
* ``trigger``: ``Bitrix24ActivityTrigger.run`` on the same 10 activities (and ``execute_complete``).
* ``export``: ``Bitrix24ExportActivitiesOperator.execute`` of 10,000 rows (5 HTTP requests).
* ``write``: ``Bitrix24Hook.add_activity`` (a write: it must never be executed twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

WORKLOADS: tuple[str, ...] = ("fetch", "poke", "trigger", "export", "write")

WORKLOAD_TITLES: dict[str, str] = {
    "fetch": "fetch 5,000 IDs (operator)",
    "poke": "sensor poke, 10 IDs",
    "trigger": "trigger, 10 IDs",
    "export": "export 10,000 rows",
    "write": "write (`add_activity`)",
}


class Outcome(StrEnum):
    """What a cell must end with."""

    #: The workload completes and its data equals the emulator's store, field by field
    #: (for ``write``: exactly one activity created).
    EXACT = "exact"
    #: ``AirflowFailException`` (no Airflow retries) whose message contains ``Expect.needle``;
    #: for ``write`` (the hook alone): the named Bitrix24 exception.
    FAIL = "fail"
    #: The named Bitrix24 exception propagates (Airflow's ``retries`` apply), message contains the needle.
    RAISE = "raise"
    #: Sensor / trigger: not a failure; it keeps waiting and ends with exact data once the fault is gone.
    WAIT = "wait"
    #: Sensor / trigger: no request before the portal's ``operating_reset_at``, then exact data.
    WAIT_RESET = "wait_reset"
    #: Trigger: one ``{"status": "error"}`` event naming the cause; ``execute_complete`` then fails.
    ERROR_EVENT = "error_event"
    #: Write: the named exception says "not repeated"; the emulator saw exactly one write request.
    NOT_RESENT = "not_resent"
    #: Not applicable (e.g. per-command batch errors for a single write).
    NA = "n/a"


@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    #: exception class name (RAISE / FAIL for write / NOT_RESENT) or message fragment (FAIL / ERROR_EVENT).
    needle: str = ""

    def text(self) -> str:
        o = self.outcome
        if o is Outcome.EXACT:
            return "exact data"
        if o is Outcome.FAIL and self.needle.startswith("Bitrix24"):
            return f"`{self.needle}` (not retryable)"
        if o is Outcome.FAIL:
            return f"fails, no retry: `{self.needle}`"
        if o is Outcome.RAISE:
            return f"`{self.needle}` (Airflow retries)"
        if o is Outcome.WAIT:
            return "keeps waiting, then exact data"
        if o is Outcome.WAIT_RESET:
            return "no request before reset, then exact data"
        if o is Outcome.ERROR_EVENT:
            return f"error event: `{self.needle}`"
        if o is Outcome.NOT_RESENT:
            return f"`{self.needle}`, not re-sent (1 write)"
        return "—"


@dataclass(frozen=True)
class Case:
    """One row: a fault, how it is injected, the auth it needs, and the expected outcome per workload."""

    id: str
    title: str
    injected: str
    expect: dict[str, Expect]
    oauth: bool = False


E = Expect
EXACT = E(Outcome.EXACT)
WAIT = E(Outcome.WAIT)
NA = E(Outcome.NA)


def _retried(write: Expect) -> dict[str, Expect]:
    """A transient fault the client absorbs with its own retries (reads), with the given write outcome."""
    return {"fetch": EXACT, "poke": EXACT, "trigger": EXACT, "export": EXACT, "write": write}


def _not_resent(cls: str) -> Expect:
    return E(Outcome.NOT_RESENT, cls)


CASES: tuple[Case, ...] = (
    Case(
        "query_limit",
        "503 `QUERY_LIMIT_EXCEEDED` burst",
        "3 in a row",
        _retried(EXACT),
    ),
    Case(
        "op_limit_short",
        "429 `OPERATION_TIME_LIMIT`, short reset",
        "`operating_reset_at` = now (≤ `operating_max_wait`)",
        _retried(EXACT),
    ),
    Case(
        "op_limit_long",
        "429 `OPERATION_TIME_LIMIT`, long reset",
        "`operating_reset_at` = now + 600 s",
        {
            "fetch": E(Outcome.RAISE, "Bitrix24OperationTimeLimit"),
            "poke": E(Outcome.WAIT_RESET),
            "trigger": E(Outcome.WAIT_RESET),
            "export": E(Outcome.RAISE, "Bitrix24OperationTimeLimit"),
            "write": E(Outcome.RAISE, "Bitrix24OperationTimeLimit"),
        },
    ),
    Case(
        "http_500_json",
        "500 JSON `INTERNAL_SERVER_ERROR`",
        "2 in a row",
        _retried(_not_resent("Bitrix24ServerError")),
    ),
    Case("http_500_html", "500 HTML page", "2 in a row", _retried(_not_resent("Bitrix24ServerError"))),
    Case("http_502_json", "502 JSON body", "2 in a row", _retried(_not_resent("Bitrix24ServerError"))),
    Case(
        "http_502_html", "502 HTML page (nginx)", "2 in a row", _retried(_not_resent("Bitrix24ServerError"))
    ),
    Case("http_504_json", "504 JSON body", "2 in a row", _retried(_not_resent("Bitrix24ServerError"))),
    Case(
        "http_504_html", "504 HTML page (nginx)", "2 in a row", _retried(_not_resent("Bitrix24ServerError"))
    ),
    Case(
        "truncated_json",
        "truncated JSON (200)",
        "body cut in half",
        _retried(_not_resent("Bitrix24TransportError")),
    ),
    Case(
        "malformed_json",
        "malformed JSON (200)",
        "PHP fatal error in the body",
        _retried(_not_resent("Bitrix24TransportError")),
    ),
    Case(
        "connection_reset",
        "connection reset mid-response",
        "half the body, then TCP RST",
        _retried(_not_resent("Bitrix24TransportError")),
    ),
    Case(
        "read_timeout",
        "read timeout",
        "answer delayed past the client's `timeout`",
        _retried(_not_resent("Bitrix24TransportError")),
    ),
    Case("redirect", "302 portal moved", "302 to the other loopback name", _retried(EXACT)),
    Case(
        "expired_token",
        "`expired_token` mid-run (OAuth)",
        "every access token expires",
        _retried(EXACT),
        oauth=True,
    ),
    Case(
        "rotated_elsewhere",
        "refresh token rotated by another worker (OAuth)",
        "tokens expire; another worker refreshes and saves the new pair to the token Variable",
        _retried(EXACT),
        oauth=True,
    ),
    Case(
        "invalid_grant",
        "`invalid_grant` (OAuth)",
        "tokens expire and every refresh token is revoked",
        {
            "fetch": E(Outcome.FAIL, "re-authorised"),
            "poke": E(Outcome.FAIL, "re-authorised"),
            "trigger": E(Outcome.ERROR_EVENT, "re-authorised"),
            "export": E(Outcome.FAIL, "re-authorised"),
            "write": E(Outcome.FAIL, "Bitrix24AuthError"),
        },
        oauth=True,
    ),
    Case(
        "batch_access_denied",
        "per-command error in a batch: `Access denied.`",
        "one `crm.activity.list` command of the batch fails",
        {
            "fetch": E(Outcome.FAIL, "Access denied"),
            "poke": E(Outcome.FAIL, "Access denied"),
            "trigger": E(Outcome.ERROR_EVENT, "Access denied"),
            "export": E(Outcome.FAIL, "Access denied"),
            "write": NA,
        },
    ),
    Case(
        "batch_server_error",
        "per-command error in a batch: `INTERNAL_SERVER_ERROR`",
        "one `crm.activity.list` command of the batch fails",
        {
            "fetch": E(Outcome.RAISE, "Bitrix24ServerError"),
            "poke": WAIT,
            "trigger": WAIT,
            "export": E(Outcome.RAISE, "Bitrix24ServerError"),
            "write": NA,
        },
    ),
    Case(
        "overload",
        "503 `OVERLOAD_LIMIT`",
        "every request from then on (a storm would show)",
        {
            "fetch": E(Outcome.FAIL, "OVERLOAD_LIMIT"),
            "poke": E(Outcome.FAIL, "OVERLOAD_LIMIT"),
            "trigger": E(Outcome.ERROR_EVENT, "OVERLOAD_LIMIT"),
            "export": E(Outcome.FAIL, "OVERLOAD_LIMIT"),
            "write": E(Outcome.FAIL, "Bitrix24Overloaded"),
        },
    ),
)

CASE_BY_ID: dict[str, Case] = {case.id: case for case in CASES}


def cells() -> list[tuple[str, str]]:
    """Every applicable ``(case id, workload)`` pair, in table order."""
    return [(c.id, w) for c in CASES for w in WORKLOADS if c.expect[w].outcome is not Outcome.NA]


def table() -> str:
    """The matrix as a Markdown table."""
    head = ["fault", "injected", *(WORKLOAD_TITLES[w] for w in WORKLOADS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in CASES:
        row = [case.title, case.injected, *(case.expect[w].text() for w in WORKLOADS)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
