"""benchmarks/triggers.py bookkeeping: the plan of IDs, the physical limit, and its RESULTS.md section."""

from __future__ import annotations

from pathlib import Path

from benchmarks.triggers import BEGIN, END, markdown, physical_limit, plan, write_section

ROW = {
    "triggers": 10,
    "unique_ids": 25,
    "target_requests_per_interval": 1,
    "http_requests": 6,
    "requests_per_interval": 1.0,
    "rejected_503": 0,
    "events": 10,
    "error_events": 0,
    "without_event": 0,
    "delay_median_s": 3.1,
    "delay_max_s": 4.9,
    "wall_s": 30.2,
    "killed_at_cap": False,
    "cap_s": 75.0,
}


def test_plan_gives_each_trigger_1_to_5_ids_of_its_own() -> None:
    triggers = plan(100, list(range(1, 1000)), seed=1)
    assert len(triggers) == 100
    assert all(1 <= len(ids) <= 5 for ids in triggers)
    flat = [i for ids in triggers for i in ids]
    assert len(flat) == len(set(flat))
    assert plan(100, list(range(1, 1000)), seed=1) == triggers  # reproducible


def test_physical_limit() -> None:
    assert [physical_limit(n) for n in (0, 1, 2500, 2501, 6061)] == [0, 1, 1, 2, 3]


def test_section_is_replaced_between_its_markers(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nother sections\n", encoding="utf-8")
    data = {"before": {"note": "old", "rows": [ROW]}}
    write_section(data, results)
    write_section({**data, "after": {"note": "new", "rows": [ROW]}}, results)
    text = results.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.startswith("# Benchmark results\n\nother sections\n")
    assert "### before: old" in text and "### after: new" in text
    assert "| 10 | 25 | 6 | 1.0 | 1 | 0 | 3.1 | 4.9 | 0 | 30.2 |" in markdown(data)
