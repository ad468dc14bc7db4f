"""``python -m airflow_provider_b24.testing`` / ``b24-emulator``: run the emulator until SIGTERM/SIGINT.

Prints the webhook URL, the CA path and a ready ``AIRFLOW_CONN_BITRIX24_DEFAULT='...'`` line;
``--ready-file`` gets the connection JSON once the port is listening (for scripts to wait on).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="b24-emulator", description="Run a local Bitrix24 portal emulator (CRM activities REST API)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--activities", type=int, default=1000, help="activities to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="data generator seed (default 1)")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="leaky-bucket requests/s (default off)"
    )
    parser.add_argument("--burst", type=int, default=50, help="leaky-bucket capacity (default 50)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency per request")
    parser.add_argument("--per-row-latency-ms", type=float, default=0.0, help="simulated latency per row")
    parser.add_argument("--operating-limit", type=float, default=None, help="seconds per method per 10 min")
    parser.add_argument("--timezone", default="+03:00", help="portal UTC offset (default +03:00)")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP (no HTTPS enforcement)")
    parser.add_argument("--data", type=Path, default=None, help="load activities from a JSON fixture")
    parser.add_argument("--save-data", type=Path, default=None, help="write the generated data and exit")
    parser.add_argument(
        "--ready-file", type=Path, default=None, help="write the connection JSON here when ready"
    )
    parser.add_argument(
        "--oauth", action="store_true", help="print an OAuth connection instead of the webhook"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator; returns the exit code (0 after SIGTERM/SIGINT)."""
    args = build_parser().parse_args(argv)
    from airflow_provider_b24.testing.emulator import Bitrix24Emulator

    emulator = Bitrix24Emulator(
        activities=args.activities,
        seed=args.seed,
        tls=not args.no_tls,
        rate_limit=args.rate_limit,
        burst=args.burst,
        port=args.port,
        host=args.host,
        latency_ms=args.latency_ms,
        per_row_latency_ms=args.per_row_latency_ms,
        operating_limit=args.operating_limit,
        timezone=args.timezone,
        data=args.data,
        verbose=args.verbose,
    )
    if args.save_data is not None:
        emulator.store.save(args.save_data)
        print(f"wrote {len(emulator.store)} activities to {args.save_data}", flush=True)
        return 0

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start()
    try:
        connection = emulator.connection_json(oauth=args.oauth)
        print(f"Bitrix24 emulator listening on {emulator.base_url} ({len(emulator.store)} activities)")
        print(f"webhook URL: {emulator.webhook_url}")
        print(f"OAuth: client_id={emulator.client_id} token URL {emulator.token_url}")
        print(f"CA certificate: {emulator.ca_cert or '(plain HTTP)'}")
        print(f"export AIRFLOW_CONN_BITRIX24_DEFAULT={shlex.quote(connection)}")
        sys.stdout.flush()
        if args.ready_file is not None:
            tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
            tmp.write_text(json.dumps(json.loads(connection)), encoding="utf-8")
            os.replace(tmp, args.ready_file)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        print("Bitrix24 emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
