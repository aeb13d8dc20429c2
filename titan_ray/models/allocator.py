"""``allocator``: a fund of models, allocating capital across other arena models' return streams.

Its members are the arena models named in ``params.inputs``; like a stack over arena models
(``models/stacking.py``) it is a ``Stacker``: the arena decides the members first and hands it
their decisions on each chunk (``feed``), and a replay (a restarted actor) reads their ``signals``
instead (``attach``; in one process: each member ``record_signals()`` before its first bar, and
the allocator is attached to a function that reads their ``signals``). A member left out of a
chunk (taken out by the watchdog), or with no signal, is read as flat (weight 0), and the
sentences say so.

With w_m,t,s member m's target weight for symbol s decided at the close of bar t, and c_t,s the close:

- member returns: r_m,t = Σ_s w_m,t-1,s × (c_t,s / c_t-1,s - 1), the frictionless return of the
  weights m decided at t-1 over bar t's close-to-close move (c_t-1,s the last close known before t:
  a missing close counts as a 0 return, and the next one is compared with the last one known).
  Returns start at the second bar the allocator decides (before its first, members were flat:
  nothing is read from the warm-up bars), and are summed over the symbols in a fixed order;
- the allocation a_t (M weights ≥ 0 summing to 1, ``risk/allocation.py``): equal weight until
  ``lookback`` member returns exist; at the bar where the ``lookback``-th one arrives, and every
  ``rebalance_every`` bars after, it is set by ``method`` (``equal``, ``inverse_vol``, ``hrp``)
  from the last ``lookback`` member returns up to and including bar t, each known at t's close;
  between those bars it is held;
- its target weight: w_t,s = clip(Σ_m a_t,m × w_m,t,s, -1, 1), the members' decisions at t (the
  same close the allocation was set at) mixed by the allocation, summed over members in order.

So no decision reads a member's weight or a close from after its bar, and the state (the last
member weights and closes, the window of returns, their count, the allocation) is carried across
chunks: the decisions do not depend on the chunk size.

``long_only`` is False: its weights are a convex mix of its members', short only where a member is
short, and the ledger must not clip those away (the members' kinds are not known when it is built).

Explanation (method ``allocation``), per changed weight: one feature per member, its value the
allocation a_t,m and its attribution a_t,m × w_m,t,s, the member's contribution to the weight; the
attributions sum to the weight (``gap`` is what floating point leaves, ~1e-17). "Went long AAA
(weight 0 → 0.42): hrp allocation sma 50%, rsi 30%, hold 20%; sma long (0.5), rsi long (0.4), hold flat."
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Feature, action_phrase
from titan_ray.models.base import (
    Inputs,
    OutOfFold,
    Prediction,
    Reasons,
    SignalSource,
    TradingModel,
    fed_weights,
    hold_forward,
)
from titan_ray.models.params import AllocatorParams
from titan_ray.risk.allocation import equal_weights, hrp_weights, inverse_vol_weights

log = logging.getLogger(__name__)

_METHODS = {"inverse_vol": inverse_vol_weights, "hrp": hrp_weights}


class AllocatorModel(TradingModel):
    """Target weights: its members' target weights, mixed by an allocation set from their returns."""

    kind = "allocator"
    method = "allocation"
    long_only = False  # a mix of its members' weights: short only where one of them is
    Params = AllocatorParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        p: AllocatorParams = self.params  # type: ignore[assignment]
        self.stacked: tuple[str, ...] = tuple(p.inputs)
        n_m, n_s = len(self.stacked), len(self.symbols)
        self.allocation = equal_weights(n_m)  # a: the allocation in force
        self.rebalanced_at: int | None = None  # global bar of the last allocation set from returns
        self._source: SignalSource | None = None
        self._fed: tuple[int, int, dict[str, np.ndarray | None]] | None = None
        self._left_out: tuple[str, ...] = ()  # members read as flat in the chunk being decided
        self._returns = np.zeros((0, n_m))  # the last `lookback` member returns
        self._count = 0  # member returns so far
        self._held: np.ndarray | None = None  # (S, M) members' weights at the last bar decided; None: none yet
        self._close = np.full(n_s, np.nan)  # the last close known of each symbol

    # --- the Stacker protocol -----------------------------------------------------------------

    def attach(self, source: SignalSource) -> None:
        self._source = source

    def feed(self, start: int, stop: int, decisions: Mapping[str, Any]) -> None:
        """The members' decisions (``Decisions``, or weights (T, S); None: left out) on bars [start, stop)."""
        fed = fed_weights(self.name, self.stacked, "allocates across", len(self.symbols), start, stop, decisions)
        self._fed = (start, stop, fed)

    def _members(self, bars: BarBatch) -> np.ndarray:
        """(T, S, M) the members' target weights on ``bars``: fed, or read from their signals; unknown = flat."""
        n_t, n_s = len(bars), len(self.symbols)
        if self._fed is not None and self._fed[0] <= bars.start and bars.stop <= self._fed[1]:
            start, _, fed = self._fed
            lo, hi = bars.start - start, bars.stop - start
            got = {n: np.zeros((n_t, n_s)) if w is None else w[lo:hi] for n, w in fed.items()}
            missing = {n for n, w in fed.items() if w is None}
        else:
            if self._source is None:
                raise RuntimeError(f"model {self.name!r} allocates across {list(self.stacked)} and has nothing to "
                                   f"read their decisions on bars [{bars.start}, {bars.stop}) from: attach a "
                                   "source (the arena's actors, or the member models' signals in this process)")
            read = self._source(bars.start, bars.stop, OutOfFold())
            got = {n: np.asarray(read[n], dtype=np.float64).reshape(n_t, n_s) for n in self.stacked}
            missing = set()
        x = np.stack([got[n] for n in self.stacked], axis=2)
        known = np.isfinite(x)
        self._left_out = tuple(n for i, n in enumerate(self.stacked) if n in missing or not known[..., i].all())
        if self._left_out:
            log.warning("%s: %s left out of bars [%d, %d), or without a signal there: read as flat", self.name,
                        ", ".join(self._left_out), bars.start, bars.stop)
        return np.where(known, x, 0.0)

    # --- the model ------------------------------------------------------------------------------

    def observe(self, bars: BarBatch) -> None:
        # warm-up bars give only the last close known; members' returns start once it decides
        self._close = hold_forward(bars.close, self._close)[-1]
        if self._log is not None:  # it holds no weights before it decides: none to give
            self._log.add(bars.start, np.full((len(bars), len(self.symbols)), np.nan))

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        p: AllocatorParams = self.params  # type: ignore[assignment]
        members = self._members(bars)
        n_t, n_s, n_m = members.shape
        # each bar's close-to-close move, from the last close known before it; a missing close: 0
        close = bars.close
        known = hold_forward(close, self._close)
        before = np.vstack([self._close[None, :], known[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            move = np.where(np.isfinite(close) & np.isfinite(before) & (before > 0), close / before - 1.0, 0.0)
        # member returns: the weights decided at the bar before on this bar's move, summed in symbol order
        first = 0 if self._held is not None else 1  # the first bar it decides has no decision before it
        held = np.concatenate([members[:0] if self._held is None else self._held[None], members[:-1]])
        ret = np.zeros((n_t - first, n_m))
        for s in range(n_s):
            ret += held[:, s, :] * move[first:, s, None]
        # the allocation: set from the last `lookback` returns at the bar the lookback-th arrives and every
        # `rebalance_every` bars after, held between
        window = np.concatenate([self._returns, ret])
        events = np.full((n_t, n_m), np.nan)
        for k in range(len(ret)):
            count = self._count + k + 1
            if count >= p.lookback and (count - p.lookback) % p.rebalance_every == 0:
                end = len(self._returns) + k + 1
                events[first + k] = self._allocate(window[end - p.lookback : end])
        allocation = hold_forward(events, self.allocation)
        # the target weights: the members' weights mixed by the allocation, summed in member order
        mixed = np.zeros((n_t, n_s))
        for m in range(n_m):
            mixed += allocation[:, m, None] * members[:, :, m]
        weights = np.clip(mixed, -1.0, 1.0)
        # carried to the next chunk
        changed = np.flatnonzero(~np.isnan(events[:, 0]))
        if len(changed):
            self.rebalanced_at = bars.start + int(changed[-1])
        self.allocation = allocation[-1].copy()
        self._returns = window[len(window) - p.lookback :] if len(window) > p.lookback else window
        self._count += len(ret)
        self._held = members[-1].copy()
        self._close = known[-1].copy()
        return weights, {"allocation": allocation, "members": members}

    def _allocate(self, returns: np.ndarray) -> np.ndarray:
        p: AllocatorParams = self.params  # type: ignore[assignment]
        if p.method == "equal":
            return equal_weights(len(self.stacked))
        return _METHODS[p.method](returns)

    def _explain(self, rows, cols, old, new, info, bars):
        allocation = info["allocation"][rows]
        contribution = allocation * info["members"][rows, cols]
        gap = np.abs(contribution.sum(axis=1) - new)
        return Reasons(self.stacked, allocation, contribution, 0.0, gap=gap)

    # --- sentences ------------------------------------------------------------------------------

    def _sentence(self, symbol: str, old: float, new: float, features: tuple[Feature, ...], score: float) -> str:
        p: AllocatorParams = self.params  # type: ignore[assignment]
        return _sentence(f"{p.method} allocation", symbol, old, new, features, self._left_out)

    @classmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        return _sentence("allocation", symbol, old, new, features, ())

    # --- not outside an arena -------------------------------------------------------------------

    def inputs(self) -> Inputs:
        return Inputs()

    def explain(self, bars: BarBatch) -> Prediction:
        raise TypeError(f"model {self.name!r} allocates across the decisions of {list(self.stacked)}, in an arena; "
                        "it cannot explain a window of bars alone")


def _sentence(label: str, symbol: str, old: float, new: float, features: Sequence[Feature],
              left_out: Sequence[str]) -> str:
    """'Went long AAA (weight 0 → 0.42): hrp allocation sma 50%, rsi 30%, hold 20%; sma long (0.5), ...'"""
    shares = ", ".join(f"{f.name} {f.value:.0%}" for f in features)
    # a member's weight is its contribution over its allocation; one with no allocation takes no part
    held = ", ".join(f"{f.name} {_holding(f.attribution / f.value)}" for f in features if f.value > 0)
    note = f" ({', '.join(left_out)} left out: read as flat)" if left_out else ""
    return f"{action_phrase(symbol, old, new)}: {label} {shares}; {held or 'no member allocated'}{note}."


def _holding(weight: float) -> str:
    if weight > 0:
        return f"long ({weight:.3g})"
    return f"short ({weight:.3g})" if weight < 0 else "flat"
