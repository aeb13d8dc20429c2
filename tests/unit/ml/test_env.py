"""TradingEnv: the arena ledger's P&L for the same actions, the arena's timing, seeded training windows."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from titan_ray.config import DataConfig, LedgerConfig, RiskConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.decisions import Decisions
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.ledger.engine import Ledger
from titan_ray.ml.env import AGENT, ActionMap, EnvSettings, MarketWindow, TradingEnv, observation

FEATURES = ("ret_1", "ret_5", "vol_20")


def _market(n_symbols: int = 3, bars: int = 600, seed: int = 5):
    data = SyntheticProvider(DataConfig(n_symbols=n_symbols, bars=bars, frequency="1h"), seed).load()
    return data.bars, data.calendar.value


def _window(bars, calendar):
    engine = FeatureEngine(FEATURES)
    return MarketWindow.build(bars, engine.transform(bars), engine.names, calendar=calendar)


def _ledger_run(bars, calendar, ledger, risk, long_only, start, weights, chunk):
    """The arena's path: a Ledger fed chunks of bars with one weight row per bar."""
    book = Ledger(ledger=ledger, risk=risk, symbols=bars.symbols, calendar=calendar, models={AGENT: long_only})
    span = bars.slice(start, start + len(weights))
    for seq, piece in enumerate(span.chunks(chunk)):
        rows = weights[piece.start - start: piece.stop - start]
        book.apply(seq, piece, [Decisions(AGENT, piece.start, np.ascontiguousarray(rows))])
    return book.results()[AGENT]


CASES = [
    pytest.param(LedgerConfig(commission_bps=10, slippage={"model": "fixed_bps", "bps": 2}), RiskConfig(),
                 EnvSettings(episode_bars=120, levels=(-1.0, 0.0, 1.0)), id="discrete-fixed_bps"),
    pytest.param(LedgerConfig(commission_bps=5, slippage={"model": "sqrt_impact", "coefficient": 0.05},
                              fractional=True, max_participation=0.02),
                 RiskConfig(max_position_pct=0.3, max_drawdown_pct=0.02),
                 EnvSettings(episode_bars=150, actions="continuous", allow_short=True, max_weight=0.5),
                 id="continuous-impact-partial-fills-circuit-breaker"),
    pytest.param(LedgerConfig(commission_bps=3, sizing={"mode": "fixed_quantity", "quantity": 3000}),
                 RiskConfig(daily_loss_limit_pct=0.001),
                 EnvSettings(episode_bars=100, levels=(0.0, 0.5, 1.0)), id="long-only-fixed-quantity-daily-limit"),
]


@pytest.mark.parametrize(("ledger", "risk", "settings"), CASES)
def test_same_actions_give_the_ledgers_fills_and_equity(ledger, risk, settings):
    bars, calendar = _market()
    env = TradingEnv({"window": _window(bars, calendar), "ledger": ledger, "risk": risk, "settings": settings})
    rng = np.random.default_rng(3)
    _obs, info = env.reset(seed=11)
    start = info["bar"]
    actions, rewards, equity = [], [], [info["equity"]]
    done = False
    while not done:
        # Runs of repeated actions, as a policy holds positions: both changes and holds are exercised.
        action = env.action_space.sample() if not actions or rng.random() < 0.3 else actions[-1]
        _obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        equity.append(info["equity"])
        done = terminated or truncated
    assert len(actions) == settings.episode_bars
    amap = ActionMap(settings, bars.n_symbols)
    # Weight row of bar start + k is the action decided at that bar; the last bar holds it.
    weights = np.vstack([np.vstack([amap.weights(a) for a in actions]), amap.weights(actions[-1])])
    for chunk in (1, 7, 64):
        res = _ledger_run(bars, calendar, ledger, risk, settings.long_only, start, weights, chunk)
        np.testing.assert_array_equal(res.equity, np.asarray(equity))  # bit for bit
        assert res.fills == env.ledger.results()["agent"].fills
        assert res.orders == env.ledger.results()["agent"].orders
    ours = env.ledger.results()["agent"]
    assert len(ours.fills) > 10  # the actions really traded
    if risk.max_drawdown_pct or risk.daily_loss_limit_pct:
        assert any(o.reason is not None for o in ours.orders), "the risk limits were exercised"
    initial = float(ledger.initial_cash)
    assert sum(rewards) == pytest.approx((equity[-1] - equity[0]) / initial * settings.reward_scale, abs=1e-9)


def test_reward_is_the_next_bars_pnl_of_this_action():
    """Decided at bar t's close, filled at bar t+1's open, marked at t+1's close: reward of step t."""
    bars, calendar = _market(n_symbols=1)
    settings = EnvSettings(episode_bars=10, levels=(0.0, 1.0), reward_scale=1.0)
    env = TradingEnv({"window": _window(bars, calendar), "settings": settings,
                      "ledger": LedgerConfig(commission_bps=0), "risk": RiskConfig()})
    env.reset(options={"start": 100})
    t = 100
    _, r0, *_ = env.step(np.array([1]))  # long the whole budget
    qty = np.trunc(1_000_000 / bars.open[t + 1, 0])
    assert r0 == pytest.approx(qty * (bars.close[t + 1, 0] - bars.open[t + 1, 0]) / 1_000_000, rel=1e-9)
    _, r1, *_ = env.step(np.array([1]))  # hold: the position drifts with the market
    assert r1 == pytest.approx(qty * (bars.close[t + 2, 0] - bars.close[t + 1, 0]) / 1_000_000, rel=1e-9)
    _, r2, *_ = env.step(np.array([0]))  # flat again at bar t+3's open
    assert r2 == pytest.approx(qty * (bars.open[t + 3, 0] - bars.close[t + 2, 0]) / 1_000_000, rel=1e-9)
    for _ in range(7):  # steps 4..10 of the 10-bar episode
        *_, truncated, _info = env.step(np.array([0]))
    assert truncated
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.array([0]))


def test_episodes_are_seeded_and_stay_inside_the_training_window():
    bars, calendar = _market(bars=800)
    train = bars.slice(0, 500)  # the env is only ever given the training period
    window = _window(train, calendar)
    settings = EnvSettings(episode_bars=64)
    env = TradingEnv({"window": window, "settings": settings})
    starts = set()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        starts.add(info["bar"])
        assert window.first_valid <= info["bar"] <= 500 - 1 - 64
    assert len(starts) > 10  # seeds move the window

    def rollout(seed: int) -> list[float]:
        e = TradingEnv({"window": window, "settings": settings})
        _, info = e.reset(seed=seed)
        e.action_space.seed(seed)
        out, done = [info["bar"]], False
        while not done:
            _, r, term, trunc, info = e.step(e.action_space.sample())
            assert info["bar"] < 500
            out.append(r)
            done = term or trunc
        return out

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)
    # without a seed, reset continues the env's own generator: a fresh start each episode
    _, a = env.reset(seed=1)
    _, b = env.reset()
    assert a["bar"] != b["bar"] or a["equity"] != b["equity"]


def test_observation_is_the_feature_row_and_the_held_fractions():
    bars, calendar = _market()
    window = _window(bars, calendar)
    env = TradingEnv({"window": window, "settings": EnvSettings(episode_bars=20)})
    check_env(env, skip_render_check=True)
    obs, _info = env.reset(options={"start": 200})
    np.testing.assert_array_equal(obs, observation(window.features[200], np.zeros(3)))
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(np.array([2, 0, 1]))  # long, short, flat
    np.testing.assert_array_equal(obs[-3:], np.array([1.0, -1.0, 0.0], dtype=np.float32))
    np.testing.assert_array_equal(obs[:-3], window.features[201].ravel())
    # normalised with the window's own statistics: mean ~0, sd ~1 per feature over valid rows
    valid = window.features[window.first_valid:].reshape(-1, len(FEATURES))
    assert np.all(np.abs(valid.mean(axis=0)) < 0.1) and np.all(np.abs(valid.std(axis=0) - 1) < 0.1)


def test_settings_errors_name_the_field_and_the_fix():
    with pytest.raises(ValueError, match="levels: every level must lie in"):
        EnvSettings(levels=(0.0, 2.0))
    with pytest.raises(ValueError, match="levels: give at least two"):
        EnvSettings(levels=(1.0,))
    bars, calendar = _market(bars=200)
    with pytest.raises(ValueError, match="episode_bars=500 does not fit the training window"):
        TradingEnv({"window": _window(bars, calendar), "settings": EnvSettings(episode_bars=500)})
    with pytest.raises(ValueError, match="options.start"):
        TradingEnv({"window": _window(bars, calendar), "settings": EnvSettings(episode_bars=20)}).reset(
            options={"start": 5})
