"""The `content` stage: enrich newly landed pages with topics (within the monthly cap), then rebuild the topic
taxonomy, user topic affinities and content recommendations.

1. Pages are read from ``content.path`` (one Spark job for the folder, parsed on the driver: a catalogue is
   thousands of pages, not millions). Pages under a blocked path are left out. A page is *due* when its URL is not
   in ``gold.content`` or its content changed; due pages are taken in URL order up to what is left of
   ``content.monthly_cap`` for the as-of's calendar month, and the rest wait for the next month: the stage then
   reports ``cap_reached`` with the counts in the ledger and logs a warning (counts only, no URL).
2. Topics come from :class:`~cdp_spark.content.topics.TopicExtractor`, with TF-IDF fitted on every landed page
   that is not blocked; the enriched pages are merged into ``gold.content`` under a token of their URLs and
   content, so a re-run merges nothing twice.
3. ``gold.topic_taxonomy``, ``gold.topic_affinities`` and ``gold.content_recommendations`` are overwritten from
   gold.content and the page views (``bronze.events`` with profile ids), under one token per (inputs, settings,
   as-of): re-running the same as-of on the same inputs changes nothing.

Example:
    >>> run(spark, config, lake, date(2026, 11, 1)).metrics["enrichment"]["enriched"]   # doctest: +SKIP
    32
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.content import STAGE
from cdp_spark.content import affinity as ca
from cdp_spark.content.config import ContentConfig
from cdp_spark.content.pages import Page, is_blocked, landed_files, parse_files
from cdp_spark.content.tables import CONTENT, CONTENT_RECOMMENDATIONS, TOPIC_AFFINITIES, TOPIC_TAXONOMY
from cdp_spark.content.taxonomy import topic_taxonomy
from cdp_spark.content.topics import TopicExtractor
from cdp_spark.identity.components import materialise
from cdp_spark.lake import Txn
from cdp_spark.pipeline import StageResult, read_versions, stage_token

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake
    from cdp_spark.lake.registry import TableSpec

log = logging.getLogger(__name__)


def settings(config: "CdpConfig") -> ContentConfig:
    """The content settings of a config (defaults when the domain file is absent)."""
    return getattr(config, "content", None) or ContentConfig()


def content_folder(config: "CdpConfig") -> str | None:
    """``content.path`` with {demo_dir} and {lake_root} filled in (None when not configured)."""
    from cdp_spark.ingest.stage import template_paths

    path = settings(config).path
    return path.format(**template_paths(config)) if path else None


def month_of(as_of: dt.date) -> str:
    """The cap's month of an as-of date.

    Example:
        >>> month_of(dt.date(2026, 11, 30))
        '2026-11'
    """
    return as_of.strftime("%Y-%m")


def plan_enrichment(pages: list[Page], enriched: dict[str, tuple[str, str]], cfg: ContentConfig,
                    as_of: dt.date) -> tuple[list[Page], dict[str, Any]]:
    """(pages to enrich now, counts): unblocked pages that are new or changed, in URL order, within the cap.

    ``enriched`` is gold.content's url -> (content_hash, month).

    Example:
        >>> plan_enrichment([], {}, ContentConfig(), dt.date(2026, 11, 1))[1]["cap_reached"]
        False
    """
    month = month_of(as_of)
    allowed = [p for p in pages if not is_blocked(p.url, cfg.blocked_paths)]
    due = sorted((p for p in allowed if enriched.get(p.url, ("", ""))[0] != p.content_hash), key=lambda p: p.url)
    used = sum(1 for _, m in enriched.values() if m == month)
    room = max(cfg.monthly_cap - used, 0)
    take, wait = due[:room], due[room:]
    counts = {"pages": len(pages), "blocked": len(pages) - len(allowed), "unchanged": len(allowed) - len(due),
              "due": len(due), "enriched": len(take), "deferred": len(wait), "month": month,
              "monthly_cap": cfg.monthly_cap, "enriched_this_month": used + len(take), "cap_reached": bool(wait)}
    return take, counts


def content_rows(pages: list[Page], extractor: TopicExtractor, as_of: dt.date) -> list[tuple[Any, ...]]:
    """gold.content rows for ``pages`` (in CONTENT's column order)."""
    scores = extractor.text_scores([p.document for p in pages])
    rows = []
    for page, text in zip(pages, scores):
        topics = extractor.combine(extractor.metadata_topics(page.tags), text)
        rows.append((page.url, page.title, page.description, [(t, float(w)) for t, w in topics], page.content_hash,
                     page.source_file, as_of, month_of(as_of)))
    return rows


def enrich(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> dict[str, Any]:
    """Step 1-2: enrich the due pages into gold.content; returns the counts for the ledger."""
    cfg = settings(config)
    folder = content_folder(config)
    landed = parse_files(landed_files(spark, folder), cfg.base_url) if folder else parse_files([])
    enriched: dict[str, tuple[str, str]] = {}
    if lake.exists(CONTENT.name):
        enriched = {r.url: (r.content_hash, r.month)
                    for r in lake.read(CONTENT.name).select("url", "content_hash", "month").collect()}
    take, counts = plan_enrichment(landed.pages, enriched, cfg, as_of)
    counts.update(files=landed.files, invalid=landed.invalid, duplicates=landed.duplicates)
    if counts["cap_reached"]:
        log.warning("content: monthly cap of %d URLs reached for %s; %d due URLs wait for next month",
                    cfg.monthly_cap, counts["month"], counts["deferred"])
    if landed.invalid:
        log.warning("content: %d landed files or catalogue lines without a readable page were skipped",
                    landed.invalid)
    lake.create_if_missing(CONTENT.name)
    if take:
        corpus = [p.document for p in landed.pages if not is_blocked(p.url, cfg.blocked_paths)]
        rows = content_rows(take, TopicExtractor(cfg, corpus), as_of)
        digest = hashlib.sha256(json.dumps(sorted((p.url, p.content_hash) for p in take)).encode()).hexdigest()[:16]
        lake.merge(CONTENT.name, spark.createDataFrame(rows, CONTENT.schema),
                   txn=Txn(f"content.enrich.{digest}", int(as_of.strftime("%Y%m%d"))))
    return counts


def compute(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> dict[str, DataFrame]:
    """Step 3 without writes: the taxonomy, topic affinities and recommendations for ``as_of`` as DataFrames."""
    from cdp_spark.identity.lookup import profile_events

    cfg = settings(config)
    content = materialise(lake.read(CONTENT.name).select("url", "topics"))
    taxonomy = materialise(topic_taxonomy(content))
    if lake.exists("bronze.events") and lake.exists("gold.id_graph"):
        events = materialise(profile_events(spark, config, lake, as_of, stage="content")
                             .select("profile_id", "event_name", "event_time", "page_url")
                             .where(F.col("page_url").isNotNull()))
        affinities = materialise(ca.topic_affinities(ca.page_views(events, cfg.affinity.events), content, as_of,
                                                     cfg.affinity))
        recs = (ca.content_recommendations(affinities, taxonomy, content, ca.viewed_urls(events),
                                           top_n=cfg.recommendations.top_n,
                                           taxonomy_weight=cfg.recommendations.taxonomy_weight)
                if cfg.recommendations.enabled else None)
    else:
        affinities, recs = None, None
    return {spec.name: _stamped(spark, df, spec, as_of)
            for spec, df in ((TOPIC_TAXONOMY, taxonomy), (TOPIC_AFFINITIES, affinities),
                             (CONTENT_RECOMMENDATIONS, recs))}


def _stamped(spark: SparkSession, df: DataFrame | None, spec: "TableSpec", as_of: dt.date) -> DataFrame:
    """``df`` in ``spec``'s column order with the run's as-of; empty when its part was not computed."""
    if df is None:
        return spark.createDataFrame([], spec.schema)
    return df.select(*[F.lit(as_of).alias(c) if c == "as_of" else F.col(c) for c in spec.schema.names])


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Enrich due pages and rebuild the derived tables for ``as_of``; a re-run on the same inputs changes nothing."""
    cfg = settings(config)
    if not cfg.enabled or not cfg.path:
        return StageResult(metrics={"skipped": "content is disabled or content.path is not set"})
    result = StageResult(metrics={"enrichment": enrich(spark, config, lake, as_of)})
    counts = result.metrics["enrichment"]
    result.rows_in = {"content.pages": counts["pages"]}
    result.rows_out[CONTENT.name] = counts["enriched"]
    # gold.content is read as well as written: the derived tables follow the pages enriched just above.
    txn = stage_token(STAGE, config, lake, as_of, versions=read_versions(lake, STAGE.reads))
    if lake.committed(CONTENT_RECOMMENDATIONS.name, txn):
        result.metrics["derived"] = "already committed"
        return result
    for table, df in compute(spark, config, lake, as_of).items():
        df = materialise(df)
        written = lake.overwrite(table, df, txn=txn)
        result.rows_out[table] = 0 if written.skipped else df.count()
    return result
