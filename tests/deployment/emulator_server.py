"""The Bitrix24 emulator in its own process, plus a loopback control port for the deployment tests.

``python tests/deployment/emulator_server.py CONFIG.json`` starts
:class:`~airflow_provider_b24.testing.Bitrix24Emulator` with the constructor arguments in
``CONFIG.json["emulator"]`` (cloud limits: ``rate_limit=2``, ``burst=50``; TLS on), and a plain-HTTP
control server on ``127.0.0.1`` (port 0 = free). Once both listen it writes
``CONFIG.json["ready_file"]`` (atomically) with the portal's connections, the CA path and the control
URL, and serves until SIGTERM.

The control port stands for what a person does in the CRM and what a test needs to observe:

* ``GET /stats``: the emulator's counters; ``POST /stats_reset``;
* ``POST /reserve {"n": N, "completed": false, "min_id": 1}``: N activity IDs no earlier call
  returned, pending (not completed) ones by default; each scenario waits on its own activities;
* ``POST /complete {"ids": [...]}``: mark activities completed (as a user closing a call);
* ``POST /complete_after_read {"ids": [...]}``: complete each activity right after the first REST
  request naming its ID was answered (a sensor's poke): the quickest possible deferral;
* ``POST /oauth_connection``: a fresh OAuth connection dict (a new token pair, as after installing the app);
* ``POST /token_lifetime {"seconds": S}``: access tokens issued from now on live S seconds;
* ``POST /expire_tokens``: expire every access token now;
* ``POST /faults {"kind", "method", "times", "after", "opts"}``: inject a fault into the next ``times``
  requests to ``method``, after letting ``after`` more of them through; ``POST /faults_clear``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from airflow_provider_b24.testing import Bitrix24Emulator


class _ArmedFaults:
    """Faults that start firing only after ``after`` more requests to their method went through."""

    def __init__(self, emulator: Bitrix24Emulator) -> None:
        self.faults = emulator.faults
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        original = self.faults.take

        def take(method: str | None, *, batch_command: bool = False) -> Any:
            if not batch_command:
                self._count(method)
            return original(method, batch_command=batch_command)

        self.faults.take = take  # type: ignore[method-assign]

    def arm(self, spec: dict[str, Any]) -> None:
        after = int(spec.get("after") or 0)
        if after <= 0:
            self.faults.add(spec["kind"], spec.get("method"), spec.get("times", 1), **spec.get("opts", {}))
            return
        with self.lock:
            self.pending.append({**spec, "left": after})

    def _count(self, method: str | None) -> None:
        with self.lock:
            for spec in list(self.pending):
                wanted = spec.get("method")
                if wanted is not None and (method or "").lower() != str(wanted).lower():
                    continue
                spec["left"] -= 1
                if spec["left"] < 0:
                    self.pending.remove(spec)
                    self.faults.add(spec["kind"], wanted, spec.get("times", 1), **spec.get("opts", {}))

    def clear(self) -> None:
        with self.lock:
            self.pending.clear()
        self.faults.clear()


class _CompleteAfterRead:
    """Complete activities right after the first answered REST request that names their ID."""

    def __init__(self, emulator: Bitrix24Emulator) -> None:
        self.store = emulator.store
        self.lock = threading.Lock()
        self.watch: dict[int, re.Pattern[str]] = {}
        portal = emulator.portal
        original = portal.handle

        def handle(request: Any) -> Any:
            response = original(request)
            if self.watch and request.path.startswith("/rest/") and response.status == 200:
                self._check(unquote_plus(request.query + "&" + request.body.decode(errors="replace")))
            return response

        portal.handle = handle  # type: ignore[method-assign]

    def arm(self, ids: list[int]) -> None:
        with self.lock:
            for activity_id in ids:
                # An ID as a value ("=1234", ": 1234", "[1234,"), never a list index ("[3]").
                self.watch[int(activity_id)] = re.compile(rf"(?<![0-9\[]){int(activity_id)}(?![0-9\]])")

    def _check(self, text: str) -> None:
        with self.lock:
            hits = [i for i, pattern in self.watch.items() if pattern.search(text)]
            for activity_id in hits:
                del self.watch[activity_id]
        for activity_id in hits:
            self.store.complete(activity_id)


def _handler(
    emulator: Bitrix24Emulator, armed: _ArmedFaults, after_read: _CompleteAfterRead
) -> type[BaseHTTPRequestHandler]:
    reserved: set[int] = set()
    reserve_lock = threading.Lock()

    def reserve(n: int, completed: bool, min_id: int) -> list[int]:
        found: list[int] = []
        with reserve_lock:
            for activity_id in emulator.store.ids():
                if activity_id in reserved or activity_id < min_id:
                    continue
                row = emulator.store.get(activity_id) or {}
                if (row.get("COMPLETED") == "Y") == completed:
                    found.append(activity_id)
                    reserved.add(activity_id)
                    if len(found) == n:
                        break
        if len(found) < n:
            raise ValueError(f"only {len(found)} unreserved activities left, {n} asked")
        return found

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, value: Any, status: int = 200) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._reply(emulator.stats)
            else:
                self._reply({"error": f"unknown path {self.path}"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            try:
                self._reply(self._post(body))
            except Exception as exc:
                self._reply({"error": f"{type(exc).__name__}: {exc}"}, 400)

        def _post(self, body: dict[str, Any]) -> Any:
            if self.path == "/stats_reset":
                emulator.stats_reset()
                return {"ok": True}
            if self.path == "/reserve":
                completed, min_id = bool(body.get("completed", False)), int(body.get("min_id", 1))
                return {"ids": reserve(int(body["n"]), completed, min_id)}
            if self.path == "/complete":
                for activity_id in body["ids"]:
                    emulator.store.complete(int(activity_id))
                return {"ok": True}
            if self.path == "/complete_after_read":
                after_read.arm([int(i) for i in body["ids"]])
                return {"ok": True}
            if self.path == "/oauth_connection":
                return emulator.oauth_connection()
            if self.path == "/token_lifetime":
                emulator.portal.oauth.lifetime = float(body["seconds"])
                return {"ok": True}
            if self.path == "/expire_tokens":
                emulator.expire_tokens()
                return {"ok": True}
            if self.path == "/faults":
                armed.arm(body)
                return {"ok": True}
            if self.path == "/faults_clear":
                armed.clear()
                return {"ok": True}
            raise ValueError(f"unknown path {self.path}")

    return Handler


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    emulator = Bitrix24Emulator(**config["emulator"])
    armed = _ArmedFaults(emulator)
    after_read = _CompleteAfterRead(emulator)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator.start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), _handler(emulator, armed, after_read))
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    try:
        ready = {
            "base_url": emulator.base_url,
            "ca_cert": emulator.ca_cert,
            "control_url": f"http://127.0.0.1:{control.server_address[1]}",
            "webhook": emulator.connection(),
            "pid": os.getpid(),
        }
        target = Path(config["ready_file"])
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(ready))
        os.replace(tmp, target)
        print(f"emulator on {emulator.base_url}, control on {ready['control_url']}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        control.shutdown()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
