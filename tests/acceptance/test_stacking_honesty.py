"""Is a stack over the arena's models honest? The test of ``test_ml_honesty.py``, through the meta-model.

On synthetic random walks traded with costs, a ``stacking`` model whose inputs are other models of
the arena (two rules and a LightGBM: out of fold over the warm-up bars it fits on, their decisions
afterwards) has no out-of-sample Sharpe ratio significantly above zero (probabilistic Sharpe ratio,
Bonferroni over the markets). The same check flags the same stack when one of its inputs peeks at
the future (a LightGBM given the next bars' return as a feature): the test can see look-ahead that
reaches the meta-model through its inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import DataConfig, LedgerConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.features import FeatureEngine
from titan_ray.metrics.performance import sharpe
from titan_ray.metrics.significance import probabilistic_sharpe_ratio
from titan_ray.ml.backtest import backtest
from titan_ray.models.kinds import build_model
from titan_ray.models.stacking import stack_in_process

N_SYMBOLS, N_BARS, WARM = 6, 1400, 700
PERIODS = 252 * 26  # 15-minute bars
ALPHA = 0.05
SEEDS = (21, 22, 23)
LGBM = {"n_estimators": 80, "cv_folds": 2}


def market(seed: int) -> BarBatch:
    syn = SyntheticConfig(random_walk=True, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=N_SYMBOLS, bars=N_BARS, synthetic=syn), seed).load().bars


def significantly_positive(returns: np.ndarray, n_tests: int) -> bool:
    psr = probabilistic_sharpe_ratio(returns, 0.0)
    return bool(np.isfinite(psr) and psr > 1 - ALPHA / n_tests)


class _Leak:
    """The usual features plus the log return over the NEXT 5 bars, in bulk and chunk by chunk."""

    def __init__(self, close: np.ndarray) -> None:
        self.inner = FeatureEngine()
        self.names = (*self.inner.names, "future_ret_5")
        self.lookback = self.inner.lookback
        logc = np.log(close)
        self._future = np.full(logc.shape, np.nan)
        self._future[:-5] = logc[5:] - logc[:-5]

    def add(self, x: np.ndarray, bars: BarBatch) -> np.ndarray:
        return np.concatenate([x, self._future[bars.start : bars.stop][:, :, None]], axis=2)

    def transform(self, bars: BarBatch) -> np.ndarray:
        return self.add(self.inner.transform(bars), bars)

    def stream(self) -> _Leak:
        self._stream = self.inner.stream()
        return self

    def update(self, bars: BarBatch) -> np.ndarray:
        return self.add(self._stream.update(bars), bars)


def stacked_arena(bars: BarBatch, seed: int, *, leaky: bool):
    sma = build_model("sma", "sma_crossover", {}, bars.symbols, seed=seed)
    rsi = build_model("rsi", "rsi_reversion", {}, bars.symbols, seed=seed)
    lgbm = build_model("lgbm", "lightgbm", LGBM, bars.symbols, seed=seed)
    if leaky:
        lgbm.features = _Leak(bars.close)
        lgbm._stream = lgbm.features.stream()
    stack = build_model("stack", "stacking", {"inputs": ["sma", "rsi", "lgbm"], "cv_folds": 3}, bars.symbols,
                        seed=seed)
    stack_in_process(stack, [sma, rsi, lgbm])
    models = [sma, rsi, lgbm, stack]  # the inputs decide each chunk before the stack, as in the arena
    return backtest(models, bars, warmup=WARM, ledger=LedgerConfig(commission_bps=10)), stack


@pytest.mark.parametrize("leaky", [False, True], ids=["honest", "leaky-input"])
def test_the_stack_has_no_edge_on_random_walks_unless_an_input_peeks(leaky):
    report = {}
    for seed in SEEDS:
        bt, stack = stacked_arena(market(seed), seed, leaky=leaky)
        r = bt.returns("stack")
        assert len(r) == N_BARS - WARM and bt.results["stack"].fills, f"the stack never traded on market {seed}"
        report[seed] = (round(sharpe(r, PERIODS), 2), round(probabilistic_sharpe_ratio(r, 0.0), 4),
                        round(stack.metrics["weight_lgbm"], 7))
        assert significantly_positive(r, len(SEEDS)) == leaky, report
    if leaky:  # it is the peeking input the meta-model learned to follow, from its out-of-fold signals
        assert all(w > 0 for _, _, w in report.values()), report
