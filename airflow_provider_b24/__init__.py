"""Apache Airflow provider for Bitrix24 CRM.

The package is layered (``docs/architecture.md``; the import contracts in ``pyproject.toml`` are
checked by ``make lint``): ``client`` (pure REST client, no Airflow), the domain packages
``activities`` and ``export`` (no Airflow), the Airflow adapters (``hooks``, ``operators``,
``sensors``, ``triggers``, ``failures``) and ``testing`` (a Bitrix24 emulator that imports nothing
from the rest of the package, and that nothing in the package imports).
"""

from __future__ import annotations

from airflow_provider_b24.get_provider_info import get_provider_info
from airflow_provider_b24.version import __version__

__all__ = ["__version__", "get_provider_info"]
