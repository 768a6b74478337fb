"""Compare two lakes table by table, through delta-rs (independently of Spark and of either lake backend).

Two runs over the same inputs must give the same tables except where a value records the run itself: wall-clock
times, run ids, hosts, the lake's own location. ``VOLATILE`` lists those columns per table; everything else (rows as
a multiset, schema with column metadata, partitioning) must be equal.

Example:
    >>> assert_lakes_equal("/tmp/lake-a", "/tmp/lake-b")   # doctest: +SKIP
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable

import pyarrow as pa
from deltalake import DeltaTable

from cdp_spark.lake import default_registry

# Columns that record when, where or as which run something happened, not what the data is.
VOLATILE: dict[str, set[str]] = {
    "ops.job_runs": {"run_id", "started_at", "ended_at", "heartbeat_at", "pid", "host", "metrics", "params"},
    "ops.leases": {"holder", "pid", "host", "acquired_at", "heartbeat_at", "expires_at", "released_at"},
    # A forwarded delivery's id names the ingest run whose events it carries.
    "ops.deliveries": {"run_id", "delivery_id", "location", "started_at", "ended_at"},
    "gold.forwarded_events": {"delivery_id", "delivered_at"},
    "bronze.events": {"received_at", "run_id", "ingest_file", "event_id"},
    "bronze.profile_records": {"received_at", "run_id", "ingest_file"},
    "bronze.quarantine": {"ingest_file", "run_id", "quarantined_at"},
    # HLL sketches keep insertion order in list mode: equal estimates, different bytes.
    "bronze.raw_keys": {"first_seen", "last_seen", "distinct_sketch"},
    "bronze.ingested_files": {"path", "modified_at", "run_id", "ingested_at"},
    "bronze.snapshot_state": {"run_id"},
    "silver.identity_runs": {"ingest_runs", "finished_at"},
    "silver.profile_runs": {"event_runs", "record_runs", "finished_at"},
    # A bronze row's key hashes its ingest file and run, which name the lake's place and the run.
    "gold.event_profiles": {"record_key"},
    "gold.profiles": {"updated_at"},
    "gold.activation_state": {"delivered_at"},
}


def _canonical(value: Any) -> Any:
    """A hashable, order-independent form of a cell (maps and structs as sorted items, doubles rounded)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # a map as (key, value) pairs
            return tuple(sorted((_canonical(k), _canonical(v)) for k, v in value))
        return tuple(_canonical(v) for v in value)
    if isinstance(value, float):
        # Partial sums are added in whatever order the partitions finish: equal to 12 significant digits.
        return "NaN" if value != value else float(f"{value:.12g}")
    return value


def table_snapshot(root: str, name: str, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """Schema, partitioning and rows (a multiset, ``ignore`` columns left out) of one table under ``root``."""
    spec = default_registry()[name]
    dt = DeltaTable(f"{root.rstrip('/')}/{spec.layer}/{spec.table}")
    schema = json.loads(dt.schema().to_json())
    skip = set(ignore)
    columns = [f["name"] for f in schema["fields"] if f["name"] not in skip]
    rows = pa.table(dt.to_pyarrow_table(columns=columns)).to_pylist() if columns else []
    return {
        "schema": schema,
        "partition_by": list(dt.metadata().partition_columns),
        "rows": Counter(tuple(_canonical(r[c]) for c in columns) for r in rows),
    }


def existing_tables(root: str) -> list[str]:
    """Registered tables that exist under ``root``."""
    names = []
    for spec in default_registry():
        if DeltaTable.is_deltatable(f"{root.rstrip('/')}/{spec.layer}/{spec.table}"):
            names.append(spec.name)
    return names


def lake_differences(a: str, b: str, volatile: dict[str, set[str]] | None = None) -> list[str]:
    """What differs between the lakes under roots ``a`` and ``b``, one line per difference (empty when equal)."""
    volatile = VOLATILE if volatile is None else volatile
    problems = []
    names_a, names_b = existing_tables(a), existing_tables(b)
    if names_a != names_b:
        problems.append(f"tables differ: only in a {sorted(set(names_a) - set(names_b))}, "
                        f"only in b {sorted(set(names_b) - set(names_a))}")
    for name in sorted(set(names_a) & set(names_b)):
        sa, sb = (table_snapshot(root, name, volatile.get(name, ())) for root in (a, b))
        if sa["schema"] != sb["schema"]:
            problems.append(f"{name}: schemas differ")
        if sa["partition_by"] != sb["partition_by"]:
            problems.append(f"{name}: partitioned by {sa['partition_by']} vs {sb['partition_by']}")
        if sa["rows"] != sb["rows"]:
            only_a, only_b = sa["rows"] - sb["rows"], sb["rows"] - sa["rows"]
            problems.append(f"{name}: {sum(only_a.values())} rows only in a, {sum(only_b.values())} only in b; "
                            f"e.g. a {next(iter(only_a), None)!r:.300} / b {next(iter(only_b), None)!r:.300}")
    return problems


def assert_lakes_equal(a: str, b: str, volatile: dict[str, set[str]] | None = None) -> None:
    problems = lake_differences(a, b, volatile)
    assert not problems, "\n".join(problems)
