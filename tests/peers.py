"""The established backtesters, run on the same bars as the arena, for acceptance tests.

backtrader (``order_target_size``, percentage commission, ``set_coc`` for same-close fills and
``set_slippage_perc`` with slippage on opens and outside the bar's range) and backtesting.py
(``trade_on_close``, relative commission charged on entry and exit). backtesting.py applies its
``spread`` on entry only, so it is compared without slippage; backtrader covers the slippage case.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover


def backtrader_sma(
    bars: pd.DataFrame, *, fast: int, slow: int, quantity: int, cash: float, commission: float,
    fill: str = "next_open", slippage: float = 0.0,
) -> tuple[float, int]:
    """(final portfolio value, closed round trips) of an SMA crossover in backtrader."""

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=fast), bt.ind.SMA(period=slow))

        def next(self) -> None:
            if self.cross > 0:
                self.order_target_size(target=quantity)
            elif self.cross < 0:
                self.order_target_size(target=0)

    cerebro = bt.Cerebro(stdstats=False)
    feed = bars.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
    cerebro.adddata(bt.feeds.PandasData(dataname=feed))
    cerebro.addstrategy(SmaCross)
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=commission)
    if fill == "same_close":
        cerebro.broker.set_coc(True)
    if slippage:
        cerebro.broker.set_slippage_perc(slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=True)
    strat = cerebro.run()[0]
    closed = strat.analyzers.trades.get_analysis().get("total", {}).get("closed", 0)
    return cerebro.broker.getvalue(), int(closed)


def backtesting_py_sma(
    bars: pd.DataFrame, *, fast: int, slow: int, quantity: int, cash: float, commission: float,
    fill: str = "next_open",
) -> tuple[float, int]:
    """(final equity, closed round trips) of an SMA crossover in backtesting.py."""

    def sma(values, n):
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy(size=quantity)
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = bars.set_index("timestamp").rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    test = Backtest(frame, SmaCross, cash=cash, commission=commission, trade_on_close=fill == "same_close",
                    finalize_trades=False)
    stats = test.run()
    return float(stats["Equity Final [$]"]), int(stats["# Trades"])
