"""Peak memory of an activity export: does it stay flat as the number of rows grows?

    python benchmarks/export_memory.py --rows 10000
    python benchmarks/export_memory.py --rows 100000 --format csv

The parent process serves ``--rows`` generated activities from the bundled emulator (plain HTTP on
127.0.0.1, no rate limit) and runs the export in a **child process**, so the emulator's own memory
is not counted. The child imports everything and runs a warm-up export of an empty window first,
then measures its resident set size (RSS) right before the real export, resets the kernel's
peak-RSS mark, and reads the peak (``VmHWM``) after it. Printed (one JSON object on stdout)::

    {"rows": 10000, "format": "jsonl", "requests": 5, "baseline_rss_mb": 180.2,
     "peak_rss_mb": 186.9, "peak_rss_delta_mb": 6.7, "seconds": 3.1, "file_mb": 14.2, ...}

The goal (issue 8) is a ``peak_rss_delta_mb`` that barely changes between 10k and 100k rows
(at most +50 MB between them): the export streams, it never holds all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def _rss_bytes() -> int:
    """Current resident set size (Linux ``/proc``; falls back to psutil)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import psutil

        return int(psutil.Process().memory_info().rss)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int:
    """Peak RSS of this process image: ``VmHWM`` (Linux), else ``getrusage`` max RSS.

    ``ru_maxrss`` is not used on Linux: it survives ``execve``, so a child started from a big parent
    would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run in the child process: warm up, then export every row and measure."""
    from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth
    from airflow_provider_b24.export import export_activities

    client = Bitrix24Client(
        args.url,
        WebhookAuth(user_id=args.user_id, code=args.code),
        ClientConfig(rate_limit=0, max_retries=0, timeout=300),
    )
    window = {
        "updated_from": datetime(2000, 1, 1, tzinfo=UTC),
        "updated_to": datetime(2100, 1, 1, tzinfo=UTC),
    }
    with tempfile.TemporaryDirectory(prefix="b24-export-bench-") as folder:
        out = Path(folder) / f"activities.{args.format}"
        # Warm-up: imports, TLS/HTTP session, writer classes; an empty window costs one request.
        export_activities(
            client,
            updated_from=datetime(1999, 1, 1, tzinfo=UTC),
            updated_to=datetime(1999, 1, 2, tzinfo=UTC),
            path=out,
            format=args.format,
        )
        baseline = _rss_bytes()
        reset = _reset_peak()
        started = time.perf_counter()
        result = export_activities(client, path=out, format=args.format, **window)
        seconds = time.perf_counter() - started
        peak = _peak_rss_bytes()
        file_size = out.stat().st_size
    client.close()
    return {
        "rows": result.rows,
        "format": args.format,
        "requests": result.requests,
        "baseline_rss_mb": round(baseline / MB, 1),
        "peak_rss_mb": round(peak / MB, 1),
        "peak_rss_delta_mb": round(max(0, peak - baseline) / MB, 1),
        "peak_measured_during_export_only": reset,
        "seconds": round(seconds, 2),
        "rows_per_second": round(result.rows / seconds) if seconds else None,
        "file_mb": round(file_size / MB, 1),
    }


def parent(args: argparse.Namespace) -> dict[str, Any]:
    """Serve ``--rows`` activities and run the export in a child process."""
    from airflow_provider_b24.testing import Bitrix24Emulator

    started = time.perf_counter()
    with Bitrix24Emulator(activities=args.rows, seed=args.seed, tls=False, rate_limit=None) as emu:
        generated = time.perf_counter() - started
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--rows",
            str(args.rows),
            "--format",
            args.format,
            "--url",
            emu.base_url,
            "--user-id",
            emu.user_id,
            "--code",
            emu.webhook_code,
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=args.timeout)
        served = int(emu.stats["requests"])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"the export child failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["emulator_requests_served"] = served  # includes the warm-up request
    result["generate_seconds"] = round(generated, 2)
    result["python"] = sys.version.split()[0]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="activities to export (default 10000)")
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    parser.add_argument("--seed", type=int, default=1, help="data generator seed")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the child is stopped")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--user-id", dest="user_id", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    result = child(args) if args.child else parent(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
