"""Airflow version shims: one place that knows where 3.1 and 3.3 keep the names we use.

Airflow 3.1 has no ``airflow.sdk.exceptions.AirflowFailException`` and no ``airflow.sdk.conf``;
3.3 deprecates the ``airflow.exceptions`` aliases. Import these names from here only.
(``attr-defined`` ignores: ``mypy`` also runs against Airflow 3.1, where the first branch's names are
missing; ``no-redef`` ignores: the fallback branch.)
"""

from __future__ import annotations

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

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "conf",
]
