"""Typed settings of the `scores` stage (`conf/scores.yaml`): events, RFM, CLV, affinities, recommendations,
propensity and the MLflow tracking store.

The defaults are production-minded (``min_events`` 10,000 per model, as Zeotap requires for predictive models);
the shipped demo configuration lowers them so that the small demo retailer still gets every score.

Example:
    >>> cfg = ScoresConfig()
    >>> cfg.clv.min_events, cfg.affinity.weights["purchase"], cfg.mlflow.experiment
    (10000, 5.0, 'cdp-scores')
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from cdp_spark.config_base import Strict

EVENT_TYPES = ("purchase", "cart", "view")


def _default_events() -> dict[str, list[str]]:
    # Both spellings the demo's sources deliver: Segment-style web events and snake_case app/order events.
    return {
        "purchase": ["order_completed", "Order Completed"],
        "cart": ["add_to_cart", "Product Added"],
        "view": ["product_viewed", "Product Viewed"],
    }


class RfmSettings(Strict):
    """RFM scores (see :mod:`cdp_spark.ml.rfm` for the tie rule)."""

    bins: int = Field(5, ge=2, le=10, description="score range 1..bins per measure")
    monetary: Literal["total", "average"] = Field("total", description="revenue summed or averaged per purchase")
    relative_error: float = Field(1e-3, ge=0.0, lt=0.5, description="approxQuantile rank error (0 = exact)")
    segments: list[dict[str, Any]] | None = Field(
        None, description="ordered rules {name, r, f, m, fm: [low, high]}; first match wins; default: the R x F grid")
    min_events: NonNegativeInt = Field(1, description="skip RFM below this many purchase events")

    @field_validator("segments")
    @classmethod
    def _rules(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:
            from cdp_spark.ml.rfm import SegmentRule

            if not value:
                raise ValueError("segments must hold at least one rule (or be omitted for the default grid)")
            for spec in value:
                SegmentRule.from_mapping(spec)  # raises ValueError with the offending key
        return value


class ClvSettings(Strict):
    """BG/NBD + Gamma-Gamma customer lifetime value."""

    time_unit: Literal["D", "W"] = Field("W", description="model period: days or Monday-Sunday weeks")
    horizon_months: PositiveInt = Field(12, description="CLV horizon in months")
    discount_rate: float = Field(0.01, ge=0.0, lt=1.0, description="monthly discount rate")
    holdout_days: PositiveInt = Field(
        90, description="calibration/holdout evaluation: the last N days are predicted from the earlier ones")
    max_fit_rows: PositiveInt = Field(1_000_000, description="fit on a deterministic hash sample above this size")
    min_events: NonNegativeInt = Field(10_000, description="skip CLV below this many purchase events")
    min_repeat_buyers: PositiveInt = Field(
        20, description="skip CLV when fewer customers bought twice (the models cannot be identified)")


class AffinitySettings(Strict):
    """Decayed engagement per profile and dimension value."""

    dimensions: list[str] = Field(
        default_factory=lambda: ["category"],
        description="event columns (e.g. category) or properties.<key> (a key of the event's JSON properties)")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 5.0},
        description="weight per event type (keys of scores.events)")
    half_life_days: PositiveFloat = Field(30.0, description="an event's weight halves every this many days")
    lookback_days: PositiveInt = Field(365, description="ignore events older than this")
    normalise: Literal["max", "sum"] = Field(
        "max", description="max: the profile's top value scores 1; sum: scores are shares summing to 1")
    top_n: PositiveInt = Field(5, description="values kept per profile and dimension")
    bands: dict[str, float] = Field(
        default_factory=lambda: {"some": 0.3, "high": 0.6},
        description="Low below `some`, Some from `some` to `high`, High above `high` (Lytics' bands)")
    min_events: NonNegativeInt = Field(10_000, description="skip affinities below this many weighted events")

    @model_validator(mode="after")
    def _check(self) -> "AffinitySettings":
        if set(self.bands) != {"some", "high"} or not 0.0 < self.bands["some"] < self.bands["high"] < 1.0:
            raise ValueError("bands needs some and high with 0 < some < high < 1")
        if not self.weights or any(w <= 0 for w in self.weights.values()):
            raise ValueError("weights must be positive")
        return self


class RecommendationSettings(Strict):
    """Spark ML ALS on implicit feedback (weighted views, carts and purchases per product)."""

    enabled: bool = True
    top_k: PositiveInt = Field(10, description="products recommended per profile")
    rank: PositiveInt = Field(16, description="latent factors")
    reg_param: PositiveFloat = Field(0.1, description="L2 regularisation")
    alpha: PositiveFloat = Field(10.0, description="implicit-feedback confidence scale")
    max_iter: PositiveInt = Field(10, description="ALS iterations")
    blocks: PositiveInt | None = Field(
        None, description="ALS user and item blocks (default: Spark's default parallelism). Each block receives "
        "a copy of every factor it needs in every iteration, so blocks beyond the cores only add shuffle")
    seed: int = 7
    eval_days: PositiveInt = Field(7, description="precision@K/NDCG on the purchases of the last N days")
    eval_max_users: PositiveInt = Field(
        100_000, description="the evaluation fit uses a stable hash sample of about this many profiles")
    min_events: NonNegativeInt = Field(10_000, description="skip ALS below this many interaction events")


class PropensitySettings(Strict):
    """Scikit-learn classifiers for purchase in the next N days and churn (no purchase in M days)."""

    purchase_days: PositiveInt = Field(30, description="N: purchase propensity window")
    churn_days: PositiveInt = Field(60, description="M: a customer churns when they do not buy in M days")
    holdout_share: float = Field(0.25, gt=0.0, lt=0.9, description="profiles (by hash) kept out for the AUC")
    snapshots: PositiveInt = Field(
        4, le=52, description="training snapshots: cutoffs as_of - N days, as_of - 2N days, ... (label windows "
        "of N days each, so small shops get more training rows)")
    regularisation_c: PositiveFloat = Field(
        0.1, description="logistic: inverse L2 strength (sklearn's C; smaller = stronger regularisation)")
    model: Literal["logistic", "gradient_boosting"] = Field(
        "logistic", description="logistic regression on log-scaled features, or histogram gradient boosting")
    max_train_rows: PositiveInt = Field(500_000, description="train on a deterministic hash sample above this size")
    max_iter: PositiveInt = Field(200, description="gradient boosting iterations (model: gradient_boosting)")
    learning_rate: PositiveFloat = Field(0.05, le=1.0)
    max_leaf_nodes: PositiveInt = Field(15)
    min_events: NonNegativeInt = Field(10_000, description="skip the models below this many purchase events")
    min_positives: PositiveInt = Field(20, description="skip a model with fewer positive (or negative) labels")


class MlflowSettings(Strict):
    """Where runs and registered models go."""

    tracking_uri: str | None = Field(
        None, description="a tracking server; MLFLOW_TRACKING_URI wins; default sqlite under <lake.root>/_system/mlflow")
    registry_uri: str | None = Field(None, description="defaults to the tracking URI")
    experiment: str = "cdp-scores"
    model_prefix: str = Field("cdp_", description="registered model names: <prefix>clv_bgnbd, <prefix>propensity_...")


class ScoresConfig(Strict):
    """The `scores` domain."""

    events: dict[str, list[str]] = Field(
        default_factory=_default_events, description="event type (purchase, cart, view) -> event names")
    value_field: str = Field("revenue_reporting", description="purchase value column (reporting currency)")
    rfm: RfmSettings = Field(default_factory=RfmSettings)
    clv: ClvSettings = Field(default_factory=ClvSettings)
    affinity: AffinitySettings = Field(default_factory=AffinitySettings)
    recommendations: RecommendationSettings = Field(default_factory=RecommendationSettings)
    propensity: PropensitySettings = Field(default_factory=PropensitySettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)

    @model_validator(mode="after")
    def _check(self) -> "ScoresConfig":
        if "purchase" not in self.events or not self.events["purchase"]:
            raise ValueError("events.purchase must name at least one event")
        unknown = set(self.affinity.weights) - set(self.events)
        if unknown:
            raise ValueError(f"affinity.weights names event types missing from events: {sorted(unknown)}")
        return self
