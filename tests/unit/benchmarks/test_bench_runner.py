"""The benchmark runner's bookkeeping: a tiny run (N=5, limits off) in child processes, the results
schema, request counts read from the emulator, the field-by-field judge, extrapolation, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import goals, render_chart, render_markdown
from benchmarks.run import Profile, extrapolate_naive, physical_limit, run_profile
from benchmarks.verify import check_rows

REQUIRED = {
    "scenario": str,
    "contender": str,
    "n": int,
    "http_requests": int,
    "rejected_503": int,
    "wall_s": float,
    "cpu_s": float,
    "peak_rss_mb": float,
    "rows_ok": int,
}


def test_physical_limit() -> None:
    assert [physical_limit(n) for n in (1, 50, 2500, 2501, 5000, 20000)] == [1, 1, 1, 2, 2, 8]


def test_judge_catches_wrong_missing_extra_and_typed_rows() -> None:
    from airflow_provider_b24.activities import parse_activity
    from airflow_provider_b24.testing import ActivityStore
    from airflow_provider_b24.testing.datagen import populate

    store = ActivityStore()
    populate(store, 10, seed=3)
    rows = [store.get(i) for i in (1, 2, 3)]
    assert check_rows(rows, [1, 2, 3], store.get, exact=True).rows_ok == 3

    wrong = [dict(rows[0], SUBJECT="changed"), rows[1], store.get(9)]
    verdict = check_rows(wrong, [1, 2, 3], store.get, exact=True)
    assert (verdict.rows_ok, verdict.rows_wrong, verdict.rows_missing, verdict.rows_unexpected) == (
        1,
        1,
        1,
        1,
    )

    # Typed rows (ints, bools, datetimes, Decimals) match semantically, never exactly.
    typed = [parse_activity(row) for row in rows]
    assert check_rows(typed, [1, 2, 3], store.get, exact=False).rows_ok == 3
    assert check_rows(typed, [1, 2, 3], store.get, exact=True).rows_ok == 0
    typed[0]["OWNER_ID"] += 1
    assert check_rows(typed, [1, 2, 3], store.get, exact=False).rows_wrong == 1


@pytest.mark.bench
def test_tiny_run_schema_counts_and_report(tmp_path: Path) -> None:
    pytest.importorskip("b24pysdk")
    profile = Profile(
        name="test",
        activities=200,
        fetch_n=(5,),
        naive_cap=5,
        coldwarm_n=3,
        rate_limit=None,
        latency_ms=0.0,
        per_row_latency_ms=0.0,
        fetch_contenders=("naive-loop", "b24pysdk", "ours-client"),
        export_contenders=("b24pysdk",),
        cell_timeout_s=60,
    )
    rows = run_profile(profile, scenarios=("fetch", "export"), log=lambda _text: None)
    by_key = {(r["scenario"], r["contender"]): r for r in rows}
    assert set(by_key) == {
        ("fetch", "naive-loop"),
        ("fetch", "b24pysdk"),
        ("fetch", "ours-client"),
        ("export", "b24pysdk"),
    }
    for row in rows:
        for key, kind in REQUIRED.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["correct"] is True, row
        assert row["peak_rss_mb"] > 10
        assert row["rejected_503"] == 0
    assert by_key["fetch", "naive-loop"]["http_requests"] == 5  # one crm.activity.get per ID
    assert by_key["fetch", "b24pysdk"]["http_requests"] == 1
    assert by_key["fetch", "ours-client"]["http_requests"] == 1
    assert by_key["fetch", "ours-client"]["rows_ok"] == 5
    assert by_key["export", "b24pysdk"]["rows_ok"] == 200
    json.dumps(rows)  # results.json is plain JSON

    # The report renders (markdown + PNG) from these rows.
    text = render_markdown(rows, {"profile": {"activities": 200}}, None, "chart.png")
    assert "## Fetch by ID" in text
    assert "| b24pysdk |" in text
    assert render_chart(rows, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 1000


def test_naive_extrapolation_and_goals() -> None:
    profile = Profile(name="x", activities=0, fetch_n=(50, 5000), naive_cap=50, coldwarm_n=1)
    measured = [{"n": 50, "wall_s": 1.0, "cpu_s": 0.5, "correct": True}]
    guess = extrapolate_naive(measured, 5000, profile)
    assert guess is not None
    assert guess["extrapolated"] is True
    assert guess["http_requests"] == 5000
    assert guess["wall_s"] == pytest.approx(5000 * 0.02 + (5000 - 50) / 2.0, rel=0.01)

    rows = [
        {"scenario": "fetch", "contender": "ours-hook", "n": 5000, "http_requests": 2, "wall_s": 1.0,
         "rows_ok": 5000, "correct": True},
        {"scenario": "fetch", "contender": "b24pysdk", "n": 5000, "http_requests": 2, "wall_s": 2.0,
         "rows_ok": 5000, "correct": True},
        {"scenario": "export", "contender": "ours-hook", "n": 5000, "http_requests": 4, "wall_s": 1.0,
         "rows_ok": 5000, "correct": True},
    ]  # fmt: skip
    verdicts = {(v["goal"], v["n"]): v["met"] for v in goals(rows)}
    assert verdicts["requests = ceil(N/2500)", 5000] is True
    assert verdicts["wall ≤ 0.8x best peer", 5000] is True
    assert verdicts["export requests ≤ ceil(N/2500)+1", 5000] is False
