"""The tournament's config and grid: variants, markets and walk-forward windows, without Ray."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.config import ConfigError, parse_config
from titan_ray.data.providers import make_provider
from titan_ray.models.kinds import build_model
from titan_ray.tournament.grid import plan
from titan_ray.tournament.spec import WindowSpec, parse_tournament, windows

BASE = {"data": {"n_symbols": 3, "bars": 900},
        "models": [{"name": "sma", "kind": "sma_crossover"}, {"name": "hold", "kind": "buy_and_hold"}]}


def _raw(**over):
    return {"base": BASE, "markets": [{"seeds": [1, 2]}], **over}


def test_variants_expand_to_one_model_per_point_of_the_grid_with_readable_names():
    t = parse_tournament(_raw(variants={"sma": {"fast": [5, 10], "slow": [30, 50]}}))
    names = [m["name"] for m in t.base["models"]]
    assert names == ["sma-fast5-slow30", "sma-fast5-slow50", "sma-fast10-slow30", "sma-fast10-slow50", "hold"]
    assert t.origin == {**{n: "sma" for n in names[:4]}, "hold": "hold"}
    assert t.params["sma-fast10-slow50"]["fast"] == 10 and t.params["sma-fast10-slow50"]["slow"] == 50
    long = parse_tournament(_raw(variants={"sma": {"fast": [5], "slow": [30], "weight": [0.123456789012345678]}}))
    assert long.base["models"][0]["name"] == "sma-v0"  # too long for a model name: numbered


@pytest.mark.parametrize("raw, words", [
    (_raw(variants={"smaa": {"fast": [5]}}), ["smaa", "not in the base"]),
    (_raw(variants={"sma": {"fast": []}}), ["variants.sma.fast", "non-empty list"]),
    (_raw(variants={"sma": {"fast": [40]}}), ["fast (40) must be shorter than slow"]),
    (_raw(windowz={"train_bars": 10, "test_bars": 10}), ["windowz", "did you mean 'windows'"]),
    ({"markets": [{}]}, ["exactly one of base", "base_config"]),
    (_raw(windows={"train_bars": 10}), ["windows.test_bars", "required"]),
])
def test_a_bad_tournament_names_the_field_and_the_fix(raw, words):
    with pytest.raises(ConfigError) as err:
        parse_tournament(raw)
    for w in words:
        assert w in str(err.value)
    assert "invalid arena config" not in str(err.value).split(":", 2)[-1] or "base" in str(err.value)


def test_a_model_that_refits_while_trading_is_refused():
    base = {**BASE, "replay": {"warmup_bars": 300},
            "models": [{"name": "gbm", "kind": "lightgbm", "params": {"refit_every": 100}},
                       {"name": "hold", "kind": "buy_and_hold"}]}
    with pytest.raises(ConfigError, match=r"models\[0\] \(gbm\)\.params\.refit_every"):
        parse_tournament({"base": base, "markets": [{}]})


def test_rolling_and_anchored_windows():
    roll = windows(WindowSpec(mode="rolling", train_bars=100, test_bars=50), 320)
    assert [(w.start, w.train, w.stop) for w in roll] == [(0, 100, 150), (50, 100, 200), (100, 100, 250),
                                                          (150, 100, 300)]
    anch = windows(WindowSpec(mode="anchored", train_bars=100, test_bars=50, max_windows=2), 320)
    assert [(w.start, w.train, w.stop) for w in anch] == [(0, 100, 150), (0, 150, 200)]
    # every test part is traded once and never overlaps its own training part
    for w in roll + anch:
        assert w.start + w.train < w.stop
    with pytest.raises(ConfigError, match="more than the market's 120 bars"):
        windows(WindowSpec(train_bars=100, test_bars=50), 120)


def test_each_window_arena_sees_its_bars_exactly_with_the_training_part_as_warmup(tmp_path):
    t = parse_tournament(_raw(windows={"mode": "rolling", "train_bars": 300, "test_bars": 250}))
    arenas = plan(t, tmp_path)
    assert [a.id for a in arenas] == ["m0-synthetic-s1-w0", "m0-synthetic-s1-w1", "m0-synthetic-s2-w0",
                                      "m0-synthetic-s2-w1"]
    whole = make_provider(parse_config({**BASE, "seed": 2}).data, 2).load().bars
    for a, start in zip(arenas[2:], (0, 250), strict=True):
        config = parse_config(a.config)
        assert config.replay.warmup_bars == 300 and config.seed == 2
        bars = make_provider(config.data, config.seed).load().bars
        assert len(bars) == 550
        np.testing.assert_array_equal(bars.timestamps, whole.timestamps[start:start + 550])
        np.testing.assert_array_equal(bars.close, whole.close[start:start + 550])
        np.testing.assert_array_equal(bars.open, whole.open[start:start + 550])
    again = plan(t, tmp_path)  # markets are written once; the plan is the same
    assert [a.config for a in again] == [a.config for a in arenas]


def test_walk_forward_a_learned_model_never_fits_on_a_bar_of_its_windows_test_part(tmp_path, monkeypatch):
    """Each window's arena shows its models the training part as warm-up and books the test part; a
    learned model fits before its first decision on what it observed, and the tournament refuses
    refits while trading. Here the window's own bars go through the model as the arena sends them
    (the warm-up observed, the test part decided in chunks) and every fit is recorded."""
    from titan_ray.models.learned import LearnedModel

    base = {"data": {"n_symbols": 3, "bars": 1400}, "replay": {"warmup_bars": 400, "chunk_size": 64},
            "models": [{"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 20}},
                       {"name": "hold", "kind": "buy_and_hold"}]}
    t = parse_tournament({"base": base, "markets": [{}],
                          "windows": {"mode": "anchored", "train_bars": 400, "test_bars": 300}})
    fits: list[tuple[int, int]] = []
    real = LearnedModel._fit_arrays
    monkeypatch.setattr(LearnedModel, "_fit_arrays",
                        lambda self, X, close, first, stop: (fits.append((first, stop)), real(self, X, close, first, stop))[1])
    arenas = plan(t, tmp_path)
    assert len(arenas) == 3
    for k, a in enumerate(arenas):
        config = parse_config(a.config)
        bars = make_provider(config.data, config.seed).load().bars
        train = 400 + 300 * k  # anchored: the window's training part, from the tournament's own numbers
        assert config.replay.warmup_bars == train and len(bars) == train + 300
        spec = config.models[0]
        model = build_model(spec.name, spec.kind, spec.params, bars.symbols, seed=config.seed)
        fits.clear()
        warm = config.replay.warmup_bars  # what the arena shows the models before trading
        model.observe(bars.slice(0, warm))
        for lo in range(warm, len(bars), config.replay.chunk_size):
            model.decide(bars.slice(lo, min(lo + config.replay.chunk_size, len(bars))))
        assert fits, "the model never fitted"
        assert all(stop <= train for _, stop in fits), (a.id, train, fits)  # bars [first, stop): training part only


def test_the_command_says_what_is_wrong_with_a_tournament_file(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "t.yaml"
    bad.write_text("base: {models: [{name: sma, kind: sma_crossover}]}\nmarkets: [{seeds: [1]}]\nwindow: {}\n")
    done = subprocess.run([sys.executable, "-m", "titan_ray", "tournament", "--config", str(bad)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "window: unknown key; did you mean 'windows'?" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "titan_ray", "tournament", "--resume", str(tmp_path)],
                             check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert missing.returncode == 2 and "tournament_config.json is missing" in missing.stderr


def test_the_base_can_be_an_arena_file_next_to_the_tournament(tmp_path):
    import yaml

    from titan_ray.tournament.spec import load_tournament

    (tmp_path / "arena.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"base_config": "arena.yaml", "markets": [{"scenario": "trending"}]}))
    t = load_tournament(tmp_path / "t.yaml")
    assert [m["name"] for m in t.base["models"]] == ["sma", "hold"]
    assert t.config.markets[0].data() == {"provider": "synthetic", "synthetic": {"scenario": "trending"}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"base_config": "nope.yaml", "markets": [{}]}))
    with pytest.raises(ConfigError, match="base_config nope.yaml does not exist"):
        load_tournament(tmp_path / "t.yaml")
