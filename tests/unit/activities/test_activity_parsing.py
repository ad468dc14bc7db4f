"""parse_activity: the documented sample field by field, every type word, and malformed values."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_b24.activities import (
    ACTIVITY_FIELD_TYPES,
    ActivityParseError,
    ActivityStatus,
    ActivityType,
    DescriptionType,
    Direction,
    NotifyType,
    OwnerType,
    Priority,
    parse_activity,
)
from tests.conftest import SAMPLES_DIR

PLUS_2 = 7200


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / "crm.activity.get.200.json").read_text())["result"]


def _dt(text: str) -> pendulum.DateTime:
    parsed = pendulum.parse(text)
    assert isinstance(parsed, pendulum.DateTime)
    return parsed


class TestDocumentedSample:
    def test_every_field_of_the_sample(self, sample: dict[str, Any]) -> None:
        assert parse_activity(sample) == {
            "ID": 999,
            "OWNER_ID": 15,
            "OWNER_TYPE_ID": 3,
            "TYPE_ID": 2,
            "PROVIDER_ID": "VOXIMPLANT_CALL",
            "PROVIDER_TYPE_ID": "CALL",
            "PROVIDER_GROUP_ID": None,
            "ASSOCIATED_ENTITY_ID": 0,
            "SUBJECT": "Outgoing call Andrew Johnson",
            "CREATED": _dt("2020-09-27T13:26:55+02:00"),
            "LAST_UPDATED": _dt("2021-03-21T20:28:24+02:00"),
            "START_TIME": _dt("2020-09-27T13:25:00+02:00"),
            "END_TIME": _dt("2020-09-27T19:25:00+02:00"),
            "DEADLINE": _dt("2020-09-27T13:25:00+02:00"),
            "COMPLETED": True,
            "STATUS": 2,
            "RESPONSIBLE_ID": 505,
            "PRIORITY": 2,
            "NOTIFY_TYPE": 1,
            "NOTIFY_VALUE": 15,
            "DESCRIPTION": "",
            "DESCRIPTION_TYPE": 1,
            "DIRECTION": 2,
            "LOCATION": "",
            "SETTINGS": {},
            "ORIGINATOR_ID": None,
            "ORIGIN_ID": None,
            "AUTHOR_ID": 505,
            "EDITOR_ID": 505,
            "PROVIDER_PARAMS": {},
            "PROVIDER_DATA": None,
            "RESULT_MARK": 0,
            "RESULT_VALUE": None,
            "RESULT_SUM": None,
            "RESULT_CURRENCY_ID": None,
            "RESULT_STATUS": 0,
            "RESULT_STREAM": 0,
            "RESULT_SOURCE_ID": None,
            "AUTOCOMPLETE_RULE": 0,
        }

    def test_types_not_just_values(self, sample: dict[str, Any]) -> None:
        parsed = parse_activity(sample)
        for key in ("ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "STATUS", "RESPONSIBLE_ID", "PRIORITY"):
            assert type(parsed[key]) is int, key  # plain int, not an IntEnum and not a str
        assert parsed["COMPLETED"] is True
        for key in ("CREATED", "LAST_UPDATED", "START_TIME", "END_TIME", "DEADLINE"):
            value = parsed[key]
            assert isinstance(value, pendulum.DateTime), key
            assert value.utcoffset() == dt.timedelta(seconds=PLUS_2), key  # the portal's offset is kept
            assert isinstance(value.tzinfo, pendulum.FixedTimezone), key

    def test_keys_and_order_are_kept(self, sample: dict[str, Any]) -> None:
        assert list(parse_activity(sample)) == list(sample)

    def test_input_is_not_modified(self, sample: dict[str, Any]) -> None:
        before = json.dumps(sample, sort_keys=True)
        parse_activity(sample)
        assert json.dumps(sample, sort_keys=True) == before

    def test_parsing_is_idempotent(self, sample: dict[str, Any]) -> None:
        once = parse_activity(sample)
        assert parse_activity(once) == once

    def test_enums_compare_with_parsed_values(self, sample: dict[str, Any]) -> None:
        parsed = parse_activity(sample)
        assert parsed["TYPE_ID"] == ActivityType.CALL
        assert parsed["OWNER_TYPE_ID"] == OwnerType.CONTACT
        assert parsed["DIRECTION"] == Direction.OUTGOING
        assert parsed["STATUS"] == ActivityStatus.COMPLETED
        assert parsed["PRIORITY"] == Priority.MEDIUM
        assert parsed["DESCRIPTION_TYPE"] == DescriptionType.PLAIN_TEXT
        assert parsed["NOTIFY_TYPE"] == NotifyType.MINUTES


class TestFieldTable:
    def test_every_documented_field_is_typed(self) -> None:
        documented = {
            "ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID",
            "PROVIDER_GROUP_ID", "ASSOCIATED_ENTITY_ID", "SUBJECT", "START_TIME", "END_TIME", "DEADLINE",
            "COMPLETED", "STATUS", "RESPONSIBLE_ID", "PRIORITY", "NOTIFY_TYPE", "NOTIFY_VALUE",
            "DESCRIPTION", "DESCRIPTION_TYPE", "DIRECTION", "LOCATION", "CREATED", "AUTHOR_ID",
            "LAST_UPDATED", "EDITOR_ID", "SETTINGS", "ORIGIN_ID", "ORIGINATOR_ID", "ORIGIN_VERSION",
            "RESULT_STATUS", "RESULT_STREAM", "RESULT_SOURCE_ID", "PROVIDER_PARAMS", "PROVIDER_DATA",
            "RESULT_MARK", "RESULT_VALUE", "RESULT_SUM", "RESULT_CURRENCY_ID", "AUTOCOMPLETE_RULE",
            "BINDINGS", "COMMUNICATIONS", "FILES", "WEBDAV_ELEMENTS", "IS_INCOMING_CHANNEL",
        }  # fmt: skip
        assert set(ACTIVITY_FIELD_TYPES) == documented

    def test_sample_fields_are_all_in_the_table(self, sample: dict[str, Any]) -> None:
        assert set(sample) <= set(ACTIVITY_FIELD_TYPES)

    @pytest.mark.parametrize(
        ("field", "type_word"),
        [
            ("OWNER_TYPE_ID", "crm_enum_ownertype"),
            ("RESPONSIBLE_ID", "user"),
            ("COMPLETED", "char"),
            ("IS_INCOMING_CHANNEL", "char"),
            ("RESULT_SUM", "double"),
            ("SETTINGS", "object"),
            ("FILES", "diskfile"),
        ],
    )
    def test_type_words_match_crm_activity_fields(self, field: str, type_word: str) -> None:
        assert ACTIVITY_FIELD_TYPES[field] == type_word


class TestScalars:
    @pytest.mark.parametrize(
        "field", ["ID", "OWNER_ID", "NOTIFY_VALUE", "RESULT_MARK", "AUTHOR_ID", "STATUS"]
    )
    def test_integer_user_and_enum_fields(self, field: str) -> None:
        assert parse_activity({field: "42"}) == {field: 42}
        assert parse_activity({field: 42}) == {field: 42}
        assert parse_activity({field: " 7 "}) == {field: 7}

    def test_negative_integer_is_an_integer(self) -> None:
        assert parse_activity({"RESULT_MARK": "-1"}) == {"RESULT_MARK": -1}

    def test_enum_values_stay_plain_int_even_when_unknown(self) -> None:
        parsed = parse_activity({"OWNER_TYPE_ID": "130", "TYPE_ID": "77"})
        assert parsed == {"OWNER_TYPE_ID": 130, "TYPE_ID": 77}
        assert type(parsed["OWNER_TYPE_ID"]) is int

    @pytest.mark.parametrize(("wire", "expected"), [("Y", True), ("N", False), ("y", True), (True, True)])
    def test_char_flags(self, wire: Any, expected: bool) -> None:
        assert parse_activity({"COMPLETED": wire, "IS_INCOMING_CHANNEL": wire}) == {
            "COMPLETED": expected,
            "IS_INCOMING_CHANNEL": expected,
        }

    @pytest.mark.parametrize(
        ("wire", "expected"),
        [
            ("1.50", Decimal("1.50")),
            ("0", Decimal(0)),
            ("-3", Decimal(-3)),
            (2, Decimal(2)),
            (0.5, Decimal("0.5")),
        ],
    )
    def test_double_is_decimal(self, wire: Any, expected: Decimal) -> None:
        parsed = parse_activity({"RESULT_SUM": wire})["RESULT_SUM"]
        assert isinstance(parsed, Decimal)
        assert parsed == expected

    def test_null_stays_none_and_empty_string_stays_empty(self) -> None:
        raw = {name: None for name in ACTIVITY_FIELD_TYPES}
        assert parse_activity(raw) == raw
        raw = {name: "" for name in ACTIVITY_FIELD_TYPES}
        assert parse_activity(raw) == raw

    def test_strings_pass_through(self) -> None:
        raw = {"SUBJECT": "Звонок клиенту ☎", "DESCRIPTION": "<b>hi</b>", "ORIGIN_ID": "ext-1"}
        assert parse_activity(raw) == raw

    def test_unknown_fields_pass_through(self) -> None:
        raw = {"ID": "1", "UF_CRM_FUTURE": "123", "NEW_THING": ["a", {"b": "1"}], "lower": "Y"}
        assert parse_activity(raw) == {
            "ID": 1,
            "UF_CRM_FUTURE": "123",
            "NEW_THING": ["a", {"b": "1"}],
            "lower": "Y",
        }


class TestDatetimes:
    @pytest.mark.parametrize(
        ("wire", "offset_s"),
        [
            ("2024-03-01T10:00:00+03:00", 3 * 3600),
            ("2024-03-01T10:00:00-05:00", -5 * 3600),
            ("2024-03-01T10:00:00+00:00", 0),
            ("2024-03-01T10:00:00Z", 0),
            ("2024-03-01T10:00:00.250+0530", 5 * 3600 + 1800),
        ],
    )
    def test_offset_is_kept(self, wire: str, offset_s: int) -> None:
        value = parse_activity({"CREATED": wire})["CREATED"]
        assert isinstance(value, pendulum.DateTime)
        assert value.utcoffset() == dt.timedelta(seconds=offset_s)
        assert (value.year, value.month, value.day, value.hour) == (2024, 3, 1, 10)

    @pytest.mark.parametrize("field", ["DEADLINE", "END_TIME"])
    @pytest.mark.parametrize("wire", ["9999-12-31T00:00:00+03:00", "9999-12-31T23:59:59-05:00"])
    def test_no_deadline_is_none(self, field: str, wire: str) -> None:
        assert parse_activity({field: wire}) == {field: None}

    def test_far_future_start_time_is_still_a_datetime(self) -> None:
        assert parse_activity({"START_TIME": "9999-12-31T00:00:00+03:00"})["START_TIME"].year == 9999

    def test_stdlib_datetime_becomes_pendulum(self) -> None:
        stdlib = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        value = parse_activity({"CREATED": stdlib})["CREATED"]
        assert isinstance(value, pendulum.DateTime)
        assert isinstance(value.tzinfo, pendulum.FixedTimezone)
        assert value == stdlib


class TestObjectsAndLists:
    def test_empty_php_array_becomes_empty_dict(self) -> None:
        assert parse_activity({"SETTINGS": [], "PROVIDER_PARAMS": []}) == {
            "SETTINGS": {},
            "PROVIDER_PARAMS": {},
        }

    def test_objects_are_kept(self) -> None:
        raw = {"SETTINGS": {"DISABLE_SENDING_MESSAGE_COPY": "Y"}, "PROVIDER_PARAMS": {"a": [1]}}
        assert parse_activity(raw) == raw

    def test_communications_element_wise(self) -> None:
        raw = {
            "COMMUNICATIONS": [
                {
                    "ID": "31",
                    "TYPE": "PHONE",
                    "VALUE": "+7 999 000-00-00",
                    "ENTITY_ID": "15",
                    "ENTITY_TYPE_ID": "3",
                    "ENTITY_SETTINGS": {
                        "HONORIFIC": "",
                        "NAME": "Andrew",
                        "SECOND_NAME": "",
                        "LAST_NAME": "Johnson",
                        "COMPANY_TITLE": "ACME",
                        "COMPANY_ID": "7",
                    },
                },
                {"ID": "32", "TYPE": "EMAIL", "VALUE": "a@x.com", "ENTITY_ID": "4", "ENTITY_TYPE_ID": "1",
                 "ENTITY_SETTINGS": []},
            ]
        }  # fmt: skip
        assert parse_activity(raw) == {
            "COMMUNICATIONS": [
                {
                    "ID": 31,
                    "TYPE": "PHONE",
                    "VALUE": "+7 999 000-00-00",
                    "ENTITY_ID": 15,
                    "ENTITY_TYPE_ID": 3,
                    "ENTITY_SETTINGS": {
                        "HONORIFIC": "",
                        "NAME": "Andrew",
                        "SECOND_NAME": "",
                        "LAST_NAME": "Johnson",
                        "COMPANY_TITLE": "ACME",
                        "COMPANY_ID": 7,
                    },
                },
                {"ID": 32, "TYPE": "EMAIL", "VALUE": "a@x.com", "ENTITY_ID": 4, "ENTITY_TYPE_ID": 1,
                 "ENTITY_SETTINGS": {}},
            ]
        }  # fmt: skip

    def test_files_element_wise(self) -> None:
        url = "https://x.bitrix24.com/bitrix/tools/crm_show_file.php?fileId=5&ownerTypeId=6&ownerId=9&auth="
        raw = {
            "FILES": [{"id": "5", "url": url}],
            "WEBDAV_ELEMENTS": [
                {"ID": "1", "FILE_ID": "2", "NAME": "a.pdf", "SIZE": "43 Kb", "BYTES": "44032"}
            ],
        }
        assert parse_activity(raw) == {
            "FILES": [{"id": 5, "url": url}],
            "WEBDAV_ELEMENTS": [{"ID": 1, "FILE_ID": 2, "NAME": "a.pdf", "SIZE": "43 Kb", "BYTES": 44032}],
        }

    def test_bindings_element_wise(self) -> None:
        raw = {
            "BINDINGS": [{"OWNER_TYPE_ID": "2", "OWNER_ID": "10"}, {"OWNER_TYPE_ID": "1", "OWNER_ID": "3"}]
        }
        assert parse_activity(raw) == {
            "BINDINGS": [{"OWNER_TYPE_ID": 2, "OWNER_ID": 10}, {"OWNER_TYPE_ID": 1, "OWNER_ID": 3}]
        }

    def test_empty_multiple_fields(self) -> None:
        assert parse_activity({"FILES": [], "COMMUNICATIONS": [], "BINDINGS": []}) == {
            "FILES": [],
            "COMMUNICATIONS": [],
            "BINDINGS": [],
        }

    def test_php_object_keyed_by_position_becomes_a_list(self) -> None:
        raw = {"FILES": {"0": {"id": "1", "url": "u1"}, "2": {"id": "3", "url": "u3"}}}
        assert parse_activity(raw) == {"FILES": [{"id": 1, "url": "u1"}, {"id": 3, "url": "u3"}]}

    def test_unknown_keys_inside_elements_pass_through(self) -> None:
        raw = {"COMMUNICATIONS": [{"ID": "1", "EXTRA": "x"}]}
        assert parse_activity(raw) == {"COMMUNICATIONS": [{"ID": 1, "EXTRA": "x"}]}


class TestMalformed:
    @pytest.mark.parametrize(
        ("raw", "field", "expected"),
        [
            ({"ID": "12a"}, "ID", "integer"),
            ({"ID": "1.0"}, "ID", "integer"),
            ({"OWNER_ID": True}, "OWNER_ID", "integer"),
            ({"RESPONSIBLE_ID": "boss"}, "RESPONSIBLE_ID", "user"),
            ({"TYPE_ID": "call"}, "TYPE_ID", "crm_enum_activitytype"),
            ({"COMPLETED": "maybe"}, "COMPLETED", "char"),
            ({"COMPLETED": 1}, "COMPLETED", "char"),
            ({"CREATED": "yesterday"}, "CREATED", "datetime"),
            ({"CREATED": "2024-03-01T10:00:00"}, "CREATED", "datetime"),  # no offset
            ({"CREATED": "2024-03-01"}, "CREATED", "datetime"),
            ({"CREATED": "2024-13-45T10:00:00+03:00"}, "CREATED", "datetime"),
            ({"CREATED": 1700000000}, "CREATED", "datetime"),
            ({"RESULT_SUM": "ten"}, "RESULT_SUM", "double"),
            ({"RESULT_SUM": "NaN"}, "RESULT_SUM", "double"),
            ({"RESULT_SUM": "Infinity"}, "RESULT_SUM", "double"),
            ({"SETTINGS": "x"}, "SETTINGS", "object"),
            ({"FILES": "x"}, "FILES", "diskfile"),
            ({"BINDINGS": ["x"]}, "BINDINGS[0]", "crm_activity_binding"),
            ({"COMMUNICATIONS": [{"ENTITY_ID": "x"}]}, "COMMUNICATIONS[0].ENTITY_ID", "integer"),
        ],
    )
    def test_raises_naming_field_and_value(self, raw: dict[str, Any], field: str, expected: str) -> None:
        with pytest.raises(ActivityParseError) as info:
            parse_activity(raw)
        err = info.value
        assert isinstance(err, ValueError)
        assert err.field == field
        assert err.expected == expected
        assert f"field {field}" in str(err)
        value = next(iter(raw.values()))
        assert repr(err.value) in str(err)
        if not isinstance(value, list | dict):
            assert err.value == value

    def test_names_the_activity(self) -> None:
        with pytest.raises(ActivityParseError, match=r"^activity 17: field DEADLINE: cannot parse 'soon'"):
            parse_activity({"ID": "17", "DEADLINE": "soon"})

    def test_not_a_mapping(self) -> None:
        with pytest.raises(TypeError, match="mapping"):
            parse_activity(["ID", "1"])  # type: ignore[arg-type]


@given(
    st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9998, 12, 31)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
    st.booleans(),
)
def test_property_datetimes_match_pendulum_parse(
    moment: dt.datetime, offset_min: int, fraction: bool
) -> None:
    sign = "-" if offset_min < 0 else "+"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if fraction else "")
    text += f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    ours = parse_activity({"CREATED": text})["CREATED"]
    reference = pendulum.parse(text)
    assert ours == reference
    assert ours.utcoffset() == reference.utcoffset()
    assert type(ours) is type(reference)
    assert isinstance(ours.tzinfo, pendulum.FixedTimezone)
