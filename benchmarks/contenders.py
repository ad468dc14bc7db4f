"""The contenders: one small adapter per client, all asked for the same fields.

Each contender is a class with a ``name``, a ``verify`` mode (``"exact"`` for raw wire rows,
``"semantic"`` for typed rows) and two entry points, both run inside a fresh child process
(:mod:`benchmarks.cell`):

* ``fetch(ids) -> list[row]``: fetch these activity IDs (every field ``crm.activity.get`` returns);
* ``export(path) -> int``: write **every** activity to ``path`` as JSON lines, return the row count.

The object lives for the whole child, so a second ``fetch`` is the "warm" call (imports done, the
client and its connections reused where the library keeps them).

Nothing here is tuned per contender beyond what its documentation tells a user to do: each is
pointed at the emulator with its documented knobs, with TLS verified against the emulator's CA
(``REQUESTS_CA_BUNDLE`` for ``requests``, ``SSL_CERT_FILE`` for aiohttp's default context).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["CONTENDERS", "Contender", "Target"]

Row = dict[str, Any]


class Target:
    """Where the emulator is (from the parent): webhook URL, CA file, Airflow connection id."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.webhook_url: str = spec["webhook_url"]  # https://127.0.0.1:PORT/rest/1/code/
        self.ca_cert: str = spec["ca_cert"]
        self.conn_id: str = spec.get("conn_id", "bitrix24_bench")
        rest = self.webhook_url.split("://", 1)[1]
        self.host, path = rest.split("/", 1)  # "127.0.0.1:PORT", "rest/1/code/"
        parts = path.strip("/").split("/")
        self.user_id, self.code = parts[1], parts[2]


def _write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """The common sink of every export: one JSON line per row, written as rows arrive."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False))
            out.write("\n")
            count += 1
    return count


class Contender:
    """Base class; see the module docstring."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    verify: ClassVar[str] = "exact"
    can_fetch: ClassVar[bool] = True
    can_export: ClassVar[bool] = True
    #: fetch only up to this many IDs (the naive loop); larger N are extrapolated by the runner.
    fetch_cap: ClassVar[int | None] = None
    #: fetch only from this many IDs up (a variant that only matters for many requests).
    min_n: ClassVar[int] = 0
    #: stop the cell after this many seconds (None: the profile's limit).
    timeout_s: ClassVar[float | None] = None
    #: imported in the child before the clock starts (reported as ``import_s``).
    modules: ClassVar[tuple[str, ...]] = ()
    #: the same for the export scenario (default: ``modules``).
    export_modules: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, target: Target) -> None:
        self.target = target

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        raise NotImplementedError

    def export(self, path: Path) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release clients (after the measurement)."""


# --------------------------------------------------------------------------------------- ours
class OursOperator(Contender):
    """``Bitrix24GetActivitiesOperator.execute`` (typed rows, what lands in XCom) and
    ``Bitrix24ExportActivitiesOperator.execute`` (streams JSON lines to a file)."""

    name = "ours-operator"
    # ``benchmarks.worker_state``: what a worker loaded before ``execute`` (the task supervisor and
    # runner, the plugins), imported untimed as a worker does before any task.
    modules = ("benchmarks.worker_state", "airflow_provider_b24.operators.activity")
    export_modules = ("benchmarks.worker_state", "airflow_provider_b24.operators.export")
    label = "airflow-provider-b24 (operator)"
    verify = "semantic"

    class _TI:
        """The slice of a TaskInstance the operators touch."""

        def __init__(self) -> None:
            self.xcom: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any, **_: Any) -> None:
            self.xcom[key] = value

    def _context(self) -> dict[str, Any]:
        import pendulum

        now = pendulum.now("UTC")
        return {
            "ti": self._TI(),
            "ds": now.to_date_string(),
            "run_id": "bench",
            "data_interval_start": pendulum.datetime(2000, 1, 1, tz="UTC"),
            "data_interval_end": pendulum.datetime(2100, 1, 1, tz="UTC"),
            "logical_date": now,
        }

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator

        op = Bitrix24GetActivitiesOperator(
            task_id="bench_fetch", activity_ids=list(ids), bitrix24_conn_id=self.target.conn_id
        )
        return list(op.execute(self._context()))

    def export(self, path: Path) -> int:
        try:
            from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
        except ImportError:
            from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator

        op = Bitrix24ExportActivitiesOperator(
            task_id="bench_export",
            bitrix24_conn_id=self.target.conn_id,
            updated_from="2000-01-01T00:00:00+00:00",
            updated_to="2100-01-01T00:00:00+00:00",
            path=str(path),
            format="jsonl",
        )
        out = op.execute(self._context())
        return int(out["rows"]) if isinstance(out, Mapping) and "rows" in out else -1


class OursHook(Contender):
    """``Bitrix24Hook.get_activities(ids)`` (raw rows keyed by ID) and ``iter_activities()``."""

    name = "ours-hook"
    modules = ("benchmarks.worker_state", "airflow_provider_b24.hooks.bitrix24")
    label = "airflow-provider-b24 (hook)"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._hook: Any = None

    @property
    def hook(self) -> Any:
        if self._hook is None:
            from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

            self._hook = Bitrix24Hook(bitrix24_conn_id=self.target.conn_id)
        return self._hook

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        found = self.hook.get_activities(list(ids))
        return list(found.values()) if isinstance(found, Mapping) else list(found)

    def export(self, path: Path) -> int:
        return _write_jsonl(self.hook.iter_activities(), path)


class OursClient(Contender):
    """The provider's Airflow-free layers: ``Bitrix24Client`` + ``fetch_activities`` / ``iter_list``."""

    name = "ours-client"
    modules = ("airflow_provider_b24.client", "airflow_provider_b24.activities")
    label = "airflow-provider-b24 (client, no Airflow)"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth

            self._client = Bitrix24Client(
                base_url=f"https://{self.target.host}",
                auth=WebhookAuth(user_id=self.target.user_id, code=self.target.code),
                config=ClientConfig(verify=self.target.ca_cert),
            )
        return self._client

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        from airflow_provider_b24.activities import fetch_activities

        return fetch_activities(self.client, list(ids)).activities

    def export(self, path: Path) -> int:
        rows = self.client.iter_list(
            "crm.activity.list", {"select": ["*"], "order": {"ID": "ASC"}, "filter": {}}
        )
        return _write_jsonl(rows, path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --------------------------------------------------------------------------------------- peers
class B24PySDK(Contender):
    """The official SDK: ``crm.activity.list`` with an ``ID`` filter through ``call_list`` (its
    ID-only shortcut: 50 IDs a command, 50 commands a batch), and ``call_list_fast`` for exports."""

    name = "b24pysdk"
    modules = ("b24pysdk",)
    label = "b24pysdk (official SDK)"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        from b24pysdk import BitrixWebhook, Client

        token = BitrixWebhook(domain=target.host, webhook_token=f"{target.user_id}/{target.code}")
        # Its default read timeout (10 s) is what users get; big batches on a loaded box need more.
        self.client = Client(token, timeout=60)

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        request = self.client.crm.activity.list(filter={"ID": list(ids)}, select=["*"])
        return list(request.as_list().result)

    def export(self, path: Path) -> int:
        request = self.client.crm.activity.list(select=["*"])
        return _write_jsonl(request.as_list_fast().result, path)


class FastBitrix24(Contender):
    """fast-bitrix24: ``get_by_ID("crm.activity.get", ids)`` (50 ``get`` commands a batch, parallel
    batches behind its own 50/2-per-second leaky bucket) and ``get_all("crm.activity.list")``."""

    name = "fast-bitrix24"
    modules = ("fast_bitrix24",)
    label = "fast-bitrix24"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        from fast_bitrix24 import Bitrix

        self.client = Bitrix(target.webhook_url, verbose=False)

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        found = self.client.get_by_ID("crm.activity.get", list(ids))
        if len(ids) == 1 and isinstance(found, Mapping) and "ID" in found:
            # Its response flattening (#132) unwraps a one-key dict: one ID returns the bare row.
            return [dict(found)]
        return list(found.values()) if isinstance(found, Mapping) else list(found)

    def export(self, path: Path) -> int:
        return _write_jsonl(self.client.get_all("crm.activity.list", params={"select": ["*"]}), path)


class FastBitrix24Slow(FastBitrix24):
    """fast-bitrix24 with its documented remedy for 503 storms: ``with bitrix.slow(1):`` (one request in
    flight at a time, so its leaky-bucket history is accurate)."""

    name = "fast-bitrix24-slow"
    label = "fast-bitrix24 slow(1)"
    can_export = False
    min_n = 500
    # 400 requests at 2/s need ~3.5 min; past ~200 batches its operating-time throttle (which adds up
    # the portal's cumulative `time.operating` values) pauses for up to its 10-minute window.
    timeout_s = 300.0

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        with self.client.slow(1):
            return super().fetch(ids)


class NaiveLoop(Contender):
    """What a DAG author writes by hand: one ``crm.activity.get`` POST per ID over a
    ``requests.Session``; on a 503 sleep half a second and try again (no limiter, no batch)."""

    name = "naive-loop"
    modules = ("requests",)
    label = "naive per-ID loop (requests)"
    can_export = False
    fetch_cap = 500
    retry_sleep_s = 0.5

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        import requests

        self.session = requests.Session()
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE", target.ca_cert)

    def _get(self, activity_id: int) -> Row:
        url = f"{self.target.webhook_url}crm.activity.get"
        while True:
            response = self.session.post(url, json={"id": activity_id}, timeout=60)
            if response.status_code == 503:
                time.sleep(self.retry_sleep_s)
                continue
            response.raise_for_status()
            return response.json()["result"]

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        return [self._get(activity_id) for activity_id in ids]

    def close(self) -> None:
        self.session.close()


class RawFloor(Contender):
    """Not a client: the floor of ``ceil(N/2500)`` requests. The same batches of ``crm.activity.list``
    commands as ours, built with an f-string, sent over ``http.client`` (one connection each, up to 4 at
    once), decoded with msgspec, rows returned untyped: no retries, no limiter, no errors checked, no
    Airflow. Whatever any client spends above this line is its own work; what this line spends is the
    portal's and the network's."""

    name = "raw-floor"
    modules = ("http.client", "ssl", "msgspec")
    label = "floor: raw batches (http.client)"
    can_export = False

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        import ssl
        from urllib.parse import urlsplit

        self.url = urlsplit(target.webhook_url)
        self.context = ssl.create_default_context(cafile=target.ca_cert)

    def _batch(self, ids: Sequence[int]) -> list[Row]:
        import http.client
        import json

        import msgspec

        cmd = {
            f"c{k}": "crm.activity.list?start=-1&select[0]=*&"
            + "&".join(f"filter[@ID][{i}]={v}" for i, v in enumerate(ids[k * 50 : (k + 1) * 50]))
            for k in range((len(ids) + 49) // 50)
        }
        conn = http.client.HTTPSConnection(self.url.hostname, self.url.port, context=self.context, timeout=60)
        try:
            conn.request(
                "POST",
                f"{self.url.path}batch.json",
                json.dumps({"halt": 0, "cmd": cmd}),
                {"Content-Type": "application/json"},
            )
            data = msgspec.json.decode(conn.getresponse().read())
        finally:
            conn.close()
        return [row for rows in data["result"]["result"].values() for row in rows]

    def fetch(self, ids: Sequence[int]) -> list[Row]:
        groups = [list(ids[i : i + 2500]) for i in range(0, len(ids), 2500)]
        if len(groups) == 1:
            return self._batch(groups[0])
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            return [row for rows in pool.map(self._batch, groups) for row in rows]


CONTENDERS: dict[str, Callable[[Target], Contender]] = {
    cls.name: cls
    for cls in (
        OursOperator,
        OursHook,
        OursClient,
        B24PySDK,
        FastBitrix24,
        FastBitrix24Slow,
        NaiveLoop,
        RawFloor,
    )
}
