"""Small Delta writes and reads without Spark, for long-running services (the API) that must not start a JVM.

Rows go through delta-rs straight into the registered table (created from its TableSpec when missing), typed by
the table's own schema.

Example:
    >>> append_rows(lake, "ops.api_audit", [{"at": now, "status": 200, ...}])   # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

APPEND_ATTEMPTS = 10


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(pa.field(t.value_field.name, _plain(t.value_type), True))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type), True) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_plain(t.key_type), _plain(t.item_type))
    return t


def arrow_schema(lake: "Lake", name: str) -> pa.Schema:
    """The table's schema as plain Arrow types (all nullable, as Spark writes them)."""
    schema = pa.schema(lake.delta_table(name).schema().to_arrow())
    return pa.schema([pa.field(f.name, _plain(f.type), True) for f in schema])


def append_rows(lake: "Lake", name: str, rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` (dicts by column name; missing columns are null) in one Delta commit."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    if not rows:
        return
    lake.create_if_missing(name)
    schema = arrow_schema(lake, name)
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    spec = lake.spec(name)
    for attempt in range(APPEND_ATTEMPTS):
        try:
            write_deltalake(lake.path(name), table, mode="append", partition_by=list(spec.partition_by) or None,
                            storage_options=lake.storage_options)
            return
        except CommitFailedError:  # a concurrent blind append won: ours is still valid, retry
            if attempt == APPEND_ATTEMPTS - 1:
                raise


def read_rows(lake: "Lake", name: str, filters: list[tuple[str, str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows of a (small) table, optionally filtered (pyarrow filter tuples), as dicts; [] when it does not exist."""
    if not lake.exists(name):
        return []
    dataset = lake.delta_table(name).to_pyarrow_dataset()
    expr = None
    if filters:
        import pyarrow.compute as pc

        for col, op, value in filters:
            term = {"=": pc.field(col) == value, "in": pc.field(col).isin(value)}[op]
            expr = term if expr is None else expr & term
    return dataset.to_table(filter=expr).to_pylist()
