"""Benchmark runner: ``python -m benchmarks.run [--quick | --full]``.

The parent process starts one :class:`~airflow_provider_b24.testing.Bitrix24Emulator` with Bitrix24
Cloud limits (leaky bucket 2 requests/s, burst 50) and a fixed simulated server time per request
(20 ms + 0.1 ms per returned row), then runs every contender x scenario cell in a **fresh child
interpreter** (:mod:`benchmarks.cell`) so imports, cold connections, CPU and peak RSS are the
contender's own; the emulator's CPU stays in the parent. Before each cell the emulator's bucket is
emptied (``emu.reset_limits()``) so every cell starts with the same 50 free requests, and its
counters are read before and after (HTTP requests served, 503 ``QUERY_LIMIT_EXCEEDED`` sent).
Children get a private byte-code cache (``PYTHONPYCACHEPREFIX``), warmed by one untimed call per
contender. After each cell the parent checks the rows field by field against the emulator's store
(:mod:`benchmarks.verify`); a cell with any wrong or missing row scores nothing.

Outputs (``--out``, default ``benchmarks/`` for ``--full`` and ``benchmarks/quick/`` for ``--quick``):
``results.json`` (one object per cell), ``environment.json``, ``RESULTS.md`` and ``chart.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
IDS_PER_REQUEST = 2500  # 50 IDs per crm.activity.list command x 50 commands per batch
CONN_ID = "bitrix24_bench"

FETCH_CONTENDERS = (
    "ours-operator",
    "ours-hook",
    "ours-client",
    "b24pysdk",
    "fast-bitrix24",
    "fast-bitrix24-slow",
    "naive-loop",
    "raw-floor",
)
COLDWARM_CONTENDERS = ("ours-operator", "ours-hook", "b24pysdk", "fast-bitrix24", "naive-loop")
EXPORT_CONTENDERS = ("ours-operator", "ours-hook", "ours-client", "b24pysdk", "fast-bitrix24")
#: contenders that can only trust the emulator's CA through the process environment.
ENV_CA_CONTENDERS = frozenset({"b24pysdk", "fast-bitrix24", "fast-bitrix24-slow", "naive-loop"})


@dataclass
class Profile:
    """What one run measures."""

    name: str
    activities: int
    fetch_n: tuple[int, ...]
    naive_cap: int
    coldwarm_n: int
    export: bool = True
    rate_limit: float | None = 2.0
    burst: int = 50
    latency_ms: float = 20.0
    per_row_latency_ms: float = 0.1
    seed: int = 1
    fetch_contenders: tuple[str, ...] = FETCH_CONTENDERS
    coldwarm_contenders: tuple[str, ...] = COLDWARM_CONTENDERS
    export_contenders: tuple[str, ...] = EXPORT_CONTENDERS
    cell_timeout_s: float = 900.0
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full", activities=100_000, fetch_n=(1, 50, 500, 5000, 20000), naive_cap=500, coldwarm_n=500
    ),
    # Airflow's import alone takes seconds per child on a busy box, so quick runs fewer of our cells.
    "quick": Profile(
        name="quick",
        activities=10_000,
        fetch_n=(50, 500, 5000),
        naive_cap=50,
        coldwarm_n=50,
        fetch_contenders=("ours-operator", "b24pysdk", "fast-bitrix24", "naive-loop", "raw-floor"),
        coldwarm_contenders=("ours-operator", "b24pysdk", "fast-bitrix24"),
        export_contenders=("ours-operator", "b24pysdk", "fast-bitrix24"),
    ),
}
# The flat-latency portal (issue 17): the same emulator in its own process as above, TLS, cloud limits,
# a flat 20 ms per request and no simulated per-row server time, so the client's own CPU shows.
_FLAT_FETCH = ("ours-operator", "ours-hook", "b24pysdk", "fast-bitrix24", "naive-loop", "raw-floor")
_FLAT_EXPORT = ("ours-operator", "ours-hook", "b24pysdk", "fast-bitrix24")
FLAT_PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full-flat", activities=100_000, fetch_n=(500, 5000, 20000), naive_cap=50, coldwarm_n=0,
        per_row_latency_ms=0.0, fetch_contenders=_FLAT_FETCH, coldwarm_contenders=(),
        export_contenders=_FLAT_EXPORT,
    ),
    "quick": Profile(
        name="quick-flat", activities=10_000, fetch_n=(500, 5000), naive_cap=50, coldwarm_n=0,
        per_row_latency_ms=0.0, fetch_contenders=("ours-operator", "b24pysdk", "fast-bitrix24", "raw-floor"),
        coldwarm_contenders=(), export_contenders=("ours-operator", "b24pysdk", "fast-bitrix24"),
    ),
}  # fmt: skip


def physical_limit(n: int) -> int:
    """The fewest HTTP requests that can return n activities: ceil(n / 2500)."""
    return max(1, math.ceil(n / IDS_PER_REQUEST)) if n else 0


# ------------------------------------------------------------------------------ environment
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def environment(profile: Profile) -> dict[str, Any]:
    """Machine, versions and settings of this run (written to environment.json and RESULTS.md)."""
    import platform

    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": commit,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            dist: _version(dist)
            for dist in (
                "airflow-provider-b24",
                "apache-airflow",
                "b24pysdk",
                "fast-bitrix24",
                "requests",
                "aiohttp",
            )
        },
        "profile": {
            "name": profile.name,
            "activities": profile.activities,
            "fetch_n": list(profile.fetch_n),
            "naive_cap": profile.naive_cap,
            "coldwarm_n": profile.coldwarm_n,
            "rate_limit": profile.rate_limit,
            "burst": profile.burst,
            "latency_ms": profile.latency_ms,
            "per_row_latency_ms": profile.per_row_latency_ms,
            "seed": profile.seed,
        },
        "command": " ".join(["python -m benchmarks.run", f"--{profile.name}"]),
    }


# ------------------------------------------------------------------------------ cells
class Bench:
    """Holds the emulator and runs cells against it."""

    def __init__(self, profile: Profile, workdir: Path, log: Any = None) -> None:
        self.profile = profile
        self.workdir = workdir
        self.log = log or (lambda text: print(text, flush=True))
        self.emu: Any = None
        self.visible_ids: list[int] = []

    def __enter__(self) -> Bench:
        from airflow_provider_b24.testing import Bitrix24Emulator

        started = time.perf_counter()
        p = self.profile
        self.emu = Bitrix24Emulator(
            activities=p.activities,
            seed=p.seed,
            tls=True,
            rate_limit=p.rate_limit,
            burst=p.burst,
            latency_ms=p.latency_ms,
            per_row_latency_ms=p.per_row_latency_ms,
        ).start()
        hidden = self.emu.store.hidden_ids()
        self.visible_ids = [i for i in self.emu.store.ids() if i not in hidden]
        self.log(
            f"emulator {self.emu.base_url}: {len(self.visible_ids)} activities "
            f"(ready in {time.perf_counter() - started:.1f} s)"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.emu is not None:
            self.emu.stop()

    # -------------------------------------------------------------- one child process
    def _env(self, contender: str) -> dict[str, str]:
        env = dict(os.environ)
        env["AIRFLOW_HOME"] = str(self.workdir / "airflow_home")
        env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(self.emu.connection())
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        # Byte-code caches as on any installed system, kept out of the source tree: without them
        # (PYTHONDONTWRITEBYTECODE=1 and no __pycache__ in the venv) every child would compile every
        # module it imports, seconds for Airflow, and the first call would pay for lazy imports.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        if contender in ENV_CA_CONTENDERS:
            # Their only documented way to trust a private CA: requests reads REQUESTS_CA_BUNDLE,
            # aiohttp's default SSL context reads SSL_CERT_FILE. Ours uses the connection's `verify`.
            for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
                env[name] = str(self.emu.ca_cert)
        return env

    def _child(self, spec: dict[str, Any]) -> dict[str, Any]:
        tag = f"{spec['scenario']}-{spec['contender']}-{spec['n']}"
        spec_path = self.workdir / f"{tag}.spec.json"
        spec["result_path"] = str(self.workdir / f"{tag}.result.json")
        spec["rows_path"] = str(self.workdir / f"{tag}.rows.jsonl")
        spec["target"] = {
            "webhook_url": self.emu.webhook_url,
            "ca_cert": self.emu.ca_cert,
            "conn_id": CONN_ID,
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")

        from benchmarks.contenders import CONTENDERS

        timeout = min(self.profile.cell_timeout_s, CONTENDERS[spec["contender"]].timeout_s or math.inf)
        self.emu.reset_limits()  # a fresh bucket: every cell gets the same 50 free requests
        before = self.emu.stats
        timed_out = False
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.cell", str(spec_path)],
                cwd=ROOT,
                env=self._env(spec["contender"]),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            stderr, code = proc.stderr, proc.returncode
        except subprocess.TimeoutExpired:
            stderr, code, timed_out = "", -1, True
        after = self.emu.stats
        result: dict[str, Any] = {}
        result_path = Path(spec["result_path"])
        if timed_out:
            result["error"] = f"timed out after {timeout:.0f} s (stopped by the runner)"
            result["timed_out_s"] = timeout
        elif result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
        else:
            result["error"] = f"child exited {code}: {stderr[-800:]}"
        result["http_requests"] = after["requests"] - before["requests"]
        result["rejected_503"] = after["rejected_rate_limit"] - before["rejected_rate_limit"]
        result["emulator_rows_served"] = after.get("rows_returned", 0) - before.get("rows_returned", 0)
        return result

    def _verify(self, spec: dict[str, Any], expected_ids: Sequence[int], rows_file: Path) -> dict[str, Any]:
        from benchmarks.contenders import CONTENDERS
        from benchmarks.verify import check_rows, iter_jsonl

        exact = CONTENDERS[spec["contender"]].verify == "exact"
        store = self.emu.store
        if not rows_file.exists():
            return {"rows_ok": 0, "rows_missing": len(expected_ids), "check_examples": ["no rows written"]}
        with store.lock:
            verdict = check_rows(iter_jsonl(rows_file), expected_ids, store.row, exact=exact)
        return verdict.as_dict()

    def warm_up(self, contenders: Iterable[str]) -> None:
        """One untimed call per contender, so the byte-code cache holds every module it imports."""
        for name in contenders:
            spec = {"scenario": "warmup", "contender": name, "n": 1, "mode": "warmup"}
            spec["ids"] = self.visible_ids[:1]
            self.log(f"  warm-up  {name}")
            self._child(spec)

    def cell(
        self,
        scenario: str,
        contender: str,
        n: int,
        *,
        ids: Sequence[int] = (),
        ids2: Sequence[int] = (),
    ) -> dict[str, Any]:
        """Run one cell and return its results row."""
        mode = {"fetch": "fetch", "export": "export", "coldwarm": "coldwarm"}[scenario]
        spec: dict[str, Any] = {"scenario": scenario, "contender": contender, "n": n, "mode": mode}
        if mode == "export":
            spec["export_path"] = str(self.workdir / f"export-{contender}-{n}.jsonl")
        else:
            spec["ids"] = list(ids)
            if mode == "coldwarm":
                spec["ids2"] = list(ids2)
        self.log(f"  {scenario:<8} {contender:<14} n={n:<6} ...")
        result = self._child(spec)
        expected = list(ids) + list(ids2) if mode != "export" else self.visible_ids
        rows_file = Path(spec["export_path"] if mode == "export" else spec["rows_path"])
        result.update(self._verify(spec, expected, rows_file))
        correct = "error" not in result and result["rows_ok"] == len(expected)
        if mode == "export":
            rows_file.unlink(missing_ok=True)
        row = {
            "scenario": scenario,
            "contender": contender,
            "n": n,
            "http_requests": result["http_requests"],
            "rejected_503": result["rejected_503"],
            "wall_s": _round(result.get("wall_s")),
            "cpu_s": _round(result.get("cpu_s")),
            "peak_rss_mb": _round(result.get("peak_rss_mb"), 1),
            "rows_ok": result.get("rows_ok", 0),
            "correct": correct,
            "physical_limit": physical_limit(n) + (1 if mode == "export" else 0),
            "import_s": _round(result.get("import_s")),
            "startup_s": _round(result.get("startup_s")),
            "rss_after_import_mb": _round(result.get("rss_after_import_mb"), 1),
            "rows_returned": result.get("rows_returned"),
            "extrapolated": False,
        }
        if mode == "coldwarm":
            row["cold_total_s"] = _round(
                (result.get("startup_s") or 0) + (result.get("import_s") or 0) + (result.get("wall_s") or 0)
            )
            row["warm_wall_s"] = _round(result.get("warm_wall_s"))
            row["warm_cpu_s"] = _round(result.get("warm_cpu_s"))
            row["physical_limit"] = 2 * physical_limit(n)
        for key in ("rows_wrong", "rows_missing", "rows_unexpected", "rows_duplicate"):
            if result.get(key):
                row[key] = result[key]
        if result.get("check_examples") and not correct:
            row["check_examples"] = result["check_examples"]
        if result.get("timed_out_s"):
            row["timed_out_s"] = result["timed_out_s"]
        if "error" in result:
            row["error"] = result["error"]
            if result.get("traceback"):
                (self.workdir / f"{scenario}-{contender}-{n}.traceback.txt").write_text(result["traceback"])
        status = "ok" if correct else f"WRONG ({row.get('error') or row.get('check_examples')})"
        self.log(
            f"    -> {row['http_requests']} req, {row['rejected_503']} x 503, wall {row['wall_s']} s, "
            f"cpu {row['cpu_s']} s, rss {row['peak_rss_mb']} MB, rows_ok {row['rows_ok']}/{len(expected)} "
            f"{status}"
        )
        return row


def _round(value: Any, digits: int = 3) -> Any:
    return round(float(value), digits) if isinstance(value, int | float) else None


def sample_ids(pool: Sequence[int], n: int, seed: int, salt: int = 0) -> list[int]:
    """n distinct existing IDs, shuffled, reproducible (the same for every contender)."""
    rng = random.Random(seed * 1_000_003 + n * 7 + salt)
    return rng.sample(list(pool), n)


def extrapolate_naive(measured: Iterable[dict[str, Any]], n: int, profile: Profile) -> dict[str, Any] | None:
    """The naive loop beyond its cap: one request per ID, the first ``burst`` free, then ``rate`` a second.

    Per-request time comes from the largest measured naive cell that stayed inside the burst.
    """
    inside = [r for r in measured if r["correct"] and r["n"] <= profile.burst and r["n"] > 0]
    if not inside:
        return None
    base = max(inside, key=lambda r: r["n"])
    per_request = base["wall_s"] / base["n"]
    queued = max(0, n - profile.burst)
    wall = n * per_request + (queued / profile.rate_limit if profile.rate_limit else 0.0)
    return {
        "scenario": "fetch",
        "contender": "naive-loop",
        "n": n,
        "http_requests": n,
        "rejected_503": None,
        "wall_s": round(wall, 1),
        "cpu_s": round(base["cpu_s"] / base["n"] * n, 3),
        "peak_rss_mb": None,
        "rows_ok": None,
        "correct": None,
        "physical_limit": physical_limit(n),
        "extrapolated": True,
        "extrapolated_from": f"n={base['n']}: {per_request * 1000:.1f} ms per request, "
        f"then {profile.rate_limit or 'unlimited'} req/s",
    }


# ------------------------------------------------------------------------------ the run
def run_profile(
    profile: Profile,
    *,
    scenarios: Sequence[str] = ("fetch", "coldwarm", "export"),
    contenders: Sequence[str] | None = None,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Run every cell of ``profile``; returns the results rows."""
    from benchmarks.contenders import CONTENDERS

    results: list[dict[str, Any]] = []
    wanted = set(contenders) if contenders else None
    with tempfile.TemporaryDirectory(prefix="b24-bench-") as tmp, Bench(profile, Path(tmp), log) as bench:
        pool = bench.visible_ids
        everyone: list[str] = []
        for name in (*profile.fetch_contenders, *profile.coldwarm_contenders, *profile.export_contenders):
            if name not in everyone and (wanted is None or name in wanted):
                everyone.append(name)
        bench.log("warm-up (untimed; fills the byte-code cache)")
        bench.warm_up(everyone)
        if "fetch" in scenarios:
            bench.log("fetch by ID")
            for n in profile.fetch_n:
                ids = sample_ids(pool, n, profile.seed)
                for name in profile.fetch_contenders:
                    if wanted is not None and name not in wanted:
                        continue
                    if name == "naive-loop" and n > profile.naive_cap:
                        continue
                    if n < CONTENDERS[name].min_n:
                        continue
                    results.append(bench.cell("fetch", name, n, ids=ids))
            naive = [r for r in results if r["contender"] == "naive-loop" and r["scenario"] == "fetch"]
            if naive:
                for n in profile.fetch_n:
                    if n > profile.naive_cap:
                        guess = extrapolate_naive(naive, n, profile)
                        if guess:
                            results.append(guess)
        if "coldwarm" in scenarios:
            bench.log(f"cold start vs warm (two fetches of {profile.coldwarm_n} IDs in one process)")
            ids = sample_ids(pool, 2 * profile.coldwarm_n, profile.seed, salt=1)
            first, second = ids[: profile.coldwarm_n], ids[profile.coldwarm_n :]
            for name in profile.coldwarm_contenders:
                if wanted is not None and name not in wanted:
                    continue
                if name == "naive-loop" and profile.coldwarm_n > min(profile.naive_cap, profile.burst // 2):
                    continue
                results.append(bench.cell("coldwarm", name, profile.coldwarm_n, ids=first, ids2=second))
        if "export" in scenarios and profile.export:
            bench.log(f"full export of {len(pool)} activities")
            for name in profile.export_contenders:
                if wanted is not None and name not in wanted:
                    continue
                results.append(bench.cell("export", name, len(pool)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--full", action="store_true", help="N up to 20,000 and a 100,000-row export (default)"
    )
    group.add_argument("--quick", action="store_true", help="N up to 5,000 and a 10,000-row export (< 3 min)")
    parser.add_argument("--scenarios", default="fetch,coldwarm,export", help="comma-separated subset")
    parser.add_argument("--contenders", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run benchmarks/export_memory.py (default: with --full only)",
    )
    parser.add_argument(
        "--flat",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the flat-latency profile (20 ms per request, no per-row server time)",
    )
    args = parser.parse_args(argv)

    profile = PROFILES["quick" if args.quick else "full"]
    out = args.out or (BENCH_DIR / "quick" if args.quick else BENCH_DIR)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = environment(profile)
    print(
        f"benchmark profile {profile.name}: {env['cpu']} x{env['cpus']}, Python {env['python']}", flush=True
    )
    results = run_profile(
        profile,
        scenarios=[s.strip() for s in args.scenarios.split(",") if s.strip()],
        contenders=[c.strip() for c in args.contenders.split(",") if c.strip()] or None,
    )
    if args.flat:
        flat = FLAT_PROFILES[profile.name]
        print(f"benchmark profile {flat.name}: flat {flat.latency_ms} ms per request", flush=True)
        flat_rows = run_profile(
            flat,
            scenarios=[s.strip() for s in args.scenarios.split(",") if s.strip()],
            contenders=[c.strip() for c in args.contenders.split(",") if c.strip()] or None,
        )
        results += [{**row, "profile": "flat"} for row in flat_rows]
        env["flat_profile"] = environment(flat)["profile"]
    from benchmarks.parse import run as run_parse
    from benchmarks.report import export_memory, write_reports

    env["parse"] = run_parse(20_000 if profile.name == "full" else 5_000, repeat=5)
    print(f"typed parsing vs json.loads: {env['parse']}", flush=True)

    run_memory = args.memory if args.memory is not None else profile.name == "full"
    memory = export_memory(profile.name) if run_memory else None
    env["duration_s"] = round(time.perf_counter() - started, 1)
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "environment.json").write_text(
        json.dumps({**env, "export_memory": memory}, indent=1) + "\n", encoding="utf-8"
    )
    write_reports(results, env, memory, out)
    print(f"done in {env['duration_s']} s: {out / 'RESULTS.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
