"""The packaged arena configs validate, and the default one carries every learned model."""

from __future__ import annotations

from pathlib import Path

import pytest

import titan_ray
from titan_ray.config import load_config
from titan_ray.models.kinds import MODEL_KINDS

CONFIGS = Path(titan_ray.__file__).parent / "configs"
LEARNED = {"lightgbm", "lstm_attention", "tft", "stacking"}


@pytest.mark.parametrize("name", ["default", "full", "baselines"])
def test_packaged_configs_validate(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    kinds = {m.kind for m in cfg.models}
    assert {"sma_crossover", "rsi_reversion", "buy_and_hold", "random"} <= kinds
    if name == "baselines":
        assert kinds.isdisjoint(LEARNED) and cfg.replay.warmup_bars == 0
    else:
        assert LEARNED <= kinds
        for m in cfg.models:
            need = getattr(MODEL_KINDS[m.kind], "min_history", None)
            if need is not None:
                assert cfg.replay.warmup_bars >= need(m.params), m.name


def test_full_config_refits_on_a_rolling_window():
    cfg = load_config(CONFIGS / "full.yaml")
    learned = [m for m in cfg.models if m.kind in LEARNED]
    assert all(m.params["refit_every"] and m.params["train_window"] for m in learned)
    assert cfg.data.bars > load_config().data.bars


def test_the_risk_config_turns_every_risk_and_execution_feature_on():
    cfg = load_config(CONFIGS / "risk.yaml")
    led, risk = cfg.ledger, cfg.risk
    assert (led.sizing.mode, led.slippage.model, led.execution.algo) == ("vol_target", "almgren_chriss", "twap")
    assert led.stops.active and led.stops.uses_atr and risk.max_var_pct and risk.max_group_pct
    assert set(risk.groups) == set(cfg.data.symbols or [f"{c * 3}" for c in "ABCDEFGHIJKL"])
    fund = next(m for m in cfg.models if m.kind == "allocator")
    assert set(fund.params["inputs"]) == {m.name for m in cfg.models} - {fund.name}
