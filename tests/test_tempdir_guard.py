"""The session's temp-dir check (tests/tempdir_guard.py) is on, reaches subprocesses, and fails a leaking
session with the leftovers' names."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests import tempdir_guard

REPO_ROOT = Path(__file__).resolve().parent.parent

LEAKING = """
import tempfile

def test_leaks():
    tempfile.mkdtemp(prefix="b24-leak-")

def test_cleans_up():
    with tempfile.TemporaryDirectory(prefix="b24-tidy-"):
        pass
"""

TIDY = """
import os, tempfile

def test_cleans_up():
    with tempfile.TemporaryDirectory(prefix="b24-tidy-"):
        pass

def test_token_lock_file_is_allowed():  # the token store's persistent lock (see tempdir_guard.ALLOWED)
    open(os.path.join(tempfile.gettempdir(), "bitrix24-token-x-0123456789ab.lock"), "w").close()
"""


def test_this_session_runs_in_a_private_temp_dir() -> None:
    guard = tempdir_guard.active()
    assert guard is not None, "tests/conftest.py must open the session temp dir"
    assert tempfile.gettempdir() == str(guard.tmp) == os.environ["TMPDIR"]
    assert guard.root.name.startswith(tempdir_guard.PREFIX)
    assert os.environ["AIRFLOW_HOME"] == str(guard.airflow_home)  # the suite's own, outside tmp/


def test_subprocesses_inherit_the_private_temp_dir() -> None:
    code = "import tempfile; print(tempfile.gettempdir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    guard = tempdir_guard.active()
    assert guard is not None
    assert out.strip() == str(guard.tmp)


def _inner_session(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run pytest on one file with only the guard plugin; its system temp dir is ``tmp_path/system``."""
    (tmp_path / "test_inner.py").write_text(source)
    system = tmp_path / "system"
    system.mkdir()
    env = {**os.environ, "TMPDIR": str(system), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_DEBUG_TEMPROOT", None)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.tempdir_guard", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-q", str(tmp_path / "test_inner.py")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc, system


def test_a_leaking_session_fails_and_names_the_leftover(tmp_path: Path) -> None:
    proc, system = _inner_session(tmp_path, LEAKING)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # both tests passed: only the leftover fails the session
    assert "2 passed" in output and "temp-dir leftovers" in output, output
    leftovers = [line.strip() for line in output.splitlines() if line.strip().startswith("b24-leak-")]
    assert len(leftovers) == 1, output
    assert "b24-tidy-" not in output
    # the leftover was reported, then removed with the session's folder: nothing stays behind
    assert [p.name for p in system.iterdir() if not p.name.startswith("pytest-of-")] == []


def test_a_tidy_session_passes(tmp_path: Path) -> None:
    proc, system = _inner_session(tmp_path, TIDY)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "temp-dir leftovers" not in output
    assert [p.name for p in system.iterdir() if not p.name.startswith("pytest-of-")] == []
