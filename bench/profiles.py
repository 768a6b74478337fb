"""Benchmark: the profiles rebuild (unified profiles + the shipped calculated attributes) on demo-like data.

Synthetic bronze data shaped like the demo retailer (its event names, sources, orders with revenue, consent on web
events, a CRM record per customer, one customer id per person in gold.id_graph) is written to an embedded lake;
then the real `profiles` stage runs on it:

- **full rebuild**: the first run (every profile new) — time and events-scan rows/s;
- **incremental rebuild**: ~1% of people get a new event, the stage re-runs for the same as-of: only their
  profiles are rewritten (time, profiles changed);
- **one pass vs one scan per attribute** (the baseline, same process): the stage's single conditional
  aggregation of every event attribute vs a groupBy per attribute joined together.

The issue's scale is the default (1M people, 10M events); pass ``--people/--events`` for a loaded or small machine.
The Profile API load test is `bench/profile_api.py`.

Usage:
    python -m bench.profiles                                   # 1M people / 10M events
    python -m bench.profiles --people 20000 --events 200000    # reduced
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile

from bench.common import Timer, write_result

AS_OF = dt.date(2026, 11, 1)
NAMES = [("web", "page", 20), ("web", "product viewed", 30), ("web", "identify", 5), ("web", "product added", 4),
         ("web", "order completed", 2), ("app", "app_opened", 8), ("app", "product_viewed", 15), ("app", "login", 4),
         ("app", "add_to_cart", 3), ("orders", "order_completed", 9)]


def _synthetic(spark, lake, people: int, events: int, days: int = 120) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    from cdp_spark.identity.tables import ID_GRAPH
    from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS

    total = sum(w for *_, w in NAMES)
    h = lambda *c: F.abs(F.xxhash64(*c))  # noqa: E731 - deterministic pseudo-random numbers
    pick = h(F.lit("kind"), "id") % total
    name, source, acc = F.lit(None).cast("string"), F.lit(None).cast("string"), 0
    for src, n, w in NAMES:
        cond = (pick >= acc) & (pick < acc + w)
        name, source, acc = F.when(cond, n).otherwise(name), F.when(cond, src).otherwise(source), acc + w
    person = h(F.lit("who"), "id") % people
    secs = h(F.lit("when"), "id") % (days * 86400)
    end = int(dt.datetime.combine(AS_OF, dt.time(23, 59, 59), dt.timezone.utc).timestamp())
    t = F.timestamp_seconds(F.lit(end) - secs)
    is_order = F.col("event_name").isin("order_completed", "order completed")
    product = F.concat(F.lit("SKU-"), F.lpad((h(F.lit("sku"), "id") % 200).cast("string"), 5, "0"))
    consent = F.array(F.struct(F.lit("analytics").alias("purpose"), F.lit("web").alias("channel"),
                               F.lit("granted").alias("status"), F.col("event_time").alias("timestamp")))
    ev = (spark.range(events).withColumns({"event_name": name, "source": source, "event_time": t})
          .select(F.concat(F.lit("e"), F.col("id")).alias("event_id"), "source", F.col("source").alias("stream"),
                  "event_name", "event_time", F.to_date("event_time").alias("event_date"),
                  F.create_map(F.lit("customer_id"), F.concat(F.lit("C"), person.cast("string"))).alias("identifiers"),
                  F.lit(None).cast("string").alias("page_url"),
                  F.when(~is_order | (F.col("source") == "orders"), product).alias("product_id"),
                  F.concat(F.lit("cat"), (h(F.lit("cat"), "id") % 8).cast("string")).alias("category"),
                  F.when(is_order, F.concat(F.lit("o"), (F.col("id") / 2).cast("long").cast("string"))).alias("order_id"),
                  F.when(is_order, F.lit(19.5)).alias("price"),
                  F.when(is_order, 1 + h(F.lit("q"), "id") % 3).alias("quantity"), F.lit("EUR").alias("currency"),
                  F.when(is_order & (F.col("source") == "orders"), (h(F.lit("r"), "id") % 20000) / 100.0).alias("revenue"),
                  F.when(is_order & (F.col("source") == "orders"), (h(F.lit("r"), "id") % 20000) / 100.0)
                  .alias("revenue_reporting"),
                  F.lit(None).cast("string").alias("properties"),
                  F.when(F.col("source") == "web", consent).otherwise(F.array().cast(EVENTS.schema["consent"].dataType))
                  .alias("consent"),
                  F.array().cast("array<string>").alias("quality_issues"), F.col("event_time").alias("received_at"),
                  F.lit("bench").alias("run_id"), F.lit("bench").alias("ingest_file"), F.lit(None).cast("long").alias("ingest_line")))
    lake.append(EVENTS.name, ev.select(*[F.col(f.name).cast(f.dataType) for f in EVENTS.schema.fields]))
    ppl = spark.range(people).withColumn("cid", F.concat(F.lit("C"), F.col("id").cast("string")))
    rec = ppl.select(
        F.lit("crm").alias("source"), F.col("cid").alias("record_key"), F.lit("insert").alias("change_type"),
        F.create_map(F.lit("customer_id"), "cid").alias("identifiers"),
        F.create_map(F.lit("first_name"), F.concat(F.lit("N"), (F.col("id") % 500).cast("string")),
                     F.lit("country"), F.element_at(F.array(*[F.lit(c) for c in ("GB", "FR", "DE", "ES")]),
                                                    (F.col("id") % 4 + 1).cast("int")),
                     F.lit("signup_date"), F.date_sub(F.lit(AS_OF), (F.col("id") % 900).cast("int")).cast("string"))
        .alias("traits"),
        F.array(F.struct(F.lit("email_marketing").alias("purpose"), F.lit("email").alias("channel"),
                         F.when(F.col("id") % 3 == 0, "denied").otherwise("granted").alias("status"),
                         F.timestamp_seconds(F.lit(end - 86400 * 30)).alias("timestamp"))).alias("consent"),
        F.timestamp_seconds(F.lit(end - 86400 * 60)).alias("record_time"), F.array().cast("array<string>").alias("quality_issues"),
        F.timestamp_seconds(F.lit(end - 86400 * 60)).alias("received_at"), F.lit("bench").alias("run_id"),
        F.lit("bench").alias("ingest_file"), F.col("id").alias("ingest_line"))
    lake.append(PROFILE_RECORDS.name, rec.select(*[F.col(f.name).cast(f.dataType) for f in PROFILE_RECORDS.schema.fields]))
    graph = ppl.select(F.lit("customer_id").alias("id_type"), F.col("cid").alias("value"),
                       F.xxhash64(F.lit("customer_id"), "cid").alias("vertex_id"),
                       F.concat(F.lit("p_"), F.sha2("cid", 256).substr(1, 24)).alias("profile_id"),
                       F.lit(AS_OF).alias("profile_created_at"),
                       F.timestamp_seconds(F.lit(end - 86400)).alias("assigned_at"),
                       F.lit(None).cast("string").alias("split_reason"))
    lake.overwrite(ID_GRAPH.name, graph.select(*[F.col(f.name).cast(f.dataType) for f in ID_GRAPH.schema.fields]))


def _per_attribute_scans(events, config) -> int:  # type: ignore[no-untyped-def]
    """Baseline: one groupBy (one scan) per attribute, joined on profile_id."""
    from cdp_spark.profiles.attributes import aggregate

    out = None
    for name, a in config.attributes.attributes.items():
        if a.kind == "formula":
            continue
        one = events.groupBy("profile_id").agg(aggregate(name, a, AS_OF, config.attributes.properties))
        out = one if out is None else out.join(one, "profile_id", "full")
    return out.count()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--skip-baseline", action="store_true", help="skip the per-attribute-scan baseline")
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    from cdp_spark.config import load_config
    from cdp_spark.identity.lookup import profile_events
    from cdp_spark.ingest.tables import EVENTS
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.profiles import stage
    from cdp_spark.profiles.attributes import event_pass
    from cdp_spark.profiles.view import consent_purposes
    from cdp_spark.spark import build_session, embedded_conf

    root = tempfile.mkdtemp(prefix="bench-profiles-")
    spark = build_session("bench-profiles", embedded_conf(cores=args.cores), f"{root}/checkpoints")
    base = load_config(os.path.join(os.path.dirname(__file__), "..", "conf", "cdp.yaml"))
    config = base.model_copy(update={"lake": base.lake.model_copy(update={"root": f"{root}/lake"})})
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    n_attrs = len(config.attributes.attributes)
    with Timer() as t_data:
        _synthetic(spark, lake, args.people, args.events)

    with Timer() as t_full:
        full = stage.run(spark, config, lake, AS_OF)
    # ~1% of people act again on the as-of day: a new fingerprint, few changed profiles
    changed_people = max(1, args.people // 100)
    extra = (lake.read(EVENTS.name).where(F.col("event_name") == "page").limit(changed_people)
             .withColumn("event_id", F.concat(F.lit("x"), "event_id"))
             .withColumn("event_time", F.lit(dt.datetime(2026, 11, 1, 23, 0)).cast("timestamp"))
             .withColumn("event_date", F.lit(AS_OF)))
    lake.append(EVENTS.name, extra.localCheckpoint())
    with Timer() as t_incr:
        incr = stage.run(spark, config, lake, AS_OF)

    events = profile_events(spark, config, lake, AS_OF).localCheckpoint(eager=True)
    n_events = events.count()
    with Timer() as t_pass:
        event_pass(events, consent_purposes(config), config.attributes, AS_OF).count()
    result: dict = {
        "scale": {"people": args.people, "events": args.events, "cores": args.cores,
                  "issue_scale": args.people == 1_000_000 and args.events == 10_000_000},
        "attributes": n_attrs,
        "data_seconds": round(t_data.seconds, 1),
        "full_rebuild_seconds": round(t_full.seconds, 1),
        "full_rebuild_events_per_second": round(args.events / t_full.seconds),
        "full_metrics": full.metrics,
        "incremental_rebuild_seconds": round(t_incr.seconds, 1),
        "incremental_metrics": incr.metrics,
        "one_pass_seconds": round(t_pass.seconds, 2),
        "events_scan_rows_per_second": round(n_events / t_pass.seconds),
    }
    if not args.skip_baseline:
        with Timer() as t_base:
            _per_attribute_scans(events, config)
        result["per_attribute_scans_seconds"] = round(t_base.seconds, 2)
        result["one_pass_speedup"] = round(t_base.seconds / t_pass.seconds, 2)
    write_result("profiles", result, argv=sys.argv[1:] if argv is None else argv)
    spark.stop()


if __name__ == "__main__":
    main()
