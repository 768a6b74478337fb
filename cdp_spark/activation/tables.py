"""Tables written by the activation stage: what each destination holds, the delivery log, Delta exports."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.lake import Lake, Txn

_S, _L, _TS, _D = T.StringType(), T.LongType(), T.TimestampType(), T.DateType()

ACTIVATION_STATE = TableSpec(
    name="gold.activation_state",
    description="What each destination holds after its last acknowledged batches: one row per (destination, "
                "audience, profile), with the payload sent (needed to send removes). Partitioned by destination.",
    columns=[
        Column("destination", _S, "destination name (conf/destinations)"),
        Column("audience", _S, "audience name"),
        Column("profile_id", _S, "profile"),
        Column("record_hash", _S, "SHA-256 of the payload: a changed record is re-sent"),
        Column("payload", _S, "JSON of the record as sent (normalised/hashed identifiers)", pii="pii"),
        Column("delivery_id", _S, "delivery that sent it"),
        Column("delivered_at", _TS, "UTC time it was acknowledged"),
    ],
    keys=("destination", "audience", "profile_id"),
    partition_by=("destination",),
)

DELIVERIES = TableSpec(
    name="ops.deliveries",
    description="One row per delivery attempt to a destination: counts, outcome and where it went (no PII).",
    columns=[
        Column("destination", _S, "destination name"),
        Column("delivery_id", _S, "destination and a hash of the items sent"),
        Column("run_id", _S, "activation run id"),
        Column("as_of", _D, "as-of date"),
        Column("transport", _S, "file, webhook or delta"),
        Column("format", _S, "record format"),
        Column("mode", _S, "snapshot or changes"),
        Column("status", _S, "succeeded, failed, skipped (sandbox) or empty (nothing to send)"),
        Column("profiles_considered", _L, "audience members linked to the destination"),
        Column("skipped_consent", _L, "members lacking a required consent (or Google DMA consent in the EEA)"),
        Column("skipped_no_identifier", _L, "members without a usable identifier"),
        Column("skipped_filtered", _L, "events a connection output's data filter left out (0 for audiences)"),
        Column("skipped_sampled", _L, "events whose user is not in a connection output's sample (0 for audiences)"),
        Column("adds", _L, "add records planned"),
        Column("removes", _L, "remove records planned"),
        Column("records_sent", _L, "records acknowledged by the destination"),
        Column("batches", _L, "batches (or files) acknowledged"),
        Column("retries", _L, "retried requests"),
        Column("failures", _L, "failed batches"),
        Column("location", _S, "export folder or Delta table (never a webhook URL)"),
        Column("error", _S, "error type and message (no PII, no secrets)"),
        Column("started_at", _TS, "UTC"),
        Column("ended_at", _TS, "UTC"),
    ],
)

ACTIVATION_RECORDS = TableSpec(
    name="gold.activation_records",
    description="Records delivered to Delta-table destinations, for downstream consumers.",
    columns=[
        Column("destination", _S, "destination name"),
        Column("delivery_id", _S, "delivery"),
        Column("audience", _S, "audience name"),
        Column("profile_id", _S, "profile"),
        Column("action", _S, "add or remove"),
        Column("payload", _S, "JSON record in the destination's format", pii="pii"),
        Column("delivered_at", _TS, "UTC"),
    ],
    partition_by=("destination",),
)

TABLES = [ACTIVATION_STATE, DELIVERIES, ACTIVATION_RECORDS]


def log_deliveries(spark: "SparkSession", lake: "Lake", rows: list[tuple[Any, ...]], *, txn: "Txn | None" = None) -> None:
    """Append rows (tuples in DELIVERIES' column order) to ops.deliveries. A ledger written before a column was
    declared gains it (nullable: its old rows have no value).

    Example:
        >>> log_deliveries(spark, lake, [row], txn=Txn("forward.web_events.tool.collect.web.1a2b", 7))  # doctest: +SKIP
    """
    if rows:
        lake.append(DELIVERIES.name, spark.createDataFrame(rows, DELIVERIES.schema), txn=txn, evolve=True)
