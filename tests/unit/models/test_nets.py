"""The torch nets, their training loop and Integrated Gradients, on small synthetic problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from titan_ray.explain.gradients import double_copy, integrated_gradients, per_bar, per_feature
from titan_ray.models.nets import build_net
from titan_ray.models.nets.training import Standardizer, TrainConfig, Windows, predict, split_tail, train

ARCHS = {
    "lstm_attention": {"hidden": 16, "attention": "additive"},
    "lstm_dot": {"hidden": 16, "attention": "dot"},
    "tft": {"hidden": 8, "heads": 2},
}


def _net(name: str, n_features: int, seed: int = 0, n_outputs: int = 1):
    arch = "tft" if name == "tft" else "lstm_attention"
    return build_net(arch, {"n_features": n_features, "n_outputs": n_outputs, **ARCHS[name]}, seed)


def _toy(seed: int = 0, t: int = 900, s: int = 4, f: int = 4, w: int = 6):
    """A panel of noise where the target is 0.8 x feature 1 two bars before the decision bar."""
    rng = np.random.default_rng(seed)
    panel = rng.normal(size=(t, s, f)).astype(np.float32)
    rows = np.repeat(np.arange(w - 1, t), s)
    cols = np.tile(np.arange(s), t - w + 1)
    y = 0.8 * panel[rows - 2, cols, 1] + 0.4 * rng.normal(size=len(rows))
    return Windows(panel, rows, cols, w), y.astype(np.float64)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_shapes_and_attention_weights_sum_to_one(name):
    net = _net(name, 5, n_outputs=3)
    out = net(torch.randn(7, 10, 5))
    assert out.prediction.shape == (7, 3)
    assert out.attention.shape == (7, 10)
    assert torch.allclose(out.attention.sum(-1), torch.ones(7), atol=1e-6)
    assert (out.attention >= 0).all()
    if name == "tft":
        assert out.variable_weights.shape == (7, 10, 5)
        assert torch.allclose(out.variable_weights.sum(-1), torch.ones(7, 10), atol=1e-6)
    else:
        assert out.variable_weights is None


def test_tft_attention_is_the_mean_of_its_heads_and_rejects_bad_heads():
    with pytest.raises(ValueError, match="multiple of heads"):
        build_net("tft", {"n_features": 3, "hidden": 10, "heads": 3}, 0)
    with pytest.raises(ValueError, match="unknown net architecture"):
        build_net("gru", {"n_features": 3}, 0)
    with pytest.raises(ValueError, match="attention must be"):
        build_net("lstm_attention", {"n_features": 3, "attention": "cosine"}, 0)


def test_tft_attention_queries_see_only_the_past():
    from titan_ray.models.nets.tft import InterpretableMultiHeadAttention

    torch.manual_seed(0)
    mha = InterpretableMultiHeadAttention(8, 2)
    keys = torch.randn(2, 6, 8)
    _, attn = mha(keys[:, -3:], keys)  # the last three bars as queries
    assert attn.shape == (2, 3, 6)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 3), atol=1e-6)
    assert (attn[:, 0, 4:] == 0).all() and (attn[:, 1, 5:] == 0).all()


@pytest.mark.parametrize("name", ["lstm_attention", "tft"])
def test_training_is_deterministic_with_a_seed(name):
    windows, y = _toy(t=200)
    cfg = TrainConfig(epochs=2, batch_size=64)
    states = []
    for seed in (3, 3, 4):
        net = _net(name, 4, seed)
        report = train(net, windows, y, config=cfg, seed=seed)
        assert report.epochs_run == 2 and report.n_train and report.n_val
        states.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(states[0], states[1])
    assert not torch.equal(states[0], states[2])


def test_training_leaves_the_global_torch_generator_alone():
    windows, y = _toy(t=120)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    train(_net("lstm_attention", 4), windows, y, config=TrainConfig(epochs=1, batch_size=64), seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["lstm_attention", "tft"])
def test_the_net_learns_a_planted_signal(name):
    windows, y = _toy(seed=1)
    net = _net(name, 4, seed=0)
    report = train(net, windows, y, config=TrainConfig(epochs=15, batch_size=128, lr=5e-3, patience=3), seed=0)
    _, val = split_tail(windows.rows, 0.2, 0)
    pred = predict(net, windows.take(np.flatnonzero(val))).prediction[:, 0]
    resid = np.mean((pred - y[val]) ** 2)
    # the noise variance is 0.16 and the signal's 0.64: an untrained net sits near 0.8
    assert resid < 0.35, (resid, report)
    assert report.val_loss[report.best_epoch - 1] == min(report.val_loss)
    if name == "tft":  # variable selection found the one input that matters
        vw = predict(net, windows.take(np.flatnonzero(val))).variable_weights
        assert vw[:, -3].mean(0).argmax() == 1
    else:  # and Integrated Gradients point at feature 1, two bars back
        attr = integrated_gradients(net, windows.take(np.flatnonzero(val))[:40])
        grid = np.abs(attr.attributions).mean(0)  # (W, F)
        assert np.unravel_index(grid.argmax(), grid.shape) == (windows.length - 3, 1)


def test_quantile_head_orders_its_quantiles():
    windows, y = _toy(seed=2, t=500)
    net = _net("tft", 4, seed=0, n_outputs=3)
    train(net, windows, y, config=TrainConfig(epochs=4, batch_size=128, lr=5e-3), seed=0, quantiles=(0.1, 0.5, 0.9))
    pred = predict(net, windows.take(slice(0, 300))).prediction
    assert (pred[:, 0] < pred[:, 1]).mean() > 0.9 and (pred[:, 1] < pred[:, 2]).mean() > 0.9


@pytest.mark.parametrize("name", ["lstm_attention", "tft"])
def test_prediction_does_not_depend_on_how_many_rows_come_together(name):
    net = _net(name, 4, seed=0)
    x = np.random.default_rng(0).normal(size=(70, 6, 4)).astype(np.float32)
    whole = predict(net, x, block=32)
    parts = [predict(net, x[i : i + k], block=32) for i, k in ((0, 1), (1, 30), (31, 39))]
    assert np.concatenate([p.prediction for p in parts]).tobytes() == whole.prediction.tobytes()
    assert np.concatenate([p.attention for p in parts]).tobytes() == whole.attention.tobytes()


@pytest.mark.parametrize("name", ["lstm_attention", "tft"])
def test_integrated_gradients_are_complete_and_chunk_invariant(name):
    net = _net(name, 4, seed=0)
    x = np.random.default_rng(0).normal(size=(11, 6, 4))
    attr = integrated_gradients(net, x, block=4)
    spread = np.abs(attr.score - attr.base)
    assert spread.min() > 0
    assert np.all(np.abs(attr.gap) < 1e-3 * np.maximum(spread, 1e-3) + 1e-6), (attr.gap, spread)
    # the gap is what is left of completeness, row by row, and survives aggregation
    np.testing.assert_allclose(per_feature(attr.attributions).sum(1), attr.score - attr.base + attr.gap, atol=1e-12)
    np.testing.assert_allclose(per_bar(attr.attributions).sum(1), attr.score - attr.base + attr.gap, atol=1e-12)
    # the score IG explains is the net's own score
    np.testing.assert_allclose(attr.score, predict(net, x.astype(np.float32)).prediction[:, 0], atol=1e-5)
    net64 = double_copy(net)
    part = integrated_gradients(net, x[5:], block=4, net64=net64)
    assert part.attributions.tobytes() == attr.attributions[5:].tobytes()
    assert part.gap.tobytes() == attr.gap[5:].tobytes()


def test_integrated_gradients_gap_shrinks_with_steps():
    net = _net("lstm_attention", 4, seed=1)
    x = np.random.default_rng(1).normal(size=(6, 6, 4)) * 3
    coarse = np.abs(integrated_gradients(net, x, n_steps=2).gap).mean()
    fine = np.abs(integrated_gradients(net, x, n_steps=64).gap).mean()
    assert fine < coarse


def test_windows_cut_the_right_bars_and_reject_short_history():
    panel = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    w = Windows(panel, np.array([2, 4]), np.array([1, 0]), 3)
    got = w.take(np.array([0, 1]))
    assert np.array_equal(got[0], panel[0:3, 1]) and np.array_equal(got[1], panel[2:5, 0])
    with pytest.raises(ValueError, match="cannot end at bar 1"):
        Windows(panel, np.array([1]), np.array([0]), 3)


def test_split_tail_purges_between_train_and_validation():
    rows = np.repeat(np.arange(100), 3)
    fit, val = split_tail(rows, 0.2, purge=5)
    assert rows[val].min() == 80 and rows[fit].max() == 74
    assert not (fit & val).any()


def test_standardizer_round_trips_and_handles_constant_and_nan_columns():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    st = Standardizer.fit(x)
    z = st.transform(x)
    np.testing.assert_allclose(z[:, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    assert (z[:, 1] == 0).all() and np.isnan(z[0, 2])
    again = Standardizer.from_dict(st.to_dict())
    assert again.transform(x).tobytes() == z.tobytes()


def test_train_rejects_missing_targets_and_too_few_rows():
    windows, y = _toy(t=60)
    y[3] = np.nan
    with pytest.raises(ValueError, match="targets must be finite"):
        train(_net("tft", 4), windows, y, config=TrainConfig(), seed=0)
    small = windows.subset(np.arange(len(windows)) < 20)
    with pytest.raises(ValueError, match="warm-up bars"):
        train(_net("tft", 4), small, np.zeros(20), config=TrainConfig(), seed=0)
