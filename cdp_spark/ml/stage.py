"""The `scores` stage: RFM, CLV, propensity, affinities and recommendations for every profile, tracked in MLflow.

:func:`compute` is the whole stage without table writes (a notebook can call it and inspect the DataFrames);
:func:`run` adds the idempotency check and the writes. Each model is skipped, with a reason in the stage
metrics (the ledger), when its events are below the configured minimum or it cannot be identified; its
columns are then null. Trained models are registered in MLflow (champion/challenger) and scores always come
from the ``@champion`` version.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))         # doctest: +SKIP
    >>> result.metrics["models"]["clv"]["status"]                     # doctest: +SKIP
    'scored'
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.identity.components import materialise
from cdp_spark.ml import STAGE
from cdp_spark.ml import affinity as aff
from cdp_spark.ml import btyd, clv, propensity, rfm
from cdp_spark.ml.config import ScoresConfig
from cdp_spark.ml.events import event_type_column, purchases
from cdp_spark.ml.tables import AFFINITIES, PROFILE_SCORES, RECOMMENDATIONS
from cdp_spark.pipeline import StageResult, stage_token
from cdp_spark.profiles.view import profile_view

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)


@dataclass
class ScoreOutputs:
    """The three output tables as DataFrames, and the metrics for the ledger."""

    profile_scores: DataFrame
    affinities: DataFrame | None
    recommendations: DataFrame | None
    metrics: dict[str, Any] = field(default_factory=dict)


def settings(config: "CdpConfig") -> ScoresConfig:
    """The scores settings of a config (defaults when the domain file is absent)."""
    return getattr(config, "scores", None) or ScoresConfig()


def _skip(reason: str) -> dict[str, Any]:
    log.warning("scores: %s", reason)
    return {"status": "skipped", "reason": reason}


def _profile_view(spark: SparkSession, config: "CdpConfig", lake: "Lake") -> DataFrame | None:
    """The profile view once gold.profiles exists (optional input: traits)."""
    try:
        if "gold.profiles" not in lake.registry or not lake.exists("gold.profiles"):
            return None
        return profile_view(spark, config, lake)
    except Exception as exc:  # an optional input must not fail the scores
        log.warning("scores: profile view unavailable (%s); using event features only", type(exc).__name__)
        return None


# ---------------------------------------------------------------------------------------------- compute


MODEL_EVENT_COLUMNS = ("profile_id", "event_id", "event_name", "event_time", "event_date", "order_id", "product_id",
                       "category")


def model_columns(cfg: ScoresConfig, available: list[str]) -> list[str]:
    """The event columns the models read, in table order: the fixed ones, the value field and the affinity
    dimensions' columns. The events are materialised once for all models, so the rest of a bronze row (raw
    properties, context, identifiers) would only fill memory: at 10M events it took several GB per partition.

    Example:
        >>> model_columns(ScoresConfig(), ["event_id", "context", "profile_id", "revenue_reporting"])
        ['event_id', 'profile_id', 'revenue_reporting']
    """
    wanted = {*MODEL_EVENT_COLUMNS, cfg.value_field, *(d.split(".", 1)[0] for d in cfg.affinity.dimensions)}
    return [c for c in available if c in wanted]


def compute(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> ScoreOutputs:
    """Every model of the stage for ``as_of``, returned as DataFrames (tracked in MLflow, nothing written)."""
    from cdp_spark.identity.lookup import profile_events
    from cdp_spark.ml import tracking

    cfg = settings(config)
    clock = _Clock()
    events = profile_events(spark, config, lake, as_of, stage="scores")
    events = events.select(*model_columns(cfg, events.columns))
    typed = materialise(aff.fill_from_products(events.withColumn("event_type", event_type_column(cfg.events))))
    bought = materialise(purchases(typed, cfg.value_field))
    counts = {r["event_type"]: r["count"] for r in typed.groupBy("event_type").count().collect()
              if r["event_type"] is not None}
    counts["purchase_orders"] = bought.count()
    counts["profiles_with_events"] = typed.select("profile_id").distinct().count()
    universe = materialise(lake.read("gold.id_graph").select("profile_id").distinct())
    metrics: dict[str, Any] = {"event_counts": counts, "models": {}, "seconds": clock.laps}
    clock.lap("events")
    models: dict[str, Any] = metrics["models"]
    versions: dict[str, str] = {}
    n_purchases = counts["purchase_orders"]
    prefix = cfg.mlflow.model_prefix

    scores = universe
    # RFM is descriptive: no model to track, only cut points.
    if n_purchases < max(cfg.rfm.min_events, 1):
        models["rfm"] = _skip(f"rfm: {n_purchases} purchases, below scores.rfm.min_events={cfg.rfm.min_events}")
        rfm_df = None
    else:
        measures = materialise(rfm.rfm_measures(bought, as_of, monetary=cfg.rfm.monetary))
        cuts = rfm.rfm_cut_points(measures, cfg.rfm.bins, cfg.rfm.relative_error)
        segment_map = ([rfm.SegmentRule.from_mapping(s) for s in cfg.rfm.segments] if cfg.rfm.segments
                       else rfm.DEFAULT_SEGMENTS)
        rfm_df = rfm.rfm_segments(rfm.rfm_scores(measures, cfg.rfm.bins, cut_points=cuts), segment_map)
        models["rfm"] = {"status": "scored", "customers": measures.count(), "cut_points": cuts}
    clock.lap("rfm")

    interactions = sum(counts.get(k, 0) for k in cfg.affinity.weights)
    trains = (n_purchases >= min(cfg.clv.min_events, cfg.propensity.min_events)
              or (cfg.recommendations.enabled and interactions >= cfg.recommendations.min_events))
    # Opening the store creates the sqlite schema (seconds): only when some model will be trained.
    with (tracking.mlflow_store(config) if trains else contextlib.nullcontext(None)) as client:
        clock.lap("mlflow_store")
        clv_df = _clv(cfg, bought, as_of, n_purchases, models, versions, client, prefix)
        clock.lap("clv")
        prop = {}
        traits = _profile_view(spark, config, lake)
        metrics["profile_view_traits"] = traits is not None
        enough = n_purchases >= cfg.propensity.min_events
        features = materialise(propensity_features(cfg, typed, as_of)) if enough else None
        for kind, days in (("purchase", cfg.propensity.purchase_days), ("churn", cfg.propensity.churn_days)):
            if features is None:
                models[f"propensity_{kind}"] = _skip(f"propensity_{kind}: {n_purchases} purchases, below "
                                                     f"scores.propensity.min_events={cfg.propensity.min_events}")
                prop[kind] = None
            else:
                prop[kind] = _propensity(cfg, typed, features, traits, as_of, kind, days, models, versions, client,
                                         prefix)
            if prop[kind] is not None:
                prop[kind] = materialise(prop[kind])
            clock.lap(f"propensity_{kind}")
        affinities_df = _affinities(cfg, typed, as_of, counts, models)
        clock.lap("affinity")
        recs_df = _recommendations(cfg, typed, as_of, counts, models, client, prefix)
        clock.lap("als")

    if rfm_df is not None:
        scores = scores.join(rfm_df.select(
            "profile_id", F.col("recency_days").cast("int").alias("rfm_recency_days"),
            F.col("frequency").cast("long").alias("rfm_frequency"), F.col("monetary").cast("double").alias("rfm_monetary"),
            "rfm_r", "rfm_f", "rfm_m", "rfm_segment"), "profile_id", "left")
    if clv_df is not None:
        scores = scores.join(clv_df, "profile_id", "left")
    for kind, df in prop.items():
        if df is not None:
            scores = scores.join(df, "profile_id", "left")
    version_map = (F.create_map(*[F.lit(x) for kv in sorted(versions.items()) for x in kv]) if versions
                   else F.create_map()).cast(PROFILE_SCORES.schema["model_versions"].dataType)
    horizon_days = round(cfg.clv.horizon_months * 365.25 / 12)
    out = scores.select(
        "profile_id", F.lit(as_of).alias("as_of"),
        *[(F.col(c) if c in scores.columns else F.lit(None)).cast(PROFILE_SCORES.schema[c].dataType).alias(c)
          for c in ("rfm_recency_days", "rfm_frequency", "rfm_monetary", "rfm_r", "rfm_f", "rfm_m", "rfm_segment")],
        (F.lit(horizon_days) if clv_df is not None else F.lit(None)).cast("int").alias("clv_horizon_days"),
        *[(F.col(c) if c in scores.columns else F.lit(None)).cast("double").alias(c)
          for c in ("expected_purchases", "p_alive", "clv", "clv_percentile", "propensity_purchase",
                    "propensity_churn")],
        version_map.alias("model_versions"))
    if rfm_df is not None:  # profiles with no purchase: frequency 0, value 0, scores null
        out = out.withColumns({"rfm_frequency": F.coalesce("rfm_frequency", F.lit(0).cast("long")),
                               "rfm_monetary": F.coalesce("rfm_monetary", F.lit(0.0))})
    metrics["model_versions"] = versions
    stamp = F.lit(as_of)
    if affinities_df is not None:
        affinities_df = affinities_df.select("profile_id", stamp.alias("as_of"), "dimension", "value", "score",
                                             "band", "rank")
    if recs_df is not None:
        recs_df = recs_df.select("profile_id", stamp.alias("as_of"), "product_id", "score", "rank")
    return ScoreOutputs(out, affinities_df, recs_df, metrics)


class _Clock:
    """Seconds per sub-step, for the ledger and the benchmark."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


# -------------------------------------------------------------------------------------------------- CLV


def _clv(cfg: ScoresConfig, bought: DataFrame, as_of: dt.date, n_purchases: int, models: dict, versions: dict,
         client: Any, prefix: str) -> DataFrame | None:
    import mlflow

    from cdp_spark.ml import tracking

    c = cfg.clv
    if n_purchases < c.min_events:
        models["clv"] = _skip(f"clv: {n_purchases} purchases, below scores.clv.min_events={c.min_events}")
        return None
    summary = materialise(clv.clv_summary(bought, as_of, time_unit=c.time_unit))
    sample = clv.summary_to_pandas(summary, max_rows=c.max_fit_rows)
    repeat = int((sample["frequency"] > 0).sum())
    if repeat < c.min_repeat_buyers:
        models["clv"] = _skip(f"clv: {repeat} repeat buyers, below scores.clv.min_repeat_buyers={c.min_repeat_buyers}")
        return None
    bg = clv.fit_bgnbd(sample)
    gg = clv.fit_gamma_gamma(sample)
    if not bg.converged or not gg.converged or gg.q <= 1.0:
        models["clv"] = _skip("clv: the BG/NBD or Gamma-Gamma fit did not converge to interior parameters "
                              f"(bgnbd converged={bg.converged}, gamma-gamma q={gg.q:.3g}); no scores written")
        return None
    holdout = _clv_holdout(cfg, bought, as_of)
    ppm = btyd.periods_per_month(c.time_unit)
    names = {"bgnbd": f"{prefix}clv_bgnbd", "gamma_gamma": f"{prefix}clv_gamma_gamma"}
    decisions = {}
    with mlflow.start_run(run_name=f"clv-{as_of}") as run:
        mlflow.log_params({"time_unit": c.time_unit, "horizon_months": c.horizon_months,
                           "discount_rate": c.discount_rate, "holdout_days": c.holdout_days,
                           "as_of": as_of.isoformat(), "fit_rows": len(sample)})
        mlflow.log_metrics({f"bgnbd_{k}": float(v) for k, v in bg.as_dict().items() if k in ("r", "alpha", "a", "b",
                                                                                           "log_likelihood")})
        mlflow.log_metrics({f"gg_{k}": float(v) for k, v in gg.as_dict().items() if k in ("p", "q", "gamma",
                                                                                        "log_likelihood")})
        mlflow.log_metrics({k: v for k, v in holdout["metrics"].items() if isinstance(v, float) and math.isfinite(v)})
        mlflow.log_dict({"customers": len(sample), "repeat_buyers": repeat, "purchases": n_purchases,
                         "frequency_mean": float(sample["frequency"].mean()), "T_mean": float(sample["T"].mean()),
                         "holdout": holdout["summary"]}, "dataset_summary.json")
        if holdout.get("by_frequency") is not None:
            mlflow.log_table(holdout["by_frequency"], "holdout_by_frequency.json")
            mlflow.log_figure(_holdout_figure(holdout["by_frequency"]), "holdout_by_frequency.png")
        example = sample[["frequency", "recency", "T", "monetary_value"]].head(20).astype(float)
        bg_info = tracking.log_pyfunc(tracking.BGNBDModel(bg.as_dict(), c.horizon_months * ppm, c.time_unit),
                                      example[["frequency", "recency", "T"]], name="bgnbd")
        gg_info = tracking.log_pyfunc(tracking.GammaGammaModel(gg.as_dict()), example[["frequency", "monetary_value"]],
                                      name="gamma_gamma")
        decisions["bgnbd"] = tracking.register_model(
            client, names["bgnbd"], bg_info.model_uri,
            tracking.Holdout("holdout_mae_purchases", holdout["metrics"].get("holdout_mae_purchases", float("nan")),
                             greater_is_better=False), run.info.run_id)
        decisions["gamma_gamma"] = tracking.register_model(
            client, names["gamma_gamma"], gg_info.model_uri,
            tracking.Holdout("holdout_mae_spend", holdout["metrics"].get("holdout_mae_spend", float("nan")),
                             greater_is_better=False), run.info.run_id)
    bg_champ = tracking.load_champion(client, names["bgnbd"])
    gg_champ = tracking.load_champion(client, names["gamma_gamma"])
    if bg_champ is None or gg_champ is None:
        models["clv"] = _skip("clv: no champion version to score with")
        return None
    versions[names["bgnbd"]], versions[names["gamma_gamma"]] = bg_champ[1], gg_champ[1]
    scored = clv.score_clv(summary, bg_champ[0].bgnbd(), gg_champ[0].gamma_gamma(), horizon=c.horizon_months,
                           discount_rate=c.discount_rate, time_unit=c.time_unit)
    scored = materialise(scored)
    percentile = clv_percentile(scored)
    models["clv"] = {"status": "scored", "fit_customers": len(sample),
                     "repeat_buyers": repeat, "bgnbd": bg.as_dict(), "gamma_gamma": gg.as_dict(),
                     "holdout": holdout["metrics"], "registered": {k: d.as_dict() for k, d in decisions.items()}}
    if "error" in holdout["summary"]:
        models["clv"]["holdout_error"] = holdout["summary"]["error"]
    return percentile.select("profile_id", "expected_purchases", "p_alive", "clv", "clv_percentile")


def _clv_holdout(cfg: ScoresConfig, bought: DataFrame, as_of: dt.date) -> dict[str, Any]:
    """Fit on purchases up to as_of - holdout_days, predict the holdout purchases and spend."""
    c = cfg.clv
    nan = float("nan")
    cal_end = as_of - dt.timedelta(days=c.holdout_days)
    out: dict[str, Any] = {"metrics": {}, "summary": {"calibration_end": cal_end.isoformat()}, "by_frequency": None}
    try:
        pdf = clv.calibration_holdout_summary(bought, cal_end, as_of, time_unit=c.time_unit).toPandas()
        bg = clv.fit_bgnbd(pdf)
        gg = clv.fit_gamma_gamma(pdf)
        if not bg.converged:  # e.g. a few weeks of history: its predictions would be NaN, not an evaluation
            raise ValueError(f"the BG/NBD fit on the calibration period did not converge to interior parameters "
                             f"({len(pdf)} customers before {cal_end})")
    except ValueError as exc:
        out["summary"]["error"] = str(exc)
        out["metrics"] = {"holdout_mae_purchases": nan, "holdout_mae_spend": nan}
        return out
    x, t_x, T = (pdf[k].to_numpy(float) for k in ("frequency", "recency", "T"))
    predicted = btyd.bgnbd_conditional_expected_purchases(pdf["duration_holdout"].to_numpy(float), x, t_x, T, bg)
    actual = pdf["frequency_holdout"].to_numpy(float)
    out["metrics"] = {"holdout_mae_purchases": float(np.mean(np.abs(predicted - actual))),
                      "holdout_predicted_total": float(predicted.sum()), "holdout_actual_total": float(actual.sum()),
                      "holdout_customers": float(len(pdf))}
    both = (pdf["frequency"] > 0) & (pdf["frequency_holdout"] > 0) & (pdf["monetary_value_holdout"] > 0)
    if gg.q > 1.0 and both.any():
        spend = btyd.gamma_gamma_expected_spend(pdf.loc[both, "frequency"], pdf.loc[both, "monetary_value"], gg)
        out["metrics"]["holdout_mae_spend"] = float(np.mean(np.abs(spend - pdf.loc[both, "monetary_value_holdout"])))
    else:
        out["metrics"]["holdout_mae_spend"] = nan
    bucket = np.minimum(x, 7).astype(int)
    table = (pd.DataFrame({"frequency": bucket, "predicted": predicted, "actual": actual})
             .groupby("frequency").agg(customers=("actual", "size"), predicted=("predicted", "mean"),
                                       actual=("actual", "mean")).reset_index())
    out["by_frequency"] = table
    out["summary"].update({"customers": int(len(pdf)), "bgnbd_calibration": bg.as_dict()})
    return out


def _holdout_figure(table: pd.DataFrame):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(table["frequency"], table["actual"], marker="o", label="actual")
    ax.plot(table["frequency"], table["predicted"], marker="s", label="BG/NBD predicted")
    ax.set_xlabel("repeat purchases in calibration (7 = 7+)")
    ax.set_ylabel("mean purchases in holdout")
    ax.legend()
    fig.tight_layout()
    return fig


def clv_percentile(scored: DataFrame, points: int = 1000, relative_error: float = 1e-4) -> DataFrame:
    """Add ``clv_percentile`` (0-100): the approximate share of customers with a CLV at most this one's.

    Cut points come from one distributed approxQuantile pass; each batch then looks values up with
    ``numpy.searchsorted`` (no global sort or unpartitioned window).

    Example:
        >>> clv_percentile(score_clv(summary, bg, gg)).select("clv", "clv_percentile").show(3)   # doctest: +SKIP
    """
    probs = [i / points for i in range(1, points)]
    cuts = np.asarray(scored.approxQuantile("clv", probs, relative_error), dtype=float)
    schema = T.StructType([*scored.schema.fields, T.StructField("clv_percentile", T.DoubleType(), True)])

    def lookup(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            values = batch["clv"].to_numpy(float)
            pct = np.searchsorted(cuts, values, side="right") / points * 100.0 if cuts.size else np.full(
                values.shape, 100.0)
            batch["clv_percentile"] = np.where(np.isnan(values), np.nan, np.minimum(pct + 100.0 / points, 100.0))
            yield batch

    return scored.mapInPandas(lookup, schema)


# ------------------------------------------------------------------------------------------- propensity


def propensity_features(cfg: ScoresConfig, events: DataFrame, as_of: dt.date) -> DataFrame:
    """Features at every cutoff the propensity models need, in one pass: both models' training snapshots and
    the scoring instant (the end of ``as_of``). The snapshots of the two models overlap, and each cutoff costs a
    pass over the events when computed on its own.

    Example:
        >>> propensity_features(cfg, typed, date(2026, 11, 1)).select("cutoff").distinct().count()  # doctest: +SKIP
        8
    """
    p = cfg.propensity
    cutoffs = {rfm.as_of_cutoff(as_of)[0], *propensity.snapshot_cutoffs(as_of, p.purchase_days, p.snapshots),
               *propensity.snapshot_cutoffs(as_of, p.churn_days, p.snapshots)}
    return propensity.features_at_cutoffs(events, sorted(cutoffs), cfg.value_field)


def _propensity(cfg: ScoresConfig, typed: DataFrame, at_cutoffs: DataFrame, traits: DataFrame | None, as_of: dt.date,
                kind: str, days: int, models: dict, versions: dict, client: Any, prefix: str) -> DataFrame | None:
    import mlflow

    from cdp_spark.ml import tracking

    p = cfg.propensity
    key = f"propensity_{kind}"
    frame = propensity.training_frame(typed, as_of, kind=kind, days=days, value_field=cfg.value_field,
                                      traits=traits, snapshots=p.snapshots, features=at_cutoffs)
    frame = frame.withColumn("holdout", propensity.holdout_flag(p.holdout_share))
    pdf = propensity.to_pandas_bounded(frame, p.max_train_rows)
    features = [f for f in [*propensity.EVENT_FEATURES, *propensity.TRAIT_FEATURES] if f in pdf.columns
                and pdf[f].notna().any()]
    for part, rows in (("training", pdf[~pdf["holdout"]]), ("holdout", pdf[pdf["holdout"]])):
        pos = int(rows["label"].sum()) if len(rows) else 0
        neg = len(rows) - pos
        if min(pos, neg) < p.min_positives:
            models[key] = _skip(f"{key}: the {part} set (cutoff {as_of - dt.timedelta(days=days)}) has {pos} "
                                f"positive and {neg} negative labels, below scores.propensity.min_positives="
                                f"{p.min_positives}")
            return None
    result = propensity.train_classifier(pdf, features, model=p.model, max_iter=p.max_iter,
                                         learning_rate=p.learning_rate,
                                         max_leaf_nodes=p.max_leaf_nodes, c=p.regularisation_c)
    name = f"{prefix}{key}"
    model = tracking.ClassifierModel(result.estimator, features)
    with mlflow.start_run(run_name=f"{key}-{as_of}") as run:
        mlflow.log_params({"kind": kind, "window_days": days, "cutoff": (as_of - dt.timedelta(days=days)).isoformat(),
                           "as_of": as_of.isoformat(), "model": p.model,
                           "max_iter": p.max_iter, "learning_rate": p.learning_rate,
                           "max_leaf_nodes": p.max_leaf_nodes, "holdout_share": p.holdout_share,
                           "snapshots": p.snapshots, "regularisation_c": p.regularisation_c})
        mlflow.log_metrics(result.metrics)
        mlflow.log_dict(result.summary, "dataset_summary.json")
        mlflow.log_figure(propensity.calibration_figure(result, f"{key} (holdout)"), "calibration_curve.png")
        info = tracking.log_pyfunc(model, pdf[features].head(20).astype(float))
        decision = tracking.register_model(client, name, info.model_uri, tracking.Holdout("auc", result.metrics["auc"]),
                                           run.info.run_id)
    champion = tracking.load_champion(client, name)
    if champion is None:
        models[key] = _skip(f"{key}: no champion version to score with")
        return None
    versions[name] = champion[1]
    cutoff, _ = rfm.as_of_cutoff(as_of)
    current = at_cutoffs.where(F.col("cutoff") == F.lit(cutoff).cast("timestamp")).drop("cutoff")
    if traits is not None:
        current = current.join(propensity.trait_features(traits, cutoff), "profile_id", "left")
    if kind == "churn":
        current = current.where(F.col("rfm_frequency") > 0)
    models[key] = {"status": "scored", **result.metrics, **result.summary, "registered": decision.as_dict()}
    return propensity.score_distributed(current, champion[0], key)


# ------------------------------------------------------------------------------------ affinities, ALS


def _affinities(cfg: ScoresConfig, typed: DataFrame, as_of: dt.date, counts: dict, models: dict) -> DataFrame | None:
    a = cfg.affinity
    n = sum(counts.get(k, 0) for k in a.weights)
    if n < a.min_events:
        models["affinity"] = _skip(f"affinity: {n} weighted events, below scores.affinity.min_events={a.min_events}")
        return None
    out = materialise(aff.affinities(typed, as_of, a.dimensions, weights=a.weights, half_life_days=a.half_life_days,
                              lookback_days=a.lookback_days, normalise=a.normalise, top_n=a.top_n, bands=a.bands))
    models["affinity"] = {"status": "scored", "rows": out.count(), "dimensions": a.dimensions,
                          "half_life_days": a.half_life_days}
    return out


def _recommendations(cfg: ScoresConfig, typed: DataFrame, as_of: dt.date, counts: dict,
                     models: dict, client: Any = None, prefix: str = "cdp_") -> DataFrame | None:
    """ALS on all interactions up to as_of, evaluated on a time split and registered as ``<prefix>recommendations_als``.

    The registered version is a JVM-free pyfunc (:class:`cdp_spark.ml.tracking.ALSRecommender`) judged by its
    holdout precision@K. The recommendations table is written from this run's fit (a champion fitted on an
    earlier day would not know today's profiles); the registration records whether it beat the champion.
    """
    import mlflow

    from cdp_spark.ml import tracking

    r = cfg.recommendations
    weights = {k: v for k, v in cfg.affinity.weights.items()}
    n = sum(counts.get(k, 0) for k in weights)
    if not r.enabled:
        models["als"] = {"status": "disabled"}
        return None
    if n < r.min_events:
        models["als"] = _skip(f"als: {n} interaction events, below scores.recommendations.min_events={r.min_events}")
        return None
    params = {"rank": r.rank, "reg_param": r.reg_param, "alpha": r.alpha, "max_iter": r.max_iter, "seed": r.seed,
              "blocks": r.blocks}
    evaluation = aff.evaluate_als(typed, as_of, eval_days=r.eval_days, k=r.top_k, weights=weights,
                                  max_users=r.eval_max_users, **params)
    fit = aff.fit_als(aff.interactions(typed, as_of, weights=weights), **params)
    recs = materialise(aff.recommend(fit, r.top_k))
    registered = None
    with mlflow.start_run(run_name=f"als-{as_of}") as run:
        mlflow.log_params({**params, "top_k": r.top_k, "eval_days": r.eval_days, "eval_max_users": r.eval_max_users,
                           "as_of": as_of.isoformat(), "implicit_prefs": True, "weights": weights})
        mlflow.log_metrics({k: float(v) for k, v in evaluation.items() if isinstance(v, (int, float))})
        summary = {"interaction_events": n, "users": fit.users.count(), "items": fit.items.count()}
        mlflow.log_dict(summary, "dataset_summary.json")
        if client is not None:
            model = tracking.ALSRecommender.from_fit(fit, r.top_k)
            example = pd.DataFrame({"profile_id": model.user_ids[:5]})
            info = tracking.log_pyfunc(model, example, name="als")
            precision = float(evaluation.get("precision_at_k", float("nan")))
            registered = tracking.register_model(client, f"{prefix}recommendations_als", info.model_uri,
                                                 tracking.Holdout("precision_at_k", precision), run.info.run_id)
    models["als"] = {"status": "scored", **evaluation, "rows": recs.count(), **summary}
    if registered is not None:
        models["als"]["registered"] = registered.as_dict()
    return recs


# -------------------------------------------------------------------------------------------------- run


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Score every profile for ``as_of``; a rerun on the same inputs and settings changes nothing."""
    if not lake.exists("bronze.events") or not lake.exists("gold.id_graph"):
        return StageResult(metrics={"skipped": "no events or identity graph yet"})
    txn = stage_token(STAGE, config, lake, as_of)
    if lake.committed(PROFILE_SCORES.name, txn):
        log.info("scores for %s on these inputs are already committed; nothing to do", as_of)
        return StageResult(metrics={"skipped": "already committed"})
    outputs = compute(spark, config, lake, as_of)
    result = StageResult(metrics=outputs.metrics)
    result.rows_in = {"bronze.events": sum(v for k, v in outputs.metrics["event_counts"].items()
                                           if k not in ("purchase_orders", "profiles_with_events"))}
    empty = {AFFINITIES.name: outputs.affinities, RECOMMENDATIONS.name: outputs.recommendations}
    clock = _Clock()
    for table, df in (*empty.items(), (PROFILE_SCORES.name, outputs.profile_scores)):
        if df is None:  # skipped model: the table is emptied rather than left with another day's rows
            df = spark.createDataFrame([], lake.spec(table).schema)
        df = materialise(df)
        written = lake.overwrite(table, df, txn=txn)
        result.rows_out[table] = 0 if written.skipped else df.count()
        clock.lap(f"write_{table}")
    outputs.metrics["seconds"].update(clock.laps)
    return result
