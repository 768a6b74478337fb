"""Benchmark: evaluate 1 audience, then 50 varied audiences, over the same events and profiles; and the activation
throughput of the file and webhook transports on loopback.

The issue's scale is 10M events / 1M profiles (the defaults). The target: 50 audiences take at most 3x one
audience, because all event conditions share one aggregation pass over the events.

Three single audiences are timed, because events are partitioned by day (a condition's window prunes the scan)
and the scan keeps only the event names some condition reads:
- ``cart_abandoners`` (7-day windows, 2 event names) reads about 2% of the events;
- ``viewed_not_bought`` (90 and 30 days, 2 of the 8 names) reads the same days as the 50 audiences but a quarter of
  their rows;
- ``engaged_not_bought`` (90 and 30 days, all 8 names) reads exactly the rows the 50 audiences read.
The target's ratio is taken against the third: it then measures what 49 further audiences add to the same scan,
which is the claim (one shared pass, not one per audience). The ratios against the other two are reported too;
they mostly measure the larger scan.

Usage:
    python -m bench.audiences --events 10000000 --profiles 1000000
    python -m bench.audiences --events 500000 --profiles 50000 --records 20000     # a loaded 2-core machine
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import Timer, write_result

AS_OF = dt.date(2026, 11, 1)
NAMES = ["product viewed", "product added", "order completed", "page viewed", "login", "search", "wishlist added",
         "newsletter signed up"]
CATS = ["electronics", "books", "home", "fashion", "beauty", "sports", "toys", "garden"]


def synth(spark, out: Path, events: int, profiles: int):  # type: ignore[no-untyped-def]
    """Events (90 days before the as-of) and profiles of the view's shape, written as Parquet and read back."""
    from pyspark.sql import functions as F

    end = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time())
    ev = spark.range(events).select(
        F.concat(F.lit("p"), (F.xxhash64("id") % profiles).cast("string")).alias("profile_id"),
        F.concat(F.lit("e"), F.col("id")).alias("event_id"),
        F.element_at(F.array(*[F.lit(n) for n in NAMES]), (F.pmod(F.xxhash64("id", F.lit(1)), F.lit(len(NAMES))) + 1).cast("int")).alias("event_name"),
        (F.lit(end) - F.make_interval(secs=F.pmod(F.xxhash64("id", F.lit(2)), F.lit(90 * 86400)).cast("int"))).alias("event_time"),
        F.element_at(F.array(*[F.lit(c) for c in CATS]), (F.pmod(F.xxhash64("id", F.lit(3)), F.lit(len(CATS))) + 1).cast("int")).alias("category"),
        (F.pmod(F.xxhash64("id", F.lit(4)), F.lit(20000)) / 100.0).alias("price"),
        F.to_json(F.struct((F.pmod(F.xxhash64("id", F.lit(5)), F.lit(10))).alias("score"),
                           F.when(F.col("id") % 3 == 0, F.lit("SAVE10")).alias("coupon"))).alias("properties"),
    ).withColumn("event_date", F.to_date("event_time"))
    ev.write.mode("overwrite").partitionBy("event_date").parquet(str(out / "events"))
    pr = spark.range(profiles).select(
        F.concat(F.lit("p"), F.col("id").cast("string")).alias("profile_id"),
        F.create_map(F.lit("email"), F.array(F.concat(F.lit("user"), F.col("id"), F.lit("@example.com")))).alias("identifiers"),
        F.struct(F.lit("Ann").alias("first_name"),
                 F.element_at(F.array(*[F.lit(c) for c in ["GB", "FR", "DE", "US"]]), (F.col("id") % 4 + 1).cast("int")).alias("country")).alias("traits"),
        F.struct((F.col("id") % 9).cast("long").alias("orders"), F.element_at(F.array(*[F.lit(c) for c in CATS]), (F.col("id") % 8 + 1).cast("int")).alias("favourite_category")).alias("attributes"),
        F.create_map(F.lit("email_marketing"), F.when(F.col("id") % 3 == 0, "denied").otherwise("granted")).alias("consent"),
        F.struct((F.pmod(F.xxhash64("id"), F.lit(100))).cast("double").alias("clv_percentile"),
                 (F.pmod(F.xxhash64("id", F.lit(9)), F.lit(100)) / 100.0).alias("p_alive"),
                 F.when(F.col("id") % 5 == 0, "At Risk").otherwise("Champions").alias("rfm_segment")).alias("scores"),
    )
    pr.write.mode("overwrite").parquet(str(out / "profiles"))
    return spark.read.parquet(str(out / "events")), spark.read.parquet(str(out / "profiles"))


def one_audience():
    return [{"name": "cart_abandoners", "rule": {"all": [
        {"event": {"name": "product added", "within": {"days": 7}}},
        {"not": {"event": {"name": "order completed", "within": {"days": 7}}}}]}}]


def same_window_audience():
    """One audience whose widest window (90 days) equals the widest in `varied_audiences`: the same scan."""
    return [{"name": "viewed_not_bought", "rule": {"all": [
        {"event": {"name": "product viewed", "within": {"days": 90}}},
        {"not": {"event": {"name": "order completed", "within": {"days": 30}}}}]}}]


def same_scan_audience():
    """One audience reading every event name `varied_audiences` reads, over their widest window: the same rows."""
    return [{"name": "engaged_not_bought", "rule": {"all": [
        {"event": {"name": NAMES, "within": {"days": 90}}},
        {"not": {"event": {"name": "order completed", "within": {"days": 30}}}}]}}]


def varied_audiences(n: int, seed: int = 7) -> list[dict]:
    """``n`` audiences mixing event conditions (names, windows, filters, aggregates), traits, attributes, scores,
    consent and references."""
    rnd = random.Random(seed)
    out = one_audience()
    for i in range(1, n):
        parts = []
        for _ in range(rnd.randint(1, 3)):
            kind = rnd.choice(["event", "event", "event", "trait", "attribute", "score", "consent"])
            if kind == "event":
                cond = {"name": rnd.sample(NAMES, rnd.randint(1, 2)), "within": {"days": rnd.choice([1, 7, 14, 30, 60, 90])}}
                if rnd.random() < 0.5:
                    cond["where"] = [rnd.choice([{"field": "category", "op": "=", "value": rnd.choice(CATS)},
                                                 {"field": "price", "op": ">", "value": rnd.randint(10, 150)},
                                                 {"field": "properties.coupon", "op": "exists"},
                                                 {"field": "properties.score", "op": ">=", "value": rnd.randint(1, 9)}])]
                if rnd.random() < 0.4:
                    cond["aggregate"] = rnd.choice([{"fn": "count", "op": ">=", "value": rnd.randint(2, 5)},
                                                    {"fn": "sum", "property": "price", "op": ">", "value": rnd.randint(50, 500)}])
                part = {"event": cond}
            elif kind == "trait":
                part = {"trait": {"field": "country", "op": "in", "value": rnd.sample(["GB", "FR", "DE", "US"], 2)}}
            elif kind == "attribute":
                part = {"attribute": {"field": "orders", "op": ">=", "value": rnd.randint(1, 8)}}
            elif kind == "score":
                part = {"score": {"field": "clv_percentile", "op": ">=", "value": rnd.randint(50, 95)}}
            else:
                part = {"consent": {"purpose": "email_marketing", "status": "granted"}}
            parts.append({"not": part} if rnd.random() < 0.15 else part)
        if i > 5 and rnd.random() < 0.2:
            parts.append({"audience": f"a{rnd.randint(1, i - 1):02d}"})
        out.append({"name": f"a{i:02d}", "rule": {rnd.choice(["all", "any"]): parts}})
    return out


def evaluate_seconds(spark, specs, profiles, events) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    from cdp_spark.audiences import compiler as C
    from cdp_spark.audiences.config import Audience

    plan = C.compile_audiences([Audience.model_validate(s) for s in specs], AS_OF)
    members = C.evaluate(plan, profiles, events)
    with Timer() as t:  # every membership row is produced (as the stage does before writing), then discarded
        members.write.format("noop").mode("overwrite").save()
    n = sum(r["count"] for r in members.groupBy("audience").count().collect())  # outside the timing
    return t.seconds, n, len(plan.event_conditions)


def activation_throughput(records: int, tmp: Path) -> dict[str, object]:
    from cdp_spark.activation.config import Destination
    from cdp_spark.activation.receiver import WebhookReceiver
    from cdp_spark.activation.records import Member
    from cdp_spark.activation.stage import deliver
    from cdp_spark.activation.transports import WebhookSender

    members = [Member("a", f"p{i}", "all", {"email": [f"User.{i}@gmail.com"], "phone": [f"+4477009{i % 100000:05d}"]},
                      {"first_name": "Ann", "last_name": "Lee", "country": "GB"}, {"ads_personalisation": "granted"})
               for i in range(records)]
    out: dict[str, object] = {}
    d = Destination.model_validate({"name": "bench_file", "format": "google_customer_match", "audiences": ["a"],
                                    "identifiers": ["email", "phone", "first_name", "last_name", "country"],
                                    "transport": {"type": "file"}})
    with Timer() as t:
        r = deliver(d, members, {}, as_of=AS_OF, export_root=str(tmp / "exports"))
    out["file"] = {"records": r.records_sent, "seconds": round(t.seconds, 2), "records_per_second": round(r.records_sent / t.seconds)}
    with WebhookReceiver() as rec:
        w = Destination.model_validate({"name": "bench_hook", "format": "google_customer_match", "audiences": ["a"],
                                        "identifiers": ["email", "phone", "first_name", "last_name", "country"],
                                        "transport": {"type": "webhook", "url": rec.url, "batch_size": 1000}})
        sender = WebhookSender(w.transport, w.name)
        with Timer() as t:
            r = deliver(w, members, {}, as_of=AS_OF, export_root=str(tmp), sender=sender)
        sender.close()
    out["webhook"] = {"records": r.records_sent, "batches": r.batches, "seconds": round(t.seconds, 2),
                      "records_per_second": round(r.records_sent / t.seconds), "batch_size": 1000,
                      "received": len(rec.records())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--audiences", type=int, default=50)
    parser.add_argument("--records", type=int, default=100_000, help="members for the activation throughput")
    parser.add_argument("--cores", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from cdp_spark.spark import build_session, embedded_conf

    tmp = Path(tempfile.mkdtemp(prefix="bench-audiences-"))
    try:
        cores = args.cores or os.cpu_count() or 2
        spark = build_session("bench-audiences", embedded_conf(cores=cores, shuffle_partitions=2 * cores), str(tmp / "ckpt"))
        events, profiles = synth(spark, tmp, args.events, args.profiles)
        evaluate_seconds(spark, one_audience(), profiles, events)  # warm-up: JIT, file listing
        t1, n1, c1 = evaluate_seconds(spark, one_audience(), profiles, events)
        tw, nw, cw = evaluate_seconds(spark, same_window_audience(), profiles, events)
        ts, ns, cs = evaluate_seconds(spark, same_scan_audience(), profiles, events)
        specs = varied_audiences(args.audiences)
        t50, n50, c50 = evaluate_seconds(spark, specs, profiles, events)
        ratio = t50 / ts
        activation = activation_throughput(args.records, tmp)
        write_result("audiences", {
            "scale": {"events": args.events, "profiles": args.profiles, "audiences": args.audiences,
                      "activation_records": args.records, "issue_scale": "10M events / 1M profiles"},
            "one_audience_7_days": {"seconds": round(t1, 2), "members": n1, "event_conditions": c1},
            "one_audience_same_window": {"seconds": round(tw, 2), "members": nw, "event_conditions": cw},
            "one_audience_same_scan": {"seconds": round(ts, 2), "members": ns, "event_conditions": cs},
            "many_audiences": {"seconds": round(t50, 2), "members": n50, "event_conditions": c50},
            "ratio": round(ratio, 2), "ratio_vs_same_window_audience": round(t50 / tw, 2),
            "ratio_vs_7_day_audience": round(t50 / t1, 2),
            "target_ratio": 3.0, "meets_target": ratio <= 3.0,
            "activation": activation,
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
