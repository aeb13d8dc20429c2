"""LearnedModel's own machinery, through a tiny real subclass: a one-feature linear score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from titan_ray.arena.results import traded_sentence
from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.decisions import ExplanationBatch, Feature
from titan_ray.models.learned import Attribution, LearnedModel, describe


class Momentum(LearnedModel):
    """score = b x ret_5, b fitted by least squares on the training rows."""

    kind = "lightgbm"  # renders through a registered kind; the sentence comes from LearnedModel
    method = "linear"
    score_name = "momentum score"

    def _fit(self, X, y):
        x = X[..., 0]
        ok = np.isfinite(x) & np.isfinite(y)
        self.b = float((x[ok] * y[ok]).sum() / (x[ok] ** 2).sum())
        self.fits = getattr(self, "fits", 0) + 1
        return {"b": self.b}

    def _predict(self, X):
        return self.b * X[..., 0]

    def _attribute(self, X, rows, cols):
        x = X[rows, cols]
        return Attribution(("ret_5",), x, self.b * x, 0.0, output=self.b * x[:, 0])

    def _save(self, folder):
        (folder / "b.txt").write_text(repr(self.b))

    def _load(self, folder):
        self.b = float((folder / "b.txt").read_text())


@pytest.fixture(scope="module")
def bars():
    return SyntheticProvider(DataConfig(n_symbols=3, bars=600), 2).load().bars


def run(bars, params, size=100, warm=200):
    m = Momentum("mom", {"features": ["ret_5"], **params}, bars.symbols, seed=0)
    m.observe(bars.slice(0, warm))
    ds = [m.decide(c) for c in bars.slice(warm, len(bars)).chunks(size)]
    return m, np.vstack([d.weights for d in ds]), ExplanationBatch.concat([d.explanations for d in ds])


def test_scores_map_to_weights_with_hysteresis(bars):
    m, w, ex = run(bars, {"entry": 1.0, "exit": 0.0})
    assert m.fits == 1 and set(np.unique(w)) <= {0.0, 1 / 3}
    X = m.features.transform(bars)[200:]
    z = (m.b * X[..., 0] - m.center) / m.scale
    held = w > 0
    entered = held & ~np.vstack([np.zeros((1, 3), bool), held[:-1]])
    assert (z[entered] > 1.0).all()  # only enters above entry
    assert (z[held] >= 0.0).all()  # and holds until it falls below exit
    assert len(ex) == int((w != np.vstack([np.zeros((1, 3)), w[:-1]])).sum())
    assert np.nanmax(ex.gap) == 0.0 and all("momentum score" in s for s in ex.sentences)


def test_decide_every_only_moves_on_multiples_of_the_global_bar(bars):
    _, w, ex = run(bars, {"entry": 0.5, "decide_every": 13})
    assert (ex.bar % 13 == 0).all()
    _, w2, _ = run(bars, {"entry": 0.5, "decide_every": 13}, size=7)
    assert np.array_equal(w, w2)


def test_refits_follow_the_schedule_whatever_the_chunks(bars):
    m1, w1, _ = run(bars, {"refit_every": 50, "train_window": 150}, size=100)
    m2, w2, _ = run(bars, {"refit_every": 50, "train_window": 150}, size=17)
    assert m1.fits == m2.fits == 1 + (400 - 1) // 50
    assert np.array_equal(w1, w2) and m1.training_window == m2.training_window
    with pytest.raises(ValueError, match="train_window"):
        Momentum("m", {"train_window": 60}, ("A",), seed=0)


def test_shorts_and_params_errors(bars):
    m, w, _ = run(bars, {"entry": 0.5, "allow_short": True})
    assert not m.long_only and (w < 0).any()
    with pytest.raises(ValueError, match="exit"):
        Momentum("m", {"entry": 0.2, "exit": 0.5}, ("A",), seed=0)
    unfitted = Momentum("m", {"features": ["ret_5"]}, ("A",), seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        unfitted.score(np.zeros((1, 1, 1)))
    with pytest.raises(RuntimeError, match="nothing to save"):
        unfitted.save_artifacts(__import__("pathlib").Path("/nonexistent"))


def test_gaps_sentences_and_traded_sentences():
    a = Attribution(("x", "y"), np.ones((2, 2)), np.array([[1.0, 2.0], [0.5, 0.5]]), 1.0, output=np.array([4.0, 2.5]))
    assert a.gaps().tolist() == [0.0, 0.5]
    assert np.isnan(Attribution(("x",), np.ones((1, 1)), np.ones((1, 1)), 0.0).gaps()).all()
    feats = (Feature("ret_5", -0.021, 0.3), Feature("vol_20", 0.005, 0.0), Feature("rsi_14", 24.0, 0.1))
    assert describe(feats[0], feats) == f"5-bar return {-0.021 / (0.005 * math.sqrt(5)):+.1f}σ"
    assert describe(feats[2]) == "RSI 24"
    m = Momentum("mom", {"features": ["ret_5"]}, ("BBB",), seed=0)
    s = m.sentence("BBB", 0.0, 0.1, 0.71, feats)
    assert s.startswith("Went long BBB (weight 0 → 0.1): 5-bar return -1.9σ and RSI 24 pushed the momentum score to 0.71")
    assert "top drivers ret_5 (+0.3), rsi_14 (+0.1)" in s
    assert traded_sentence(s, "BBB", 0.0, 0.1, 120.0).startswith("Bought 120 BBB (weight 0 → 0.1): 5-bar return")
    assert traded_sentence(s, "BBB", 0.1, 0.0, -120.0).startswith("Sold 120 BBB")
    assert traded_sentence(s, "BBB", 0.0, 0.1, 0.0) == s


def test_saved_and_loaded(bars, tmp_path):
    m, w, _ = run(bars, {})
    m.save_artifacts(tmp_path)
    fresh = Momentum("mom", {"features": ["ret_5"]}, bars.symbols, seed=0)
    fresh.load_artifacts(tmp_path)
    fresh.observe(bars.slice(0, 200))
    assert np.array_equal(fresh.decide(bars.slice(200, 600)).weights, w)
    assert not hasattr(fresh, "fits")  # it never fitted


def _hysteresis_reference(z, start, position, entry, exit_, allow_short, decide_every):
    """The rule row by row, as the docs state it (numpy per row)."""
    pos, out = position.copy(), np.empty_like(z)
    for i in range(len(z)):
        zi = z[i]
        if (start + i) % decide_every == 0:
            nxt = np.where(pos > 0, np.where(zi < exit_, 0.0, 1.0), pos)
            nxt = np.where(pos < 0, np.where(zi > -exit_, 0.0, -1.0), nxt)
            nxt = np.where((pos == 0) & (zi > entry), 1.0, nxt)
            if allow_short:
                nxt = np.where((pos == 0) & (zi < -entry), -1.0, nxt)
            pos = np.where(np.isfinite(zi), nxt, pos)
        out[i] = pos
    return out, pos


@pytest.mark.parametrize("seed", range(6))
def test_hysteresis_is_the_row_by_row_rule(seed):
    rng = np.random.default_rng(seed)
    entry = float(rng.uniform(0, 1.5))
    exit_ = float(rng.uniform(-1, entry))
    allow_short, every = bool(seed % 2), int(rng.integers(1, 4))
    from types import SimpleNamespace

    from titan_ray.models.params import LearnedParams

    position = rng.choice([-1.0, 0.0, 1.0], 5) if allow_short else rng.choice([0.0, 1.0], 5)
    m = SimpleNamespace(params=LearnedParams(entry=entry, exit=exit_, allow_short=allow_short, decide_every=every),
                        _size=0.25, _position=position.copy())
    state = position.copy()
    for start, rows in ((3, 40), (43, 1), (44, 17)):  # consecutive chunks carry the position over
        z = rng.normal(0, 1.2, (rows, 5))
        z[rng.random(z.shape) < 0.1] = np.nan
        expected, state = _hysteresis_reference(z, start, state, entry, exit_, allow_short, every)
        assert np.array_equal(LearnedModel._hysteresis(m, z, start), expected * 0.25)
        assert np.array_equal(m._position, state)
