"""The ledger: every model's virtual portfolio, driven chunk by chunk by target weights.

For each model and each bar of a chunk, in this order (``fill: next_open``):

1. new trading day → the daily loss limit resets;
2. orders staged at the previous bar fill at this bar's open: target weight → order quantity
   → validator (finite price, weight in range) → risk (the pre-trade check, the VaR limit, the
   group caps) → the execution algorithm's child slice → participation cap (the rest keeps
   working) → slippage or impact → commission → portfolio;
3. protective exits (``ledger.stops``) watch the bar's open, high and low and close what crosses
   a level, each exit an order with its cause and an explanation;
4. the portfolio is marked at the close (equity, cash, gross exposure recorded) and the model's
   rolling VaR updated;
5. path-dependent risk (drawdown circuit breaker, daily loss limit) may stage flattening orders,
   each recorded with the rule's numbers so that "why?" can answer for its fills;
6. weights that changed at this bar are sized (``ledger.sizing``, from the market's causal
   estimates, ``ledger/estimates.py``) and staged to fill at the next bar's open.

With ``fill: same_close`` step 3 comes first and step 6 before step 2, whose orders fill at this
bar's close. docs/risk.md has every rule's formula.
A weight that does not change creates no order: the ledger turns *changes* of weight into orders,
so a position is sized once, when the model asks for it, and then drifts with the market.

How it is built: ``Ledger.apply`` prepares what a chunk's models share (marks, day keys) once,
then books each model's chunk in one call of the compiled core (``ledger/kernel.py``) on that
model's ``Book`` (``ledger/portfolio.py``): arrays of state and of records, no Python object per
bar, fill or order. ``results`` hands the records on as ``Records`` (``ledger/records.py``: the
domain's NamedTuples, made when read) with each order's detail text, written from its code and
numbers; ``fills`` makes a model's new fills for the live sink. Results never depend on the chunk
size: all state that crosses a chunk boundary lives in the books.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from titan_ray.config import (
    AlmgrenChrissSlippage,
    FixedQuantitySizing,
    KellySizing,
    LedgerConfig,
    RiskConfig,
    RiskParitySizing,
    SqrtImpactSlippage,
    VolTargetSizing,
)
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import TRADING_DAYS, Calendar, session_days
from titan_ray.domain.decisions import Decisions, Explanation, ExplanationBatch
from titan_ray.domain.orders import (
    Fill,
    HaltReason,
    OrderRecord,
    OrderStatus,
    RejectReason,
    RoundTrip,
)
from titan_ray.ledger import kernel
from titan_ray.ledger.estimates import N_FIELDS, MarketEstimates
from titan_ray.ledger.money import Commission, to_micro
from titan_ray.ledger.portfolio import KINDS, Book, Scratch
from titan_ray.ledger.records import REASON, STATUS, Causes, Records
from titan_ray.risk.engine import forced_explanations, reject_detail

log = logging.getLogger(__name__)
_HALT = {kernel.HALT_NONE: None, kernel.HALT_CIRCUIT_BREAKER: HaltReason.CIRCUIT_BREAKER,
         kernel.HALT_KILL_SWITCH: HaltReason.KILL_SWITCH}
_RISK_DETAILS = {kernel.DETAIL_KILL_SWITCH, kernel.DETAIL_CIRCUIT_BREAKER, kernel.DETAIL_DAILY_LOSS_LIMIT,
                 kernel.DETAIL_EQUITY_NOT_POSITIVE, kernel.DETAIL_POSITION_PCT, kernel.DETAIL_GROSS_AFTER,
                 kernel.DETAIL_VAR_LIMIT, kernel.DETAIL_GROUP_AFTER}
_EXACT_LIMIT = 1 << 62  # the kernel's money is int64 micro-units
# Booking on threads pays when each model's chunk is large (a replay's), not for a live bar: at most
# this many threads (the ledger is one actor; more cores than this are the models'), and only for
# chunks of at least this many cells per model.
_MAX_THREADS, _THREADED_CELLS = 4, 4096
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _threads(n_models: int, cells: int) -> int:
    """How many threads book a chunk of ``cells`` cells per model for ``n_models`` models."""
    if n_models < 2 or cells < _THREADED_CELLS:
        return 1
    return min(_MAX_THREADS, _CPUS, n_models)


def _pool() -> ThreadPoolExecutor:
    """This process's booking threads (made on first use, shared by its ledgers)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(_MAX_THREADS, _CPUS), thread_name_prefix="booking")
        return _POOL


@dataclass(frozen=True)
class ModelResults:
    model: str
    timestamps: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    gross_exposure: np.ndarray
    # ``Records`` (the kernel's rows, read as NamedTuples) from the ledger; lists from the tests' oracle
    orders: Sequence[OrderRecord]
    fills: Sequence[Fill]
    round_trips: Sequence[RoundTrip]
    # columnar, ``explanation_records`` renders them: the model's, then the risk rules' forced
    # flattenings (``rule`` set, ids ``risk:RULE:MODEL:SYMBOL:BAR``) in the order the rules fired
    explanations: list[ExplanationBatch]
    positions: dict[str, float]
    avg_cost: dict[str, float]
    realized_pnl: float
    cash_micro: int
    initial_cash_micro: int
    skipped_chunks: list[int]
    halted: str | None
    symbols: tuple[str, ...] = ()
    marks: tuple[float, ...] = ()  # last close per symbol (nan before its first bar): values positions

    def explanation_records(self) -> list[Explanation]:
        return [e for batch in self.explanations for e in batch.records(self.symbols)]


class Ledger:
    """Plain-Python ledger around the compiled core; ``LedgerActor`` is a thin Ray wrapper of it."""

    def __init__(
        self,
        *,
        ledger: LedgerConfig,
        risk: RiskConfig,
        symbols: tuple[str, ...] | list[str],
        calendar: Calendar | str,
        models: dict[str, bool],  # name -> long_only
        memory_rows: int | None = None,
        spill: Path | None = None,
    ) -> None:
        """``memory_rows``: each book keeps that many to twice that records of a kind in RAM, the
        older in files under ``spill`` (a folder of its own per book; a temporary one without
        ``spill``), deleted by ``close``; None: everything in RAM."""
        self.cfg = ledger
        self.risk_cfg = risk
        self.symbols = tuple(symbols)
        self.calendar = Calendar(calendar)
        self._rules = _rules(ledger, risk, self.calendar)
        self._estimates = MarketEstimates(ledger, len(self.symbols), self.calendar)
        self._groups = _group_index(risk, self.symbols)
        initial_micro = to_micro(ledger.initial_cash)
        if initial_micro >= _EXACT_LIMIT:
            raise ValueError(f"ledger.initial_cash={ledger.initial_cash} is more than the ledger books exactly "
                             "(below 4.6e12 of the account currency); use a smaller amount")
        n = len(self.symbols)
        self.books: dict[str, Book] = {
            name: Book(name, n, long_only, initial_micro, memory_rows=memory_rows,
                       folder=None if spill is None else Path(spill) / f"book-{i:05d}",
                       var_window=risk.var_window if self._rules.var_limit else 1, stops=self._rules.stops)
            for i, (name, long_only) in enumerate(models.items())
        }
        self._causes = {name: Causes(name, self.symbols) for name in self.books}  # ids made once per decision
        self._last_close = np.full(n, np.nan)  # last finite close per symbol, for marks
        first = next(iter(self.books.values()), None)
        if first is not None:
            # A chunk of no bars changes nothing; it loads the compiled core (from numba's cache,
            # a few tenths of a second once per process) here rather than inside the first chunk.
            self._book(first, _frozen(np.empty((0, n))), False, 0, *_empty_chunk(n, self._estimates.active))

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
        n_t, n_s = len(bars), len(self.symbols)
        close_mark, open_mark = self._marks(bars)
        # Session days matter only to a daily loss limit or a drawdown breaker.
        days = session_days(bars.timestamps, self.calendar) if self._rules.path_limits else np.zeros(n_t, np.int64)
        ref, fill_mark = (bars.open, open_mark) if self._rules.next_open else (bars.close, close_mark)
        estimates = self._estimates.update(bars.timestamps, close_mark, bars.high, bars.low, bars.volume)
        shared = (_frozen(bars.timestamps, np.int64), _frozen(days, np.int64), _frozen(ref), _frozen(fill_mark),
                  _frozen(close_mark), _frozen(bars.volume), _frozen(bars.open), _frozen(bars.high),
                  _frozen(bars.low), _frozen(estimates), _frozen(self._groups, np.int64))
        work: list[tuple[Book, np.ndarray, Decisions | None]] = []
        for name, book in self.books.items():
            if seq <= book.seq:
                continue  # a chunk seen twice is applied once
            dec = by_model.get(name)
            if dec is None:
                weights = _frozen(np.broadcast_to(book.target, (n_t, n_s)))
            else:
                if dec.weights.shape != (n_t, n_s) or dec.start != bars.start:
                    raise ValueError(
                        f"model {name!r} sent weights of shape {dec.weights.shape} from bar {dec.start}; "
                        f"expected {(n_t, n_s)} from bar {bars.start}"
                    )
                weights = _frozen(dec.weights)
            work.append((book, weights, dec))

        def book_one(job: tuple[Book, np.ndarray, Decisions | None]) -> None:
            book, weights, dec = job
            self._book(book, weights, dec is not None, bars.start, *shared)

        # Each model's book is its own, so models are booked on several threads at once when there is
        # enough to book (the compiled core runs without the GIL); the results are the same.
        if _threads(len(work), n_t * n_s) > 1:
            list(_pool().map(book_one, work))
        else:
            for job in work:
                book_one(job)
        for book, _, dec in work:
            if dec is None:
                book.skipped.append(seq)
            elif dec.explanations is not None:
                book.explanations.append(dec.explanations, max(1, len(dec.explanations)))
            book.seq = seq
        self._last_close = close_mark[-1].copy()
        return {"seq": seq, "applied": [book.model for book, _, _ in work]}

    def _book(self, book: Book, weights: np.ndarray, validate: bool, start: int, *chunk: np.ndarray) -> None:
        """One model's chunk through the compiled core; ``chunk``: timestamps, day keys, the fill
        prices, the marks that size orders, the close marks, the volumes, the bars' opens, highs and
        lows, the market estimates and the symbols' groups, all read-only."""
        with book.booking(Scratch.here(), len(weights)) as records:
            kernel.book_chunk(self._rules, book.account, book.state, book.returns, weights, validate,
                              0.0 if book.long_only else -1.0, start, *chunk, *records)

    @property
    def last_seq(self) -> int:
        """Sequence number of the last chunk applied (-1 before the first)."""
        return max((b.seq for b in self.books.values()), default=-1)

    def kill_switch(self, model: str, on: bool = True) -> None:
        """Flatten ``model`` at the next fill bar and reject every order that adds risk (or lift it).
        The flattening's id names the last bar booked: ``risk:kill_switch:MODEL:SYMBOL:BAR``."""
        book = self.books[model]
        with book.booking(Scratch.here(), 0) as records:
            kernel.kill_switch(book.account, book.state, on, _frozen(self._last_close), records[KINDS.index("forced")])

    def stage(self, model: str, weights: np.ndarray, bar: int, timestamp: int) -> None:
        """Stage a model's new target weights at ``bar``, outside ``apply``: the training env
        (``titan_ray.ml.env``) books each bar with unchanged weights and then stages the agent's
        action, which is only known after the agent has seen that bar's close. The same staging
        ``apply`` does for the weights that changed at a bar."""
        book = self.books[model]
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != (len(self.symbols),):
            raise ValueError(f"weights for {model!r} have shape {w.shape}; expected ({len(self.symbols)},): "
                             "one per symbol, in the ledger's symbol order")
        with book.booking(Scratch.here(), 1) as records:
            kernel.stage_weights(book.account, book.state, w, bar, timestamp, _frozen(self._last_close),
                                 records[KINDS.index("order")])

    def fills(self, model: str, start: int = 0) -> list[Fill]:
        """``model``'s fills from the ``start``-th on (``Book.n_fills`` counts them): the live sink
        and the training env ask for the new ones after every chunk."""
        # ids made for these alone: the run's ``Causes`` keeps each id it makes, and a live run's
        # fills would then be held for ever
        return list(Records("fill", Causes(model, self.symbols), self.books[model].rows("fill", start)))

    def close(self) -> None:
        """Delete what the books spilled to files (read the results first)."""
        for book in self.books.values():
            book.close()

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

    # --- records into domain types: results leave as the record arrays (``Records``) -----------

    def _order_rows(self, book: Book) -> tuple[np.ndarray, list[str]]:
        """Every order, by id: those that ended, and those still working at the end of the run (as
        ``PARTIALLY_FILLED``), with each one's detail text."""
        ended = book.orders()
        details = [""] * len(ended)
        need = (ended["detail"] != kernel.DETAIL_NONE) | ((ended["status"] == kernel.REJECTED) & (ended["filled"] > 0))
        for i in np.flatnonzero(need).tolist():
            o = ended[i]
            details[i] = self._detail(book, int(o["detail"]), STATUS[int(o["status"])], REASON[int(o["reason"])],
                                      self.symbols[int(o["symbol"])], float(o["filled"]), float(o["detail_a"]),
                                      float(o["detail_b"]))
        at = book.working()
        working = np.zeros(len(at), kernel.ORDER)
        w = book.state[at]
        requested, remaining = w["wk_requested"], w["wk_remaining"]
        for field, state in (("order_id", "wk_id"), ("cause", "wk_cause"), ("cause_bar", "wk_cause_bar"),
                             ("timestamp", "wk_timestamp"), ("bar", "wk_bar"), ("arrival", "wk_arrival"),
                             ("value", "wk_value"), ("commission", "wk_commission")):
            working[field] = w[state]
        working["symbol"] = at
        working["side"] = np.where(requested > 0, kernel.BUY, kernel.SELL)
        working["quantity"], working["filled"] = np.abs(requested), np.abs(requested - remaining)
        working["status"], working["reason"], working["detail"] = kernel.PARTIALLY_FILLED, kernel.NO_REASON, kernel.DETAIL_NONE
        rows = np.concatenate([ended, working])
        details += ["PARTIALLY_FILLED: still working when the run ended"] * len(at)
        order = np.argsort(rows["order_id"], kind="stable")
        return rows[order], [details[i] for i in order.tolist()]

    def _detail(self, book: Book, detail: int, status: OrderStatus, reason: RejectReason | None, symbol: str,
                filled: float, a: float, b: float) -> str:
        """The text of an order's detail, from the kernel's code and numbers."""
        text = self._detail_text(book, detail, reason, symbol, a, b)
        if status is OrderStatus.REJECTED and filled > 0:
            return f"{text} (after {filled:g} filled)"
        return text

    def _detail_text(self, book: Book, detail: int, reason: RejectReason | None, symbol: str, a: float,
                     b: float) -> str:
        if detail == kernel.DETAIL_NONE:
            return ""
        if detail == kernel.DETAIL_REPLACED:
            return "REPLACED: a newer target arrived"
        if detail == kernel.DETAIL_STOPPED:
            return f"REPLACED: a protective exit closed the {symbol} position"
        if detail == kernel.DETAIL_NO_MARKET_DATA:
            return f"NO_MARKET_DATA: no price for {symbol} on the fill bar"
        if detail == kernel.DETAIL_NO_LIQUIDITY:
            return f"NO_LIQUIDITY: {symbol} traded no volume on the fill bar"
        if detail == kernel.DETAIL_GAVE_WAY:
            return f"{reason.value}: the model's order gave way to a risk flattening order"
        if detail == kernel.DETAIL_INVALID_WEIGHT:
            low = 0.0 if book.long_only else -1.0
            return (f"INVALID_WEIGHT: weight={a!r} outside [{low:g}, 1] or not finite; kept the previous "
                    f"target {b:g}")
        if detail in _RISK_DETAILS:
            return reject_detail(detail, a, self.risk_cfg)
        raise AssertionError(f"unknown detail code {detail}")

    def _model_results(self, book: Book) -> ModelResults:
        state, curve = book.state, book.curve()
        held = np.flatnonzero(state["position"])
        halted = _HALT[int(book.account[0]["halted"])]
        causes = self._causes[book.model]
        return ModelResults(
            model=book.model,
            timestamps=curve["timestamp"].copy(),
            equity=curve["equity"].copy(),
            cash=curve["cash"].copy(),
            gross_exposure=curve["gross"].copy(),
            orders=Records("order", causes, *self._order_rows(book)),
            fills=Records("fill", causes, book.fills()),
            round_trips=Records("round_trip", causes, book.round_trips()),
            explanations=[*book.explanations.items(), *forced_explanations(book.model, book.forced(), self.symbols)],
            positions={self.symbols[s]: state["position"][s].item() for s in held},
            avg_cost={self.symbols[s]: state["avg_cost"][s].item() for s in held},
            realized_pnl=float(np.ascontiguousarray(state["realized"]).sum()),
            cash_micro=book.cash_micro,
            initial_cash_micro=book.initial_cash_micro,
            skipped_chunks=list(book.skipped),
            halted=halted.value if halted else None,
            symbols=self.symbols,
            marks=tuple(self._last_close.tolist()),
        )


def _rules(ledger: LedgerConfig, risk: RiskConfig, calendar: Calendar | str = Calendar.EQUITIES) -> kernel.Rules:
    """The settings as the kernel reads them; the commission as an exact int64 fraction."""
    commission = Commission(ledger.commission_bps)
    if max(commission.num, commission.den) >= _EXACT_LIMIT:
        raise ValueError(f"ledger.commission_bps={ledger.commission_bps} has more digits than the ledger books "
                         "exactly; round it to at most 12 decimal places")
    slippage, sizing, stops, execution = ledger.slippage, ledger.sizing, ledger.stops, ledger.execution
    sqrt_impact = isinstance(slippage, SqrtImpactSlippage)
    almgren = isinstance(slippage, AlmgrenChrissSlippage)
    vol, kelly = isinstance(sizing, VolTargetSizing), isinstance(sizing, KellySizing)
    mode = (kernel.SIZE_VOL_TARGET if vol else kernel.SIZE_KELLY if kelly
            else kernel.SIZE_RISK_PARITY if isinstance(sizing, RiskParitySizing) else kernel.SIZE_TARGET)

    def off(value: float | None) -> float:
        return math.nan if value is None else float(value)

    return kernel.Rules(
        next_open=ledger.fill == "next_open",
        path_limits=risk.daily_loss_limit_pct is not None or risk.max_drawdown_pct is not None,
        fixed_quantity=float(sizing.quantity) if isinstance(sizing, FixedQuantitySizing) else math.nan,
        fractional=bool(ledger.fractional),
        max_participation=math.nan if ledger.max_participation is None else float(ledger.max_participation),
        slippage_fraction=slippage.bps / 1e4,
        sqrt_impact=sqrt_impact,
        impact_coefficient=float(slippage.coefficient) if sqrt_impact else 0.0,
        commission_num=int(commission.num),
        commission_den=int(commission.den),
        max_position_pct=float(risk.max_position_pct),
        max_gross_exposure=float(risk.max_gross_exposure),
        daily_loss_limit_pct=math.nan if risk.daily_loss_limit_pct is None else float(risk.daily_loss_limit_pct),
        max_drawdown_pct=math.nan if risk.max_drawdown_pct is None else float(risk.max_drawdown_pct),
        sizing=int(mode),
        target_vol=float(sizing.target_vol) if vol else math.nan,
        max_leverage=float(sizing.max_leverage) if vol else math.nan,
        kelly_fraction=float(sizing.fraction) if kelly else math.nan,
        kelly_cap=float(sizing.cap) if kelly else math.nan,
        days_per_year=float(TRADING_DAYS if Calendar(calendar) is Calendar.EQUITIES else 365),
        stops=stops.active,
        stop_loss_pct=off(stops.stop_loss_pct),
        stop_loss_atr=off(stops.stop_loss_atr),
        take_profit_pct=off(stops.take_profit_pct),
        take_profit_atr=off(stops.take_profit_atr),
        trailing_pct=off(stops.trailing_pct),
        trailing_atr=off(stops.trailing_atr),
        algo=int(_ALGOS[execution.algo]),
        algo_bars=int(execution.bars),
        pov_rate=float(execution.rate),
        almgren=almgren,
        ac_eta=float(slippage.eta) if almgren else 0.0,
        ac_beta=float(slippage.beta) if almgren else 1.0,
        ac_gamma=float(slippage.gamma) if almgren else 0.0,
        ac_liquidity=float(slippage.liquidity_factor) if almgren else 1.0,
        var_limit=risk.max_var_pct is not None,
        max_var_pct=off(risk.max_var_pct),
        var_alpha=round(1 - risk.var_level, 12),
        var_parametric=risk.var_method == "parametric",
        var_z=NormalDist().inv_cdf(round(1 - risk.var_level, 12)),
        max_group_pct=off(risk.max_group_pct),
        n_groups=len(set(risk.groups.values())) if risk.max_group_pct is not None else 0,
    )


_ALGOS = {"immediate": kernel.ALGO_IMMEDIATE, "twap": kernel.ALGO_TWAP, "vwap": kernel.ALGO_VWAP,
          "pov": kernel.ALGO_POV}


def _group_index(risk: RiskConfig, symbols: tuple[str, ...]) -> np.ndarray:
    """Each symbol's group as an index (sorted group names; -1: no group, or no group cap)."""
    if risk.max_group_pct is None:
        return np.full(len(symbols), -1, np.int64)
    names = sorted(set(risk.groups.values()))
    unknown = sorted(set(risk.groups) - set(symbols))
    if unknown:
        log.warning("risk.groups names symbols the data does not have (ignored): %s", unknown[:20])
    return np.array([names.index(risk.groups[s]) if s in risk.groups else -1 for s in symbols], np.int64)


def _empty_chunk(n_symbols: int, estimates: bool) -> tuple[np.ndarray, ...]:
    stamps, prices = _frozen(np.empty(0, np.int64), np.int64), _frozen(np.empty((0, n_symbols)))
    est = _frozen(np.empty((1, n_symbols, N_FIELDS if estimates else 0)))
    groups = _frozen(np.full(n_symbols, -1, np.int64), np.int64)
    return stamps, stamps, prices, prices, prices, prices, prices, prices, prices, est, groups


def _frozen(a: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """A read-only C-contiguous view (a copy only where needed): one compiled signature serves
    every caller, whether its arrays came writable from a model or read-only from Ray."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a
