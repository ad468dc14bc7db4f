"""coerce_activity_ids: every accepted form, every rejected one, de-duplication, and properties."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_b24.activities import InvalidActivityIds, coerce_activity_ids, parse_activity


class _LazySequence(Sequence[Any]):
    """Stands in for Airflow's lazy XCom sequence: a Sequence that is neither list nor tuple."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


class TestAccepted:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (5, [5]),
            ("5", [5]),
            (" 42 ", [42]),
            ("007", [7]),
            ([1, 2, 3], [1, 2, 3]),
            ((3, 2, 1), [3, 2, 1]),
            ({7}, [7]),
            (frozenset({8}), [8]),
            (["1", 2, " 3 "], [1, 2, 3]),
            # Jinja-rendered XCom values
            ("[1, 2, 3]", [1, 2, 3]),
            ("['1', '2']", [1, 2]),
            ('["4", 5]', [4, 5]),
            ("(1, 2)", [1, 2]),
            ("{1}", [1]),
            ("1,2,3", [1, 2, 3]),
            (" 1 , 2 ,3 ", [1, 2, 3]),
            ("[]", []),
            # rows from an upstream task
            ({"ID": "9"}, [9]),
            ({"id": 9}, [9]),
            ([{"ID": "9", "SUBJECT": "x"}, {"id": "10"}], [9, 10]),
            ("[{'ID': '11'}, {'ID': '12'}]", [11, 12]),
            ('{"ID": "13"}', [13]),
            # empty
            ([], []),
            ((), []),
            ("", []),
            ("   ", []),
            (set(), []),
        ],
    )
    def test_forms(self, value: Any, expected: list[int]) -> None:
        assert coerce_activity_ids(value) == expected

    def test_parsed_rows_whose_id_is_already_int(self) -> None:
        rows = [parse_activity({"ID": "21", "COMPLETED": "Y"}), parse_activity({"ID": "22"})]
        assert coerce_activity_ids(rows) == [21, 22]

    def test_lazy_sequence_and_generator(self) -> None:
        assert coerce_activity_ids(_LazySequence([3, "4", {"ID": 5}])) == [3, 4, 5]

        def gen() -> Iterator[int]:
            yield from (10, 11)

        assert coerce_activity_ids(gen()) == [10, 11]

    def test_int_like_objects(self) -> None:
        class Int64:  # numpy-ish: registered as Integral
            def __init__(self, value: int) -> None:
                self.value = value

            def __int__(self) -> int:
                return self.value

            __index__ = __int__

        import numbers

        numbers.Integral.register(Int64)
        assert coerce_activity_ids([Int64(5)]) == [5]

    def test_duplicates_dropped_keeping_first_occurrence_order(self) -> None:
        assert coerce_activity_ids([3, 1, "3", 2, {"ID": "1"}, 3]) == [3, 1, 2]
        assert coerce_activity_ids("5,4,5,4") == [5, 4]

    def test_returns_plain_ints(self) -> None:
        assert all(type(x) is int for x in coerce_activity_ids(["1", 2, {"ID": "3"}]))

    def test_large_input(self) -> None:
        ids = list(range(1, 100_001))
        assert coerce_activity_ids(ids) == ids
        assert coerce_activity_ids(str(ids)) == ids


class TestRejected:
    @pytest.mark.parametrize(
        ("value", "bad", "position"),
        [
            ("abc", "abc", None),
            (-1, -1, None),
            ("-1", "-1", None),
            (0, 0, None),
            ("0", "0", None),
            (1.5, 1.5, None),
            (2.0, 2.0, None),
            (True, True, None),
            (False, False, None),
            (None, None, None),
            ([1, None, 3], None, 1),
            ([1, 2, [3]], [3], 2),
            ([(1, 2)], (1, 2), 0),
            (["1", "x"], "x", 1),
            ([1, True], True, 1),
            ([1, -5], -5, 1),
            ([1, 1.5], 1.5, 1),
            ("[1, 2, 'x']", "x", 2),
            ("[1, null]", None, 1),
            ("[[1]]", [1], 0),
            ("1,abc,3", "abc", 1),
            ("1,,3", "", 1),
            ("1 2 3", "1 2 3", None),
            ("1.5", "1.5", None),
            ("+5", "+5", None),
            ("None", "None", None),
            ("[1, 2", "[1, 2", None),
            ('"5"', '"5"', None),
            ({"SUBJECT": "no id"}, {"SUBJECT": "no id"}, None),
            ([{"ID": None}], None, 0),
            ([{"ID": {"ID": 1}}], {"ID": 1}, 0),
            ([{"ID": "x"}], "x", 0),
            (b"1", b"1", None),
            (object, object, None),
        ],
    )
    def test_names_value_and_position(self, value: Any, bad: Any, position: int | None) -> None:
        with pytest.raises(InvalidActivityIds) as info:
            coerce_activity_ids(value)
        err = info.value
        assert isinstance(err, ValueError)
        assert err.value == bad
        assert err.position == position
        assert repr(bad)[:40] in str(err)
        if position is not None:
            assert f"at position {position}" in str(err)

    def test_long_values_are_shortened_in_the_message(self) -> None:
        with pytest.raises(InvalidActivityIds) as info:
            coerce_activity_ids("x" * 10_000)
        assert len(str(info.value)) < 300


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------

_ids = st.integers(min_value=1, max_value=2**63)
_id_forms = st.one_of(
    _ids,
    _ids.map(str),
    _ids.map(lambda i: f" {i} "),
    _ids.map(lambda i: {"ID": str(i)}),
    _ids.map(lambda i: {"id": i}),
)


def _expected(values: list[Any]) -> list[int]:
    out: list[int] = []
    for value in values:
        number = (
            int(value["ID"] if isinstance(value, dict) and "ID" in value else value["id"])
            if isinstance(value, dict)
            else int(value)
        )
        if number not in out:
            out.append(number)
    return out


@given(st.lists(_id_forms, max_size=60))
def test_property_any_list_of_id_forms(values: list[Any]) -> None:
    result = coerce_activity_ids(values)
    assert result == _expected(values)
    assert len(set(result)) == len(result)
    assert all(type(x) is int and x > 0 for x in result)


@given(st.lists(_ids, max_size=60))
def test_property_rendered_forms_agree(ids: list[int]) -> None:
    expected = list(dict.fromkeys(ids))
    assert coerce_activity_ids(str(ids)) == expected  # Jinja renders a list with str()
    assert coerce_activity_ids(tuple(ids)) == expected
    if ids:
        assert coerce_activity_ids(",".join(map(str, ids))) == expected
    assert coerce_activity_ids(coerce_activity_ids(ids)) == expected  # idempotent


@given(
    st.lists(_ids, max_size=10),
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True).filter(lambda f: True),
        st.integers(max_value=0),
        st.text().filter(lambda s: not s.strip().isdigit() or not s.strip().isascii()).filter(bool),
        st.lists(_ids, min_size=1, max_size=2),
    ),
    st.data(),
)
def test_property_one_bad_element_is_reported_at_its_position(
    good: list[int], bad: Any, data: st.DataObject
) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(good)))
    values: list[Any] = [*good[:position], bad, *good[position:]]
    with pytest.raises(InvalidActivityIds) as info:
        coerce_activity_ids(values)
    assert info.value.position == position
