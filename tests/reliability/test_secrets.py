"""No secret leaks: the example DAG ``b24_activities_by_id`` run for real, with distinctive credentials.

Three Airflow subprocess runs against one in-process emulator whose webhook code, client secret and
tokens are distinctive strings:

1. ``airflow dags test`` with an **OAuth** connection whose access token has expired: the first task
   refreshes, saves the rotated pair to the Variable ``bitrix24_token__bitrix24_default`` and the
   next task (a new hook) must use that Variable's pair. ``dag.test()`` does not apply Airflow's
   secrets masker to its console output (observed on Airflow 3.1-3.3), so this run checks that the
   *provider itself* never prints a secret.
2. ``airflow tasks test`` of ``fetch_activities`` (masker on, as in production) with a **webhook**
   connection at DEBUG log level, so urllib3's and the client's per-request lines are included.
3. ``airflow tasks test`` of ``fetch_activities`` with OAuth and revoked refresh tokens: the failure's
   exception text and traceback (``invalid_grant``) go through Airflow's logging.

Scanned for every secret: stdout and stderr, every file under ``$AIRFLOW_HOME/logs``, every XCom of
the run, the rendered template fields of every task. Also: no secret in any URL sent to the OAuth
server (the emulator counts secrets in the token endpoint's query string).
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.airflow_home import AirflowHome
from tests.reliability.conftest import assert_no_secrets, emulator_secrets

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags_examples"
DAG_ID = "b24_activities_by_id"
OWNER = {"OWNER_TYPE_ID": 2, "OWNER_ID": 424_242}

WEBHOOK_CODE = "whkSECRETcode4f7a9c1e"
CLIENT_SECRET = "cliSECRETsecret8d2b6e0a"


def variable(home: AirflowHome, key: str) -> str:
    """A Variable's value, decrypted with the home's Fernet key when Airflow encrypted it."""
    ((value, encrypted),) = home.rows("SELECT val, is_encrypted FROM variable WHERE key=?", key)
    if not encrypted:
        return str(value)
    from cryptography.fernet import Fernet

    config = configparser.ConfigParser(interpolation=None)
    config.read(home.path / "airflow.cfg")
    return Fernet(config["core"]["fernet_key"].encode()).decrypt(value.encode()).decode()


@pytest.fixture(scope="module")
def home() -> Iterator[AirflowHome]:
    """A throwaway Airflow home for the example DAGs; removed (logs with it) after the module."""
    with AirflowHome(dags_folder=DAGS) as airflow_home:
        airflow_home.migrate(timeout=240)
        yield airflow_home


@pytest.fixture(scope="module")
def emu() -> Iterator[Bitrix24Emulator]:
    with Bitrix24Emulator(
        activities=200, seed=21, webhook_code=WEBHOOK_CODE, client_secret=CLIENT_SECRET, rate_limit=None
    ) as emulator:
        for n in range(3):
            emulator.store.add(
                {
                    **OWNER,
                    "TYPE_ID": 2,
                    "SUBJECT": f"secret-scan call {n}",
                    "RESPONSIBLE_ID": 3,
                    "COMPLETED": "N",
                }
            )
        yield emulator


def conn_env(conn: dict[str, Any]) -> dict[str, str]:
    return {"AIRFLOW_CONN_BITRIX24_DEFAULT": json.dumps(conn)}


def run_texts(home: AirflowHome, run_id: str) -> list[str]:
    """Every XCom value and rendered template field of the run, as stored."""
    xcoms = home.rows("SELECT task_id, key, value FROM xcom WHERE dag_id=? AND run_id=?", DAG_ID, run_id)
    rendered = home.rows(
        "SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE dag_id=? AND run_id=?",
        DAG_ID,
        run_id,
    )
    assert {task for task, _, _ in xcoms} >= {"find_activity_ids", "fetch_activities", "write_report"}
    assert {task for task, _ in rendered} >= {"fetch_activities"}
    return [str(v) for row in (*xcoms, *rendered) for v in row]


def test_no_secret_in_runs_of_the_example_dag(home: AirflowHome, emu: Bitrix24Emulator) -> None:
    assert WEBHOOK_CODE in emulator_secrets(emu) and CLIENT_SECRET in emulator_secrets(emu)

    # -- 1. dags test, OAuth, expired access token: refresh in task 1, Variable hand-off to task 2
    oauth = emu.oauth_connection()
    seed_access, seed_refresh = oauth["extra"]["access_token"], oauth["extra"]["refresh_token"]
    emu.expire_tokens()
    before = emu.stats
    proc = home.cli(
        "dags", "test", DAG_ID, "--conf", json.dumps({"owner_type_id": 2, "owner_id": OWNER["OWNER_ID"]}),
        env=conn_env(oauth),
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    ((run_id, state),) = home.rows(
        "SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", DAG_ID
    )
    assert state == "success", output[-4000:]
    after = emu.stats
    assert after["token_refreshes"] - before["token_refreshes"] == 1  # once, by the first task
    assert after["token_errors"] == before["token_errors"]  # the second task did not spend the dead seed
    assert after["oauth_secrets_in_query"] == 0  # secrets only in the form body, never in a URL
    pair = json.loads(variable(home, "bitrix24_token__bitrix24_default"))
    assert pair["refresh_token"] in emu.portal.oauth.refresh  # the live (newest) refresh token
    assert pair["refresh_token"] != seed_refresh and pair["access_token"] != seed_access
    texts_1 = [output, home.log_text(), *run_texts(home, run_id)]

    # -- 2. tasks test (masker on), webhook, DEBUG logging: per-request lines with redacted URLs
    proc = home.cli(
        "tasks", "test", DAG_ID, "fetch_activities", run_id,
        env={**conn_env(emu.connection()), "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"},
    )  # fmt: skip
    output_2 = proc.stdout + proc.stderr
    assert proc.returncode == 0, output_2[-4000:]
    assert "/rest/1/***/batch" in output_2  # the DEBUG request line is there, redacted
    texts_2 = [output_2, home.log_text()]

    # -- 3. tasks test, OAuth whose refresh tokens were revoked: the failure text goes through logging
    failing = emu.oauth_connection()
    emu.expire_tokens()
    emu.revoke_refresh_tokens()
    proc = home.cli("tasks", "test", DAG_ID, "fetch_activities", run_id, env=conn_env(failing))
    output_3 = proc.stdout + proc.stderr
    assert "AirflowFailException" in output_3, output_3[-4000:]  # (`tasks test` exits 0 either way)
    assert "invalid_grant" in output_3 and "re-authorised" in output_3, output_3[-4000:]
    texts_3 = [output_3, home.log_text()]

    secrets = emulator_secrets(emu)  # now including every token issued during the runs
    assert emu.stats["oauth_secrets_in_query"] == 0
    assert_no_secrets(texts_1, secrets, "in the dags test run (output, logs, XComs, rendered fields)")
    assert_no_secrets(texts_2, secrets, "in the tasks test run at DEBUG level")
    assert_no_secrets(texts_3, secrets, "in the failing tasks test run")
