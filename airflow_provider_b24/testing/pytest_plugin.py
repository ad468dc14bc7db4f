"""Pytest fixtures for testing DAGs and clients against the bundled Bitrix24 emulator.

Opt in from a ``conftest.py`` (like moto)::

    pytest_plugins = ["airflow_provider_b24.testing.pytest_plugin"]

Fixtures:

* ``bitrix24_emulator``: a fresh emulator per test (HTTPS, 200 activities, seed 1, limits off).
* ``bitrix24_emulator_factory``: ``factory(**kwargs) -> Bitrix24Emulator`` (started); every
  emulator it made is stopped at teardown.
* ``bitrix24_connection_env``: sets ``AIRFLOW_CONN_BITRIX24_DEFAULT`` to the emulator's webhook
  connection JSON (and ``REQUESTS_CA_BUNDLE`` is left alone); yields the emulator.

Importing this module starts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_b24.testing.emulator import Bitrix24Emulator

__all__ = ["bitrix24_connection_env", "bitrix24_emulator", "bitrix24_emulator_factory"]

EmulatorFactory = Callable[..., "Bitrix24Emulator"]


@pytest.fixture
def bitrix24_emulator_factory() -> Iterator[EmulatorFactory]:
    """Start emulators with any ``Bitrix24Emulator`` keyword arguments; all are stopped afterwards."""
    from airflow_provider_b24.testing.emulator import Bitrix24Emulator

    started: list[Bitrix24Emulator] = []

    def factory(**kwargs: Any) -> Bitrix24Emulator:
        kwargs.setdefault("activities", 200)
        emulator = Bitrix24Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def bitrix24_emulator(bitrix24_emulator_factory: EmulatorFactory) -> Bitrix24Emulator:
    """A running emulator: HTTPS, 200 activities (seed 1), no rate or operating limits."""
    return bitrix24_emulator_factory(activities=200, seed=1, rate_limit=None)


@pytest.fixture
def bitrix24_connection_env(
    bitrix24_emulator: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch
) -> Bitrix24Emulator:
    """``AIRFLOW_CONN_BITRIX24_DEFAULT`` points at ``bitrix24_emulator`` (webhook auth)."""
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", bitrix24_emulator.connection_json())
    return bitrix24_emulator
