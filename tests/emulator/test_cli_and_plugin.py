"""The CLI (``python -m airflow_provider_b24.testing``) and the pytest plugin fixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.__main__ import build_parser, main


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[0])
        time.sleep(0.05)
    raise AssertionError("emulator did not become ready")


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_b24.testing", "--activities", "30", "--seed", "2",
         "--ready-file", str(ready), "--rate-limit", "100", "--burst", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        conn = _wait_for(ready, proc)
        assert conn["conn_type"] == "bitrix24" and conn["host"].startswith("https://127.0.0.1:")
        url = f"{conn['host']}/rest/{conn['login']}/{conn['password']}/crm.activity.get"
        response = requests.post(url, json={"id": 30}, verify=conn["extra"]["verify"], timeout=10)
        assert response.json()["result"]["ID"] == "30"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "webhook URL: https://127.0.0.1:" in output and "CA certificate: " in output
    assert not Path(conn["extra"]["verify"]).parent.exists()  # SIGTERM: the CA's temp dir is removed
    line = next(x for x in output.splitlines() if x.startswith("export AIRFLOW_CONN_BITRIX24_DEFAULT="))
    assert json.loads(line.split("=", 1)[1].strip("'")) == conn


def test_cli_save_data_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "data.json"
    assert main(["--activities", "12", "--save-data", str(target)]) == 0
    assert len(json.loads(target.read_text())["activities"]) == 12
    args = build_parser().parse_args(["--no-tls", "--port", "0", "--latency-ms", "20", "--data", str(target)])
    assert args.no_tls and args.latency_ms == 20 and args.data == target


def test_cli_no_tls_with_fixture(tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"ID": "7", "SUBJECT": "from fixture", "TYPE_ID": "2"}]))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_b24.testing", "--no-tls", "--data", str(data),
         "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        conn = _wait_for(ready, proc)  # type: ignore[arg-type]
        assert conn["host"].startswith("http://") and "verify" not in conn["extra"]
        url = f"{conn['host']}/rest/{conn['login']}/{conn['password']}/crm.activity.get"
        assert requests.post(url, json={"id": 7}, timeout=10).json()["result"]["SUBJECT"] == "from fixture"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_fixture_emulator(bitrix24_emulator: Bitrix24Emulator) -> None:
    assert bitrix24_emulator.running and len(bitrix24_emulator.store) == 200
    assert bitrix24_emulator.config.rate_limit is None and bitrix24_emulator.config.operating_limit is None


def test_factory_stops_everything(bitrix24_emulator_factory: object) -> None:
    a: Bitrix24Emulator = bitrix24_emulator_factory(activities=3)  # type: ignore[operator]
    b: Bitrix24Emulator = bitrix24_emulator_factory(activities=4, tls=False)  # type: ignore[operator]
    assert a.port != b.port and len(b.store) == 4


def test_connection_env(bitrix24_connection_env: Bitrix24Emulator) -> None:
    assert json.loads(os.environ["AIRFLOW_CONN_BITRIX24_DEFAULT"]) == bitrix24_connection_env.connection()


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, threading, airflow_provider_b24.testing.pytest_plugin as p; "
        "print(any(m.startswith('airflow.') for m in sys.modules), threading.active_count(), "
        "'cryptography.x509' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "1", "False"]  # no Airflow, no server thread, no key generation


def test_emulator_import_pulls_no_airflow_or_client() -> None:
    code = (
        "import sys; from airflow_provider_b24.testing import Bitrix24Emulator; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('airflow')}), "
        "[m for m in sys.modules "
        "if m.startswith(('airflow_provider_b24.client', 'airflow_provider_b24.hooks'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['airflow_provider_b24'] []"


def test_stats_endpoint_reports_served_requests_without_counting_itself(
    bitrix24_emulator: Bitrix24Emulator,
) -> None:
    """``GET /_emulator/stats``: a CLI emulator's counters for scripts such as ``make demo``."""
    import requests

    with requests.Session() as session:
        session.post(bitrix24_emulator.webhook_url + "profile", verify=bitrix24_emulator.ca_cert, timeout=10)
        first = session.get(
            bitrix24_emulator.base_url + "/_emulator/stats", verify=bitrix24_emulator.ca_cert, timeout=10
        ).json()
        second = session.get(
            bitrix24_emulator.base_url + "/_emulator/stats", verify=bitrix24_emulator.ca_cert, timeout=10
        ).json()
    assert first["requests"] == bitrix24_emulator.stats["requests"] >= 1
    assert second["requests"] == first["requests"]
