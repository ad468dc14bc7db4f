"""``make demo``: the example DAGs end to end on the bundled Bitrix24 emulator. No account, no internet.

1. Starts the emulator CLI (``python -m airflow_provider_b24.testing``) as a subprocess: HTTPS with a
   throwaway CA, seeded activities, cloud rate limits on (2 requests/s, bursts of 50).
2. Points a fresh ``AIRFLOW_HOME`` (SQLite, ``airflow db migrate``) and ``AIRFLOW_CONN_BITRIX24_DEFAULT``
   at it, with ``dags_examples/`` as the DAGs folder.
3. ``airflow dags test b24_activities_by_id`` with 3,000 existing IDs plus 2 that do not exist.
4. ``airflow dags test b24_wait_for_completion`` on an open call; once the sensor has deferred, the
   demo completes the call the way a user would (``crm.activity.update`` with ``COMPLETED=Y``).
5. Prints what happened: activities fetched, HTTP requests served, typed rows, the report's path.

Everything lives in ``.demo/`` (override with ``B24_DEMO_DIR``); ``make clean`` removes it. Exits 0 on
success, 1 with a message and the tail of the failing command's log otherwise. Every process it starts
is stopped (its whole process group) before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from airflow_provider_b24.testing.airflow_home import AirflowHome, airflow_executable, stop_process_group

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = Path(sys.executable).parent / "airflow"

ACTIVITIES = 5000  # seeded activities on the emulator (IDs 1..5000)
SEED = 7
RATE_LIMIT, BURST = 2, 50  # a Bitrix24 cloud portal's request budget
FETCH_IDS = [*range(1, 3001), 999_998, 999_999]  # 3,000 that exist, 2 that do not
AS_OF = "2025-01-01T00:00:00+00:00"  # "overdue" is measured against this instant (stable output)
DEMO_ENV = {  # on top of AirflowHome's (SQLite, no examples, DAGs unpaused, INFO logs)
    "B24_EXAMPLE_POKE_INTERVAL": "1",  # the sensor's (and trigger's) poll interval, seconds
    "B24_EXAMPLE_WAIT_TIMEOUT": "120",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class DemoError(RuntimeError):
    """A step failed: the message says which, and what to look at."""


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no output)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


class Demo:
    def __init__(self, work: Path) -> None:
        self.work = work
        # in .demo/ (not a temp dir): its logs stay for the user to read; `make clean` removes them
        self.home = AirflowHome(path=work / "airflow-home", dags_folder=REPO / "dags_examples", env=DEMO_ENV)
        self.logs = work / "logs"
        self.started = time.monotonic()
        self.procs: list[subprocess.Popen[Any]] = []
        self.webhook_url = ""
        self.verify: str | bool = True
        self.emulator: subprocess.Popen[Any] | None = None

    # ------------------------------------------------------------------ plumbing
    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[Any]:
        """Start a command in its own process group, output to logs/<name>.log."""
        out = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(  # noqa: S603 (our own argv: the venv's python and airflow)
            args,
            cwd=REPO,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def wait(self, name: str, proc: subprocess.Popen[Any], timeout: float) -> None:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(proc)
            raise DemoError(
                f"{name} took longer than {timeout:.0f} s; its log ({self.logs / name}.log) ends with:\n"
                + log_tail(self.logs / f"{name}.log")
            ) from None
        if code != 0:
            raise DemoError(
                f"{name} failed (exit {code}); its log ({self.logs / name}.log) ends with:\n"
                + log_tail(self.logs / f"{name}.log")
            )

    def run(self, name: str, args: list[str], timeout: float) -> str:
        self.wait(name, self.spawn(name, args, self.home.env()), timeout)
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def rest(self, method: str, params: Mapping[str, Any]) -> Any:
        """One REST call to the emulated portal over its webhook, as any Bitrix24 client would."""
        for _ in range(20):
            response = requests.post(
                f"{self.webhook_url}{method}.json", json=params, verify=self.verify, timeout=30
            )
            if response.status_code == 503:  # QUERY_LIMIT_EXCEEDED: the portal's rate limit, wait
                time.sleep(0.5)
                continue
            body = response.json()
            if response.status_code != 200 or "error" in body:
                raise DemoError(f"{method} failed: HTTP {response.status_code} {body}")
            return body["result"]
        raise DemoError(f"{method}: the emulator kept answering 503 QUERY_LIMIT_EXCEEDED")

    # ------------------------------------------------------------------ steps
    def start_emulator(self) -> None:
        ready = self.work / "emulator-ready.json"
        self.emulator = self.spawn(
            "emulator",
            [
                sys.executable,
                "-m",
                "airflow_provider_b24.testing",
                "--port",
                "0",
                "--activities",
                str(ACTIVITIES),
                "--seed",
                str(SEED),
                "--rate-limit",
                str(RATE_LIMIT),
                "--burst",
                str(BURST),
                "--ready-file",
                str(ready),
            ],
            os.environ,
        )
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text().strip():
            if self.emulator.poll() is not None:
                raise DemoError(
                    f"the emulator exited with code {self.emulator.returncode}:\n"
                    + log_tail(self.logs / "emulator.log")
                )
            if time.monotonic() > deadline:
                raise DemoError(
                    "the emulator did not become ready within 60 s:\n" + log_tail(self.logs / "emulator.log")
                )
            time.sleep(0.1)
        time.sleep(0.2)  # let it finish printing
        conn = self.connection_from_emulator(ready)
        self.webhook_url, self.verify = webhook_of(conn)
        self.home.extra_env["AIRFLOW_CONN_BITRIX24_DEFAULT"] = json.dumps(conn)
        self.say(
            f"emulator up: {self.webhook_url.split('/rest/')[0]} (TLS, {ACTIVITIES} seeded activities, "
            f"rate limit {RATE_LIMIT} req/s, burst {BURST}), pid {self.emulator.pid}"
        )

    def connection_from_emulator(self, ready: Path) -> dict[str, Any]:
        """The Airflow connection the emulator wrote to its ready file (JSON, ``emu.connection()``)."""
        try:
            conn = json.loads(ready.read_text())
        except ValueError as exc:
            raise DemoError(f"the emulator's ready file {ready} is not JSON: {exc}") from None
        if not isinstance(conn, dict) or conn.get("conn_type") != "bitrix24":
            raise DemoError(f"the emulator's ready file {ready} holds no bitrix24 connection: {conn!r}")
        return conn

    def prepare_airflow(self) -> None:
        self.home.create()
        # this process reads the XComs back with Airflow's serde: the same home, not ~/airflow
        os.environ.update({k: v for k, v in self.home.env().items() if k.startswith("AIRFLOW_")})
        self.run("airflow-db-migrate", [airflow_executable(), "db", "migrate"], timeout=180)
        self.say(
            f"AIRFLOW_HOME {shown(self.home.path)} (SQLite) migrated; "
            f"DAGs folder {shown(REPO / 'dags_examples')}"
        )

    def emulator_stats(self) -> dict[str, Any] | None:
        """The emulator's own counters (``GET /_emulator/stats``), or None if it cannot be read."""
        import requests

        base = self.webhook_url.split("/rest/")[0]
        try:
            response = requests.get(f"{base}/_emulator/stats", verify=self.verify, timeout=10)
            response.raise_for_status()
            stats = response.json()
        except (requests.RequestException, ValueError):
            return None
        return stats if isinstance(stats, dict) else None

    def activities_by_id(self) -> dict[str, Any]:
        conf = {"activity_ids": FETCH_IDS, "as_of": AS_OF}
        before = self.emulator_stats()
        self.say(f"airflow dags test b24_activities_by_id  ({len(FETCH_IDS)} IDs from the DAG's conf)")
        began = time.monotonic()
        output = self.run(
            "dags-test-b24_activities_by_id",
            [airflow_executable(), "dags", "test", "b24_activities_by_id", "--conf", json.dumps(conf)],
            timeout=150,
        )
        took = time.monotonic() - began
        db = XComReader(self.home, "b24_activities_by_id")
        after = self.emulator_stats()
        if before is not None and after is not None:
            # What the portal served during the DAG run (the upstream task's ID lookup included, if any).
            requests_used: int | None = int(after["requests"]) - int(before["requests"])
            rejected = int(after.get("rejected_rate_limit", 0)) - int(before.get("rejected_rate_limit", 0))
            source = f"as served by the emulator, {rejected} rejected with 503"
        else:  # the client counts every HTTP request it sends (retries included); the operator logs it
            match = re.search(r"Fetched (\d+) of (\d+) activities in (\d+) requests?", output)
            requests_used = int(match.group(3)) if match else None
            source = "as counted by the operator's client"
        return {
            "took": took,
            "state": db.state,
            "activities": db.xcom("fetch_activities"),
            "missing": db.xcom("fetch_activities", "missing_ids"),
            "per_user": db.xcom("per_user_stats"),
            "totals": db.xcom("call_totals"),
            "overdue": db.xcom("overdue_open"),
            "report": db.xcom("write_report"),
            "requests": requests_used,
            "requests_source": source,
        }

    def wait_for_completion(self) -> dict[str, Any]:
        calls = self.rest(
            "crm.activity.list",
            {
                "filter": {"TYPE_ID": 2, "COMPLETED": "N"},
                "select": ["ID", "SUBJECT"],
                "order": {"ID": "ASC"},
                "start": -1,
            },
        )
        if not calls:
            raise DemoError("the emulator has no open call to wait for")
        call_id = int(calls[0]["ID"])
        self.say(f"airflow dags test b24_wait_for_completion  (open call #{call_id} {calls[0]['SUBJECT']!r})")
        name = "dags-test-b24_wait_for_completion"
        began = time.monotonic()
        proc = self.spawn(
            name,
            [
                airflow_executable(),
                "dags",
                "test",
                "b24_wait_for_completion",
                "--conf",
                json.dumps({"activity_id": call_id}),
            ],
            self.home.env(),
        )
        log_path = self.logs / f"{name}.log"
        deferred_after = None
        while time.monotonic() - began < 90 and proc.poll() is None:
            text = log_path.read_text(errors="replace")
            if re.search(r"Pausing task as DEFERRED|running trigger in line", text):
                deferred_after = time.monotonic() - began
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            self.wait(name, proc, 0)
            raise DemoError(f"{name} finished before the call was completed:\n" + log_tail(log_path))
        if deferred_after is None:
            stop_process_group(proc)
            raise DemoError("the sensor did not defer within 90 s:\n" + log_tail(log_path))
        self.say(f"  the sensor deferred after {deferred_after:.1f} s; in 3 s 'a user' completes the call")
        time.sleep(3)
        self.rest("crm.activity.update", {"id": call_id, "fields": {"COMPLETED": "Y"}})
        completed_at = time.monotonic()
        self.say(f"  call #{call_id} completed (crm.activity.update COMPLETED=Y)")
        self.wait(name, proc, 120)
        output = log_path.read_text(errors="replace")
        db = XComReader(self.home, "b24_wait_for_completion")
        return {
            "call_id": call_id,
            "state": db.state,
            "deferred_after": deferred_after,
            "polls": len(re.findall(r"polling again in", output)),
            "finished_after": time.monotonic() - completed_at,
            "took": time.monotonic() - began,
            "follow_up": db.xcom("follow_up"),
        }

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process_group(proc)


# ---------------------------------------------------------------------- helpers
def webhook_of(conn: Mapping[str, Any]) -> tuple[str, str | bool]:
    """(webhook URL ending in '/', TLS verify) of a bitrix24 connection in Airflow's JSON form."""
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    verify = extra.get("verify", True)
    url = extra.get("webhook_url") or ""
    if not url:
        host = str(conn["host"])
        if "://" not in host:
            host = f"{conn.get('schema') or 'https'}://{host}"
        if conn.get("port"):
            host = f"{host}:{conn['port']}"
        url = f"{host.rstrip('/')}/rest/{conn['login']}/{conn['password']}/"
    return url if url.endswith("/") else url + "/", verify


def shown(path: str | Path) -> str:
    """A path relative to the current directory when it is inside it (shorter output), else absolute."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class XComReader:
    """The latest run of a DAG in the demo's SQLite metadata DB: its state and XComs (deserialized)."""

    def __init__(self, home: AirflowHome, dag_id: str) -> None:
        self.home, self.dag_id = home, dag_id
        rows = home.rows("SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", dag_id)
        if not rows:
            raise DemoError(f"no run of {dag_id} in {home.db_path}")
        self.run_id, self.state = rows[0]
        if self.state != "success":
            raise DemoError(f"{dag_id} finished in state {self.state!r} (run {self.run_id})")

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        rows = self.home.rows(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=? AND map_index=-1",
            self.dag_id, self.run_id, task_id, key,
        )  # fmt: skip
        if not rows:
            raise DemoError(f"{self.dag_id}.{task_id} pushed no XCom {key!r}")
        from airflow_provider_b24._compat import serde_deserialize  # imports Airflow: only once it ran

        raw = rows[0][0]
        return serde_deserialize(json.loads(raw) if isinstance(raw, (str, bytes)) else raw)


ROW_FIELDS = ("ID", "TYPE_ID", "COMPLETED", "RESPONSIBLE_ID", "START_TIME", "DEADLINE", "SUBJECT")


def table(rows: list[Mapping[str, Any]], fields: tuple[str, ...], indent: str) -> Iterator[str]:
    """Rows as aligned columns: a header, the Python type(s) of each column, then the values."""

    def cell(value: Any) -> str:
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
        return text if len(text) <= 30 else text[:29] + "…"

    types = [
        " | ".join(sorted({type(row.get(f)).__name__ for row in rows}, key=lambda t: t == "NoneType"))
        for f in fields
    ]
    lines = [list(fields), types, *([cell(row.get(f)) for f in fields] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(fields))]
    for line in lines:
        yield (
            indent + "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        )


def typed(value: Any) -> str:
    shown = value.isoformat() if hasattr(value, "isoformat") else repr(value)
    if isinstance(value, str) and len(shown) > 34:
        shown = shown[:31] + "...'"
    return f"{shown} ({type(value).__name__})"


def summary(by_id: Mapping[str, Any], waited: Mapping[str, Any], total: float, logs: Path) -> Iterator[str]:
    activities = by_id["activities"]
    asked = len(FETCH_IDS)
    requests_used = by_id["requests"]
    how = (
        f"in {requests_used} HTTP request{'s' if requests_used != 1 else ''} ({by_id['requests_source']})"
        if requests_used is not None
        else "(HTTP request count unavailable)"
    )
    yield ""
    yield "=" * 78
    yield f"b24_activities_by_id: {by_id['state']} in {by_id['took']:.1f} s"
    yield f"  asked for {asked:,} IDs -> fetched {len(activities):,} activities {how}"
    yield f"  missing_ids XCom: {by_id['missing']} (deleted or not visible; on_missing='warn')"
    yield "  typed rows (XCom return_value of fetch_activities, first 3; Python types underneath):"
    yield from table(activities[:3], ROW_FIELDS, indent="    ")
    totals = by_id["totals"]
    yield (
        f"  calls: {totals['calls']:,}, {totals['total_seconds']:,} s in total "
        f"(average {totals['average_seconds']} s, {type(totals['average_seconds']).__name__})"
    )
    overdue = by_id["overdue"]
    if overdue:
        first = overdue[0]
        yield (
            f"  most overdue open activity (as of {AS_OF}): #{first['ID']} deadline "
            f"{typed(first['DEADLINE'])}, {first['days_overdue']} days"
        )
    yield f"  report: {shown(by_id['report'])}"
    for line in Path(by_id["report"]).read_text(encoding="utf-8").splitlines()[:4]:
        yield f"    {line}"
    yield "    ..."
    follow = waited["follow_up"]
    yield ""
    polls = f", its trigger polled {waited['polls']} times (1 request each)" if waited["polls"] else ""
    yield f"b24_wait_for_completion: {waited['state']} in {waited['took']:.1f} s"
    yield (
        f"  wait_for_call deferred after {waited['deferred_after']:.1f} s{polls}; call #{waited['call_id']} "
        f"was completed and the run finished {waited['finished_after']:.1f} s later"
    )
    yield "  follow_up got: " + ", ".join(f"{k}={typed(v)}" for k, v in follow.items())
    yield ""
    yield f"Done in {total:.0f} s. Emulator stopped; all logs in {shown(logs)}/."
    yield "=" * 78


def main() -> int:
    if not AIRFLOW.exists():
        print(f"demo: {AIRFLOW} not found: run `make install` (or `make demo`) first.", file=sys.stderr)
        return 1

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so `finally` stops every process we started.
    def on_sigterm(signum: int, frame: object) -> None:
        print("\ndemo stopped by SIGTERM; stopping the emulator and Airflow", file=sys.stderr, flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(os.environ.get("B24_DEMO_DIR") or REPO / ".demo").resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    demo = Demo(work)
    try:
        demo.start_emulator()
        demo.prepare_airflow()
        by_id = demo.activities_by_id()
        waited = demo.wait_for_completion()
        demo.stop()
        for line in summary(by_id, waited, time.monotonic() - demo.started, demo.logs):
            print(line)
        return 0
    except DemoError as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        traceback.print_exc()
        print(f"\ndemo FAILED: unexpected {type(exc).__name__}: {exc} (logs in {demo.logs})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
