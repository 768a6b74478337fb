"""BG/NBD and Gamma-Gamma "buy 'til you die" models in plain numpy/scipy.

This module holds only array math, so the same functions run on the driver (fitting, pandas scoring)
and inside Spark Python workers (``mapInPandas`` scoring in :mod:`cdp_spark.ml.clv`). It imports no Spark.

Why not a library: ``lifetimes`` is archived and breaks on pandas 3, the current ``pymc-marketing`` needs
Python >= 3.12 and ``btyd`` does not install on Python 3.11. The two models have closed-form likelihoods,
so a compact maximum-likelihood implementation (checked in the tests against independent evaluations,
simulations and parameter recovery) is smaller than any of those dependencies.

Models and formulas
-------------------
Per customer: ``x`` repeat purchases, ``t_x`` time of the last purchase and ``T`` age, both measured from
the first purchase; ``m`` the mean value of the repeat purchases.

BG/NBD (Fader, Hardie & Lee 2005): while alive, purchases follow Poisson(lambda), lambda ~ Gamma(r, alpha);
after each repeat purchase the customer drops out with probability p ~ Beta(a, b). Log-likelihood (eq. 6)::

    ll = ln G(r+x) - ln G(r) + r ln(alpha) + ln B(a, b+x) - ln B(a, b)
         + logaddexp(-(r+x) ln(alpha+T),  [x>0] (ln a - ln(b+x-1) - (r+x) ln(alpha+t_x)))

Expected purchases in the next ``t`` (eq. 10), rewritten with Euler's transformation
``2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A,C-B;C;z)`` so that no term grows with ``x``::

    z = t / (alpha+T+t)
    E[Y(t)] = (a+b+x-1)/(a-1) * [1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)] * P(alive)
    P(alive) = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))     (1 when x = 0)

Gamma-Gamma (Fader & Hardie 2013): each purchase value ~ Gamma(p, nu), nu ~ Gamma(q, gamma). The mean of
``x`` values has density ``G(px+q)/(G(px)G(q)) gamma^q m^(px-1) x^(px) / (gamma+m x)^(px+q)``, and the
expected spend is ``p (gamma + x m) / (p x + q - 1)`` (needs q > 1). It is fitted on repeat buyers only.

CLV over ``horizon`` months with a monthly ``discount_rate`` (the scheme of lifetimes'
``customer_lifetime_value``, with exact month lengths)::

    clv = expected_spend * sum_{k=1..horizon} (E[Y(k*ppm)] - E[Y((k-1)*ppm)]) / (1+discount_rate)^k

where ``ppm`` is model periods per month: 365.25/12 days, or 365.25/12/7 weeks.

Fitting maximises the likelihood over log-parameters with L-BFGS-B and analytic gradients; identical
summary rows are collapsed into weights and times are rescaled so that max(T) = 10, as the optimiser
prefers parameters of order one (alpha is scaled back; the reported log-likelihood is on the input scale).

Example:
    >>> import numpy as np
    >>> bg = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    >>> float(np.round(bgnbd_probability_alive(0, 0.0, 30.0, bg), 3))
    1.0
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1

TimeUnit = Literal["W", "D"]

#: Model periods per calendar month, for CLV discounting.
PERIODS_PER_MONTH: dict[str, float] = {"D": 365.25 / 12, "W": 365.25 / 12 / 7}

# Log-parameters are kept in a box: exp(+-30) covers any sensible model and keeps gammaln finite.
_LOG_BOUND = 30.0


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters; ``log_likelihood`` is the total over ``n`` customers."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    n: int = 0
    #: The optimiser succeeded and no parameter ran off to 0 or infinity.
    converged: bool = True

    def as_dict(self) -> dict[str, float | int | bool]:
        """Plain dict, e.g. for logging."""
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters; ``n`` counts the repeat buyers the model was fitted on."""

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    n: int = 0
    converged: bool = True

    def as_dict(self) -> dict[str, float | int | bool]:
        """Plain dict, e.g. for logging."""
        return asdict(self)


def _arrays(*values: object) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in np.broadcast_arrays(*values)]


# ---------------------------------------------------------------------------------------------- BG/NBD


def bgnbd_log_likelihood(x, t_x, T, r: float, alpha: float, a: float, b: float) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), computed in log space.

    Example:
        >>> float(np.round(bgnbd_log_likelihood(2, 10.0, 30.0, 0.24, 4.4, 0.79, 2.43), 4))
        -8.3073
    """
    x, t_x, T = _arrays(x, t_x, T)
    return _bgnbd_terms(x, t_x, T, r, alpha, a, b)[0]


def _bgnbd_terms(x, t_x, T, r, alpha, a, b):
    repeat = x > 0
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    # b + x - 1 > 0 whenever x >= 1; the placeholder keeps x = 0 rows free of log(<=0).
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)
    a4 = np.where(repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf)
    mix = np.logaddexp(a3, a4)
    return a1 + a2 + mix, (a3, a4, mix, b_x1, repeat)


def _bgnbd_objective(log_params, x, t_x, T, w):
    r, alpha, a, b = np.exp(log_params)
    ll, (a3, a4, mix, b_x1, repeat) = _bgnbd_terms(x, t_x, T, r, alpha, a, b)
    w4 = np.exp(a4 - mix)  # share of the "dropped out after the last purchase" branch
    w3 = 1.0 - w4
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x))
    common = digamma(a + b) - digamma(a + b + x)
    d_a = common + w4 / a
    d_b = common + digamma(b + x) - digamma(b) - np.where(repeat, w4 / b_x1, 0.0)
    total = w.sum()
    grad = np.array([(w * d).sum() for d in (d_r, d_alpha, d_a, d_b)]) * np.array([r, alpha, a, b])
    return -(w * ll).sum() / total, -grad / total


def fit_bgnbd_arrays(x, t_x, T, *, max_iter: int = 2000) -> BGNBDParams:
    """Maximum-likelihood BG/NBD fit from per-customer (x, t_x, T) arrays.

    Example:
        >>> fit_bgnbd_arrays([0, 2, 5, 1], [0, 20, 30, 5], [40, 38, 35, 30]).n
        4
    """
    x, t_x, T = _arrays(x, t_x, T)
    _check_summary(x, t_x, T)
    if not np.any(x > 0):
        raise ValueError("BG/NBD needs some repeat purchases (frequency > 0) to identify the dropout process")
    rows, weights = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    scale = 10.0 / T.max() if T.max() > 0 else 1.0
    ux, ut_x, uT = rows[:, 0], rows[:, 1] * scale, rows[:, 2] * scale
    w = weights.astype(float)
    theta, converged = _maximize(_bgnbd_objective, np.zeros(4), (ux, ut_x, uT, w), max_iter)
    converged = converged and _identifiable(rows, 4)
    r, alpha, a, b = np.exp(theta)
    alpha = alpha / scale
    ll = float((w * bgnbd_log_likelihood(rows[:, 0], rows[:, 1], rows[:, 2], r, alpha, a, b)).sum())
    return BGNBDParams(float(r), float(alpha), float(a), float(b), ll, int(x.size), converged)


def bgnbd_probability_alive(x, t_x, T, params: BGNBDParams) -> np.ndarray:
    """P(customer still alive at T | x, t_x, T); exactly 1 for customers without repeat purchases.

    Example:
        >>> bg = BGNBDParams(0.24, 4.4, 0.79, 2.43)
        >>> bool(bgnbd_probability_alive(3, 5.0, 40.0, bg) < bgnbd_probability_alive(3, 39.0, 40.0, bg))
        True
    """
    x, t_x, T = _arrays(x, t_x, T)
    return np.exp(-np.logaddexp(0.0, _log_dropout_odds(x, t_x, T, params)))


def _log_dropout_odds(x, t_x, T, params: BGNBDParams) -> np.ndarray:
    # ln[a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)]; -inf (odds 0) when x = 0 by the model's convention.
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)
    log_odds = np.log(a) - np.log(b_x1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(repeat, log_odds, -np.inf)


def bgnbd_conditional_expected_purchases(t, x, t_x, T, params: BGNBDParams) -> np.ndarray:
    """Expected purchases in (T, T+t] given a customer's history (FHL 2005 eq. 10, Euler-transformed).

    Example:
        >>> bg = BGNBDParams(0.24, 4.4, 0.79, 2.43)
        >>> float(np.round(bgnbd_conditional_expected_purchases(10.0, 2, 30.0, 38.0, bg), 4))
        0.3658
    """
    t, x, t_x, T = _arrays(t, x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a_m1 = a - 1.0
    if abs(a_m1) < 1e-9:  # removable singularity at a = 1: evaluate just beside it
        a_m1 = 1e-9
        a = 1.0 + a_m1
    z = t / (alpha + T + t)
    hyp = hyp2f1(a + b - 1.0 - r, a_m1, a + b + x - 1.0, z)
    u = a_m1 * np.log1p(-z)
    # 1 - (1-z)^(a-1) * hyp, written to keep precision when both terms are close to 1.
    bracket = -np.expm1(u) - np.exp(u) * (hyp - 1.0)
    alive = np.exp(-np.logaddexp(0.0, _log_dropout_odds(x, t_x, T, params)))
    return (a + b + x - 1.0) / a_m1 * bracket * alive


def bgnbd_expected_purchases(t, params: BGNBDParams) -> np.ndarray:
    """Expected purchases in (0, t] for a customer just acquired (FHL 2005 eq. 7).

    This is the conditional expectation at x = t_x = T = 0.

    Example:
        >>> float(np.round(bgnbd_expected_purchases(52.0, BGNBDParams(0.24, 4.4, 0.79, 2.43)), 4))
        1.4362
    """
    return bgnbd_conditional_expected_purchases(t, 0.0, 0.0, 0.0, params)


# ---------------------------------------------------------------------------------------- Gamma-Gamma


def gamma_gamma_log_likelihood(x, m, p: float, q: float, gamma: float) -> np.ndarray:
    """Per-customer Gamma-Gamma log-density of the mean spend ``m`` over ``x`` (> 0) purchases.

    Example:
        >>> float(np.round(gamma_gamma_log_likelihood(3, 40.0, 6.25, 3.74, 15.44), 4))
        -4.3336
    """
    x, m = _arrays(x, m)
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
            + (px - 1.0) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + gamma))


def _gamma_gamma_objective(log_params, x, m, w):
    p, q, gamma = np.exp(log_params)
    px = p * x
    ll = gamma_gamma_log_likelihood(x, m, p, q, gamma)
    log_xm_g = np.log(x * m + gamma)
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - log_xm_g)
    d_q = digamma(px + q) - digamma(q) + np.log(gamma) - log_xm_g
    d_gamma = q / gamma - (px + q) / (x * m + gamma)
    total = w.sum()
    grad = np.array([(w * d).sum() for d in (d_p, d_q, d_gamma)]) * np.array([p, q, gamma])
    return -(w * ll).sum() / total, -grad / total


def fit_gamma_gamma_arrays(x, m, *, max_iter: int = 2000) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit; rows with x <= 0 or m <= 0 are ignored (repeat buyers only).

    Example:
        >>> fit_gamma_gamma_arrays([0, 1, 2, 4, 3], [0, 20.0, 35.0, 27.5, 50.0]).n
        4
    """
    x, m = _arrays(x, m)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if x.size < 2:
        raise ValueError("Gamma-Gamma needs at least two repeat buyers with a positive spend")
    rows, weights = np.unique(np.column_stack([x, m]), axis=0, return_counts=True)
    scale = 1.0 / np.mean(m)  # spend of order one suits the optimiser; gamma is scaled back
    w = weights.astype(float)
    theta, converged = _maximize(_gamma_gamma_objective, np.zeros(3), (rows[:, 0], rows[:, 1] * scale, w), max_iter)
    converged = converged and _identifiable(rows, 3)
    p, q, gamma = np.exp(theta)
    gamma = gamma / scale
    ll = float((w * gamma_gamma_log_likelihood(rows[:, 0], rows[:, 1], p, q, gamma)).sum())
    return GammaGammaParams(float(p), float(q), float(gamma), ll, int(x.size), converged)


def gamma_gamma_expected_spend(x, m, params: GammaGammaParams) -> np.ndarray:
    """Expected mean spend per future purchase: ``p (gamma + x m) / (p x + q - 1)``.

    With x = 0 this is the population mean ``p gamma / (q - 1)``; ``m`` is then ignored.

    Example:
        >>> float(np.round(gamma_gamma_expected_spend(0, 0.0, GammaGammaParams(6.25, 3.74, 15.44)), 3))
        35.219
    """
    if params.q <= 1.0:
        raise ValueError(f"Gamma-Gamma expected spend needs q > 1, got q={params.q:.4g}")
    x, m = _arrays(x, m)
    m = np.where(x > 0, m, 0.0)
    return params.p * (params.gamma + x * m) / (params.p * x + params.q - 1.0)


# ------------------------------------------------------------------------------------------ CLV


def periods_per_month(time_unit: str) -> float:
    """Model periods in one calendar month (365.25/12 days).

    Example:
        >>> round(periods_per_month("W"), 3)
        4.348
    """
    try:
        return PERIODS_PER_MONTH[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be one of {sorted(PERIODS_PER_MONTH)}, got {time_unit!r}") from None


def customer_lifetime_value(x, t_x, T, m, bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams, *,
                            horizon: int, discount_rate: float, time_unit: str) -> np.ndarray:
    """Discounted expected revenue over ``horizon`` months (formula in the module docstring).

    Example:
        >>> bg, gg = BGNBDParams(0.24, 4.4, 0.79, 2.43), GammaGammaParams(6.25, 3.74, 15.44)
        >>> float(np.round(customer_lifetime_value(2, 30.0, 38.0, 40.0, bg, gg, horizon=12,
        ...                                        discount_rate=0.01, time_unit="W"), 2))
        58.94
    """
    return _clv_parts(x, t_x, T, m, bgnbd, gamma_gamma, horizon, discount_rate, time_unit)[2]


def _clv_parts(x, t_x, T, m, bgnbd, gamma_gamma, horizon, discount_rate, time_unit):
    if horizon < 1:
        raise ValueError("horizon must be at least one month")
    ppm = periods_per_month(time_unit)
    x, t_x, T, m = _arrays(x, t_x, T, m)
    spend = gamma_gamma_expected_spend(x, m, gamma_gamma)
    discounted = np.zeros_like(x)
    previous = np.zeros_like(x)
    for month in range(1, horizon + 1):
        cumulative = bgnbd_conditional_expected_purchases(month * ppm, x, t_x, T, bgnbd)
        discounted += (cumulative - previous) / (1.0 + discount_rate) ** month
        previous = cumulative
    return previous, spend, spend * discounted


def score_summary(summary: pd.DataFrame, bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams, *,
                  horizon: int = 12, discount_rate: float = 0.01, time_unit: str = "W") -> pd.DataFrame:
    """Score a pandas summary (profile_id, frequency, recency, T, monetary_value).

    Returns profile_id, expected_purchases (undiscounted, over the horizon), p_alive, expected_spend, clv.
    Spark scoring (:func:`cdp_spark.ml.clv.score_clv`) runs this very function on each Arrow batch.

    Example:
        >>> pdf = pd.DataFrame({"profile_id": ["p1"], "frequency": [2], "recency": [30.0], "T": [38.0],
        ...                     "monetary_value": [40.0]})
        >>> bg, gg = BGNBDParams(0.24, 4.4, 0.79, 2.43), GammaGammaParams(6.25, 3.74, 15.44)
        >>> list(score_summary(pdf, bg, gg).columns)
        ['profile_id', 'expected_purchases', 'p_alive', 'expected_spend', 'clv']
    """
    x = summary["frequency"].to_numpy(dtype=float)
    t_x = summary["recency"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    m = summary["monetary_value"].fillna(0.0).to_numpy(dtype=float)
    expected, spend, clv = _clv_parts(x, t_x, T, m, bgnbd, gamma_gamma, horizon, discount_rate, time_unit)
    return pd.DataFrame({
        "profile_id": summary["profile_id"].to_numpy(),
        "expected_purchases": expected,
        "p_alive": bgnbd_probability_alive(x, t_x, T, bgnbd),
        "expected_spend": spend,
        "clv": clv,
    })


# ---------------------------------------------------------------------------------------- helpers


def _check_summary(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if x.size == 0:
        raise ValueError("cannot fit on an empty summary")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(T))):
        raise ValueError("summary has non-finite frequency, recency or T")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
        raise ValueError("summary needs frequency >= 0 and 0 <= recency <= T")


def _maximize(objective, x0: np.ndarray, args: tuple, max_iter: int) -> tuple[np.ndarray, bool]:
    """Minimise a mean negative log-likelihood over log-parameters; polish with Nelder-Mead if needed."""
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(x0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = minimize(objective, x0, args=args, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-8})
        if res.success:
            return res.x, _interior(res.x)
        # L-BFGS-B can stop on a line-search failure right at the optimum; a derivative-free polish
        # from there either confirms the point or moves on.
        nm = minimize(lambda th: objective(th, *args)[0], res.x, method="Nelder-Mead",
                      options={"maxiter": max_iter * 2, "xatol": 1e-8, "fatol": 1e-12})
        best = nm.x if nm.fun <= res.fun else res.x
        grad = objective(best, *args)[1]
        return best, bool(nm.success or np.max(np.abs(grad)) < 1e-5) and _interior(best)


def _identifiable(distinct_rows: np.ndarray, parameters: int) -> bool:
    # Fewer distinct customer summaries than parameters cannot pin the parameters down: the likelihood rises along
    # a ridge, and where the optimiser stops on it depends on its tolerances (a newer scipy stopped inside the box
    # for a single customer, so the box check alone did not catch it).
    return bool(distinct_rows.shape[0] >= parameters)


def _interior(theta: np.ndarray) -> bool:
    # A log-parameter pressed against the box means the likelihood has no interior maximum (too little
    # data, e.g. a handful of customers): report it as not converged rather than trust the numbers.
    return bool(np.all(np.abs(theta) < _LOG_BOUND - 2.0))
