"""Table specs and data used by the lake tests."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import types as T

from cdp_spark.lake import Column, TableRegistry, TableSpec

EVENTS = TableSpec(
    name="test.events",
    description="events for lake tests",
    columns=[
        Column("event_id", T.StringType(), "key"),
        Column("email", T.StringType(), "an identifier", pii="pii"),
        Column("amount", T.DoubleType(), "a number"),
        Column("event_time", T.TimestampType(), "when"),
        Column("event_date", T.DateType(), "partition"),
    ],
    keys=("event_id",),
    partition_by=("event_date",),
    change_data_feed=True,
)
PROFILES = TableSpec(
    name="test.profiles",
    description="unpartitioned keyed table",
    columns=[
        Column("profile_id", T.StringType(), "key"),
        Column("name", T.StringType(), "trait", pii="pii"),
        Column("score", T.LongType(), "a number"),
    ],
    keys=("profile_id",),
    change_data_feed=True,
)
REGISTRY = TableRegistry([EVENTS, PROFILES])


def event_rows(n: int, day: dt.date, prefix: str = "e") -> list[tuple]:
    base = dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)
    return [
        (f"{prefix}{i}", f"user{i % 7}@example.com", float(i) * 1.5, base + dt.timedelta(seconds=i), day)
        for i in range(n)
    ]


def events_df(spark, n: int, day: dt.date, prefix: str = "e"):
    return spark.createDataFrame(event_rows(n, day, prefix), EVENTS.schema)
