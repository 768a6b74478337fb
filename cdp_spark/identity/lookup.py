"""Attach profile ids to records: the bridge from bronze data to everything keyed by profile.

Every downstream stage (profiles, scores, audiences, erasure) needs "which profile does this event belong to".
A record carries several identifiers; they normally resolve to one profile, but a limit split or a hub can put
them in different profiles. The rule, used everywhere so that stages agree: a record belongs to the profile of its
**highest-priority identifier that resolves** in ``gold.id_graph`` (ties between types of equal priority: by type
name). Records with no resolvable identifier (all blocked, e.g. an opted-out IDFA alone) belong to no profile and
are left out.

Example:
    >>> events = profile_events(spark, config, lake, date(2026, 11, 1))          # doctest: +SKIP
    >>> events.select("profile_id", "event_name", "event_time").show(3)         # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.assign import in_as_of, priority_rank, record_key
from cdp_spark.identity.components import materialise
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.graph import end_of_day
from cdp_spark.identity.tables import EVENT_PROFILES
from cdp_spark.ingest.routes import diverted_streams, without_diverted

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake


def attach_profile_ids(records: DataFrame, id_graph: DataFrame, cfg: IdentityConfig, key: Sequence[str]) -> DataFrame:
    """Add ``profile_id`` to each record (one output row per distinct ``key``), dropping unresolvable records.

    ``records`` needs an ``identifiers`` map (id type -> value); ``id_graph`` needs id_type, value, profile_id.
    Rows sharing a key are duplicates (e.g. a re-delivered event): one of them is kept.

    Example:
        >>> attach_profile_ids(events, lake.read("gold.id_graph"), config.identity, ["event_id"])  # doctest: +SKIP
    """
    key = list(key)
    graph = id_graph.select("id_type", "value", "profile_id")
    candidates = (records.select("*", F.explode("identifiers").alias("_id_type", "_value"))
                  .withColumn("_rank", priority_rank(cfg)[F.col("_id_type")])
                  .where(F.col("_rank").isNotNull() & F.col("_value").isNotNull()))
    matched = candidates.join(graph.withColumnRenamed("id_type", "_id_type").withColumnRenamed("value", "_value"),
                              ["_id_type", "_value"])
    best = Window.partitionBy(*key).orderBy("_rank", "_id_type", "profile_id")
    return (matched.withColumn("_n", F.row_number().over(best)).where("_n = 1")
            .drop("_n", "_rank", "_id_type", "_value"))


def profile_events(spark: "SparkSession", config: "CdpConfig", lake: "Lake", as_of: dt.date, *,
                   since: dt.date | None = None, stage: str | None = None,
                   profiles: DataFrame | None = None) -> DataFrame:
    """``bronze.events`` that happened up to the end of ``as_of`` (and from ``since``), one row per event_id,
    with ``profile_id``. Empty (with the right columns) before identity has run. Events of diverted streams (QA,
    test traffic) are left out, unless ``stage`` is one their route rule's `include_in` lists. ``profiles`` (a
    ``profile_id`` column) keeps the events of those profiles only, reading only the days they have events on.

    The profile comes from ``gold.event_profiles``, which identity writes once for every stage (a join on the event
    row instead of resolving every identifier again); a lake without it is resolved through ``gold.id_graph``.

    Example:
        >>> profile_events(spark, config, lake, date(2026, 11, 1), since=date(2026, 10, 1)).count()  # doctest: +SKIP
    """
    events = in_as_of(lake.read("bronze.events"), as_of)
    if since is not None:
        events = events.where(F.col("event_date") >= F.lit(since))
    events = without_diverted(events, diverted_streams(getattr(config, "routes", None) or [], stage))
    if not lake.exists(EVENT_PROFILES.name):
        attached = attach_profile_ids(events, _graph(spark, lake), config.identity, ["event_id"])
        return attached if profiles is None else attached.join(profiles.select("profile_id"), "profile_id", "left_semi")
    assigned = in_dates(lake.read(EVENT_PROFILES.name), as_of, since).where(
        F.col("kept") & F.col("profile_id").isNotNull()).select(
        "event_date", "event_id", F.col("record_key").alias("_record"), "profile_id")
    if profiles is not None:
        assigned = materialise(assigned.join(profiles.select("profile_id"), "profile_id", "left_semi"))
        days = [r[0] for r in assigned.select("event_date").distinct().collect()]
        events = events.where(F.col("event_date").isin(days))
    return (events.withColumn("_record", record_key()).join(assigned, ["event_date", "event_id", "_record"])
            .drop("_record"))


def in_dates(df: DataFrame, as_of: dt.date, since: dt.date | None) -> DataFrame:
    """Rows whose ``event_date`` is up to ``as_of`` (and from ``since``)."""
    df = df.where(F.col("event_date") <= F.lit(as_of))
    return df.where(F.col("event_date") >= F.lit(since)) if since is not None else df


def profile_records(spark: "SparkSession", config: "CdpConfig", lake: "Lake", as_of: dt.date, *,
                    stage: str | None = None) -> DataFrame:
    """``bronze.profile_records`` (CRM-like traits) with a record time up to the end of ``as_of``, with profile_id.

    Delete records (a snapshot source dropped the row) are kept, so that callers can honour them. Records of
    diverted streams are left out as in `profile_events`.
    """
    records = without_diverted(lake.read("bronze.profile_records"),
                               diverted_streams(getattr(config, "routes", None) or [], stage))
    seen = F.coalesce("record_time", "received_at")
    records = records.where(seen < end_of_day(as_of)).withColumn(
        "_record", F.xxhash64("source", "record_key", "run_id", "ingest_file", "ingest_line", "change_type"))
    return attach_profile_ids(records, _graph(spark, lake), config.identity, ["_record"]).drop("_record")


def _graph(spark: "SparkSession", lake: "Lake") -> DataFrame:
    if lake.exists("gold.id_graph"):
        return lake.read("gold.id_graph")
    return spark.createDataFrame([], "id_type string, value string, profile_id string")
