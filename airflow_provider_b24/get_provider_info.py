"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``) because the Airflow
>= 3.2 React UI reads only this dict; :mod:`airflow_provider_b24.hooks.connection_form` derives the
legacy Airflow 3.1 widgets from the same table, so the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_b24.version import __version__

PACKAGE_NAME = "airflow-provider-b24"
CONN_TYPE = "bitrix24"

#: The connection form, declaratively. Secrets carry ``format: password``.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_type": {
        "label": "Auth type",
        "description": "webhook (incoming webhook: login = user ID, password = webhook code) or oauth.",
        "schema": {"type": ["string", "null"], "enum": ["webhook", "oauth"], "default": "webhook"},
    },
    "webhook_url": {
        "label": "Webhook URL",
        "description": "Alternative to host/login/password: the full incoming-webhook URL "
        "https://<portal>/rest/<user_id>/<code>/ (it is a secret).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "client_id": {
        "label": "OAuth client ID",
        "description": "OAuth only: the application's client_id (local or Market app).",
        "schema": {"type": ["string", "null"]},
    },
    "client_secret": {
        "label": "OAuth client secret",
        "description": "OAuth only: the application's client_secret; sent only to the OAuth server.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "access_token": {
        "label": "OAuth access token",
        "description": "OAuth only: a seed access token (refreshed automatically on expired_token).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "refresh_token": {
        "label": "OAuth refresh token",
        "description": "OAuth only: the seed refresh token. Rotated tokens are kept in the Airflow "
        "Variable bitrix24_token__<conn_id>.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "oauth_server": {
        "label": "OAuth server",
        "description": "OAuth only: authorization server, default https://oauth.bitrix.info "
        "(Russian region: https://oauth.bitrix24.tech).",
        "schema": {"type": ["string", "null"], "format": "url"},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Per-request timeout in seconds (default 60, the cloud's own cut-off).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of transient errors inside one call (default 5).",
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
    "rate_limit": {
        "label": "Rate limit (requests/s)",
        "description": "Leaky-bucket drain rate of the portal (default 2; Enterprise 5).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "burst": {
        "label": "Burst",
        "description": "Leaky-bucket capacity of the portal (default 50; Enterprise 250).",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "operating_max_wait": {
        "label": "Max wait for operating limit (s)",
        "description": "Wait up to this long for a 429 OPERATION_TIME_LIMIT to reset (default 60), "
        "else fail with the reset time.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "operating_budget": {
        "label": "Operating budget (s per 10 min)",
        "description": "The portal's per-method execution budget per 10 minutes (default 480, the "
        "cloud's); the client slows down from 80 % of it and pauses at it.",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true (default), false, or the path of a CA bundle.",
        "schema": {"type": ["string", "null"]},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # Port stays visible: Airflow 3.3.1-3.3.2's Test button refuses a saved connection without a port
    # (apache/airflow#73298), so users there enter 443. The client treats an empty port as the default.
    "hidden-fields": ["schema"],
    "relabeling": {
        "host": "Portal URL",
        "port": "Port",
        "login": "Webhook user ID",
        "password": "Webhook code",
    },
    "placeholders": {
        "host": "https://example.bitrix24.com",
        "login": "1",
        "password": "webhook code (secret)",
        "port": "443",
        "auth_type": "webhook",
        "webhook_url": "https://example.bitrix24.com/rest/1/<code>/",
        "oauth_server": "https://oauth.bitrix.info",
        "timeout": "60",
        "max_retries": "5",
        "rate_limit": "2",
        "burst": "50",
        "operating_max_wait": "60",
        "operating_budget": "480",
        "verify": "true",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description validated by Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Bitrix24",
        "description": "Bitrix24 CRM (https://www.bitrix24.com/): REST hook, CRM activity operators, "
        "sensor and trigger, and a Bitrix24 emulator for tests.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Bitrix24",
                "external-doc-url": "https://apidocs.bitrix24.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Bitrix24", "python-modules": ["airflow_provider_b24.hooks.bitrix24"]}
        ],
        "operators": [
            {
                "integration-name": "Bitrix24",
                "python-modules": [
                    "airflow_provider_b24.operators.activity",
                    "airflow_provider_b24.operators.export",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Bitrix24", "python-modules": ["airflow_provider_b24.sensors.activity"]}
        ],
        "triggers": [
            {"integration-name": "Bitrix24", "python-modules": ["airflow_provider_b24.triggers.activity"]}
        ],
        # The hook reports bitrix24://<portal host>/<dataset> assets (docs/lineage.md): Airflow
        # normalises them with the handler and OpenLineage turns them into datasets with the converter.
        "asset-uris": [
            {
                "schemes": ["bitrix24"],
                "handler": "airflow_provider_b24.lineage.sanitize_uri",
                "factory": "airflow_provider_b24.lineage.create_asset",
                "to_openlineage_converter": "airflow_provider_b24.lineage.convert_asset_to_openlineage",
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_b24.hooks.bitrix24.Bitrix24Hook",
                "hook-name": "Bitrix24",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
