"""Fixtures for the browser test of the Airflow UI: an ``airflow api-server``, the emulator, Chromium.

* ``airflow_ui``: ``airflow db migrate`` into a throwaway SQLite ``AIRFLOW_HOME`` (``AirflowHome``), then
  ``airflow api-server`` on a free loopback port with the simple auth manager (one known admin user)
  and ``[core] test_connection = Enabled``. Module-scoped (like the browser: Playwright's sync API
  must be closed before later async tests run); its whole process group is stopped and the home
  removed at the end, even when a test fails.
* ``chromium_executable``: Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it). Missing: the
  tests skip, unless ``CI`` is set, where they fail. Playwright never downloads a browser here.
* ``ui_page``: one logged-in Playwright page in headless Chromium with an empty profile.
* ``emulator``: the bundled Bitrix24 emulator over HTTPS with its own CA.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.testing.airflow_home import AirflowHome, stop_process_group

AIRFLOW_VERSION = version("apache-airflow-core")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-" + secrets.token_hex(4)
SERVER_START_TIMEOUT = 120.0

#: Debian's Chromium flags for this machine's closed network (see .library/env/machines/python.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_settings(home: Path, port: int) -> dict[str, str]:
    """The api-server's settings on top of the throwaway home's (SQLite, no examples)."""
    return {
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }


@dataclass
class AirflowUI:
    base_url: str
    home: Path
    log_path: Path
    version: str
    username: str
    password: str

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium; skip without it, but fail in CI, which must run this test."""
    path = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if path is None:
        reason = "Debian's chromium is not installed (see scripts/ensure-chromium.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}")
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the [test] extra installs it
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and playwright is missing: {exc}")
        pytest.skip(f"playwright is missing: {exc}")
    return path


@pytest.fixture(scope="module")
def airflow_ui() -> Iterator[AirflowUI]:
    """``airflow api-server`` on a free loopback port, a fresh SQLite DB, one admin user."""
    with AirflowHome() as home:
        (home.path / "dags").mkdir()
        (home.path / "passwords.json").write_text(f'{{"{ADMIN_USER}": "{ADMIN_PASSWORD}"}}')
        port = _free_port()
        home.dags_folder = home.path / "dags"
        home.extra_env.update(_server_settings(home.path, port))
        home.migrate(timeout=180)

        log_path = home.path / "api-server.log"
        with log_path.open("wb") as log:
            # its own process group: stopped as a whole
            proc = home.popen("api-server", "--host", "127.0.0.1", "--port", str(port), log=log)
        ui = AirflowUI(
            f"http://127.0.0.1:{port}", home.path, log_path, AIRFLOW_VERSION, ADMIN_USER, ADMIN_PASSWORD
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"airflow api-server exited with {proc.returncode}:\n{ui.log_tail()}")
                try:
                    with urllib.request.urlopen(f"{ui.base_url}/api/v2/monitor/health", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"airflow api-server not healthy after {SERVER_START_TIMEOUT}s:\n{ui.log_tail()}"
                    )
                time.sleep(0.25)
            yield ui
        finally:
            # uvicorn workers may outlive the parent for a moment: the whole group goes
            stop_process_group(proc, grace=15)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """The bundled Bitrix24 emulator over HTTPS (self-signed CA, verified via the ``verify`` field)."""
    from airflow_provider_b24.testing import Bitrix24Emulator

    with Bitrix24Emulator(activities=5, seed=11, tls=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def browser_context(chromium_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Module scope, not session: while Playwright's sync API is open its asyncio loop counts as
    # running in this thread, which would break every later async test of the session.
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty --user-data-dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def ui_page(browser_context: Any, airflow_ui: AirflowUI) -> Any:
    """A page logged into the Airflow UI as the admin user."""
    page = browser_context.new_page()
    page.goto(f"{airflow_ui.base_url}/")
    page.get_by_label("Username").fill(airflow_ui.username)
    page.get_by_label("Password").fill(airflow_ui.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``B24_UI_SCREENSHOTS`` (e.g. docs/img, see scripts/ui-screenshots.sh) or a temporary folder."""
    target = os.environ.get("B24_UI_SCREENSHOTS")
    if target:
        path = Path(target)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("ui-screenshots")
