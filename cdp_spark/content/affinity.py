"""User topic affinities from page views, and content recommendations from them and the topic taxonomy.

Affinities reuse the scores stage's decay, normalisation and bands (:mod:`cdp_spark.ml.affinity`): each page
view's decayed weight ``2 ** (-age_days / half_life_days)`` is summed per (profile, URL) by
:func:`~cdp_spark.ml.affinity.decayed_engagement`, spread over the URL's topics by their weights, summed per
(profile, topic), then normalised, ranked and banded by :func:`~cdp_spark.ml.affinity.normalise_and_rank`.

Recommendations: a profile's interest in topic t is its affinity score for t plus, for each of its affinity topics
a, ``score(a) x P(t | a) x taxonomy_weight``. A URL scores the sum over its topics of interest x topic weight; URLs
the profile has viewed are left out, and the ``top_n`` strongest are kept (ties by URL).

Example:
    >>> views = page_views(events, ["page"])                                                   # doctest: +SKIP
    >>> aff = topic_affinities(views, content, date(2026, 11, 1), TopicAffinitySettings())     # doctest: +SKIP
    >>> recs = content_recommendations(aff, taxonomy, content, viewed_urls(events), top_n=5)   # doctest: +SKIP
"""
from __future__ import annotations

from datetime import date
from typing import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.content.config import TopicAffinitySettings
from cdp_spark.content.pages import url_column
from cdp_spark.content.taxonomy import url_topics
from cdp_spark.ml import affinity as aff

DIMENSION = "topic"   # gold.topic_affinities rows are affinities of this dimension to audiences


def page_views(events: DataFrame, view_events: Sequence[str]) -> DataFrame:
    """(profile_id, event_time, event_type='view', url): the page views among ``events`` (with a page_url).

    Example:
        >>> page_views(profile_events, ["page", "Page Viewed"]).show(3)   # doctest: +SKIP
    """
    return (events.where(F.col("event_name").isin(list(view_events)) & F.col("page_url").isNotNull()
                         & F.col("profile_id").isNotNull())
            .select("profile_id", "event_time", F.lit("view").alias("event_type"), url_column("page_url").alias("url")))


def viewed_urls(events: DataFrame) -> DataFrame:
    """(profile_id, url): every URL a profile has an event on, whatever the event (seen content is not
    recommended)."""
    return (events.where(F.col("page_url").isNotNull() & F.col("profile_id").isNotNull())
            .select("profile_id", url_column("page_url").alias("url")).distinct())


def topic_affinities(views: DataFrame, content: DataFrame, as_of: date, settings: TopicAffinitySettings) -> DataFrame:
    """(profile_id, topic, score, band, rank): the top ``settings.top_n`` topics per profile."""
    engagement = aff.decayed_engagement(views, as_of, "url", weights={"view": 1.0},
                                        half_life_days=settings.half_life_days, lookback_days=settings.lookback_days)
    per_topic = (engagement.join(F.broadcast(url_topics(content)), engagement["value"] == F.col("url"))
                 .groupBy("profile_id", "topic").agg(F.sum(F.col("engagement") * F.col("weight")).alias("engagement"))
                 .where(F.col("engagement") > 0)
                 .select("profile_id", F.lit(DIMENSION).alias("dimension"), F.col("topic").alias("value"),
                         "engagement"))
    ranked = aff.normalise_and_rank(per_topic, normalise=settings.normalise, top_n=settings.top_n,
                                    bands=settings.bands)
    return ranked.select("profile_id", F.col("value").alias("topic"), "score", "band", "rank")


def as_affinities(topic_affinities: DataFrame) -> DataFrame:
    """``gold.topic_affinities`` in ``gold.affinities``' shape, dimension ``topic``: audiences read both alike
    (``affinity: {dimension: topic, value: running, band: High}``).

    Example:
        >>> as_affinities(lake.read("gold.topic_affinities")).columns   # doctest: +SKIP
        ['profile_id', 'as_of', 'dimension', 'value', 'score', 'band', 'rank']
    """
    return topic_affinities.select("profile_id", "as_of", F.lit(DIMENSION).alias("dimension"),
                                   F.col("topic").alias("value"), "score", "band", "rank")


def content_recommendations(affinities: DataFrame, taxonomy: DataFrame, content: DataFrame, viewed: DataFrame, *,
                            top_n: int = 10, taxonomy_weight: float = 0.5) -> DataFrame:
    """(profile_id, url, score, rank): unseen URLs per profile, strongest first."""
    direct = affinities.select("profile_id", "topic", F.col("score").alias("interest"))
    related = (affinities.join(F.broadcast(taxonomy), affinities["topic"] == taxonomy["topic_a"])
               .select("profile_id", F.col("topic_b").alias("topic"),
                       (F.col("score") * F.col("weight") * F.lit(float(taxonomy_weight))).alias("interest")))
    interest = direct.unionByName(related).groupBy("profile_id", "topic").agg(F.sum("interest").alias("interest"))
    scored = (interest.join(F.broadcast(url_topics(content)), "topic")
              .groupBy("profile_id", "url").agg(F.sum(F.col("interest") * F.col("weight")).alias("score"))
              .where(F.col("score") > 0)
              .join(viewed, ["profile_id", "url"], "left_anti"))
    ranked = Window.partitionBy("profile_id").orderBy(F.desc("score"), F.asc("url"))
    return (scored.withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= top_n)
            .select("profile_id", "url", F.col("score").cast("double").alias("score"),
                    F.col("rank").cast("int").alias("rank")))
