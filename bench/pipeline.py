"""Benchmark: the whole daily pipeline in one process, a full build and the next day's run, on the demo world.

The demo retailer (`cdp_spark.demo`) is generated with everyone's activity scaled so that the people together
produce about ``--events`` events over ``--days`` days (generation is timed on its own), then the configured daily
pipeline (conf/cdp.yaml, its demo webhook served on loopback) runs in one Spark session:

- **(a) full build**: the first daily run, as of the last generated day, end to end;
- **(b) next day**: the world grown by one day (`cdp_spark.demo.grow`: about 1/``days`` new events, some late
  for earlier days, identity changes), that day's files landed and the daily run for it;
- **(c) next day after twice the history**: the same world generated over ``2 * days`` days, built in full (not
  a target, recorded), then its next day's run as in (b).

Per-stage seconds come from the job ledger (ops.job_runs). Targets of issue 27: (a) ≤ 600 s on 2 cores,
(b) ≤ 10% of (a), (c)/(b) ≤ 1.2 (the daily cost does not grow with history).

Usage:
    python -m bench.pipeline                                  # 1M people, 10M events over 30 days (the issue scale)
    python -m bench.pipeline --people 2000 --events 20000     # a smoke run (CDP_BENCH_RESULTS=/tmp/x keeps results)
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from typing import Any

from bench.common import Timer, write_result

END = dt.date(2026, 11, 1)
SEED = 27
EVENTS_PER_PERSON_DAY = 2.5  # the demo world per unit of activity (see bench/scores.py)


def stage_seconds(lake, run_id: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds per stage of one job run, from the ledger."""
    from pyspark.sql import functions as F

    rows = (lake.read("ops.job_runs").where((F.col("run_id") == run_id) & (F.col("step") != "job"))
            .select("step", (F.col("ended_at").cast("double") - F.col("started_at").cast("double")).alias("s"))
            .collect())
    return {r.step: round(r.s, 1) for r in rows}


def history(spark, config, root: str, *, people: int, days: int, activity: float) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Generate ``days`` days of the world, build them in full, then grow it by a day and run that day."""
    from cdp_spark.activation.receiver import demo_receiver
    from cdp_spark.demo import generate, grow
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.pipeline import run_job

    config = config.model_copy(update={
        "lake": config.lake.model_copy(update={"root": f"{root}/lake"}),
        "demo": config.demo.model_copy(update={"people": people, "days": days, "seed": SEED, "end_date": END,
                                               "out_dir": f"{root}/demo"})})
    world = {"people": people, "days": days, "seed": SEED, "end_date": END, "activity": activity}
    out: dict[str, Any] = {"days": days}
    with Timer() as t:
        summary = generate(spark, config.demo_dir, truth_dir=f"{root}/truth", **world)
    out["generate_seconds"] = round(t.seconds, 1)
    out["generated"] = summary.counts
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    with demo_receiver(config) as run_config:
        with Timer() as t:
            full = run_job(spark, run_config, lake, "daily", END, lock=False)
        out["full_build_seconds"] = round(t.seconds, 1)
        out["full_build_stage_seconds"] = stage_seconds(lake, full.run_id)
        out["events_after_full_build"] = lake.info("bronze.events").rows
        with Timer() as t:
            growth = grow(spark, config.demo_dir, truth_dir=f"{root}/truth", next_days=1, **world)
        out["generate_next_day_seconds"] = round(t.seconds, 1)
        day = growth.days[0]
        growth.land(spark, day)
        growth.close(spark)
        with Timer() as t:
            nxt = run_job(spark, run_config, lake, "daily", day, lock=False)
        out["next_day_seconds"] = round(t.seconds, 1)
        out["next_day_stage_seconds"] = stage_seconds(lake, nxt.run_id)
        out["next_day_new_events"] = lake.info("bronze.events").rows - out["events_after_full_build"]
        out["next_day_modes"] = {s: r.metrics.get("mode") for s, r in nxt.results.items() if "mode" in r.metrics}
        out["next_day_profiles_rebuilt"] = nxt.results["profiles"].metrics.get("profiles_rebuilt") \
            if "profiles" in nxt.results else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000, help="events over --days (sets the activity)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--skip-long-history", action="store_true", help="leave out (c)")
    args = parser.parse_args(argv)

    from cdp_spark.config import load_config
    from cdp_spark.spark import build_session, embedded_conf

    activity = min(1.0, args.events / (args.people * EVENTS_PER_PERSON_DAY * args.days))
    root = tempfile.mkdtemp(prefix="bench-pipeline-")
    spark = build_session("bench-pipeline", embedded_conf(cores=args.cores), f"{root}/checkpoints")
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "conf", "cdp.yaml"))
    result: dict[str, Any] = {"scale": {"people": args.people, "target_events": args.events, "days": args.days,
                                        "activity": round(activity, 4), "cores": args.cores,
                                        "issue_scale": args.people == 1_000_000 and args.events == 10_000_000}}
    try:
        a = history(spark, config, f"{root}/a", people=args.people, days=args.days, activity=activity)
        result["a_full_build"] = a
        result["b_next_day_seconds"] = a["next_day_seconds"]
        result["targets"] = {"a_full_build_seconds": {"target": 600, "measured": a["full_build_seconds"]},
                             "b_over_a": {"target": 0.1,
                                          "measured": round(a["next_day_seconds"] / a["full_build_seconds"], 3)}}
        if not args.skip_long_history:
            c = history(spark, config, f"{root}/c", people=args.people, days=2 * args.days, activity=activity)
            result["c_long_history"] = c
            result["targets"]["c_over_b"] = {"target": 1.2,
                                             "measured": round(c["next_day_seconds"] / a["next_day_seconds"], 3)}
    finally:
        spark.stop()
    write_result("pipeline", result, argv=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
