"""The export's own errors: a wrong argument, and a cancelled run.

No Airflow here (layer 2). Their place in the provider's hierarchy: :mod:`airflow_provider_b24.exceptions`.
"""

from __future__ import annotations

from airflow_provider_b24.exceptions import Bitrix24ArgumentError

__all__ = ["ExportArgumentError", "ExportCancelled"]


class ExportArgumentError(Bitrix24ArgumentError):
    """An export argument is wrong (window, filter, select, format, path); raised before any request."""


class ExportCancelled(Exception):
    """The export was cancelled (the task was killed); the temporary file has been removed.

    Not a :class:`~airflow_provider_b24.exceptions.Bitrix24Error`: neither Bitrix24 nor the arguments
    are at fault, so the failure policy does not apply (it is raised as it is).
    """
