"""Legacy (Airflow 3.1) connection-form widgets, derived from the declarative ``CONN_FIELDS``.

Airflow >= 3.2 reads ``conn-fields`` from provider info and never calls these; Airflow 3.1's UI
imports the hook and calls them. Deriving both from one table keeps them identical.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_b24.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR


def _widget_kind(schema: dict[str, Any]) -> str:
    """Map a JSON-schema field to the wtforms field class Airflow 3.1 allows."""
    if schema.get("format") == "password":
        return "PasswordField"
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "integer" in types:
        return "IntegerField"
    if "boolean" in types:
        return "BooleanField"
    return "StringField"


#: Declarative fields left out of the Airflow 3.1 form. 3.1's masker does not treat the extra key
#: ``webhook_url`` as sensitive (3.2 added it to the defaults), so 3.1 would show a saved webhook URL,
#: code included, in clear in the edit form and the REST API. On 3.1 the form therefore offers only
#: login (user ID) + password (code, always masked); ``webhook_url`` keeps working from URIs/JSON/env.
LEGACY_OMITTED = frozenset({"webhook_url"})


def legacy_widget_spec() -> dict[str, tuple[str, str, str | None]]:
    """``{field: (wtforms class name, label, description)}`` for the declarative fields 3.1 shows."""
    return {
        name: (_widget_kind(field["schema"]), field["label"], field.get("description"))
        for name, field in CONN_FIELDS.items()
        if name not in LEGACY_OMITTED
    }


def get_connection_form_widgets() -> dict[str, Any]:
    """Build the wtforms widgets lazily: flask_appbuilder and wtforms may be absent."""
    from flask_appbuilder.fieldwidgets import (  # type: ignore[import-not-found]
        BS3PasswordFieldWidget,
        BS3TextFieldWidget,
    )
    from flask_babel import lazy_gettext  # type: ignore[import-not-found]
    from wtforms import (  # type: ignore[import-not-found]
        BooleanField,
        IntegerField,
        PasswordField,
        StringField,
    )
    from wtforms.validators import Optional, any_of  # type: ignore[import-not-found]

    classes = {
        "StringField": StringField,
        "PasswordField": PasswordField,
        "IntegerField": IntegerField,
        "BooleanField": BooleanField,
    }
    widgets: dict[str, Any] = {}
    for name, (kind, label, description) in legacy_widget_spec().items():
        schema = CONN_FIELDS[name]["schema"]
        validators: list[Any] = [Optional(strip_whitespace=True)]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        kwargs: dict[str, Any] = {"description": description or "", "validators": validators}
        if "default" in schema:
            kwargs["default"] = schema["default"]
        if kind == "PasswordField":
            kwargs["widget"] = BS3PasswordFieldWidget()
        elif kind in ("StringField", "IntegerField"):
            kwargs["widget"] = BS3TextFieldWidget()
        widgets[name] = classes[kind](lazy_gettext(label), **kwargs)
    return widgets


def get_ui_field_behaviour() -> dict[str, Any]:
    """The legacy snake_case twin of the declarative ``ui-field-behaviour``."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }
