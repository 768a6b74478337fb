"""Tables written by the content stage. ``gold.content`` grows as pages are enriched (one row per URL); the other
three hold the latest run only (overwritten per as-of; the ``as_of`` column says which run)."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _I, _L, _D, _DT = T.StringType(), T.IntegerType(), T.LongType(), T.DoubleType(), T.DateType()
TOPIC_WEIGHTS = T.ArrayType(T.StructType([T.StructField("topic", _S), T.StructField("weight", _D)]))

CONTENT = TableSpec(
    name="gold.content",
    description="Enriched pages: one row per URL with its topics (from Open Graph article tags, the topics meta "
                "tag and TF-IDF over the topic vocabulary), weights summing to 1. A page is enriched once, again "
                "only when its content changes; at most content.monthly_cap URLs per calendar month.",
    columns=[
        Column("url", _S, "normalised URL (lower-case scheme and host, no query, fragment or trailing slash)"),
        Column("title", _S, "page title"),
        Column("description", _S, "meta description"),
        Column("topics", TOPIC_WEIGHTS, "(topic, weight) pairs, strongest first; weights sum to 1 (empty: none "
                                        "found or all denied)"),
        Column("content_hash", _S, "digest of the title, description, tags and text the topics came from"),
        Column("source_file", _S, "the landed file, relative to content.path"),
        Column("enriched_at", _DT, "as-of date of the run that enriched the page"),
        Column("month", _S, "YYYY-MM of enriched_at: the month whose cap the page counts against"),
    ],
    keys=("url",),
)

TOPIC_TAXONOMY = TableSpec(
    name="gold.topic_taxonomy",
    description="A weighted, directed topic graph from co-occurrence on enriched pages: weight = P(b | a), the "
                "share of URLs with topic a that also have topic b.",
    columns=[
        Column("topic_a", _S, "the topic the edge starts from"),
        Column("topic_b", _S, "the related topic"),
        Column("weight", _D, "P(b | a) = support_ab / support_a"),
        Column("support_ab", _L, "URLs with both topics"),
        Column("support_a", _L, "URLs with topic a"),
        Column("as_of", _DT, "as-of date of the content run"),
    ],
    keys=("topic_a", "topic_b"),
)

TOPIC_AFFINITIES = TableSpec(
    name="gold.topic_affinities",
    description="Top topics per profile from decayed page views of enriched URLs, each view weighted by the "
                "page's topic weights, normalised per profile and banded like gold.affinities.",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _DT, "as-of date of the content run"),
        Column("topic", _S, "topic name"),
        Column("score", _D, "normalised decayed engagement, 0-1"),
        Column("band", _S, "Low (< 0.3), Some (0.3-0.6) or High (> 0.6) with the default bands"),
        Column("rank", _I, "1 = the profile's strongest topic"),
    ],
    keys=("profile_id", "topic"),
)

CONTENT_RECOMMENDATIONS = TableSpec(
    name="gold.content_recommendations",
    description="Top-N enriched URLs per profile that it has not viewed, scored by its topic affinities "
                "expanded through the topic taxonomy.",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _DT, "as-of date of the content run"),
        Column("url", _S, "recommended URL (gold.content)"),
        Column("score", _D, "sum over topics of interest x the page's topic weight (higher is stronger)"),
        Column("rank", _I, "1 = the strongest recommendation"),
    ],
    keys=("profile_id", "url"),
)

TABLES = [CONTENT, TOPIC_TAXONOMY, TOPIC_AFFINITIES, CONTENT_RECOMMENDATIONS]
