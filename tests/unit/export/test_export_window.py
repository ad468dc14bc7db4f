"""The LAST_UPDATED window: parsing bounds, validation before any request, and filter merging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest

from airflow_provider_b24.export import (
    STAR_FIELDS,
    ExportArgumentError,
    csv_header,
    export_window,
    merge_filter,
    normalise_select,
    parse_bound,
)


class TestParseBound:
    @pytest.mark.parametrize(
        "text",
        [
            "2024-01-01T00:00:00+00:00",
            "2024-01-01 00:00:00+00:00",  # how Jinja renders {{ data_interval_start }}
            "2024-01-01T00:00:00Z",
            "2024-01-01T03:00:00+03:00",
            "2023-12-31T19:00:00-05:00",
            " 2024-01-01T00:00:00.000000+00:00 ",
        ],
    )
    def test_iso_strings_with_an_offset(self, text: str) -> None:
        assert parse_bound(text, "updated_from") == datetime(2024, 1, 1, tzinfo=UTC)

    def test_aware_datetimes_stdlib_and_pendulum(self) -> None:
        moment = datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3)))
        assert parse_bound(moment, "updated_from") == datetime(2024, 1, 1, tzinfo=UTC)
        assert parse_bound(pendulum.datetime(2024, 1, 1), "x") == datetime(2024, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("2024-01-01T00:00:00", "no UTC offset"),
            ("2024-01-01 00:00:00", "no UTC offset"),
            (datetime(2024, 1, 1), "no UTC offset"),
            ("2024-01-01", "is a date"),
            ("yesterday", "not an ISO 8601 datetime"),
            ("None", "not an ISO 8601 datetime"),  # a manual run without a data interval
            ("", "not an ISO 8601 datetime"),
            (1704067200, "got int"),
            (None, "got NoneType"),
        ],
    )
    def test_refused_with_the_name_and_the_value(self, value: object, fragment: str) -> None:
        with pytest.raises(ExportArgumentError) as err:
            parse_bound(value, "updated_to")
        assert "updated_to" in str(err.value)
        assert repr(value) in str(err.value)
        assert fragment in str(err.value)


class TestWindow:
    def test_filter_has_explicit_offsets_and_half_open_operators(self) -> None:
        window = export_window("2024-01-01 03:00:00+03:00", "2024-01-01T01:00:00+00:00")
        assert window.filter() == {
            ">=LAST_UPDATED": "2024-01-01T00:00:00+00:00",
            "<LAST_UPDATED": "2024-01-01T01:00:00+00:00",
        }
        assert window.start_iso.endswith("+00:00")

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            ("2024-01-01T01:00:00+00:00", "2024-01-01T01:00:00+00:00"),
            ("2024-01-01T02:00:00+00:00", "2024-01-01T01:00:00+00:00"),
            ("2024-01-01T04:00:00+03:00", "2024-01-01T01:00:00+00:00"),  # same instant
        ],
    )
    def test_from_must_be_before_to(self, start: str, end: str) -> None:
        with pytest.raises(ExportArgumentError, match="must be before updated_to"):
            export_window(start, end)

    def test_fractions_round_up_to_whole_seconds_without_changing_membership(self) -> None:
        window = export_window("2024-01-01T00:00:00.5+00:00", "2024-01-01T00:00:09.2+00:00")
        assert window.start_iso == "2024-01-01T00:00:01+00:00"
        assert window.end_iso == "2024-01-01T00:00:10+00:00"
        # LAST_UPDATED has whole seconds: t >= 0.5 <=> t >= 1; t < 9.2 <=> t < 10.
        second = timedelta(seconds=1)
        base = datetime(2024, 1, 1, tzinfo=UTC)
        inside = [s for s in range(-2, 13) if window.contains(base + s * second)]
        assert inside == list(range(1, 10))

    def test_contains_is_half_open(self) -> None:
        window = export_window("2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00")
        assert window.contains(datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))))
        assert not window.contains(datetime(2024, 1, 1, 1, tzinfo=UTC))


class TestMergeFilter:
    window = export_window("2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00")

    def test_user_filter_is_anded_with_the_window(self) -> None:
        merged = merge_filter(
            self.window, {"TYPE_ID": 2, "<=LAST_UPDATED": "x", ">=ID": 10, "@OWNER_TYPE_ID": [1, 2]}
        )
        assert merged == {
            "TYPE_ID": 2,
            "<=LAST_UPDATED": "x",
            ">=ID": 10,
            "@OWNER_TYPE_ID": [1, 2],
            ">=LAST_UPDATED": "2024-01-01T00:00:00+00:00",
            "<LAST_UPDATED": "2024-01-01T01:00:00+00:00",
        }

    def test_none_empty_and_json_text(self) -> None:
        assert merge_filter(self.window, None) == self.window.filter()
        assert merge_filter(self.window, "") == self.window.filter()
        assert merge_filter(self.window, '{"TYPE_ID": "2"}')["TYPE_ID"] == "2"

    @pytest.mark.parametrize(
        "key", [">=LAST_UPDATED", "<LAST_UPDATED", " >=last_updated", "<Last_Updated", ">ID", ">id"]
    )
    def test_keys_the_export_owns_conflict(self, key: str) -> None:
        with pytest.raises(ExportArgumentError) as err:
            merge_filter(self.window, {key: "2024-01-01T00:00:00+00:00"})
        assert repr(key) in str(err.value)
        assert "updated_from/updated_to" in str(err.value)

    @pytest.mark.parametrize("bad", [[1, 2], "[1, 2]", "not json", 5, {1: "x"}])
    def test_not_a_dict(self, bad: object) -> None:
        with pytest.raises(ExportArgumentError, match="filter"):
            merge_filter(self.window, bad)


class TestSelect:
    def test_none_is_star_and_expands_to_the_documented_fields(self) -> None:
        assert normalise_select(None) == ["*"]
        header = csv_header(["*"])
        assert header == list(STAR_FIELDS)
        assert header[0] == "ID" and "LAST_UPDATED" in header and "COMMUNICATIONS" not in header

    def test_named_fields_keep_their_order_and_id_is_added(self) -> None:
        assert csv_header(normalise_select(["subject", "LAST_UPDATED"])) == ["ID", "SUBJECT", "LAST_UPDATED"]
        assert csv_header(normalise_select("COMMUNICATIONS"))[-1] == "COMMUNICATIONS"

    def test_bad_select(self) -> None:
        with pytest.raises(ExportArgumentError, match="select"):
            normalise_select({"ID": 1})
