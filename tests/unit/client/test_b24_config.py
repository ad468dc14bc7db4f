"""Connection-field validation: every wrong field fails before any request, naming the field."""

from __future__ import annotations

import pytest

from airflow_provider_b24.client import ClientConfig, settings_from_fields
from airflow_provider_b24.client.config import config_from_extra, parse_portal_url, parse_webhook_url
from airflow_provider_b24.exceptions import Bitrix24ConfigError

SECRET = "k3yC0de5ecret"


def test_webhook_fields() -> None:
    s = settings_from_fields(host="example.bitrix24.com", login="1", password=SECRET)
    assert s.portal.base_url == "https://example.bitrix24.com"
    assert (s.auth_type, s.user_id, s.webhook_code) == ("webhook", "1", SECRET)
    assert SECRET not in repr(s)
    assert s.secrets == [SECRET]


def test_webhook_url_extra() -> None:
    s = settings_from_fields(
        host=None, extra={"webhook_url": f"https://example.bitrix24.com/rest/12/{SECRET}/"}
    )
    assert (s.portal.base_url, s.user_id, s.webhook_code) == ("https://example.bitrix24.com", "12", SECRET)


def test_http_is_honoured_only_when_written() -> None:
    assert parse_portal_url("http://onprem.local:8080").base_url == "http://onprem.local:8080"
    assert parse_portal_url("http://onprem.local:8080").insecure
    assert parse_portal_url("onprem.local").base_url == "https://onprem.local"
    assert parse_portal_url("127.0.0.1", port=8443).base_url == "https://127.0.0.1:8443"
    assert parse_portal_url("HTTPS://Example.Bitrix24.com/").base_url == "https://example.bitrix24.com"


def test_oauth_fields() -> None:
    s = settings_from_fields(
        host="example.bitrix24.com",
        extra={
            "auth_type": "OAuth",
            "client_id": "local.1",
            "client_secret": "cs-secret",
            "access_token": "at-secret",
            "refresh_token": "rt-secret",
        },
    )
    assert s.auth_type == "oauth"
    assert s.oauth is not None
    assert s.oauth.oauth_server == "https://oauth.bitrix.info"
    assert "secret" not in repr(s)
    assert set(s.secrets) == {"cs-secret", "at-secret", "rt-secret"}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"host": "", "login": "1", "password": SECRET}, "host is empty"),
        ({"host": None, "login": "1", "password": SECRET}, "host is empty"),
        (
            {"host": f"https://x.bitrix24.com/rest/1/{SECRET}/", "login": "1", "password": SECRET},
            "without a path",
        ),
        ({"host": "ftp://x.com", "login": "1", "password": SECRET}, "https://"),
        ({"host": "x.com", "login": "", "password": SECRET}, "login"),
        ({"host": "x.com", "login": "abc", "password": SECRET}, "positive integer"),
        ({"host": "x.com", "login": "0", "password": SECRET}, "positive integer"),
        ({"host": "x.com", "login": "1", "password": ""}, "password"),
        ({"host": "x.com", "login": "1", "password": "a/b"}, "one path segment"),
        (
            {"host": None, "extra": {"webhook_url": f"https://x.com/rest/{SECRET}/"}},
            "webhook_url must look like",
        ),
        (
            {"host": None, "extra": {"webhook_url": f"https://x.com/rest/1/{SECRET}/crm.activity.get"}},
            "webhook_url",
        ),
        ({"host": None, "extra": {"webhook_url": f"https://x.com/rest/abc/{SECRET}/"}}, "positive integer"),
        ({"host": "y.com", "extra": {"webhook_url": f"https://x.com/rest/1/{SECRET}/"}}, "different portals"),
        ({"host": "x.com", "extra": {"auth_type": "oauht"}}, "'oauht'"),
        ({"host": "x.com", "extra": {"auth_type": "oauth", "client_secret": "s"}}, "client_id"),
        ({"host": "x.com", "extra": {"auth_type": "oauth", "client_id": "c"}}, "client_secret"),
        ({"host": "x.com", "extra": {"client_id": "c"}}, "auth_type"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"timeout": "abc"}}, "timeout"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"timeout": "0"}}, "timeout"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"max_retries": "2.5"}}, "max_retries"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"max_retries": -1}}, "max_retries"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"burst": "0"}}, "burst"),
        ({"host": "x.com", "login": "1", "password": SECRET, "extra": {"rate_limit": True}}, "rate_limit"),
        (
            {"host": "x.com", "login": "1", "password": SECRET, "extra": {"verify": "/no/such/ca.pem"}},
            "verify",
        ),
        (
            {"host": "x.com", "login": "1", "password": SECRET, "extra": {"operating_max_wait": "-3"}},
            "operating",
        ),
        ({"host": "x.com", "port": "abc", "login": "1", "password": SECRET}, "port"),
    ],
)
def test_bad_fields_name_the_field(fields, needle) -> None:
    with pytest.raises(Bitrix24ConfigError) as info:
        settings_from_fields(**fields)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)
    assert SECRET not in str(info.value)


def test_extras_from_the_form_are_coerced(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = config_from_extra(
        {
            "timeout": "30",
            "max_retries": "2",
            "rate_limit": "5",
            "burst": "250",
            "operating_max_wait": "",
            "verify": str(ca),
        }
    )
    assert config == ClientConfig(
        timeout=30.0, max_retries=2, rate_limit=5.0, burst=250, operating_max_wait=60.0, verify=str(ca)
    )
    assert config_from_extra({"verify": "false"}).verify is False
    assert config_from_extra({"verify": "TRUE"}).verify is True
    assert config_from_extra({"verify": False}).verify is False
    assert config_from_extra({}) == ClientConfig()


def test_webhook_url_without_scheme_defaults_to_https() -> None:
    parts = parse_webhook_url(f"x.bitrix24.com/rest/3/{SECRET}")
    assert parts.portal.base_url == "https://x.bitrix24.com"
    assert parts.user_id == "3"
