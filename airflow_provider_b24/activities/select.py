"""``select``: which activity fields to fetch, normalised for ``crm.activity.list``.

No Airflow here (layer 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_b24.activities.fields import SELECT_ONLY_FIELDS
from airflow_provider_b24.activities.ids import parse_rendered, short_repr
from airflow_provider_b24.exceptions import Bitrix24ArgumentError

__all__ = ["InvalidSelect", "coerce_select"]


class InvalidSelect(Bitrix24ArgumentError):
    """The ``select`` argument is not a list of field names (or does not fit the strategy)."""


def coerce_select(select: Any) -> list[str]:
    """Normalise ``select`` for ``crm.activity.list``.

    ``None`` means every field ``crm.activity.get`` returns, i.e. ``["*"]``. Naming only fields that
    ``*`` does not include (``COMMUNICATIONS``, ``FILES``, ``BINDINGS``...) *adds* them to ``*``;
    naming any plain field selects exactly those fields (``ID`` is always added: results are matched
    by it). Names are upper-cased and de-duplicated. A Jinja-rendered list or a comma-separated
    string is accepted too.
    """
    if select is None:
        return ["*"]
    if isinstance(select, str):
        text = select.strip()
        if text[:1] in ("[", "("):
            try:
                select = parse_rendered(text)
            except ValueError:
                raise InvalidSelect(f"select: cannot read {select!r} as a list of field names") from None
        else:
            select = [part for part in text.split(",") if part.strip()]
    if isinstance(select, Mapping) or not isinstance(select, Iterable) or isinstance(select, str):
        raise InvalidSelect(f"select must be a list of field names, got {short_repr(select)}")
    names: list[str] = []
    for position, name in enumerate(select):
        if not isinstance(name, str) or not name.strip():
            raise InvalidSelect(f"select: {name!r} at position {position} is not a field name")
        upper = name.strip().upper()
        if upper not in names:
            names.append(upper)
    if not names or all(name in SELECT_ONLY_FIELDS for name in names):
        names.insert(0, "*")
    elif "*" not in names and "ID" not in names:
        names.insert(0, "ID")
    return names
