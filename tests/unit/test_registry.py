"""The model registry: versions, metadata, atomic writes, loading a model that trades unchanged."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from titan_ray.config import ConfigError, DataConfig, parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.models.lightgbm_model import LightGBMModel
from titan_ray.registry import (
    ModelRegistry,
    RegistryError,
    default_root,
    fingerprint,
    parse_ref,
    registered_models,
)

WARM = 300


@pytest.fixture(scope="module")
def bars():
    return SyntheticProvider(DataConfig(n_symbols=3, bars=450), 12).load().bars


@pytest.fixture(scope="module")
def fitted(bars):
    m = LightGBMModel("lgbm", {"n_estimators": 30, "cv_folds": 2}, bars.symbols, seed=4)
    m.fit(bars.slice(0, WARM))
    return m


def test_register_writes_metadata_and_numbers_versions(tmp_path, bars, fitted):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = reg.register_model(fitted, bars.slice(0, WARM))
    v2 = reg.register_model(fitted, bars.slice(0, WARM), extra={"note": "again"})
    assert (v1.version, v2.version) == (1, 2) and v1.ref == "lgbm@1"
    meta = json.loads((v2.path / "metadata.json").read_text())
    for key in ("kind", "params", "features", "training_window", "metrics", "data_fingerprint", "code_version",
                "created"):
        assert key in meta, key
    assert meta["kind"] == "lightgbm" and meta["features"] == list(fitted.features.names)
    assert meta["training_window"]["stop_bar"] == WARM and "oof_ic" in meta["metrics"]
    assert meta["data_fingerprint"] == fingerprint(bars.slice(0, WARM)) != fingerprint(bars)
    assert meta["extra"] == {"note": "again"}
    assert reg.get("lgbm") == v2 and reg.get("lgbm", 1) == v1 and reg.resolve("lgbm@1") == v1
    assert [v.version for v in reg.versions("lgbm")] == [1, 2] and reg.names() == ["lgbm"]
    assert [v.ref for v in reg.list()] == ["lgbm@1", "lgbm@2"]
    assert not [p for p in (tmp_path / "reg" / "lgbm").iterdir() if p.name.startswith(".tmp")]


def test_missing_models_and_bad_refs_say_what_exists(tmp_path, bars, fitted):
    reg = ModelRegistry(tmp_path)
    reg.register_model(fitted, bars.slice(0, WARM), name="alpha")
    with pytest.raises(RegistryError, match="no model named 'beta'.*registered: alpha"):
        reg.get("beta")
    with pytest.raises(RegistryError, match=r"no version 7.*versions: \[1\]"):
        reg.resolve("alpha@7")
    with pytest.raises(RegistryError, match="NAME@VERSION"):
        parse_ref("alpha@x")
    with pytest.raises(ValueError, match="model name"):
        reg.register("bad/name", "lightgbm", {}, save=lambda p: None, features=(), training_window={}, metrics={},
                     data_fingerprint="x")


def test_a_failed_save_leaves_no_version(tmp_path):
    reg = ModelRegistry(tmp_path)

    def broken(folder):
        (folder / "half.bin").write_bytes(b"12")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.register("m", "lightgbm", {}, save=broken, features=(), training_window={}, metrics={},
                     data_fingerprint="x")
    assert reg.versions("m") == [] and list((tmp_path / "m").iterdir()) == []


def test_concurrent_writers_get_distinct_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    got = []

    def write(i):
        v = reg.register("m", "buy_and_hold", {}, save=lambda p: (p / "x").write_text(str(i)), features=(),
                         training_window={}, metrics={}, data_fingerprint=str(i))
        got.append(v.version)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 9))
    assert sorted(v.meta["data_fingerprint"] for v in reg.versions("m")) == [str(i) for i in range(8)]


def test_loaded_model_trades_exactly_like_the_fitted_one(tmp_path, bars, fitted):
    reg = ModelRegistry(tmp_path)
    version = reg.register_model(fitted, bars.slice(0, WARM))
    loaded = reg.load_model(version, name="copy", symbols=bars.symbols, seed=4)
    assert loaded.fitted and loaded.name == "copy"
    # the original, refitted at its first decision on the same warm-up, trades the same way
    live = LightGBMModel("lgbm", {"n_estimators": 30, "cv_folds": 2}, bars.symbols, seed=4)
    for m in (loaded, live):
        m.observe(bars.slice(0, WARM))
    a, b = loaded.decide(bars.slice(WARM, len(bars))), live.decide(bars.slice(WARM, len(bars)))
    assert np.array_equal(a.weights, b.weights)
    tweaked = reg.load_model(version, name="t", symbols=bars.symbols, seed=4, params={"entry": 2.0})
    assert tweaked.params.entry == 2.0 and tweaked.params.n_estimators == 30


def test_arena_config_artifacts_resolve_or_name_the_field(tmp_path, bars, fitted, monkeypatch):
    reg = ModelRegistry(tmp_path)
    reg.register_model(fitted, bars.slice(0, WARM), name="champ")
    raw = {"registry": {"path": str(tmp_path)},
           "models": [{"name": "a", "kind": "lightgbm", "artifact": "champ"},
                      {"name": "b", "kind": "buy_and_hold"}]}
    models = registered_models(parse_config(raw), bars.symbols)
    assert list(models) == ["a"] and models["a"].fitted
    raw["models"][0]["artifact"] = "champ@2"
    with pytest.raises(ConfigError, match=r"models\[0\]\.artifact \(a\): 'champ' has no version 2"):
        registered_models(parse_config(raw), bars.symbols)
    raw["models"][0].update(artifact="champ", kind="stacking")
    with pytest.raises(ConfigError, match=r"is a 'lightgbm' model but models\[0\]\.kind is 'stacking'"):
        registered_models(parse_config(raw), bars.symbols)
    monkeypatch.setenv("TITAN_RAY_REGISTRY", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env" and default_root("x") == type(tmp_path)("x")
