"""Where an arena's llm models keep their response cache, and how cache-only mode reaches their actors:
decided on the driver, before any actor starts (no Ray here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from titan_ray.arena.runner import _llm_settings
from titan_ray.arena.terminal import llm_table
from titan_ray.cli import main
from titan_ray.config import ConfigError, parse_config
from titan_ray.models.llm_client import CACHE_ONLY_ENV


def _config(**params):
    return parse_config({"models": [{"name": "hold", "kind": "buy_and_hold"},
                                    {"name": "gpt", "kind": "llm", "params": {"model": "m", **params}}]})


def test_the_cache_defaults_to_the_results_folder_and_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ONLY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    gpt = _llm_settings(_config(), tmp_path / "run").models[1]
    assert gpt.params["cache_dir"] == str((tmp_path / "run" / "llm_cache").resolve())
    assert "cache_only" not in gpt.params
    assert _llm_settings(_config(), None).models[1].params["cache_dir"] == str((tmp_path / "llm_cache").resolve())
    assert _llm_settings(_config(cache_dir="shared/c"), tmp_path / "run").models[1].params["cache_dir"] == \
        str((tmp_path / "shared" / "c").resolve())
    hold = _config()
    assert _llm_settings(hold, None).models[0] == hold.models[0]


def test_cache_only_mode_is_written_into_the_params(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ONLY_ENV, "1")
    assert _llm_settings(_config(), tmp_path).models[1].params["cache_only"] is True


def test_the_cli_flag_sets_the_environment_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ONLY_ENV, "0")  # recorded, so that the teardown removes what the command sets
    # a missing config stops the command before Ray starts, after the flag has set the variable
    assert main(["arena", "--llm-cache-only", "--config", str(tmp_path / "missing.yaml"), "--quiet"]) == 2
    assert os.environ[CACHE_ONLY_ENV] == "1"
    assert "missing.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_cache_only_is_off_unless_asked(tmp_path, monkeypatch, value):
    monkeypatch.setenv(CACHE_ONLY_ENV, value)
    assert "cache_only" not in _llm_settings(_config(), Path(tmp_path)).models[1].params


def test_the_terminal_lists_llm_models_apart():
    rows = [{"model": "hold", "sharpe": 1.0},
            {"model": "gpt", "llm_calls": 12, "llm_failures": 1, "llm_tokens": 34567, "llm_latency_s": 0.25,
             "llm_cost": 0.0123, "contaminated_bars": 3, "sample_too_small": True}]
    lines = llm_table(rows)
    assert "contaminated bars" in lines[2] and lines[-1].split()[:4] == ["gpt", "12", "1", "34,567"]
    assert llm_table(rows[:1]) == []


def test_a_request_deadline_past_the_chunk_deadline_is_refused_before_the_run():
    config = parse_config({"replay": {"decision_timeout_s": 20},
                           "models": [{"name": "gpt", "kind": "llm", "params": {"model": "m"}}]})  # timeout_s 30
    with pytest.raises(ConfigError, match=r"timeout_s \(30\) must be well under replay.decision_timeout_s \(20\)"):
        _llm_settings(config, None)
