"""The peers of ``end_to_end.py``, each a whole program run in its own process.

``python benchmarks/end_to_end_peers.py vectorbt FOLDER OUT`` and ``... backtrader FOLDER N``: an
SMA(10)/SMA(30) crossover over the CSV files in FOLDER (one symbol each, as ``end_to_end.py``
writes them), the way a user of that library would write it. Each prints one JSON line: what it
did and where its own time went. Nothing from TitanRay is imported here, so a peer's process pays
only for its own library.

- vectorbt: ``vbt.MA`` crossovers as entries and exits, shifted one bar so that a signal on a bar's
  close fills at the next bar's open (the arena's rule); ``Portfolio.from_signals`` over all files
  as one cash-sharing portfolio, 1/N of the initial cash per entry, 10 bps fees; ``stats()``;
  equity, trades and orders written to Parquet in OUT.
- backtrader: the first N files as ``PandasData`` feeds, ``bt.ind.CrossOver`` per feed,
  ``order_target_percent`` 1/N when long, 10 bps commission. Its bars/s is timed over
  ``cerebro.run`` alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

START = time.perf_counter()  # the program's own clock starts before its imports

import pandas as pd  # imported after the clock starts: its cost is the program's

FAST, SLOW = 10, 30
FEES = 0.001  # 10 bps of traded value, as the arena's default commission
CASH = 1_000_000.0


def _frames(folder: Path, limit: int | None = None) -> dict[str, pd.DataFrame]:
    paths = sorted(folder.glob("*.csv"))[:limit]
    return {p.name.split(".")[0].upper(): pd.read_csv(p, index_col=0, parse_dates=True) for p in paths}


def vectorbt_main(folder: Path, out: Path) -> dict[str, float | int]:
    import vectorbt as vbt

    imported = time.perf_counter()
    frames = _frames(folder)
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    opens = pd.DataFrame({s: f["open"] for s, f in frames.items()})
    loaded = time.perf_counter()
    fast = vbt.MA.run(close, FAST, short_name="fast")
    slow = vbt.MA.run(close, SLOW, short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, price=opens, size=CASH / close.shape[1], size_type="value", fees=FEES,
        init_cash=CASH, cash_sharing=True, group_by=True, call_seq="auto", freq="15min",
    )
    stats = pf.stats()
    tested = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pf.value().to_frame("equity").to_parquet(out / "equity.parquet")
    pd.DataFrame(pf.trades.records).to_parquet(out / "trades.parquet")
    pd.DataFrame(pf.orders.records).to_parquet(out / "orders.parquet")
    done = time.perf_counter()
    return {
        "import": imported - START, "data": loaded - imported, "backtest": tested - loaded, "results": done - tested,
        "bars": int(close.size), "final_value": float(pf.final_value()), "orders": int(pf.orders.count()),
        "total_return_pct": float(stats["Total Return [%]"]),
    }


def backtrader_main(folder: Path, n_files: int) -> dict[str, float | int]:
    import backtrader as bt

    imported = time.perf_counter()
    frames = _frames(folder, n_files)
    loaded = time.perf_counter()
    weight = 1.0 / len(frames)

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.crosses = [bt.ind.CrossOver(bt.ind.SMA(d.close, period=FAST), bt.ind.SMA(d.close, period=SLOW))
                            for d in self.datas]

        def next(self) -> None:
            for data, cross in zip(self.datas, self.crosses, strict=True):
                if cross[0] > 0:
                    self.order_target_percent(data=data, target=weight)
                elif cross[0] < 0:
                    self.order_target_percent(data=data, target=0.0)

    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None), name=name)
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEES)
    started = time.perf_counter()
    cerebro.run()
    ran = time.perf_counter()
    bars = int(sum(len(f) for f in frames.values()))
    return {
        "import": imported - START, "data": loaded - imported, "run": ran - started, "bars": bars,
        "bars_per_second": bars / (ran - started), "final_value": float(cerebro.broker.getvalue()),
        "feeds": len(frames),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("vectorbt", "backtrader"):
        print("usage: end_to_end_peers.py vectorbt FOLDER OUT | backtrader FOLDER N_FILES", file=sys.stderr)
        return 2
    engine, folder, arg = argv
    report = vectorbt_main(Path(folder), Path(arg)) if engine == "vectorbt" else backtrader_main(Path(folder), int(arg))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
