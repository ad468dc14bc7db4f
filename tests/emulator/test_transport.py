"""The transport: TLS with the generated CA, keep-alive, throughput, clean shutdown."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
import requests

from airflow_provider_b24.testing import Bitrix24Emulator
from tests.emulator.conftest import Caller


def test_certificate_verifies_for_both_loopback_names(shared_emu: Bitrix24Emulator) -> None:
    context = ssl.create_default_context(cafile=shared_emu.ca_cert)
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", shared_emu.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_unverified_client_is_refused(shared_emu: Bitrix24Emulator) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(shared_emu.base_url + "/rest/", verify=True, timeout=5)


def test_keep_alive_reuses_one_connection(fresh: Caller) -> None:
    fresh.emu.stats_reset()
    for _ in range(20):
        fresh.ok("profile")
    assert fresh.emu.stats["connections"] == 1


def test_throughput_with_keep_alive(fresh: Caller) -> None:
    """Prints the measured rate; asserts only a lenient floor (the CI box is shared)."""
    for _ in range(20):
        fresh.post("crm.activity.get", {"id": 1})
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < 1.0:
        fresh.post("crm.activity.get", {"id": 1 + count % 100})
        count += 1
    rate = count / (time.perf_counter() - started)
    print(f"\nemulator throughput: {rate:.0f} requests/s (crm.activity.get, one keep-alive session)")
    assert rate > 100


def test_stop_closes_idle_keep_alive_connections() -> None:
    emu = Bitrix24Emulator(activities=5).start()
    caller = Caller(emu)
    caller.ok("profile")
    started = time.perf_counter()
    emu.stop()
    assert time.perf_counter() - started < 3
    with pytest.raises(requests.exceptions.ConnectionError):
        caller.post("profile")
    emu.stop()  # idempotent


def test_restart_on_fixed_port() -> None:
    emu = Bitrix24Emulator(activities=5).start()
    port = emu.port
    emu.stop()
    again = Bitrix24Emulator(activities=5, port=port).start()
    try:
        assert again.port == port and Caller(again).ok("profile")
    finally:
        again.stop()


def test_connection_helpers(shared_emu: Bitrix24Emulator) -> None:
    import json

    conn = shared_emu.connection()
    assert conn == {
        "conn_type": "bitrix24",
        "host": shared_emu.base_url,
        "login": "1",
        "password": shared_emu.webhook_code,
        "extra": {"verify": shared_emu.ca_cert},
    }
    assert json.loads(shared_emu.connection_json()) == conn
    assert shared_emu.webhook_url == f"{shared_emu.base_url}/rest/1/{shared_emu.webhook_code}/"
    uri = shared_emu.connection_uri()
    assert uri.startswith("bitrix24://1:") and "verify=" in uri
    assert "stopped" not in repr(shared_emu)


def test_connection_uri_decodes_like_airflow(shared_emu: Bitrix24Emulator) -> None:
    """Airflow's URI parser unquotes host, login and password; the host is the full base URL."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(shared_emu.connection_uri())
    assert parts.scheme == "bitrix24"
    netloc = parts.netloc
    userinfo, host = netloc.rsplit("@", 1)
    login, password = userinfo.split(":", 1)
    assert unquote(host) == shared_emu.base_url and unquote(login) == "1"
    assert unquote(password) == shared_emu.webhook_code
    assert parse_qs(parts.query)["verify"] == [shared_emu.ca_cert]


def test_concurrent_clients_while_the_store_changes(fresh: Caller) -> None:
    """Eight keep-alive clients list and get while another thread adds, updates and deletes."""
    import threading

    emu = fresh.emu
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            new_id = emu.store.add({"SUBJECT": f"w{n}", "TYPE_ID": 2, "OWNER_TYPE_ID": 3, "OWNER_ID": 1})
            emu.store.update(new_id, {"SUBJECT": f"w{n}!"})
            emu.store.complete(new_id)
            if n % 2:
                emu.store.delete(new_id)
            n += 1
            stop.wait(0.002)

    def reader() -> None:
        caller = Caller(emu)
        try:
            for i in range(40):
                response = caller.post("crm.activity.list", {"start": (i % 4) * 50, "order": {"ID": "DESC"}})
                if response.status_code != 200 or "result" not in response.json():
                    errors.append(response.text[:200])
                if caller.post("crm.activity.get", {"id": 1 + i}).status_code != 200:
                    errors.append("get failed")
        finally:
            caller.close()

    threads = [threading.Thread(target=reader) for _ in range(8)]
    write_thread = threading.Thread(target=writer)
    write_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    write_thread.join(timeout=10)
    assert errors == []
    assert emu.stats["requests"] >= 8 * 80
