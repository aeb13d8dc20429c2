"""A risk rule's flattening has its own decision id and an explanation: the rule, its threshold, the
value that crossed it, the position's weight, recorded by the kernel when the rule fires.

Ids are ``risk:RULE:MODEL:SYMBOL:BAR``: the bar whose close tripped the circuit breaker or the
daily loss limit, or the last bar booked when the kill switch went on. The records do not depend
on the chunk size.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import batch, decisions, ledger

from titan_ray.domain.decisions import ForcedId
from titan_ray.ledger.engine import ModelResults


def _explained(res: ModelResults) -> dict[str, object]:
    return {e.decision_id: e for e in res.explanation_records()}


def _features(e) -> dict[str, float]:
    return {f.name: f.value for f in e.features}


def test_a_circuit_breaker_flattening_is_explained_by_its_rule_and_the_drawdown():
    led = ledger(risk={"max_drawdown_pct": 0.1}, ledger={"commission_bps": 0})
    led.apply(0, batch([100, 100, 80, 80, 80, 80]), [decisions("m", [1, 1, 1, 0, 0.5, 0.5])])
    res = led.results()["m"]
    forced = res.fills[-1]
    assert forced.decision_id == "risk:circuit_breaker:m:S0:2" and forced.bar == 3  # tripped at bar 2's close
    assert isinstance(forced.decision_id, ForcedId) and forced.decision_id.rule == "circuit_breaker"
    assert [o.decision_id for o in res.orders if o.side.value == "SELL"] == [forced.decision_id]
    e = _explained(res)[forced.decision_id]
    peak, equity = max(1e6, *res.equity[:3]), res.equity[2]
    assert (e.method, e.bar, e.symbol, e.timestamp, e.price) == ("risk", 2, "S0", int(res.timestamps[2]), 80.0)
    assert (e.old_weight, e.new_weight) == (10_000 * 80.0 / equity, 0.0)
    assert _features(e) == {"drawdown": (peak - equity) / peak, "max_drawdown_pct": 0.1, "equity": equity,
                            "peak_equity": peak}
    assert e.sentence == ("Went flat S0 (weight 1 → 0): risk rule max_drawdown_pct 10% fired at bar 2: drawdown "
                          "20.00% from the peak of 1,000,000.00 (equity 800,000.00); the model is halted for good")
    assert {f.decision_id for f in res.fills if f.decision_id.startswith("risk:")} <= set(_explained(res))


def test_a_daily_loss_flattening_is_explained_by_the_days_loss():
    led = ledger(risk={"daily_loss_limit_pct": 0.05}, ledger={"commission_bps": 0})
    led.apply(0, batch([100, 100, 90, 90, 90]), [decisions("m", [1, 1, 1, 1, 1])])
    res = led.results()["m"]
    assert [f.decision_id for f in res.fills] == ["m:S0:0", "risk:daily_loss_limit:m:S0:2"]
    e = _explained(res)["risk:daily_loss_limit:m:S0:2"]
    start, equity = res.equity[1], res.equity[2]  # each bar is a session day of the continuous calendar
    assert _features(e) == {"day_loss": (start - equity) / start, "daily_loss_limit_pct": 0.05, "equity": equity,
                            "day_start_equity": start}
    assert "risk rule daily_loss_limit_pct 5% fired at bar 2: the day's loss 10.00%" in e.sentence
    assert "no new risk until the next session day" in e.sentence


def test_a_kill_switch_flattening_names_the_last_bar_booked_once():
    led = ledger(n_symbols=2, ledger={"commission_bps": 0})
    prices = np.array([[100.0, 50.0], [100.0, 50.0], [110.0, 40.0]])
    led.apply(0, batch(prices), [decisions("m", np.full((3, 2), 0.4))])
    led.kill_switch("m")
    led.kill_switch("m")  # turned on twice: one flattening per symbol, explained once
    led.apply(1, batch(prices[-1:], start=3), [decisions("m", np.full((1, 2), 0.4), start=3)])
    res = led.results()["m"]
    ids = ["risk:kill_switch:m:S0:2", "risk:kill_switch:m:S1:2"]
    assert [f.decision_id for f in res.fills if f.bar == 3] == ids
    records = [e for e in res.explanation_records() if e.method == "risk"]
    assert [e.decision_id for e in records] == ids
    equity = res.equity[2]
    position = {f.symbol: f.quantity for f in res.fills if f.bar == 1}
    for e, close in zip(records, prices[2], strict=True):
        assert e.old_weight == position[e.symbol] * close / equity and e.price == close
        assert _features(e) == {"kill_switch": 1.0, "equity": equity}
        assert "kill switch was turned on after bar 2" in e.sentence
    # off, more bars, on again: a new flattening of the new positions, named after the new last bar
    led.kill_switch("m", on=False)
    more = np.array([[110.0, 40.0], [111.0, 41.0], [112.0, 42.0]])
    led.apply(2, batch(more, start=4), [decisions("m", np.full((3, 2), 0.3), start=4)])
    led.kill_switch("m")
    led.apply(3, batch(more[-1:], start=7), [decisions("m", np.full((1, 2), 0.3), start=7)])
    res = led.results()["m"]
    assert [f.decision_id for f in res.fills if f.bar == 7] == ["risk:kill_switch:m:S0:6", "risk:kill_switch:m:S1:6"]
    assert {f.decision_id for f in res.fills if isinstance(f.decision_id, ForcedId)} == set(_explained(res))


def _path_run(chunk: int) -> tuple[ModelResults, bytes]:
    rng = np.random.default_rng(7)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, (120, 3)), axis=0))
    weights = np.where(rng.random((120, 3)) < 0.2, rng.choice([-0.3, 0.0, 0.3], (120, 3)), np.nan)
    weights[0] = 0.3
    for t in range(1, 120):  # hold the last weight where none was drawn
        weights[t] = np.where(np.isnan(weights[t]), weights[t - 1], weights[t])
    led = ledger(n_symbols=3, long_only=False, risk={"daily_loss_limit_pct": 0.01, "max_drawdown_pct": 0.06})
    bars = batch(prices, step=3_600 * 10**9)
    for seq, part in enumerate(bars.chunks(chunk)):
        led.apply(seq, part, [decisions("m", weights[part.start:part.stop], start=part.start)])
    return led.results()["m"], led.books["m"].forced().tobytes()


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_forced_flattenings_do_not_depend_on_the_chunk_size(chunk):
    whole, records = _path_run(120)
    res, got = _path_run(chunk)
    assert got == records
    rules = {e.decision_id.rule for e in whole.explanation_records() if isinstance(e.decision_id, ForcedId)}
    assert rules == {"daily_loss_limit", "circuit_breaker"}  # the market trips both
    assert res.fills == whole.fills and res.orders == whole.orders
    assert repr(res.explanation_records()) == repr(whole.explanation_records())  # NaN base values
    forced = {f.decision_id for f in whole.fills if isinstance(f.decision_id, ForcedId)}
    assert forced and forced <= set(_explained(whole))
