"""JSON lines and CSV encoding: types stay recoverable, lines stay lines, memory stays flat."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_b24.activities import ActivityType, parse_activity
from airflow_provider_b24.export import (
    CsvWriter,
    ExportArgumentError,
    JsonLinesWriter,
    encode_json,
    open_writer,
    parquet_available,
    read_jsonl,
    validate_format,
)
from tests.unit.export.export_fakes import SAMPLE


def typed_sample(**fields: Any) -> dict[str, Any]:
    return parse_activity({**SAMPLE, **fields})


class TestEncodeJson:
    def test_types(self) -> None:
        value = {
            "int": 5,
            "neg": -3,
            "bool": True,
            "no": False,
            "none": None,
            "dt": pendulum.parse("2020-09-27T13:26:55+02:00"),
            "date": date(2024, 1, 2),
            "dec": Decimal("12345678901234567890.123456789"),
            "enum": ActivityType.CALL,
            "list": [1, "a", None],
            "obj": {"K": "V"},
            "empty": {},
            "text": 'Иван "quoted" \\ \n\t emoji 🎉',
        }
        text = encode_json(value)
        assert "\n" not in text
        back = json.loads(text, parse_float=Decimal)
        assert back["int"] == 5 and back["neg"] == -3
        assert back["bool"] is True and back["no"] is False and back["none"] is None
        assert back["dt"] == "2020-09-27T13:26:55+02:00"
        assert back["date"] == "2024-01-02"
        assert back["dec"] == Decimal("12345678901234567890.123456789")
        assert back["enum"] == 2
        assert back["list"] == [1, "a", None] and back["obj"] == {"K": "V"} and back["empty"] == {}
        assert back["text"] == value["text"]
        assert "Иван" in text  # UTF-8, not \u escapes

    def test_decimal_is_a_json_number_not_a_float_round_trip(self) -> None:
        assert encode_json(Decimal("0.1")) == "0.1"
        assert encode_json(Decimal("1.50")) == "1.50"
        assert encode_json(Decimal("1E+2")) == "1E+2"
        assert encode_json(Decimal("NaN")) == "null"
        assert encode_json([Decimal("-1.5"), Decimal("sNaN"), {"D": Decimal("2")}]) == '[-1.5,null,{"D":2}]'

    def test_a_string_that_looks_like_a_marker_stays_a_string(self) -> None:
        assert json.loads(encode_json({"S": "\x00abc:1.5\x00"})) == {"S": "\x00abc:1.5\x00"}

    def test_line_separators_are_escaped(self) -> None:
        value = {"S": "a\u2028b\u2029c\x85d\x1ce\x0bf\rg"}
        text = encode_json(value)
        assert len(text.splitlines()) == 1
        assert json.loads(text) == value

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text()
            | st.decimals(allow_nan=False, allow_infinity=False),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=12,
        )
    )
    def test_any_value_round_trips(self, value: Any) -> None:
        text = encode_json(value)
        assert len(text.splitlines()) <= 1
        back = json.loads(text, parse_float=Decimal)

        def same(a: Any, b: Any) -> bool:
            if isinstance(a, Decimal):
                return isinstance(b, int | Decimal) and Decimal(b) == a
            if isinstance(a, list):
                return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
            if isinstance(a, dict):
                return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
            return type(a) is type(b) and a == b

        assert same(value, back)


class TestJsonLines:
    def test_typed_rows_are_recovered_by_read_jsonl(self) -> None:
        rows = [
            typed_sample(),
            typed_sample(
                ID="1000", RESULT_SUM="1500.50", RESULT_VALUE="3", END_TIME="9999-12-31T00:00:00+03:00"
            ),
            typed_sample(ID="1001", SETTINGS={"A": "B"}, SUBJECT="Звонок\u2028клиенту"),  # noqa: RUF001
        ]
        buffer = io.BytesIO()
        writer = JsonLinesWriter(buffer)
        for row in rows:
            writer.write(row)
        writer.close()
        assert not buffer.closed  # the writer never closes the stream it was given
        text = buffer.getvalue().decode("utf-8")
        assert text.count("\n") == 3 and text.endswith("\n")
        first = json.loads(text.splitlines()[0])
        assert first["ID"] == 999 and first["COMPLETED"] is True and first["RESULT_SUM"] is None
        assert first["LAST_UPDATED"] == "2021-03-21T20:28:24+02:00"
        assert json.loads(text.split("\n")[1])["RESULT_SUM"] == 1500.5
        assert list(read_jsonl(io.StringIO(text))) == rows
        assert isinstance(list(read_jsonl(io.StringIO(text)))[1]["RESULT_SUM"], Decimal)

    def test_discard_writes_nothing_more(self) -> None:
        buffer = io.BytesIO()
        writer = JsonLinesWriter(buffer)
        writer.write(typed_sample())
        writer.discard()
        assert buffer.getvalue() == b""  # still buffered when discarded: nothing reaches the stream


class TestCsv:
    def test_fixed_header_cells_and_nested_json(self, caplog: pytest.LogCaptureFixture) -> None:
        buffer = io.BytesIO()
        writer = CsvWriter(
            buffer, ["ID", "SUBJECT", "COMPLETED", "LAST_UPDATED", "SETTINGS", "RESULT_SUM", "FILES"]
        )
        writer.write(typed_sample(SETTINGS={"A": "Б"}, RESULT_SUM="10.00", SUBJECT='a,"b"\nc'))
        writer.write(typed_sample(ID="5", COMPLETED="N"))
        writer.close()
        rows = list(csv.reader(io.StringIO(buffer.getvalue().decode("utf-8"), newline="")))
        assert rows[0] == ["ID", "SUBJECT", "COMPLETED", "LAST_UPDATED", "SETTINGS", "RESULT_SUM", "FILES"]
        assert rows[1] == ["999", 'a,"b"\nc', "true", "2021-03-21T20:28:24+02:00", '{"A":"Б"}', "10.00", ""]
        assert rows[2][:3] == ["5", "Outgoing call Andrew Johnson", "false"]
        assert rows[2][4] == "{}"  # SETTINGS [] parsed to {}
        assert "left out" in caplog.text  # fields outside the header are reported once

    def test_empty_export_has_only_the_header(self) -> None:
        buffer = io.BytesIO()
        writer = open_writer("csv", buffer, ["ID", "SUBJECT"])
        writer.close()
        assert buffer.getvalue() == b"ID,SUBJECT\r\n"


class TestFormat:
    @pytest.mark.parametrize("fmt", ["jsonl", "csv", " JSONL "])
    def test_known(self, fmt: str) -> None:
        assert validate_format(fmt) == fmt.strip().lower()

    @pytest.mark.parametrize("fmt", ["json", "xlsx", "", None, 1])
    def test_unknown_names_the_choices(self, fmt: object) -> None:
        with pytest.raises(ExportArgumentError, match="'jsonl', 'csv', 'parquet'"):
            validate_format(fmt)

    def test_parquet_without_pyarrow_names_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("airflow_provider_b24.export.writers.parquet_available", lambda: False)
        assert validate_format("parquet", check_dependencies=False) == "parquet"
        with pytest.raises(ExportArgumentError, match="pyarrow"):
            validate_format("parquet")


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed")
def test_parquet_columns_are_typed() -> None:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    writer = open_writer(
        "parquet", buffer, ["ID", "SUBJECT", "COMPLETED", "LAST_UPDATED", "RESULT_SUM", "SETTINGS"]
    )
    for i in range(25_001):  # more than two row groups
        writer.write(typed_sample(ID=str(i + 1), RESULT_SUM="1.25" if i % 2 else None))
    writer.close()
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.num_rows == 25_001
    assert str(table.schema.field("ID").type) == "int64"
    assert str(table.schema.field("COMPLETED").type) == "bool"
    assert str(table.schema.field("LAST_UPDATED").type) == "timestamp[us, tz=UTC]"
    first = table.slice(0, 2).to_pylist()
    assert first[0]["ID"] == 1 and first[0]["COMPLETED"] is True and first[0]["RESULT_SUM"] is None
    assert first[1]["RESULT_SUM"] == Decimal("1.25") and first[0]["SETTINGS"] == "{}"
    assert first[0]["LAST_UPDATED"] == pendulum.parse("2021-03-21T18:28:24+00:00")
