"""The demo retailer's hidden world: people, products, sessions and purchases, as Spark DataFrames.

Nothing here is what a source sees; :mod:`cdp_spark.demo.render` turns this world into messy landing files.
Every value is a hash of (seed, salt, keys) (see :mod:`cdp_spark.demo.rand`), so the world is a pure function of
the seed and the sizes, whatever the cluster.

The behaviour model, per person:
- visits: sessions per day ~ Poisson(visit_rate), visit_rate log-normal across people;
- purchases, BTYD-like (BG/NBD): while "alive" a person buys on a day with probability 1 - exp(-buy_rate),
  buy_rate log-normal; after each purchase they drop out with probability ``dropout`` (so the number of purchases
  before dropping out is geometric), which gives the CLV models in ``cdp_spark.ml`` something to find;
- a consideration phase: in the ``RESEARCH_DAYS`` days before each purchase day the person makes extra
  "research" visits (Poisson(``RESEARCH_VISITS_PER_DAY``) a day) and leaves a product in the cart without
  ordering in ``RESEARCH_CART_SHARE`` of them (other visits: ``BROWSE_CART_SHARE``), so recent visits and
  abandoned carts announce a purchase, as in real shops (the signal the purchase-propensity model learns);
- category preferences: a favourite and a second category drive both product views and the items bought, so
  viewing a category more often goes with buying it (the propensity signal);
- devices: a browser and/or an app device; some households share one (family tablet or PC);
- a browser's first-party cookie expires after 7 days without a visit (Safari ITP), or is cleared at random.

Example:
    >>> world = build_world(spark, WorldSpec(people=100, days=7, seed=1, end_date=date(2026, 11, 1)))  # doctest: +SKIP
    >>> world.sessions.count()                                                                          # doctest: +SKIP
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp_spark.demo.rand import lognormal, pick, poisson, uniform, uuid, weighted

DAY_SECONDS = 86_400
COOKIE_TTL_DAYS = 7          # Safari ITP: script-set cookies die after 7 days without a visit
SLOT_SECONDS = 40            # average time between two events of a session
PRODUCTS_PER_CATEGORY = 25
RESEARCH_DAYS = 5            # consideration phase: extra visits on the days before a purchase
RESEARCH_VISITS_PER_DAY = 0.6
RESEARCH_CART_SHARE = 0.3    # research visits ending with an abandoned cart
BROWSE_CART_SHARE = 0.03     # ordinary visits ending with an abandoned cart
CATEGORIES = ["electronics", "books", "home", "fashion", "beauty", "sports", "toys", "garden"]
CATEGORY_BASE_PRICE_EUR = [180.0, 14.0, 45.0, 60.0, 25.0, 55.0, 30.0, 40.0]
PRODUCT_NOUNS = ["Classic", "Pro", "Mini", "Plus", "Eco", "Deluxe", "Smart", "Lite", "Max", "Original"]

# (country code, weight, currency, name used by CRM exports, alpha-3)
COUNTRIES = [("GB", 50, "GBP", "United Kingdom", "GBR"), ("FR", 12, "EUR", "France", "FRA"),
             ("DE", 12, "EUR", "Germany", "DEU"), ("IE", 8, "EUR", "Ireland", "IRL"),
             ("US", 10, "USD", "United States", "USA"), ("ES", 4, "EUR", "Spain", "ESP"),
             ("NL", 4, "EUR", "Netherlands", "NLD")]
# Units of EUR per unit of the currency (the shape `conf/sources/orders.yaml` expects: rate_to_eur).
FX_TO_EUR = {"EUR": 1.0, "GBP": 1.16, "USD": 0.92, "CHF": 1.06, "SEK": 0.087, "DKK": 0.134, "PLN": 0.23, "JPY": 0.0061}
FOREIGN_CURRENCIES = ["USD", "GBP", "EUR", "CHF", "SEK", "DKK", "PLN", "JPY"]  # travellers and cross-border buyers

FIRST_NAMES = ["Olivia", "Amelia", "Isla", "Ava", "Mia", "Emily", "Sophie", "Grace", "Chloe", "Lucy", "Léa", "Emma",
               "Hannah", "Lena", "Sarah", "Aoife", "Maria", "Julia", "Oliver", "George", "Harry", "Noah", "Jack",
               "Leo", "Arthur", "Thomas", "Lucas", "Louis", "Paul", "Felix", "Liam", "Sean", "Daniel", "James"]
LAST_NAMES = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Evans",
              "Martin", "Bernard", "Dubois", "Müller", "Schmidt", "Schneider", "Murphy", "Kelly", "O'Brien",
              "Garcia", "Martinez", "de Vries", "Jansen", "Miller", "Moore", "Clark", "Walker", "Wright"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.co.uk", "icloud.com", "web.de", "orange.fr"]
TYPO_DOMAINS = ["gmial.com", "outlok.com", "yaho.co.uk", "hotmial.co.uk", "icloud.co", "web.dee", "ornage.fr"]

# Valid mobile numbers per country: E.164 prefix and how many free digits follow (phonenumbers accepts these).
PHONE_PLANS = {"GB": ("+4478", 8), "FR": ("+3366", 7), "DE": ("+49151", 8), "IE": ("+35387", 7),
               "US": ("+12125", 6), "ES": ("+346", 8), "NL": ("+3161", 7)}


@dataclass(frozen=True)
class WorldSpec:
    """Sizes and seed of the demo world; the window is the ``days`` days ending on ``end_date`` (inclusive)."""

    people: int
    days: int
    seed: int
    end_date: dt.date
    #: Multiplies every person's visit and purchase rates: below 1, a large and mostly quiet customer base (the
    #: scores benchmark's 1M profiles with about ten events each) keeps the same behaviour per visit.
    activity: float = 1.0
    #: The window the people were drawn for (default: this one). A world grown by days (`grow`) keeps its people
    #: (sign-up dates, newsletter days, CRM touch days) and only adds days of behaviour.
    people_end: dt.date | None = None
    people_days: int | None = None

    @property
    def anchor_end(self) -> dt.date:
        return self.people_end or self.end_date

    @property
    def anchor_days(self) -> int:
        return self.people_days or self.days

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)

    @property
    def start_epoch(self) -> int:
        return calendar.timegm(self.start_date.timetuple())


@dataclass(frozen=True)
class World:
    """The hidden world: one row per person, per product, per session and per event."""

    people: DataFrame
    products: DataFrame
    sessions: DataFrame
    events: DataFrame
    order_lines: DataFrame


def product_id(idx: Column) -> Column:
    """Catalogue id of product number ``idx`` (0-based)."""
    return F.concat(F.lit("SKU-"), F.lpad(idx.cast("string"), 5, "0"))


def category_of(idx: Column) -> Column:
    return F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), (F.floor(idx / PRODUCTS_PER_CATEGORY) + 1).cast("int"))


def price_eur(seed: int, idx: Column) -> Column:
    """List price in EUR of product ``idx``: the category's base price spread 0.5x-1.7x, ending in .99."""
    base = F.element_at(F.array(*[F.lit(p) for p in CATEGORY_BASE_PRICE_EUR]),
                        (F.floor(idx / PRODUCTS_PER_CATEGORY) + 1).cast("int"))
    raw = base * (0.5 + 1.2 * uniform(seed, "price", idx))
    return F.greatest(F.floor(raw), F.lit(1.0)) - 0.01


def products(spark: SparkSession, seed: int) -> DataFrame:
    """The product catalogue: ``PRODUCTS_PER_CATEGORY`` products in each of the ``CATEGORIES``.

    Example:
        >>> products(spark, 42).columns                    # doctest: +SKIP
        ['product_id', 'name', 'category', 'price', 'currency']
    """
    idx = F.col("id")
    name = F.concat_ws(" ", F.initcap(category_of(idx)), pick(uniform(seed, "pname", idx), PRODUCT_NOUNS),
                       (idx % PRODUCTS_PER_CATEGORY + 1).cast("string"))
    return spark.range(len(CATEGORIES) * PRODUCTS_PER_CATEGORY, numPartitions=1).select(
        product_id(idx).alias("product_id"), name.alias("name"), category_of(idx).alias("category"),
        F.format_number(price_eur(seed, idx), 2).alias("price"), F.lit("EUR").alias("currency"))


def _table(values: list[object]) -> Column:
    return F.array(*[F.lit(v) for v in values])


def country_attr(code: Column, position: int) -> Column:
    """Attribute ``position`` of COUNTRIES (2 currency, 3 name, 4 alpha-3) for a country code column."""
    lookup = F.create_map(*[x for c in COUNTRIES for x in (F.lit(c[0]), F.lit(c[position]))])
    return F.element_at(lookup, code)


def people(spark: SparkSession, spec: WorldSpec) -> DataFrame:
    """One row per person with identities, behaviour parameters and preferences (all hidden ground truth).

    Built in layers (uniform draws, then values from them): a draw used by several expressions is computed
    once instead of being copied into each, which keeps Spark's plans and generated code small.

    Example:
        >>> people(spark, WorldSpec(10, 7, 1, date(2026, 11, 1))).select("person_id", "email").show()  # doctest: +SKIP
    """
    s = spec.seed
    pid = F.col("pid")
    salts = ["first", "last", "domain", "country", "customer", "phone", "dropout", "dropout2", "signup", "newsletter",
             "newsletter_day", "visit1", "visit2", "buy1", "buy2", "lifetime", "fav", "second", "consent_email",
             "consent_ads", "consent_analytics"]
    df = spark.range(spec.people).withColumnRenamed("id", "pid")
    df = df.withColumns({f"u_{x}": uniform(s, x, pid) for x in salts})
    df = df.withColumn("household", pid - pid % 2)
    df = df.withColumn("shared_devices", (uniform(s, "share", F.col("household")) < 0.08)
                       & (F.col("household") + 1 < spec.people))
    df = df.withColumn("device_base", F.when(F.col("shared_devices"), F.col("household")).otherwise(pid))
    u = {x: F.col(f"u_{x}") for x in salts}
    df = df.withColumns({
        "first_name": pick(u["first"], FIRST_NAMES), "last_name": pick(u["last"], LAST_NAMES),
        "country": weighted(u["country"], [(c[0], c[1]) for c in COUNTRIES]),
        "domain_idx": (F.floor(u["domain"] * len(DOMAINS)) + 1).cast("int"),
        "is_customer": u["customer"] < 0.6,
        "has_app": uniform(s, "app", F.col("device_base")) < 0.4,
        "web_draw": uniform(s, "web", F.col("device_base")),
        "dropout": 0.03 + 0.4 * u["dropout"] * u["dropout2"],
        "fav_cat": F.floor(u["fav"] * len(CATEGORIES)).cast("int"),
    })
    # Unique by construction: the local part carries the person number, as real addresses often carry a number.
    local = F.lower(F.concat(F.translate("first_name", "éü' ", "eu"), F.lit("."), F.translate("last_name", "éü' ", "eu"),
                             pid.cast("string")))
    plans = F.create_map(*[x for c, (prefix, _) in PHONE_PLANS.items() for x in (F.lit(c), F.lit(prefix))])
    digits = F.create_map(*[x for c, (_, n) in PHONE_PLANS.items() for x in (F.lit(c), F.lit(n))])
    df = df.withColumns({"local": local, "n_digits": F.element_at(digits, F.col("country"))})
    # 7919 is coprime with 10^8, so this is a permutation of person numbers: unique, but not in person order.
    customer_number = (pid * 7919 + 104729) % 100_000_000
    phone_number = (pid * 7919 + (u["phone"] * 1e6).cast("long")) % F.pow(F.lit(10), F.col("n_digits")).cast("long")
    return df.select(
        pid,
        F.concat(F.lit("P"), F.lpad(pid.cast("string"), 8, "0")).alias("person_id"),
        "first_name", "last_name", "country",
        F.concat("local", F.lit("@"), F.element_at(_table(DOMAINS), F.col("domain_idx"))).alias("email"),
        F.concat("local", F.lit("@"), F.element_at(_table(TYPO_DOMAINS), F.col("domain_idx"))).alias("typo_email"),
        F.concat(F.element_at(plans, F.col("country")),
                 F.lpad(phone_number.cast("string"), F.col("n_digits"), "0")).alias("phone"),
        "is_customer",
        F.when(F.col("is_customer"), F.concat(F.lit("C"), F.lpad(customer_number.cast("string"), 8, "0"))).alias("customer_id"),
        F.date_sub(F.lit(spec.anchor_end), F.floor(u["signup"] * 730).cast("int")).alias("signup_date"),
        F.when(u["newsletter"] < 0.2, F.floor(u["newsletter_day"] * spec.anchor_days)).cast("int").alias("newsletter_day"),
        (F.least(lognormal(u["visit1"], u["visit2"], 0.25, 0.9), F.lit(3.0)) * spec.activity).alias("visit_rate"),
        (F.least(lognormal(u["buy1"], u["buy2"], 0.02, 0.8), F.lit(0.5)) * spec.activity).alias("buy_rate"),
        "dropout",
        # Purchases before dropping out: geometric with parameter `dropout` (BG/NBD's dropout after each purchase).
        (F.floor(F.log(1.0 - u["lifetime"]) / F.log(1.0 - F.col("dropout"))) + 1).cast("int").alias("lifetime_purchases"),
        "shared_devices", ((F.col("web_draw") < 0.92) | ~F.col("has_app")).alias("has_web"), "has_app",
        "fav_cat",
        ((F.col("fav_cat") + 1 + F.floor(u["second"] * (len(CATEGORIES) - 1))) % len(CATEGORIES)).cast("int").alias("second_cat"),
        (u["consent_email"] < 0.55).alias("email_marketing"), (u["consent_ads"] < 0.4).alias("ads_personalisation"),
        (u["consent_analytics"] < 0.7).alias("analytics"),
    )


def sessions(people_df: DataFrame, spec: WorldSpec) -> DataFrame:
    """One row per visit: browse sessions, one purchase session per purchase day, one newsletter-signup session,
    research sessions in the days before a purchase (some abandon a cart: ``abandons_cart``).

    Adds the device used (``owner``: whose device; a shared-household member often uses the partner's), the
    channel, whether the person logs in, and for web the cookie generation of the browser.
    """
    s = spec.seed
    spark = people_df.sparkSession
    pid, day = F.col("pid"), F.col("day_idx")
    days = spark.range(spec.days).withColumnRenamed("id", "day_idx")
    pd_ = people_df.crossJoin(days).withColumns({"u_buy": uniform(s, "buy", pid, day),
                                                  "u_visits": uniform(s, "visits", pid, day)})
    by_person = Window.partitionBy("pid").orderBy("day_idx").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    pd_ = pd_.withColumn("_buys", F.col("u_buy") < 1.0 - F.exp(-F.col("buy_rate")))
    pd_ = pd_.withColumn("_nth", F.sum(F.col("_buys").cast("int")).over(by_person))
    pd_ = pd_.withColumn("_purchase", F.col("_buys") & (F.col("_nth") <= F.col("lifetime_purchases")))  # then drops out
    # Consideration phase: a purchase within the next RESEARCH_DAYS days brings research visits today.
    ahead = Window.partitionBy("pid").orderBy("day_idx").rangeBetween(1, RESEARCH_DAYS)
    pd_ = pd_.withColumn("_buy_soon", F.coalesce(F.max(F.col("_purchase").cast("int")).over(ahead), F.lit(0)) == 1)
    n_research = F.when(F.col("_buy_soon"), poisson(uniform(s, "research", pid, day), F.lit(RESEARCH_VISITS_PER_DAY),
                                                    3)).otherwise(0)
    n_browse = poisson(F.col("u_visits"), F.col("visit_rate"), 5)
    none = F.array().cast("array<string>")
    kinds = F.concat(F.array_repeat(F.lit("browse"), n_browse),
                     F.when(F.col("_purchase"), F.array(F.lit("purchase"))).otherwise(none),
                     F.when(F.col("newsletter_day") == day, F.array(F.lit("signup"))).otherwise(none),
                     F.array_repeat(F.lit("research"), n_research))  # last: earlier sessions keep their numbers
    sess = pd_.select("*", F.posexplode(kinds).alias("sess_no", "kind")).drop(
        "_buys", "_nth", "_purchase", "_buy_soon", "u_buy", "u_visits")
    keys = (pid, day, F.col("sess_no"))
    salts = ["channel", "shared_use", "start", "login", "views", "qa", "clear_cookies", "abandon"]
    sess = sess.withColumns({f"u_{x}": uniform(s, x, *keys) for x in salts})
    u = {x: F.col(f"u_{x}") for x in salts}
    both = F.col("has_web") & F.col("has_app")
    channel = (F.when(F.col("kind") == "signup", "web")  # newsletter forms live on the website
               .when(both, F.when(u["channel"] < 0.5, "web").otherwise("app"))
               .when(F.col("has_app"), "app").otherwise("web"))
    owner = F.when(F.col("shared_devices") & (pid % 2 == 1) & (u["shared_use"] < 0.6), pid - 1).otherwise(pid)
    start = F.lit(spec.start_epoch) + day * DAY_SECONDS + F.floor(u["start"] * DAY_SECONDS * 0.98).cast("long")
    login = F.col("is_customer") & ((F.col("kind") == "purchase") | (u["login"] < 0.3))
    sess = sess.withColumns({
        "channel": channel, "owner": owner, "start_epoch": start, "login": login,
        "n_views": 1 + poisson(u["views"], F.lit(2.5), 8), "qa_traffic": u["qa"] < 0.004,
        "abandons_cart": u["abandon"] < F.when(F.col("kind") == "research", RESEARCH_CART_SHARE)
        .when(F.col("kind") == "browse", BROWSE_CART_SHARE).otherwise(0.0),
    })
    # Cookie churn: a browser (owner + web) gets a new cookie after COOKIE_TTL_DAYS without a visit, or at random
    # when the user clears cookies. The browser is the owner's, so both members of a household share its cookie.
    browser = Window.partitionBy("owner", "channel").orderBy("start_epoch", "pid", "sess_no")
    sess = sess.withColumn("_gap", F.col("start_epoch") - F.lag("start_epoch").over(browser))
    new_cookie = F.col("_gap").isNull() | (F.col("_gap") > COOKIE_TTL_DAYS * DAY_SECONDS) | (u["clear_cookies"] < 0.02)
    sess = sess.withColumn("_new", new_cookie.cast("int"))
    generation = F.sum("_new").over(browser.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    sess = sess.withColumn("cookie_gen", generation).drop("_new", "_gap", *[f"u_{x}" for x in salts])
    sess = sess.withColumns({"platform": F.when(uniform(s, "platform", F.col("owner")) < 0.5, "ios").otherwise("android"),
                             "u_att": uniform(s, "att", F.col("owner"))})
    # App Tracking Transparency: most iOS users opt out; the OS then reports an all-zero advertising id.
    opted_out = F.col("u_att") < F.when(F.col("platform") == "ios", 0.6).otherwise(0.12)
    return sess.select(
        "*",
        F.when(F.col("channel") == "web", uuid(s, "cookie", F.col("owner"), F.col("cookie_gen"))).alias("cookie_id"),
        uuid(s, "device", F.col("owner")).alias("device_id"), opted_out.alias("ad_opted_out"),
    ).drop("u_att")


def slot_epoch(seed: int, slot: Column) -> Column:
    """Event time (epoch seconds) of ``slot`` in the session of the current row."""
    jitter = F.floor(uniform(seed, "gap", F.col("pid"), F.col("day_idx"), F.col("sess_no"), slot) * SLOT_SECONDS)
    return F.col("start_epoch") + slot * SLOT_SECONDS + jitter.cast("long")


def product_for(seed: int, slot: Column) -> Column:
    """Product index viewed at ``slot`` of the current row's session: 55% favourite category, 25% second, 20% any."""
    keys = (F.col("pid"), F.col("day_idx"), F.col("sess_no"), slot)
    u = uniform(seed, "cat", *keys)  # referenced twice below: materialise the caller's slot first (see events)
    cat = (F.when(u < 0.55, F.col("fav_cat")).when(u < 0.80, F.col("second_cat"))
           .otherwise(F.floor(uniform(seed, "anycat", *keys) * len(CATEGORIES)).cast("int")))
    return cat * PRODUCTS_PER_CATEGORY + F.floor(uniform(seed, "prod", *keys) * PRODUCTS_PER_CATEGORY).cast("int")


def order_id(seed: int) -> Column:
    from cdp_spark.demo.rand import hex_id

    return F.concat(F.lit("ORD-"), hex_id(seed, "order", F.col("pid"), F.col("day_idx"), F.col("sess_no")))


def events(sessions_df: DataFrame, spec: WorldSpec) -> DataFrame:
    """One row per event of a session: landing page, login, newsletter signup, product views, cart, order.

    Slots: 0 landing, 1 login, 2 signup, 3..2+n_views product views, then add-to-cart and order for purchases
    (add-to-cart alone for the sessions that abandon their cart).
    """
    s = spec.seed
    slot = F.col("slot")
    n = F.col("n_views")
    buying = F.col("kind") == "purchase"
    kind = (F.when(slot == 0, "landing").when(slot == 1, F.when(F.col("login"), "login"))
            .when(slot == 2, F.when(F.col("kind") == "signup", "signup"))
            .when(slot <= n + 2, "view").when(slot == n + 3, F.when(buying | F.col("abandons_cart"), "cart"))
            .when(slot == n + 4, F.when(buying, "order")))
    ev = sessions_df.select("*", F.explode(F.sequence(F.lit(0), n + 4)).alias("slot"))
    ev = ev.withColumn("event_kind", kind).where(F.col("event_kind").isNotNull())
    viewed = F.when(F.col("event_kind") == "view", product_for(s, slot)).when(
        F.col("event_kind") == "cart", product_for(s, n + 2))  # the last product viewed goes into the cart
    return ev.select(
        "*", slot_epoch(s, slot).alias("event_epoch"), viewed.alias("product_idx"),
        F.when(F.col("event_kind") == "order", order_id(s)).alias("order_id"),
        (F.col("login") & (slot >= 1)).alias("logged_in"),
    )


def order_lines(sessions_df: DataFrame, spec: WorldSpec) -> DataFrame:
    """One row per item of each purchase: the last product viewed plus 0-2 more from the person's preferences."""
    s = spec.seed
    keys = (F.col("pid"), F.col("day_idx"), F.col("sess_no"))
    buys = sessions_df.where(F.col("kind") == "purchase")
    n_items = 1 + (uniform(s, "items1", *keys) < 0.35).cast("int") + (uniform(s, "items2", *keys) < 0.12).cast("int")
    lines = buys.select("*", F.explode(F.sequence(F.lit(0), n_items - 1)).alias("line_no"))
    line = F.col("line_no")
    product = F.when(line == 0, product_for(s, F.col("n_views") + 2)).otherwise(product_for(s, line + 100))
    lkeys = (*keys, line)
    quantity = 1 + (uniform(s, "qty1", *lkeys) < 0.15).cast("int") + (uniform(s, "qty2", *lkeys) < 0.05).cast("int")
    foreign = uniform(s, "fx_mix", *keys) < 0.06
    currency = F.when(foreign, pick(uniform(s, "fx_pick", *keys), FOREIGN_CURRENCIES)).otherwise(country_attr(F.col("country"), 2))
    lines = lines.withColumns({"order_id": order_id(s), "order_epoch": slot_epoch(s, F.col("n_views") + 4),
                               "product_idx": product, "quantity": quantity, "currency": currency})
    rates = F.create_map(*[x for c, r in FX_TO_EUR.items() for x in (F.lit(c), F.lit(r))])
    lines = lines.withColumn("_local_price", price_eur(s, F.col("product_idx")) / F.element_at(rates, F.col("currency")))
    unit_price = F.when(F.col("currency") == "JPY", F.round("_local_price", 0)).otherwise(F.round("_local_price", 2))
    return lines.withColumn("unit_price", unit_price).drop("_local_price")


def build_world(spark: SparkSession, spec: WorldSpec) -> World:
    """People, products, sessions (cached: every output reads them), events and order lines.

    Example:
        >>> w = build_world(spark, WorldSpec(200, 10, 42, date(2026, 11, 1)))    # doctest: +SKIP
    """
    from pyspark import StorageLevel

    ppl = people(spark, spec)
    sess = sessions(ppl, spec).persist(StorageLevel.MEMORY_AND_DISK)
    return World(people=ppl, products=products(spark, spec.seed), sessions=sess,
                 events=events(sess, spec), order_lines=order_lines(sess, spec))
