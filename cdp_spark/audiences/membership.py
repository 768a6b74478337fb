"""Membership bookkeeping: from the previous members and this run's members to members, changes and sizes.

Profile merges and splits need no special case: a merged-away profile id is not in the current profiles (and is
excluded explicitly from identity's history), so it exits; the survivor enters only if it qualifies itself.

Example:
    >>> members, changes = diff_members(previous, current, run_id="audiences-20261101-ab", at=t)   # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def diff_members(previous: DataFrame, current: DataFrame, *, run_id: str, at: dt.datetime) -> tuple[DataFrame, DataFrame]:
    """(members, changes): members keep their first ``entered_at``; changes list entries and exits.

    ``previous``: audience, profile_id, variant, entered_at; ``current``: audience, profile_id, variant.
    """
    p = previous.select("audience", "profile_id", F.col("entered_at").alias("_entered"), F.lit(True).alias("_was"))
    c = current.select("audience", "profile_id", "variant", F.lit(True).alias("_is"))
    both = p.join(c, ["audience", "profile_id"], "full_outer")
    at_lit = F.lit(at).cast("timestamp")
    members = both.where(F.col("_is")).select(
        "audience", "profile_id", "variant", F.coalesce("_entered", at_lit).alias("entered_at"))
    changes = both.where(F.col("_is").isNull() | F.col("_was").isNull()).select(
        "audience", "profile_id", F.when(F.col("_is"), F.lit("entered")).otherwise(F.lit("exited")).alias("change"),
        F.lit(run_id).alias("run_id"), at_lit.alias("at"))
    return members, changes


def sizes(names: list[str], previous: DataFrame, members: DataFrame, changes: DataFrame, as_of: dt.date) -> DataFrame:
    """One row per audience (also empty ones): size, entered, exited and volatility for ``as_of``."""
    spark = members.sparkSession
    base = spark.createDataFrame([(n,) for n in names], "audience string")
    now = members.groupBy("audience").agg(F.count("*").alias("size"))
    before = previous.groupBy("audience").agg(F.count("*").alias("_before"))
    moves = changes.groupBy("audience").agg(F.count(F.when(F.col("change") == "entered", 1)).alias("entered"),
                                            F.count(F.when(F.col("change") == "exited", 1)).alias("exited"))
    out = base.join(now, "audience", "left").join(before, "audience", "left").join(moves, "audience", "left")
    zero = F.lit(0).cast("long")
    return out.select(
        "audience", F.lit(as_of).alias("as_of"), F.coalesce(F.col("size").cast("long"), zero).alias("size"),
        F.coalesce(F.col("entered").cast("long"), zero).alias("entered"),
        F.coalesce(F.col("exited").cast("long"), zero).alias("exited"),
        ((F.coalesce("entered", zero) + F.coalesce("exited", zero))
         / F.greatest(F.coalesce("_before", zero), F.lit(1))).cast("double").alias("volatility"))
