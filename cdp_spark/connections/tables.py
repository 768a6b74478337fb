"""Tables written by connections: the events a Delta-table output received. Deliveries themselves are logged in
activation's delivery ledger, ``ops.deliveries`` (destination ``<connection>.<output>``, format ``events``)."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _TS = T.StringType(), T.TimestampType()

FORWARDED_EVENTS = TableSpec(
    name="gold.forwarded_events",
    description="Events forwarded to Delta-table outputs of connections, as each output's filter, sampling, "
                "consent gate and transformation shaped them. Partitioned by connection.",
    columns=[
        Column("connection", _S, "connection name (conf/connections)"),
        Column("output", _S, "output name within the connection"),
        Column("delivery_id", _S, "delivery that wrote the row (one per input batch and part)"),
        Column("event_id", _S, "the event's id in bronze.events"),
        Column("profile_id", _S, "the event's profile, when identity had resolved one"),
        Column("event_time", _TS, "event time, UTC"),
        Column("payload", _S, "JSON of the forwarded event", pii="pii"),
        Column("delivered_at", _TS, "UTC"),
    ],
    partition_by=("connection",),
)

TABLES = [FORWARDED_EVENTS]
