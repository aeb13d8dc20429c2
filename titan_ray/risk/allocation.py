"""Capital allocation across return streams: equal weight, inverse volatility, hierarchical risk parity.

Pure functions of a window of returns (T rows, M streams) that answer an allocation: M weights, each
at least 0, summing to 1. The ``allocator`` model kind (``models/allocator.py``) calls them on its
members' returns; nothing here knows about models or the arena.

- ``equal_weights(n)``: 1/n each;
- ``inverse_vol_weights(returns)``: a_m ∝ 1/σ_m, σ_m the sample standard deviation (ddof 1);
- ``hrp_weights(returns)``: Hierarchical Risk Parity (López de Prado, "Building diversified portfolios
  that outperform out of sample", 2016), with PyPortfolioOpt's ``HRPOpt`` conventions, so that the
  weights are that library's: correlation distance d_ij = sqrt(clip((1 - ρ_ij) / 2, 0, 1)), single
  linkage (scipy), the leaves in the tree's pre-order (quasi-diagonalisation), then recursive
  bisection of that ordered list into halves (the first ⌊n/2⌋ and the rest), each half weighted
  α = 1 - V_1 / (V_1 + V_2) and 1 - α, where V is the variance of the half's inverse-variance portfolio.

Degenerate windows, the same for both risk-based methods:

- rows with a non-finite value are left out (complete cases); with fewer than 2 rows left no
  variance is defined and the answer is equal weights;
- a stream with zero variance over the window (a model that held nothing) gets weight 0: its
  inverse variance is infinite and would take the whole allocation while earning nothing; the
  others share the allocation as if it were not there (all of them flat: equal weights);
- one stream left gets the whole allocation.
"""

from __future__ import annotations

import numpy as np
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd


def equal_weights(n: int) -> np.ndarray:
    """(n,) 1/n each."""
    if n < 1:
        raise ValueError(f"an allocation needs at least one stream, got n={n}")
    return np.full(n, 1.0 / n)


def inverse_vol_weights(returns: np.ndarray) -> np.ndarray:
    """(M,) weights ∝ 1 / the sample standard deviation of each column of ``returns`` (T, M)."""
    x, live = _window(returns)
    if x is None:
        return equal_weights(live.size)
    out = np.zeros(live.size)
    inv = 1.0 / x.std(axis=0, ddof=1)
    out[live] = inv / inv.sum()
    return out


def hrp_weights(returns: np.ndarray) -> np.ndarray:
    """(M,) Hierarchical Risk Parity weights of the columns of ``returns`` (T, M); ``HRPOpt(df).optimize()``."""
    x, live = _window(returns)
    if x is None:
        return equal_weights(live.size)
    out = np.zeros(live.size)
    out[live] = _hrp(np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1]))
    return out


def _window(returns: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The complete rows of the streams that vary, and which streams those are (M,); None when the
    answer is equal weights over all of them (fewer than 2 complete rows, or none varies)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError(f"returns must be a (T, M) array with M >= 1 streams, got shape {r.shape}")
    x = r[np.isfinite(r).all(axis=1)]
    if len(x) < 2:
        return None, np.ones(r.shape[1], dtype=bool)
    live = np.ptp(x, axis=0) > 0  # exact: a constant column's std can come out a hair above 0
    if not live.any():
        return None, np.ones(r.shape[1], dtype=bool)
    return x[:, live], live


def _hrp(cov: np.ndarray) -> np.ndarray:
    """HRP weights from a covariance matrix (n, n) whose diagonal is positive."""
    n = len(cov)
    if n == 1:
        return np.ones(1)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    dist = ssd.squareform(np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0)), checks=False)
    order = sch.to_tree(sch.linkage(dist, "single"), rd=False).pre_order()
    w = np.ones(n)
    clusters = [order]
    while clusters:
        clusters = [c[a:b] for c in clusters for a, b in ((0, len(c) // 2), (len(c) // 2, len(c))) if len(c) > 1]
        for first, second in zip(clusters[::2], clusters[1::2], strict=True):
            v1, v2 = _cluster_var(cov, first), _cluster_var(cov, second)
            alpha = 1 - v1 / (v1 + v2)
            w[first] *= alpha
            w[second] *= 1 - alpha
    return w


def _cluster_var(cov: np.ndarray, items: list[int]) -> float:
    """Variance of the inverse-variance portfolio of ``items``."""
    c = cov[np.ix_(items, items)]
    w = 1 / np.diag(c)
    w /= w.sum()
    return float(np.linalg.multi_dot((w, c, w)))
