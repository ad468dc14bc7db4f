"""JSON lines straight from the portal's rows (``activity_lines``) against the typed path
(``encode_json(parse_activity(row))``): the same bytes, the same errors."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_b24.activities import ACTIVITY_FIELD_TYPES, ActivityParseError, parse_activity
from airflow_provider_b24.export import CsvWriter, JsonLinesWriter, encode_json
from airflow_provider_b24.export.lines import activity_lines
from airflow_provider_b24.testing.datagen import generate
from airflow_provider_b24.testing.store import split_row
from tests.unit.activities.test_parsing_reference import _datetime_text, _row
from tests.unit.export.export_fakes import SAMPLE


def typed_lines(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The reference: what the export wrote before, one typed row at a time."""
    return "".join(encode_json(parse_activity(row)) + "\n" for row in rows).encode("utf-8")


def outcome(encode: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[str, Any]:
    try:
        return "ok", encode(rows)
    except ActivityParseError as err:
        return "parse-error", (type(err), str(err), err.field, err.activity_id)
    except Exception as err:
        return "error", (type(err), str(err))


def assert_same(rows: Sequence[Mapping[str, Any]]) -> None:
    expected = outcome(typed_lines, rows)
    actual = outcome(activity_lines, rows)
    assert actual == expected


def test_msgspec_writes_every_code_point_as_json_does() -> None:
    """The premise: strings (values and keys), integers, booleans and null come out alike."""
    text = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    assert msgspec.json.encode(text) == json.dumps(text, **compact).encode("utf-8")  # type: ignore[arg-type]
    value = {text[:5000]: [text[5000:9000], 0, -1, 2**64, -(2**70), True, False, None, {}]}
    assert msgspec.json.encode(value) == json.dumps(value, **compact).encode("utf-8")  # type: ignore[arg-type]


def test_rows_of_the_emulator_data_set() -> None:
    """Portal-shaped rows: the ``select *`` part and the full rows with nested lists (any offset)."""
    for tz in (dt.UTC, dt.timezone(dt.timedelta(hours=3)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))):
        full = [row for row, _ in generate(1500, seed=7, timezone=tz)]
        base = [split_row(row)[0] for row in full]
        for rows in (base, full):
            for start in range(0, len(rows), 50):
                page = rows[start : start + 50]
                assert activity_lines(page) == typed_lines(page)


def test_the_documented_sample_and_its_variants() -> None:
    odd = [
        {},
        {"DEADLINE": "9999-12-31T23:59:59+03:00", "END_TIME": "9999-12-31T00:00:00-00:00"},
        {"CREATED": "2020-09-27T13:26:55-00:00", "LAST_UPDATED": "2020-09-27T13:26:55+00:00"},
        {"START_TIME": "2021-02-29T10:00:00+03:00"},  # no such day: the typed path's error
        {"START_TIME": "2020-09-27T24:00:00+03:00"},
        {"START_TIME": "2020-09-27T13:26:55+24:00"},
        {"START_TIME": "2020-09-27T13:26:55+05:75"},
        {"START_TIME": "2020-09-27T13:26:55.5+02:00"},
        {"START_TIME": "2020-09-27T13:26:55Z"},
        {"START_TIME": "0000-01-01T00:00:00+00:00"},
        {"ID": "007", "OWNER_ID": " 12 ", "STATUS": "", "PRIORITY": None, "TYPE_ID": 2},
        {"ID": "٣"},
        {"COMPLETED": "y", "IS_INCOMING_CHANNEL": True},
        {"RESULT_SUM": "1500.50", "RESULT_VALUE": " 1e3 "},
        {"RESULT_SUM": "0.0000001", "RESULT_VALUE": "1_000"},
        {"RESULT_SUM": "", "RESULT_VALUE": 12},
        {"RESULT_SUM": "NaN"},
        {"RESULT_SUM": 1.5, "RESULT_VALUE": float("inf")},
        {"SETTINGS": {"A": "Б", "B": None}, "PROVIDER_PARAMS": {"N": 1.0, "L": [1e16, {"x": -0.0}]}},
        {"SETTINGS": [1, 2], "PROVIDER_PARAMS": ""},
        {"SETTINGS": {}, "PROVIDER_PARAMS": "x"},
        {"SUBJECT": 1.5, "DESCRIPTION": ["a", 2e-7], "LOCATION": {"k": "v"}},
        {"SUBJECT": 'line\u2028sep\u2029para\x85nel\n\t\x00\x7f"\\ 🎉'},
        {"UF_CRM_1": 1e300, "FUTURE_FIELD": {"A": [1.25, None, True]}, "": "empty key"},
        {"UF_X\u2028": "a key with a line separator"},
    ]
    rows = [{**SAMPLE, **fields} for fields in odd]
    for row in rows:
        assert_same([row])
    assert_same(rows)


def test_errors_are_the_typed_paths_errors() -> None:
    bad = [dict(SAMPLE, ID="1"), dict(SAMPLE, ID="2", CREATED="yesterday"), dict(SAMPLE, ID="3", STATUS="x")]
    with pytest.raises(ActivityParseError, match="activity 2: field CREATED"):
        activity_lines(bad)
    assert_same(bad)
    with pytest.raises(UnicodeEncodeError):
        activity_lines([dict(SAMPLE, SUBJECT="lone \ud800 surrogate")])
    assert_same([dict(SAMPLE, SUBJECT="lone \ud800 surrogate")])
    assert_same([dict(SAMPLE, SETTINGS={"K": "lone \udfff"})])
    assert_same([dict(SAMPLE, ID="9" * 5000)])  # beyond int()'s digit limit
    with pytest.raises(TypeError, match="mapping"):
        activity_lines(["not a row"])  # type: ignore[list-item]


def test_rows_of_other_shapes_and_key_sets() -> None:
    class Row(dict):  # type: ignore[type-arg]
        pass

    reordered = dict(reversed(list(SAMPLE.items())))
    same_size_other_keys = {("X_" + key if key == "SUBJECT" else key): value for key, value in SAMPLE.items()}
    rows: list[Any] = [
        SAMPLE,
        reordered,
        same_size_other_keys,  # as many keys as the layout before it, one of them unknown
        SAMPLE,
        Row(SAMPLE),
        {**SAMPLE, 1: "int key"},
        {**SAMPLE, None: "None key"},
        {**SAMPLE, "SUBJECT": type("Text", (str,), {})("a str subclass")},
        {**SAMPLE, "ID": type("Digits", (str,), {})("12")},
    ]
    assert_same(rows)
    for row in rows:
        assert_same([row])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row(ACTIVITY_FIELD_TYPES), min_size=1, max_size=4))
def test_generated_rows(rows: list[dict[str, Any]]) -> None:
    """Any values in any fields (the parser's reference strategy): the same bytes or the same error."""
    assert_same(rows)


_portal_values = st.fixed_dictionaries(
    {},
    optional={
        "ID": st.integers(0, 10**20).map(str),
        "STATUS": st.sampled_from(["1", "2", "03", "", " 4"]),
        "COMPLETED": st.sampled_from(["Y", "N", "", "y"]),
        "CREATED": _datetime_text,
        "DEADLINE": _datetime_text,
        "RESULT_SUM": st.one_of(st.none(), st.decimals(allow_nan=True).map(str), st.text(max_size=4)),
        "SETTINGS": st.one_of(st.just([]), st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
        "SUBJECT": st.text(),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_portal_values, min_size=1, max_size=6))
def test_generated_portal_shaped_rows(variants: list[dict[str, Any]]) -> None:
    """The documented row with mostly portal-shaped values: the fast paths, and their edges."""
    assert_same([{**SAMPLE, **fields} for fields in variants])


def test_json_lines_writer_write_raw_writes_what_write_writes() -> None:
    rows = [split_row(row)[0] for row, _ in generate(300, seed=2)]
    typed, raw = io.BytesIO(), io.BytesIO()
    by_row, by_page = JsonLinesWriter(typed), JsonLinesWriter(raw)
    for row in rows:
        by_row.write(parse_activity(row))
    for start in range(0, len(rows), 50):
        by_page.write_raw(rows[start : start + 50])
    by_row.close()
    by_page.close()
    assert raw.getvalue() == typed.getvalue() == typed_lines(rows)

    discarded = io.BytesIO()
    writer = JsonLinesWriter(discarded)
    writer.write_raw(rows[:10])
    writer.discard()
    assert discarded.getvalue() == b""


def test_csv_writer_write_raw_parses_each_row() -> None:
    rows = [split_row(row)[0] for row, _ in generate(60, seed=2)]
    header = ["ID", "SUBJECT", "COMPLETED", "LAST_UPDATED", "SETTINGS", "RESULT_SUM"]
    typed, raw = io.BytesIO(), io.BytesIO()
    by_row, by_page = CsvWriter(typed, header), CsvWriter(raw, header)
    for row in rows:
        by_row.write(parse_activity(row))
    by_page.write_raw(rows)
    by_row.close()
    by_page.close()
    assert raw.getvalue() == typed.getvalue()


def test_decimal_digits_are_kept() -> None:
    rows = [dict(SAMPLE, RESULT_SUM=text) for text in ("1500.50", "007.10", "-0", "1E+2", "0.0000001")]
    assert [
        json.loads(line, parse_float=Decimal)["RESULT_SUM"] for line in activity_lines(rows).splitlines()
    ] == [
        Decimal("1500.50"),
        Decimal("7.10"),
        Decimal("-0"),
        Decimal("1E+2"),
        Decimal("1E-7"),
    ]
    assert b'"RESULT_SUM":1500.50,' in activity_lines(rows[:1])


def test_portal_shaped_rows_do_not_take_the_typed_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: rows as the portal sends them are encoded without parsing them
    (only a ``double`` value is converted on its own, through ``Decimal``)."""
    from airflow_provider_b24.export import lines

    def refuse(*args: Any) -> Any:
        raise AssertionError(f"typed path taken for {args!r:.200}")

    rows = [split_row(row)[0] for row, _ in generate(2000, seed=5)]
    expected = typed_lines(rows)
    assert activity_lines(rows[:50]) == expected[: len(activity_lines(rows[:50]))]  # learns the offset
    monkeypatch.setattr(lines, "_typed_row", refuse)
    monkeypatch.setattr(lines, "_typed_field", refuse)
    monkeypatch.setattr(lines, "parse_activity", refuse)
    assert b"".join(activity_lines(rows[i : i + 50]) for i in range(0, len(rows), 50)) == expected
