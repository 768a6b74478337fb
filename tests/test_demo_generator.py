"""The demo generator: layout, determinism, and every piece of realism the identity and ML stages rely on.

One small world (200 people, 10 days) is generated per module; each test reads the files as a source would.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import Window

from cdp_spark.demo import DemoSummary, generate

END = dt.date(2026, 11, 1)
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory) -> DemoSummary:
    return generate(spark, str(tmp_path_factory.mktemp("demo")), people=200, days=10, seed=7, end_date=END)


@pytest.fixture(scope="module")
def web(spark, demo):
    return spark.read.json(f"{demo.landing_dir}/web").withColumn("_file", F.input_file_name()).cache()


@pytest.fixture(scope="module")
def app(spark, demo):
    return spark.read.json(f"{demo.landing_dir}/app").cache()


@pytest.fixture(scope="module")
def orders(spark, demo):
    return spark.read.option("header", True).option("ignoreLeadingWhiteSpace", False).csv(f"{demo.landing_dir}/orders")


@pytest.fixture(scope="module")
def truth(spark, demo):
    return spark.read.parquet(f"{demo.truth_dir}/identities").cache()


def _digest(folder: str) -> str:
    """Hash of every file's relative path and bytes: equal digests mean byte-identical outputs."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_layout_summary_and_no_bookkeeping_files(demo):
    land = Path(demo.landing_dir)
    assert demo.start_date == dt.date(2026, 10, 23) and demo.end_date == END
    days = sorted(p.name for p in (land / "web").iterdir())
    assert days[0] == "day=2026-10-23" and days[-1] == "day=2026-11-01"
    assert list((land / "crm").glob("*.csv")) and list((land / "orders").glob("day=*/*.csv"))
    assert (Path(demo.out_dir) / "reference" / "fx_rates.csv").exists()
    assert not [p for p in Path(demo.out_dir).rglob("*") if p.name.startswith(("_", ".")) or p.suffix == ".crc"]
    summary = json.loads(json.dumps(demo.to_dict()))
    assert summary["counts"]["web_events"] > 1000 and summary["start_date"] == "2026-10-23"


def test_truth_never_leaks_into_landing(demo, truth):
    person_ids = {r.person_id for r in truth.select("person_id").distinct().collect()}
    landing = "".join(p.read_text() for p in Path(demo.landing_dir).rglob("*.*"))
    assert person_ids and not any(pid in landing for pid in list(person_ids)[:50])
    assert "person" not in landing.lower()


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_data(spark, tmp_path):
    # A small world keeps the three generations cheap; determinism does not depend on size.
    def make(name: str, seed: int):  # type: ignore[no-untyped-def]
        return generate(spark, str(tmp_path / name), people=40, days=4, seed=seed, end_date=END)

    first, again, other = make("first", 7), make("again", 7), make("other", 8)
    assert _digest(again.landing_dir) == _digest(first.landing_dir) and again.counts == first.counts
    assert _digest(other.landing_dir) != _digest(first.landing_dir)


def test_cookie_churns_after_seven_idle_days_and_people_get_new_cookies(web, truth):
    t = web.where(F.col("anonymousId").isNotNull()).select("anonymousId", F.to_timestamp("timestamp").alias("ts"))
    w = Window.partitionBy("anonymousId").orderBy("ts")
    gaps = t.withColumn("gap", F.col("ts").cast("long") - F.lag("ts").over(w).cast("long"))
    assert gaps.agg(F.max("gap")).first()[0] <= 7 * 86400  # no cookie survives a week without a visit
    per_person = truth.where("id_type = 'cookie_id'").groupBy("person_id").count()
    assert per_person.where("count > 1").count() > 5


def test_app_ids_include_opted_out_zero_advertising_ids(app):
    ids = app.select(F.coalesce(F.lower("idfa"), "gaid").alias("ad"), "platform", "device_id")
    assert ids.where(F.col("ad") == ZERO).count() > 0
    assert ids.where((F.col("ad") != ZERO) & F.col("ad").isNotNull()).count() > 0
    assert app.where("platform = 'ios' AND gaid IS NOT NULL").count() == 0
    assert app.where("event = 'login' AND customer_id IS NOT NULL").count() > 0


def test_logins_and_signups_link_cookie_email_and_customer_id(web):
    logins = web.where("type = 'identify'")
    assert logins.where("userId IS NOT NULL AND traits.email IS NOT NULL AND anonymousId IS NOT NULL").count() > 10
    signups = web.where("event = 'Newsletter Signed Up'")
    assert signups.where("traits.email IS NOT NULL AND userId IS NULL").count() > 0


def test_shared_family_devices_are_used_by_two_people(truth):
    for kind in ("device_id", "cookie_id"):
        shared = truth.where(F.col("id_type") == kind).groupBy("value").agg(F.countDistinct("person_id").alias("n"))
        assert shared.where("n = 2").count() > 0 and shared.where("n > 2").count() == 0


def test_email_variants_typos_and_junk(web, orders, truth, spark, demo):
    crm = spark.read.option("header", True).option("ignoreLeadingWhiteSpace", False) \
        .option("ignoreTrailingWhiteSpace", False).csv(f"{demo.landing_dir}/crm")
    emails = [r.email for df in (web.select("traits.email"), crm.select("email"), orders.select("email"))
              for r in df.collect() if r.email is not None]
    assert any(e != e.strip() for e in emails), "whitespace variants"
    assert any(e.strip() != e.strip().lower() for e in emails), "case variants"
    assert {"null", "test@test.com"} <= set(emails)
    assert any(("gmial.com" in e or "outlok.com" in e or "hotmial" in e or "yaho.co" in e) for e in emails)
    true_emails = {r.value for r in truth.where("id_type = 'email'").collect()}
    assert "test@test.com" not in true_emails and "null" not in true_emails
    assert all(v == v.strip().lower() for v in true_emails)


def test_late_and_duplicate_events(web, app):
    late = web.withColumn("folder", F.regexp_extract("_file", r"day=(\d{4}-\d{2}-\d{2})", 1)) \
        .where(F.to_date("folder") > F.to_date(F.to_timestamp("timestamp")))
    assert late.count() > 0
    assert late.where(F.datediff(F.to_date("folder"), F.to_date(F.to_timestamp("timestamp"))) > 1).count() > 0
    assert web.groupBy("messageId").count().where("count = 2").count() > 0
    assert app.groupBy("event_id").count().where("count = 2").count() > 0


def test_orders_multi_currency_with_rates_for_every_currency(orders, spark, demo):
    good = orders.where("currency != 'EURO'")
    currencies = {r.currency for r in good.select("currency").distinct().collect()}
    assert {"GBP", "EUR", "USD"} <= currencies
    rates = {r.currency for r in spark.read.option("header", True).csv(f"{demo.out_dir}/reference/fx_rates.csv").collect()}
    assert currencies <= rates
    products = spark.read.option("header", True).csv(f"{demo.out_dir}/reference/products.csv")
    assert good.join(products, "product_id", "left_anti").count() == 0
    assert orders.where("customer_id IS NULL AND email IS NOT NULL").count() > 0  # guest checkouts


def test_btyd_purchases_and_propensity_follow_preferences(spark, demo, orders, web, truth):
    people = spark.read.parquet(f"{demo.truth_dir}/people")
    # Heterogeneous purchase rates and dropout: the parameters the CLV models should recover.
    stats = people.agg(F.stddev("buy_rate").alias("sd"), F.min("dropout").alias("lo"), F.max("dropout").alias("hi")).first()
    assert stats.sd > 0 and stats.lo < stats.hi
    assert orders.select("order_id").distinct().count() > 20
    # Propensity: a person's most-viewed category is the category they buy far more often than chance (1/8).
    products = spark.read.option("header", True).csv(f"{demo.out_dir}/reference/products.csv").select("product_id", "category")
    cid = truth.where("id_type = 'customer_id'").select(F.col("value").alias("customer_id"), "person_id")
    bought = orders.join(products, "product_id").join(cid, "customer_id").select("person_id", "category").distinct()
    fav = people.select("person_id", F.col("favourite_category").alias("category"))
    share = bought.join(fav, ["person_id", "category"]).count() / max(bought.count(), 1)
    assert share > 0.3
    views = web.where("event = 'Product Viewed' AND userId IS NOT NULL") \
        .select(F.col("userId").alias("customer_id"), F.col("properties.category").alias("category"))
    viewed_share = views.join(cid, "customer_id").join(fav, ["person_id", "category"]).count() / max(views.count(), 1)
    assert viewed_share > 0.4


def test_expected_quarantine_counts_the_broken_records(demo, web, spark):
    expected = json.loads(Path(demo.truth_dir, "expected_quarantine.json").read_text())
    assert expected == demo.expected_quarantine
    lines = spark.read.text(f"{demo.landing_dir}/web")
    broken = lines.where(~F.col("value").endswith("}")).count()
    assert broken == expected["web"] > 0


def test_the_journal_site_is_landed_and_web_sessions_land_on_its_articles(demo, web, spark):
    from cdp_spark.content.pages import landed_files, parse_files
    from cdp_spark.demo.site import CATEGORY_TOPICS, articles

    landed = parse_files(landed_files(spark, f"{demo.landing_dir}/content"))
    urls = {p.url for p in landed.pages}
    assert len(landed.pages) == len(articles()) + 1 and landed.invalid == 0     # the articles and the help page
    assert {a.url for a in articles()} < urls and "https://shop.example.com/account/help" in urls
    assert all(p.tags and p.text for p in landed.pages)
    pages = web.where(F.col("type") == "page").select(F.col("context.page.url").alias("url"))
    shop = pages.where(F.col("url").startswith("https://shop.example.com")).distinct().collect()
    assert shop and {r.url for r in shop} <= {a.url for a in articles()} and len(shop) > len(articles()) // 2
    # Articles follow the visitor's favourite category more often than chance (1 in 8).
    people = spark.read.parquet(f"{demo.truth_dir}/people").select("person_id", "favourite_category")
    ids = spark.read.parquet(f"{demo.truth_dir}/identities").where("id_type = 'cookie_id'")
    joined = (web.where(F.col("type") == "page").select(F.col("anonymousId").alias("value"),
                                                         F.col("context.page.url").alias("url"))
              .join(ids, "value").join(people, "person_id")
              .withColumn("category", F.regexp_extract("url", r"/journal/([a-z]+)-\d", 1)))
    share = joined.where(F.col("category") == F.col("favourite_category")).count() / joined.count()
    categories = {r.category for r in joined.select("category").distinct().collect()}
    assert share > 0.5 and categories - {""} <= set(CATEGORY_TOPICS)
