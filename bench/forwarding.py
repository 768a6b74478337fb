"""Benchmark: event forwarding from the collector's stream to a webhook output, event by event.

The path users deploy, on loopback: a loader process posts Segment ``/v1/batch`` requests (100 events each) at
`--rate` events/s for `--seconds` to the collector (its own process: uvicorn, fsync on); the collector's stream
(the query and `BatchWriter` of `cdp collect stream`, trigger `--trigger` s, at most `--max-files-per-trigger`
spool files per micro-batch, so a backlog is taken in bounded steps) writes each micro-batch to bronze and
forwards it through a connection (input: the collector; one webhook output with a data filter that drops one event
name and one property, posting `--webhook-concurrency` batches at once) to the project's webhook receiver
(`cdp_spark.activation.receiver.WebhookReceiver`), which notes when each batch arrives.

Each event's ``messageId`` (the forwarded ``event_id``) carries its send time, so the event-to-delivery latency
is measured per event: the receiver's arrival time minus the send time. Every filter-passing event must arrive
exactly once: ``lost`` counts those that never arrived, ``duplicates`` the extra copies, ``unexpected`` filtered
ones that arrived. Latency is also given from the second third of the run on (``steady_state_*``: the first
micro-batches run in a JVM that is still compiling its hot code); the target is checked on the whole run.

Baseline, in the same process: the same kind of events, at the same rate and request size, posted by a plain HTTP
client straight to the same receiver for `--baseline-seconds`. ``ratio`` is the CDP path's p95 latency over the
direct post's: what the collector, the stream and the forwarding add.

Usage:
    python -m bench.forwarding --rate 10000 --seconds 75
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench.collector import KEY, REPO, pct, start_collector, steady_state
from bench.common import write_result

OUTPUT = "hook"
CONNECTION = "bench_forward"
FILTERED = "Bench Heartbeat"   # every FILTERED_EVERY-th event has this name; the output's filter drops it
FILTERED_EVERY = 50
NAMES = ("Product Viewed", "Product Viewed", "Product Added", "Order Completed")


def message(run: str, worker: int, i: int, sent_us: int) -> dict[str, Any]:
    """One track event; its messageId ends with its send time in microseconds since the epoch.

    Example:
        >>> message("r1", 0, 7, 1_700_000_000_000_000)["messageId"]
        'r1-0-7-1700000000000000'
    """
    name = FILTERED if i % FILTERED_EVERY == FILTERED_EVERY - 1 else NAMES[i % len(NAMES)]
    return {"type": "track", "event": name, "messageId": f"{run}-{worker}-{i}-{sent_us}",
            "anonymousId": f"a{(i * 7 + worker) % 20000}", "userId": f"u{i % 5000}" if i % 3 == 0 else None,
            "properties": {"product_id": f"P{i % 500}", "category": "shoes", "price": 10 + i % 90,
                           "coupon": "SAVE10"},
            "context": {"page": {"url": f"https://shop.example/p/{i % 500}"}}}


def sent_at(event_id: str) -> float:
    """The send time (epoch seconds) carried by a messageId from `message`."""
    return int(event_id.rsplit("-", 1)[1]) / 1e6


def load(url: str, rate: float, seconds: float, threads: int, batch: int, run: str, direct: bool,
         out: str) -> None:
    """Post paced batches for `seconds` from `threads` threads (a process of its own, so the load generator does
    not share the stream driver's interpreter). ``direct``: post ``{"records": [...]}`` with an Idempotency-Key
    straight to the receiver, as a webhook sender would. Writes the acknowledged messageIds of filter-passing
    events to ``out`` and a summary to ``out + ".json"``."""
    import httpx

    acked: list[list[str]] = [[] for _ in range(threads)]
    sent, filtered, failed = [0] * threads, [0] * threads, [0] * threads
    began = time.monotonic()
    stop = began + seconds

    def run_thread(w: int) -> None:
        auth = None if direct else (KEY, "")
        with httpx.Client(auth=auth, timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                due = began + sent[w] / (rate / threads)
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                now_us = int(time.time() * 1e6)
                msgs = [message(run, w, i + k, now_us) for k in range(batch)]
                i += batch
                body = {"records": msgs} if direct else {"batch": msgs}
                headers = {"Content-Type": "application/json"}
                if direct:
                    headers["Idempotency-Key"] = f"{run}-{w}-{i}"
                r = c.post(url, content=json.dumps(body).encode(), headers=headers)
                if r.status_code != 200:
                    failed[w] += 1
                    continue
                sent[w] += batch
                for m in msgs:
                    if m["event"] == FILTERED and not direct:   # a direct post has no filter: everything counts
                        filtered[w] += 1
                    else:
                        acked[w].append(m["messageId"])

    ts = [threading.Thread(target=run_thread, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - began
    Path(out).write_text("\n".join(m for ids in acked for m in ids))
    Path(out + ".json").write_text(json.dumps({
        "events_sent": sum(sent), "events_filtered": sum(filtered), "failed_requests": sum(failed),
        "send_seconds": round(wall, 2), "offered_rate": round(sum(sent) / wall, 1)}))


def run_load(url: str, rate: float, seconds: float, threads: int, batch: int, run: str, direct: bool,
             work: Path) -> tuple[dict[str, Any], list[str]]:
    out = str(work / f"{run}.ids")
    proc = multiprocessing.get_context("spawn").Process(
        target=load, args=(url, rate, seconds, threads, batch, run, direct, out))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"the load generator failed (exit code {proc.exitcode})")
    ids = Path(out).read_text().split("\n")
    return json.loads(Path(out + ".json").read_text()), [i for i in ids if i]


def delivery(receiver: Any, expected: list[str], first: int = 0) -> dict[str, Any]:
    """Per-event latency and exactly-once counts from the receiver's stored batches (requests from ``first`` on)."""
    arrived: dict[str, float] = {}
    for q in receiver.requests[first:]:
        if q["status"] < 300:
            arrived.setdefault(q["key"], q["at"])
    want = set(expected)
    seen: dict[str, int] = {}
    latency, sends = [], []
    for key, at in arrived.items():
        for rec in receiver.batches[key].get("records", []):
            eid = rec.get("event_id") or rec.get("messageId")
            seen[eid] = seen.get(eid, 0) + 1
            if seen[eid] == 1 and eid in want:
                latency.append(at - sent_at(eid))
                sends.append(sent_at(eid))
    delivered = sum(1 for e in seen if e in want)
    # Sustained delivery rate: from the first arrival to the last (the latency shifts both ends alike).
    span = (max(arrived.values()) - min(arrived.values())) if len(arrived) > 1 else float("nan")
    return {"expected": len(want), "delivered": delivered, "lost": len(want) - delivered,
            "duplicates": sum(n - 1 for n in seen.values()), "unexpected": sum(1 for e in seen if e not in want),
            "webhook_requests": len(receiver.requests) - first,
            "repeated_batch_keys": sum(1 for q in receiver.requests[first:] if q["status"] < 300) - len(arrived),
            "delivered_per_s": round(delivered / span, 1) if span > 0 else None,
            "latency_p50_s": round(pct(latency, 50), 3), "latency_p95_s": round(pct(latency, 95), 3),
            "latency_p99_s": round(pct(latency, 99), 3),
            "latency_max_s": round(max(latency), 3) if latency else None, **steady_state(sends, latency)}


def forwarded_sent(batches: list[dict[str, Any]]) -> int:
    """Events the stream's micro-batches report as delivered to the benchmark's output."""
    return sum(b["forwarded"].get(f"{CONNECTION}.{OUTPUT}", {}).get("sent", 0) for b in list(batches))


def drain(receiver: Any, first: int, expected: int, seconds: float) -> None:
    """Wait until the receiver holds ``expected`` records from request ``first`` on, or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        got = sum(len(receiver.batches.get(q["key"], {}).get("records", []))
                  for q in receiver.requests[first:] if q["status"] < 300)
        if got >= expected:
            return


def make_config(root: Path, landing: Path, url: str, trigger: float, webhook_batch: int,  # type: ignore[no-untyped-def]
                max_files: int = 4, concurrency: int = 4):
    from cdp_spark.config import CdpConfig

    catalogue = yaml.safe_load((REPO / "conf" / "catalogue.yaml").read_text())
    web = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    web["path"] = str(landing / "web")
    hook = {"name": OUTPUT, "transport": {"type": "webhook", "url": url, "batch_size": webhook_batch,
                                          "concurrency": concurrency},
            "filter": {"exclude_events": [FILTERED], "drop_properties": ["coupon"]}}
    raw = {"lake": {"root": str(root / "lake")}, "catalogue": catalogue, "sources": [web],
           "routes": yaml.safe_load((REPO / "conf" / "routes.yaml").read_text()),
           "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"path": str(landing)},
                         "stream": {"trigger_seconds": trigger, "max_files_per_trigger": max_files}},
           "connections": [{"name": CONNECTION, "input": {"collector": True}, "outputs": [hook]}]}
    return CdpConfig.model_validate(raw)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=10_000, help="offered events/s")
    ap.add_argument("--seconds", type=float, default=75, help="how long the load is offered")
    ap.add_argument("--baseline-seconds", type=float, default=20, help="how long the direct post runs")
    ap.add_argument("--trigger", type=float, default=2.0, help="the stream's trigger interval (s)")
    ap.add_argument("--rotate", type=float, default=1.0, help="the collector's spool rotation (s)")
    ap.add_argument("--webhook-batch", type=int, default=500, help="events per webhook request")
    ap.add_argument("--webhook-concurrency", type=int, default=4, help="webhook batches posted at once")
    ap.add_argument("--max-files-per-trigger", type=int, default=4,
                    help="spool files per micro-batch (one per --rotate seconds): bounds a micro-batch under load")
    ap.add_argument("--threads", type=int, default=8, help="loader threads")
    ap.add_argument("--warmup-seconds", type=float, default=15,
                    help="a warm-up load (at most 1,000 events/s), delivered before the measured one starts")
    ap.add_argument("--driver-memory", default=None,
                    help="the stream's driver heap, e.g. 4g (default: the embedded share, half the machine's memory)")
    ap.add_argument("--drain-seconds", type=float, default=300, help="longest wait for deliveries after the load")
    args = ap.parse_args(argv)

    from pyspark.sql import SparkSession

    from cdp_spark.activation.receiver import WebhookReceiver
    from cdp_spark.collect import stream as S
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.spark import build_session, embedded_conf

    work = Path(tempfile.mkdtemp(prefix="bench-forwarding-"))
    stamp = f"{int(time.time())}"
    try:
        with WebhookReceiver(path="/events") as receiver:
            # Baseline: a plain client posts straight to the receiver.
            base_load, base_ids = run_load(receiver.url, args.rate, args.baseline_seconds, args.threads, 100,
                                           f"d{stamp}", True, work)
            baseline = {**base_load, **delivery(receiver, base_ids)}
            print("baseline", baseline, flush=True)
            first = len(receiver.requests)

            memory = {"spark.driver.memory": args.driver_memory} if args.driver_memory else None
            spark = SparkSession.getActiveSession() or build_session("bench-forwarding", embedded_conf(extra=memory),
                                                                      str(work / "checkpoints"))
            landing = work / "landing"
            config = make_config(work, landing, receiver.url, args.trigger, args.webhook_batch,
                                 args.max_files_per_trigger, args.webhook_concurrency)
            lake = EmbeddedLake(spark, config.lake.root, default_registry())
            (landing / "web").mkdir(parents=True, exist_ok=True)
            proc, url = start_collector(landing, rotate_seconds=args.rotate)
            try:
                query, writer = S.start_query(spark, config, lake, "web", available_now=False)
                # The first micro-batches run in a cold JVM (code generation, JIT, table creation): warm it up.
                warm, warm_ids = run_load(f"{url}/v1/batch", min(args.rate, 1000), args.warmup_seconds,
                                          args.threads, 100, f"w{stamp}", False, work)
                drain(receiver, first, len(warm_ids), args.drain_seconds)
                # A micro-batch's stats are kept once its delivery is done: wait for the last warm-up one's.
                deadline = time.monotonic() + 60
                while forwarded_sent(writer.batches) < len(warm_ids) and time.monotonic() < deadline:
                    time.sleep(0.2)
                warmup = {**warm, **delivery(receiver, warm_ids, first)}
                print("warm-up", warmup, flush=True)
                first, warm_batches = len(receiver.requests), len(writer.batches)
                load_stats, ids = run_load(f"{url}/v1/batch", args.rate, args.seconds, args.threads, 100,
                                           f"c{stamp}", False, work)
                drain(receiver, first, len(ids), args.drain_seconds)
                deadline = time.monotonic() + 60
                while forwarded_sent(writer.batches[warm_batches:]) < len(ids) and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(args.trigger * 2)   # late duplicates would arrive now
                query.stop()
            finally:
                proc.terminate()
                proc.wait(10)
            cdp = {**load_stats, **delivery(receiver, ids, first)}
            batches = writer.batches[warm_batches:]
            forwarded = [b["forwarded"].get(f"{CONNECTION}.{OUTPUT}", {}) for b in batches]
            stream = {"micro_batches": len(batches), "read_lines": sum(b["read_lines"] for b in batches),
                      "accepted": sum(b["accepted"] for b in batches),
                      "forwarded_sent": forwarded_sent(batches),
                      "forwarded_filtered": sum(f.get("filtered", 0) for f in forwarded),
                      "failed_deliveries": sum(f.get("deliveries", {}).get("failed", 0) for f in forwarded),
                      "mean_batch_s": round(sum(b["duration_s"] for b in batches) / max(len(batches), 1), 2),
                      "max_batch_s": max((b["duration_s"] for b in batches), default=None),
                      "mean_forward_s": round(sum(b.get("forward_s", 0) for b in batches) / max(len(batches), 1), 2),
                      "max_forward_s": max((b.get("forward_s", 0) for b in batches), default=None),
                      "mean_batch_events": round(sum(b["read_lines"] for b in batches) / max(len(batches), 1))}
            print("cdp", cdp, stream, flush=True)
        ratio = (round(cdp["latency_p95_s"] / baseline["latency_p95_s"], 1)
                 if baseline["latency_p95_s"] and cdp["latency_p95_s"] == cdp["latency_p95_s"] else None)
        result = {
            "scale": {"driver_memory": args.driver_memory, "rate": args.rate, "seconds": args.seconds, "baseline_seconds": args.baseline_seconds,
                      "warmup_seconds": args.warmup_seconds, "trigger_seconds": args.trigger, "spool_rotate_seconds": args.rotate,
                      "collector_batch": 100, "webhook_batch": args.webhook_batch,
                      "webhook_concurrency": args.webhook_concurrency,
                      "max_files_per_trigger": args.max_files_per_trigger, "loader_threads": args.threads},
            "forwarding": cdp, "stream": stream, "baseline_direct_post": baseline,
            "warmup": {k: warmup[k] for k in ("events_sent", "offered_rate", "expected", "delivered", "lost",
                                               "duplicates", "latency_p95_s")},
            "ratio": ratio, "ratio_means": "p95 event-to-delivery latency: CDP path / direct post to the receiver",
            "targets": {"events_per_s": 10_000, "latency_p95_s": 10, "lost": 0, "duplicates": 0},
            # Met when 10k events/s were offered and the filter-passing ones were delivered as fast as they came.
            "met": {"events_per_s": bool(cdp["offered_rate"] >= 0.98 * 10_000 and (cdp["delivered_per_s"] or 0)
                                         >= 0.95 * cdp["expected"] / cdp["send_seconds"]),
                    "latency_p95_s": cdp["latency_p95_s"] <= 10, "lost": cdp["lost"] == 0,
                    "duplicates": cdp["duplicates"] == 0},
            "notes": "loopback on one machine: the loader process, the collector process (1 uvicorn worker, fsync "
                     "per request), the stream (embedded Spark local[*]) with the forwarding, and the receiver "
                     "(in the stream's process). No identity graph or profiles: events are forwarded without a "
                     "profile_id. Latency: the receiver's arrival time minus the send time in the messageId.",
        }
        write_result("forwarding", result, argv=argv)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
