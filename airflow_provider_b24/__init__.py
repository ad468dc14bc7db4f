"""Apache Airflow provider for Bitrix24 CRM.

The package is layered: ``client`` (pure REST client, no Airflow), ``activities`` (activity types,
parsing and fetch-by-ID), the Airflow adapters (``hooks``, ``operators``, ``sensors``, ``triggers``)
and ``testing`` (a Bitrix24 emulator that imports nothing from the client).
"""

from __future__ import annotations

from airflow_provider_b24.get_provider_info import get_provider_info

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]
