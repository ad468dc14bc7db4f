"""Concurrent workers: several OS processes (as several Airflow workers on one machine) on one portal.

* 8 processes share one emulated portal with cloud limits (2 req/s, burst 50), each fetching 5,000
  different IDs: every process ends with exactly the store's rows; the 503s seen and the wall time
  versus the ideal are printed (``-s``) and recorded in ``docs/reliability.md``.
* 4 processes share one OAuth connection and hit ``expired_token`` at the same moment. With a token
  Variable every worker can read and write (in production: the Airflow metadata DB through the
  Variable API; here a file-backed stand-in for ``airflow.sdk.Variable``), the hook's file lock
  serialises "re-read, refresh, save": exactly one refresh, no ``invalid_grant``, and the Variable
  ends with the newest pair.
* The same 4 processes **without** a shared Variable (plain scripts: tokens fall back to process
  memory) show the documented limit: one refresh wins, the other workers spend the dead seed
  refresh token and get ``invalid_grant``. That is what an Airflow pool of one slot (or webhook auth)
  avoids.

Processes are forked from the test process (Linux), so they inherit the test's fast-backoff patch
and the connection environment; each builds its own hook, client and limiter.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.activities import fetch_activities
from airflow_provider_b24.client import DEFAULT_REGISTRY
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.fields import DEFAULT_KEYS
from tests.reliability.conftest import use_connection

WORKERS = 8
IDS_PER_WORKER = 5_000
OAUTH_WORKERS = 4

FORK = multiprocessing.get_context("fork")


def digest(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _fetch_worker(ids: list[int]) -> dict[str, Any]:
    """One worker process: fetch its IDs through a fresh hook; report digests and client counters."""
    DEFAULT_REGISTRY.clear()
    began = time.monotonic()
    hook = Bitrix24Hook()
    try:
        result = fetch_activities(hook, ids)
        stats = hook.stats
    finally:
        hook.close()
    return {
        "ids": [int(row["ID"]) for row in result.activities],
        "digests": [digest(row) for row in result.activities],
        "missing": result.missing_ids,
        "requests": stats.requests,
        "rejected_503": stats.rejected_503,
        "limiter_wait_s": stats.limiter_wait_s,
        "seconds": time.monotonic() - began,
    }


@pytest.mark.parametrize("burst", [50, 10], ids=["cloud-burst-50", "tight-burst-10"])
def test_eight_workers_share_a_rate_limited_portal(
    burst: int, bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Burst 50 is the cloud's; burst 10 makes the 8 uncoordinated workers collide (503s, retried)."""
    emu = bitrix24_emulator_factory(activities=WORKERS * IDS_PER_WORKER, seed=13, rate_limit=2, burst=burst)
    use_connection(emu, monkeypatch, rate_limit=2, burst=burst, timeout=30, max_retries=10)
    chunks = [list(range(w * IDS_PER_WORKER + 1, (w + 1) * IDS_PER_WORKER + 1)) for w in range(WORKERS)]
    for chunk in chunks[::2]:
        chunk.reverse()  # some workers ask in descending order: output must follow the input order
    began = time.monotonic()
    with FORK.Pool(WORKERS) as pool:
        results = pool.map(_fetch_worker, chunks)
    wall = time.monotonic() - began

    for chunk, result in zip(chunks, results, strict=True):
        assert result["missing"] == []
        assert result["ids"] == chunk
        expected = [digest({k: row[k] for k in DEFAULT_KEYS}) for row in map(emu.store.get, chunk)]
        assert result["digests"] == expected  # every field of every row, as stored
    stats = emu.stats
    served = stats["requests"]
    ideal_requests = WORKERS * -(-IDS_PER_WORKER // 2500)
    ideal_wait = max(0.0, (ideal_requests - burst) / 2)  # what the portal's bucket forces at best
    print(
        f"\n8 workers x 5,000 IDs, 2 req/s burst {burst}: {served} requests served "
        f"(ideal {ideal_requests}), {stats['rejected_rate_limit']} x 503 seen by the portal, "
        f"{sum(r['rejected_503'] for r in results)} by the clients, wall {wall:.1f} s "
        f"(ideal limiter wait {ideal_wait:.1f} s; slowest worker {max(r['seconds'] for r in results):.1f} s)"
    )
    assert served == ideal_requests + stats["rejected_rate_limit"]  # only 503s were repeated
    if burst >= ideal_requests:
        assert stats["rejected_rate_limit"] == 0  # 16 requests fit in the cloud burst
    assert wall < ideal_wait + 60


# --------------------------------------------------------------------------------------------- OAuth
class FileVariable:
    """A stand-in for ``airflow.sdk.Variable`` shared by processes: one JSON file per key.

    In production this is the Airflow metadata DB behind the Variable API (readable and writable by
    every worker). Writes are atomic (write + rename), as a DB row update would be.
    """

    folder: Path

    @classmethod
    def get(cls, key: str, default: Any = None, **_: Any) -> Any:
        path = cls.folder / f"{key}.json"
        return path.read_text() if path.exists() else default

    @classmethod
    def set(cls, key: str, value: Any, description: str | None = None, **_: Any) -> None:
        path = cls.folder / f"{key}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(value if isinstance(value, str) else json.dumps(value))
        tmp.replace(path)


def _oauth_worker(barrier: Any, ids: list[int], variable_folder: str | None, out: Any) -> None:
    out.put(_oauth_fetch(barrier, ids, variable_folder))


def _oauth_fetch(barrier: Any, ids: list[int], variable_folder: str | None) -> dict[str, Any]:
    """One worker: wait for the others, then fetch with the (expired) shared OAuth connection."""
    DEFAULT_REGISTRY.clear()
    if variable_folder is not None:
        import airflow.sdk

        FileVariable.folder = Path(variable_folder)
        airflow.sdk.Variable = FileVariable  # type: ignore[misc,assignment]
    hook = Bitrix24Hook()
    barrier.wait(timeout=30)
    try:
        result = fetch_activities(hook, ids)
        return {
            "ok": True,
            "ids": [int(r["ID"]) for r in result.activities],
            "refreshes": hook.stats.refreshes,
        }
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        hook.close()


def run_oauth_workers(emu: Bitrix24Emulator, variable_folder: Path | None) -> list[dict[str, Any]]:
    emu.expire_tokens()  # every worker's first request gets 401 expired_token
    barrier = FORK.Barrier(OAUTH_WORKERS)  # inherited by the forked workers
    out = FORK.Queue()
    folder = None if variable_folder is None else str(variable_folder)
    workers = [
        FORK.Process(target=_oauth_worker, args=(barrier, list(range(1, 21)), folder, out))
        for _ in range(OAUTH_WORKERS)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    return results


def test_four_workers_refresh_one_oauth_connection_once(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emu = bitrix24_emulator_factory(activities=50, seed=17, rate_limit=None)
    conn = use_connection(emu, monkeypatch, oauth=True)
    results = run_oauth_workers(emu, tmp_path)

    assert [r["ok"] for r in results] == [True] * OAUTH_WORKERS, results
    assert all(r["ids"] == list(range(1, 21)) for r in results)
    assert sum(r["refreshes"] for r in results) == 1  # one worker refreshed; three re-read its pair
    stats = emu.stats
    assert (stats["token_refreshes"], stats["token_errors"]) == (1, 0)  # no invalid_grant anywhere
    assert stats["oauth_secrets_in_query"] == 0
    stored = json.loads((tmp_path / "bitrix24_token__bitrix24_default.json").read_text())
    assert stored["refresh_token"] in emu.portal.oauth.refresh  # the newest, live refresh token
    assert stored["refresh_token"] != conn["extra"]["refresh_token"]
    assert emu.portal.oauth.check(stored["access_token"]).value == "valid"


def test_without_a_shared_token_store_workers_race(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents the limit: no shared Variable (plain scripts) → one refresh wins, the others get
    ``invalid_grant`` naming re-authorisation. Serialise OAuth tasks with a 1-slot pool, or use webhooks."""
    emu = bitrix24_emulator_factory(activities=50, seed=19, rate_limit=None)
    use_connection(emu, monkeypatch, oauth=True)
    results = run_oauth_workers(emu, None)
    assert sum(r["ok"] for r in results) == 1, results
    failures = [r["error"] for r in results if not r["ok"]]
    assert all("invalid_grant" in e and "re-authorised" in e for e in failures), failures
    assert emu.stats["token_refreshes"] == 1
