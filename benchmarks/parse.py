"""Typed parsing against JSON decoding: ``python -m benchmarks.parse [--rows 20000] [--repeat 5]``.

Measures, in one process and one run, the CPU cost per row of ``json.loads`` of N activities (each
row its own JSON text, as it comes off the wire) and of ``parse_activities`` on the decoded rows,
for two shapes: the documented ``crm.activity.get`` sample (39 fields, ``tests/data``) with varied
values, and the emulator's generated rows (``select ["*"]``). The
best of ``--repeat`` runs counts (the machine is shared). Reported by ``make bench``; never asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "crm.activity.get.200.json"


def documented_rows(n: int, seed: int = 1) -> list[str]:
    """n JSON texts of the documented sample, with IDs, dates and amounts varied per row."""
    base = json.loads(SAMPLE.read_text(encoding="utf-8"))["result"]
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        row = dict(base)
        row["ID"] = str(1000 + i)
        row["OWNER_ID"] = str(rng.randrange(1, 90_000))
        row["RESPONSIBLE_ID"] = str(rng.randrange(1, 600))
        day = rng.randrange(1, 28)
        row["CREATED"] = (
            f"2024-0{rng.randrange(1, 9)}-{day:02d}T1{rng.randrange(10)}:2{rng.randrange(10)}:55+02:00"
        )
        if i % 10 == 0:
            row["DEADLINE"] = "9999-12-31T23:59:59+03:00"
        if i % 7 == 0:
            row["RESULT_SUM"] = f"{rng.randrange(100, 99_999)}.{rng.randrange(100):02d}"
        texts.append(json.dumps(row, ensure_ascii=False))
    return texts


def emulator_rows(n: int, seed: int = 1) -> list[str]:
    """n JSON texts of emulator rows as ``crm.activity.list`` sends them for ``select ["*"]``."""
    from airflow_provider_b24.testing.datagen import populate
    from airflow_provider_b24.testing.store import ActivityStore

    store = ActivityStore()
    populate(store, n, seed=seed)
    texts = []
    for activity_id in store.ids()[:n]:
        row = dict(store.row(activity_id) or {})
        texts.append(json.dumps(row, ensure_ascii=False))
    return texts


def _best_of(repeat: int, func: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        func()
        best = min(best, time.process_time() - started)
    return best


def measure(texts: Sequence[str], repeat: int) -> dict[str, Any]:
    """µs per row of json.loads, parse_activities and (for reference) both together."""
    from airflow_provider_b24.activities import parse_activities, parse_activity

    loads = json.loads
    rows = [loads(text) for text in texts]
    parse_activities(rows[:100])  # converter tables built, caches warm
    n = len(texts)
    decode_s = _best_of(repeat, lambda: [loads(text) for text in texts])
    parse_s = _best_of(repeat, lambda: parse_activities(rows))
    # The same rows one by one (parse_activity): the garbage collector keeps running, as it does for
    # json.loads (parse_activities pauses it for a list of rows).
    one_by_one_s = _best_of(repeat, lambda: [parse_activity(row) for row in rows])
    try:  # the 0.1.0 parser, kept in the tests as the reference (before/after in the same run)
        from tests.unit.activities.reference_parsing import parse_activities as reference
    except ImportError:
        reference_s = None
    else:
        reference_s = _best_of(max(1, repeat // 2), lambda: reference(rows))
    return {
        "rows": n,
        "fields": round(sum(len(r) for r in rows) / n, 1),
        "json_loads_us": round(decode_s / n * 1e6, 2),
        "parse_us": round(parse_s / n * 1e6, 2),
        "ratio": round(parse_s / decode_s, 2) if decode_s else None,
        "parse_one_by_one_us": round(one_by_one_s / n * 1e6, 2),
        "ratio_one_by_one": round(one_by_one_s / decode_s, 2) if decode_s else None,
        "reference_0_1_0_us": round(reference_s / n * 1e6, 2) if reference_s else None,
    }


def run(n: int = 20_000, repeat: int = 5) -> dict[str, Any]:
    """Both shapes; returns ``{"documented": {...}, "emulator": {...}}``."""
    return {
        "documented": measure(documented_rows(n), repeat),
        "emulator": measure(emulator_rows(n), repeat),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parse", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    for shape, numbers in run(args.rows, args.repeat).items():
        print(
            f"{shape:<10} {numbers['rows']} rows x {numbers['fields']} fields: json.loads "
            f"{numbers['json_loads_us']} µs/row, parse_activities {numbers['parse_us']} µs/row "
            f"= {numbers['ratio']}x json.loads; parse_activity one by one {numbers['parse_one_by_one_us']} "
            f"µs/row = {numbers['ratio_one_by_one']}x; 0.1.0 parser {numbers['reference_0_1_0_us']} µs/row"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
