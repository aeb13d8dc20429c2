"""Live mode end to end: the arena trades a fake Alpaca stream bar by bar, with paper cross-validation.

alpaca-py's real clients talk to ``tests/fakes/alpaca_server.py`` on loopback: REST for the
warm-up history, the market-data WebSocket for live bars, the trading API and its trade_updates
stream for the paper account. Nothing reaches the internet.
"""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fakes.alpaca_server import FakeAlpaca, random_walk_bars

from titan_ray.arena.cluster import RemoteMarket
from titan_ray.arena.live import LiveStop, live_chunks
from titan_ray.arena.runner import run_arena
from titan_ray.config import LiveConfig, parse_config

SYMBOLS = ["AAPL", "MSFT"]
WARMUP = 20


def _config(tmp_path, live: dict) -> dict:
    return {
        "seed": 5,
        "data": {"provider": "alpaca", "symbols": SYMBOLS, "frequency": "1min", "start": "2024-03-04",
                 "cache": {"path": str(tmp_path / "cache")}},
        "replay": {"chunk_size": 8, "warmup_bars": WARMUP},
        "ledger": {"initial_cash": 100000, "commission_bps": 1, "slippage": {"model": "fixed_bps", "bps": 2}},
        "risk": {"max_position_pct": 0.6},
        "models": [
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 2, "slow": 5}},
            {"name": "hold", "kind": "buy_and_hold"},
        ],
        "watchdog": {"enabled": False},
        "live": live,
    }


class _Market:
    """The market, in step with the arena: once it has subscribed, bar time ``i + 1`` streams after the
    arena has booked ``i`` live bars (and ``settle`` seconds more, for the paper orders of bar ``i`` to
    reach the broker), so the test does not depend on how fast this machine is. A bar that brings no
    progress within ``patience`` seconds is followed by the next anyway: the arena subscribes before
    it reads its warm-up history, so the first bar streamed may already be in that history (and is
    then dropped as late)."""

    def __init__(self, fake: FakeAlpaca, n: int, settle: float = 0.2, patience: float = 8.0) -> None:
        self.fake, self.n, self.settle, self.patience = fake, n, settle, patience
        self.booked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_progress(self, progress) -> None:
        self.booked = progress.done_timestamps

    def _run(self) -> None:
        while self.fake.subscriptions < 1:  # however long the arena takes to start
            if self.stop.wait(0.01):
                return
        for i in range(self.n):
            deadline = time.monotonic() + self.patience
            while self.booked < i and time.monotonic() < deadline:
                if self.stop.wait(0.01):
                    return
            if i:
                time.sleep(self.settle)
            if self.stop.is_set() or not self.fake.advance():
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


# per_actor 2: the two models share a ModelGroupActor, whose one answer per chunk the paper check
# reads the mirrored model's part of
@pytest.mark.parametrize("per_actor", [1, 2])
def test_live_arena_trades_each_bar_updates_the_leaderboard_and_cross_checks_paper_fills(
        ray_session, tmp_path, monkeypatch, per_actor):
    bars = random_walk_bars(SYMBOLS, "2024-03-04 14:30", 80, seed=11)
    with FakeAlpaca(bars, page_size=15) as fake:
        for k, v in fake.environ().items():
            monkeypatch.setenv(k, v)
        fake.set_now(WARMUP - 1)  # the warm-up history is all the REST API has so far
        raw = _config(tmp_path, {"max_bars": 24, "max_seconds": 180, "bar_grace_s": 3,
                                 "paper": {"model": "sma", "fill_wait_s": 10}})
        raw["replay"]["models_per_actor"] = per_actor
        config = parse_config(raw)
        progress = []
        market = _Market(fake, 30)

        def on_progress(p):
            progress.append(p)
            market.on_progress(p)

        try:
            run = run_arena(config, tmp_path / "run", on_progress=on_progress)
        finally:
            market.close()

    out = tmp_path / "run"
    # one progress call per live bar, each with a fresh leaderboard
    assert [p.done_timestamps for p in progress] == list(range(1, 25))
    assert all(p.snapshot is not None and {r["model"] for r in p.snapshot} == {"sma", "hold"} for p in progress)
    hold_equity = [next(r["equity"] for r in p.snapshot if r["model"] == "hold") for p in progress]
    assert len(set(hold_equity[2:])) > 5  # marked to the market bar by bar
    fills_seen = [next(r["n_fills"] for r in p.snapshot if r["model"] == "hold") for p in progress]
    assert fills_seen[0] == 0 and fills_seen[-1] == 2  # bought both symbols at the second live bar's open

    info = json.loads((out / "run.json").read_text())
    assert info["live"]["stopped_by"] == "bar limit (24 bars)" and info["live"]["bars"] == 24
    assert info["n_timestamps"] == WARMUP + 24 and info["warmup_bars"] == WARMUP
    assert "alpaca live stocks iex stream" in info["data_source"]
    equity = pd.read_parquet(out / "equity.parquet")
    assert len(equity) == 2 * 24
    # the ledger traded the streamed bars: its fills are at the streamed opens plus 2 bps
    trades = pd.read_parquet(out / "trades.parquet")
    fills = trades[trades["record"] == "fill"]
    assert len(fills) >= 4
    opens = {s: bars[s].set_index("timestamp")["open"] for s in SYMBOLS}
    for f in fills.itertuples():
        ref = opens[f.symbol][pd.Timestamp(f.timestamp).value]
        assert f.price == pytest.approx(ref * (1 + (2e-4 if f.side == "BUY" else -2e-4)), rel=1e-12)

    # paper cross-validation: every sma order went to the fake paper account too
    report = pd.read_parquet(out / "paper_divergence.parquet")
    paper_fills = pd.read_parquet(out / "paper_fills.parquet")
    sma_ledger = fills[fills["model"] == "sma"]
    assert len(report) >= 2 and set(report["broker_status"]) == {"filled"}
    assert len(fake.orders) == len(report)
    assert set(sma_ledger["decision_id"]) <= set(report["decision_id"])
    for row in report.itertuples():
        broker = paper_fills[(paper_fills["source"] == "broker") & (paper_fills["decision_id"] == row.decision_id)]
        assert broker["quantity"].sum() == row.broker_quantity == row.requested_quantity
        vwap = (broker["quantity"] * broker["price"]).sum() / broker["quantity"].sum()
        assert row.broker_price == pytest.approx(vwap, rel=1e-12)
        ledger = sma_ledger[sma_ledger["decision_id"] == row.decision_id]
        if len(ledger):
            sign = 1 if row.side == "BUY" else -1
            lp = (ledger["quantity"] * ledger["price"]).sum() / ledger["quantity"].sum()
            assert row.price_diff_bps == pytest.approx(sign * (vwap / lp - 1) * 1e4, rel=1e-9)
            assert row.quantity_diff == pytest.approx(row.broker_quantity - ledger["quantity"].sum())
            # the fake fills half a second and 1.5 s after it takes the order, on its bar clock: 1.5 s
            # after the bar the ledger fills on, or (an order that reached it after the next bar, as a
            # slow submission would at Alpaca) whole bars later
            assert row.timing_s >= 1.5 and (row.timing_s - 1.5) % 60 == pytest.approx(0.0, abs=1e-6)
    assert min(report["timing_s"]) == pytest.approx(1.5)
    summary = info["paper_check"]
    assert summary["model"] == "sma" and summary["n_orders"] == len(report)
    assert summary["n_filled"] == len(report) and summary["suggested_slippage"]["model"] == "fixed_bps"
    # keys never reach the results
    for name in ("run.json", "config.json", "leaderboard.json"):
        text = (out / name).read_text()
        assert fake.key_id not in text and fake.secret_key not in text
    assert run.leaderboard and {r["model"] for r in run.leaderboard} == {"sma", "hold"}


def test_ctrl_c_ends_a_live_run_cleanly_with_results_written(ray_session, tmp_path, monkeypatch):
    bars = random_walk_bars(SYMBOLS, "2024-03-04 14:30", 80, seed=12)
    with FakeAlpaca(bars) as fake:
        for k, v in fake.environ().items():
            monkeypatch.setenv(k, v)
        fake.set_now(WARMUP - 1)
        # no bar limit: Ctrl-C ends it (the time limit only guards the test against a hang)
        config = parse_config(_config(tmp_path, {"bar_grace_s": 3, "max_seconds": 180}))
        seen = []

        market = _Market(fake, 40, settle=0.0)

        def on_progress(p):
            seen.append(p.done_timestamps)
            market.on_progress(p)
            if p.done_timestamps == 6:
                _thread.interrupt_main()  # what Ctrl-C does to the driver

        # Ctrl-C as in a terminal: a job started in the background (`cmd &`, nohup, some CI runners)
        # starts with SIGINT ignored, and then interrupt_main() does nothing
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            run_arena(config, tmp_path / "run", on_progress=on_progress)
        finally:
            signal.signal(signal.SIGINT, previous)
            market.close()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["live"]["stopped_by"] == "interrupted (Ctrl-C)", (info["live"], seen, fake.subscriptions)
    assert 6 <= info["live"]["bars"] <= 8 and seen[:6] == [1, 2, 3, 4, 5, 6]
    equity = pd.read_parquet(tmp_path / "run" / "equity.parquet")
    assert len(equity) == 2 * info["live"]["bars"]
    assert np.isfinite(equity["equity"]).all()
    assert (tmp_path / "run" / "leaderboard.json").exists()


def test_live_chunks_stop_at_the_time_limit_and_when_the_feed_ends(ray_session):
    @ray_session.remote
    class Quiet:
        def __init__(self):
            self.asked = []

        def wait_chunk(self, k, timeout):
            self.asked.append(k)
            return True if k < 3 else (False if k == 3 else None)

        def info(self):
            return {"ended": "session closed"}

    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    stop = LiveStop()
    quiet = RemoteMarket(Quiet.remote())
    assert list(live_chunks(quiet, 0, LiveConfig(max_seconds=10), clock, stop, poll_s=0.01)) == [0, 1, 2]
    assert stop.reason == "time limit (10 s)"  # chunk 3 never came
    ended = LiveStop()
    market = RemoteMarket(Quiet.remote())
    assert list(live_chunks(market, 4, LiveConfig(), clock, ended, poll_s=0.01)) == []
    assert ended.reason == "feed ended (session closed)"
