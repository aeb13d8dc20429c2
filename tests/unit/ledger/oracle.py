"""The ledger as it was before its booking core was compiled: a test oracle, nothing else.

This is the plain-Python ``Ledger`` (with its ``Portfolio``, risk checks and slippage) that the
compiled core in ``titan_ray/ledger/kernel.py`` replaced, kept verbatim so that differential tests
can check that the kernel books every case exactly as it did: the same fills, orders, round trips
and equity, bit for bit. It shares only the domain types, the config, ``ModelResults`` and the
money policy's Python reference functions with the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from titan_ray.config import (
    FixedBpsSlippage,
    FixedQuantitySizing,
    LedgerConfig,
    RiskConfig,
    SqrtImpactSlippage,
)
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import Calendar, session_days
from titan_ray.domain.decisions import DecisionId, Decisions, ExplanationBatch
from titan_ray.domain.orders import (
    Cause,
    Fill,
    ForcedBy,
    HaltReason,
    OrderRecord,
    OrderStatus,
    PendingTarget,
    RejectReason,
    RoundTrip,
    Side,
)
from titan_ray.ledger.engine import ModelResults
from titan_ray.ledger.money import Commission, fill_value_micro, to_micro

_MAX_IMPACT = 0.5


def base_fraction(model: FixedBpsSlippage | SqrtImpactSlippage) -> float:
    """The part of slippage that does not depend on the order's size."""
    return model.bps / 1e4


def slipped_price(
    model: FixedBpsSlippage | SqrtImpactSlippage,
    reference: float,
    direction: int,
    quantity: float,
    volume: float,
) -> float | None:
    """Fill price for ``quantity`` (> 0) in ``direction`` (+1 buy, -1 sell); None when no liquidity."""
    frac = model.bps / 1e4
    if isinstance(model, SqrtImpactSlippage):
        if not volume > 0:
            return None
        frac = min(frac + model.coefficient * math.sqrt(quantity / volume), _MAX_IMPACT)
    return reference * (1 + direction * frac)


_SLACK = 1e-12


def is_reducing(position: float, quantity: float) -> bool:
    """True when the order brings |position| down without crossing zero."""
    new = position + quantity
    return abs(new) < abs(position) and (new == 0 or (new > 0) == (position > 0))


def check_order(
    risk: RiskConfig,
    state: RiskState,
    position: float,
    quantity: float,
    price: float,
    equity: float,
    gross_value: float,
) -> tuple[RejectReason | None, str]:
    """Whether an order of ``quantity`` (signed) at ``price`` may execute; (None, "") when it may.

    ``gross_value`` is the model's sum of |position value| before this order, at the same marks.
    """
    if is_reducing(position, quantity):
        return None, ""
    if state.halted is HaltReason.KILL_SWITCH:
        return RejectReason.KILL_SWITCH, "KILL_SWITCH: the model's kill switch is on; only reducing orders pass"
    if state.halted is HaltReason.CIRCUIT_BREAKER:
        return (
            RejectReason.CIRCUIT_BREAKER,
            f"CIRCUIT_BREAKER: drawdown passed max_drawdown_pct={risk.max_drawdown_pct}; model halted",
        )
    if state.day_halted:
        return (
            RejectReason.DAILY_LOSS_LIMIT,
            f"DAILY_LOSS_LIMIT: the day's loss passed daily_loss_limit_pct={risk.daily_loss_limit_pct}",
        )
    new_value = abs((position + quantity) * price)
    if equity <= 0:
        return RejectReason.MAX_POSITION_EXCEEDED, f"MAX_POSITION_EXCEEDED: equity={equity:.2f} is not positive"
    pct = new_value / equity
    if pct > risk.max_position_pct * (1 + _SLACK):
        return (
            RejectReason.MAX_POSITION_EXCEEDED,
            f"MAX_POSITION_EXCEEDED: max_position_pct={risk.max_position_pct}, position_pct={pct:.6f}",
        )
    gross = (gross_value - abs(position * price) + new_value) / equity
    if gross > risk.max_gross_exposure * (1 + _SLACK):
        return (
            RejectReason.GROSS_EXPOSURE_EXCEEDED,
            f"GROSS_EXPOSURE_EXCEEDED: max_gross_exposure={risk.max_gross_exposure}, gross_after={gross:.6f}",
        )
    return None, ""


@dataclass
class RiskState:
    """Mutable per-model risk state, owned by the ledger's book of that model."""

    peak: float
    day: int = -1
    day_start_equity: float = 0.0
    day_halted: bool = False
    halted: HaltReason | None = None

    def new_bar(self, day: int, last_equity: float) -> None:
        if day != self.day:
            self.day = day
            self.day_start_equity = last_equity
            self.day_halted = False

    def on_close(self, risk: RiskConfig, equity: float) -> ForcedBy | None:
        """Update the limits with a bar's close equity; a reason to flatten, or None."""
        self.peak = max(self.peak, equity)
        if (
            risk.max_drawdown_pct is not None
            and self.halted is None
            and equity < self.peak * (1 - risk.max_drawdown_pct)
        ):
            self.halted = HaltReason.CIRCUIT_BREAKER
            return ForcedBy.CIRCUIT_BREAKER
        if (
            risk.daily_loss_limit_pct is not None
            and not self.day_halted
            and equity < self.day_start_equity * (1 - risk.daily_loss_limit_pct)
        ):
            self.day_halted = True
            return ForcedBy.DAILY_LOSS_LIMIT
        return None


# An open round trip: [direction, entry_timestamp, entry_bar, flow_micro, commission_micro,
#  entry_qty, entry_notional, exit_qty, exit_notional, max_qty]
_DIR, _TS, _BAR, _FLOW, _COMM, _EQ, _EN, _XQ, _XN, _MAX = range(10)


class Portfolio:
    def __init__(self, model: str, symbols: tuple[str, ...], initial_cash_micro: int) -> None:
        self.model = model
        self.symbols = symbols
        self.initial_cash_micro = initial_cash_micro
        self.cash_micro = initial_cash_micro
        n = len(symbols)
        self.position = np.zeros(n)
        self._avg_cost = [0.0] * n
        self._realized = [0.0] * n  # average-cost method, net of commissions
        self.commission_paid_micro = 0
        self.traded_value_micro = 0
        self._trips: dict[int, list] = {}
        self.round_trips: list[RoundTrip] = []

    @property
    def avg_cost(self) -> np.ndarray:
        return np.array(self._avg_cost)

    @property
    def realized_pnl(self) -> np.ndarray:
        return np.array(self._realized)

    def equity(self, marks: np.ndarray) -> float:
        return self.cash_micro / 1e6 + float((self.position * marks).sum())

    def apply_fill(
        self,
        s: int,
        quantity: float,
        price: float,
        value_micro: int,
        commission_micro: int,
        timestamp: int,
        bar: int,
    ) -> None:
        """Book a fill of signed ``quantity`` of symbol index ``s`` (buy > 0)."""
        flow = (-value_micro if quantity > 0 else value_micro) - commission_micro
        self.cash_micro += flow
        self.commission_paid_micro += commission_micro
        self.traded_value_micro += value_micro
        old = self.position.item(s)
        new = old + quantity
        self.position[s] = new
        size = abs(quantity)
        # average cost and realized P&L (float: an estimate for display, cash is the truth)
        avg = self._avg_cost[s]
        adding = old == 0 or (old > 0) == (quantity > 0)
        if adding:
            self._avg_cost[s] = (avg * abs(old) + price * size) / abs(new)
            self._realized[s] -= commission_micro / 1e6
        else:
            closed = min(abs(old), size)
            self._realized[s] += (price - avg) * closed * (1 if old > 0 else -1) - commission_micro / 1e6
            if new == 0:
                self._avg_cost[s] = 0.0
            elif (new > 0) != (old > 0):  # flipped: the rest opens at this price
                self._avg_cost[s] = price
        # round trips (exact cash flows)
        trips = self._trips
        if old == 0:
            trips[s] = [1 if new > 0 else -1, timestamp, bar, flow, commission_micro, size, size * price,
                        0.0, 0.0, size]
        elif adding:
            trip = trips[s]
            trip[_FLOW] += flow
            trip[_COMM] += commission_micro
            trip[_EQ] += size
            trip[_EN] += size * price
            held = trip[_EQ] - trip[_XQ]
            trip[_MAX] = max(trip[_MAX], held)
        elif new == 0 or (new > 0) == (old > 0):  # reducing, maybe to flat
            trip = trips[s]
            trip[_FLOW] += flow
            trip[_COMM] += commission_micro
            trip[_XQ] += size
            trip[_XN] += size * price
            if new == 0:
                self._close_trip(s, timestamp, bar)
        else:
            # Flipped: split the fill into the part that closes the old position and the rest.
            share = abs(old) / size
            close_flow, close_comm = round(flow * share), round(commission_micro * share)
            trip = trips[s]
            trip[_FLOW] += close_flow
            trip[_COMM] += close_comm
            trip[_XQ] += abs(old)
            trip[_XN] += abs(old) * price
            self._close_trip(s, timestamp, bar)
            rest = abs(new)
            trips[s] = [1 if new > 0 else -1, timestamp, bar, flow - close_flow, commission_micro - close_comm,
                        rest, rest * price, 0.0, 0.0, rest]

    def _close_trip(self, s: int, ts: int, bar: int) -> None:
        t = self._trips.pop(s)
        self.round_trips.append(
            RoundTrip(self.model, self.symbols[s], t[_DIR], t[_TS], ts, t[_BAR], bar, t[_MAX],
                      t[_EN] / t[_EQ], t[_XN] / t[_XQ], t[_FLOW], t[_COMM])
        )


_FRACTION_STEP = 1e-6  # fractional quantities are truncated to a millionth of a share


@dataclass(slots=True)
class _Working:
    order_id: int
    decision_id: Cause
    s: int
    requested: float  # signed
    remaining: float  # signed
    timestamp: int
    bar: int


@dataclass
class Book:
    """Everything the ledger knows about one model."""

    model: str
    portfolio: Portfolio
    risk: RiskState
    long_only: bool
    target: np.ndarray  # last accepted target weights
    last_equity: float
    seq: int = -1  # last chunk sequence number applied
    next_order_id: int = 0
    pending: dict[int, PendingTarget] = field(default_factory=dict)  # by symbol index
    working: dict[int, _Working] = field(default_factory=dict)
    orders: list[OrderRecord] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    explanations: list[ExplanationBatch] = field(default_factory=list)
    timestamps: list[np.ndarray] = field(default_factory=list)
    equity: list[np.ndarray] = field(default_factory=list)
    cash: list[np.ndarray] = field(default_factory=list)
    gross: list[np.ndarray] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # chunk sequence numbers without decisions


class Ledger:
    """Plain-Python ledger; ``LedgerActor`` is a thin Ray wrapper around it."""

    def __init__(
        self,
        *,
        ledger: LedgerConfig,
        risk: RiskConfig,
        symbols: tuple[str, ...] | list[str],
        calendar: Calendar | str,
        models: dict[str, bool],  # name -> long_only
    ) -> None:
        self.cfg = ledger
        self.risk_cfg = risk
        self.symbols = tuple(symbols)
        self.calendar = Calendar(calendar)
        self._fixed_qty = (
            ledger.sizing.quantity if isinstance(ledger.sizing, FixedQuantitySizing) else None
        )
        self._base_slip = base_fraction(ledger.slippage)
        self._commission = Commission(ledger.commission_bps)
        self._initial_micro = to_micro(ledger.initial_cash)
        initial = self._initial_micro / 1e6
        n = len(self.symbols)
        self.books: dict[str, Book] = {
            name: Book(
                model=name,
                portfolio=Portfolio(name, self.symbols, self._initial_micro),
                risk=RiskState(peak=initial, day_start_equity=initial),
                long_only=long_only,
                target=np.zeros(n),
                last_equity=initial,
            )
            for name, long_only in models.items()
        }
        self._last_close = np.full(n, np.nan)  # last finite close per symbol, for marks

    # --- public API ---------------------------------------------------------------------------

    def apply(self, seq: int, bars: BarBatch, decisions: list[Decisions | None]) -> dict:
        """Apply one chunk of bars with each model's decisions for it; idempotent by ``seq``.

        ``decisions`` may hold None for a model that did not answer: it keeps its positions, is
        marked to market, and the skip is recorded.
        """
        if bars.symbols != self.symbols:
            raise ValueError("bars carry other symbols than the ledger was built for")
        by_model = {d.model: d for d in decisions if d is not None}
        unknown = set(by_model) - set(self.books)
        if unknown:
            raise ValueError(f"decisions from unknown models {sorted(unknown)}")
        close_mark, open_mark = self._marks(bars)
        # Session days matter only to a daily loss limit or a drawdown breaker (``_run_chunk``).
        days = session_days(bars.timestamps, self.calendar) if self._path_limits else None
        applied = []
        for name, book in self.books.items():
            if seq <= book.seq:
                continue  # a chunk seen twice is applied once
            dec = by_model.get(name)
            if dec is None:
                book.skipped.append(seq)
                weights = np.broadcast_to(book.target, (len(bars), len(self.symbols)))
            else:
                if dec.weights.shape != (len(bars), len(self.symbols)) or dec.start != bars.start:
                    raise ValueError(
                        f"model {name!r} sent weights of shape {dec.weights.shape} from bar {dec.start}; "
                        f"expected {(len(bars), len(self.symbols))} from bar {bars.start}"
                    )
                weights = self._validated(book, dec, bars)
                if dec.explanations is not None:
                    book.explanations.append(dec.explanations)
            self._run_chunk(book, bars, weights, close_mark, open_mark, days)
            book.seq = seq
            applied.append(name)
        self._last_close = close_mark[-1].copy()
        return {"seq": seq, "applied": applied}

    @property
    def last_seq(self) -> int:
        """Sequence number of the last chunk applied (-1 before the first)."""
        return max((b.seq for b in self.books.values()), default=-1)

    def kill_switch(self, model: str, on: bool = True) -> None:
        """Flatten ``model`` at the next fill bar and reject every order that adds risk (or lift it)."""
        book = self.books[model]
        if on:
            book.risk.halted = HaltReason.KILL_SWITCH
            for s in np.flatnonzero(book.portfolio.position):
                book.pending[int(s)] = PendingTarget(0.0, ForcedBy.KILL_SWITCH)
        elif book.risk.halted is HaltReason.KILL_SWITCH:
            book.risk.halted = None

    def results(self) -> dict[str, ModelResults]:
        return {name: self._model_results(book) for name, book in self.books.items()}

    # --- chunk machinery ------------------------------------------------------------------------

    def _marks(self, bars: BarBatch) -> tuple[np.ndarray, np.ndarray]:
        """Close marks (last finite close) and open marks (the open, else the last close)."""
        close = bars.close
        if np.isfinite(close).all():
            close_mark = close
        else:
            filled = np.vstack([self._last_close[None, :], close])
            idx = np.where(np.isfinite(filled), np.arange(len(filled))[:, None], 0)
            np.maximum.accumulate(idx, axis=0, out=idx)
            close_mark = np.take_along_axis(filled, idx, axis=0)[1:]
        prev_close = np.vstack([self._last_close[None, :], close_mark[:-1]])
        open_mark = np.where(np.isfinite(bars.open), bars.open, prev_close)
        return close_mark, open_mark

    def _validated(self, book: Book, dec: Decisions, bars: BarBatch) -> np.ndarray:
        w = dec.weights
        low = 0.0 if book.long_only else -1.0
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(w) | (w < low) | (w > 1.0)
        if not bad.any():
            return w
        w = np.array(w, dtype=np.float64)
        for t, s in zip(*np.nonzero(bad), strict=True):
            given = float(dec.weights[t, s])
            w[t, s] = w[t - 1, s] if t > 0 else book.target[s]
            bar = bars.start + int(t)
            book.orders.append(
                OrderRecord(
                    model=book.model,
                    order_id=self._order_id(book),
                    decision_id=DecisionId(book.model, self.symbols[s], bar),
                    symbol=self.symbols[s],
                    timestamp=int(bars.timestamps[t]),
                    bar=bar,
                    side=Side.BUY,
                    quantity=0.0,
                    filled=0.0,
                    status=OrderStatus.REJECTED,
                    reason=RejectReason.INVALID_WEIGHT,
                    detail=f"INVALID_WEIGHT: weight={given!r} outside [{low:g}, 1] or not finite; kept "
                    f"the previous target {w[t, s]:g}",
                )
            )
        return w

    def _run_chunk(
        self,
        book: Book,
        bars: BarBatch,
        weights: np.ndarray,
        close_mark: np.ndarray,
        open_mark: np.ndarray,
        days: np.ndarray | None,
    ) -> None:
        n_t = len(bars)
        prev = np.vstack([book.target[None, :], weights[:-1]])
        changed = weights != prev
        change_rows = changed.any(axis=1).tolist()
        p, risk, risk_cfg = book.portfolio, book.risk, self.risk_cfg
        next_open = self.cfg.fill == "next_open"
        pos = p.position  # updated in place by fills
        # With a daily loss limit or a drawdown breaker, equity must be known bar by bar inside the
        # loop. Without them, only bars with fills change the state, and the marks of the whole
        # chunk are computed at once afterwards from snapshots taken at those bars.
        path_limits = self._path_limits
        eq_out, cash_out, gross_out = np.empty(n_t), np.empty(n_t), np.empty(n_t)
        snap_rows: list[int] = []
        snap_pos, snap_cash = [pos.copy()], [p.cash_micro]
        for t in range(n_t):
            if path_limits:
                risk.new_bar(int(days[t]), book.last_equity)
            stage_now = change_rows[t]
            if stage_now and not next_open:
                self._stage(book, weights[t], changed[t], bars.start + t, int(bars.timestamps[t]))
            if book.pending or book.working:
                n_fills = len(book.fills)
                if next_open:
                    self._execute(book, bars, t, bars.open[t], open_mark[t])
                else:
                    self._execute(book, bars, t, bars.close[t], close_mark[t])
                if not path_limits and len(book.fills) != n_fills:
                    snap_rows.append(t)
                    snap_pos.append(pos.copy())
                    snap_cash.append(p.cash_micro)
            if path_limits:
                marks = close_mark[t]
                equity = p.cash_micro / 1e6 + float((pos * marks).sum())
                eq_out[t], cash_out[t] = equity, p.cash_micro / 1e6
                gross_out[t] = float((np.abs(pos) * marks).sum())
                flatten = risk.on_close(risk_cfg, equity)
                if flatten is not None:
                    for s in np.flatnonzero(pos):
                        book.pending[int(s)] = PendingTarget(0.0, flatten)
                book.last_equity = equity
            if stage_now and next_open:
                self._stage(book, weights[t], changed[t], bars.start + t, int(bars.timestamps[t]))
        if not path_limits:
            which = np.zeros(n_t, dtype=np.intp)
            which[snap_rows] = np.arange(1, len(snap_rows) + 1)
            np.maximum.accumulate(which, out=which)
            held = np.array(snap_pos)[which]
            cash_out = np.array([c / 1e6 for c in snap_cash])[which]
            # the same row sums as the bar-by-bar branch, so both give identical floats
            eq_out = cash_out + (held * close_mark).sum(axis=1)
            gross_out = (np.abs(held) * close_mark).sum(axis=1)
            book.last_equity = float(eq_out[-1])
        book.target = np.array(weights[-1], dtype=np.float64)
        book.timestamps.append(np.asarray(bars.timestamps))
        book.equity.append(eq_out)
        book.cash.append(cash_out)
        book.gross.append(gross_out)

    @property
    def _path_limits(self) -> bool:
        return self.risk_cfg.daily_loss_limit_pct is not None or self.risk_cfg.max_drawdown_pct is not None

    def stage(self, model: str, weights: np.ndarray, bar: int, timestamp: int) -> None:
        """Stage a model's new target weights at ``bar``, outside ``apply``: the training env
        (``titan_ray.ml.env``) books each bar with unchanged weights and then stages the agent's
        action, which is only known after the agent has seen that bar's close. The same staging
        ``apply`` does for the weights that changed at a bar."""
        book = self.books[model]
        changed = weights != book.target
        if changed.any():
            self._stage(book, weights, changed, bar, timestamp)
        book.target = np.array(weights, dtype=np.float64)

    def _stage(self, book: Book, w_row: np.ndarray, changed_row: np.ndarray, bar: int, ts: int) -> None:
        for s in np.flatnonzero(changed_row):
            s = int(s)
            did = DecisionId(book.model, self.symbols[s], bar)
            staged = book.pending.get(s)
            if staged is not None and isinstance(staged.cause, ForcedBy):
                # A risk flattening order outranks the model's own wish on the same bar.
                reason = staged.cause.reject_reason
                self._reject_new(book, s, did, ts, bar, 0.0, reason,
                                 f"{reason.value}: the model's order gave way to a risk flattening order")
                continue
            book.pending[s] = PendingTarget(float(w_row[s]), did)

    def _order_id(self, book: Book) -> int:
        book.next_order_id += 1
        return book.next_order_id

    def _target_quantity(self, position: float, weight: float, equity: float, ref: float) -> float:
        if self._fixed_qty is not None:
            return math.copysign(self._fixed_qty, weight) if weight != 0 else 0.0
        raw = weight * equity / ref
        direction = (raw > position) - (raw < position)
        fill_price = ref * (1 + direction * self._base_slip)
        target = weight * equity / fill_price
        if self.cfg.fractional:
            return math.trunc(target / _FRACTION_STEP) * _FRACTION_STEP
        return float(math.trunc(target))

    def _execute(self, book: Book, bars: BarBatch, t: int, ref_row: np.ndarray, mark_row: np.ndarray) -> None:
        """Turn staged targets into orders and fill what may fill at bar ``t``."""
        p = book.portfolio
        pos = p.position
        ts, bar = int(bars.timestamps[t]), bars.start + t
        equity = p.cash_micro / 1e6 + float((pos * mark_row).sum())
        working = book.working
        for s, (weight, did) in book.pending.items():
            old = working.pop(s, None)
            if old is not None:
                self._finish(book, old, OrderStatus.REPLACED, None, "REPLACED: a newer target arrived")
            ref = ref_row.item(s)
            if not math.isfinite(ref):
                self._reject_new(book, s, did, ts, bar, 0.0, RejectReason.NO_MARKET_DATA,
                                 f"NO_MARKET_DATA: no price for {self.symbols[s]} on the fill bar")
                continue
            current = pos.item(s)
            qty = self._target_quantity(current, weight, equity, ref) - current
            if qty != 0:
                book.next_order_id += 1
                working[s] = _Working(book.next_order_id, did, s, qty, qty, ts, bar)
        book.pending.clear()
        if not working:
            return
        order = list(working)
        if len(order) > 1:
            # Orders that reduce exposure go first, so the capital they free counts for the rest.
            order.sort(key=lambda s: (not is_reducing(pos.item(s), working[s].remaining), s))
        gross = float((np.abs(pos) * mark_row).sum())
        volume = bars.volume[t]
        cfg, risk_cfg, state, fills = self.cfg, self.risk_cfg, book.risk, book.fills
        cap, slippage, commission, symbols = cfg.max_participation, cfg.slippage, self._commission, self.symbols
        for s in order:
            wk = working[s]
            ref = ref_row.item(s)
            position = pos.item(s)
            if not math.isfinite(ref):
                self._finish(book, working.pop(s), OrderStatus.REJECTED, RejectReason.NO_MARKET_DATA,
                             f"NO_MARKET_DATA: no price for {symbols[s]} on the fill bar")
                continue
            reason, detail = check_order(risk_cfg, state, position, wk.remaining, ref, equity, gross)
            if reason is not None:
                self._finish(book, working.pop(s), OrderStatus.REJECTED, reason, detail)
                continue
            qty = wk.remaining
            bar_volume = volume.item(s)
            if cap is not None:
                limit = cap * bar_volume
                limit = math.floor(limit / _FRACTION_STEP) * _FRACTION_STEP if cfg.fractional else math.floor(limit)
                if limit <= 0:
                    continue  # nothing can fill on this bar; the order keeps working
                qty = math.copysign(min(abs(qty), limit), qty)
            buy = qty > 0
            price = slipped_price(slippage, ref, 1 if buy else -1, abs(qty), bar_volume)
            if price is None:
                self._finish(book, working.pop(s), OrderStatus.REJECTED, RejectReason.NO_LIQUIDITY,
                             f"NO_LIQUIDITY: {symbols[s]} traded no volume on the fill bar")
                continue
            value = fill_value_micro(qty, price)
            comm = commission(value)
            p.apply_fill(s, qty, price, value, comm, ts, bar)
            fills.append(Fill(book.model, wk.order_id, wk.decision_id, symbols[s], ts, bar,
                              Side.BUY if buy else Side.SELL, abs(qty), price, ref, value, comm))
            mark = mark_row.item(s)
            gross += abs((position + qty) * mark) - abs(position * mark)
            wk.remaining -= qty
            if wk.remaining == 0:
                self._finish(book, working.pop(s), OrderStatus.FILLED, None, "")

    def _reject_new(self, book: Book, s: int, did: Cause, ts: int, bar: int, qty: float,
                    reason: RejectReason, detail: str) -> None:
        book.orders.append(OrderRecord(book.model, self._order_id(book), did, self.symbols[s], ts, bar,
                                       Side.BUY if qty >= 0 else Side.SELL, abs(qty), 0.0,
                                       OrderStatus.REJECTED, reason, detail))

    def _finish(self, book: Book, wk: _Working, status: OrderStatus, reason: RejectReason | None,
                detail: str) -> None:
        book.orders.append(self._record(book, wk, status, reason, detail))

    def _record(self, book: Book, wk: _Working, status: OrderStatus, reason: RejectReason | None,
                detail: str) -> OrderRecord:
        filled = abs(wk.requested - wk.remaining)
        if status is OrderStatus.REJECTED and filled > 0:
            detail = f"{detail} (after {filled:g} filled)"
        return OrderRecord(book.model, wk.order_id, wk.decision_id, self.symbols[wk.s], wk.timestamp, wk.bar,
                           Side.BUY if wk.requested > 0 else Side.SELL, abs(wk.requested), filled, status,
                           reason, detail)

    def _model_results(self, book: Book) -> ModelResults:
        p = book.portfolio
        orders = list(book.orders)
        orders += [  # still working at the end of the run
            self._record(book, wk, OrderStatus.PARTIALLY_FILLED, None,
                         "PARTIALLY_FILLED: still working when the run ended")
            for wk in book.working.values()
        ]
        orders.sort(key=lambda o: o.order_id)
        held, avg_cost = np.flatnonzero(p.position), p.avg_cost
        return ModelResults(
            model=book.model,
            timestamps=_cat(book.timestamps, np.int64),
            equity=_cat(book.equity),
            cash=_cat(book.cash),
            gross_exposure=_cat(book.gross),
            orders=orders,
            fills=list(book.fills),
            round_trips=list(p.round_trips),
            explanations=list(book.explanations),
            positions={self.symbols[s]: p.position.item(s) for s in held},
            avg_cost={self.symbols[s]: avg_cost.item(s) for s in held},
            realized_pnl=float(p.realized_pnl.sum()),
            cash_micro=p.cash_micro,
            initial_cash_micro=p.initial_cash_micro,
            skipped_chunks=list(book.skipped),
            halted=book.risk.halted.value if book.risk.halted else None,
            symbols=self.symbols,
            marks=tuple(self._last_close.tolist()),
        )


def _cat(parts: list[np.ndarray], dtype: type = np.float64) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
