"""`generate`: the deterministic demo retailer, from the hidden world to landing files and the ground truth.

Layout under ``out_dir``::

    landing/web/day=YYYY-MM-DD/events-00000.json     Segment-like NDJSON
    landing/app/day=YYYY-MM-DD/events-00000.json     app NDJSON (device id, IDFA/GAID)
    landing/crm/customers_YYYYMMDD.csv               CRM snapshot export
    landing/orders/day=YYYY-MM-DD/orders-00000.csv   one row per order line
    landing/content/journal/*.html                   the journal's articles (cdp_spark.demo.site), and a help
    landing/content/account/help.html                page under a path the content stage blocks
    reference/products.csv, reference/fx_rates.csv
    truth/identities/   (id_type, value, person_id)  hidden ground truth, never in landing/
    truth/people/       per-person behaviour parameters (purchase rate, dropout, preferences)
    truth/expected_quarantine.json                   deliberately broken records per source

``truth/`` may live elsewhere (``truth_dir``): `cdp demo` writes it beside the lake root, since it is not CDP data
and erasure's verification, which scans the lake root, would always find the erased person in it.

Example:
    >>> summary = generate(spark, "/tmp/demo", people=200, days=10, seed=42, end_date=date(2026, 11, 1))  # doctest: +SKIP
    >>> summary.counts["web_events"] > 0                                                                  # doctest: +SKIP
    True
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.demo import render, site, writer
from cdp_spark.demo.model import CATEGORIES, WorldSpec, build_world


@dataclass(frozen=True)
class DemoSummary:
    """Where the demo data went and how many rows each output holds.

    ``expected_quarantine`` counts, per source, the records deliberately broken so that ingestion must
    quarantine them (everything else is meant to be accepted, possibly with warnings).
    """

    out_dir: str
    landing_dir: str
    truth_dir: str
    start_date: dt.date
    end_date: dt.date
    counts: dict[str, int]
    expected_quarantine: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    people: int = 0
    days: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (dates as ISO text).

        Example:
            >>> DemoSummary("o", "o/landing", "o/truth", dt.date(2026, 1, 1), dt.date(2026, 1, 2), {"x": 1}).to_dict()["start_date"]
            '2026-01-01'
        """
        out = asdict(self)
        out["start_date"] = self.start_date.isoformat()
        out["end_date"] = self.end_date.isoformat()
        return out


def _stats(df: DataFrame) -> tuple[int, int]:
    row = df.agg(F.count("*").alias("n"), F.sum(F.col("_broken").cast("int")).alias("bad")).collect()[0]
    return int(row["n"]), int(row["bad"] or 0)


def generate(spark: SparkSession, out_dir: str, *, people: int, days: int, seed: int, end_date: dt.date,
             truth_dir: str | None = None, activity: float = 1.0) -> DemoSummary:
    """Generate the demo retailer's source files under ``out_dir`` and the hidden truth under ``truth_dir``
    (default ``<out_dir>/truth``; `cdp demo` keeps it outside the lake root), replacing earlier output.
    ``activity`` scales everyone's visit and purchase rates (benchmarks: many people, few events each).

    Same arguments, same bytes: every value is a hash of (seed, keys) and files are sorted and named stably.

    Example:
        >>> generate(spark, "/tmp/demo", people=300, days=10, seed=1, end_date=date(2026, 11, 1)).counts  # doctest: +SKIP
    """
    if people < 2 or days < 1:
        raise ValueError(f"the demo needs people >= 2 and days >= 1, got people={people}, days={days}")
    spec = WorldSpec(people=people, days=days, seed=seed, end_date=end_date, activity=activity)
    out = writer.absolute(out_dir).rstrip("/")
    truth = writer.absolute(truth_dir).rstrip("/") if truth_dir else f"{out}/truth"
    return _write_world(spark, spec, out, f"{out}/landing", truth)


def _write_world(spark: SparkSession, spec: WorldSpec, out: str, landing: str, truth: str) -> DemoSummary:
    """Write the world's landing files under ``landing`` and its truth under ``truth``, replacing earlier output."""
    end_date = spec.end_date
    reference, staging = f"{out}/reference", f"{out}/_staging"
    for folder in (landing, truth, reference, staging):
        writer.remove(spark, folder)  # a re-generation replaces the old files; stale days would linger otherwise

    world = build_world(spark, spec)
    frames = {
        "web": render.web_events(world.events, spec),
        "app": render.app_events(world.events, spec),
        "orders": render.orders(world.order_lines, spec),
        "crm": render.crm(world.people, spec),
    }
    cached = {name: df.persist(StorageLevel.MEMORY_AND_DISK) for name, df in frames.items()}
    try:
        stats = {name: _stats(df) for name, df in cached.items()}
        order = ["_epoch", "_id", "_copy"]
        writer.write_text_by_day(spark, cached["web"], f"{landing}/web", staging, "events", "json", order)
        writer.write_text_by_day(spark, cached["app"], f"{landing}/app", staging, "events", "json", order)
        writer.write_csv_by_day(spark, cached["orders"], render.ORDER_COLUMNS, f"{landing}/orders", staging, "orders",
                                ["order_time", "_id", "line_no"])
        writer.write_csv(spark, cached["crm"], render.CRM_COLUMNS, f"{landing}/crm/customers_{end_date:%Y%m%d}.csv",
                         staging, ["_id"])
        products = world.products
        writer.write_csv(spark, products, products.columns, f"{reference}/products.csv", staging, ["product_id"])
        for relative, text in sorted(site.site_files().items()):
            _write_text(spark, f"{landing}/content/{relative}", text)
        writer.write_csv(spark, render.fx_rates(spark), ["currency", "rate_to_eur"], f"{reference}/fx_rates.csv",
                         staging, ["currency"])
        identities = render.truth_identities(cached["web"], cached["app"], cached["orders"], cached["crm"])
        identities = identities.persist(StorageLevel.MEMORY_AND_DISK)
        n_truth = identities.count()
        writer.write_parquet(spark, identities, f"{truth}/identities", staging, ["id_type", "value", "person_id"])
        identities.unpersist()
        writer.write_parquet(spark, _people_truth(world.people), f"{truth}/people", staging, ["person_id"])
        expected = {name: bad for name, (_, bad) in stats.items()}
        _write_text(spark, f"{truth}/expected_quarantine.json", json.dumps(expected, sort_keys=True) + "\n")
    finally:
        for df in cached.values():
            df.unpersist()
        world.sessions.unpersist()
        writer.remove(spark, staging)
    counts = {"web_events": stats["web"][0], "app_events": stats["app"][0], "order_lines": stats["orders"][0],
              "crm_records": stats["crm"][0], "products": products.count(), "fx_rates": len(render.FX_TO_EUR),
              "truth_identities": n_truth}
    return DemoSummary(out_dir=out, landing_dir=landing, truth_dir=truth, start_date=spec.start_date,
                       end_date=end_date, counts=counts, expected_quarantine=expected, seed=spec.seed,
                       people=spec.people, days=spec.days)


DAILY_SOURCES = ("web", "app", "orders")  # landing folders with one day= folder per delivery day


def landed_end(spark: SparkSession, out_dir: str, end_date: dt.date) -> dt.date:
    """The last delivery day in the demo's landing folders (``end_date`` for a world not grown yet).

    Example:
        >>> landed_end(spark, "/tmp/demo", date(2026, 11, 1))    # doctest: +SKIP
        datetime.date(2026, 11, 3)
    """
    landing = writer.absolute(out_dir).rstrip("/") + "/landing"
    days = [dt.date.fromisoformat(name.partition("=")[2]) for source in DAILY_SOURCES
            for name in writer.list_folders(spark, f"{landing}/{source}") if name.startswith("day=")]
    return max([end_date, *days])


@dataclass(frozen=True)
class Growth:
    """The next days of a demo world, generated and staged: `land` moves one day's files into the landing folders."""

    staged: str
    landing: str
    days: list[dt.date]
    summary: DemoSummary

    def land(self, spark: SparkSession, day: dt.date) -> list[str]:
        """Move ``day``'s delivery folders into landing; returns the sources that had files that day."""
        return [source for source in DAILY_SOURCES
                if writer.move_folder(spark, f"{self.staged}/landing/{source}/day={day.isoformat()}",
                                      f"{self.landing}/{source}/day={day.isoformat()}")]

    def close(self, spark: SparkSession) -> None:
        """Remove what was staged and not landed."""
        writer.remove(spark, self.staged)


def grow(spark: SparkSession, out_dir: str, *, people: int, days: int, seed: int, end_date: dt.date, next_days: int,
         truth_dir: str | None = None, activity: float = 1.0) -> Growth:
    """Generate the next ``next_days`` days of the world that `generate` made with the same arguments, after the
    last day already landed. The people and every earlier day's behaviour are the same world's; only the delivery
    folders of the new days are staged (they also hold events of earlier days that arrive late, and retries of
    events delivered before, which ingestion counts as duplicates). Files already landed are never touched; the
    truth is replaced by the grown world's.

    Example:
        >>> growth = grow(spark, "/tmp/demo", people=200, days=10, seed=42, end_date=date(2026, 11, 1), next_days=2)  # doctest: +SKIP
        >>> for day in growth.days: growth.land(spark, day)                                                         # doctest: +SKIP
    """
    if next_days < 1:
        raise ValueError(f"next_days must be at least 1, got {next_days}")
    out = writer.absolute(out_dir).rstrip("/")
    landed = landed_end(spark, out, end_date)
    new_end = landed + dt.timedelta(days=next_days)
    spec = WorldSpec(people=people, days=days + (new_end - end_date).days, seed=seed, end_date=new_end,
                     people_end=end_date, people_days=days, activity=activity)
    staged = f"{out}/_grown"
    writer.remove(spark, staged)
    truth = writer.absolute(truth_dir).rstrip("/") if truth_dir else f"{out}/truth"
    summary = _write_world(spark, spec, staged, f"{staged}/landing", truth)
    new_days = [landed + dt.timedelta(days=i + 1) for i in range(next_days)]
    return Growth(staged=staged, landing=f"{out}/landing", days=new_days, summary=summary)


def _people_truth(people: DataFrame) -> DataFrame:
    """Per-person parameters of the behaviour model, for checking the CLV and propensity models."""
    cats = F.array(*[F.lit(c) for c in CATEGORIES])
    return people.select(
        "person_id", "is_customer", "customer_id", "country", "visit_rate", "buy_rate", "dropout",
        "lifetime_purchases", "shared_devices",
        F.element_at(cats, F.col("fav_cat") + 1).alias("favourite_category"),
        F.element_at(cats, F.col("second_cat") + 1).alias("second_category"),
    )


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    p = jvm.org.apache.hadoop.fs.Path(path)
    fs = p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    stream = fs.create(p, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    writer.drop_checksum(fs, jvm, p)
