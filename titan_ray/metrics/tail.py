"""Tail risk of a return series: value at risk (VaR) and conditional value at risk (CVaR).

Two estimators of each, and their rolling versions:

- historical (``historical_var``, ``historical_cvar``): order statistics of the returns themselves,
  empyrical's ``value_at_risk`` and ``conditional_value_at_risk``, which the tests check to 1e-12;
- parametric (``parametric_var``, ``parametric_cvar``): the closed forms of a normal or a Student-t
  fitted to the returns' mean and standard deviation;
- rolling (``rolling_var``, ``rolling_cvar``): either estimator over a trailing window, causal.

Conventions (empyrical's). ``r`` holds simple per-bar returns; a ``nan`` return is a missing bar and
is dropped, and m counts the returns left. ``level`` is the confidence level (0.95, 0.99) and
alpha = 1 - level the tail's share. Every figure is a *return*, not a loss: negative numbers are
losses, so a 95% VaR of -0.021 reads "one bar in twenty loses 2.1% or more". Nothing is annualised.
Fewer than 2 returns give ``nan``; nothing here raises or warns on degenerate data (a constant
series, an infinite return after a bankruptcy), only on invalid arguments.

- Historical VaR = np.percentile(r, 100 * alpha), numpy's linear interpolation between order
  statistics.
- Historical CVaR = the mean of the k + 1 smallest returns, k = floor((m - 1) * alpha).
- mu = mean(r), sigma = std(r, ddof=1).
- Normal VaR = mu + sigma * z, z = Phi^-1(alpha); normal CVaR = mu - sigma * phi(z) / alpha.
- Student-t, location-scale with nu degrees of freedom and scale s = sigma * sqrt((nu - 2) / nu),
  so that its variance is the sample's: VaR = mu + s * q, q = T_nu^-1(alpha); CVaR =
  mu - s * f_nu(q) / alpha * (nu + q^2) / (nu - 1), f_nu the standard t density. nu is ``dof``
  (> 2), or, when ``dof`` is None, fitted by the method of moments to the excess kurtosis
  g2 = m4 / m2^2 - 3 (m_k the k-th central moment, divided by m): nu = 4 + 6 / g2, clipped to
  [2.5, 100], and 100 (a near-normal t) when g2 <= 0.
- Rolling: ``out[i]`` is the estimator on ``r[i - window + 1 : i + 1]`` and ``nan`` for
  i < window - 1; it never reads a return after i, so it is what was known at bar i.

alpha is 1 - level rounded to 12 decimals: in floats 1 - 0.9 is 0.09999999999999998, and with 11
returns that would give the CVaR k = 0 instead of the k = 1 that a 10% tail means.
"""

from __future__ import annotations

import math
from numbers import Real
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

MIN_DOF = 2.5
"""The lowest fitted nu: a t's variance needs nu > 2, and the fit keeps a margin above it."""

MAX_DOF = 100.0
"""The highest fitted nu, and the one for returns with no excess kurtosis: scaled to the same
variance, this t's 95% and 99% quantiles are within 0.1% and 0.7% of the normal's."""

Dist = Literal["normal", "t"]
Method = Literal["historical", "parametric"]

_STANDARD_NORMAL = NormalDist()
_BLOCK = 1 << 20  # returns per block of rolling windows: 8 MiB of float64 at a time


def historical_var(r: np.ndarray, level: float = 0.95) -> float:
    """The returns' alpha-quantile, linearly interpolated (empyrical's ``value_at_risk``)."""
    alpha = _tail_share(level)
    x = _present(r)
    if x.size < 2:
        return math.nan
    with np.errstate(all="ignore"):  # an infinite return makes the interpolation inf - inf
        return float(np.percentile(x, 100.0 * alpha))


def historical_cvar(r: np.ndarray, level: float = 0.95) -> float:
    """Mean of the k + 1 smallest returns, k = floor((m - 1) * alpha) (empyrical's
    ``conditional_value_at_risk``)."""
    alpha = _tail_share(level)
    x = _present(r)
    if x.size < 2:
        return math.nan
    k = int((x.size - 1) * alpha)
    with np.errstate(all="ignore"):
        return float(np.mean(np.partition(x, k)[: k + 1]))


def parametric_var(
    r: np.ndarray, level: float = 0.95, dist: Dist = "normal", dof: float | None = None
) -> float:
    """The alpha-quantile of a normal or Student-t with the returns' mean and variance."""
    alpha = _tail_share(level)
    fit = _fit(r, dist, dof)
    if fit is None:
        return math.nan
    mu, scale, nu = fit
    if nu is None:
        return mu + scale * _STANDARD_NORMAL.inv_cdf(alpha)
    return mu + scale * float(_student_t().ppf(alpha, nu))


def parametric_cvar(
    r: np.ndarray, level: float = 0.95, dist: Dist = "normal", dof: float | None = None
) -> float:
    """The mean below the alpha-quantile of a normal or Student-t with the returns' mean and variance."""
    alpha = _tail_share(level)
    fit = _fit(r, dist, dof)
    if fit is None:
        return math.nan
    mu, scale, nu = fit
    if nu is None:
        return mu - scale * _STANDARD_NORMAL.pdf(_STANDARD_NORMAL.inv_cdf(alpha)) / alpha
    t = _student_t()
    q = float(t.ppf(alpha, nu))
    return mu - scale * float(t.pdf(q, nu)) / alpha * (nu + q * q) / (nu - 1.0)


def rolling_var(r: np.ndarray, window: int, level: float = 0.95, method: Method = "historical") -> np.ndarray:
    """VaR of every trailing window of ``window`` returns (``parametric``: the normal one)."""
    return _rolling(r, window, level, method, cvar=False)


def rolling_cvar(
    r: np.ndarray, window: int, level: float = 0.95, method: Method = "historical"
) -> np.ndarray:
    """CVaR of every trailing window of ``window`` returns (``parametric``: the normal one)."""
    return _rolling(r, window, level, method, cvar=True)


def _tail_share(level: float) -> float:
    if not (isinstance(level, Real) and 0.0 < level < 1.0):
        raise ValueError(f"level is a confidence level strictly between 0 and 1 (0.95, 0.99), got {level!r}")
    alpha = round(1.0 - float(level), 12)  # why rounded: see the module docstring
    if alpha <= 0.0:
        raise ValueError(f"level leaves no tail at 12 decimals: got {level!r}; use at most 1 - 1e-12")
    return alpha


def _present(r: np.ndarray) -> np.ndarray:
    x = np.asarray(r, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


def _fit(r: np.ndarray, dist: Dist, dof: float | None) -> tuple[float, float, float | None] | None:
    """(mu, scale, nu) of the fitted distribution, nu None for the normal; None with < 2 returns."""
    if dist not in ("normal", "t"):
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    if dof is not None:
        if dist != "t":
            raise ValueError(f"dof={dof!r} is the Student-t's degrees of freedom; pass dist='t' with it")
        if not (isinstance(dof, Real) and dof > 2.0 and math.isfinite(dof)):
            raise ValueError(
                f"dof must be a finite number above 2 (the t's variance is infinite below), got {dof!r}"
            )
    x = _present(r)
    if x.size < 2:
        return None
    with np.errstate(all="ignore"):
        mu = float(x.mean())
        sigma = float(np.std(x, ddof=1))
        if dist == "normal":
            return mu, sigma, None
        nu = float(dof) if dof is not None else _moment_dof(x - mu)
        return mu, sigma * math.sqrt((nu - 2.0) / nu), nu


def _student_t() -> Any:
    # imported here: scipy.stats takes 0.7 s to import, and the leaderboard (performance imports
    # this module) and the rule models' actors never need a t
    from scipy.stats import t

    return t


def _moment_dof(deviations: np.ndarray) -> float:
    """nu whose t has the deviations' excess kurtosis: 6 / (nu - 4) = g2."""
    m2 = float(np.mean(deviations**2))
    if not m2 > 0.0:  # constant returns: any nu gives a zero scale; nan ones stay nan through mu
        return MAX_DOF
    excess = float(np.mean(deviations**4)) / (m2 * m2) - 3.0
    if math.isnan(excess):
        return math.nan
    if excess <= 0.0:
        return MAX_DOF
    return float(np.clip(4.0 + 6.0 / excess, MIN_DOF, MAX_DOF))


def _rolling(r: np.ndarray, window: int, level: float, method: Method, *, cvar: bool) -> np.ndarray:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window is a number of returns, at least 2, got {window!r}")
    if method not in ("historical", "parametric"):
        raise ValueError(f"method must be 'historical' or 'parametric', got {method!r}")
    alpha = _tail_share(level)  # a bad level fails here, however short r is
    x = np.asarray(r, dtype=np.float64).ravel()
    out = np.full(x.size, math.nan)
    if x.size < window:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x, window)  # row j ends at bar j + window - 1
    missing = np.concatenate(([0], np.cumsum(np.isnan(x))))
    gappy = missing[window:] - missing[:-window] > 0
    # Windows without a missing return go through numpy by blocks of rows (a loop of 1-D calls
    # costs ~70 us a bar); each row's arithmetic is the 1-D function's, so the numbers are the same.
    full = np.flatnonzero(~gappy)
    step = max(1, _BLOCK // window)
    for start in range(0, full.size, step):
        rows = full[start : start + step]
        out[rows + window - 1] = _window_rows(windows[rows], alpha, method, cvar)
    estimate = {
        ("historical", False): historical_var,
        ("historical", True): historical_cvar,
        ("parametric", False): parametric_var,
        ("parametric", True): parametric_cvar,
    }[method, cvar]
    for j in np.flatnonzero(gappy):
        out[j + window - 1] = estimate(windows[j], level)
    return out


def _window_rows(block: np.ndarray, alpha: float, method: Method, cvar: bool) -> np.ndarray:
    """The estimate of each row of ``block`` (no nan in it), as the 1-D functions compute it."""
    with np.errstate(all="ignore"):
        if method == "historical":
            if not cvar:
                return np.percentile(block, 100.0 * alpha, axis=1)
            k = int((block.shape[1] - 1) * alpha)
            return np.mean(np.partition(block, k, axis=1)[:, : k + 1], axis=1)
        mu, sigma = block.mean(axis=1), np.std(block, axis=1, ddof=1)
        z = _STANDARD_NORMAL.inv_cdf(alpha)
        if not cvar:
            return mu + sigma * z
        return mu - sigma * _STANDARD_NORMAL.pdf(z) / alpha
