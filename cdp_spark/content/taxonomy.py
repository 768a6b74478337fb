"""The topic taxonomy: a weighted, directed graph from topic co-occurrence on enriched pages.

For topics a and b (a != b), ``support_a`` counts the URLs tagged a, ``support_ab`` those tagged both, and the
edge a -> b weighs ``P(b | a) = support_ab / support_a``. The graph is directed: P(b | a) and P(a | b) differ
when a and b are not equally common. Pages without topics add nothing.

Example:
    >>> topic_taxonomy(lake.read("gold.content")).orderBy("topic_a", "topic_b").show()   # doctest: +SKIP
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def url_topics(content: DataFrame) -> DataFrame:
    """(url, topic, weight): ``gold.content``'s topics, one row per pair.

    Example:
        >>> url_topics(content).where("topic = 'running'").count()   # doctest: +SKIP
    """
    return (content.select("url", F.explode("topics").alias("t"))
            .select("url", F.col("t.topic").alias("topic"), F.col("t.weight").alias("weight")))


def topic_taxonomy(content: DataFrame) -> DataFrame:
    """(topic_a, topic_b, weight, support_ab, support_a) for every ordered pair of co-occurring topics."""
    pairs = url_topics(content).select("url", "topic").distinct()
    support = pairs.groupBy("topic").agg(F.count(F.lit(1)).alias("support_a"))
    a, b = pairs.alias("a"), pairs.alias("b")
    both = (a.join(b, F.col("a.url") == F.col("b.url"))
            .where(F.col("a.topic") != F.col("b.topic"))
            .groupBy(F.col("a.topic").alias("topic_a"), F.col("b.topic").alias("topic_b"))
            .agg(F.count(F.lit(1)).alias("support_ab")))
    return (both.join(support.withColumnRenamed("topic", "topic_a"), "topic_a")
            .select("topic_a", "topic_b", (F.col("support_ab") / F.col("support_a")).cast("double").alias("weight"),
                    F.col("support_ab").cast("long").alias("support_ab"),
                    F.col("support_a").cast("long").alias("support_a")))
