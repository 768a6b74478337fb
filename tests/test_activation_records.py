"""Normalisation and hashing against the platforms' published examples, identifier choice, consent gating and
delivery planning (adds/removes, snapshot resume). Pure Python: no Spark."""
from __future__ import annotations

import hashlib

import pytest

from cdp_spark.activation import normalise as N
from cdp_spark.activation.config import Destination
from cdp_spark.activation.records import Member, StateRow, apply_sent, columns, plan_items, prepare


def dest(**kw):
    return Destination.model_validate({"name": "d", "audiences": ["a"], "transport": {"type": "file"}, **kw})


# Google Data Manager API "Format user data": documented normalisation examples.
@pytest.mark.parametrize("raw, normalised", [
    ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
    ("user.name+NYC@Example.com", "user.name+nyc@example.com"),         # not gmail: dots and +suffix kept
    ("  Jane.Doe@GoogleMail.com ", "janedoe@googlemail.com"),
    ("not-an-email", None),
])
def test_google_email_rule(raw, normalised):
    assert N.google_email(raw) == normalised


def test_e164_google_example_and_meta_phone():
    assert N.e164("(800)555-0100", "US") == "+18005550100"                  # Google's documented example
    assert N.e164("+44 844 412 4653") == "+448444124653"
    assert N.meta_phone("+44 844 412 4653") == "448444124653"               # Meta: digits with country code
    assert N.meta_phone("+1 650 253 0000") == "16502530000"
    assert N.e164("12", "GB") is None


def test_published_sha256_values():
    # TikTok's customer-file doc: normalised "janedoe@gmail.com" hashes to d6117306...; X's doc: "adsapi" -> 49e0be2a...
    assert N.sha256_hex("janedoe@gmail.com") == "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
    assert N.sha256_hex("adsapi") == "49e0be2aeccfb51a8dee4c945c8a70a9ac500cf6f5cb08112575f74db9b1470d"
    assert N.sha256_hex(N.maid("5F3A2B18-9C4D-4E7F-B8E2-17D3A1E69B25")) == (
        "83dc3f5f32b9472613b0f038d36f22585a609d018af6f6067f50da318bf354bd")


def test_google_customer_match_record():
    m = Member("a", "p1", "all", {"email": ["Jane.Doe+ads@gmail.com"], "phone": ["(800)555-0100"], "idfa": ["AB-CD"]},
               {"first_name": " Jane ", "last_name": "DOE", "country": "us", "zip": "94043-1351"},
               {"ads_personalisation": "granted"})
    d = dest(format="google_customer_match", identifiers=["email", "phone", "maid", "first_name", "last_name", "country", "zip"])
    p = prepare(m, d).payload
    assert p["hashed_email"] == hashlib.sha256(b"janedoe@gmail.com").hexdigest()
    assert p["hashed_phone_number"] == hashlib.sha256(b"+18005550100").hexdigest()
    assert p["hashed_first_name"] == hashlib.sha256(b"jane").hexdigest()
    assert p["hashed_last_name"] == hashlib.sha256(b"doe").hexdigest()
    assert (p["country_code"], p["postal_code"], p["mobile_id"]) == ("US", "94043", "ab-cd")  # not hashed
    assert (p["ad_user_data"], p["ad_personalization"]) == ("GRANTED", "GRANTED")
    assert set(columns(d)) == set(p)


def test_meta_record_schema_and_rules():
    m = Member("a", "p1", None, {"email": [" Your.Name@Gmail.com "], "phone": ["+44 844 412 4653"], "gaid": ["AECE52E7-03EE"]},
               {"first_name": "Zoë-Ann", "last_name": "O'Brien", "country": "GB", "zip": "WC2H 8LG"}, {})
    d = dest(format="meta_custom_audience", identifiers=["email", "phone", "maid", "first_name", "last_name", "country", "zip"])
    p = prepare(m, d).payload
    assert list(p) == ["EMAIL", "PHONE", "FN", "LN", "COUNTRY", "ZIP", "MADID"]
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    assert p["EMAIL"] == sha("your.name@gmail.com")          # Meta keeps gmail dots
    assert p["PHONE"] == sha("448444124653")
    assert (p["FN"], p["LN"]) == (sha("zoëann"), sha("obrien"))
    assert (p["COUNTRY"], p["ZIP"]) == (sha("gb"), sha("wc2h8lg"))
    assert p["MADID"] == "aece52e7-03ee"                      # MADID is sent unhashed, lower-case


def test_liveramp_headers_are_algorithm_suffixed():
    d = dest(format="liveramp", identifiers=["email", "phone", "customer_id"], hash_algorithms=["sha256", "md5"])
    p = prepare(Member("a", "p", None, {"email": ["A@b.com"], "customer_id": ["c9"]}, {}, {}), d).payload
    assert columns(d) == ["EMAIL_SHA256", "EMAIL_MD5", "PHONE_SHA256", "PHONE_MD5", "CUSTOMER_ID"]
    assert p["EMAIL_MD5"] == hashlib.md5(b"a@b.com").hexdigest() and p["CUSTOMER_ID"] == "c9" and p["PHONE_SHA256"] is None


def test_consent_gating_identifier_preference_and_dma():
    d = dest(format="csv", identifiers=["email", "phone"], consent=["email_marketing"], match="first")
    ok = Member("a", "p1", "all", {"email": ["x@y.com"], "phone": ["+447700900123"]}, {}, {"email_marketing": "granted"})
    assert prepare(ok, d).payload == {"profile_id": "p1", "variant": "all", "email": "x@y.com", "phone": None}
    for status in ("denied", "unknown", None):
        consent = {"email_marketing": status} if status else {}
        assert prepare(Member("a", "p2", "all", {"email": ["x@y.com"]}, {}, consent), d).skipped == "consent"
    assert prepare(Member("a", "p3", "all", {"cookie_id": ["k"]}, {}, {"email_marketing": "granted"}), d).skipped == "no_identifier"
    g = dest(format="google_customer_match")
    eea = Member("a", "p4", None, {"email": ["x@y.com"]}, {"country": "FR"}, {"ads_personalisation": "unknown"})
    us = Member("a", "p5", None, {"email": ["x@y.com"]}, {"country": "US"}, {"ads_personalisation": "denied"})
    assert prepare(eea, g).skipped == "consent"   # EEA without ad_user_data consent is not uploaded
    assert prepare(us, g).payload["ad_user_data"] == "DENIED"


def test_plan_changes_mode_adds_changes_and_removes():
    d = dest(format="csv", identifiers=["email"])
    mk = lambda pid, email: prepare(Member("a", pid, None, {"email": [email]}, {}, {}), d)  # noqa: E731
    state: dict = {}
    first = plan_items(d, [mk("p1", "a@x.com"), mk("p2", "b@x.com")], state)
    assert [(i.action, i.profile_id) for i in first] == [("add", "p1"), ("add", "p2")]
    apply_sent(state, first, "d1")
    assert plan_items(d, [mk("p1", "a@x.com"), mk("p2", "b@x.com")], state) == []          # nothing new
    second = plan_items(d, [mk("p2", "new@x.com"), mk("p3", "c@x.com")], state)
    assert [(i.action, i.profile_id) for i in second] == [("remove", "p1"), ("add", "p2"), ("add", "p3")]
    assert second[0].payload["email"] == "a@x.com"  # a remove carries what was sent


def test_plan_snapshot_resumes_within_the_same_snapshot():
    d = dest(format="csv", identifiers=["email"], mode="snapshot")
    recs = [prepare(Member("a", f"p{i}", None, {"email": [f"{i}@x.com"]}, {}, {}), d) for i in range(4)]
    state = {("a", "p0"): StateRow(recs[0].record_hash, recs[0].payload, "old-snapshot")}
    items = plan_items(d, recs, state, "snap-1")
    assert len(items) == 4   # a new snapshot sends everything
    apply_sent(state, items[:2], "snap-1")
    assert [i.profile_id for i in plan_items(d, recs, state, "snap-1")] == ["p2", "p3"]


def test_destination_config_errors():
    with pytest.raises(ValueError, match="hash: only for csv/ndjson"):
        dest(format="meta_custom_audience", hash="sha256")
    with pytest.raises(ValueError):
        dest(identifiers=["email", "email"])
