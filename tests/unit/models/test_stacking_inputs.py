"""``stacking`` over the arena's models (``params.inputs``): its inputs are the named models' decisions at
the same bar, out of fold over the warm-up bars it fits on, and nothing from the future."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import DataConfig, SyntheticConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import ExplanationBatch
from titan_ray.models.base import OutOfFold, Stacker
from titan_ray.models.kinds import build_model
from titan_ray.models.learned import Attribution, LearnedModel, positions
from titan_ray.models.stacking import ArenaStackingModel, StackingModel, stack_in_process

WARM, N_BARS = 400, 900
INPUTS = ("sma", "rsi", "lgbm")
LGBM = {"n_estimators": 40, "cv_folds": 2, "entry": 0.5}


def market(seed: int = 8, *, signal: float = 0.2) -> BarBatch:
    syn = SyntheticConfig(signal=signal, random_walk=signal == 0, market_correlation=0.3)
    return SyntheticProvider(DataConfig(n_symbols=5, bars=N_BARS, synthetic=syn), seed).load().bars


def splice(a: BarBatch, b: BarBatch, k: int) -> BarBatch:
    """``a`` up to bar k, then ``b``'s path from there on, rescaled to carry on from a's last close."""
    scale = a.close[k - 1] / b.close[k - 1]
    prices = {f: np.vstack([getattr(a, f)[:k], getattr(b, f)[k:] * scale]) for f in ("open", "high", "low", "close")}
    return BarBatch.from_arrays(a.timestamps, a.symbols, volume=np.vstack([a.volume[:k], b.volume[k:]]), **prices)


def arena(bars: BarBatch, params: dict | None = None, *, size: int = 128, feed: bool = True, lgbm: dict = LGBM,
          left_out: str | None = None):
    """The arena's order in one process: the inputs decide each chunk, then the meta-model, fed their
    decisions (or, ``feed=False``, reading their signals as a restarted actor does)."""
    syms = bars.symbols
    bases = [build_model("sma", "sma_crossover", {"fast": 5, "slow": 20}, syms, seed=3),
             build_model("rsi", "rsi_reversion", {"period": 7}, syms, seed=3),
             build_model("lgbm", "lightgbm", lgbm, syms, seed=3)]
    meta = build_model("stack", "stacking", {"inputs": list(INPUTS), "cv_folds": 3, "entry": 0.5,
                                             **(params or {})}, syms, seed=3)
    stack_in_process(meta, bases)
    for chunk in bars.slice(0, WARM).chunks(size):
        for m in (*bases, meta):
            m.observe(chunk)
    decided: dict[str, list] = {m.name: [] for m in (*bases, meta)}
    for chunk in bars.slice(WARM, len(bars)).chunks(size):
        ds = {b.name: b.decide(chunk) for b in bases}
        if feed:
            meta.feed(chunk.start, chunk.stop, {n: None if n == left_out else d for n, d in ds.items()})
        ds["stack"] = meta.decide(chunk)
        for name, d in ds.items():
            decided[name].append(d)
    weights = {n: np.vstack([d.weights for d in ds]) for n, ds in decided.items()}
    ex = ExplanationBatch.concat([d.explanations for d in decided["stack"] if d.explanations is not None])
    return meta, {b.name: b for b in bases}, weights, ex


@pytest.fixture(scope="module")
def run():
    return arena(market())


def test_the_inputs_are_the_named_models_decisions_at_the_same_bar(run):
    meta, _, w, ex = run
    assert isinstance(meta, ArenaStackingModel) and isinstance(meta, Stacker) and meta.stacked == INPUTS
    assert ex.feature_names == INPUTS and ex.method == "stacking.contributions" and len(ex) > 10
    for i, name in enumerate(INPUTS):  # the value shown is that model's target weight at the decision's bar
        np.testing.assert_array_equal(ex.values[:, i], w[name][ex.bar - WARM, ex.symbol])
    # each input's contribution = its weight in the meta-model x its standardised signal; they add up
    z = (ex.values - meta.meta["mu"]) / meta.meta["sd"]
    np.testing.assert_allclose(ex.attributions, z * meta.meta["coef"], rtol=1e-12, atol=1e-15)
    assert np.allclose(ex.base_value, meta.meta["intercept"]) and np.nanmax(ex.gap) < 1e-9
    sentences = ex.texts(meta.symbols)
    assert all("pushed the stacked score" in s and "contributions" in s for s in sentences)
    assert all(any(f"{n} " in s for n in INPUTS) for s in sentences)
    assert {f"weight_{n}" for n in INPUTS} <= set(meta.metrics) and meta.metrics["known_lgbm"] == 1.0


def test_a_decision_at_bar_t_is_the_rule_over_the_inputs_decisions_at_bar_t(run):
    meta, _, w, _ = run
    X = np.stack([w[n] for n in INPUTS], axis=2)
    score = ((X - meta.meta["mu"]) / meta.meta["sd"] * meta.meta["coef"]).sum(axis=2) + meta.meta["intercept"]
    expected, _ = positions((score - meta.center) / meta.scale, WARM, np.zeros(5), meta.params)
    np.testing.assert_array_equal(w["stack"], expected * meta.default_weight())
    assert w["stack"].any() and not np.array_equal(w["stack"], w["lgbm"])


def test_no_look_ahead_another_future_leaves_every_earlier_decision_as_it_was():
    k = 700  # the market changes from this bar on; the meta-model refits every 100 bars on what it saw
    a, b = market(8), market(21)
    meta, _, wa, ea = arena(a, {"refit_every": 100})
    _, _, wb, eb = arena(splice(a, b, k), {"refit_every": 100})
    n = k - WARM
    for name in wa:
        np.testing.assert_array_equal(wa[name][:n], wb[name][:n], err_msg=name)
    early_a, early_b = ea.bar < k, eb.bar < k
    np.testing.assert_array_equal(ea.attributions[early_a], eb.attributions[early_b])
    assert not np.array_equal(wa["stack"][n:], wb["stack"][n:])  # a different future did change what came after
    assert meta.training_window["stop_bar"] == 800  # the last refit: bars [..., 800) only


class Linear(LearnedModel):
    """score = b x ret_5; records the rows whose labels each fit was given."""

    kind = "lightgbm"
    method = "linear"

    def _fit(self, X, y):
        x = X[..., 0]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 50:
            raise ValueError("too few")
        self.b = float((x[ok] * y[ok]).sum() / (x[ok] ** 2).sum())
        FITS.append(np.flatnonzero(np.isfinite(y).any(axis=1)))
        return {}

    def _predict(self, X):
        return self.b * X[..., 0]

    def _attribute(self, X, rows, cols):
        x = X[rows, cols]
        return Attribution(("ret_5",), x, self.b * x, 0.0)

    def _save(self, folder):
        pass

    def _load(self, folder):
        pass


FITS: list[np.ndarray] = []


def test_out_of_fold_signals_never_learn_from_a_label_near_the_test_block():
    bars, h, reader = market(), 5, 9
    m = Linear("lin", {"features": ["ret_5"], "horizon": h, "entry": 0.3}, bars.symbols, seed=0)
    m.record_signals()
    m.observe(bars.slice(0, WARM))
    FITS.clear()
    m.decide(bars.slice(WARM, WARM + 50))
    assert len(FITS) == 1  # the fit that trades: every labelled row
    oof = m.signals(0, WARM + 50, OutOfFold(folds=3, embargo=0, horizon=reader))
    assert len(FITS) == 4 and np.isfinite(oof).all()
    assert np.array_equal(oof[WARM:], m.signals(WARM, WARM + 50))  # the decided bars: what it decided
    for block, rows in zip(np.array_split(np.arange(WARM), 3), FITS[1:], strict=True):
        a, b = block[0], block[-1]
        # no label window [t, t + h] touches the block, and none starts within the reader's horizon after it
        assert not ((rows <= b) & (rows + h >= a)).any()
        assert not ((rows > b) & (rows <= b + reader)).any()
        assert len(rows) > 150
    again = m.signals(0, WARM, OutOfFold(folds=3, embargo=0, horizon=reader))
    assert len(FITS) == 4 and np.array_equal(again, oof[:WARM])  # computed once per OutOfFold


def test_asked_before_its_first_decision_a_model_answers_as_after_it():
    """A restarted input actor may be asked for its warm-up signals by a restarted meta-model before the
    arena's next chunk reaches it: it fits as its first decision would, so the answer is the same."""
    bars, oof = market(), OutOfFold(folds=3, horizon=5)
    decided, asked = (build_model("lgbm", "lightgbm", LGBM, bars.symbols, seed=3) for _ in range(2))
    for m in (decided, asked):
        m.record_signals()
        m.observe(bars.slice(0, WARM))
    first = decided.decide(bars.slice(WARM, WARM + 50))
    early = asked.signals(0, WARM, oof)
    assert np.isfinite(early).mean() > 0.5
    np.testing.assert_array_equal(early, decided.signals(0, WARM, oof))
    np.testing.assert_array_equal(asked.decide(bars.slice(WARM, WARM + 50)).weights, first.weights)
    assert asked.training_window == decided.training_window


def test_the_meta_model_fits_on_out_of_fold_signals_not_in_sample_ones():
    bars = market(9, signal=0.0)  # a random walk: nothing to learn, so an in-sample signal is overfit
    meta, bases, _, _ = arena(bars, lgbm={"n_estimators": 60, "cv_folds": 0, "num_leaves": 31})
    lgbm = bases["lgbm"]
    warm = bars.slice(0, WARM)
    X, y = lgbm.features.transform(warm), lgbm.labels(warm.close)
    in_sample = lgbm._from_flat(lgbm.score(X))
    oof = lgbm.signals(0, WARM, meta.oof)
    ok = np.isfinite(y)

    def corr(w):
        return np.corrcoef(w[ok], y[ok])[0, 1]

    assert corr(in_sample) > 0.3 and abs(corr(oof)) < 0.1
    assert meta.metrics["oof_corr_lgbm"] == pytest.approx(corr(oof), abs=1e-12)  # what the meta-model was given
    assert meta.meta["mu"][2] == pytest.approx(oof[ok].mean(), abs=1e-15)


def test_an_input_left_out_reads_as_flat_and_the_sentence_says_so():
    meta, _, w, ex = arena(market(), left_out="rsi")
    assert len(ex) and (ex.values[:, INPUTS.index("rsi")] == 0).all()
    assert all("(rsi left out: read as flat)" in s for s in ex.texts(meta.symbols))
    np.testing.assert_array_equal(ex.values[:, 0], w["sma"][ex.bar - WARM, ex.symbol])


def test_reading_the_inputs_signals_decides_as_being_fed_them_whatever_the_chunks(run):
    _, _, w, ex = run
    _, _, w2, ex2 = arena(market(), size=37, feed=False)  # as an actor replaying history after a restart
    np.testing.assert_array_equal(w["stack"], w2["stack"])
    np.testing.assert_array_equal(ex.attributions, ex2.attributions)


def test_misuse_is_refused_with_the_fix():
    syms = ("A", "B")
    with pytest.raises(ValueError, match=r"stacks arena models \(params.inputs.*remove `inputs`"):
        StackingModel("s", {"inputs": ["a"]}, syms, seed=0)
    with pytest.raises(ValueError, match="lgb_rounds configure the internal base signals.*remove lgb_rounds"):
        build_model("s", "stacking", {"inputs": ["a"], "lgb_rounds": 10}, syms, seed=0)
    with pytest.raises(ValueError, match="inputs listed twice"):
        build_model("s", "stacking", {"inputs": ["a", "a"]}, syms, seed=0)
    assert ArenaStackingModel.min_history({"inputs": ["a"], "horizon": 7}) == 107
    meta = build_model("s", "stacking", {"inputs": ["a", "b"]}, syms, seed=0)
    with pytest.raises(ValueError, match=r"stacks \['a', 'b'\]; it was fed \['a'\]"):
        meta.feed(0, 3, {"a": None})
    with pytest.raises(ValueError, match=r"fed b's decisions on 2 bars from bar 0, for bars \[0, 3\)"):
        meta.feed(0, 3, {"a": None, "b": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="in an arena"):
        meta.fit(None)
    bars = market()
    alone = build_model("s", "stacking", {"inputs": ["a"]}, bars.symbols, seed=0)
    alone.observe(bars.slice(0, WARM))
    with pytest.raises(RuntimeError, match=r"stacks \['a'\] and has nothing to read their signals on bars \[0, 400\) from"):
        alone.decide(bars.slice(WARM, WARM + 100))
    rule = build_model("r", "sma_crossover", {}, syms, seed=0)
    with pytest.raises(RuntimeError, match="call record_signals"):
        rule.signals(0, 5)
