"""Affinities: exponentially decayed engagement per profile and dimension value, and ALS product recommendations.

Decayed engagement (:func:`decayed_engagement`, :func:`affinities`)
-------------------------------------------------------------------
Each event of a weighted type (view 1, add-to-cart 3, purchase 5 by default) counts::

    w(type) * 2 ** (-age_days / half_life_days),   age_days = (end of as_of - event_time) in days

summed per (profile, dimension, value). Scores are normalised per profile and dimension: ``max`` divides by
the profile's top value (which then scores 1), ``sum`` gives shares summing to 1. The top N values are kept
(rank 1 = strongest; ties by value name) and banded Low < 0.3 <= Some <= 0.6 < High (Lytics' bands).

Product recommendations (:func:`fit_als`, :func:`recommend`, :func:`evaluate_als`)
----------------------------------------------------------------------------------
Spark ML ALS on implicit feedback (Hu, Koren & Volinsky 2008): the preference of a profile for a product is
the weighted count of its views, carts and purchases. ALS needs integer ids: :func:`index_ids` numbers the
distinct sorted ids by their position in sorted ranges (deterministic and distributed; a bare
``monotonically_increasing_id`` depends on partitioning and an unpartitioned window would move every row to one
partition).
``coldStartStrategy="drop"`` keeps unknown ids out of predictions. Quality is precision@K and NDCG@K of the
top-K list against the products each profile bought in the last ``eval_days`` (model fitted on the earlier
interactions), next to a most-popular baseline.

Example:
    >>> aff = affinities(typed_events, date(2026, 11, 1), ["category"])          # doctest: +SKIP
    >>> model, users, items = fit_als(interactions(typed_events, date(2026, 11, 1)))  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.components import materialise
from cdp_spark.ml.events import profile_bucket
from cdp_spark.ml.rfm import as_of_cutoff, purchases_as_of

DEFAULT_WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
DEFAULT_BANDS = {"some": 0.3, "high": 0.6}


# ------------------------------------------------------------------------------------------ decay math


def decay_factor(age_days: float, half_life_days: float) -> float:
    """The weight multiplier of an event ``age_days`` old (pure Python, for notebooks and checks).

    Example:
        >>> decay_factor(30.0, 30.0), decay_factor(0.0, 30.0)
        (0.5, 1.0)
    """
    return 2.0 ** (-age_days / half_life_days)


def band(score: float, bands: Mapping[str, float] = DEFAULT_BANDS) -> str:
    """Low / Some / High for a normalised score.

    Example:
        >>> band(0.29), band(0.3), band(0.6), band(0.61)
        ('Low', 'Some', 'Some', 'High')
    """
    if score < bands["some"]:
        return "Low"
    return "Some" if score <= bands["high"] else "High"


def _band_col(score: Column, bands: Mapping[str, float]) -> Column:
    return (F.when(score < F.lit(bands["some"]), "Low")
            .when(score <= F.lit(bands["high"]), "Some").otherwise("High"))


def dimension_column(dimension: str) -> Column:
    """An event column, or ``properties.<key>`` read from the JSON properties.

    Example:
        >>> dimension_column("properties.brand")   # doctest: +SKIP
    """
    if dimension.startswith("properties."):
        return F.get_json_object(F.col("properties"), "$." + dimension.split(".", 1)[1])
    return F.col(dimension)


def decayed_engagement(typed: DataFrame, as_of: date | datetime, dimension: str, *,
                       weights: Mapping[str, float] = DEFAULT_WEIGHTS, half_life_days: float = 30.0,
                       lookback_days: int | None = None) -> DataFrame:
    """(profile_id, dimension, value, engagement): the decayed weighted sum before normalisation.

    ``typed`` holds events with ``event_type`` (see :func:`cdp_spark.ml.events.typed_events`); events after
    ``as_of`` and of unweighted types are ignored, as are null or empty values.

    Example:
        >>> decayed_engagement(typed, date(2026, 11, 1), "category", half_life_days=14).show()   # doctest: +SKIP
    """
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    cutoff, _ = as_of_cutoff(as_of)
    events = purchases_as_of(typed, as_of)
    if lookback_days is not None:
        events = events.where(F.col("event_time") >= F.lit(cutoff - timedelta(days=lookback_days)))
    weight = F.lit(None).cast("double")
    for kind, w in weights.items():
        weight = F.when(F.col("event_type") == kind, F.lit(float(w))).otherwise(weight)
    age_days = (F.lit(cutoff.timestamp()) - F.unix_micros(F.col("event_time")) / F.lit(1e6)) / F.lit(86_400.0)
    value = dimension_column(dimension).cast("string")
    return (events.select("profile_id", value.alias("value"), (weight * F.pow(F.lit(2.0), -age_days
                                                                              / F.lit(float(half_life_days))))
                          .alias("w"))
            .where(F.col("w").isNotNull() & F.col("value").isNotNull() & (F.trim(F.col("value")) != ""))
            .groupBy("profile_id", "value").agg(F.sum("w").alias("engagement"))
            .select("profile_id", F.lit(dimension).alias("dimension"), "value", "engagement"))


def normalise_and_rank(engagement: DataFrame, *, normalise: str = "max", top_n: int = 5,
                       bands: Mapping[str, float] = DEFAULT_BANDS) -> DataFrame:
    """(profile_id, dimension, value, score, band, rank) from raw engagement, top ``top_n`` per profile.

    Example:
        >>> normalise_and_rank(decayed_engagement(typed, as_of, "category"), top_n=3)   # doctest: +SKIP
    """
    if normalise not in ("max", "sum"):
        raise ValueError("normalise must be 'max' or 'sum'")
    per_profile = Window.partitionBy("profile_id", "dimension")
    denominator = F.max("engagement").over(per_profile) if normalise == "max" else F.sum("engagement").over(per_profile)
    ranked = Window.partitionBy("profile_id", "dimension").orderBy(F.desc("engagement"), F.asc("value"))
    scored = (engagement.withColumn("score", F.col("engagement") / denominator)
              .withColumn("rank", F.row_number().over(ranked))
              .where(F.col("rank") <= top_n))
    return scored.select("profile_id", "dimension", "value", F.col("score").cast("double").alias("score"),
                         _band_col(F.col("score"), bands).alias("band"), F.col("rank").cast("int").alias("rank"))


def affinities(typed: DataFrame, as_of: date | datetime, dimensions: Sequence[str] = ("category",), *,
               weights: Mapping[str, float] = DEFAULT_WEIGHTS, half_life_days: float = 30.0,
               lookback_days: int | None = None, normalise: str = "max", top_n: int = 5,
               bands: Mapping[str, float] = DEFAULT_BANDS) -> DataFrame:
    """All configured dimensions' affinities: (profile_id, dimension, value, score, band, rank).

    Example:
        >>> affinities(typed, date(2026, 11, 1), ["category", "properties.brand"], half_life_days=14)  # doctest: +SKIP
    """
    parts = [decayed_engagement(typed, as_of, d, weights=weights, half_life_days=half_life_days,
                                lookback_days=lookback_days) for d in dimensions]
    engagement = parts[0]
    for part in parts[1:]:
        engagement = engagement.unionByName(part)
    return normalise_and_rank(engagement, normalise=normalise, top_n=top_n, bands=bands)


# ------------------------------------------------------------------------------------------------ ALS


def interactions(typed: DataFrame, as_of: date | datetime, *,
                 weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> DataFrame:
    """(profile_id, product_id, strength): weighted counts of views, carts and purchases up to ``as_of``.

    Example:
        >>> interactions(typed, date(2026, 11, 1)).orderBy(F.desc("strength")).show(3)   # doctest: +SKIP
    """
    weight = F.lit(None).cast("double")
    for kind, w in weights.items():
        weight = F.when(F.col("event_type") == kind, F.lit(float(w))).otherwise(weight)
    return (purchases_as_of(typed, as_of)
            .select("profile_id", F.col("product_id").cast("string").alias("product_id"), weight.alias("w"))
            .where(F.col("w").isNotNull() & F.col("product_id").isNotNull())
            .groupBy("profile_id", "product_id").agg(F.sum("w").alias("strength")))


def index_ids(df: DataFrame, column: str, index_column: str) -> DataFrame:
    """(column, index_column int): distinct values numbered 0.. in sorted order, deterministically.

    Example:
        >>> index_ids(interactions_df, "product_id", "item").orderBy("item").first()   # doctest: +SKIP
        Row(product_id='P0001', item=0)
    """
    # Sorted ranges, then each id's position = rows in earlier ranges + its position in its own range. All in the
    # JVM (zipWithIndex on the Python RDD pickled every id) and distributed (a global window would sort in one task).
    position = F.monotonically_increasing_id()  # (partition index << 33) + row number within the partition
    # The alias gives the checkpoint its own column identity, so the ids can be joined back to ``df``.
    ranged = materialise(df.select(F.col(column).alias(column)).where(F.col(column).isNotNull()).distinct()
                         .repartitionByRange(column).sortWithinPartitions(column)
                         .select(column, F.shiftright(position, 33).alias("_part"),
                                 position.bitwiseAND(F.lit((1 << 33) - 1)).alias("_row")))
    sizes = sorted((r["_part"], r["count"]) for r in ranged.groupBy("_part").count().collect())
    offsets, total = [], 0
    for part, size in sizes:
        offsets += [F.lit(part), F.lit(total)]
        total += size
    offset = F.create_map(*offsets)[F.col("_part")] if offsets else F.lit(0)
    return ranged.select(column, (offset + F.col("_row")).cast("int").alias(index_column))


@dataclass
class AlsFit:
    """A fitted ALS model with its id maps (profile_id <-> user, product_id <-> item)."""

    model: object
    users: DataFrame
    items: DataFrame


def fit_als(interactions_df: DataFrame, *, rank: int = 16, reg_param: float = 0.1, alpha: float = 10.0,
            max_iter: int = 10, seed: int = 7, blocks: int | None = None) -> AlsFit:
    """Fit implicit-feedback ALS on (profile_id, product_id, strength).

    ``blocks`` (user and item blocks) defaults to Spark's default parallelism rather than ALS's 10: every
    block gets its own copy of each factor it needs per iteration, so at 100k profiles on 2 cores 10 blocks
    took 1.5 times as long as 4 to fit, and recommending for all profiles 1.7 times as long.

    Example:
        >>> fit = fit_als(interactions(typed, date(2026, 11, 1)), rank=8)   # doctest: +SKIP
    """
    from pyspark.ml.recommendation import ALS

    users = index_ids(interactions_df, "profile_id", "user")   # already checkpointed: no cache on top
    items = index_ids(interactions_df, "product_id", "item")
    ratings = (interactions_df.join(F.broadcast(items), "product_id").join(users, "profile_id")
               .select("user", "item", F.col("strength").cast("float").alias("strength")))
    als = ALS(userCol="user", itemCol="item", ratingCol="strength", implicitPrefs=True, rank=rank,
              regParam=reg_param, alpha=alpha, maxIter=max_iter, seed=seed, coldStartStrategy="drop",
              nonnegative=False)
    n_blocks = blocks or interactions_df.sparkSession.sparkContext.defaultParallelism
    als.setNumUserBlocks(n_blocks).setNumItemBlocks(n_blocks)
    return AlsFit(als.fit(ratings), users, items)


def recommend(fit: AlsFit, k: int = 10, users: DataFrame | None = None) -> DataFrame:
    """Top-``k`` (profile_id, product_id, score, rank) per profile (all fitted profiles, or ``users``' ones).

    Example:
        >>> recommend(fit, k=5).where("rank = 1").show(3)   # doctest: +SKIP
    """
    model = fit.model
    if users is None:
        raw = model.recommendForAllUsers(k)
    else:
        subset = users.select("profile_id").distinct().join(fit.users, "profile_id").select("user")
        raw = model.recommendForUserSubset(subset, k)
    exploded = raw.select("user", F.posexplode("recommendations").alias("pos", "rec"))
    return (exploded.join(fit.users, "user").join(F.broadcast(fit.items), F.col("rec.item") == F.col("item"))
            .select("profile_id", "product_id", F.col("rec.rating").cast("double").alias("score"),
                    (F.col("pos") + 1).cast("int").alias("rank")))


def ranking_metrics(recommended: DataFrame, truth: DataFrame, k: int) -> dict[str, float]:
    """precision@k and NDCG@k (binary relevance) of top-k lists against sets of relevant products.

    ``recommended``: (profile_id, product_id, rank); ``truth``: (profile_id, product_id). Only profiles with
    at least one relevant product count; a profile with no recommendation scores 0.

    Example:
        >>> ranking_metrics(recs, bought_later, k=10)   # doctest: +SKIP
        {'precision_at_k': 0.061, 'ndcg_at_k': 0.124, 'users': 312}
    """
    relevant = truth.select("profile_id", "product_id").distinct()
    n_rel = relevant.groupBy("profile_id").agg(F.count(F.lit(1)).alias("n_rel"))
    hits = (recommended.where(F.col("rank") <= k).join(relevant, ["profile_id", "product_id"])
            .groupBy("profile_id")
            .agg(F.count(F.lit(1)).alias("hits"),
                 F.sum(F.lit(1.0) / F.log2(F.col("rank") + F.lit(1.0))).alias("dcg")))
    # Ideal DCG of min(n_rel, k) relevant products at the top.
    idcg_terms = F.aggregate(F.sequence(F.lit(1), F.least(F.col("n_rel"), F.lit(k))), F.lit(0.0),
                             lambda acc, i: acc + F.lit(1.0) / F.log2(i + F.lit(1.0)))
    per_user = (n_rel.join(hits, "profile_id", "left")
                .select(F.coalesce(F.col("hits"), F.lit(0)).alias("hits"),
                        (F.coalesce(F.col("dcg"), F.lit(0.0)) / idcg_terms).alias("ndcg")))
    row = per_user.agg(F.avg(F.col("hits") / F.lit(float(k))).alias("p"), F.avg("ndcg").alias("n"),
                       F.count(F.lit(1)).alias("users")).first()
    return {"precision_at_k": float(row["p"] or 0.0), "ndcg_at_k": float(row["n"] or 0.0), "users": int(row["users"])}


def popularity_baseline(train: DataFrame, profiles: DataFrame, k: int) -> DataFrame:
    """The ``k`` products with the highest total strength, recommended to every profile in ``profiles``."""
    top = (train.groupBy("product_id").agg(F.sum("strength").alias("s"))
           .orderBy(F.desc("s"), F.asc("product_id")).limit(k).collect())
    ranked = train.sparkSession.createDataFrame([(r["product_id"], i + 1) for i, r in enumerate(top)],
                                                "product_id string, rank int")
    return profiles.select("profile_id").distinct().crossJoin(F.broadcast(ranked))


def evaluate_als(typed: DataFrame, as_of: date, *, eval_days: int, k: int, weights: Mapping[str, float],
                 max_users: int | None = None, **als_params: object) -> dict[str, float]:
    """Time-split evaluation: fit on interactions up to ``as_of - eval_days``, score the purchases after.

    Returns precision@k and NDCG@k of ALS and of the most-popular baseline, on the profiles known at the
    split that bought something in the evaluation window. Above ``max_users`` profiles, the evaluation fits on a
    stable hash sample of about that many: it only estimates the quality, and the fit costs as much as the
    day's real one.

    Example:
        >>> evaluate_als(typed, date(2026, 11, 1), eval_days=7, k=10, weights=DEFAULT_WEIGHTS, rank=8)  # doctest: +SKIP
    """
    split = as_of - timedelta(days=eval_days)
    train = interactions(typed, split, weights=weights).cache()
    users = train.select("profile_id").distinct().count()
    if max_users is not None and users > max_users:
        buckets = 1 << 20
        sampled = profile_bucket("als-eval", buckets) < int(buckets * max_users / users)
        full, train = train, train.where(sampled).cache()
        train.count()
        full.unpersist()
    split_cutoff, _ = as_of_cutoff(split)
    later = (purchases_as_of(typed, as_of).where(F.col("event_time") >= F.lit(split_cutoff))
             .where((F.col("event_type") == "purchase") & F.col("product_id").isNotNull())
             .select("profile_id", F.col("product_id").cast("string").alias("product_id")))
    truth = later.join(train.select("profile_id").distinct(), "profile_id").distinct().cache()
    try:
        if train.limit(1).count() == 0 or truth.limit(1).count() == 0:
            return {"eval_users": 0}
        fit = fit_als(train, **als_params)  # type: ignore[arg-type]
        als_recs = recommend(fit, k, users=truth)
        als_m = ranking_metrics(als_recs, truth, k)
        pop_m = ranking_metrics(popularity_baseline(train, truth, k), truth, k)
    finally:
        train.unpersist()
        truth.unpersist()
    return {"precision_at_k": als_m["precision_at_k"], "ndcg_at_k": als_m["ndcg_at_k"],
            "baseline_precision_at_k": pop_m["precision_at_k"], "baseline_ndcg_at_k": pop_m["ndcg_at_k"],
            "eval_users": als_m["users"], "fit_users": fit.users.count(), "k": k}


def fill_from_products(typed: DataFrame, column: str = "category") -> DataFrame:
    """Fill a missing ``column`` (e.g. category) from the value most often seen with the same product_id.

    Order lines from a commerce backend often carry only the product id, while web and app views carry its
    category too; without the fill, purchases would not count towards category affinities.

    Example:
        >>> fill_from_products(typed, "category")   # doctest: +SKIP
    """
    if column not in typed.columns or "product_id" not in typed.columns:
        return typed
    known = (typed.where(F.col(column).isNotNull() & F.col("product_id").isNotNull())
             .groupBy("product_id", column).agg(F.count(F.lit(1)).alias("_n"))
             .groupBy("product_id")
             .agg(F.max_by(F.col(column), F.struct(F.col("_n"), F.col(column))).alias("_known")))
    # One row per product: broadcast, so the events are not shuffled to meet it.
    return (typed.join(F.broadcast(known), "product_id", "left")
            .withColumn(column, F.coalesce(F.col(column), F.col("_known"))).drop("_known"))
