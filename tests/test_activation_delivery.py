"""Transports against real local endpoints: webhook retries/throttling/idempotency against a server that fails,
throttles and then succeeds; resuming a failed delivery without double-sending; atomic file drops with manifests;
the rate limit. No Spark."""
from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from cdp_spark.activation.config import Destination
from cdp_spark.activation.receiver import WebhookReceiver
from cdp_spark.activation.records import Member
from cdp_spark.activation.stage import deliver
from cdp_spark.activation.transports import RateLimiter, WebhookSender, verify_manifest

AS_OF = dt.date(2026, 11, 1)


def members(n, audience="a"):
    return [Member(audience, f"p{i:03d}", "all", {"email": [f"user{i}@example.com"]}, {"country": "GB"},
                   {"ads_personalisation": "granted"}) for i in range(n)]


def webhook(url, **kw):
    return Destination.model_validate({
        "name": "hook", "format": "ndjson", "audiences": ["a"], "identifiers": ["email"],
        "transport": {"type": "webhook", "url": url, "headers": {"Authorization": "Bearer s3cret"}, "batch_size": 10,
                      "max_retries": 3, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, **kw}})


def test_webhook_retries_5xx_429_timeouts_then_succeeds_exactly_once():
    with WebhookReceiver(script=[500, 429, 503]) as r:
        d = webhook(r.url)
        state: dict = {}
        report = deliver(d, members(25), state, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
    assert report.status == "succeeded" and report.batches == 3 and report.records_sent == 25
    assert report.retries == 3 and report.failures == 0
    assert [q["status"] for q in r.requests] == [500, 429, 503, 200, 200, 200]
    assert len({q["key"] for q in r.requests}) == 3          # the retried batch kept its idempotency key
    assert all(q["authorization"] for q in r.requests)
    assert sorted(x["profile_id"] for x in r.records()) == [f"p{i:03d}" for i in range(25)]
    assert len(state) == 25


def test_no_retry_on_other_4xx_and_error_hides_secrets():
    with WebhookReceiver(script=[400]) as r:
        d = webhook(r.url)
        report = deliver(d, members(5), {}, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
    assert report.status == "failed" and report.failures == 1 and report.retries == 0 and len(r.requests) == 1
    assert "HTTP 400" in report.error and "s3cret" not in report.error and "127.0.0.1" not in report.error


def test_timeout_is_retried(monkeypatch):
    import httpx

    calls = []

    class FlakyClient:
        def post(self, url, content, headers):
            calls.append(headers["Idempotency-Key"])
            if len(calls) == 1:
                raise httpx.ReadTimeout("slow")
            return httpx.Response(200)

        def close(self):
            pass

    d = webhook("http://unused.invalid/x")
    report = deliver(d, members(3), {}, as_of=AS_OF, export_root="/unused",
                     sender=WebhookSender(d.transport, d.name, client=FlakyClient(), sleep=lambda s: None))
    assert report.status == "succeeded" and report.retries == 1 and len(set(calls)) == 1 and len(calls) == 2


def test_failed_delivery_resumes_next_run_without_double_sending():
    state: dict = {}
    # run 1: batch 1 succeeds, batch 2 keeps failing (5 x 500 > max_retries) -> failed after 10 records
    with WebhookReceiver(script=[200, 500, 500, 500, 500]) as r1:
        d = webhook(r1.url)
        first = deliver(d, members(25), state, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
    assert first.status == "failed" and first.records_sent == 10 and len(state) == 10
    # run 2 (next day, server healthy): only the 15 not yet acknowledged are sent
    with WebhookReceiver() as r2:
        d = webhook(r2.url)
        second = deliver(d, members(25), state, as_of=AS_OF + dt.timedelta(days=1), export_root="/unused",
                         sender=WebhookSender(d.transport, d.name))
    assert second.status == "succeeded" and second.records_sent == 15
    got = [x["profile_id"] for x in r1.records() + r2.records()]
    assert sorted(got) == [f"p{i:03d}" for i in range(25)] and len(got) == len(set(got))
    # run 3: nothing changed -> nothing sent
    assert deliver(d, members(25), state, as_of=AS_OF, export_root="/unused").status == "empty"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_resent_batch_after_a_crash_is_recognised_by_its_key(concurrency):
    with WebhookReceiver() as r:
        d = webhook(r.url, concurrency=concurrency)
        deliver(d, members(32), {}, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
        # the state was lost (crash before saving): the same batches go out again with the same keys
        deliver(d, members(32), {}, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
    assert r.duplicates == 4 and len(r.records()) == 32


def test_concurrent_batches_each_arrive_once_with_their_keys_and_a_failure_keeps_what_was_acknowledged():
    with WebhookReceiver() as r:
        d = webhook(r.url, concurrency=4)
        report = deliver(d, members(95), {}, as_of=AS_OF, export_root="/unused", sender=WebhookSender(d.transport, d.name))
        assert (report.status, report.records_sent, report.batches) == ("succeeded", 95, 10)
        assert len(r.records()) == 95 and r.duplicates == 0 and len({q["key"] for q in r.requests}) == 10
    # Batches fail for good once two were acknowledged: those are kept in the state, the batches not yet started
    # are not sent, and the next run sends only what is missing.
    state: dict = {}
    with WebhookReceiver(script=[200, 200] + [500] * 40) as r1:
        d = webhook(r1.url, concurrency=2)
        first = deliver(d, members(60), state, as_of=AS_OF, export_root="/unused",
                        sender=WebhookSender(d.transport, d.name))
    assert first.status == "failed" and first.records_sent == len(state) == 20 and len(r1.records()) == 20
    with WebhookReceiver() as r2:
        d = webhook(r2.url, concurrency=2)
        again = deliver(d, members(60), state, as_of=AS_OF, export_root="/unused",
                        sender=WebhookSender(d.transport, d.name))
    assert again.status == "succeeded" and again.records_sent == 40
    got = [x["profile_id"] for x in r1.records() + r2.records()]
    assert sorted(got) == [f"p{i:03d}" for i in range(60)]


def test_rate_limiter_spaces_requests():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    lim = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        lim.wait()
    assert now[0] == pytest.approx(1.0) and len(slept) == 4


def test_file_drop_is_atomic_with_a_verified_manifest(tmp_path):
    d = Destination.model_validate({"name": "drop", "format": "csv", "audiences": ["a"], "identifiers": ["email"],
                                    "transport": {"type": "file", "rows_per_file": 7}})
    state: dict = {}
    report = deliver(d, members(20), state, as_of=AS_OF, export_root=str(tmp_path))
    folder = tmp_path / "drop" / report.delivery_id
    assert report.status == "succeeded" and report.location == str(folder)
    manifest = verify_manifest(folder)
    assert manifest["rows"] == 20 and [f["rows"] for f in manifest["files"]] == [7, 7, 6]
    rows = [r for f in sorted(folder.glob("part-*.csv")) for r in csv.DictReader(f.open())]
    assert {r["email"] for r in rows} == {f"user{i}@example.com" for i in range(20)} and {r["action"] for r in rows} == {"add"}
    assert not list((tmp_path / "drop").glob(".staging-*"))
    # tampering is detected
    part = folder / "part-00001.csv"
    part.write_text(part.read_text().replace("user", "evil"))
    with pytest.raises(ValueError, match="checksum"):
        verify_manifest(folder)
    # next run: 2 removed, 1 added -> a second delivery with adds and removes only
    second = deliver(d, members(18) + [Member("a", "p999", "all", {"email": ["n@x.com"]}, {}, {})],
                     state, as_of=AS_OF + dt.timedelta(days=1), export_root=str(tmp_path))
    m2 = verify_manifest(tmp_path / "drop" / second.delivery_id)
    assert (m2["adds"], m2["removes"]) == (1, 2)


def test_ndjson_drop(tmp_path):
    d = Destination.model_validate({"name": "nd", "format": "ndjson", "audiences": ["a"], "identifiers": ["email"],
                                    "hash": "sha256", "transport": {"type": "file"}})
    report = deliver(d, members(3), {}, as_of=AS_OF, export_root=str(tmp_path))
    lines = (tmp_path / "nd" / report.delivery_id / "part-00000.ndjson").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 3 and all(len(r["email_sha256"]) == 64 and "email" not in r for r in recs)
