"""The forwarding benchmark at a tiny scale: the collector, the stream and a connection's webhook output deliver
every filter-passing event exactly once, and the result file has the documented fields."""
from __future__ import annotations

import json

import pytest

from bench import forwarding


@pytest.mark.slow
def test_a_tiny_forwarding_run_delivers_every_event_once_and_writes_its_result(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_BENCH_RESULTS", str(tmp_path))
    argv = ["--rate", "300", "--seconds", "3", "--baseline-seconds", "1", "--warmup-seconds", "1",
            "--trigger", "1", "--drain-seconds", "120"]
    forwarding.main(argv)
    doc = json.loads((tmp_path / "forwarding.json").read_text())
    assert doc["command"] == "python -m bench.forwarding " + " ".join(argv)
    assert {"machine", "measured_at", "scale", "forwarding", "stream", "baseline_direct_post", "warmup", "ratio",
            "targets", "met", "load_average_1_5_15"} <= set(doc)
    fwd = doc["forwarding"]
    # 1 in 50 events has the name the output's filter drops; the rest must arrive, once each.
    assert fwd["events_sent"] >= 600 and fwd["expected"] == fwd["events_sent"] - fwd["events_filtered"]
    assert fwd["events_filtered"] == fwd["events_sent"] // forwarding.FILTERED_EVERY
    assert (fwd["delivered"], fwd["lost"], fwd["duplicates"], fwd["unexpected"]) == (fwd["expected"], 0, 0, 0)
    assert doc["stream"]["forwarded_sent"] == fwd["expected"] and doc["stream"]["failed_deliveries"] == 0
    assert 0 < fwd["latency_p50_s"] <= fwd["latency_p95_s"] <= fwd["latency_p99_s"] <= fwd["latency_max_s"]
    base = doc["baseline_direct_post"]
    assert (base["delivered"], base["lost"], base["duplicates"]) == (base["events_sent"], 0, 0)
    assert doc["ratio"] == pytest.approx(fwd["latency_p95_s"] / base["latency_p95_s"], rel=0.05)


def test_the_send_time_travels_in_the_message_id():
    m = forwarding.message("r1", 2, 49, 1_700_000_000_123_456)
    assert m["event"] == forwarding.FILTERED and forwarding.sent_at(m["messageId"]) == 1_700_000_000.123456
