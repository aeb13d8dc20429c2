"""Config errors name the field and the fix; the packaged default is valid."""

from __future__ import annotations

from decimal import Decimal

import pytest

from titan_ray.config import (
    AUTO_CHUNK_CELLS,
    AUTO_CHUNK_MIN,
    ConfigError,
    ReplayConfig,
    auto_chunk_size,
    default_config_path,
    load_config,
    parse_config,
)

MODELS = [{"name": "sma", "kind": "sma_crossover"}]


def _error(raw) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    return str(err.value)


def test_the_packaged_default_is_valid():
    cfg = load_config()
    assert cfg.data.provider == "synthetic" and cfg.data.n_symbols >= 10
    assert {m.kind for m in cfg.models} >= {"sma_crossover", "rsi_reversion", "buy_and_hold", "random"}
    assert cfg.benchmark_model == "hold"


def test_a_misspelt_key_names_the_field_and_the_key_meant():
    msg = _error({"ledger": {"comission_bps": 5}, "models": MODELS})
    assert "ledger.comission_bps: unknown key" in msg and "did you mean 'commission_bps'" in msg


def test_a_nested_union_key_is_named_without_pydantic_internals():
    msg = _error({"ledger": {"slippage": {"model": "fixed_bps", "bp": 3}}, "models": MODELS})
    assert "ledger.slippage.bp: unknown key" in msg and "'bps'" in msg


def test_unknown_kind_and_bad_params():
    msg = _error({"models": [{"name": "a", "kind": "sma_crosover"}, {"name": "b", "kind": "sma_crossover",
                                                                     "params": {"fast": 50}}]})
    assert "models[0]: unknown model kind 'sma_crosover'; did you mean 'sma_crossover'?" in msg
    assert "models[1]: sma_crossover params: fast (50) must be shorter than slow (30)" in msg


def test_models_are_required_and_names_unique():
    assert "models: required" in _error({})
    assert "repeated: ['a']" in _error({"models": [{"name": "a", "kind": "random"}, {"name": "a", "kind": "random"}]})


def test_values_out_of_range_name_the_field():
    msg = _error({"replay": {"chunk_size": 0}, "risk": {"max_drawdown_pct": 2}, "models": MODELS})
    assert "replay.chunk_size" in msg and "risk.max_drawdown_pct" in msg


def test_csv_needs_a_path_and_frequency_must_parse():
    assert "needs `data.path`" in _error({"data": {"provider": "csv"}, "models": MODELS})
    assert "data.frequency" in _error({"data": {"frequency": "fortnightly-ish"}, "models": MODELS})


def test_money_is_decimal_without_float_noise():
    cfg = parse_config({"ledger": {"initial_cash": 100000.1, "commission_bps": 0.1}, "models": MODELS})
    assert cfg.ledger.initial_cash == Decimal("100000.1") and cfg.ledger.commission_bps == Decimal("0.1")


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    assert default_config_path().exists()


def test_auto_chunk_size_spreads_the_traded_bars_over_about_sixteen_chunks():
    assert ReplayConfig().chunk_size == "auto"
    assert auto_chunk_size(4_000, 12) == AUTO_CHUNK_MIN  # the default arena: 256, as before
    assert auto_chunk_size(20_000, 10) == 1_250 and auto_chunk_size(60_000, 20) == 3_750
    assert auto_chunk_size(10**7, 1_000) == AUTO_CHUNK_CELLS // 1_000  # wide universes: bounded cells
    assert auto_chunk_size(0, 5) == AUTO_CHUNK_MIN
    assert ReplayConfig(chunk_size=7).chunk(10**6, 3) == 7
    with pytest.raises(ValueError, match="chunk_size"):
        ReplayConfig(chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        ReplayConfig(chunk_size="big")
