"""Lineage for Airflow: OpenLineage facets of the operators, hook lineage, and the ``bitrix24`` asset URI.

* :func:`operator_lineage` builds the ``OperatorLineage`` that the operators' and the sensor's
  ``get_openlineage_facets_on_complete`` return: the Bitrix24 input (``bitrix24://<host>`` /
  ``crm.activity``, schema, rows read) and, for the export, the file written (schema, rows).
* :func:`report_hook_lineage` tells Airflow's hook-lineage collector which Bitrix24 dataset a hook
  call reads or writes, once per hook and dataset, so a ``PythonOperator`` using ``Bitrix24Hook``
  shows its input too.
* :func:`sanitize_uri`, :func:`create_asset` and :func:`convert_asset_to_openlineage` are the
  ``asset-uris`` entry of the provider for the ``bitrix24`` scheme (``get_provider_info``): they
  turn the hook's ``bitrix24://<host>/crm.activity`` assets into OpenLineage datasets.

OpenLineage is optional: everything that needs it is imported inside the functions that use it,
and only :func:`operator_lineage` / :func:`convert_asset_to_openlineage` need it (the OpenLineage
provider calls them, so it is installed then). Names come from :mod:`airflow_provider_b24.datasets`,
never from a connection's secrets. See ``docs/lineage.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from airflow_provider_b24.activities import coerce_select
from airflow_provider_b24.datasets import (
    SCHEME,
    DatasetName,
    FileWrite,
    Read,
    SchemaField,
    activity_fields,
    file_dataset,
    portal_dataset,
    rest_dataset,
    written_fields,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset

__all__ = [
    "convert_asset_to_openlineage",
    "create_asset",
    "operator_lineage",
    "read_by",
    "report_hook_lineage",
    "sanitize_uri",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ OpenLineage facets
def _schema_facet(fields: Sequence[SchemaField]) -> Any:
    from airflow.providers.common.compat.openlineage.facet import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    def convert(field: SchemaField) -> Any:
        kwargs: dict[str, Any] = {"name": field.name, "type": field.type}
        if field.fields:
            kwargs["fields"] = [convert(child) for child in field.fields]
        return SchemaDatasetFacetFields(**kwargs)

    return SchemaDatasetFacet(fields=[convert(field) for field in fields])


def input_dataset(read: Read) -> Any:
    """The OpenLineage ``InputDataset`` of a read: schema of the selected fields, rows read."""
    from airflow.providers.common.compat.openlineage.facet import InputDataset

    name = portal_dataset(read.portal)
    input_facets: dict[str, Any] = {}
    if read.rows is not None:
        from openlineage.client.facet_v2 import input_statistics_input_dataset

        input_facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            rowCount=read.rows
        )
    return InputDataset(
        namespace=name.namespace,
        name=name.name,
        facets={"schema": _schema_facet(activity_fields(read.select))},
        inputFacets=input_facets,
    )


def output_dataset(write: FileWrite) -> Any:
    """The OpenLineage ``OutputDataset`` of an export file: columns as written, rows written."""
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )

    name = file_dataset(write.path)
    return OutputDataset(
        namespace=name.namespace,
        name=name.name,
        facets={"schema": _schema_facet(written_fields(write.select, write.format))},
        outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=write.rows)},
    )


def operator_lineage(read: Read | None, write: FileWrite | None = None) -> OperatorLineage:
    """What a task read from Bitrix24 (and the file it wrote), as ``OperatorLineage``.

    Empty when the task read nothing (it failed before its first request, or had no IDs).
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=[input_dataset(read)] if read is not None else [],
        outputs=[output_dataset(write)] if write is not None else [],
    )


def read_by(hook: Any, select: Any, rows: int | None = None) -> Read | None:
    """A :class:`Read` of ``crm.activity`` through ``hook`` (whose connection the read loads anyway).

    ``None`` when the hook cannot say its portal (a bad connection fails the task elsewhere, with
    its own message): lineage never fails a task.
    """
    try:
        portal = str(hook.get_settings().portal.base_url)
        fields = tuple(coerce_select(select))
    except Exception as err:
        log.debug("no lineage for this read: %s", err)
        return None
    return Read(portal=portal, select=fields, rows=rows)


# ------------------------------------------------------------------ hook lineage
def report_hook_lineage(hook: Any, portal: str, method: str, reported: set[tuple[str, str]]) -> None:
    """Tell Airflow's hook-lineage collector that ``hook`` read (or wrote) the dataset of ``method``.

    Once per ``reported`` set (the hook's) and dataset: later calls cost one set lookup. Methods that
    touch no entity (``profile``, ``*.fields``...) are ignored. Never raises: lineage must not break
    a read.
    """
    found = rest_dataset(method)
    if found is None or found in reported:
        return
    reported.add(found)
    direction, entity = found
    try:
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

        collector = get_hook_lineage_collector()
        add = collector.add_input_asset if direction == "input" else collector.add_output_asset
        add(context=hook, uri=portal_dataset(portal, entity).uri)
    except Exception as err:  # an old common.compat, no task context...
        log.debug("hook lineage for %s not reported: %s", method, err)


# ------------------------------------------------------------------ the ``bitrix24`` asset URI scheme
def sanitize_uri(uri: SplitResult) -> SplitResult:
    """The ``bitrix24`` asset URI handler: ``bitrix24://<host>[:port]/<dataset>``, lower-case host.

    :raises ValueError: without a host or a dataset, or with user info (a URI never holds a secret).
    """
    if not uri.hostname:
        raise ValueError("a bitrix24:// asset URI needs the portal host: bitrix24://<host>/<dataset>")
    if uri.username or uri.password:
        raise ValueError("a bitrix24:// asset URI must not contain user info")
    dataset = uri.path.strip("/")
    if not dataset:
        raise ValueError("a bitrix24:// asset URI needs a dataset: bitrix24://<host>/crm.activity")
    namespace = portal_dataset(f"https://{uri.netloc}").namespace  # host and port only, lower case
    return SplitResult(SCHEME, namespace.split("://", 1)[1], f"/{dataset}", "", "")


def create_asset(*, portal: str, dataset: str = "crm.activity", extra: dict[str, Any] | None = None) -> Asset:
    """The asset factory of the ``bitrix24`` scheme: the ``dataset`` of a portal (URL or host)."""
    from airflow.sdk import Asset

    return Asset(uri=portal_dataset(portal, dataset).uri, extra=extra)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """A ``bitrix24://<host>/<dataset>`` asset as the OpenLineage dataset ``bitrix24://<host>`` / dataset."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = urlsplit(asset.uri)
    name = DatasetName(namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.strip("/"))
    return Dataset(namespace=name.namespace, name=name.name)
