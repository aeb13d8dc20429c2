"""Has the live data moved away from what the model was trained on?

A ``Profile`` is taken once, from a reference window (the training window's features, or the
scores a model gave on it), stored next to the model with ``to_json`` and read back with
``from_json``. ``Profile.compare`` then measures a live window against it, column by column, and
returns one frozen ``ColumnDrift`` per column (``to_dict`` for the log and the API). Two
statistics, because they see different things:

- PSI, the population stability index: the reference's quantiles cut each column into bins (by
  default deciles: the interior edges are the quantiles at 1/bins, ..., (bins-1)/bins, with
  -inf and +inf at the ends, so every value falls in a bin). Edges that coincide (ties, a
  constant column) are merged, so a column may have fewer bins than asked; a constant column c
  keeps the edges (-inf, c, +inf) and still works. Bins are closed on the right, (lo, hi]: a value
  equal to an edge counts in the bin below it. With e and a the reference's and the live
  window's shares of values per bin,

      PSI = sum over bins of (a - e) * ln(a / e),

  every term >= 0, so PSI >= 0, and 0 exactly when the shares match. An empty bin would make it
  infinite, so both shares are floored at ``eps`` (1e-4) and renormalised to sum to 1 first.
  The usual reading, for decile bins: PSI < 0.1 stable, 0.1 to 0.25 a moderate shift (watch it),
  > 0.25 a significant shift (act on it). PSI grows with the number of bins, so compare it only
  with PSIs taken on the same bins.

- KS, the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, two-sided): the
  statistic is the largest gap between the live and the reference empirical CDFs (0 to 1), the
  p-value is that of H0 "same distribution". The reference side is a sample of at most
  ``max_sample`` (2000) of its values, drawn without replacement by a generator seeded with
  ``seed`` (afresh for each column, so a column's profile depends on its own values alone), so
  that the profile stays small and the same rows and seed give the same profile.
  The p-value is exact while both samples have at most ``_KS_EXACT_MAX_N`` values (about a
  millisecond at 2000 against 2000, and the asymptotic p-value is visibly off for small samples:
  0.43 instead of 0.47 at 100 against 100), and asymptotic (Kolmogorov's limit distribution) above
  that, where the exact one costs O(n_live * n_ref) for no visible gain (0.00810 against 0.00811
  at 100000 against 2000) and scipy may give up on it anyway.
  The test assumes independent draws; features of consecutive bars are autocorrelated, so read
  the p-value as a screening score (small means look), not as a calibrated error rate.

Non-finite values (nan, +/-inf) are dropped per column, on both sides; ``n`` and ``n_live``
count what is left. A live column with fewer than ``MIN_LIVE`` finite values gets no statistics
(``psi``, ``ks`` and ``p_value`` are None): too little data to say anything. Inputs are (n, F)
rows of F columns, or (T, S, F) panels (bars x symbols x features), which are read as T*S rows.

JSON: arrays become lists of floats; the edges' infinities are written as the strings "-inf" and
"inf" (so the document is plain JSON, ``allow_nan=False``), and Python writes floats with
``repr``, so ``from_json(to_json(p))`` gives back the same numbers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_LIVE = 30
"""A live column needs at least this many finite values for PSI and KS; fewer gives None."""

_KS_EXACT_MAX_N = 10_000  # larger samples use the asymptotic p-value (see the module docstring)
_JSON_VERSION = 1
_JSON_KEYS = frozenset({"version", "names", "edges", "props", "sample", "n"})


@dataclass(frozen=True)
class ColumnDrift:
    """One column of a live window against its reference: PSI, KS statistic and p-value."""

    name: str
    psi: float | None
    ks: float | None
    p_value: float | None
    n_live: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """A reference distribution per column (the training window's features, or a model's scores).

    ``edges[j]`` are column j's bin edges (-inf, interior quantiles of the reference, +inf),
    strictly increasing; ``props[j]`` the reference's share of its finite values per bin (sums to
    1); ``sample[j]`` up to ``max_sample`` of its finite values (sorted), for the KS test; ``n[j]``
    how many finite values it had. The arrays are read-only float64 copies.
    """

    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    props: tuple[np.ndarray, ...]
    sample: tuple[np.ndarray, ...]
    n: tuple[int, ...]

    def __post_init__(self) -> None:
        names = tuple(str(name) for name in self.names)
        width = len(names)
        for field in ("edges", "props", "sample", "n"):
            if len(getattr(self, field)) != width:
                raise ValueError(
                    f"Profile.{field} has {len(getattr(self, field))} entries for {width} names; "
                    "give one per column, in the order of names"
                )
        if len(set(names)) != width:
            raise ValueError(f"Profile names must be unique, got {list(names)}; rename the duplicates")
        edges = tuple(_frozen(e) for e in self.edges)
        props = tuple(_frozen(p) for p in self.props)
        sample = tuple(_frozen(s) for s in self.sample)
        for name, e, p, s in zip(names, edges, props, sample, strict=True):
            if e.ndim != 1 or e.size < 2 or e[0] != -np.inf or e[-1] != np.inf or not np.all(np.diff(e) > 0):
                raise ValueError(
                    f"column {name!r}: edges must be strictly increasing from -inf to +inf, got {e.tolist()}; "
                    "build the profile with Profile.from_rows"
                )
            if p.shape != (e.size - 1,):
                raise ValueError(
                    f"column {name!r}: props has {p.size} bins for {e.size} edges; "
                    "give one share per bin (len(edges) - 1)"
                )
            if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
                raise ValueError(f"column {name!r}: sample must be a non-empty 1-D array of finite values")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "props", props)
        object.__setattr__(self, "sample", sample)
        object.__setattr__(self, "n", tuple(int(k) for k in self.n))

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays inside tuples, which numpy refuses to reduce to a bool.
        if not isinstance(other, Profile):
            return NotImplemented
        return (
            self.names == other.names
            and self.n == other.n
            and all(
                len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
                for a, b in ((self.edges, other.edges), (self.props, other.props), (self.sample, other.sample))
            )
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray,
        names: Sequence[str],
        *,
        bins: int = 10,
        max_sample: int = 2000,
        seed: int = 0,
    ) -> Profile:
        """Profile of a reference window: rows (n, F), or (T, S, F) read as (T*S, F); one name per column.

        Non-finite values are dropped per column. Raises ValueError when len(names) != F, or when a
        column has fewer than ``bins`` finite values (naming it).
        """
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}; 10 (deciles) is the usual choice")
        if isinstance(max_sample, bool) or not isinstance(max_sample, int) or max_sample < 1:
            raise ValueError(f"max_sample must be a positive integer, got {max_sample!r}")
        table = _as_rows(rows, "rows")
        names = tuple(names)
        if len(names) != table.shape[1]:
            raise ValueError(
                f"names has {len(names)} entries but rows has {table.shape[1]} columns; give one name per column"
            )
        levels = np.arange(1, bins) / bins
        edges, props, sample, counts = [], [], [], []
        for j, name in enumerate(names):
            values = table[:, j]
            values = values[np.isfinite(values)]
            if values.size < bins:
                raise ValueError(
                    f"column {name!r} has {values.size} finite values; a profile with bins={bins} needs at "
                    f"least {bins}: use a longer reference window, fewer bins, or leave the column out"
                )
            e = np.concatenate(([-np.inf], np.unique(np.quantile(values, levels)), [np.inf]))
            if values.size > max_sample:
                # A generator per column, so that a column's profile depends on its values alone.
                rng = np.random.default_rng(seed)
                drawn = values[rng.choice(values.size, size=max_sample, replace=False)]
            else:
                drawn = values
            edges.append(e)
            props.append(live_props(e, values))
            sample.append(np.sort(drawn))
            counts.append(int(values.size))
        return cls(tuple(names), tuple(edges), tuple(props), tuple(sample), tuple(counts))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; the edges' infinities as "-inf" and "inf". ``from_json`` inverts it exactly."""
        return {
            "version": _JSON_VERSION,
            "names": list(self.names),
            "edges": [[_encode(x) for x in e.tolist()] for e in self.edges],
            "props": [p.tolist() for p in self.props],
            "sample": [s.tolist() for s in self.sample],
            "n": list(self.n),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        unknown = set(d) - _JSON_KEYS
        missing = _JSON_KEYS - set(d)
        if unknown or missing:
            raise ValueError(
                f"a drift profile has the keys {sorted(_JSON_KEYS)}; got unknown {sorted(unknown)}, "
                f"missing {sorted(missing)}: pass what Profile.to_json wrote"
            )
        if d["version"] != _JSON_VERSION:
            raise ValueError(
                f"drift profile version {d['version']!r} is not supported (this code reads {_JSON_VERSION}); "
                "rebuild the profile with Profile.from_rows"
            )
        return cls(
            names=tuple(d["names"]),
            edges=tuple(np.array([_decode(x) for x in e], dtype=np.float64) for e in d["edges"]),
            props=tuple(np.array(p, dtype=np.float64) for p in d["props"]),
            sample=tuple(np.array(s, dtype=np.float64) for s in d["sample"]),
            n=tuple(d["n"]),
        )

    def compare(self, live: np.ndarray) -> list[ColumnDrift]:
        """PSI and KS of each live column against the reference; live is (n, F) or (T, S, F), same columns.

        A column with fewer than ``MIN_LIVE`` finite live values gets psi, ks and p_value None.
        """
        table = _as_rows(live, "live")
        if table.shape[1] != len(self.names):
            raise ValueError(
                f"live has {table.shape[1]} columns but the profile has {len(self.names)} "
                f"({list(self.names)}); pass the same columns in the same order"
            )
        out = []
        for j, name in enumerate(self.names):
            values = table[:, j]
            values = values[np.isfinite(values)]
            if values.size < MIN_LIVE:
                out.append(ColumnDrift(name, None, None, None, int(values.size)))
                continue
            ref = self.sample[j]
            method = "exact" if max(values.size, ref.size) <= _KS_EXACT_MAX_N else "asymp"
            # imported here: scipy.stats takes 0.7 s to import, and most importers of this module (the
            # registry writes drift profiles) never compare one
            from scipy.stats import ks_2samp

            ks = ks_2samp(values, ref, alternative="two-sided", method=method)
            out.append(
                ColumnDrift(
                    name=name,
                    psi=psi(self.props[j], live_props(self.edges[j], values)),
                    ks=float(ks.statistic),
                    p_value=float(ks.pvalue),
                    n_live=int(values.size),
                )
            )
        return out


def psi(expected: np.ndarray, actual: np.ndarray, *, eps: float = 1e-4) -> float:
    """Population stability index, sum((a - e) * ln(a / e)) over bins.

    expected and actual are per-bin proportions, or counts (each is normalised to sum to 1). Both
    are floored at eps and renormalised, so that an empty bin gives a large but finite term.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}; the floor keeps an empty bin finite")
    e = _proportions(expected, "expected")
    a = _proportions(actual, "actual")
    if e.shape != a.shape:
        raise ValueError(
            f"expected has {e.size} bins and actual has {a.size}; compute both on the same bin edges"
        )
    e = np.maximum(e, eps)
    e = e / e.sum()
    a = np.maximum(a, eps)
    a = a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def live_props(profile_edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of the finite values in each bin (lo, hi] of the edges; all zeros when none is finite."""
    edges = np.asarray(profile_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"profile_edges must be a 1-D array of at least 2 edges, got shape {edges.shape}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    bins = edges.size - 1
    if v.size == 0:
        return np.zeros(bins)
    # Counting interior edges strictly below a value gives its (lo, hi] bin; the outer edges are +/-inf.
    index = np.searchsorted(edges[1:-1], v, side="left")
    return np.bincount(index, minlength=bins) / v.size


def _as_rows(x: np.ndarray, arg: str) -> np.ndarray:
    table = np.asarray(x, dtype=np.float64)
    if table.ndim == 3:
        table = table.reshape(-1, table.shape[-1])
    if table.ndim != 2:
        raise ValueError(
            f"{arg} must be (n, F) rows or a (T, S, F) panel, got shape {table.shape}; "
            "reshape a single column to (n, 1)"
        )
    return table


def _proportions(x: np.ndarray, arg: str) -> np.ndarray:
    p = np.asarray(x, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{arg} must be a non-empty 1-D array of per-bin proportions, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{arg} must hold finite, non-negative proportions or counts, got {p.tolist()}")
    total = p.sum()
    if total <= 0:
        raise ValueError(f"{arg} sums to 0: there is nothing to compare; it needs at least one value in a bin")
    return p / total


def _frozen(x: np.ndarray) -> np.ndarray:
    a = np.array(x, dtype=np.float64)  # a copy, so the caller's array cannot change the profile
    a.flags.writeable = False
    return a


def _encode(x: float) -> float | str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _decode(x: float | str) -> float:
    if x == "inf":
        return math.inf
    if x == "-inf":
        return -math.inf
    return float(x)
