"""The suite's temp-dir check: whatever a test, a fixture or a process they start puts in the temp dir
must be gone when the session ends.

At start-up the session gets a private ``b24-pytest-*`` folder in the system temp dir and points
``TMPDIR`` (inherited by every subprocess: ``airflow`` commands, the emulator CLI, Chromium) and
:func:`tempfile.gettempdir` at its ``tmp/`` child. At the end, anything left in ``tmp/`` (the
emulator's ``b24-emulator-tls-*``, an Airflow home, a lock file) fails the session: exit status 1 and a
"temp-dir leftovers" section naming each entry. The whole folder is then removed, so even a failing
run leaves nothing behind. A private folder instead of a before/after listing of ``/tmp``: other runs
on the same machine cannot make this one fail, and every entry counts, not only ``b24-*`` names.

One kind of entry is allowed: the OAuth token store's ``bitrix24-token-<conn>.lock`` files. They are the
provider's cross-process lock (airflow_provider_b24/hooks/token_store.py), one per connection ID, reused
by every later run and never deleted on purpose (removing a lock file others may hold breaks the lock).

pytest's own ``tmp_path`` folders stay under the system temp dir (``PYTEST_DEBUG_TEMPROOT``), where
pytest keeps the last three sessions' for debugging. Serial runs only (no xdist).

``tests/conftest.py`` opens the folder on import (before Airflow is imported) and registers this
module's hooks as its own; ``-p tests.tempdir_guard`` turns the check on for any other pytest run.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

import pytest

__all__ = ["SessionTempDir", "active", "start"]

PREFIX = "b24-pytest-"
#: Entries that may stay: persistent by design (see the module docstring), one per connection ID.
ALLOWED = ("bitrix24-token-*.lock",)


class SessionTempDir:
    """A private temp dir for one test session: ``<root>/tmp`` is what the session sees as the temp dir.

    Args:
        system_tmp: where ``<root>`` is made (the real temp dir).
    """

    def __init__(self, *, system_tmp: str | Path) -> None:
        self.system_tmp = Path(system_tmp)
        self._root: Path | None = None
        self._saved: tuple[str | None, str | None, str | None] | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("the session temp dir is not open")
        return self._root

    @property
    def tmp(self) -> Path:
        """The session's temp dir (``TMPDIR``): must be empty at the end."""
        return self.root / "tmp"

    @property
    def airflow_home(self) -> Path:
        """The in-process ``AIRFLOW_HOME`` of the unit tests (the suite's own, not checked)."""
        return self.root / "airflow-home"

    def open(self) -> SessionTempDir:
        """Make the folders and point ``TMPDIR`` / :mod:`tempfile` at ``tmp/``; returns self."""
        self._root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.system_tmp))
        self.tmp.mkdir()
        self.airflow_home.mkdir()
        self._saved = (os.environ.get("TMPDIR"), tempfile.tempdir, os.environ.get("PYTEST_DEBUG_TEMPROOT"))
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(self.system_tmp))
        os.environ["TMPDIR"] = str(self.tmp)
        tempfile.tempdir = str(self.tmp)
        return self

    def leftovers(self) -> list[str]:
        """Names of the entries in ``tmp/`` (sorted), except the :data:`ALLOWED` ones."""
        return sorted(
            name for name in os.listdir(self.tmp) if not any(fnmatch.fnmatch(name, p) for p in ALLOWED)
        )

    def close(self) -> None:
        """Restore the temp-dir settings and remove the whole folder (idempotent)."""
        if self._saved is not None:
            tmpdir, tempdir, temproot = self._saved
            _set_env("TMPDIR", tmpdir)
            _set_env("PYTEST_DEBUG_TEMPROOT", temproot)
            tempfile.tempdir = tempdir
            self._saved = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


_ACTIVE: SessionTempDir | None = None
_LEFTOVERS_KEY = pytest.StashKey[list[str]]()


def start() -> SessionTempDir:
    """Open the session's private temp dir (once per process) and return it."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = SessionTempDir(system_tmp=tempfile.gettempdir()).open()
    return _ACTIVE


def active() -> SessionTempDir | None:
    """The open session temp dir, if any."""
    return _ACTIVE


def pytest_configure(config: pytest.Config) -> None:
    start()  # no-op when tests/conftest.py opened it already (before Airflow was imported)


@pytest.hookimpl(trylast=True)  # after every other plugin's finish (session fixtures are torn down)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _ACTIVE
    guard = _ACTIVE
    if guard is None:
        return
    leftovers = guard.leftovers()
    guard.close()
    _ACTIVE = None
    session.config.stash[_LEFTOVERS_KEY] = leftovers
    if leftovers and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    leftovers = config.stash.get(_LEFTOVERS_KEY, [])
    if not leftovers:
        return
    terminalreporter.section("temp-dir leftovers", sep="=", red=True, bold=True)
    terminalreporter.line(
        f"FAILED: the session left {len(leftovers)} entr{'y' if len(leftovers) == 1 else 'ies'} in its "
        "temp dir (TMPDIR); every test and every process it starts must remove what it creates:",
        red=True,
    )
    for name in leftovers:
        terminalreporter.line(f"  {name}", red=True)
