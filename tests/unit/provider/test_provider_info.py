"""Provider registration: the metadata Airflow reads, its schema, and what the CLI shows."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from importlib.metadata import distribution, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest
from packaging.version import Version

from airflow_provider_b24 import __version__, get_provider_info
from airflow_provider_b24.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_b24.hooks import connection_form
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook

AIRFLOW_BIN = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def info() -> dict:
    return get_provider_info()


def test_provider_info_validates_against_airflow_runtime_schema(info: dict) -> None:
    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    jsonschema.validate(info, json.loads(schema_path.read_text()))


def test_package_name_is_the_installed_distribution(info: dict) -> None:
    dist = distribution(info["package-name"])
    assert dist.metadata["Name"] == "airflow-provider-b24"
    assert dist.version == __version__
    assert info["versions"] == [__version__]


def test_entry_point_resolves_to_get_provider_info() -> None:
    (ep,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_b24")
    ]
    assert ep.load() is get_provider_info


@pytest.mark.parametrize("section", ["hooks", "operators", "sensors", "triggers"])
def test_every_declared_module_imports(info: dict, section: str) -> None:
    for item in info[section]:
        for module in item["python-modules"]:
            importlib.import_module(module)


def test_connection_type_matches_hook(info: dict) -> None:
    (conn_type,) = info["connection-types"]
    module_name, _, class_name = conn_type["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class is Bitrix24Hook
    assert hook_class.conn_type == conn_type["connection-type"] == "bitrix24"
    assert hook_class.hook_name == conn_type["hook-name"] == "Bitrix24"
    assert hook_class.conn_name_attr == "bitrix24_conn_id"
    assert hook_class.default_conn_name == "bitrix24_default"
    assert hasattr(hook_class, "test_connection")


def test_declarative_fields_are_well_formed(info: dict) -> None:
    (conn_type,) = info["connection-types"]
    fields = conn_type["conn-fields"]
    assert set(fields) >= {
        "auth_type",
        "webhook_url",
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
        "oauth_server",
        "timeout",
        "max_retries",
        "rate_limit",
        "burst",
        "operating_max_wait",
        "operating_budget",
        "verify",
    }
    allowed_formats = {"password", "multiline", "email", "url", "json", "date", "date-time", "time"}
    for name, field in fields.items():
        assert field["label"], name
        assert "type" in field["schema"], name
        assert field["schema"].get("format", "password") in allowed_formats, name
    secrets = {name for name, f in fields.items() if f["schema"].get("format") == "password"}
    assert secrets == {"webhook_url", "client_secret", "access_token", "refresh_token"}
    behaviour = conn_type["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema"}  # port: see UI_FIELD_BEHAVIOUR's comment
    assert behaviour["relabeling"]["password"] == "Webhook code"


def test_legacy_widgets_mirror_declarative_fields() -> None:
    spec = connection_form.legacy_widget_spec()
    assert connection_form.LEGACY_OMITTED == {"webhook_url"}  # 3.1 would not mask it (see module doc)
    assert list(spec) == [name for name in CONN_FIELDS if name not in connection_form.LEGACY_OMITTED]
    for name, (kind, label, description) in spec.items():
        declared = CONN_FIELDS[name]
        assert label == declared["label"]
        assert description == declared.get("description")
        is_secret = declared["schema"].get("format") == "password"
        assert (kind == "PasswordField") == is_secret, name
    legacy = Bitrix24Hook.get_ui_field_behaviour()
    assert legacy["hidden_fields"] == UI_FIELD_BEHAVIOUR["hidden-fields"]
    assert legacy["relabeling"] == UI_FIELD_BEHAVIOUR["relabeling"]
    assert legacy["placeholders"] == UI_FIELD_BEHAVIOUR["placeholders"]


def test_ui_hook_metadata_shows_our_form() -> None:
    """The API server's own form-metadata service (what the React UI renders) shows our fields.

    Airflow >= 3.2 reads the declarative ``conn-fields``; 3.1 imports the hook and calls the legacy
    widget methods with mocked wtforms. Both must yield the same form.
    """
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metas = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    meta = metas["bitrix24"]
    assert meta.hook_name == "Bitrix24"
    assert meta.hook_class_name == "airflow_provider_b24.hooks.bitrix24.Bitrix24Hook"
    extra = meta.extra_fields or {}
    declarative = Version(airflow.__version__) >= Version("3.2")
    shown = {k: v for k, v in CONN_FIELDS.items() if declarative or k not in connection_form.LEGACY_OMITTED}
    assert set(extra) == set(shown)
    for name, field in shown.items():
        schema = extra[name]["schema"]
        assert schema["title"] == field["label"], name
        is_secret = field["schema"].get("format") == "password"
        assert (schema.get("format") == "password") == is_secret, name
    assert extra["auth_type"]["schema"]["enum"] == ["webhook", "oauth"]
    standard = meta.standard_fields
    assert standard is not None
    assert standard.host.title == "Portal URL"
    assert standard.password.title == "Webhook code"
    assert standard.url_schema.hidden
    assert standard.port is not None and not standard.port.hidden
    assert standard.port.placeholder == "443"


def _airflow_cli(*args: str) -> str:
    proc = subprocess.run([AIRFLOW_BIN, *args], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_cli_lists_provider_and_hook() -> None:
    assert "airflow-provider-b24" in _airflow_cli("providers", "list")
    hooks = _airflow_cli("providers", "hooks")
    line = next(line for line in hooks.splitlines() if line.startswith("bitrix24"))
    assert "airflow_provider_b24.hooks.bitrix24.Bitrix24Hook" in line


def _extra_keys_the_client_reads() -> set[str]:
    """Every ``extra.get("...")`` / ``_text(extra, "...")`` key in the client's connection reader."""
    import ast

    from airflow_provider_b24.client import config

    keys: set[str] = set()
    for node in ast.walk(ast.parse(Path(config.__file__).read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func, args = node.func, node.args
        on_extra = bool(args) and getattr(args[0], "id", "") == "extra"
        is_get = (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and getattr(func.value, "id", "") == "extra"
        )
        reads_extra = is_get or (isinstance(func, ast.Name) and func.id == "_text" and on_extra)
        literal = [a for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if reads_extra and literal:
            keys.add(literal[0].value)
    return keys


def test_every_extra_the_client_reads_is_in_both_connection_forms() -> None:
    """The declarative form (3.2+) and the legacy widgets (3.1) offer every extra the client reads."""
    read = _extra_keys_the_client_reads()
    assert {"operating_budget", "operating_max_wait", "verify", "client_id"} <= read  # the scan works
    assert read - set(CONN_FIELDS) == set()
    legacy = set(connection_form.legacy_widget_spec())
    assert read - legacy == set(connection_form.LEGACY_OMITTED)  # webhook_url: see LEGACY_OMITTED
    assert read - set(UI_FIELD_BEHAVIOUR["placeholders"]) <= {
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
    }
