"""Benchmark: the full ingest chain vs a bare `spark.read` -> Parquet write of the same landing files.

Data: the demo generator's web (NDJSON) and orders (CSV) landing files when `cdp_spark.demo` is installed;
otherwise a built-in Segment-like generator writing the same layout (the JSON says which). The issue asks for
10M events (the default of `--events`); the JSON records the real size.

The bench also times the least any ingestion with provenance must do: the ingest's own reader (exact line
numbers, raw text, the UTF-8 check, JSON parsing) -> Parquet, with no mapping, checks or bronze tables
(`parse_floor_*`). It runs after the ingest, on the warmer JVM, so it is if anything under-stated.

Usage:
    python -m bench.ingest --events 10000000
    python -m bench.ingest --events 500000 --data /tmp/bench-demo   # reduced scale, files kept for reruns
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import Timer, write_result


def synth(spark, out: Path, events: int, days: int = 7) -> str:  # type: ignore[no-untyped-def]
    """Segment-like web NDJSON (60%) and orders CSV (40%) under out/landing/{web,orders}/day=.../."""
    from pyspark.sql import functions as F

    web_n, orders_n = int(events * 0.6), events - int(events * 0.6)
    base = F.lit(dt.datetime(2026, 10, 25)).cast("timestamp")
    web = spark.range(web_n).select(
        F.lit("track").alias("type"), F.element_at(F.array(*[F.lit(x) for x in ["Product Viewed", "Page Viewed", "Product Added"]]),
                                                   (F.col("id") % 3 + 1).cast("int")).alias("event"),
        F.concat(F.lit("m"), F.col("id")).alias("messageId"), F.concat(F.lit("a"), F.col("id") % 50000).alias("anonymousId"),
        F.when(F.col("id") % 3 == 0, F.concat(F.lit("c"), F.col("id") % 20000)).alias("userId"),
        F.date_format(base + F.make_interval(secs=(F.col("id") * 7919) % (days * 86400)), "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("timestamp"),
        F.struct(F.struct(F.concat(F.lit("https://shop.example/p/"), F.col("id") % 500).alias("url")).alias("page")).alias("context"),
        F.struct(F.concat(F.lit("P"), F.col("id") % 500).alias("product_id"), F.lit("shoes").alias("category")).alias("properties"),
    ).withColumn("day", F.substring("timestamp", 1, 10))
    web.repartition(days, "day").write.partitionBy("day").mode("overwrite").json(str(out / "landing" / "web"))
    orders = spark.range(orders_n).select(
        F.concat(F.lit("O"), F.col("id")).alias("order_id"), F.concat(F.lit("c"), F.col("id") % 20000).alias("customer_id"),
        F.concat(F.lit("user"), F.col("id") % 20000, F.lit("@example.com")).alias("email"),
        F.date_format(base + F.make_interval(secs=(F.col("id") * 104729) % (days * 86400)), "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("order_time"),
        F.concat(F.lit("P"), F.col("id") % 500).alias("product_id"), (F.col("id") % 4 + 1).alias("quantity"),
        F.round(F.rand(1) * 100, 2).alias("unit_price"),
        F.element_at(F.array(F.lit("EUR"), F.lit("USD"), F.lit("GBP")), (F.col("id") % 3 + 1).cast("int")).alias("currency"),
    ).withColumn("day", F.substring("order_time", 1, 10))
    orders.repartition(days, "day").write.partitionBy("day").mode("overwrite").option("header", "true").csv(str(out / "landing" / "orders"))
    (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "reference" / "fx_rates.csv").write_text("currency,rate_to_eur\nEUR,1.0\nUSD,0.92\nGBP,1.17\n")
    return "bench.ingest.synth (cdp_spark.demo not available)"


def tree_cpu_seconds() -> float | None:
    """CPU seconds (user + system) of this process and every live descendant (the JVM, Python workers), with the
    reaped children of each; None off Linux. Wall time depends on what else runs on the machine, CPU much less.

    Example:
        >>> tree_cpu_seconds() is None or tree_cpu_seconds() > 0
        True
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry.name)] = int(fields[1])
        spent[int(entry.name)] = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo += [c for c, p in parent.items() if p == pid and c not in mine]
    return sum(spent.get(pid, 0.0) for pid in mine)


def parse_floor(spark, config, out: Path) -> None:  # type: ignore[no-untyped-def]
    """Every file source through the ingest's reader (line numbers, raw text, UTF-8 check, parsing) -> Parquet."""
    from cdp_spark.ingest.readers import discover, read_files
    from cdp_spark.ingest.stage import template_paths

    for source in config.sources:
        if source.kind == "files":
            files = discover(spark, source, (source.path or "").format(**template_paths(config)))
            read_files(spark, source, [f.path for f in files]).write.mode("overwrite").parquet(str(out / source.name))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000, help="demo records to generate (issue: 10M)")
    parser.add_argument("--data", help="keep the generated demo files here and reuse them on the next run "
                        "(so before/after comparisons read the same bytes)")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from cdp_spark.config import CdpConfig
    from cdp_spark.ingest import stage
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.spark import build_session, embedded_conf

    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    spark = build_session("bench-ingest", embedded_conf(), str(work / "ck"))
    demo = Path(args.data).resolve() if args.data else work / "demo"
    people = max(args.events // 14, 200)
    marker = demo / "_bench_people"
    try:
        from cdp_spark.demo import generate  # type: ignore[import-not-found]

        # The default demo (2000 people, 30 days) lands ~2 events per person and day.
        if not (marker.exists() and marker.read_text() == str(people)):
            generate(spark, str(demo), people=people, days=7, seed=42, end_date=dt.date(2026, 11, 1))
            marker.write_text(str(people))
        generator = "cdp_spark.demo.generate"
    except ImportError:
        generator = synth(spark, demo, args.events)
    catalogue = yaml.safe_load((repo / "conf" / "catalogue.yaml").read_text())
    names = ("web", "app", "crm", "orders") if generator == "cdp_spark.demo.generate" else ("web", "orders")
    sources = [yaml.safe_load((repo / "conf" / "sources" / f"{n}.yaml").read_text()) for n in names]
    raw = {"lake": {"root": str(work / "lake")}, "demo": {"out_dir": str(demo)}, "catalogue": catalogue,
           "sources": sources, "routes": yaml.safe_load((repo / "conf" / "routes.yaml").read_text())}
    config = CdpConfig.model_validate(raw)
    lake = EmbeddedLake(spark, config.lake.root, default_registry())

    def bare_read(name: str):  # type: ignore[no-untyped-def]
        # The files each source's glob selects (the demo also writes reference CSVs elsewhere).
        path = str(demo / "landing" / name)
        fmt = next(s["format"] for s in sources if s["name"] == name)
        reader = spark.read.option("recursiveFileLookup", "true")
        return reader.json(path) if fmt == "json" else reader.option("header", "true").csv(path)

    cpu0 = tree_cpu_seconds()
    with Timer() as bare:
        for name in names:
            bare_read(name).write.mode("overwrite").parquet(str(work / "bare" / name))
    cpu1 = tree_cpu_seconds()
    rows = sum(spark.read.parquet(str(work / "bare" / n)).count() for n in names)
    cpu2 = tree_cpu_seconds()
    with Timer() as full:
        result = stage.run(spark, config, lake, dt.date(2026, 11, 1))
    cpu3 = tree_cpu_seconds()
    read = sum(s["read"] for s in result.metrics["sources"].values())
    with Timer() as floor:
        parse_floor(spark, config, work / "floor")
    cpu4 = tree_cpu_seconds()
    payload = {
        "events": rows, "events_requested_by_issue": 10_000_000,
        "events_requested": args.events, "demo_people": people,
        "note": f"{rows:,} records on a {os.cpu_count()}-core machine",
        "generator": generator,
        "bare_seconds": round(bare.seconds, 2), "bare_rows_per_s": round(rows / bare.seconds),
        "ingest_seconds": round(full.seconds, 2), "ingest_rows_per_s": round(read / full.seconds),
        "ratio": round((read / full.seconds) / (rows / bare.seconds), 3), "target_ratio": 0.5,
        # JVM + Python (driver and workers) CPU seconds of each step: comparable on a busy machine, unlike wall time.
        "bare_cpu_seconds": None if cpu0 is None else round(cpu1 - cpu0, 1),
        "ingest_cpu_seconds": None if cpu2 is None else round(cpu3 - cpu2, 1),
        "parse_floor_seconds": round(floor.seconds, 2),
        "parse_floor_ratio": round(bare.seconds / floor.seconds, 3),
        "parse_floor_cpu_seconds": None if cpu3 is None else round(cpu4 - cpu3, 1),
        "ingest_counts": {n: {k: s[k] for k in ("read", "accepted", "quarantined", "reconciled")}
                          for n, s in result.metrics["sources"].items()},
    }
    write_result("ingest", payload)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
