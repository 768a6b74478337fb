"""Render the hidden world as the sources would deliver it: Segment-like web NDJSON, app NDJSON, a CRM CSV
export, order CSVs, plus the messiness of real feeds.

Every renderer returns the output columns plus internal ``_``-prefixed columns (the person, the identifiers the
row really carries) from which :func:`truth_identities` builds the hidden ground truth; writers drop them.

Messiness, and where it ends up after ingestion (conf/sources/*.yaml):
- email variants (case, surrounding spaces), typos (a misspelt domain) and junk (``null``, ``test@test.com``,
  empty): accepted, with warnings or nulled values; the identity stage must cope;
- duplicate events (the same messageId twice, the copy sometimes a day later) and late events (a day= folder up to
  3 days after the event): accepted;
- QA traffic from ``localhost``: routed to the ``web_divert`` stream;
- deliberately broken records, counted in :data:`EXPECTED_QUARANTINE` reasons: truncated JSON lines (web), a
  zero date or a missing event name (app), quantity 0, an unknown currency or a missing order id (orders), and
  CRM leads without a customer id.

Example:
    >>> web = web_events(world.events, spec)                 # doctest: +SKIP
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_spark.demo.model import (CATEGORIES, COUNTRIES, FX_TO_EUR, WorldSpec, category_of, country_attr,
                                  product_id)
from cdp_spark.demo.rand import pick, uniform, weighted
from cdp_spark.demo.site import ARTICLES_PER_CATEGORY, SHOP, article_paths

ZERO_AD_ID = "00000000-0000-0000-0000-000000000000"
JUNK_EMAILS = ["null", "test@test.com", ""]
QA_SHOP = "http://localhost:3000"

# How often each email variant appears, per source: (kind, weight). Checkout forms validate more than web forms.
WEB_EMAILS = [("clean", 70), ("title", 6), ("upper", 4), ("spaces", 8), ("typo", 4), ("junk", 8)]
ORDER_EMAILS = [("clean", 85), ("title", 4), ("upper", 2), ("spaces", 5), ("typo", 2), ("junk", 2)]
CRM_EMAILS = [("clean", 82), ("title", 4), ("upper", 3), ("spaces", 5), ("typo", 3), ("junk", 3)]


def email_variant(kind: Column, email: Column, typo: Column, u: Column) -> Column:
    """The email as typed: clean, Title Case, UPPER, padded with spaces, misspelt, or a junk value.

    Example:
        >>> email_variant(F.lit("spaces"), F.col("email"), F.col("typo_email"), u)   # doctest: +SKIP
    """
    return (F.when(kind == "title", F.initcap(email)).when(kind == "upper", F.upper(email))
            .when(kind == "spaces", F.concat(F.lit(" "), email, F.lit("  ")))
            .when(kind == "typo", typo).when(kind == "junk", pick(u, JUNK_EMAILS)).otherwise(email))


def true_email(kind: Column, email: Column, typo: Column) -> Column:
    """The normalised email the person really used in a variant (null for junk): what identity should link."""
    return F.when(kind == "typo", typo).when(kind != "junk", email)


def iso(epoch: Column) -> Column:
    """Epoch seconds -> ISO-8601 UTC text with milliseconds, as Segment sends it."""
    return F.date_format(F.timestamp_seconds(epoch), "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")


def with_delivery(df: DataFrame, spec: WorldSpec, salt: str) -> DataFrame:
    """Duplicate ~1.5% of events (the retry copy lands the same day or the next) and deliver ~4% up to 3 days late.

    Adds ``copy`` (0, or 1 for the duplicate) and ``day`` (the day= folder, never after ``end_date``).
    """
    s = spec.seed
    key = (F.col("pid"), F.col("day_idx"), F.col("sess_no"), F.col("slot"))
    dup = uniform(s, salt + "dup", *key) < 0.015
    df = df.select("*", F.explode(F.when(dup, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))).alias("copy"))
    ckey = (*key, F.col("copy"))
    late = F.when(uniform(s, salt + "late", *ckey) < 0.04, 1 + F.floor(uniform(s, salt + "lag", *ckey) * 3)).otherwise(0)
    retry = F.when(F.col("copy") == 1, (uniform(s, salt + "retry", *ckey) < 0.5).cast("int")).otherwise(0)
    day = F.date_add(F.to_date(F.timestamp_seconds(F.col("event_epoch"))), (late + retry).cast("int"))
    return df.withColumn("day", F.least(day, F.lit(spec.end_date)))


def web_events(events: DataFrame, spec: WorldSpec) -> DataFrame:
    """Segment-like web events (``value``: one JSON line) by ``day`` folder.

    Example:
        >>> web_events(world.events, spec).select("day", "value").show(1, False)   # doctest: +SKIP
    """
    s = spec.seed
    ev = events.where(F.col("channel") == "web")
    ev = with_delivery(ev, spec, "web")
    key = (F.col("pid"), F.col("day_idx"), F.col("sess_no"), F.col("slot"))
    k = F.col("event_kind")
    ev = ev.withColumn("_email_kind", weighted(uniform(s, "web_email_kind", *key), WEB_EMAILS))
    email_kind = F.col("_email_kind")
    email = email_variant(email_kind, F.col("email"), F.col("typo_email"), uniform(s, "web_junk", *key))
    has_email = k.isin("login", "signup")
    base = F.when(F.col("qa_traffic"), F.lit(QA_SHOP)).otherwise(F.lit(SHOP))
    pid_text = product_id(F.col("product_idx"))
    # A session lands on a journal article: 60% about the visitor's favourite category, else any category.
    article_cat = F.when(uniform(s, "article_cat", *key) < 0.6, F.col("fav_cat")).otherwise(
        F.floor(uniform(s, "article_any", *key) * len(CATEGORIES)).cast("int"))
    article = article_cat * ARTICLES_PER_CATEGORY + F.floor(uniform(s, "article", *key) * ARTICLES_PER_CATEGORY)
    landing = F.element_at(F.array(*[F.lit(p) for p in article_paths()]), (article + 1).cast("int"))
    path = (F.when(k == "landing", landing).when(k == "login", F.lit("/account/login"))
            .when(k == "signup", F.lit("/newsletter")).when(k == "view", F.concat(F.lit("/p/"), pid_text))
            .when(k == "cart", F.lit("/cart")).otherwise(F.lit("/checkout/complete")))
    seg_type = F.when(k == "landing", "page").when(k == "login", "identify").otherwise("track")
    event = (F.when(k == "signup", "Newsletter Signed Up").when(k == "view", "Product Viewed")
             .when(k == "cart", "Product Added").when(k == "order", "Order Completed"))
    props = F.struct(F.when(k.isin("view", "cart"), pid_text).alias("product_id"),
                     F.when(k.isin("view", "cart"), category_of(F.col("product_idx"))).alias("category"),
                     F.col("order_id").alias("order_id"))
    traits = F.when(has_email, F.struct(
        email.alias("email"),
        F.when(k == "login", F.col("first_name")).alias("first_name"),
        F.when(k == "login", F.col("last_name")).alias("last_name")))
    message_id = _msg_uuid(s, "web")
    record = F.struct(
        message_id.alias("messageId"), seg_type.alias("type"), event.alias("event"),
        F.col("cookie_id").alias("anonymousId"), F.when(F.col("logged_in"), F.col("customer_id")).alias("userId"),
        iso(F.col("event_epoch")).alias("timestamp"),
        F.struct(F.struct(F.concat(base, path).alias("url")).alias("page"),
                 F.lit("analytics.js").alias("library")).alias("context"),
        F.when(k != "landing", props).alias("properties"), traits.alias("traits"),
    )
    ev = ev.withColumns({"_value": F.to_json(record), "_msg": message_id,
                         "_broken": uniform(s, "web_truncated", *key, F.col("copy")) < 0.001})
    value, broken, message_id = F.col("_value"), F.col("_broken"), F.col("_msg")
    # A client killed mid-send leaves a truncated line: malformed JSON, quarantined by the ingest stage.
    return ev.select(
        F.col("day"),
        F.when(broken, F.substring(value, 1, 40)).otherwise(value).alias("value"),
        F.col("event_epoch").alias("_epoch"), message_id.alias("_id"), F.col("copy").alias("_copy"),
        F.col("pid").alias("_pid"), broken,
        F.when(~broken, F.col("cookie_id")).alias("_cookie_id"),
        F.when(~broken & F.col("logged_in"), F.col("customer_id")).alias("_customer_id"),
        F.when(~broken & has_email, true_email(email_kind, F.col("email"), F.col("typo_email"))).alias("_email"),
    )


def _msg_uuid(seed: int, salt: str) -> Column:
    from cdp_spark.demo.rand import uuid

    return uuid(seed, salt + "msg", F.col("pid"), F.col("day_idx"), F.col("sess_no"), F.col("slot"))


def app_events(events: DataFrame, spec: WorldSpec) -> DataFrame:
    """Mobile app events (``value``: one JSON line) by ``day`` folder: device id, IDFA (iOS) or GAID (Android)."""
    s = spec.seed
    ev = with_delivery(events.where(F.col("channel") == "app"), spec, "app")
    key = (F.col("pid"), F.col("day_idx"), F.col("sess_no"), F.col("slot"), F.col("copy"))
    k = F.col("event_kind")
    from cdp_spark.demo.rand import uuid

    ev = ev.withColumn("_ad_id", F.when(F.col("ad_opted_out"), F.lit(ZERO_AD_ID)).otherwise(uuid(s, "adid", F.col("owner"))))
    ad_id = F.col("_ad_id")
    ios = F.col("platform") == "ios"
    name = (F.when(k == "landing", "app_opened").when(k == "login", "login").when(k == "view", "product_viewed")
            .when(k == "cart", "add_to_cart").when(k == "order", "order_completed"))
    ev = ev.withColumns({"_no_name": uniform(s, "app_noname", *key) < 0.001,     # an SDK bug: an event without a name
                         "_zero_time": uniform(s, "app_zerotime", *key) < 0.001})  # a broken clock library
    no_name, zero_time = F.col("_no_name"), F.col("_zero_time")
    time = F.when(zero_time, F.lit("0000-00-00 00:00:00")).otherwise(iso(F.col("event_epoch")))
    pid_text = product_id(F.col("product_idx"))
    record = F.struct(
        _msg_uuid(s, "app").alias("event_id"), F.when(~no_name, name).alias("event"), time.alias("time"),
        F.col("device_id"), F.col("platform"),
        F.when(ios, F.upper(ad_id)).alias("idfa"),  # iOS reports IDFAs upper-case, Android GAIDs lower-case
        F.when(~ios, ad_id).alias("gaid"),
        F.when(k == "login", F.col("customer_id")).alias("customer_id"),
        F.lit("5.12.0").alias("app_version"),
        F.when(k.isin("view", "cart", "order"), F.struct(
            F.when(k != "order", pid_text).alias("product_id"),
            F.when(k != "order", category_of(F.col("product_idx"))).alias("category"),
            F.col("order_id").alias("order_id"))).alias("properties"),
    )
    junk = no_name | zero_time
    return ev.select(
        "day", F.to_json(record).alias("value"), F.col("event_epoch").alias("_epoch"),
        _msg_uuid(s, "app").alias("_id"), F.col("copy").alias("_copy"), F.col("pid").alias("_pid"),
        junk.alias("_broken"), F.col("device_id").alias("_device_id"),
        F.when(~F.col("ad_opted_out"), F.lower(ad_id)).alias("_ad_id_truth"),
        F.when(ios, F.lit("idfa")).otherwise(F.lit("gaid")).alias("_ad_type"),
        F.when(k == "login", F.col("customer_id")).alias("_customer_id"),
    )


def orders(order_lines: DataFrame, spec: WorldSpec) -> DataFrame:
    """Order lines as CSV columns by ``day`` folder (orders arrive on their day, ~3% one or two days late)."""
    s = spec.seed
    key = (F.col("pid"), F.col("day_idx"), F.col("sess_no"), F.col("line_no"))
    okey = key[:3]
    order_lines = order_lines.withColumns({
        "_email_kind": weighted(uniform(s, "order_email_kind", *okey), ORDER_EMAILS),
        # Logged-in customers' orders carry the customer id and sometimes the email; guests only the email.
        "_with_email": ~F.col("is_customer") | (uniform(s, "order_has_email", *okey) < 0.5),
        "_junk": uniform(s, "order_bad", *key)})
    email_kind, with_email, junk = F.col("_email_kind"), F.col("_with_email"), F.col("_junk")
    email = email_variant(email_kind, F.col("email"), F.col("typo_email"), uniform(s, "order_junk", *okey))
    bad_qty, bad_cur, no_id = junk < 0.006, (junk >= 0.006) & (junk < 0.011), (junk >= 0.011) & (junk < 0.015)
    late = F.when(uniform(s, "order_late", *okey) < 0.03, 1 + F.floor(uniform(s, "order_lag", *okey) * 2)).otherwise(0)
    day = F.least(F.date_add(F.to_date(F.timestamp_seconds(F.col("order_epoch"))), late.cast("int")), F.lit(spec.end_date))
    order_lines = order_lines.withColumns({"_bad_qty": bad_qty, "_bad_cur": bad_cur, "_no_id": no_id})
    bad_qty, bad_cur, no_id = F.col("_bad_qty"), F.col("_bad_cur"), F.col("_no_id")
    price = F.when(F.col("currency") == "JPY", F.format_string("%.0f", F.col("unit_price"))).otherwise(
        F.format_string("%.2f", F.col("unit_price")))
    return order_lines.select(
        day.alias("day"),
        F.when(~no_id, F.col("order_id")).alias("order_id"), F.col("line_no").cast("string").alias("line_no"),
        iso(F.col("order_epoch")).alias("order_time"), F.col("customer_id"),
        F.when(with_email, email).alias("email"), product_id(F.col("product_idx")).alias("product_id"),
        F.when(bad_qty, F.lit("0")).otherwise(F.col("quantity").cast("string")).alias("quantity"),
        price.alias("unit_price"), F.when(bad_cur, F.lit("EURO")).otherwise(F.col("currency")).alias("currency"),
        F.col("order_id").alias("_id"), F.col("pid").alias("_pid"), (bad_qty | bad_cur | no_id).alias("_broken"),
        F.col("customer_id").alias("_customer_id"),
        F.when(with_email, true_email(email_kind, F.col("email"), F.col("typo_email"))).alias("_email"),
    )


ORDER_COLUMNS = ["order_id", "line_no", "order_time", "customer_id", "email", "product_id", "quantity", "unit_price",
                 "currency"]
CRM_COLUMNS = ["customer_id", "email", "phone", "first_name", "last_name", "country", "email_opt_in", "ads_opt_in",
               "analytics_opt_in", "signup_date", "updated_at"]


def _flag(u: Column, granted: Column) -> Column:
    """A consent flag as CRMs export them: mostly true/false, sometimes yes/no or 1/0, ~3% blank (unknown)."""
    style = F.floor(u * 100)
    yes = F.when(style < 80, "true").when(style < 90, "yes").otherwise("1")
    no = F.when(style < 80, "false").when(style < 90, "no").otherwise("0")
    return F.when(style >= 97, F.lit(None)).when(granted, yes).otherwise(no)


def crm(people: DataFrame, spec: WorldSpec) -> DataFrame:
    """The CRM export: every customer, plus ~3% of non-customers as leads without a customer id (junk)."""
    s = spec.seed
    pid = F.col("pid")
    lead = ~F.col("is_customer") & (uniform(s, "crm_lead", pid) < 0.03)
    rows = people.where(F.col("is_customer") | lead)
    rows = rows.withColumns({
        "_email_kind": weighted(uniform(s, "crm_email_kind", pid), CRM_EMAILS),
        "_phone_style": weighted(uniform(s, "crm_phone", pid), [("e164", 45), ("spaced", 20), ("national", 20),
                                                               ("missing", 10), ("junk", 5)]),
        "_country_style": weighted(uniform(s, "crm_country", pid), [("code", 60), ("name", 25), ("lower", 10),
                                                                   ("alpha3", 5)]),
        "_shout": uniform(s, "crm_upper", pid) < 0.05,  # some records were keyed in with caps lock on
        "_lead": lead})
    lead, email_kind = F.col("_lead"), F.col("_email_kind")
    email = email_variant(email_kind, F.col("email"), F.col("typo_email"), uniform(s, "crm_junk", pid))
    phone = F.col("phone")
    national = F.when(F.col("country") == "GB", F.concat(F.lit("0"), F.substring(phone, 4, 4), F.lit(" "),
                                                         F.substring(phone, 8, 20))).otherwise(phone)
    spaced = F.concat_ws(" ", F.substring(phone, 1, 3), F.substring(phone, 4, 4), F.substring(phone, 8, 20))
    style = F.col("_phone_style")
    phone_out = (F.when(style == "e164", phone).when(style == "spaced", spaced).when(style == "national", national)
                 .when(style == "junk", F.lit("n/a")))
    cstyle = F.col("_country_style")
    country = (F.when(cstyle == "name", country_attr(F.col("country"), 3)).when(cstyle == "lower", F.lower(F.col("country")))
               .when(cstyle == "alpha3", country_attr(F.col("country"), 4)).otherwise(F.col("country")))
    shout = F.col("_shout")
    return rows.select(
        F.col("customer_id"), email.alias("email"), phone_out.alias("phone"),
        F.when(shout, F.upper("first_name")).otherwise(F.col("first_name")).alias("first_name"),
        F.when(shout, F.upper("last_name")).otherwise(F.col("last_name")).alias("last_name"),
        country.alias("country"),
        _flag(uniform(s, "crm_c1", pid), F.col("email_marketing")).alias("email_opt_in"),
        _flag(uniform(s, "crm_c2", pid), F.col("ads_personalisation")).alias("ads_opt_in"),
        _flag(uniform(s, "crm_c3", pid), F.col("analytics")).alias("analytics_opt_in"),
        F.date_format("signup_date", "yyyy-MM-dd").alias("signup_date"),
        # when the CRM last touched the record: some day of the window, so an as-of run sees it as already known
        F.date_format(F.timestamp_seconds(F.lit(spec.start_epoch + 9 * 3600) + 86400 * F.floor(
            uniform(s, "crm_updated", pid) * spec.anchor_days).cast("long")), "yyyy-MM-dd HH:mm:ss").alias("updated_at"),
        F.coalesce(F.col("customer_id"), F.concat(F.lit("~lead"), pid.cast("string"))).alias("_id"),
        pid.alias("_pid"), lead.alias("_broken"), F.col("customer_id").alias("_customer_id"),
        true_email(email_kind, F.col("email"), F.col("typo_email")).alias("_email"),
        F.when(style.isin("e164", "spaced", "national"), phone).alias("_phone"),
    )


def fx_rates(spark) -> DataFrame:  # type: ignore[no-untyped-def]
    """Reference FX table: units of EUR per unit of each currency (as `conf/sources/orders.yaml` reads it)."""
    rows = [(c, f"{r:.6f}") for c, r in sorted(FX_TO_EUR.items())]
    return spark.createDataFrame(rows, "currency string, rate_to_eur string")


def truth_identities(web: DataFrame, app: DataFrame, order_rows: DataFrame, crm_rows: DataFrame) -> DataFrame:
    """Hidden ground truth (id_type, value, person_id): every identifier value that really occurs in the landing
    data, normalised as the catalogue normalises it, with its person. A shared device or cookie has two persons;
    junk values and opted-out all-zero advertising ids have none.

    Example:
        >>> truth_identities(web, app, orders_df, crm_df).columns       # doctest: +SKIP
        ['id_type', 'value', 'person_id']
    """
    def ids(df: DataFrame, id_type: str | Column, column: str) -> DataFrame:
        kind = F.lit(id_type) if isinstance(id_type, str) else id_type
        return df.select(kind.alias("id_type"), F.col(column).alias("value"), F.col("_pid").alias("pid"))

    parts = [ids(web, "cookie_id", "_cookie_id"), ids(web, "customer_id", "_customer_id"), ids(web, "email", "_email"),
             ids(app, "device_id", "_device_id"), ids(app, F.col("_ad_type"), "_ad_id_truth"),
             ids(app, "customer_id", "_customer_id"), ids(order_rows, "customer_id", "_customer_id"),
             ids(order_rows, "email", "_email"), ids(crm_rows, "customer_id", "_customer_id"),
             ids(crm_rows, "email", "_email"), ids(crm_rows, "phone", "_phone")]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    person = F.concat(F.lit("P"), F.lpad(F.col("pid").cast("string"), 8, "0"))
    return out.where(F.col("value").isNotNull()).select("id_type", "value", person.alias("person_id")).distinct()


__all__ = ["CATEGORIES", "COUNTRIES", "web_events", "app_events", "orders", "crm", "fx_rates", "truth_identities"]
