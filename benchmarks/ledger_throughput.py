"""Ledger throughput: bar·model/s of ``Ledger.apply``, the arena's booking core, with rule models.

What is measured
----------------
A synthetic universe of ``--symbols`` x ``--timestamps`` bars (the synthetic provider, seed 7),
cut into chunks of ``--chunk-size`` timestamps as the arena sends them. N ``sma_crossover``
models (fast 5..14, slow 20 + i: each a different variant, as a tournament would run) decide on
every chunk first; their decisions are kept, so only the booking is timed: one ``Ledger`` (10 bps
commission) gets ``apply(seq, chunk, decisions)`` for every chunk, which is what the ledger
actor's busy seconds count in the arena. Throughput = bars x N / seconds, where bars are the
bars that exist (symbols x timestamps here). Each row is the median of ``--repeat`` runs on a
fresh ``Ledger``; wall and CPU seconds are both printed (CPU seconds are steadier on a shared
machine). Rows: 1, 8 and 32 models with no path-dependent limits, and 32 models with a drawdown
circuit breaker (``max_drawdown_pct`` 0.3, ``max_position_pct`` 0.25), which makes the core value
every book at every close, and 32 models with issue 20's risk and execution on at once (docs/risk.md:
vol-target sizing, ATR stop-loss and take-profit and a trailing stop, TWAP over 4 bars,
Almgren-Chriss impact, a 95 % VaR limit and group caps), which also computes the market's causal
estimates once per chunk.

Start-up costs are printed apart: the first ``Ledger`` of a process loads the compiled core from
numba's on-disk cache (``load``); ``--cold`` also times, in a fresh process with an empty cache
directory, the first compile a new install pays once (``cold compile``).

*Peer* (unless ``--no-peer``): vectorbt's ``Portfolio.from_signals`` on the same bars with the
first model's signals (entries where its weight turns positive, exits where it returns to zero,
filled at the next bar's open, 10 bps fees, one cash-sharing portfolio of 1/N per symbol), warm
(its numba functions compiled by a first call): a single-model reference, in bars/s; and the same
with a 3 % stop-loss, a 6 % take-profit and a trailing stop on the bars' high and low (``sl_stop``,
``sl_trail``, ``tp_stop``), the peer of the features row.

``.venv/bin/python benchmarks/ledger_throughput.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from titan_ray.config import LedgerConfig, RiskConfig, parse_config
from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions
from titan_ray.ledger.engine import Ledger
from titan_ray.models.kinds import build_model

LEDGER = LedgerConfig(commission_bps=10)
DRAWDOWN = RiskConfig(max_drawdown_pct=0.3, max_position_pct=0.25)
FEATURES = LedgerConfig.model_validate({
    "commission_bps": 10, "sizing": {"mode": "vol_target", "target_vol": 0.15, "window": 26},
    "stops": {"stop_loss_atr": 3, "take_profit_atr": 6, "trailing_pct": 0.04},
    "execution": {"algo": "twap", "bars": 4}, "slippage": {"model": "almgren_chriss", "window": 26},
})


def feature_risk(symbols: tuple[str, ...]) -> RiskConfig:
    return RiskConfig(max_drawdown_pct=0.3, max_position_pct=0.25, max_var_pct=0.01, max_group_pct=0.5,
                      groups={s: f"g{i % 3}" for i, s in enumerate(symbols)})


@dataclass
class Row:
    label: str
    models: int
    wall_s: float
    cpu_s: float
    fills: int
    bar_models: int

    def line(self) -> str:
        return (f"{self.label:<34} {self.models:>6} {self.wall_s:>8.3f} {self.cpu_s:>8.3f} "
                f"{self.bar_models / self.wall_s / 1e6:>10.2f} {self.bar_models / self.cpu_s / 1e6:>10.2f} "
                f"{self.fills:>9,}")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def market(symbols: int, timestamps: int) -> BarBatch:
    cfg = parse_config({"data": {"provider": "synthetic", "n_symbols": symbols, "bars": timestamps},
                        "models": [{"name": "x", "kind": "buy_and_hold"}]})
    return make_provider(cfg.data, 7).load().bars


def decide(bars: BarBatch, n_models: int, chunk: int) -> tuple[list[BarBatch], list[list[Decisions]]]:
    models = [build_model(f"sma{i}", "sma_crossover", {"fast": 5 + i % 10, "slow": 20 + i}, bars.symbols, seed=7)
              for i in range(n_models)]
    chunks = list(bars.chunks(chunk))
    return chunks, [[m.decide(c) for m in models] for c in chunks]


def book(bars: BarBatch, chunks: list[BarBatch], decisions: list[list[Decisions]], risk: RiskConfig,
         repeat: int, ledger: LedgerConfig = LEDGER) -> tuple[float, float, int]:
    """Median wall and CPU seconds of booking every chunk in a fresh Ledger, and the fills."""
    walls, cpus, fills = [], [], 0
    names = {d.model: True for d in decisions[0]}
    for _ in range(repeat):
        led = Ledger(ledger=ledger, risk=risk, symbols=bars.symbols, calendar="equities", models=names)
        wall, cpu = time.perf_counter(), time.process_time()
        for seq, (c, d) in enumerate(zip(chunks, decisions, strict=True)):
            led.apply(seq, c, d)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        fills = sum(b.n_fills for b in led.books.values())
    return statistics.median(walls), statistics.median(cpus), fills


def cold_compile() -> float:
    """Seconds to the first booked chunk in a fresh process whose numba cache is empty."""
    code = ("import time; t = time.perf_counter()\n"
            "from titan_ray.config import LedgerConfig, RiskConfig\n"
            "from titan_ray.ledger.engine import Ledger\n"
            "Ledger(ledger=LedgerConfig(), risk=RiskConfig(), symbols=['A'], calendar='equities', models={'m': True})\n"
            "print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_CACHE_DIR": cache},
                             capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def vectorbt_peer(bars: BarBatch, decisions: list[list[Decisions]], repeat: int, stops: bool = False) -> float:
    """Bars/s of vectorbt's from_signals with the first model's signals, warm (``stops``: with a
    stop-loss, a trailing stop and a take-profit on the bars' high and low)."""
    import vectorbt as vbt  # a benchmark-only extra, and slow to import

    w = np.concatenate([d[0].weights for d in decisions])
    held, before = w > 0, np.vstack([np.zeros((1, w.shape[1]), bool), w[:-1] > 0])
    # a signal at a close fills at the next bar's open, as the ledger's next_open
    entries = pd.DataFrame(np.vstack([np.zeros((1, w.shape[1]), bool), (held & ~before)[:-1]]))
    exits = pd.DataFrame(np.vstack([np.zeros((1, w.shape[1]), bool), (~held & before)[:-1]]))
    close, open_ = pd.DataFrame(bars.close), pd.DataFrame(bars.open)
    extra = ({"open": open_, "high": pd.DataFrame(bars.high), "low": pd.DataFrame(bars.low), "sl_stop": 0.03,
              "sl_trail": True, "tp_stop": 0.06} if stops else {})

    def run() -> None:
        vbt.Portfolio.from_signals(close, entries, exits, price=open_, size=1 / w.shape[1], size_type="percent",
                                   fees=0.001, init_cash=1_000_000, cash_sharing=True, group_by=True,
                                   call_seq="auto", **extra).value()

    run()  # compiles vectorbt's numba functions (its own cache aside)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return bars.n_bars / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--symbols", type=int, default=12)
    ap.add_argument("--timestamps", type=int, default=20_000)
    ap.add_argument("--chunk-size", type=int, default=256, help="timestamps per chunk (the arena's default)")
    ap.add_argument("--models", type=int, nargs="+", default=[1, 8, 32], help="model counts without limits")
    ap.add_argument("--drawdown-models", type=int, default=32, help="models in the drawdown-breaker row (0: none)")
    ap.add_argument("--feature-models", type=int, default=32,
                    help="models in the row with every risk and execution feature on (0: none)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per row (the median is printed)")
    ap.add_argument("--cold", action="store_true", help="also time a first compile with an empty numba cache")
    ap.add_argument("--no-peer", action="store_true", help="skip vectorbt")
    args = ap.parse_args()

    _say(f"market: {args.symbols} symbols x {args.timestamps} timestamps ...")
    bars = market(args.symbols, args.timestamps)
    start = time.perf_counter()
    Ledger(ledger=LEDGER, risk=RiskConfig(), symbols=bars.symbols, calendar="equities", models={"m": True})
    load = time.perf_counter() - start
    most = max([*args.models, args.drawdown_models, args.feature_models])
    _say(f"decisions of {most} sma_crossover models ...")
    chunks, all_decisions = decide(bars, most, args.chunk_size)
    rows = []
    plan = [(f"{n} model{'s' if n > 1 else ''}", n, RiskConfig(), LEDGER) for n in args.models]
    if args.drawdown_models:
        plan.append((f"{args.drawdown_models} models, drawdown breaker", args.drawdown_models, DRAWDOWN, LEDGER))
    if args.feature_models:
        plan.append((f"{args.feature_models} models, risk + execution", args.feature_models,
                     feature_risk(bars.symbols), FEATURES))
    for label, n, risk, ledger in plan:
        _say(f"booking: {label} ...")
        decisions = [d[:n] for d in all_decisions]
        wall, cpu, fills = book(bars, chunks, decisions, risk, args.repeat, ledger)
        rows.append(Row(label, n, wall, cpu, fills, bars.n_bars * n))

    print(f"ledger throughput: {args.symbols} symbols x {args.timestamps:,} timestamps = {bars.n_bars:,} bars, "
          f"chunks of {args.chunk_size}, median of {args.repeat}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<34} {'models':>6} {'wall s':>8} {'cpu s':>8} {'M b·m/s':>10} {'M b·m/s cpu':>10} {'fills':>9}")
    for row in rows:
        print(row.line())
    print(f"start-up: compiled core loaded from numba's cache by the first Ledger: {load:.2f} s")
    if args.cold:
        _say("cold compile (empty numba cache, fresh process) ...")
        print(f"start-up: cold compile, first Ledger with an empty cache: {cold_compile():.1f} s")
    if not args.no_peer:
        _say("vectorbt ...")
        rate = vectorbt_peer(bars, [d[:1] for d in all_decisions], args.repeat)
        print(f"peer: vectorbt {__import__('vectorbt').__version__} Portfolio.from_signals, 1 model, warm: "
              f"{rate / 1e6:.2f} M bars/s")
        rate = vectorbt_peer(bars, [d[:1] for d in all_decisions], args.repeat, stops=True)
        print(f"peer: the same with sl_stop (trailing) and tp_stop on high/low: {rate / 1e6:.2f} M bars/s")


if __name__ == "__main__":
    main()
