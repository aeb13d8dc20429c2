"""Is a model's Sharpe ratio really better than the benchmark's, or is it noise?

Two opinions, so that the arena does not crown a lucky model:

- ``sharpe_difference_test``: a paired stationary bootstrap (Politis & Romano, 1994) of the two
  return series together. Each resample draws one set of bar indices and applies it to both
  series, so their correlation (same market, same bars) is kept, and it draws them in blocks of
  random length (geometric, mean ``block``; default round(n ** (1/3)), at least 1) that wrap
  around the end, so autocorrelation within a block is kept too. The statistic is
  d = SR_model - SR_bench, both annualised exactly like ``performance.sharpe``.

  p-value of H0: SR_model <= SR_bench, one-sided, by the shift method: the bootstrap
  distribution of d is centred on the observed d_obs to stand for the null distribution, and
  p = (1 + #{d_boot - d_obs >= d_obs}) / (1 + B) over the B resamples. The +1 counts the
  observed sample as one draw (Davison & Hinkley, 1997), so p is never exactly 0. The
  ``confidence`` interval (default 95%) is the percentile interval of d_boot. Bars where either series has a missing (nan) return are dropped from
  both. Resamples whose Sharpe ratios are not finite (a resample of constant returns) are left
  out; when the observed d is not finite (fewer than 2 bars, a constant series) the test is
  undefined: p-value and interval are nan.

- ``probabilistic_sharpe_ratio``: Bailey & López de Prado (2012), "The Sharpe Ratio Efficient
  Frontier", J. of Risk 15(2): the probability that the true per-period Sharpe ratio exceeds a
  benchmark value, given the sample's length, skewness and kurtosis:
  PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2)),
  with SR = mean / std (ddof 1) per period, skew and kurt (raw, normal = 3, not excess) from
  population moments.

And a third, for the tournament, which picks the best of many models and so must not be fooled
by the luckiest of them:

- ``deflated_sharpe_ratio``: Bailey & López de Prado (2014), "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality", J. of Portfolio
  Management 40(5). The DSR is the PSR against SR0 instead of 0, where SR0 =
  ``expected_max_sharpe(N, V)`` is the Sharpe ratio the best of N skill-less trials is expected
  to show by luck alone, from N = the number of trials tried and V = the sample variance of
  their Sharpe ratios:
  SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e))),
  gamma = ``EULER_GAMMA``. It returns a ``DeflatedSharpe`` record with both PSR and DSR and
  everything that went into them.

The PSR and the DSR share one moments helper (``_sample_moments``) and one formula
(``_psr_from_moments``). The bootstrap is deterministic for a given random generator; nothing
here reads a global seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from titan_ray.metrics.performance import sharpe

# Index arrays are built and consumed in chunks of about this many elements (resamples x bars),
# so memory stays at a few MB and the working set stays in cache whatever B and n are.
_CHUNK_ELEMENTS = 1 << 19

# The Euler-Mascheroni constant, in the extreme-value approximation of E[max] of N normals.
EULER_GAMMA = 0.5772156649015329

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class SharpeTest:
    """Outcome of ``sharpe_difference_test``; Sharpe ratios annualised, ``difference`` = model - bench."""

    sharpe_model: float
    sharpe_bench: float
    difference: float
    p_value: float
    ci_low: float
    ci_high: float
    n_resamples: int
    block: int


def sharpe_difference_test(
    r_model: np.ndarray,
    r_bench: np.ndarray,
    periods: float,
    *,
    n_resamples: int = 2000,
    block: int | None = None,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> SharpeTest:
    """One-sided paired bootstrap test of H0: SR_model <= SR_bench (see the module docstring)."""
    x = np.asarray(r_model, dtype=np.float64).ravel()
    y = np.asarray(r_bench, dtype=np.float64).ravel()
    _check_inputs(x, y, n_resamples, block, confidence)
    # Compare over the bars both series have: a missing (nan) return drops the bar from both.
    common = ~(np.isnan(x) | np.isnan(y))
    x, y = x[common], y[common]
    n = x.size
    mean_block = block if block is not None else max(1, round(n ** (1.0 / 3.0)))
    sr_model, sr_bench = sharpe(x, periods), sharpe(y, periods)
    with np.errstate(invalid="ignore"):
        observed = sr_model - sr_bench
    if not math.isfinite(observed):
        nan = math.nan
        return SharpeTest(sr_model, sr_bench, observed, nan, nan, nan, n_resamples, mean_block)

    boot = _bootstrap_differences(x, y, periods, n_resamples, mean_block, rng)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        nan = math.nan
        return SharpeTest(sr_model, sr_bench, observed, nan, nan, nan, n_resamples, mean_block)
    exceed = int(np.count_nonzero(boot - observed >= observed))
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return SharpeTest(
        sharpe_model=sr_model,
        sharpe_bench=sr_bench,
        difference=observed,
        p_value=(1 + exceed) / (1 + boot.size),
        ci_low=float(low),
        ci_high=float(high),
        n_resamples=n_resamples,
        block=mean_block,
    )


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """Outcome of ``deflated_sharpe_ratio``; all Sharpe ratios per period (not annualised).

    Fields that depend on the returns are nan when those are undefined (fewer than 3 returns, a
    constant series); ``sr0``, ``n_trials`` and ``trial_variance`` depend only on the trials.
    """

    sharpe: float  # mean / std (ddof 1) of the returns
    sr0: float  # the deflated benchmark: expected_max_sharpe(n_trials, trial_variance)
    psr: float  # PSR against 0 (undeflated)
    dsr: float  # PSR against sr0: the Deflated Sharpe Ratio
    n_trials: int
    trial_variance: float  # sample variance (ddof 1) of the trial Sharpe ratios (0 for one trial)
    skew: float
    kurtosis: float  # raw (normal = 3)
    n: int  # returns used (nan dropped)


@dataclass(frozen=True, slots=True)
class _SampleMoments:
    """What the PSR needs from a return series; sharpe, skew and kurt are nan when undefined."""

    n: int
    sharpe: float
    skew: float
    kurt: float


def probabilistic_sharpe_ratio(r: np.ndarray, sr_benchmark_per_period: float) -> float:
    """Probability that the true per-period Sharpe ratio of ``r`` exceeds the benchmark's."""
    return _psr_from_moments(_sample_moments(r), sr_benchmark_per_period)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-period Sharpe ratio of ``n_trials`` independent skill-less trials.

    Bailey & López de Prado (2014), SR0: the trials' true Sharpe ratios are 0 and their
    estimates have variance ``sharpe_variance``; one trial gives 0.0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1 (count every trial tried), got {n_trials}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0.0):
        raise ValueError(
            "sharpe_variance must be a finite number >= 0 (the variance of the trials' Sharpe "
            f"ratios), got {sharpe_variance}"
        )
    if n_trials == 1:
        return 0.0  # the lone trial is not selected from anything; Phi^-1(0) would be -inf
    inv_cdf = _STANDARD_NORMAL.inv_cdf
    max_z = (1.0 - EULER_GAMMA) * inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(sharpe_variance) * max_z


def deflated_sharpe_ratio(r: np.ndarray, trial_sharpes: Sequence[float]) -> DeflatedSharpe:
    """Deflated Sharpe Ratio of ``r`` given the per-period Sharpe ratios of all trials tried.

    ``trial_sharpes`` must hold every trial, ``r``'s own among them; non-finite entries (trials
    whose Sharpe ratio is undefined) are not counted. Raises ValueError when none is finite.
    """
    trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    trials = trials[np.isfinite(trials)]
    if trials.size == 0:
        raise ValueError(
            "trial_sharpes has no finite Sharpe ratio; pass the per-period Sharpe ratio of every "
            "trial tried, the one of r included"
        )
    n_trials = int(trials.size)
    trial_variance = float(np.var(trials, ddof=1)) if n_trials > 1 else 0.0
    sr0 = expected_max_sharpe(n_trials, trial_variance)
    moments = _sample_moments(r)
    return DeflatedSharpe(
        sharpe=moments.sharpe,
        sr0=sr0,
        psr=_psr_from_moments(moments, 0.0),
        dsr=_psr_from_moments(moments, sr0),
        n_trials=n_trials,
        trial_variance=trial_variance,
        skew=moments.skew,
        kurtosis=moments.kurt,
        n=moments.n,
    )


def _sample_moments(r: np.ndarray) -> _SampleMoments:
    """Per-period Sharpe ratio, skewness and raw kurtosis of ``r`` with its nan bars dropped."""
    r = np.asarray(r, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]  # a missing bar, as in ``performance``
    n = int(r.size)
    if n < 3 or r.max() == r.min():
        return _SampleMoments(n, math.nan, math.nan, math.nan)
    with np.errstate(all="ignore"):
        dev = r - r.mean()
        var_pop = np.mean(dev**2)
        skew = np.mean(dev**3) / var_pop**1.5
        kurt = np.mean(dev**4) / var_pop**2
        sr = r.mean() / np.std(r, ddof=1)
    return _SampleMoments(n, float(sr), float(skew), float(kurt))


def _psr_from_moments(m: _SampleMoments, sr_benchmark: float) -> float:
    """PSR (Bailey & López de Prado, 2012) against ``sr_benchmark``; nan when undefined."""
    # The variance of the Sharpe estimator grows with negative skew and fat tails.
    spread = 1.0 - m.skew * m.sharpe + (m.kurt - 1.0) / 4.0 * m.sharpe * m.sharpe
    if not spread > 0.0:  # also false for nan: undefined moments
        return math.nan
    z = (m.sharpe - sr_benchmark) * math.sqrt((m.n - 1) / spread)
    if not math.isfinite(z):
        return math.nan
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _check_inputs(
    x: np.ndarray, y: np.ndarray, n_resamples: int, block: int | None, confidence: float
) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"r_model has {x.size} returns and r_bench {y.size}; pass both series over the same bars"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if block is not None and block < 1:
        raise ValueError(f"block (mean block length in bars) must be at least 1, got {block}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _bootstrap_differences(
    x: np.ndarray,
    y: np.ndarray,
    periods: float,
    n_resamples: int,
    mean_block: int,
    rng: np.random.Generator,
) -> np.ndarray:
    n = x.size
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(n_resamples)
    for first in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - first)
        idx = _stationary_indices(n, rows, mean_block, rng)
        out[first : first + rows] = _row_sharpes(x[idx], periods) - _row_sharpes(y[idx], periods)
    return out


def _stationary_indices(n: int, rows: int, mean_block: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, n) bar indices of stationary-bootstrap resamples with mean block length ``mean_block``.

    One uniform u per position decides both things: a new block starts where u < p (p = 1 /
    mean_block), and since u / p is then uniform on [0, 1) it also gives the block's start bar.
    Elsewhere the resample continues with the bar after the previous one, wrapping at the end.
    """
    p = 1.0 / mean_block
    u = rng.random((rows, n))
    starts_block = u < p
    starts_block[:, 0] = True
    start_bar = np.minimum((u * (n / p)).astype(np.int64), n - 1)
    start_bar[:, 0] = np.minimum((u[:, 0] * n).astype(np.int64), n - 1)
    t = np.arange(n, dtype=np.int64)
    block_begin = np.where(starts_block, t, 0)
    np.maximum.accumulate(block_begin, axis=1, out=block_begin)
    idx = np.take_along_axis(start_bar, block_begin, axis=1)
    idx += t - block_begin
    idx[idx >= n] -= n
    return idx


def _row_sharpes(samples: np.ndarray, periods: float) -> np.ndarray:
    """``performance.sharpe`` of each row, vectorised (zero dispersion gives +-inf or nan)."""
    n = samples.shape[1]
    mean = samples.mean(axis=1)
    dev = samples - mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", dev, dev) / (n - 1))
    std[samples.max(axis=1) == samples.min(axis=1)] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean / std * math.sqrt(periods)
