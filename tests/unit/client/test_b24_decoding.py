"""Response bodies: msgspec first, the ``requests`` path for whatever it refuses, same results."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_b24.client.decoding import decode_json


def _response(body: bytes, content_type: str = "application/json; charset=utf-8") -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = body
    response.headers["Content-Type"] = content_type
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.booleans())
def test_any_json_document_decodes_as_requests_decodes_it(value: Any, ascii_only: bool) -> None:
    body = json.dumps({"result": value}, ensure_ascii=ascii_only).encode()
    assert decode_json(_response(body)) == _response(body).json()


def test_a_repeated_key_keeps_its_last_value_as_in_json() -> None:
    assert decode_json(_response(b'{"a": 1, "a": 2}')) == {"a": 2}


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # An old on-premise portal in windows-1251: decoded with the declared charset.
        (
            '{"TITLE": "Звонок"}'.encode("cp1251"),
            "application/json; charset=windows-1251",
            {"TITLE": "Звонок"},
        ),
        (b'\xef\xbb\xbf{"a": 1}', "application/octet-stream", {"a": 1}),  # a byte-order mark, no charset
        (b'{"a": "\xff"}', "application/json; charset=utf-8", {"a": "\ufffd"}),  # invalid UTF-8: replaced
        (b'{"a": "\\ud800"}', "application/json; charset=utf-8", {"a": "\ud800"}),  # a lone surrogate
        (b'{"a": 1e400}', "application/json; charset=utf-8", {"a": math.inf}),  # beyond a float
        (
            '{"a": 1}'.encode("utf-16"),
            "application/octet-stream",
            {"a": 1},
        ),  # UTF-16, detected as requests does
    ],
)
def test_bodies_msgspec_refuses_take_the_requests_path(body: bytes, content_type: str, expected: Any) -> None:
    assert decode_json(_response(body, content_type)) == expected == _response(body, content_type).json()


def test_nan_takes_the_requests_path() -> None:
    assert math.isnan(decode_json(_response(b'{"a": NaN}'))["a"])


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b'{"result": [1, 2', b"", b'{"a": 1} x'])
def test_a_body_that_is_not_json_raises_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(_response(body))
