"""The collector over HTTP (FastAPI TestClient, no Spark): auth, limits, error codes, stamping, dead letters, spool."""
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_spark.collect.app import create_app
from cdp_spark.collect.config import CollectorConfig
from cdp_spark.collect.messages import stamp
from cdp_spark.collect.spool import Spool, recover

KEY, OLD_KEY, OFF_KEY, MOBILE_KEY = "key-web-0001", "key-web-0000", "key-web-disabled", "key-app-0001"


def config(**over) -> CollectorConfig:
    raw = {
        "sources": {
            "web": {"keys": [{"key": KEY}, {"key": OLD_KEY}, {"key": OFF_KEY, "enabled": False}]},
            "app": {"enabled": False, "keys": [{"key": MOBILE_KEY}]},
        },
        "spool": {"fsync": True, "rotate_seconds": 3600},
        **over,
    }
    return CollectorConfig.model_validate(raw)


@pytest.fixture
def landing(tmp_path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def client(landing):
    with TestClient(create_app(config(), str(landing))) as c:
        yield c


def landed(landing: Path) -> list[dict]:
    """Every message in the landing zone: rotated files and open (fsync'd, hidden) in-progress files."""
    rows = []
    for f in sorted(p for p in landing.glob("*/*") if p.is_file()):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line]
    return rows


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


TRACK = {"type": "track", "event": "Product Viewed", "userId": "u1", "properties": {"product_id": "p1"}}


def test_basic_auth_and_body_write_key_both_accepted(client, landing):
    r = client.post("/v1/track", json=TRACK, headers=basic(KEY))
    assert r.status_code == 200 and r.json() == {"success": True}
    r = client.post("/v1/identify", json={"userId": "u2", "traits": {"email": "a@b.co"}, "writeKey": OLD_KEY})
    assert r.status_code == 200
    rows = landed(landing)
    assert [m["type"] for m in rows] == ["track", "identify"]
    assert all("writeKey" not in m for m in rows), "the write key is a secret and is never stored"
    assert all(m["messageId"] and m["receivedAt"] for m in rows)


@pytest.mark.parametrize("headers, body_key, status, code", [
    ({}, None, 401, "missing_write_key"),
    (basic("nope-nope-nope"), None, 401, "invalid_write_key"),
    ({}, "nope-nope-nope", 401, "invalid_write_key"),
    (basic(OFF_KEY), None, 401, "invalid_write_key"),       # a disabled (rotated-out) key
    (basic(MOBILE_KEY), None, 404, "source_disabled"),
    ({"Authorization": "Bearer abc"}, None, 401, "invalid_auth"),
    ({"Authorization": "Basic !!!"}, None, 401, "invalid_auth"),
])
def test_auth_errors(client, headers, body_key, status, code):
    body = {**TRACK, **({"writeKey": body_key} if body_key else {})}
    r = client.post("/v1/track", json=body, headers=headers)
    assert r.status_code == status
    assert r.json()["code"] == code and isinstance(r.json()["message"], str)


@pytest.mark.parametrize("path, body, code", [
    ("/v1/track", {"type": "track", "userId": "u"}, "invalid_message"),             # track needs event
    ("/v1/track", {"event": "x"}, "invalid_message"),                               # needs userId or anonymousId
    ("/v1/alias", {"userId": "u"}, "invalid_message"),                              # alias needs previousId
    ("/v1/group", {"userId": "u"}, "invalid_message"),                              # group needs groupId
    ("/v1/track", {"type": "identify", "event": "x", "userId": "u"}, "invalid_message"),
    ("/v1/batch", {"batch": "nope"}, "invalid_batch"),
])
def test_invalid_messages_are_400_with_json_body(client, path, body, code):
    r = client.post(path, json=body, headers=basic(KEY))
    assert r.status_code == 400 and r.json()["code"] == code


def test_invalid_json_and_non_object(client):
    r = client.post("/v1/track", content=b"{not json", headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    r = client.post("/v1/track", content=b"[1,2]", headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")


def test_size_and_count_limits(client, landing):
    big = {**TRACK, "properties": {"x": "y" * 33_000}}
    r = client.post("/v1/track", json=big, headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    r = client.post("/v1/batch", json={"batch": [TRACK] * 2501}, headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "too_many_messages")
    r = client.post("/v1/batch", json={"batch": [{**TRACK, "properties": {"x": "y" * 20_000}}] * 30}, headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert landed(landing) == []


def test_gzip_bodies_and_zip_bomb(client, landing):
    body = gzip.compress(json.dumps({"batch": [TRACK] * 10}).encode())
    r = client.post("/v1/batch", content=body, headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert r.status_code == 200 and len(landed(landing)) == 10
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    assert len(bomb) < 20_000
    r = client.post("/v1/batch", content=bomb, headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["code"] in ("body_too_large", "compression_ratio")
    r = client.post("/v1/batch", content=b"not gzip", headers={**basic(KEY), "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_encoding")


def test_partial_bad_batch_is_200_with_dead_letters(client, landing):
    batch = [TRACK, {"type": "track", "userId": "u"}, {"type": "alias", "userId": "u"}, 42,
             {"type": "page", "anonymousId": "a1"}, {**TRACK, "properties": {"x": "y" * 40_000}}]
    r = client.post("/v1/batch", json={"batch": batch, "writeKey": KEY})
    assert r.status_code == 200
    rows = landed(landing)
    rejects = sorted(m["_cdp_reject"] for m in rows if "_cdp_reject" in m)
    assert rejects == ["message_too_large", "missing:event", "missing:previousId", "not_an_object"]
    assert sorted(m["type"] for m in rows if "_cdp_reject" not in m) == ["page", "track"]


def test_rate_limit_429_with_retry_after(landing):
    app = create_app(config(rate_limit={"per_second": 0.5, "burst": 2}), str(landing))
    with TestClient(app) as c:
        codes = [c.post("/v1/track", json=TRACK, headers=basic(KEY)).status_code for _ in range(3)]
        r = c.post("/v1/track", json=TRACK, headers=basic(KEY))
    assert codes[:2] == [200, 200] and 429 in codes[2:] + [r.status_code]
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["code"] == "rate_limited"


def test_health_ready_and_unknown_routes(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.get("/v1/track")
    assert r.status_code == 405 and "code" in r.json()


def test_stamping_skew_correction_and_message_id():
    import datetime as dt

    now = dt.datetime(2026, 11, 1, 12, 0, 10, tzinfo=dt.timezone.utc)
    # the client's clock is 1 hour fast: sentAt and timestamp both ahead; corrected to 5 s before receipt
    m = stamp({"userId": "u", "timestamp": "2026-11-01T13:00:00Z", "messageId": "m1"}, now, kind="track",
              batch_sent_at="2026-11-01T13:00:05+00:00")
    assert m["timestamp"] == "2026-11-01T12:00:05.000Z" and m["originalTimestamp"] == "2026-11-01T13:00:00Z"
    assert m["receivedAt"] == "2026-11-01T12:00:10.000Z" and m["messageId"] == "m1"
    m = stamp({"userId": "u"}, now, kind="page")
    assert m["messageId"].startswith("cdp-") and m["timestamp"] == m["receivedAt"]


def test_spool_rotation_is_atomic_and_recovery_keeps_acked_lines(tmp_path):
    s = Spool(tmp_path, rotate_bytes=100, rotate_seconds=3600)
    s.append("web", [b'{"messageId":"a"}'] * 3)        # 57 bytes: still open (hidden)
    assert list(tmp_path.glob("web/[!.]*.json")) == []
    s.append("web", [b'{"messageId":"b"}'] * 3)        # passes 100 bytes: rotated into view
    visible = list(tmp_path.glob("web/[!.]*.json"))
    assert len(visible) == 1 and visible[0].read_text().count("\n") == 6
    s.append("web", [b'{"messageId":"c"}'])
    # a dead writer's in-progress file (pid 999999999 does not exist) with a partial last line
    s._files["web"].handle.close()
    orphan = next(tmp_path.glob("web/.*.inprogress"))
    name = orphan.name.split("-")
    name[-3] = "999999999"
    dead = orphan.with_name("-".join(name))
    orphan.rename(dead)
    with open(dead, "ab") as fh:
        fh.write(b'{"messageId":"partial')
    s._files.clear()
    recovered = recover(tmp_path)
    assert len(recovered) == 1 and recovered[0].read_text() == '{"messageId":"c"}\n'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({
        "batch": st.lists(st.dictionaries(
            st.sampled_from(["type", "userId", "anonymousId", "event", "timestamp", "sentAt", "messageId", "properties"]),
            st.none() | st.text(max_size=30) | st.integers() | st.lists(st.integers(), max_size=2)), max_size=5),
        "sentAt": st.text(max_size=30),
    }).map(lambda v: json.dumps(v).encode()),
), path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify", "/v1/alias", "/v1/group", "/v1/page"]),
   gz=st.booleans())
def test_fuzzed_bodies_never_500(client, body, path, gz):
    headers = {**basic(KEY), **({"Content-Encoding": "gzip"} if gz else {})}
    r = client.post(path, content=gzip.compress(body) if gz else body, headers=headers)
    assert r.status_code < 500, r.text
    assert r.status_code == 200 or set(r.json()) == {"code", "message"}


# ---- hostile input: nesting, timestamps, Unicode, compression (each case is dead-lettered or refused, never 500)

def nested(levels: int) -> bytes:
    """A track message whose properties nest ``levels`` objects deep in all (the message itself is level 1), as
    text: too deep for json.dumps."""
    head = json.dumps({**TRACK, "properties": None}).encode()[:-len(b"null}")]
    return head + b'{"a": ' * (levels - 2) + b"{}" + b"}" * (levels - 2) + b"}"


def depth_of(value) -> int:
    """Nesting depth of parsed JSON (independent of the collector's byte scanner), iteratively."""
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            best = max(best, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return best


def test_nesting_depth_limit_refuses_a_single_message_and_dead_letters_one_in_a_batch(client, landing):
    assert depth_of(json.loads(nested(400))) == 400 and depth_of(json.loads(nested(401))) == 401
    ok = client.post("/v1/track", content=nested(400), headers=basic(KEY))
    assert ok.status_code == 200
    r = client.post("/v1/track", content=nested(900), headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "too_deep") and set(r.json()) == {"code", "message"}
    r = client.post("/v1/track", content=nested(401), headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "too_deep")
    # deeper than Python's own JSON parser can go (its recursion limit): still only that message is refused
    for levels in (401, 900, 5000):
        before = len(landed(landing))
        body = b'{"batch": [' + json.dumps(TRACK).encode() + b", " + nested(levels) + b", " + json.dumps(
            {**TRACK, "event": "Second"}).encode() + b'], "sentAt": "2026-11-01T10:00:05Z"}'
        r = client.post("/v1/batch", content=body, headers=basic(KEY))
        assert r.status_code == 200, (levels, r.text)
        rows = landed(landing)[before:]
        assert sorted(m.get("event", m.get("_cdp_reject")) for m in rows) == ["Product Viewed", "Second", "too_deep"]
        dead = next(m for m in rows if "_cdp_reject" in m)
        assert depth_of(dead) == 1 and dead["_cdp_raw"].startswith('{"type"')   # landed flat: its text, cut
    assert client.app.state.collector.stats["dead_lettered"] == 3


def test_too_deep_envelope_or_unsplittable_body_is_400(client):
    body = b'{"batch": [' + json.dumps(TRACK).encode() + b'], "context": ' + nested(900) + b"}"
    r = client.post("/v1/batch", content=body, headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "too_deep")
    r = client.post("/v1/batch", content=b'{"batch": [' + b"[" * 5000 + b"]" * 4999 + b"}", headers=basic(KEY))
    assert r.status_code == 400 and set(r.json()) == {"code", "message"}


@pytest.mark.parametrize("field, value, reason", [
    ("timestamp", "0001-01-01T00:30:00+01:00", "invalid:timestamp"),     # before year 1 in UTC
    ("timestamp", "9999-12-31T23:30:00-01:00", "invalid:timestamp"),     # after year 9999 in UTC
    ("sentAt", "9999-12-31T00:00:00Z", "invalid:sentAt"),                # skew correction leaves the calendar
    ("event", "a\ud800b", "invalid:unicode"),                            # a lone UTF-16 surrogate
    ("properties", {"k\udfffey": 1}, "invalid:unicode"),
])
def test_unrepresentable_times_and_lone_surrogates_are_dead_lettered_not_500(client, landing, caplog, field, value,
                                                                             reason):
    bad = {**TRACK, "timestamp": "0001-01-01T00:00:00Z", field: value} if field == "sentAt" else {**TRACK, field: value}
    body = json.dumps({"batch": [TRACK, bad, {**TRACK, "event": "Second"}]})   # json.dumps escapes the surrogate
    with caplog.at_level("DEBUG"):
        r = client.post("/v1/batch", content=body, headers=basic(KEY))
        assert r.status_code == 200, r.text
        single = client.post("/v1/track", content=json.dumps(bad), headers=basic(KEY))
    assert (single.status_code, single.json()["code"]) == (400, "invalid_message")
    assert reason in single.json()["message"]
    rows = landed(landing)
    assert sorted(m.get("_cdp_reject", m.get("event")) for m in rows) == sorted(["Product Viewed", "Second", reason])
    assert client.app.state.collector.stats["dead_lettered"] == 1
    assert "Traceback" not in caplog.text and "ud800" not in caplog.text.lower() and "0001-01-01" not in caplog.text


def test_timestamps_before_year_1000_are_written_as_iso_8601():
    import datetime as dt

    now = dt.datetime(2026, 11, 1, 12, 0, 10, tzinfo=dt.timezone.utc)
    m = stamp({"userId": "u", "timestamp": "0999-05-01T00:00:00Z"}, now, kind="track")
    assert m["timestamp"] == "0999-05-01T00:00:00.000Z"


def test_gzip_reads_every_member_and_refuses_truncated_or_trailing_data(client, landing):
    gz = {**basic(KEY), "Content-Encoding": "gzip"}
    text = json.dumps({"batch": [TRACK, {**TRACK, "event": "Second"}]}).encode()
    cut = text.index(b"},") + 2
    r = client.post("/v1/batch", content=gzip.compress(text[:cut]) + gzip.compress(text[cut:]), headers=gz)
    assert r.status_code == 200 and [m["event"] for m in landed(landing)] == ["Product Viewed", "Second"]
    # two whole bodies in two members: not one JSON document, refused (the second is never silently dropped)
    two = gzip.compress(json.dumps({"batch": [TRACK]}).encode()) + gzip.compress(json.dumps({"batch": [TRACK]}).encode())
    r = client.post("/v1/batch", content=two, headers=gz)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    whole = gzip.compress(text)
    for body in (whole[:-8], whole[:-1], whole + b"garbage"):     # no CRC/size trailer, a cut trailer, junk after
        r = client.post("/v1/batch", content=body, headers=gz)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_encoding"), body[-10:]
    assert len(landed(landing)) == 2


def test_max_compression_ratio_is_enforced(landing):
    body = b'{"batch": [' + b" " * 300_000 + b"]}"            # under the 500 KB cap, but inflates ~1000x
    packed = gzip.compress(body)
    assert len(body) / len(packed) > 100
    with TestClient(create_app(config(), str(landing))) as c:
        r = c.post("/v1/batch", content=packed, headers={**basic(KEY), "Content-Encoding": "gzip"})
        assert (r.status_code, r.json()["code"]) == (413, "compression_ratio")
    with TestClient(create_app(config(limits={"max_compression_ratio": 5000}), str(landing))) as c:
        r = c.post("/v1/batch", content=packed, headers={**basic(KEY), "Content-Encoding": "gzip"})
        assert r.status_code == 200


def test_non_finite_numbers_are_not_json(client):
    r = client.post("/v1/track", content=b'{"type":"track","event":"x","userId":"u","properties":{"v":NaN}}',
                    headers=basic(KEY))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")


def test_an_unexpected_error_is_a_json_500_logged_by_type_only(landing, caplog, monkeypatch):
    import cdp_spark.collect.app as collector_app

    def boom(*_a, **_k):
        raise RuntimeError("payload text jane@example.com")

    monkeypatch.setattr(collector_app, "problem", boom)
    # The test client re-raises whatever escapes the app, as uvicorn would log it with its traceback: nothing may.
    with TestClient(create_app(config(), str(landing))) as c, caplog.at_level("DEBUG"):
        r = c.post("/v1/track", json=TRACK, headers=basic(KEY))
    assert r.status_code == 500 and r.json() == {"code": "internal_error", "message": "internal error; retry later"}
    assert "RuntimeError" in caplog.text and "jane@example.com" not in caplog.text and "Traceback" not in caplog.text
