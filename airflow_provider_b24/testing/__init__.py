"""A Bitrix24 portal emulator for tests, demos and benchmarks (like moto for AWS).

``Bitrix24Emulator`` serves the documented REST API of CRM activities over loopback HTTPS: webhook
and OAuth paths, the token server, batch, the leaky-bucket and operating-time limits, and scripted
faults. It imports nothing from the provider's client: it is an independent judge written from the
Bitrix24 docs. See docs/emulator.md.

    from airflow_provider_b24.testing import Bitrix24Emulator
    with Bitrix24Emulator(activities=1000, seed=1) as emu:
        ...

Pytest users: ``pytest_plugins = ["airflow_provider_b24.testing.pytest_plugin"]`` for the
``bitrix24_emulator`` fixtures.
"""

from __future__ import annotations

from airflow_provider_b24.testing.datagen import DATA_FROM, DATA_TO
from airflow_provider_b24.testing.emulator import Bitrix24Emulator
from airflow_provider_b24.testing.faults import Fault, FaultKind, FaultSet
from airflow_provider_b24.testing.methods import NOT_FOUND
from airflow_provider_b24.testing.store import ActivityStore

__all__ = [
    "DATA_FROM",
    "DATA_TO",
    "NOT_FOUND",
    "ActivityStore",
    "Bitrix24Emulator",
    "Fault",
    "FaultKind",
    "FaultSet",
]
