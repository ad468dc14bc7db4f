"""``AirflowHome`` (airflow_provider_b24/testing/airflow_home.py) without running Airflow: where the home
lives, what its commands' environment holds, and that it is removed. Its Airflow commands run in every
end-to-end test (tests/e2e, tests/ui, tests/reliability/test_secrets.py)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from airflow_provider_b24.testing.airflow_home import TEMP_PREFIX, AirflowHome


def test_a_temp_home_is_removed_on_exit() -> None:
    with AirflowHome() as home:
        path = home.path
        assert path.parent == Path(tempfile.gettempdir()) and path.name.startswith(TEMP_PREFIX)
        (home.logs_path / "dag_id=x").mkdir(parents=True)
        (home.logs_path / "dag_id=x" / "attempt=1.log").write_text("log line")
        assert "log line" in home.log_text()
    assert not path.exists()
    with pytest.raises(RuntimeError, match="not created"):
        _ = home.path


def test_a_temp_home_is_removed_when_the_body_fails() -> None:
    with pytest.raises(ZeroDivisionError), AirflowHome() as home:
        path = home.path
        (path / "airflow.db").write_bytes(b"")
        _ = 1 / 0
    assert not path.exists()


def test_a_given_path_belongs_to_the_caller(tmp_path: Path) -> None:
    target = tmp_path / "demo" / "airflow-home"
    with AirflowHome(path=target) as home:
        assert home.path == target.resolve() and target.is_dir()
    assert target.is_dir()  # created if missing, never removed


def test_commands_see_only_the_homes_airflow_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", "bitrix24://leak")
    monkeypatch.setenv("AIRFLOW_VAR_SOMETHING", "leak")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("B24_UNRELATED", "kept")
    home = AirflowHome(
        dags_folder=tmp_path / "dags",
        env={"AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"},
    )
    with home:
        env = home.env({"AIRFLOW_CONN_BITRIX24_DEFAULT": "{}"})
        assert env["AIRFLOW_HOME"] == str(home.path)
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home.path / 'airflow.db'}"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert env["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "DEBUG"  # the home's env beats the defaults
        assert env["AIRFLOW__CORE__PARALLELISM"] == "2"
        assert env["AIRFLOW_CONN_BITRIX24_DEFAULT"] == "{}"  # the call's extra beats everything
        assert "AIRFLOW_VAR_SOMETHING" not in env and "AIRFLOW__CORE__EXECUTOR" not in env
        assert env["B24_UNRELATED"] == "kept"
        assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_module_imports_no_airflow() -> None:
    code = (
        "import sys, airflow_provider_b24.testing.airflow_home; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith(('airflow.', "
        "'airflow_provider_b24.client', 'airflow_provider_b24.hooks'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
