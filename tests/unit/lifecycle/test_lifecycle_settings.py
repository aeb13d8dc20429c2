"""The lifecycle settings and the model app's side of them: defaults as documented, errors that say
what to fix, and what the model app fills in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from titan_ray.config import ConfigError, LedgerConfig, RiskConfig
from titan_ray.lifecycle.settings import LifecycleSettings, controller_name, parse_lifecycle
from titan_ray.serve.settings import ModelAppSettings, parse_model_app

DOC = Path(__file__).resolve().parents[3] / "docs" / "lifecycle.md"
FEED = {"provider": "synthetic", "n_symbols": 2, "bars": 500}
# Filled in by the model app (model, served, registry): no row to compare.
UNDOCUMENTED = {"model", "served", "registry"}


def _default_rows() -> dict[str, str]:
    """The ``setting | default`` rows of the lifecycle table in docs/lifecycle.md: {setting: default text}."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*setting\s*\|\s*default\s*\|", line))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        setting, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        rows[setting] = default
    return rows


def _value(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _names(setting: str) -> list[str]:
    return re.findall(r"`([^`]+)`", setting)


def test_the_doc_table_has_the_code_defaults():
    rows = _default_rows()
    assert len(rows) > 25, "the table was not found or was cut short"
    defaults = LifecycleSettings(feed=FEED)
    compared = 0
    for setting, text in rows.items():
        names = _names(setting)
        assert names, f"row {setting!r}: write the setting in backticks"
        if text == "(required)":
            for name in names:
                assert LifecycleSettings.model_fields[name].is_required(), name
            continue
        if text == "the arena's defaults":
            assert names == ["ledger", "risk"]
            assert defaults.ledger == LedgerConfig() and defaults.risk == RiskConfig()
            continue
        (name,) = names
        documented = yaml.safe_load(text)
        assert _value(defaults, name) == documented, f"docs/lifecycle.md says {name} defaults to {text}"
        compared += 1
    assert compared == len(rows) - 2


def test_every_setting_has_a_row_in_the_doc_table():
    documented = {name.split(".")[0] for setting in _default_rows() for name in _names(setting)}
    assert set(LifecycleSettings.model_fields) - UNDOCUMENTED == documented
    nested = {name for setting in _default_rows() for name in _names(setting) if "." in name}
    for section in ("drift", "alerts", "retrain", "promotion"):
        fields = type(getattr(LifecycleSettings(feed=FEED), section)).model_fields
        assert {f"{section}.{f}" for f in fields} <= nested, section


def test_the_doc_states_the_model_app_defaults():
    text = DOC.read_text()
    follow = re.search(r"every `follow_s` seconds \(default ([0-9.]+)\)", text)
    shadow = re.search(r"the `shadow` alias \(default `(\w+)`\)", text)
    assert follow and shadow
    fields = ModelAppSettings.model_fields
    assert fields["follow_s"].default == float(follow.group(1))
    assert fields["shadow"].default == shadow.group(1)
    assert fields["lifecycle"].default is None
    assert f"`{controller_name('NAME')}`" in text


def test_controller_name():
    assert controller_name("lgbm") == "titan-ray-lifecycle-lgbm"


@pytest.mark.parametrize(("raw", "names"), [
    ({"drift": {"psi_treshold": 0.3}}, ["drift.psi_treshold: unknown key", "did you mean 'psi_threshold'"]),
    ({"retrain": {"validation_bars": 800}},
     ["retrain: validation_bars (800) must be at most half of window_bars (1500)"]),
    ({"retrain": {"window_bars": 400, "validation_bars": 201}},
     ["validation_bars (201) must be at most half of window_bars (400)"]),
    ({"alerts": {"webhook_url": "hooks.example.com/x"}}, ["alerts.webhook_url:", "is not an http(s) URL"]),
    ({"alerts": {"webhook_url": "ftp://hooks.example.com/x"}}, ["alerts.webhook_url:", "is not an http(s) URL"]),
    ({"tracking": {"mlflow": "http://mlflow:5000"}}, ["tracking: unknown keys ['mlflow']", "mlflow_uri"]),
    ({"feed": {"provider": "parquet"}}, ["feed", "provider 'parquet' needs", "path"]),
    ({"feed": {"provider": "synthetic", "barz": 10}}, ["feed", "barz: unknown key", "did you mean 'bars'"]),
    ({"promotion": {"mode": "manual"}}, ["promotion.mode:", "'auto' or 'approval'"]),
    ({"feed": None}, ["feed"]),
])
def test_errors_name_the_field_and_the_fix(raw, names):
    with pytest.raises(ConfigError) as err:
        parse_lifecycle({"feed": FEED, **raw})
    message = str(err.value)
    assert message.startswith("invalid lifecycle settings:")
    for part in names:
        assert part in message


def test_the_feed_is_required():
    with pytest.raises(ConfigError, match="feed: required, but missing"):
        parse_lifecycle({})


def test_good_settings_parse():
    s = parse_lifecycle({"feed": FEED, "retrain": {"window_bars": 600, "validation_bars": 300},
                         "alerts": {"webhook_url": "https://hooks.example.com/titan-ray"},
                         "tracking": {"mlflow_uri": "http://mlflow:5000"}, "promotion": {"mode": "approval"}})
    assert s.retrain.validation_bars * 2 == s.retrain.window_bars
    assert s.promotion.mode == "approval" and s.tracking == {"mlflow_uri": "http://mlflow:5000"}
    assert s.data().provider == "synthetic" and s.data().bars == 500


def test_a_model_app_checks_its_lifecycle_section():
    with pytest.raises(ConfigError) as err:
        parse_model_app({"name": "lgbm", "artifact": "lgbm@champion",
                         "lifecycle": {"feed": FEED, "drift": {"psi_treshold": 0.3}}})
    message = str(err.value)
    assert message.startswith("invalid args of a model app (build_model_app):")
    assert "lifecycle:" in message and "drift.psi_treshold: unknown key" in message


@pytest.mark.parametrize("shadow", ["staging", "champion@2", ""])
def test_the_shadow_must_be_an_alias(shadow):
    with pytest.raises(ConfigError, match=r"shadow: .* is not an alias; the aliases are \['champion', 'challenger'\]"):
        parse_model_app({"name": "lgbm", "artifact": "lgbm@champion", "shadow": shadow})


def test_shadow_may_be_off_and_follow_s_must_be_positive():
    assert parse_model_app({"name": "lgbm", "artifact": "lgbm@champion", "shadow": None}).shadow is None
    with pytest.raises(ConfigError, match="follow_s: Input should be greater than 0"):
        parse_model_app({"name": "lgbm", "artifact": "lgbm@champion", "follow_s": 0})


@pytest.mark.parametrize(("raw", "alias"), [
    ({"artifact": "lgbm@champion"}, "champion"),
    ({"artifact": "lgbm@challenger"}, "challenger"),
    ({"artifact": "lgbm@3"}, None),
    ({"artifact": "lgbm"}, None),
    ({"kind": "sma_crossover"}, None),
])
def test_alias(raw, alias):
    assert parse_model_app({"name": "m", **raw}).alias() == alias


def test_lifecycle_settings_fill_in_the_model_the_served_name_and_the_registry():
    app = parse_model_app({"name": "lgbm-live", "artifact": "lgbm@champion", "registry": "/models",
                           "lifecycle": {"feed": FEED, "served": "someone-else", "start_bar": 100}})
    s = app.lifecycle_settings()
    assert isinstance(s, LifecycleSettings)
    assert (s.model, s.served, s.registry) == ("lgbm", "lgbm-live", "/models")
    assert s.start_bar == 100
    assert app.lifecycle == {"feed": FEED, "served": "someone-else", "start_bar": 100}  # the args are left as given


def test_the_lifecycle_section_may_name_its_own_model_and_registry():
    app = parse_model_app({"name": "lgbm", "artifact": "lgbm@champion", "registry": "/models",
                           "lifecycle": {"feed": FEED, "model": "lgbm-v2", "registry": "/other"}})
    s = app.lifecycle_settings()
    assert (s.model, s.served, s.registry) == ("lgbm-v2", "lgbm", "/other")


def test_lifecycle_settings_of_a_rule_model_and_without_a_section():
    rule = parse_model_app({"name": "sma", "kind": "sma_crossover", "lifecycle": {"feed": FEED}})
    s = rule.lifecycle_settings()
    assert (s.model, s.served, s.registry) == ("sma", "sma", None)
    assert parse_model_app({"name": "lgbm", "artifact": "lgbm@champion"}).lifecycle_settings() is None
