"""Airflow version shims: one place that knows where 3.1 and 3.3 keep the names we use.

Airflow 3.1 has no ``airflow.sdk.exceptions.AirflowFailException`` and no ``airflow.sdk.conf``;
3.3 deprecates the ``airflow.exceptions`` aliases; XCom and trigger-kwarg serde moved from
``airflow.serialization.serde`` (3.1) to ``airflow.sdk.serde`` (3.2). Import these names from here only.
(``attr-defined`` ignores: ``mypy`` also runs against Airflow 3.1, where the first branch's names are
missing; ``no-redef`` ignores: the fallback branch.)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import (  # type: ignore[attr-defined]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,assignment]
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

try:  # Airflow >= 3.2
    from airflow.sdk import conf  # type: ignore[attr-defined]
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef,assignment]


def _serde() -> ModuleType:
    """Airflow's serde module, imported on first use (the adapters need it only in tests and tools)."""
    try:  # Airflow >= 3.2
        from airflow.sdk import serde  # type: ignore[attr-defined]
    except ImportError:  # Airflow 3.1
        from airflow.serialization import serde  # type: ignore[no-redef,attr-defined]
    return serde


def serde_serialize(value: Any) -> Any:
    """``serialize`` of Airflow's serde: the JSON-able data XCom (and, since 3.2, trigger kwargs) store."""
    return _serde().serialize(value)


def serde_deserialize(value: Any) -> Any:
    """``deserialize`` of Airflow's serde: the Python object back from :func:`serde_serialize`'s data."""
    return _serde().deserialize(value)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "conf",
    "serde_deserialize",
    "serde_serialize",
]
