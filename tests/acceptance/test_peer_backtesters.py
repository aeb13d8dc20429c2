"""The arena agrees with established backtesters to the cent on real AAPL daily bars.

SMA(10/30) crossover, 100 shares (fixed_quantity), 10 bps commission, no slippage, next-open
fills; then same-close fills; then 5 bps slippage. The arena runs through its real actors.
"""

from __future__ import annotations

import warnings

import pytest
from peers import backtesting_py_sma, backtrader_sma

from titan_ray.arena.runner import run_arena
from titan_ray.config import parse_config
from titan_ray.data.lean import read_lean_zip, write_csv

CASH, COMMISSION_BPS, QTY = 1_000_000, 10, 100


@pytest.fixture(scope="module")
def aapl(lean_dir, tmp_path_factory):
    frame = read_lean_zip(lean_dir / "daily_aapl.zip")
    path = write_csv(frame, tmp_path_factory.mktemp("aapl") / "AAPL.csv")
    return frame, path


def _arena(path, fill: str, bps: float):
    config = parse_config({
        "seed": 1,
        "data": {"provider": "csv", "path": str(path)},
        "ledger": {"initial_cash": CASH, "commission_bps": COMMISSION_BPS,
                   "slippage": {"model": "fixed_bps", "bps": bps},
                   "sizing": {"mode": "fixed_quantity", "quantity": QTY}, "fill": fill},
        "models": [{"name": "sma", "kind": "sma_crossover", "params": {"fast": 10, "slow": 30}}],
    })
    run = run_arena(config)
    row = run.leaderboard[0]
    return row["final_equity"], row["n_trades"], run


@pytest.mark.parametrize("fill,bps", [("next_open", 0), ("same_close", 0), ("next_open", 5)])
def test_matches_backtrader_to_the_cent(ray_session, aapl, fill, bps):
    frame, path = aapl
    ours, trips, run = _arena(path, fill, bps)
    theirs, their_trips = backtrader_sma(frame, fast=10, slow=30, quantity=QTY, cash=CASH,
                                         commission=COMMISSION_BPS / 1e4, fill=fill, slippage=bps / 1e4)
    assert run.run_info["n_bars"] == len(frame) > 5000
    assert trips == their_trips > 50
    assert round(ours, 2) == round(theirs, 2), (ours, theirs)


@pytest.mark.parametrize("fill", ["next_open", "same_close"])
def test_matches_backtesting_py_to_the_cent(ray_session, aapl, fill):
    frame, path = aapl
    ours, trips, _ = _arena(path, fill, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, their_trips = backtesting_py_sma(frame, fast=10, slow=30, quantity=QTY, cash=CASH,
                                                 commission=COMMISSION_BPS / 1e4, fill=fill)
    assert trips == their_trips
    assert round(ours, 2) == round(theirs, 2), (ours, theirs)
