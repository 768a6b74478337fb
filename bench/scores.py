"""Benchmark customer scores: BG/NBD and Gamma-Gamma fit time, Spark CLV scoring, and the whole scores stage.

Run:  python -m bench.scores [--customers 100000] [--purchases 1000000] [--people 1000000] [--events 10000000]
                             [--cdnow-dir DIR] [--skip-fit] [--skip-spark] [--skip-stage]

The result file holds the sections this run measured, and only those: a skipped section is absent (a section
from an earlier run under this run's date would read as measured now).

Targets (issue 7): each fit on 100k customers <= 30 s; the scores stage on 1M profiles / 10M events <= 5 min
on 2 cores. The stage runs on a lake built from the demo retailer's behaviour model
(:mod:`cdp_spark.ml.synthetic`), with production-like settings (weekly CLV periods, 7-day windows for the
short history) and the time of each sub-step from the stage's own metrics.

``--cdnow-dir`` points at the ``lifetimes/datasets`` folder of the lifetimes sdist from PyPI (not a
dependency); when given, the CDNOW fits are compared with the published values.

Example:
    >>> main(["--customers", "20000", "--purchases", "100000"])   # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Timer, write_result
from cdp_spark.ml import btyd, clv

TRUE_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}   # weeks, CDNOW scale
TRUE_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
EVENTS_PER_PERSON_DAY = 2.5   # the demo world per unit of activity (measured: 2.2M events, 200k people, 28 days, 0.155)


def simulate_customers(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """BG/NBD summaries (x, t_x, T in weeks) and Gamma-Gamma mean spends for n customers."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE_BG["r"], 1 / TRUE_BG["alpha"], n)
    p = rng.beta(TRUE_BG["a"], TRUE_BG["b"], n)
    T = rng.uniform(26, 104, n)
    x, t_x, now = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1 / lam[idx])
        over = now[idx] > T[idx]
        active[idx[over]] = False
        idx = idx[~over]
        x[idx] += 1
        t_x[idx] = now[idx]
        active[idx[rng.random(idx.size) < p[idx]]] = False
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["gamma"], n)
    m = np.where(x > 0, rng.gamma(TRUE_GG["p"] * np.maximum(x, 1), 1 / (np.maximum(x, 1) * nu)), 0.0)
    return x, t_x, T, m


def simulate_purchases(target_rows: int, seed: int = 1) -> pd.DataFrame:
    """Purchase events from a BG/NBD process in days over one year, about ``target_rows`` rows."""
    rng = np.random.default_rng(seed)
    customers = max(1, target_rows // 4)
    start = rng.uniform(0, 365, customers)
    lam = rng.gamma(1.0, 1 / 25.0, customers)            # mean one purchase every 25 days
    p = rng.beta(1.0, 5.0, customers)
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["gamma"], customers)
    ids, times = [np.arange(customers)], [start]
    now, active = start.copy(), np.ones(customers, bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1 / lam[idx])
        over = now[idx] > 365
        active[idx[over]] = False
        idx = idx[~over]
        ids.append(idx)
        times.append(now[idx].copy())
        active[idx[rng.random(idx.size) < p[idx]]] = False
    cid, t = np.concatenate(ids), np.concatenate(times)
    base = np.datetime64("2024-01-01T00:00:00", "us")
    return pd.DataFrame({
        "profile_id": np.char.add("p", cid.astype(str)),
        "event_time": base + (t * 86_400e6).astype("timedelta64[us]"),
        "revenue": np.round(rng.gamma(TRUE_GG["p"], 1 / nu[cid]), 2),
    })


def bench_fits(customers: int) -> dict[str, object]:
    x, t_x, T, m = simulate_customers(customers)
    out: dict[str, object] = {"customers": customers, "repeat_buyers": int((x > 0).sum())}
    with Timer() as t:
        bg = btyd.fit_bgnbd_arrays(x, t_x, T)
    out["bgnbd_fit_seconds_continuous_times"] = round(t.seconds, 3)
    # Spark summaries hold whole periods, so identical rows collapse into weights.
    with Timer() as t:
        bg_weeks = btyd.fit_bgnbd_arrays(x, np.floor(t_x), np.ceil(T))
    out["bgnbd_fit_seconds_whole_weeks"] = round(t.seconds, 3)
    with Timer() as t:
        gg = btyd.fit_gamma_gamma_arrays(x, m)
    out["gamma_gamma_fit_seconds"] = round(t.seconds, 3)
    out["bgnbd"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in bg.as_dict().items()}
    out["bgnbd_whole_weeks"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in bg_weeks.as_dict().items()}
    out["gamma_gamma"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in gg.as_dict().items()}
    out["true_parameters"] = {"bgnbd": TRUE_BG, "gamma_gamma": TRUE_GG}
    return out


def bench_spark(purchase_rows: int) -> dict[str, object]:
    from cdp_spark.spark import build_session, embedded_conf

    pdf = simulate_purchases(purchase_rows)
    spark = build_session("bench-scores", embedded_conf(cores=2), None)
    out: dict[str, object] = {"master": spark.sparkContext.master}
    try:
        purchases = spark.createDataFrame(pdf, "profile_id string, event_time timestamp, revenue double")
        purchases = purchases.cache()
        out["purchases"] = purchases.count()
        as_of = date(2024, 12, 31)
        with Timer() as t:
            summary = clv.clv_summary(purchases, as_of, time_unit="W").cache()
            customers = summary.count()
        out["customers"] = customers
        out["clv_summary_seconds"] = round(t.seconds, 2)
        out["clv_summary_purchases_per_second"] = round(out["purchases"] / t.seconds)
        with Timer() as t:
            sample = clv.summary_to_pandas(summary, max_rows=1_000_000)
        out["summary_to_pandas_seconds"] = round(t.seconds, 2)
        with Timer() as t:
            bg, gg = clv.fit_bgnbd(sample), clv.fit_gamma_gamma(sample)
        out["fit_both_seconds"] = round(t.seconds, 2)
        out["fitted"] = {"bgnbd": {k: round(v, 4) if isinstance(v, float) else v for k, v in bg.as_dict().items()},
                         "gamma_gamma": {k: round(v, 4) if isinstance(v, float) else v
                                         for k, v in gg.as_dict().items()}}
        with Timer() as t:
            scores = clv.score_clv(summary, bg, gg, horizon=12, discount_rate=0.01, time_unit="W")
            scores.write.format("noop").mode("overwrite").save()
        out["score_clv_seconds"] = round(t.seconds, 2)
        out["score_clv_customers_per_second"] = round(customers / t.seconds)
        with Timer() as t:
            score_pdf = clv.score_clv_pandas(sample, bg, gg, horizon=12, discount_rate=0.01, time_unit="W")
        out["pandas_scoring_seconds_same_customers"] = round(t.seconds, 2)
        out["mean_clv"] = round(float(score_pdf["clv"].mean()), 3)
    finally:
        spark.stop()
    return out


def bench_stage(people: int, events: int, cores: int = 2) -> dict[str, object]:
    """Build a demo-world lake of about ``events`` events over ``people`` profiles and time the scores stage."""
    import tempfile

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import open_lake
    from cdp_spark.ml.stage import run
    from cdp_spark.ml.synthetic import demo_events_lake
    from cdp_spark.spark import build_session, embedded_conf

    # Four weeks of history feed the 7- and 14-day model windows; everyone's visit and purchase rates are scaled so
    # that the people together produce the requested events (1M profiles with about ten events each).
    days = 28
    activity = min(1.0, events / (people * EVENTS_PER_PERSON_DAY * days))
    end = date(2026, 11, 1)
    root = tempfile.mkdtemp(prefix="bench-scores-")
    spark = build_session("bench-scores-stage", embedded_conf(cores=cores), root + "/_ckpt")
    out: dict[str, object] = {"people": people, "target_events": events, "days": days,
                              "activity": round(activity, 4)}
    scores = {"clv": {"time_unit": "W", "horizon_months": 12, "holdout_days": 7, "min_events": 1000},
              "affinity": {"min_events": 1000}, "recommendations": {"min_events": 1000},
              "propensity": {"purchase_days": 7, "churn_days": 14, "min_events": 1000}}
    try:
        config = CdpConfig.model_validate({"lake": {"root": root, "backend": "embedded"}, "scores": scores})
        lake = open_lake(spark, config)
        with Timer() as t:
            demo_events_lake(spark, lake, people=people, days=days, seed=5, end_date=end, activity=activity)
        out["build_lake_seconds"] = round(t.seconds, 1)
        out["events"] = lake.info("bronze.events").rows
        with Timer() as t:
            result = run(spark, config, lake, end)
        out["stage_seconds"] = round(t.seconds, 1)
        out["stage_events_per_second"] = round(out["events"] / t.seconds)
        out["sub_step_seconds"] = result.metrics["seconds"]
        out["event_counts"] = result.metrics["event_counts"]
        out["models"] = {k: {m: v[m] for m in ("status", "reason", "auc", "precision_at_k", "baseline_precision_at_k",
                                               "holdout", "holdout_error") if m in v}
                         for k, v in result.metrics["models"].items()}
        out["rows_out"] = result.rows_out
        out["target_stage_seconds"] = 300
    finally:
        spark.stop()
    return out


def cdnow_check(folder: Path) -> dict[str, object]:
    """Fit the CDNOW summaries shipped in the lifetimes sdist and set them beside the published values."""
    summary = pd.read_csv(folder / "cdnow_customers_summary_with_transactions.csv")
    bg = btyd.fit_bgnbd_arrays(summary["x"], summary["t_x"], summary["T"])
    gg = btyd.fit_gamma_gamma_arrays(summary["x"], summary["zbar"])
    return {
        "customers": len(summary),
        "bgnbd": {"r": round(bg.r, 4), "alpha": round(bg.alpha, 4), "a": round(bg.a, 4), "b": round(bg.b, 4),
                  "log_likelihood": round(bg.log_likelihood, 2)},
        "bgnbd_published": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.4},
        "gamma_gamma": {"p": round(gg.p, 4), "q": round(gg.q, 4), "gamma": round(gg.gamma, 4)},
        "gamma_gamma_published": {"p": 6.25, "q": 3.74, "gamma": 15.44},
        # FHL (2005) worked example: customer 1 (x=2, t_x=30.43, T=38.86) buys 1.226 times in the next 39 weeks.
        "customer_1_expected_39_weeks": round(float(btyd.bgnbd_conditional_expected_purchases(
            39.0, 2, 30.43, 38.86, bg)), 4),
        "customer_1_published": 1.226,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=1_000_000, help="profiles for the whole-stage run")
    parser.add_argument("--events", type=int, default=10_000_000, help="events for the whole-stage run")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--skip-stage", action="store_true", help="skip the whole-stage run (no 'stage' section)")
    parser.add_argument("--skip-fit", action="store_true", help="skip the fit timings (no 'fit' section)")
    parser.add_argument("--skip-spark", action="store_true", help="skip the CLV summary/scoring throughput run")
    parser.add_argument("--cdnow-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    payload: dict[str, object] = {"scale": {"customers": args.customers, "purchases": args.purchases,
                                            "people": args.people, "events": args.events,
                                            "issue_scale": {"customers": 100_000, "people": 1_000_000,
                                                            "events": 10_000_000}},
                                  "targets": {"fit_seconds": 30, "stage_seconds": 300}}
    if not args.skip_fit:
        payload["fit"] = bench_fits(args.customers)
    if not args.skip_spark:
        payload["spark"] = bench_spark(args.purchases)
    if not args.skip_stage:
        payload["stage"] = bench_stage(args.people, args.events, args.cores)
    if args.cdnow_dir is not None:
        payload["cdnow"] = cdnow_check(args.cdnow_dir)
    write_result("scores", payload, argv=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
