"""The Airflow side of the failure policy: one place that turns errors into task outcomes.

The rule itself is Airflow-free (:func:`airflow_provider_b24.exceptions.error_outcome`); this module
applies it for every adapter so that the operators, the sensor and the triggers agree:

========================  =========================  ======================  ============================
error                     operators                  sensor (``poke``)       trigger
========================  =========================  ======================  ============================
``FAIL`` (permanent)      ``AirflowFailException``   ``AirflowFailException`` error event -> fail, no retries
``RETRY`` (transient)     raised: Airflow retries     not done: poke again    poll again (429: after reset)
``UNEXPECTED``            raised: Airflow retries     raised: Airflow retries error event -> raised, retries
========================  =========================  ======================  ============================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from airflow_provider_b24._compat import AirflowException, AirflowFailException
from airflow_provider_b24.exceptions import ErrorOutcome, error_outcome

__all__ = [
    "fail_task",
    "permanent_errors_fail_the_task",
    "raise_for_error_event",
    "trigger_error_event",
]


def fail_task(what: str, error: BaseException) -> AirflowFailException:
    """The ``AirflowFailException`` (no Airflow retries) for a permanent ``error``."""
    return AirflowFailException(f"{what} failed: {error} ({type(error).__name__}; not retrying)")


@contextmanager
def permanent_errors_fail_the_task(what: str) -> Iterator[None]:
    """Fail the task without Airflow retries on a permanent Bitrix24 error; let the rest propagate.

    Auth, scope, access, not-found and bad-request errors, a wrong connection, a manual overload
    block and an untrusted TLS certificate fail at once; transient errors (rate limits that outlived
    the client's own waiting, server faults, network trouble) and non-Bitrix24 errors propagate so
    Airflow's ``retries`` apply.
    """
    try:
        yield
    except Exception as error:
        if error_outcome(error) is ErrorOutcome.FAIL:
            raise fail_task(what, error) from error
        raise


def trigger_error_event(error: BaseException) -> dict[str, Any]:
    """The payload of a trigger's error event: a secret-free message and the policy's outcome."""
    return {
        "status": "error",
        "message": f"{type(error).__name__}: {error}",
        "outcome": error_outcome(error).value,
    }


def raise_for_error_event(task_id: str, event: Mapping[str, Any]) -> NoReturn:
    """Resume from a trigger's error event: fail without retries if permanent, else raise for retries.

    Events without ``outcome`` (written by provider 0.1.0 triggers) count as permanent, as they did.
    """
    message = f"{task_id}: {event.get('message') or dict(event)!r}"
    if event.get("outcome", ErrorOutcome.FAIL.value) == ErrorOutcome.FAIL.value:
        raise AirflowFailException(message)
    raise AirflowException(message)
