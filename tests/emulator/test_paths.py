"""Call URLs and request encodings: webhook and OAuth paths, .json, case, JSON/form/GET bodies."""

from __future__ import annotations

from collections.abc import Iterator

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.phpquery import build_query, parse_str
from tests.emulator.conftest import Caller


def test_webhook_path_with_and_without_json_suffix(api: Caller) -> None:
    s, emu = api.session, api.emu
    plain = s.post(emu.webhook_url + "crm.activity.get", json={"id": 3}).json()
    suffixed = s.post(emu.webhook_url + "crm.activity.get.json", json={"id": 3}).json()
    assert plain["result"] == suffixed["result"]


def test_method_names_are_case_insensitive(api: Caller) -> None:
    body = api.ok("crm.activity.Get", {"id": 3})  # b24pysdk's spelling
    assert body["result"]["ID"] == "3"
    assert api.ok("CRM.ACTIVITY.LIST", {"filter": {"ID": 3}})["result"][0]["ID"] == "3"


def test_upper_case_id_parameter(api: Caller) -> None:
    assert api.ok("crm.activity.get", {"ID": 4})["result"]["ID"] == "4"  # fast_bitrix24's get_by_ID


def test_form_body_with_php_brackets(api: Caller) -> None:
    emu = api.emu
    form = "filter[>ID]=5&filter[%3C%3DID]=7&select[]=ID&select[]=SUBJECT&order[ID]=DESC"
    response = api.session.post(
        emu.webhook_url + "crm.activity.list",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    rows = response.json()["result"]
    assert [r["ID"] for r in rows] == ["7", "6"]
    assert set(rows[0]) == {"ID", "SUBJECT"}


def test_form_body_percent_encoded_keys_and_in_list(api: Caller) -> None:
    query = build_query({"filter": {"@ID": [9, 2, 5]}, "order": {"ID": "ASC"}, "select": ["ID"]})
    assert "filter%5B%40ID%5D%5B0%5D=9" in query
    response = api.session.post(
        api.emu.webhook_url + "crm.activity.list",
        data=query,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert [r["ID"] for r in response.json()["result"]] == ["2", "5", "9"]


def test_get_query_string(api: Caller) -> None:
    response = api.session.get(api.emu.webhook_url + "crm.activity.list?filter[ID]=8&select[]=ID")
    assert response.json()["result"] == [{"ID": "8"}]
    response = api.session.get(api.emu.webhook_url + "crm.activity.get?id=8")
    assert response.json()["result"]["ID"] == "8"


def test_oauth_path_with_auth_in_body_and_query(api: Caller) -> None:
    emu = api.emu
    token = emu.access_token
    body = api.session.post(emu.oauth_url + "crm.activity.get", json={"id": 2, "auth": token}).json()
    assert body["result"]["ID"] == "2"
    body = api.session.post(emu.oauth_url + f"crm.activity.get?auth={token}", json={"id": 2}).json()
    assert body["result"]["ID"] == "2"
    body = api.session.get(emu.oauth_url + f"crm.activity.get.json?auth={token}&id=2").json()
    assert body["result"]["ID"] == "2"
    form = api.session.post(emu.oauth_url + "crm.activity.get", data={"auth": token, "id": "2"}).json()
    assert form["result"]["ID"] == "2"


def test_parse_str_php_semantics() -> None:
    assert parse_str("filter[>ID]=5&select[]=ID&select[]=SUBJECT") == {
        "filter": {">ID": "5"},
        "select": ["ID", "SUBJECT"],
    }
    assert parse_str("filter[@ID][]=1&filter[@ID][]=2&x=a+b%26c") == {
        "filter": {"@ID": ["1", "2"]},
        "x": "a b&c",
    }
    assert parse_str("fields[COMMUNICATIONS][0][VALUE]=%2B7999&fields[COMMUNICATIONS][0][TYPE]=PHONE") == {
        "fields": {"COMMUNICATIONS": [{"VALUE": "+7999", "TYPE": "PHONE"}]}
    }
    assert parse_str("filter%5B%3E%3DCREATED%5D=2024-01-01T00%3A00%3A00%2B03%3A00") == {
        "filter": {">=CREATED": "2024-01-01T00:00:00+03:00"}
    }
    assert parse_str("a=1&&b") == {"a": "1", "b": ""}
    # Like PHP: the first "=" splits key from value, so a raw "<=" in a key breaks it.
    assert parse_str("filter[<=ID]=7") == {"filter_<": "ID]=7"}
    assert parse_str("a.b=1&c d=2") == {"a_b": "1", "c_d": "2"}


def test_localhost_name_verifies_too(shared_emu: Bitrix24Emulator) -> None:
    url = shared_emu.webhook_url.replace("127.0.0.1", "localhost") + "server.time"
    response = requests.post(url, json={}, verify=shared_emu.ca_cert, timeout=10)
    assert response.status_code == 200 and response.json()["result"].endswith("+03:00")


_keys = st.text(alphabet=st.sampled_from("ABCDEFGHIJ_>=<!@%.xyz "), min_size=1, max_size=8).filter(
    lambda k: not k.isdigit() and "[" not in k
)
_values = st.text(max_size=12)
_tree = st.recursive(
    _values,
    lambda children: (
        st.lists(children, min_size=1, max_size=3) | st.dictionaries(_keys, children, min_size=1, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys.filter(lambda k: " " not in k and "." not in k), _tree, min_size=1, max_size=4))
def test_parse_str_inverts_build_query(params: dict) -> None:
    """PHP round trip: http_build_query-style encoding decodes back to the same nested value."""
    assert parse_str(build_query(params)) == params


def test_chunked_request_body(api: Caller) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"id": '
        yield b"12}"

    response = api.session.post(
        api.emu.webhook_url + "crm.activity.get", data=body(), headers={"Content-Type": "application/json"}
    )
    assert response.json()["result"]["ID"] == "12"
