"""The profile view: the one typed read API over profiles, attributes and scores that every other stage uses.

Columns (``view_schema`` gives them from config alone, without Spark data):

- ``profile_id`` string; ``identifiers`` map<string, array<string>> (id type -> values);
- ``traits`` struct: one field per catalogue trait, typed by the catalogue (e.g. ``birth_date`` date);
- ``attributes`` struct: one field per calculated attribute of ``conf/attributes.yaml``, typed by its kind
  (counts bigint, sums/avgs/min/max double, selectors string, unique lists array<string>, recency int days,
  formulas their declared type);
- ``consent`` map<string, string>: every catalogue consent purpose -> ``granted`` / ``denied`` / ``unknown``;
- ``consent_at`` map<string, timestamp>: purpose -> time of the deciding explicit decision (absent for a source's
  default); ``consent_source`` map<string, string>: purpose -> the source whose entry decided it;
- ``first_seen``, ``last_seen`` timestamps; ``sources`` array<string>; ``updated_at`` timestamp;
- ``scores`` struct (``gold.profile_scores`` columns minus profile_id): only when that table exists.

Example:
    >>> view = profile_view(spark, config, lake)                                          # doctest: +SKIP
    >>> view.where("attributes.orders_lifetime > 2").select("profile_id", "traits.country").show()  # doctest: +SKIP
    >>> "email_marketing" in view_schema(config)["consent"].dataType.simpleString()       # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.profiles.tables import PROFILE_ATTRIBUTES, PROFILES

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

SCORES_TABLE = "gold.profile_scores"

# The scores contract (used when the scores stage's TableSpec is not installed).
_SCORES_CONTRACT = T.StructType([
    T.StructField("as_of", T.DateType()), T.StructField("rfm_recency_days", T.IntegerType()),
    T.StructField("rfm_frequency", T.LongType()), T.StructField("rfm_monetary", T.DoubleType()),
    T.StructField("rfm_r", T.IntegerType()), T.StructField("rfm_f", T.IntegerType()),
    T.StructField("rfm_m", T.IntegerType()), T.StructField("rfm_segment", T.StringType()),
    T.StructField("clv_horizon_days", T.IntegerType()), T.StructField("expected_purchases", T.DoubleType()),
    T.StructField("p_alive", T.DoubleType()), T.StructField("clv", T.DoubleType()),
    T.StructField("clv_percentile", T.DoubleType()), T.StructField("propensity_purchase", T.DoubleType()),
    T.StructField("propensity_churn", T.DoubleType()),
    T.StructField("model_versions", T.MapType(T.StringType(), T.StringType())),
])

_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(), "long": T.LongType(), "double": T.DoubleType(), "boolean": T.BooleanType(),
    "date": T.DateType(), "timestamp": T.TimestampType(), "int": T.IntegerType(),
    "array<string>": T.ArrayType(T.StringType()),
}


def spark_type(name: str) -> T.DataType:
    """Spark type of a catalogue / attribute type name.

    Example:
        >>> spark_type("date").simpleString()
        'date'
    """
    return _TYPES[name]


def trait_fields(config: "CdpConfig") -> list[tuple[str, str]]:
    """(trait, type) for every catalogue trait, in catalogue order."""
    return [(n, f.type) for n, f in config.catalogue.fields.items() if f.group == "trait"]


def consent_purposes(config: "CdpConfig") -> list[str]:
    """The catalogue's consent purposes, in catalogue order."""
    return config.catalogue.group("consent")


def traits_type(config: "CdpConfig") -> T.StructType:
    return T.StructType([T.StructField(n, spark_type(t)) for n, t in trait_fields(config)])


def attributes_type(config: "CdpConfig") -> T.StructType:
    attrs = _attributes(config)
    return T.StructType([T.StructField(n, spark_type(a.value_type)) for n, a in attrs.items()])


def scores_type() -> T.StructType:
    """gold.profile_scores' columns minus profile_id: from its TableSpec when installed, else the contract."""
    from cdp_spark.lake.registry import default_registry

    registry = default_registry()
    if SCORES_TABLE in registry:
        return T.StructType([f for f in registry[SCORES_TABLE].schema.fields if f.name != "profile_id"])
    return _SCORES_CONTRACT


def view_schema(config: "CdpConfig", *, with_scores: bool = True) -> T.StructType:
    """The profile view's schema from config alone (for load-time checks of audience rules and the API).

    ``scores`` is included by default since rules may name scores before the first scoring run; pass
    ``with_scores=False`` for the view of a lake without ``gold.profile_scores``.

    Example:
        >>> from cdp_spark.config import CdpConfig
        >>> [f.name for f in view_schema(CdpConfig(), with_scores=False)]
        ['profile_id', 'identifiers', 'traits', 'attributes', 'consent', 'consent_at', 'consent_source', 'first_seen', 'last_seen', 'sources', 'updated_at']
    """
    s = T.StringType()
    fields = [
        T.StructField("profile_id", s, False),
        T.StructField("identifiers", T.MapType(s, T.ArrayType(s))),
        T.StructField("traits", traits_type(config)),
        T.StructField("attributes", attributes_type(config)),
        T.StructField("consent", T.MapType(s, s)),
        T.StructField("consent_at", T.MapType(s, T.TimestampType())),
        T.StructField("consent_source", T.MapType(s, s)),
        T.StructField("first_seen", T.TimestampType()),
        T.StructField("last_seen", T.TimestampType()),
        T.StructField("sources", T.ArrayType(s)),
        T.StructField("updated_at", T.TimestampType()),
    ]
    if with_scores:
        fields.append(T.StructField("scores", scores_type()))
    return T.StructType(fields)


def typed_traits(traits: "F.Column | str", config: "CdpConfig") -> F.Column:
    """map<string,string> of merged traits -> the typed ``traits`` struct (bad values become null)."""
    col = F.col(traits) if isinstance(traits, str) else traits
    fields = trait_fields(config)
    if not fields:
        return F.lit(None).cast(T.StructType([]))
    return F.struct(*[F.element_at(col, F.lit(n)).try_cast(spark_type(t)).alias(n) for n, t in fields])


def typed_consent(consent: "F.Column | str", config: "CdpConfig") -> F.Column:
    """Stored consent map -> a map holding every catalogue purpose (``unknown`` when nothing was recorded)."""
    col = F.col(consent) if isinstance(consent, str) else consent
    purposes = consent_purposes(config)
    if not purposes:
        return F.create_map().cast(T.MapType(T.StringType(), T.StringType()))
    pairs = []
    for p in purposes:
        pairs += [F.lit(p), F.coalesce(F.element_at(col, F.lit(p)), F.lit("unknown"))]
    return F.create_map(*pairs)


def _stored_map(profiles: DataFrame, name: str, value_type: T.DataType) -> F.Column:
    """A stored map column, or an empty map for a table written before the column existed."""
    empty = F.create_map().cast(T.MapType(T.StringType(), value_type))
    return (F.coalesce(F.col(name), empty) if name in profiles.columns else empty).alias(name)


def latest_attributes(lake: "Lake") -> DataFrame | None:
    """The newest as-of partition of gold.profile_attributes (profile_id, as_of, attributes JSON), or None."""
    if not lake.exists(PROFILE_ATTRIBUTES.name):
        return None
    attrs = lake.read(PROFILE_ATTRIBUTES.name)
    newest = attrs.agg(F.max("as_of").alias("m")).collect()[0]["m"]
    if newest is None:
        return None
    return attrs.where(F.col("as_of") == F.lit(newest))


def profile_view(spark: "SparkSession", config: "CdpConfig", lake: "Lake") -> DataFrame:
    """Every profile with typed traits, attributes (newest as-of), consent and, when scored, scores.

    Empty, with ``view_schema``'s columns, before the first profiles run.

    Example:
        >>> profile_view(spark, config, lake).select("profile_id", "attributes.logins_last_7_days").show(3)  # doctest: +SKIP
    """
    has_scores = lake.exists(SCORES_TABLE)
    schema = view_schema(config, with_scores=has_scores)
    if not lake.exists(PROFILES.name):
        return spark.createDataFrame([], schema)
    profiles = lake.read(PROFILES.name)
    attrs_type = attributes_type(config)
    attrs = latest_attributes(lake)
    if attrs is not None and attrs_type.fields:
        parsed = attrs.select("profile_id", F.from_json("attributes", attrs_type).alias("_attrs"))
        profiles = profiles.join(parsed, "profile_id", "left")
    else:
        profiles = profiles.withColumn("_attrs", F.lit(None).cast(attrs_type))
    cols = [
        F.col("profile_id"), F.col("identifiers"), typed_traits("traits", config).alias("traits"),
        F.col("_attrs").cast(attrs_type).alias("attributes"), typed_consent("consent", config).alias("consent"),
        _stored_map(profiles, "consent_at", T.TimestampType()), _stored_map(profiles, "consent_source", T.StringType()),
        "first_seen", "last_seen", "sources", "updated_at",
    ]
    if has_scores:
        scores = lake.read(SCORES_TABLE)
        if "as_of" in scores.columns:  # keep each profile's newest score row
            newest = Window.partitionBy("profile_id").orderBy(F.col("as_of").desc())
            scores = scores.withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n")
        score_cols = [c for c in scores.columns if c != "profile_id"]
        scores = scores.select("profile_id", F.struct(*score_cols).alias("scores"))
        profiles = profiles.join(scores, "profile_id", "left")
        cols.append("scores")
    out = profiles.select(*cols)
    # Cast to the declared schema so nullability/ordering match `view_schema` exactly.
    return out.select(*[F.col(f.name).cast(f.dataType).alias(f.name) if f.name != "scores" else F.col("scores")
                        for f in schema.fields])


def _attributes(config: "CdpConfig") -> dict:
    cfg = getattr(config, "attributes", None)
    return dict(cfg.attributes) if cfg is not None else {}
