"""The collector's stream end to end: HTTP → landing zone → Structured Streaming (availableNow) → bronze, with
dedup, dead letters in quarantine, and a crash in the middle of a micro-batch replayed exactly once."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest
import yaml
from fastapi.testclient import TestClient
from pyspark.sql import functions as F

from cdp_spark.collect.app import create_app
from cdp_spark.lake.deltaio import append_rows
from cdp_spark.collect.stream import StreamError, run_stream, run_with_ledger
from cdp_spark.config import CdpConfig
from cdp_spark.lake import Txn, default_registry
from tests.ingest_fixtures import CATALOGUE, REPO

pytestmark = pytest.mark.slow  # Structured Streaming runs with restarts and replays

KEY = "test-web-write-key"


@pytest.fixture
def env(make_lake, spark, tmp_path):
    web = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    routes = yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())
    raw = {"lake": {"root": str(tmp_path / "lake")}, "catalogue": CATALOGUE, "sources": [web], "routes": routes,
           "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600}}}
    config = CdpConfig.model_validate(raw)
    lake = make_lake(config.lake.root, default_registry())
    return config, lake


def post(config, batches):
    """Post batches through the collector and stop it (which rotates its files into view)."""
    app = create_app(config.collector, config.collector.landing(config.lake.root))
    with TestClient(app) as client:
        for b in batches:
            r = client.post("/v1/batch", json={"batch": b, "sentAt": "2026-11-01T10:00:05Z"}, auth=(KEY, ""))
            assert r.status_code == 200, r.text


def track(mid, event="Product Viewed", user="u1", **extra):
    return {"type": "track", "messageId": mid, "event": event, "userId": user, "timestamp": "2026-11-01T10:00:00Z",
            "properties": {"product_id": "p1"}, "context": {"page": {"url": "https://shop.example/p1"}}, **extra}


def events(lake):
    return {r.event_id: r for r in lake.read("bronze.events").collect()}


def test_stream_maps_dedups_quarantines_and_replays_exactly_once(spark, env, monkeypatch):
    config, lake = env
    identify = {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"email": " Ann@Example.COM "},
                "timestamp": "2026-11-01T10:00:00Z"}
    post(config, [[track("m1"), track("m2", event="Order Completed"), identify, {"type": "track", "userId": "u2"}],
                  [track("m1"), {"type": "page", "messageId": "p1", "anonymousId": "a1",
                                 "context": {"page": {"url": "http://localhost/x"}}}]])
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert (m["read_lines"], m["accepted"], m["quarantined"], m["duplicates"]) == (6, 4, 1, 1)
    assert m["reconciled"] and m["batches"] >= 1
    ev = events(lake)
    assert set(ev) == {"m1", "m2", "p1", "i1"}   # as in batch ingestion, identify is an event too (role: both)
    assert ev["m1"].event_name == "product viewed" and ev["m1"].identifiers["customer_id"] == "u1"
    assert ev["p1"].stream == "web_divert"                   # the same route rules as batch ingestion
    assert ev["p1"].identifiers == {"cookie_id": "a1"}
    # skew-corrected: the client sent at 10:00:05 for an event at 10:00:00, so event_time = receivedAt - 5 s
    assert abs((ev["m1"].event_time - ev["m1"].received_at).total_seconds() + 5) < 120
    assert ev["i1"].identifiers == {"customer_id": "u1", "email": "ann@example.com"}   # normalised like batch
    q = lake.read("bronze.quarantine").collect()
    assert [list(r.reasons) for r in q] == [["collector:missing:event"]]

    # A message already in bronze (same messageId) arriving again later is dropped; then a crash in the middle of
    # the next micro-batch: bronze.events committed, bronze.quarantine not, the checkpoint never marks it done.
    post(config, [[track("m2"), track("m3"), track("m4"), {"type": "alias", "userId": "u9"}]])
    Backend = type(lake)
    real_append = Backend.append
    crashed = []

    def crashing_append(self, name, df, **kw):
        result = real_append(self, name, df, **kw)
        if name == "bronze.events" and not crashed:
            crashed.append(kw.get("txn"))
            raise RuntimeError("simulated crash after the events commit")
        return result

    monkeypatch.setattr(Backend, "append", crashing_append)
    with pytest.raises(StreamError):
        run_stream(spark, config, lake, available_now=True)
    assert set(events(lake)) == {"m1", "m2", "p1", "i1", "m3", "m4"}   # half-written batch
    assert lake.read("bronze.quarantine").count() == 1
    monkeypatch.setattr(Backend, "append", real_append)

    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]   # restart from the checkpoint
    assert m["batches"] == 1 and m["reconciled"]
    rows = lake.read("bronze.events")
    assert rows.count() == rows.select("event_id").distinct().count() == 6      # no duplicates, none missing
    assert sorted(list(r.reasons) for r in lake.read("bronze.quarantine").collect()) == [
        ["collector:missing:event"], ["collector:missing:previousId"]]
    assert crashed[0] is not None and crashed[0].version == 1   # the replay reused the crashed batch's token

    # Nothing new: a further run (as `cdp collect stream --available-now` runs it, with the ledger) is a no-op.
    m = run_with_ledger(spark, config, lake, available_now=True)["sources"]["web"]
    assert m["batches"] == 0 and lake.read("bronze.events").count() == 6
    run = lake.read("ops.job_runs").where(F.col("job") == "collect_stream").collect()
    assert [r.status for r in run] == ["succeeded"]
    files = lake.read("bronze.ingested_files").where(F.col("source") == "web")
    assert files.count() == files.select("path").distinct().count() == 2   # one landed file per collector run
    # The second file's ledger row counts all its lines: the repeated m2 was read, neither accepted nor quarantined.
    counts = sorted((r.rows_read, r.rows_accepted, r.rows_quarantined) for r in files.collect())
    assert (4, 2, 1) in counts


def test_file_ledger_rows_go_through_delta_rs_once_per_batch_token(env):
    """The stream's file ledger rows are committed without Spark, with the micro-batch's Txn: a replay adds none."""
    _, lake = env
    lake.create_if_missing("bronze.ingested_files")
    at = dt.datetime(2026, 11, 1, 10, 0, 1)
    row = ("web", "a.json", 120, "ab" * 32, at, 1, "ingested", None, 3, 2, 1, 0, "stream-web-q-4", at)
    record = dict(zip(lake.spec("bronze.ingested_files").schema.fieldNames(), row))
    assert append_rows(lake, "bronze.ingested_files", [record], Txn("collect.web.q", 4)) is True
    assert append_rows(lake, "bronze.ingested_files", [record], Txn("collect.web.q", 4)) is False   # the replay
    got = [tuple(r) for r in lake.read("bronze.ingested_files").collect()]
    assert got == [row]                          # read back by Spark as written: times stay UTC, nothing twice
    assert lake.committed("bronze.ingested_files", Txn("collect.web.q", 4))


def _stream_settings(config, **stream):
    collector = config.collector.model_copy(update={"stream": config.collector.stream.model_copy(update=stream)})
    return config.model_copy(update={"collector": collector})


def test_key_stats_of_every_batch_reach_raw_keys_once_across_replays_and_restarts(spark, env, monkeypatch):
    """Key stats stay pending between folds; a replayed batch, a failed fold and a crash after the fold's MERGE
    never count a batch twice nor lose one."""
    from cdp_spark.collect import stream as S
    from cdp_spark.ingest import keystats

    config, lake = env
    # one landed file per micro-batch, and no fold before the stream stops
    config = _stream_settings(config, max_files_per_trigger=1, key_stats_flush_seconds=3600)
    pending = keystats.PendingKeyStats(spark, "web", S.checkpoint_path(config, "web") + "/key_stats", "unused")
    post(config, [[track("m1"), track("m2", user="u2")]])
    post(config, [[track("m3", user="u3")]])

    def seen():
        if not lake.exists("bronze.raw_keys"):
            return {}
        return {r.key: r.times_seen for r in lake.read("bronze.raw_keys").where(F.col("source") == "web").collect()}

    # Run 1: batch 1 dies after its key stats were kept, and the fold at stop fails too: both batches stay pending.
    real_record, real_fold = S.BatchWriter.record_files, keystats.fold

    def die_in_batch_1(self, files, lines, per_file, txn, run_id):
        if txn.version == 1:
            raise RuntimeError("simulated crash before the checkpoint commit")
        return real_record(self, files, lines, per_file, txn, run_id)

    def broken_fold(*args, **kwargs):
        raise RuntimeError("raw_keys unavailable")

    monkeypatch.setattr(S.BatchWriter, "record_files", die_in_batch_1)
    monkeypatch.setattr(keystats, "fold", broken_fold)
    with pytest.raises(StreamError):
        run_stream(spark, config, lake, available_now=True)
    assert seen() == {} and pending.batch_ids() == [0, 1]

    # Run 2: batch 1 is replayed (its pending stats replaced, not added); the fold merges, then dies before cleanup.
    monkeypatch.setattr(S.BatchWriter, "record_files", real_record)

    def merge_then_die(*args, **kwargs):
        real_fold(*args, **kwargs)
        raise RuntimeError("killed after the merge")

    monkeypatch.setattr(keystats, "fold", merge_then_die)
    with pytest.raises(StreamError, match="key stats could not be folded"):
        run_stream(spark, config, lake, available_now=True)
    expected = {"messageId": 3, "userId": 3, "event": 3, "type": 3}
    assert {k: seen()[k] for k in expected} == expected and pending.batch_ids() == [0, 1]

    # Run 3 with a new batch: the already folded batches are dropped, the new one counted once.
    monkeypatch.setattr(keystats, "fold", real_fold)
    post(config, [[track("m4", user="u4")]])
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert m["batches"] == 1 and m["reconciled"]
    assert {k: seen()[k] for k in expected} == {k: 4 for k in expected} and pending.batch_ids() == []
    assert lake.read("bronze.events").count() == 4
    # first/last seen are the micro-batches' receipt times (stamped when kept, not left null)
    times = lake.read("bronze.events").agg(F.min("received_at"), F.max("received_at")).first()
    for r in lake.read("bronze.raw_keys").where((F.col("source") == "web") & F.col("key").isin(*expected)).collect():
        assert r.first_seen == times[0] and r.last_seen == times[1], r.key


def test_timed_folds_run_beside_the_micro_batches_and_count_every_batch_once(spark, env, monkeypatch):
    """A timed fold runs in its own thread while later micro-batches keep their stats pending; the fold when the
    stream stops waits for it, and every message's keys are counted exactly once."""
    import threading

    from cdp_spark.ingest import keystats

    config, lake = env
    config = _stream_settings(config, max_files_per_trigger=1, key_stats_flush_seconds=0.001)
    for i in range(4):
        post(config, [[track(f"m{i}a", user=f"u{i}"), track(f"m{i}b", user=f"v{i}")]])
    threads, real_fold = [], keystats.fold

    def recording_fold(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_fold(*args, **kwargs)

    monkeypatch.setattr(keystats, "fold", recording_fold)
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert m["batches"] == 4 and m["reconciled"]
    assert any(t.startswith("key-stats-fold-web") for t in threads)     # beside the batches, not inside them
    seen = {r.key: r.times_seen for r in lake.read("bronze.raw_keys").where(F.col("source") == "web").collect()}
    assert {k: seen[k] for k in ("messageId", "userId", "event", "type")} == dict.fromkeys(
        ("messageId", "userId", "event", "type"), 8)


def test_a_message_nested_too_deep_is_quarantined_and_the_stream_moves_on(spark, env):
    """A landed message 900 levels deep (schema inference over it overflowed the JVM stack and hung the stream):
    read by the Segment schema, it is quarantined as too_deep and the others go on; free-form properties keep
    their keys in bronze.raw_keys."""

    config, lake = env
    folder = pathlib.Path(config.collector.landing(config.lake.root), "web")
    folder.mkdir(parents=True, exist_ok=True)
    deep = json.dumps(track("d2"))[:-1] + ', "extra": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}"
    # d3's context has a field of a shape the Segment spec does not give it: only that field is lost
    odd = {"library": "analytics.js", "page": {"url": "https://shop.example/p3"}}
    text = "\n".join([json.dumps(track("d1", properties={"product_id": "p1", "colour": "red"})), deep,
                      json.dumps(track("d3", properties={"product_id": "p3"}, context=odd))]) + "\n"
    (folder / "landed-0001.json").write_text(text)   # as a collector without a depth limit landed it

    m = run_stream(spark, config, lake, available_now=True, timeout=600)["sources"]["web"]

    assert (m["read_lines"], m["accepted"], m["quarantined"]) == (3, 2, 1) and m["reconciled"]
    assert m["quarantine_reasons"] == {"too_deep": 1} and m["files_ingested"] == 1
    assert [list(r.reasons) for r in lake.read("bronze.quarantine").collect()] == [["too_deep"]]
    ev = events(lake)
    assert set(ev) == {"d1", "d3"} and ev["d1"].product_id == "p1" and ev["d3"].page_url == "https://shop.example/p3"
    assert json.loads(ev["d1"].properties) == {"product_id": "p1", "colour": "red"}
    keys = {r.key: r for r in lake.read("bronze.raw_keys").where(F.col("source") == "web").collect()}
    assert keys["properties.colour"].times_seen == 1 and not keys["properties.colour"].mapped
    assert keys["properties.product_id"].times_seen == 2 and keys["properties.product_id"].mapped
    [row] = lake.read("bronze.ingested_files").collect()
    assert (row.path, row.rows_read, row.rows_accepted, row.rows_quarantined) == ("landed-0001.json", 3, 2, 1)

