"""Tables written by the scores stage: per-profile scores, affinities and product recommendations.

Each holds the latest run only (overwritten per as-of); the ``as_of`` column says which run produced it.
"""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _I, _L, _D, _DT = T.StringType(), T.IntegerType(), T.LongType(), T.DoubleType(), T.DateType()

PROFILE_SCORES = TableSpec(
    name="gold.profile_scores",
    description="One row per profile: RFM, CLV (BG/NBD + Gamma-Gamma) and propensity scores of the latest scores "
                "run. Null where a model was skipped for lack of data or cannot score the profile "
                "(e.g. CLV before a first purchase).",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _DT, "as-of date of the scores run"),
        Column("rfm_recency_days", _I, "days from the last purchase to the as-of date (null: never purchased)"),
        Column("rfm_frequency", _L, "purchases up to the as-of date (0: never purchased)"),
        Column("rfm_monetary", _D, "purchase value in the reporting currency, total or average (scores.rfm.monetary)"),
        Column("rfm_r", _I, "recency score 1..bins (bins = most recent); tie rule in docs/models.md"),
        Column("rfm_f", _I, "frequency score 1..bins"),
        Column("rfm_m", _I, "monetary score 1..bins"),
        Column("rfm_segment", _S, "first matching segment rule (Champions, Loyal, ..., Lost)"),
        Column("clv_horizon_days", _I, "horizon of expected_purchases and clv, in days"),
        Column("expected_purchases", _D, "BG/NBD expected purchases over the horizon"),
        Column("p_alive", _D, "BG/NBD probability that the customer is still active"),
        Column("clv", _D, "discounted expected revenue over the horizon (reporting currency)"),
        Column("clv_percentile", _D, "share of scored customers (0-100) with a CLV at most this one's"),
        Column("propensity_purchase", _D, "probability of a purchase within scores.propensity.purchase_days"),
        Column("propensity_churn", _D, "probability of no purchase within scores.propensity.churn_days "
                                       "(customers with a past purchase only)"),
        Column("model_versions", T.MapType(_S, _S), "registered model name -> version used for these scores"),
    ],
    keys=("profile_id",),
)

AFFINITIES = TableSpec(
    name="gold.affinities",
    description="Top values per profile and dimension by exponentially decayed, weighted engagement "
                "(views, add-to-carts, purchases), normalised per profile.",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _DT, "as-of date of the scores run"),
        Column("dimension", _S, "what the affinity is for, e.g. category"),
        Column("value", _S, "the dimension's value, e.g. books"),
        Column("score", _D, "normalised decayed engagement, 0-1"),
        Column("band", _S, "Low (< 0.3), Some (0.3-0.6) or High (> 0.6)"),
        Column("rank", _I, "1 = the profile's strongest value in the dimension"),
    ],
    keys=("profile_id", "dimension", "value"),
)

RECOMMENDATIONS = TableSpec(
    name="gold.recommendations",
    description="Top-K products per profile from implicit-feedback ALS (Spark ML).",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _DT, "as-of date of the scores run"),
        Column("product_id", _S, "recommended product"),
        Column("score", _D, "ALS preference score (higher is stronger; not a probability)"),
        Column("rank", _I, "1 = the strongest recommendation"),
    ],
    keys=("profile_id", "product_id"),
)

TABLES = [PROFILE_SCORES, AFFINITIES, RECOMMENDATIONS]
