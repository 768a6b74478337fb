"""BG/NBD + Gamma-Gamma: likelihoods vs independent forms, recovery, stability, Spark summaries and scoring."""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, getcontext

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from cdp_spark.ml import btyd
from cdp_spark.ml.btyd import (
    BGNBDParams,
    GammaGammaParams,
    bgnbd_conditional_expected_purchases,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_probability_alive,
    customer_lifetime_value,
    fit_bgnbd_arrays,
    fit_gamma_gamma_arrays,
    gamma_gamma_expected_spend,
    gamma_gamma_log_likelihood,
)
from cdp_spark.ml.clv import (
    calibration_holdout_summary,
    clv_summary,
    fit_bgnbd,
    fit_gamma_gamma,
    score_clv,
    score_clv_pandas,
    summary_to_pandas,
)

UTC = timezone.utc
CDNOW_BG = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)   # FHL (2005), CDNOW, weeks
CDNOW_GG = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)         # Fader & Hardie (2013), CDNOW


# ------------------------------------------------------------------------------------ simulation


def simulate_bgnbd(n, r, alpha, a, b, T, horizon=0.0, seed=0):
    """Simulate the BG/NBD story directly: returns (x, t_x) in (0, T] and purchases in (T, T+horizon]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    T = np.broadcast_to(np.asarray(T, float), (n,)).copy()
    end = T + horizon
    x, t_x, holdout, now = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / lam[idx])
        over = now[idx] > end[idx]
        active[idx[over]] = False
        idx = idx[~over]
        cal = now[idx] <= T[idx]
        x[idx[cal]] += 1
        t_x[idx[cal]] = now[idx[cal]]
        holdout[idx[~cal]] += 1
        active[idx[rng.random(idx.size) < p[idx]]] = False   # drop out after a repeat purchase
    return x, t_x, T, holdout


def simulate_gamma_gamma(n, p, q, gamma, seed=0):
    rng = np.random.default_rng(seed)
    x = 1 + rng.poisson(5, n)
    nu = rng.gamma(q, 1.0 / gamma, n)
    m = rng.gamma(p * x, 1.0 / (x * nu))   # mean of x Gamma(p, nu) values
    return x.astype(float), m


# ------------------------------------------------------------------ likelihoods, independently


def paper_bgnbd_likelihood(x, t_x, T, r, alpha, a, b):
    """FHL (2005) eq. 6 with Beta and Gamma functions themselves (fine at small x)."""
    B, G = special.beta, math.gamma
    common = G(r + x) * alpha ** r / G(r)
    value = B(a, b + x) / B(a, b) * common / (alpha + T) ** (r + x)
    if x > 0:
        value += B(a + 1, b + x - 1) / B(a, b) * common / (alpha + t_x) ** (r + x)
    return value


@pytest.mark.parametrize("params", [(0.243, 4.414, 0.793, 2.426), (2.0, 10.0, 1.5, 0.6), (0.5, 0.8, 3.0, 7.0)])
def test_bgnbd_log_likelihood_equals_paper_closed_form(params):
    for x, t_x, T in [(0, 0.0, 30.0), (1, 2.5, 30.0), (2, 20.0, 38.0), (5, 37.9, 38.0), (7, 12.0, 52.0)]:
        expected = math.log(paper_bgnbd_likelihood(x, t_x, T, *params))
        assert bgnbd_log_likelihood(x, t_x, T, *params) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_bgnbd_likelihood_equals_integral_over_lambda_and_p():
    """Integrate the individual-level likelihood over lambda ~ Gamma(r, alpha) and p ~ Beta(a, b).

    Gauss quadrature whose weight functions are those two densities (generalised Laguerre, Jacobi).
    """
    r, alpha, a, b = 2.0, 3.0, 1.5, 2.5
    u, wu = special.roots_genlaguerre(80, r - 1)
    v, wv = special.roots_jacobi(80, b - 1, a - 1)
    lam, w_lam = u / alpha, wu / math.gamma(r)
    p, w_p = (1 + v) / 2, wv / (2 ** (a + b - 1) * special.beta(a, b))
    assert w_lam.sum() == pytest.approx(1.0) and w_p.sum() == pytest.approx(1.0)
    L, P = np.meshgrid(lam, p, indexing="ij")
    for x, t_x, T in [(0, 0.0, 6.0), (3, 4.0, 6.0), (1, 0.5, 2.0)]:
        alive = (1 - P) ** x * L ** x * np.exp(-L * T)
        dead = P * (1 - P) ** (x - 1) * L ** x * np.exp(-L * t_x) if x > 0 else 0.0
        value = np.einsum("i,j,ij->", w_lam, w_p, alive + dead)
        assert bgnbd_log_likelihood(x, t_x, T, r, alpha, a, b) == pytest.approx(math.log(value), rel=1e-9)


def test_gamma_gamma_log_likelihood_equals_integral_over_nu():
    p, q, gamma = 6.25, 3.74, 15.44
    for x, m in [(1, 12.0), (3, 40.0), (10, 95.5)]:
        def joint(nu):   # density of the mean of x Gamma(p, nu) spends, mixed over nu ~ Gamma(q, gamma)
            return stats.gamma.pdf(m, p * x, scale=1 / (x * nu)) * stats.gamma.pdf(nu, q, scale=1 / gamma)
        value, _ = integrate.quad(joint, 0, np.inf, epsabs=0, epsrel=1e-11, limit=200)
        assert gamma_gamma_log_likelihood(x, m, p, q, gamma) == pytest.approx(math.log(value), rel=1e-8)


# ---------------------------------------------------------------------------------- high precision

getcontext().prec = 90


def _d(v) -> Decimal:
    return Decimal(repr(float(v)))


def decimal_bgnbd_log_likelihood(x: int, t_x, T, params: BGNBDParams) -> float:
    """Eq. 6 with Gamma/Beta ratios expanded into finite products, in 90-digit decimal arithmetic."""
    r, alpha, a, b = map(_d, (params.r, params.alpha, params.a, params.b))
    t_x, T = _d(t_x), _d(T)
    rising_r = math.prod((r + j for j in range(x)), start=Decimal(1))
    beta_ratio = math.prod(((b + j) / (a + b + j) for j in range(x)), start=Decimal(1))
    head = rising_r * (alpha.ln() * r).exp()
    value = beta_ratio * head / ((alpha + T).ln() * (r + x)).exp()
    if x > 0:
        beta_ratio_dead = a * math.prod((b + j for j in range(x - 1)), start=Decimal(1)) / math.prod(
            (a + b + j for j in range(x)), start=Decimal(1))
        value += beta_ratio_dead * head / ((alpha + t_x).ln() * (r + x)).exp()
    return float(value.ln())


def decimal_expected_purchases(t, x: int, t_x, T, params: BGNBDParams) -> tuple[float, float]:
    """FHL eq. 10 in its original form (no Euler transform), hypergeometric series summed in decimals."""
    r, alpha, a, b = map(_d, (params.r, params.alpha, params.a, params.b))
    t, t_x, T = _d(t), _d(t_x), _d(T)
    A, Bp, C, z = r + x, b + x, a + b + x - 1, t / (alpha + T + t)
    term, total, n = Decimal(1), Decimal(1), 0
    while True:
        term = term * (A + n) * (Bp + n) / ((C + n) * (n + 1)) * z
        total += term
        n += 1
        if n > 50 and abs(term) < total * Decimal("1e-60"):
            break
    power = (((alpha + T) / (alpha + T + t)).ln() * A).exp()
    odds = a / (b + x - 1) * (((alpha + T) / (alpha + t_x)).ln() * A).exp() if x > 0 else Decimal(0)
    p_alive = 1 / (1 + odds)
    return float((a + b + x - 1) / (a - 1) * (1 - power * total) * p_alive), float(p_alive)


# (2000, ..., 150) is where the untransformed formula evaluated in floats gives 0 * inf = nan.
@pytest.mark.parametrize("x,t_x,T,t", [(500, 100.0, 104.0, 52.0), (500, 60.0, 104.0, 26.0), (2000, 100.0, 104.0, 150.0),
                                       (40, 30.0, 39.0, 80.0),
                                       (3, 10.0, 39.0, 52.0), (0, 0.0, 39.0, 52.0)])
def test_high_frequency_values_match_high_precision_evaluation(x, t_x, T, t):
    ll = bgnbd_log_likelihood(x, t_x, T, CDNOW_BG.r, CDNOW_BG.alpha, CDNOW_BG.a, CDNOW_BG.b)
    assert float(ll) == pytest.approx(decimal_bgnbd_log_likelihood(x, t_x, T, CDNOW_BG), rel=1e-11)
    expected, p_alive = decimal_expected_purchases(t, x, t_x, T, CDNOW_BG)
    assert float(bgnbd_probability_alive(x, t_x, T, CDNOW_BG)) == pytest.approx(p_alive, rel=1e-10, abs=1e-300)
    assert float(bgnbd_conditional_expected_purchases(t, x, t_x, T, CDNOW_BG)) == pytest.approx(
        expected, rel=1e-8, abs=1e-300)


def test_extreme_frequencies_stay_finite():
    x = np.array([0, 1, 50, 500, 5_000, 50_000], dtype=float)
    t_x, T = np.minimum(x, 99.0) + 0.5, np.full(x.shape, 100.0)
    assert np.isfinite(bgnbd_log_likelihood(x, t_x, T, 0.243, 4.414, 0.793, 2.426)).all()
    alive = bgnbd_probability_alive(x, t_x, T, CDNOW_BG)
    expected = bgnbd_conditional_expected_purchases(52.0, x, t_x, T, CDNOW_BG)
    assert np.isfinite(alive).all() and ((alive >= 0) & (alive <= 1)).all()
    assert np.isfinite(expected).all() and (expected >= 0).all()
    assert np.isfinite(gamma_gamma_log_likelihood(x[1:], 30.0, 6.25, 3.74, 15.44)).all()
    # A very frequent buyer who just bought is almost surely alive and buys at the posterior mean rate.
    rate = (CDNOW_BG.r + 5_000) / (CDNOW_BG.alpha + 100.0)
    assert float(bgnbd_conditional_expected_purchases(1.0, 5_000, 100.0, 100.0, CDNOW_BG)) == pytest.approx(rate, rel=0.02)


def test_p_alive_is_one_without_repeat_purchases():
    T = np.array([0.5, 10.0, 80.0, 500.0])
    assert (bgnbd_probability_alive(0, 0.0, T, CDNOW_BG) == 1.0).all()
    # With repeat purchases, a long silence since the last one lowers P(alive).
    assert bgnbd_probability_alive(4, 5.0, 80.0, CDNOW_BG) < bgnbd_probability_alive(4, 75.0, 80.0, CDNOW_BG) < 1


def test_euler_form_equals_original_hypergeometric_form():
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    for x, t_x, T, t in [(0, 0.0, 30.0, 10.0), (1, 5.0, 30.0, 39.0), (4, 20.0, 35.0, 52.0), (9, 30.0, 31.0, 5.0)]:
        z = t / (alpha + T + t)
        num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                                           * special.hyp2f1(r + x, b + x, a + b + x - 1, z))
        den = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        assert bgnbd_conditional_expected_purchases(t, x, t_x, T, CDNOW_BG) == pytest.approx(num / den, rel=1e-10)


# --------------------------------------------------------------------------- behaviour vs simulation


def test_predictions_match_simulated_future_purchases():
    x, t_x, T, holdout = simulate_bgnbd(40_000, *(0.243, 4.414, 0.793, 2.426), T=39.0, horizon=39.0, seed=5)
    predicted = bgnbd_conditional_expected_purchases(39.0, x, t_x, T, CDNOW_BG)
    assert predicted.sum() == pytest.approx(holdout.sum(), rel=0.05)
    for group in (x == 0, x == 1, (x >= 2) & (x <= 4), x >= 5):   # calibration frequency groups
        assert predicted[group].mean() == pytest.approx(holdout[group].mean(), rel=0.12)
    # The unconditional expectation for a new customer matches the simulated mean count over (0, 39].
    assert float(bgnbd_expected_purchases(39.0, CDNOW_BG)) == pytest.approx(x.mean(), rel=0.05)


# ---------------------------------------------------------------------------------- fitting


def _stationary(loglik, params: np.ndarray, step=1e-4) -> np.ndarray:
    """Relative change in total log-likelihood from a small move of each log-parameter."""
    base = loglik(params)
    grads = []
    for i in range(len(params)):
        up, down = params.copy(), params.copy()
        up[i] *= math.exp(step)
        down[i] *= math.exp(-step)
        grads.append((loglik(up) - loglik(down)) / (2 * step))
    return np.abs(np.array(grads)) / abs(base)


def test_bgnbd_recovers_known_parameters():
    true = np.array([0.24, 4.4, 0.79, 2.43])
    rng_T = np.random.default_rng(99).uniform(30, 100, 8000)
    x, t_x, T, _ = simulate_bgnbd(8000, *true, T=rng_T, seed=17)
    fit = fit_bgnbd_arrays(x, t_x, T)
    got = np.array([fit.r, fit.alpha, fit.a, fit.b])
    # Tolerances are about 3.5 standard deviations of the estimates over 30 simulated data sets of this size.
    np.testing.assert_array_less(np.abs(got / true - 1), [0.10, 0.12, 0.25, 0.30])
    assert fit.converged and fit.n == 8000
    total = lambda prm: float(bgnbd_log_likelihood(x, t_x, T, *prm).sum())  # noqa: E731
    assert fit.log_likelihood == pytest.approx(total(got), rel=1e-12)
    assert fit.log_likelihood >= total(true)   # it is the maximum, not just near the truth
    assert (_stationary(total, got) < 1e-6).all()


def test_gamma_gamma_recovers_known_parameters():
    true = np.array([6.25, 3.74, 15.44])
    x, m = simulate_gamma_gamma(10_000, *true, seed=4)
    x_all, m_all = np.concatenate([x, np.zeros(500)]), np.concatenate([m, np.zeros(500)])  # one-timers ignored
    fit = fit_gamma_gamma_arrays(x_all, m_all)
    got = np.array([fit.p, fit.q, fit.gamma])
    assert fit.n == 10_000 and fit.converged
    # p and gamma trade off against each other (sd ~14% each at this size); q and the mean spend do not.
    np.testing.assert_array_less(np.abs(got / true - 1), [0.45, 0.08, 0.45])
    true_mean, fit_mean = true[0] * true[2] / (true[1] - 1), fit.p * fit.gamma / (fit.q - 1)
    assert fit_mean == pytest.approx(true_mean, rel=0.03)
    total = lambda prm: float(gamma_gamma_log_likelihood(x, m, *prm).sum())  # noqa: E731
    assert fit.log_likelihood >= total(true)
    assert (_stationary(total, got) < 1e-6).all()


def test_fit_is_invariant_to_row_duplication_and_time_scale():
    x, t_x, T, _ = simulate_bgnbd(2000, 0.5, 6.0, 0.9, 3.0, T=52.0, seed=8)
    once = fit_bgnbd_arrays(x, t_x, T)
    twice = fit_bgnbd_arrays(np.tile(x, 2), np.tile(t_x, 2), np.tile(T, 2))
    assert twice.log_likelihood == pytest.approx(2 * once.log_likelihood, rel=1e-8)
    assert twice.r == pytest.approx(once.r, rel=1e-4) and twice.b == pytest.approx(once.b, rel=1e-3)
    days = fit_bgnbd_arrays(x, t_x * 7, T * 7)   # same data in days: only alpha changes, by 7
    assert days.alpha == pytest.approx(7 * once.alpha, rel=1e-3)
    assert days.a == pytest.approx(once.a, rel=1e-3) and days.r == pytest.approx(once.r, rel=1e-4)
    with pytest.raises(ValueError):
        fit_bgnbd_arrays([1, 2], [5, 40], [30, 30])   # recency beyond T


def test_degenerate_inputs_are_refused_or_flagged():
    with pytest.raises(ValueError):
        fit_bgnbd_arrays([0, 0, 0], [0, 0, 0], [10, 20, 30])   # no repeat buyer: dropout unidentified
    assert not fit_bgnbd_arrays([1], [5], [10]).converged        # one customer: parameters run off
    assert not fit_bgnbd_arrays([1, 3], [5, 8], [10, 12]).converged   # fewer distinct customers than parameters
    assert not fit_gamma_gamma_arrays([1, 2], [10.0, 20.0]).converged
    with pytest.raises(ValueError):
        fit_gamma_gamma_arrays([0, 2], [0.0, 10.0])


# ---------------------------------------------------------------------------------- spend and CLV


def test_expected_spend_is_credibility_weighted_mean():
    x, m = np.array([0.0, 1.0, 4.0, 30.0]), np.array([0.0, 80.0, 20.0, 50.0])
    p, q, gamma = CDNOW_GG.p, CDNOW_GG.q, CDNOW_GG.gamma
    population = p * gamma / (q - 1)
    weight = p * x / (p * x + q - 1)
    np.testing.assert_allclose(gamma_gamma_expected_spend(x, m, CDNOW_GG),
                               (1 - weight) * population + weight * m, rtol=1e-12)
    with pytest.raises(ValueError):
        gamma_gamma_expected_spend(x, m, GammaGammaParams(2.0, 0.9, 10.0))


def test_clv_discounts_monthly_increments():
    x, t_x, T, m = np.array([0.0, 2.0, 7.0]), np.array([0.0, 30.0, 20.0]), np.array([20.0, 38.0, 38.0]), \
        np.array([0.0, 40.0, 15.0])
    spend = gamma_gamma_expected_spend(x, m, CDNOW_GG)
    weeks_per_month = 365.25 / 12 / 7
    undiscounted = customer_lifetime_value(x, t_x, T, m, CDNOW_BG, CDNOW_GG, horizon=12, discount_rate=0.0,
                                           time_unit="W")
    total = bgnbd_conditional_expected_purchases(12 * weeks_per_month, x, t_x, T, CDNOW_BG)
    np.testing.assert_allclose(undiscounted, spend * total, rtol=1e-12)
    discounted = customer_lifetime_value(x, t_x, T, m, CDNOW_BG, CDNOW_GG, horizon=12, discount_rate=0.02,
                                         time_unit="W")
    cumulative = [bgnbd_conditional_expected_purchases(k * weeks_per_month, x, t_x, T, CDNOW_BG) for k in range(13)]
    by_month = sum((cumulative[k] - cumulative[k - 1]) / 1.02 ** k for k in range(1, 13))
    np.testing.assert_allclose(discounted, spend * by_month, rtol=1e-12)
    assert (discounted < undiscounted).all()
    days = customer_lifetime_value(x, t_x * 7, T * 7, m, BGNBDParams(0.243, 4.414 * 7, 0.793, 2.426), CDNOW_GG,
                                   horizon=12, discount_rate=0.02, time_unit="D")
    np.testing.assert_allclose(days, discounted, rtol=1e-9)   # same model in days gives the same CLV


# --------------------------------------------------------------------------------------- Spark

PURCHASE_SCHEMA = "profile_id string, event_time timestamp, revenue double"


def purchase_rows(seed=2, customers=30, n=300):
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [(f"c{rng.integers(0, customers):02d}", start + timedelta(hours=int(rng.integers(0, 24 * 180))),
             float(rng.integers(5, 300))) for _ in range(n)]
    # Week boundary: Sunday 23:59 and Monday 00:00 are different weeks; same day twice is one period.
    rows += [("edge", datetime(2024, 3, 3, 23, 59, tzinfo=UTC), 10.0),
             ("edge", datetime(2024, 3, 4, 0, 0, tzinfo=UTC), 20.0),
             ("edge", datetime(2024, 3, 4, 8, 0, tzinfo=UTC), 5.0),
             ("edge", datetime(2024, 3, 20, 8, 0, tzinfo=UTC), 7.0),
             ("late", datetime(2024, 7, 1, tzinfo=UTC), 99.0)]   # after every as_of below
    return rows


def reference_summary(rows, as_of: date, unit: str) -> pd.DataFrame:
    """lifetimes' convention with pandas periods (as_of is a date: its whole day counts)."""
    df = pd.DataFrame(rows, columns=["profile_id", "event_time", "revenue"])
    df = df[df["event_time"] < pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)]
    df["period"] = df["event_time"].dt.tz_convert(None).dt.to_period(unit)
    per = df.groupby(["profile_id", "period"], as_index=False)["revenue"].sum().sort_values("period")
    end = pd.Period(as_of, unit)
    out = []
    for pid, g in per.groupby("profile_id"):
        first, last = g["period"].iloc[0], g["period"].iloc[-1]
        out.append({"profile_id": pid, "frequency": len(g) - 1, "recency": float((last - first).n),
                    "T": float((end - first).n),
                    "monetary_value": float(g["revenue"].iloc[1:].mean()) if len(g) > 1 else 0.0})
    return pd.DataFrame(out).set_index("profile_id").sort_index()


@pytest.mark.parametrize("unit", ["W", "D"])
def test_clv_summary_matches_pandas_reference(spark, unit):
    rows = purchase_rows()
    purchases = spark.createDataFrame(rows, PURCHASE_SCHEMA)
    as_of = date(2024, 6, 26)   # a Wednesday: T counts the partial current week as a period
    got = clv_summary(purchases, as_of, time_unit=unit).toPandas().set_index("profile_id").sort_index()
    ref = reference_summary(rows, as_of, unit)
    assert list(got.index) == list(ref.index) and "late" not in got.index
    assert got["frequency"].tolist() == ref["frequency"].tolist()
    np.testing.assert_allclose(got[["recency", "T", "monetary_value"]], ref[["recency", "T", "monetary_value"]],
                               rtol=1e-12)
    if unit == "W":
        assert got.loc["edge"].tolist() == [2, 3.0, ref.loc["edge", "T"], 16.0]   # (25+7)/2 over weeks 2 and 3


def test_calibration_holdout_matches_pandas_reference(spark):
    rows = purchase_rows(seed=4)
    purchases = spark.createDataFrame(rows, PURCHASE_SCHEMA)
    cal_end, obs_end = date(2024, 4, 30), date(2024, 6, 29)
    got = calibration_holdout_summary(purchases, cal_end, obs_end, time_unit="D").toPandas()
    got = got.set_index("profile_id").sort_index()
    ref = reference_summary(rows, cal_end, "D")
    df = pd.DataFrame(rows, columns=["profile_id", "event_time", "revenue"])
    hold = df[(df["event_time"] >= pd.Timestamp("2024-05-01", tz="UTC"))
              & (df["event_time"] < pd.Timestamp("2024-06-30", tz="UTC"))].copy()
    hold["day"] = hold["event_time"].dt.floor("D")
    per_day = hold.groupby(["profile_id", "day"])["revenue"].sum().groupby("profile_id")
    ref["frequency_holdout"] = per_day.size().reindex(ref.index).fillna(0).astype(int)
    ref["monetary_value_holdout"] = per_day.mean().reindex(ref.index).fillna(0.0)
    assert list(got.index) == list(ref.index)
    assert got["frequency_holdout"].tolist() == ref["frequency_holdout"].tolist()
    np.testing.assert_allclose(got[["frequency", "recency", "T", "monetary_value", "monetary_value_holdout"]],
                               ref[["frequency", "recency", "T", "monetary_value", "monetary_value_holdout"]],
                               rtol=1e-12)
    assert (got["duration_holdout"] == 60.0).all()
    via_summary = clv_summary(purchases, obs_end, time_unit="D", calibration_end=cal_end).toPandas()
    assert len(via_summary) == len(got) and "frequency_holdout" in via_summary.columns


def test_distributed_scoring_equals_pandas_scoring(spark):
    x, t_x, T, _ = simulate_bgnbd(600, 0.243, 4.414, 0.793, 2.426, T=39.0, seed=3)
    x, t_x = np.floor(x), np.floor(t_x)
    rng = np.random.default_rng(1)
    pdf = pd.DataFrame({"profile_id": [f"p{i}" for i in range(x.size)], "frequency": x.astype("int64"),
                        "recency": t_x, "T": T,
                        "monetary_value": np.where(x > 0, np.round(rng.gamma(5, 8, x.size), 2), 0.0)})
    pdf.loc[0, ["frequency", "recency", "monetary_value"]] = [500, 38.0, 31.0]   # a very frequent buyer
    summary = spark.createDataFrame(pdf).repartition(3)
    got = score_clv(summary, CDNOW_BG, CDNOW_GG, horizon=6, discount_rate=0.01, time_unit="W").toPandas()
    want = score_clv_pandas(pdf, CDNOW_BG, CDNOW_GG, horizon=6, discount_rate=0.01, time_unit="W")
    got = got.set_index("profile_id").loc[want["profile_id"]]
    cols = ["expected_purchases", "p_alive", "expected_spend", "clv"]
    np.testing.assert_allclose(got[cols].to_numpy(), want[cols].to_numpy(), rtol=1e-13)
    assert np.isfinite(want[cols].to_numpy()).all()
    assert (want.loc[pdf["frequency"] == 0, "p_alive"] == 1.0).all()


def test_sampling_and_fitting_from_spark(spark):
    x, t_x, T, _ = simulate_bgnbd(3000, 0.243, 4.414, 0.793, 2.426, T=39.0, seed=12)
    pdf = pd.DataFrame({"profile_id": [f"p{i}" for i in range(x.size)], "frequency": x.astype("int64"),
                        "recency": t_x, "T": T, "monetary_value": np.where(x > 0, 10.0 + x, 0.0)})
    summary = spark.createDataFrame(pdf)
    full = summary_to_pandas(summary, max_rows=10_000)
    assert len(full) == 3000
    sample = summary_to_pandas(summary, max_rows=1000, seed=1)
    again = summary_to_pandas(summary, max_rows=1000, seed=1)
    other = summary_to_pandas(summary, max_rows=1000, seed=2)
    assert sample["profile_id"].tolist() == again["profile_id"].tolist()       # deterministic
    assert set(sample["profile_id"]) != set(other["profile_id"])                # the seed matters
    assert 800 <= len(sample) <= 1200 and set(sample["profile_id"]) <= set(pdf["profile_id"])
    assert fit_bgnbd(summary, max_rows=10_000) == fit_bgnbd(pdf)
    assert fit_gamma_gamma(summary, max_rows=10_000) == fit_gamma_gamma(pdf)
    assert btyd.fit_bgnbd_arrays(pdf["frequency"], pdf["recency"], pdf["T"]).n == 3000
