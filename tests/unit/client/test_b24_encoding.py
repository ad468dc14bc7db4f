"""PHP bracket encoding, JSON bodies, redaction."""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_b24.client.encoding import (
    ResultRef,
    batch_command,
    is_result_ref,
    json_body,
    php_query,
    redact,
    referenced_keys,
    scalar_text,
)


def php_parse(query: str) -> list[tuple[list[str], str]]:
    """Decode pairs into (key path, value) like PHP's parse_str would see them."""
    out = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        head = key.split("[", 1)[0]
        out.append(([head, *re.findall(r"\[([^\]]*)\]", key)], value))
    return out


def flatten(prefix: list[str], value: Any) -> list[tuple[list[str], str]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in flatten([*prefix, str(k)], v)]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in flatten([*prefix, str(i)], v)]
    return [(prefix, scalar_text(value))]


keys = st.text(
    alphabet=st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)), min_size=1, max_size=8
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4), st.dictionaries(keys, inner, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_php_query_round_trips_through_parse_str(params: dict[str, Any]) -> None:
    query = php_query(params)
    expected = [pair for k, v in params.items() for pair in flatten([k], v)]
    assert php_parse(query) == expected
    assert "None" not in query or any("None" in str(v) for v in json.dumps(params, default=str).split('"'))


def test_scalar_rules() -> None:
    assert scalar_text(None) == ""
    assert scalar_text(True) == "Y"
    assert scalar_text(False) == "N"
    assert scalar_text(0) == "0"
    assert scalar_text(Decimal("1.50")) == "1.50"
    assert scalar_text(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=3)))) == (
        "2024-01-02T03:04:05+03:00"
    )
    assert scalar_text(dt.date(2024, 1, 2)) == "2024-01-02"

    class Kind(enum.IntEnum):
        CALL = 2

    assert scalar_text(Kind.CALL) == "2"


def test_none_is_an_empty_value_not_the_string_none() -> None:
    assert php_query({"filter": {"OWNER_ID": None}}) == "filter[OWNER_ID]="


def test_operator_keys_and_special_characters_are_escaped() -> None:
    query = php_query({"filter": {"%SUBJECT": "a&b=c d/ä"}})
    assert query == "filter[%25SUBJECT]=a%26b%3Dc+d%2F%C3%A4"


def test_empty_containers_are_left_out() -> None:
    assert php_query({"select": [], "filter": {}, "id": 1}) == "id=1"


def test_result_references_stay_raw() -> None:
    ref = ResultRef("page0", 49, "ID")
    assert ref == "$result[page0][49][ID]"
    assert ref.command_key == "page0"
    assert php_query({"filter": {">ID": ref}}) == "filter[%3EID]=$result[page0][49][ID]"
    assert php_query({"id": "$result[a][ID]"}) == "id=$result[a][ID]"
    assert php_query({"x": "$result is money"}) == "x=%24result+is+money"
    assert is_result_ref("$result[a]") and not is_result_ref("$result[")
    assert referenced_keys(batch_command("m", {"a": ref, "b": ResultRef("q")})) == {"page0", "q"}


def test_batch_command_without_params() -> None:
    assert batch_command("profile", None) == "profile"
    assert batch_command("profile", {}) == "profile"


def test_json_body_types() -> None:
    body = json.loads(
        json_body(
            {
                "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                "sum": Decimal("10.10"),
                "none": None,
                "flag": True,
                "ids": {3, 1},
                "text": "привет",
            }
        )
    )
    assert body == {
        "when": "2024-01-01T00:00:00+00:00",
        "sum": "10.10",
        "none": None,
        "flag": True,
        "ids": [1, 3],
        "text": "привет",
    }


def test_redact_plain_and_url_encoded() -> None:
    secret = "ab/cd+ef"
    text = f"url /rest/1/{secret}/x and ab%2Fcd%2Bef and short {'xy'}"
    cleaned = redact(text, [secret, "xy"])
    assert secret not in cleaned and "ab%2Fcd%2Bef" not in cleaned
    assert "xy" in cleaned  # below the minimum length: not masked (same as Airflow)


class _Level(enum.IntEnum):
    HIGH = 3


def _general_php_query(params: dict[str, Any]) -> str:
    """php_query without its fast paths: every value through scalar_text and the reference check."""
    from airflow_provider_b24.client.encoding import _flatten

    pairs: list[tuple[str, Any]] = []
    for key, value in params.items():
        _flatten(key, value, pairs)
    return "&".join(
        f"{key}={value if is_result_ref(value) else quote_plus(scalar_text(value), safe='')}"
        for key, value in pairs
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(10**12), 10**12),
            st.booleans(),
            st.sampled_from([_Level.HIGH, "$result[a][0][ID]", "$dollar", "a b&c=d", "", "é"]),
            st.text(max_size=8),
        ),
        max_size=20,
    )
)
def test_the_fast_paths_encode_as_the_general_rules(values: list[Any]) -> None:
    """Plain ints and strings skip scalar_text and the reference check; the text is the same."""
    params = {"filter": {"@ID": values}, "start": -1, "ref": values[0] if values else None}
    assert php_query(params) == _general_php_query(params)


def test_an_id_list_is_encoded_by_index() -> None:
    assert php_query({"filter": {"@ID": [7, 8]}}) == "filter[%40ID][0]=7&filter[%40ID][1]=8"
    assert php_query({"v": [True, _Level.HIGH]}) == "v[0]=Y&v[1]=3"
