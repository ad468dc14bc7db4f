"""The emulator's generated CA lives in one ``b24-emulator-tls-*`` temp dir per process, shared by the
running emulators and removed when the last one stops (or at exit). Run in a fresh interpreter each:
an emulator another test keeps running in this process would hold the directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, os, sys, tempfile
from pathlib import Path
from airflow_provider_b24.testing import Bitrix24Emulator

def state(emu):
    return Path(emu.ca_cert).parent.is_dir()

def tls_dirs():
    return sorted(p for p in os.listdir(tempfile.gettempdir()) if p.startswith("b24-emulator-tls-"))

out = {}
{body}
print(json.dumps(out))
"""


def _probe(body: str, tmp_path: Path) -> dict[str, object]:
    """Run ``body`` in a new interpreter whose temp dir is ``tmp_path``; its ``out`` dict comes back."""
    code = PROBE.replace("{body}", body)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert os.listdir(tmp_path) == [], "the process left temp entries after exiting"
    return result


def test_the_last_emulator_to_stop_removes_the_certificates(tmp_path: Path) -> None:
    out = _probe(
        """
a = Bitrix24Emulator(activities=3).start()
b = Bitrix24Emulator(activities=3).start()
out["shared"] = a.ca_cert == b.ca_cert
out["dirs_running"] = len(tls_dirs())
a.stop()
out["after_first_stop"] = state(b)
b.stop()
out["after_last_stop"] = state(b)
out["dirs_after"] = len(tls_dirs())
with Bitrix24Emulator(activities=3) as c:  # a new CA for the next emulator
    out["fresh"] = state(c)
out["dirs_after_with"] = len(tls_dirs())
""",
        tmp_path,
    )
    assert out == {
        "shared": True,
        "dirs_running": 1,
        "after_first_stop": True,
        "after_last_stop": False,
        "dirs_after": 0,
        "fresh": True,
        "dirs_after_with": 0,
    }


def test_ca_cert_read_before_start_is_released_by_stop(tmp_path: Path) -> None:
    out = _probe(
        """
emu = Bitrix24Emulator(activities=3)
path = emu.ca_cert  # generates the CA without starting
out["exists"] = Path(path).exists()
emu.stop()  # never started: still gives the CA back
out["after_stop"] = Path(path).exists()
""",
        tmp_path,
    )
    assert out == {"exists": True, "after_stop": False}


def test_emulators_never_stopped_are_cleaned_up_at_exit(tmp_path: Path) -> None:
    out = _probe(
        """
from airflow_provider_b24.testing.tls import tls_files
keep = Bitrix24Emulator(activities=3).start()  # never stopped
out["dirs"] = len(tls_dirs())
out["same"] = tls_files().ca_cert == keep.ca_cert  # a lease that lasts until exit
""",
        tmp_path,
    )
    assert out == {"dirs": 1, "same": True}  # and _probe checked the temp dir is empty after exit


def test_plain_http_makes_no_certificates(tmp_path: Path) -> None:
    out = _probe(
        """
with Bitrix24Emulator(activities=3, tls=False) as emu:
    out["ca"] = emu.ca_cert
    out["dirs"] = len(tls_dirs())
""",
        tmp_path,
    )
    assert out == {"ca": None, "dirs": 0}
