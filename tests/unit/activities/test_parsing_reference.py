"""The fast parser against the 0.1.0 parser (``reference_parsing``) on generated rows: same values,
same types, same time zones, same errors (type, field path and message), same XCom round trip."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_b24.activities import (
    ACTIVITY_FIELD_TYPES,
    ActivityParseError,
    parse_activities,
    parse_activity,
)
from airflow_provider_b24.activities.fields import (
    BINDING_FIELD_TYPES,
    COMMUNICATION_FIELD_TYPES,
    ENTITY_SETTINGS_FIELD_TYPES,
    FILE_FIELD_TYPES,
)
from tests.unit.activities import reference_parsing as reference

_digits = st.integers(min_value=0, max_value=10**12).map(str)
_odd_text = st.sampled_from(
    ["", " ", " 12 ", "-5", "+5", "1_000", "0x10", "٣", "12a", "Y", "N", " y ", "n", "yes", "1.5", "1e3",
     "NaN", "inf", "-0", "007", "²"]
)  # fmt: skip


def _iso(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:  # noqa: PLR0917
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


_wall = st.builds(
    _iso,
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
)
_offset = st.one_of(
    st.builds(
        lambda s, h, m: f"{s}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 75)
    ),
    st.sampled_from(["Z", "+0200", "-0530", "", "+02", "+02:00:30", "+٠٢:00"]),
)
_datetime_text = st.one_of(
    st.builds(lambda w, o: w + o, _wall, _offset),
    st.builds(lambda w, o: w.replace("T", " ") + o, _wall, _offset),
    st.builds(lambda w, f, o: f"{w}.{f}{o}", _wall, st.integers(0, 10**9).map(str), _offset),
    st.builds(lambda w, o: w[:16] + o, _wall, _offset),  # no seconds
    st.sampled_from(
        [
            "9999-12-31T23:59:59+03:00",
            " 9999-12-31T00:00:00+00:00 ",
            "9999-12-31",
            "2020-W01-1T13:26:55+02:00",
            "2020-09-27T132655.1+02:00",
            "2020-09-27T24:00:00+02:00",
            "2020-09-27t13:26:55+02:00",
            "2020-09-27T13:26:55+02:00 ",
            "\uff12020-09-27T13:26:55+02:00",
            "2020-09-27T13:26:55-00:00",
        ]
    ),
)
_scalar = st.one_of(
    st.none(), _digits, _odd_text, _datetime_text, st.booleans(), st.integers(-5, 10**6),
    st.floats(allow_nan=True), st.sampled_from(["0.00", "1500.50", " 2.5 ", "abc"]),
    st.builds(Decimal, st.sampled_from(["1.5", "0"])),
    st.just(pendulum.datetime(2020, 1, 1, tz="Europe/Berlin")),
    st.just(dt.datetime(2020, 1, 1, 12, 0)),
    st.just(dt.datetime(2020, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))),
    st.just(dt.date(2020, 1, 2)),
)  # fmt: skip


def _value_for(type_word: str) -> st.SearchStrategy[Any]:
    """Mostly well-formed wire values of the type, sometimes anything at all."""
    usual: st.SearchStrategy[Any]
    if type_word in ("integer", "user") or type_word.startswith("crm_enum_"):
        usual = _digits
    elif type_word == "char":
        usual = st.sampled_from(["Y", "N"])
    elif type_word == "datetime":
        usual = _datetime_text
    elif type_word == "double":
        usual = st.sampled_from(["0.00", "1500.50", "12", None])
    elif type_word == "object":
        usual = st.one_of(
            st.just([]),
            st.dictionaries(st.text(max_size=3), _scalar, max_size=2),
            st.lists(_scalar, max_size=2),
        )
    elif type_word == "crm_activity_binding":
        usual = _nested(BINDING_FIELD_TYPES)
    elif type_word == "crm_activity_communication":
        usual = _nested(COMMUNICATION_FIELD_TYPES)
    elif type_word == "diskfile":
        usual = _nested(FILE_FIELD_TYPES)
    elif type_word == "communication_entity_settings":
        usual = st.one_of(st.just([]), _row(ENTITY_SETTINGS_FIELD_TYPES))
    else:
        usual = st.one_of(st.text(max_size=5), st.none())
    return st.one_of(usual, usual, usual, _scalar)


def _row(field_types: dict[str, str] | Any, extra: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    fields = st.fixed_dictionaries(
        {}, optional={name: _value_for(word) for name, word in field_types.items()}
    )
    if not extra:
        return fields
    unknown = st.dictionaries(
        st.sampled_from(["UF_CRM_1", "UF_X", "FUTURE_FIELD", "id", ""]), _scalar, max_size=2
    )
    return st.builds(lambda a, b: {**a, **b}, fields, unknown)


def _nested(field_types: Any) -> st.SearchStrategy[Any]:
    item = _row(field_types, extra=True)
    return st.one_of(
        st.lists(item, max_size=3),
        st.lists(item, max_size=2).map(lambda items: {str(i * 2): x for i, x in enumerate(items)}),
        st.lists(st.one_of(item, _scalar), max_size=2),
        st.just([]),
        st.just(""),
    )


def _outcome(parse: Any, row: Any) -> tuple[str, Any]:
    try:
        return "ok", parse(row)
    except ActivityParseError as err:
        return "error", (err.field, err.expected, err.detail, str(err), err.activity_id)
    except TypeError as err:
        return "type-error", str(err)


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal and of the same types all the way down (``1 == True`` and ``1 == Decimal(1)`` are not)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, dt.datetime):
        assert a == b and a.fold == b.fold and a.utcoffset() == b.utcoffset(), path
        assert type(a.tzinfo) is type(b.tzinfo), path
        assert a.isoformat() == b.isoformat(), path
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_row(ACTIVITY_FIELD_TYPES))
def test_fast_parser_matches_the_reference(row: dict[str, Any]) -> None:
    expected = _outcome(reference.parse_activity, row)
    actual = _outcome(parse_activity, row)
    assert actual[0] == expected[0], (actual, expected)
    _same(actual[1], expected[1], "row")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row(ACTIVITY_FIELD_TYPES), min_size=0, max_size=4))
def test_parse_activities_matches_the_reference(rows: list[dict[str, Any]]) -> None:
    expected = _outcome(reference.parse_activities, rows)
    actual = _outcome(parse_activities, rows)
    assert actual[0] == expected[0], (actual, expected)
    _same(actual[1], expected[1], "rows")


def test_a_large_list_is_parsed_alike_and_the_collector_is_restored() -> None:
    import gc

    row = {"ID": "7", "CREATED": "2020-09-27T13:26:55+02:00", "DEADLINE": "9999-12-31T23:59:59+03:00",
           "COMPLETED": "N", "SETTINGS": [], "RESULT_SUM": "10.50", "UF_CRM_1": "x"}  # fmt: skip
    rows = [dict(row, ID=str(i)) for i in range(2500)]
    assert gc.isenabled()
    _same(parse_activities(rows), reference.parse_activities(rows), "rows")
    assert gc.isenabled()
    bad = [*rows, dict(row, ID="9", CREATED="yesterday")]
    with pytest.raises(ActivityParseError, match="activity 9: field CREATED"):
        parse_activities(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_activities(rows)
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (
            {"COMMUNICATIONS": [{"ENTITY_SETTINGS": {"COMPANY_ID": "x"}}]},
            "COMMUNICATIONS[0].ENTITY_SETTINGS.COMPANY_ID",
        ),
        ({"BINDINGS": [{"OWNER_ID": "1"}, {"OWNER_TYPE_ID": "two"}]}, "BINDINGS[1].OWNER_TYPE_ID"),
        ({"FILES": {"0": {"id": "1"}, "4": {"BYTES": "1.5"}}}, "FILES[1].BYTES"),
        ({"FILES": ["x"]}, "FILES[0]"),
    ],
)
def test_nested_error_paths(row: dict[str, Any], field: str) -> None:
    with pytest.raises(ActivityParseError) as fast:
        parse_activity({"ID": "5", **row})
    with pytest.raises(ActivityParseError) as old:
        reference.parse_activity({"ID": "5", **row})
    assert fast.value.field == old.value.field == field
    assert str(fast.value) == str(old.value)


_ODD_DATETIMES = [
    "2020-09-27T13:26:55+02:00", "9999-12-31T23:59:59+03:00", " 9999-12-31T00:00:00+00:00 ", "9999-12-31",
    "2020-W01-1T13:26:55+02:00", "2020-09-27T132655.1+02:00", "2020-09-27T24:00:00+02:00",
    "2020-09-27t13:26:55+02:00", "2020-09-27T13:26:55+02:00 ", "\uff12020-09-27T13:26:55+02:00",
    "2020-09-27T13:26:55-00:00", "2020-09-27T13:26:55+02:75", "2020-09-27T13:26:55+24:00",
    "2020-09-27T13:26:55+0200", "2020-09-27T13:26:55Z", "2020-09-27 13:26:55+02:00", "2020-09-27T13:26+02:00",
    "2020-09-27T13:26:55.5+02:00", "2020-02-30T13:26:55+02:00", "0000-09-27T13:26:55+02:00",
    "2020-09-27T13:26:5a+02:00", "2020-09-27T13:26:55+0a:00", "2020-09-27T13:26:55+\u0662\u0660:00",
    "20200927T132655+02:00:00", "2020-09-27T13:26:55,5+02:00",
]  # fmt: skip


@pytest.mark.parametrize("field", ["CREATED", "DEADLINE", "END_TIME"])
@pytest.mark.parametrize("text", _ODD_DATETIMES)
def test_odd_datetimes_match_the_reference(field: str, text: str) -> None:
    row = {"ID": "1", field: text}
    expected = _outcome(reference.parse_activity, row)
    actual = _outcome(parse_activity, row)
    assert actual[0] == expected[0], (actual, expected)
    _same(actual[1], expected[1], "row")
    many = [row] * 1200  # the list path (collector paused) too
    _same(_outcome(parse_activities, many), _outcome(reference.parse_activities, many), "rows")
