"""Bitrix24 hook: turns an Airflow connection into a Bitrix24 REST client."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_b24.hooks import connection_form


class Bitrix24Hook(BaseHook):
    """Interact with a Bitrix24 portal through an incoming webhook or OAuth 2.0.

    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``.
    """

    conn_name_attr = "bitrix24_conn_id"
    default_conn_name = "bitrix24_default"
    conn_type = "bitrix24"
    hook_name = "Bitrix24"

    def __init__(self, bitrix24_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bitrix24_conn_id = bitrix24_conn_id

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 3.1 UI widgets (3.2+ reads ``conn-fields`` from provider info instead)."""
        return connection_form.get_connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 3.1 UI field behaviour (3.2+ reads ``ui-field-behaviour`` instead)."""
        return connection_form.get_ui_field_behaviour()
