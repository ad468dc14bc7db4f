"""Bitrix24 hook: turns an Airflow connection into a Bitrix24 REST client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_b24.client import (
    BatchResult,
    Bitrix24Client,
    ClientConfig,
    ClientStats,
    ConnectionSettings,
    OAuthAuth,
    TokenPair,
    WebhookAuth,
    settings_from_fields,
)
from airflow_provider_b24.client.batch import Command
from airflow_provider_b24.client.encoding import origin, redact
from airflow_provider_b24.client.errors import Bitrix24ArgumentError, Bitrix24ConfigError, Bitrix24Error
from airflow_provider_b24.export.slices import DEFAULT_SLICES, iter_window_rows_parallel
from airflow_provider_b24.hooks import connection_form
from airflow_provider_b24.hooks.token_store import AirflowVariableTokenStore, SyncTaskSdk, TaskSdk

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_b24.client.auth import TokenStore


def _activity_id(value: Any, name: str = "id") -> int:
    """An activity ID as an int (bools, blanks, non-integers and values < 1 are refused)."""
    if isinstance(value, bool):
        raise Bitrix24ArgumentError(f"{name} must be an activity ID (a positive integer), got {value!r}")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise Bitrix24ArgumentError(
            f"{name} must be an activity ID (a positive integer), got {value!r}"
        ) from None
    if number < 1:
        raise Bitrix24ArgumentError(f"{name} must be a positive integer, got {value!r}")
    return number


def connection_test_config(config: ClientConfig) -> ClientConfig:
    """The connection's own client settings, made quick for the UI's Test button.

    Everything the connection says (TLS ``verify``, rate limit, burst, operating budget...) is kept;
    only the waiting is shortened: one retry, short back-off, no wait for a 429 reset, and at most
    30 s per request (10 s to connect), so the button answers within the UI's patience.
    """
    return dataclasses.replace(
        config,
        timeout=min(config.timeout, 30.0),
        connect_timeout=min(config.connect_timeout, 10.0),
        max_retries=min(config.max_retries, 1),
        operating_max_wait=0.0,
        backoff_base=min(config.backoff_base, 0.5),
        backoff_max=min(config.backoff_max, 1.0),
    )


class Bitrix24Hook(BaseHook):
    """Interact with a Bitrix24 portal through an incoming webhook or OAuth 2.0.

    The connection (type ``bitrix24``): **host** = portal URL (``https://`` is assumed when no
    scheme is written; ``http://`` only for on-premise portals and the emulator). Webhook: **login** =
    the webhook's user ID, **password** = the webhook code, or extra ``webhook_url``. OAuth: extra
    ``auth_type="oauth"``, ``client_id``, ``client_secret``, ``access_token``, ``refresh_token``,
    ``oauth_server``. Tunables in extra: ``timeout``, ``max_retries``, ``rate_limit``, ``burst``,
    ``operating_max_wait``, ``operating_budget``, ``verify``. See ``docs/hook.md``.

    Nothing is read or sent in ``__init__``; the client is built on first use and reused (one HTTP
    session, keep-alive). Rotated OAuth tokens are kept in the Variable ``bitrix24_token__<conn_id>``.
    Reads and writes are reported to Airflow's hook-lineage collector as ``bitrix24://<portal
    host>/<entity>`` assets, once per hook and entity (``docs/lineage.md``).

    :param bitrix24_conn_id: the Airflow connection of type ``bitrix24``.
    :param connection: that connection, already resolved (triggers resolve it with ``aget_connection``
        on the triggerer's event loop); by default it is looked up on first use.
    :param task_sdk: how Variables (rotated OAuth tokens) are read and written and secrets masked;
        default :class:`~airflow_provider_b24.hooks.token_store.SyncTaskSdk` (the Task SDK's sync API).
    """

    conn_name_attr = "bitrix24_conn_id"
    default_conn_name = "bitrix24_default"
    conn_type = "bitrix24"
    hook_name = "Bitrix24"

    def __init__(
        self,
        bitrix24_conn_id: str = default_conn_name,
        *,
        connection: Connection | None = None,
        task_sdk: TaskSdk | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bitrix24_conn_id = bitrix24_conn_id
        self._connection = connection
        self.task_sdk: TaskSdk = task_sdk or SyncTaskSdk()
        self._client: Bitrix24Client | None = None
        self._settings: ConnectionSettings | None = None
        #: Datasets already reported to Airflow's hook-lineage collector (once per hook and dataset).
        self._lineage_reported: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"Bitrix24Hook(bitrix24_conn_id={self.bitrix24_conn_id!r})"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 3.1 UI widgets (3.2+ reads ``conn-fields`` from provider info instead)."""
        return connection_form.get_connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 3.1 UI field behaviour (3.2+ reads ``ui-field-behaviour`` instead)."""
        return connection_form.get_ui_field_behaviour()

    # ------------------------------------------------------------------ connection -> client
    def get_settings(self) -> ConnectionSettings:
        """Read and validate the connection (raises :class:`Bitrix24ConfigError` naming the field)."""
        if self._settings is None:
            conn = self._connection
            if conn is None:
                conn = self.get_connection(self.bitrix24_conn_id)
            extra = conn.extra_dejson
            if not isinstance(extra, Mapping):
                raise Bitrix24ConfigError("the connection's extra must be a JSON object")
            settings = settings_from_fields(
                host=conn.host,
                login=conn.login,
                password=conn.password,
                port=conn.port,
                schema=conn.schema,
                extra=extra,
            )
            self.task_sdk.mask_secrets(*settings.secrets)
            self._settings = settings
        return self._settings

    def _token_store(self, settings: ConnectionSettings) -> TokenStore:
        oauth = settings.oauth
        assert oauth is not None
        seed = None
        if oauth.access_token or oauth.refresh_token:
            seed = TokenPair(access_token=oauth.access_token or "", refresh_token=oauth.refresh_token or "")
        store = AirflowVariableTokenStore(
            self.bitrix24_conn_id,
            seed,
            logger=self.log,  # type: ignore[arg-type]
            task_sdk=self.task_sdk,
        )
        if store.load() is None:
            raise Bitrix24ConfigError(
                "extra refresh_token is empty and the Variable "
                f"{store.name} holds no token pair: OAuth needs at least a refresh token"
            )
        return store

    def _build_client(self, config: ClientConfig | None = None) -> Bitrix24Client:
        settings = self.get_settings()
        auth: WebhookAuth | OAuthAuth
        if settings.auth_type == "webhook":
            assert settings.user_id and settings.webhook_code
            auth = WebhookAuth(user_id=settings.user_id, code=settings.webhook_code)
        else:
            assert settings.oauth is not None
            auth = OAuthAuth(
                client_id=settings.oauth.client_id,
                client_secret=settings.oauth.client_secret,
                store=self._token_store(settings),
                oauth_server=settings.oauth.oauth_server,
            )
        return Bitrix24Client(settings.portal.base_url, auth, config or settings.config, logger=self.log)  # type: ignore[arg-type]

    def get_conn(self) -> Bitrix24Client:
        """The hook's client (built on first use, then reused)."""
        if self._client is None:
            self._client = self._build_client()
        return self._client

    def close(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def stats(self) -> ClientStats:
        """The client's counters (requests, retries, limiter wait...)."""
        return self.get_conn().stats

    def _report_lineage(self, *methods: str) -> None:
        """Report the datasets these REST methods read or write to Airflow's hook-lineage collector."""
        from airflow_provider_b24.lineage import report_hook_lineage

        portal = self.get_settings().portal.base_url  # scheme://host[:port]: no secret
        for method in methods:
            report_hook_lineage(self, portal, method, self._lineage_reported)

    # ------------------------------------------------------------------ generic API
    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call a REST method; return its ``result`` as sent (scalars are strings)."""
        result = self.get_conn().call(method, params)
        self._report_lineage(method)
        return result

    def call_envelope(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call a REST method; return the whole body (``result``, ``time``, ``total``, ``next``)."""
        envelope = self.get_conn().call_envelope(method, params)
        self._report_lineage(method)
        return envelope

    def batch(self, commands: Mapping[str, Command], *, halt: bool = False) -> BatchResult:
        """Run ``{key: (method, params)}`` commands, ≤ 50 per request; see :meth:`Bitrix24Client.batch`."""
        result = self.get_conn().batch(commands, halt=halt)
        self._report_lineage(*{c if isinstance(c, str) else c[0] for c in commands.values()})
        return result

    def iter_list(
        self, method: str, params: Mapping[str, Any] | None = None, *, fast: bool | None = None
    ) -> Iterator[Any]:
        """Yield every row of a ``*.list`` method once, lazily; see :meth:`Bitrix24Client.iter_list`."""
        rows = self.get_conn().iter_list(method, params, fast=fast)
        self._report_lineage(method)
        return rows

    def test_connection(self) -> tuple[bool, str]:
        """One cheap read-only call (``profile`` for webhooks, ``app.info`` for OAuth); never raises."""
        secrets: list[str] = []
        try:
            settings = self.get_settings()
            secrets = settings.secrets
            client = self._build_client(connection_test_config(settings.config))
            try:
                if settings.auth_type == "webhook":
                    profile = client.call("profile")
                    user = profile.get("ID") if isinstance(profile, Mapping) else None
                    who = f"webhook of user {user or settings.user_id}"
                else:
                    info = client.call("app.info")
                    app = info.get("CODE") or info.get("ID") if isinstance(info, Mapping) else None
                    who = f"OAuth app {app or settings.oauth.client_id if settings.oauth else ''}".strip()
                return True, f"Connected to {origin(client.base_url)} ({who})"
            finally:
                client.close()
        except Bitrix24Error as exc:
            return False, redact(str(exc), secrets)
        except Exception as exc:
            return False, redact(f"{type(exc).__name__}: {exc}", secrets)

    # ------------------------------------------------------------------ crm.activity.*
    def get_activity(self, activity_id: Any) -> dict[str, Any]:
        """``crm.activity.get``: one activity, raw (raises :class:`Bitrix24NotFound` when missing)."""
        return self.call("crm.activity.get", {"id": _activity_id(activity_id)})

    def get_activities(self, ids: Any, select: Sequence[str] | None = None) -> dict[int, dict[str, Any]]:
        """Activities by ID, raw, keyed by ID in input order (missing IDs are simply absent).

        Uses ``crm.activity.list`` ID filters, 50 IDs per command and 50 commands per request.
        """
        from airflow_provider_b24.activities import fetch_activities

        result = fetch_activities(self.get_conn(), ids, select=select)
        self._report_lineage("crm.activity.list")
        return {int(row["ID"]): row for row in result.activities}

    def iter_activities(
        self,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        order: Mapping[str, str] | None = None,
        *,
        slices: int = DEFAULT_SLICES,
    ) -> Iterator[dict[str, Any]]:
        """Every activity matching ``filter``, raw, lazily, in ascending ID order (unless ``order``).

        Without ``order`` the matching IDs are read in up to ``slices`` disjoint ranges at once, as the
        export reads them (chained keyset batches through the shared rate limiter, spooled to temporary
        files, merged in ID order: memory stays flat): at most ``ceil(N/2500) + slices + 1`` requests.
        ``slices=1``, an ``order`` or a filter on ``ID`` read one keyset chain (``ceil(N/2500)``).
        """
        if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
            raise Bitrix24ArgumentError(f"slices must be a positive integer, got {slices!r}")
        if order or slices == 1:
            params: dict[str, Any] = {}
            if filter:
                params["filter"] = dict(filter)
            if select:
                params["select"] = list(select)
            if order:
                params["order"] = dict(order)
            return self.iter_list("crm.activity.list", params)
        names = [str(name) for name in select] if select else ["*"]
        with_id = "*" in names or "ID" in (name.upper() for name in names)
        rows = iter_window_rows_parallel(
            self, dict(filter or {}), names if with_id else [*names, "ID"], slices=slices
        )
        self._report_lineage("crm.activity.list")
        return rows if with_id else ({k: v for k, v in row.items() if k != "ID"} for row in rows)

    def activity_fields(self) -> dict[str, Any]:
        """``crm.activity.fields``: field descriptions (type, flags, title)."""
        return self.call("crm.activity.fields")

    def communication_fields(self) -> dict[str, Any]:
        """``crm.activity.communication.fields``."""
        return self.call("crm.activity.communication.fields")

    def add_activity(self, fields: Mapping[str, Any]) -> int:
        """``crm.activity.add`` (deprecated by Bitrix24 but working); returns the new ID.

        Never re-sent after a timeout (it may have been created).
        """
        return int(self.call("crm.activity.add", {"fields": dict(fields)}))

    def update_activity(self, activity_id: Any, fields: Mapping[str, Any]) -> bool:
        """``crm.activity.update``; returns the server's true/false."""
        return bool(
            self.call("crm.activity.update", {"id": _activity_id(activity_id), "fields": dict(fields)})
        )

    def delete_activity(self, activity_id: Any) -> bool:
        """``crm.activity.delete`` (any kind of activity); returns the server's true/false."""
        return bool(self.call("crm.activity.delete", {"id": _activity_id(activity_id)}))
