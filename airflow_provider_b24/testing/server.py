"""The HTTP/1.1 transport: a threaded keep-alive server speaking TLS and plain HTTP on one port.

The first byte of each connection decides: ``0x16`` (a TLS ClientHello) gets the TLS handshake (in
the connection's own thread, so a slow client never blocks ``accept``); anything else is served as
plain HTTP, which the portal answers with ``400 INVALID_REQUEST "Https required"`` when HTTPS is
enforced. Each response is written in one ``sendall`` with ``TCP_NODELAY`` (no Nagle stalls).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_b24.testing.portal import Portal
from airflow_provider_b24.testing.wire import HttpRequest, HttpResponse

__all__ = ["EmulatorServer"]

_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
IDLE_TIMEOUT = 30.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: EmulatorServer
    secure: bool

    def setup(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(IDLE_TIMEOUT)
        self.secure = False
        context = self.server.ssl_context
        if context is not None:
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                first = b""
            if first == b"\x16":
                wrapped = context.wrap_socket(sock, server_side=True)
                self.server.replace_connection(sock, wrapped)
                self.request = wrapped
                self.secure = True
        self.connection = self.request
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = self.connection.makefile("wb", 0)
        self.server.portal.stats.add("connections")

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        request = HttpRequest(
            verb=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            secure=self.secure,
            host=self.headers.get("Host", ""),
        )
        try:
            response = self.server.portal.handle(request)
        except Exception:  # a bug in the emulator must still produce an HTTP answer
            import traceback

            traceback.print_exc()
            response = HttpResponse(
                500, b'{"error":"INTERNAL_SERVER_ERROR","error_description":"Internal server error"}'
            )
        self._write(response)

    def _write(self, response: HttpResponse) -> None:
        if response.delay > 0 and self.server.stop_event.wait(response.delay):
            self.close_connection = True
            return
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            "Server: nginx",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            head.append("Connection: close")
        else:
            head.append("Connection: keep-alive")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            self.wfile.write(data)
            return
        if response.reset_after is not None:
            self.wfile.write(data + response.body[: response.reset_after])
            self._reset()
            return
        self.wfile.write(data + response.body)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (the client sees a reset mid-body)."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            sock.close()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self.secure:
            self.server.forget_connection(self.request)
            with contextlib.suppress(OSError):
                self.request.close()

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            super().handle()


class EmulatorServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded TCP server bound to a loopback address; connections are tracked for ``close_all``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        portal: Portal,
        ssl_context: ssl.SSLContext | None,
        *,
        verbose: bool = False,
    ) -> None:
        self.portal = portal
        self.ssl_context = ssl_context
        self.verbose = verbose
        self.stop_event = portal.stop_event
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def replace_connection(self, old: socket.socket, new: socket.socket) -> None:
        """Track the TLS-wrapped socket instead of the raw one it replaced."""
        with self._conn_lock:
            self._connections.discard(old)
            self._connections.add(new)

    def forget_connection(self, sock: socket.socket) -> None:
        """Stop tracking a finished connection."""
        with self._conn_lock:
            self._connections.discard(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    def close_all(self) -> None:
        """Close every open client connection (used by ``stop``)."""
        with self._conn_lock:
            connections = list(self._connections)
            self._connections.clear()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def serve_in_thread(server: EmulatorServer) -> threading.Thread:
    """Start ``serve_forever`` in a daemon thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.name = f"b24-emulator-{server.server_address[1]}"
    thread.start()
    return thread
