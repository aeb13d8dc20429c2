"""run.json's phases: where a run's wall time went, in five parts that add up to the wall."""

from __future__ import annotations

import json

import pytest

from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import parse_config

pytestmark = pytest.mark.ray

PHASES = ["startup", "data", "replay", "results", "shutdown"]


def test_run_json_splits_the_wall_into_phases(ray_session, tmp_path):
    config = parse_config({
        "seed": 1,
        "data": {"provider": "synthetic", "n_symbols": 3, "bars": 300, "frequency": "15min"},
        "models": [{"name": "sma", "kind": "sma_crossover", "params": {"fast": 3, "slow": 8}}],
    })
    run = run_arena(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved == run.run_info
    phases = saved["phases"]
    assert list(phases) == PHASES
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) <= saved["wall_seconds"] + 1e-9
    assert sum(phases.values()) == pytest.approx(saved["wall_seconds"], rel=1e-9)
    assert phases["replay"] >= saved["replay_seconds"]  # the pipeline's own span lies within it
    assert (tmp_path / "run" / "equity.png").exists()  # written before the phases were closed


def test_a_run_without_a_folder_has_phases_too(ray_session):
    config = parse_config({
        "seed": 2,
        "data": {"provider": "synthetic", "n_symbols": 2, "bars": 200, "frequency": "15min"},
        "models": [{"name": "hold", "kind": "buy_and_hold"}],
    })
    info = run_arena(config).run_info
    assert list(info["phases"]) == PHASES
    assert sum(info["phases"].values()) == pytest.approx(info["wall_seconds"], rel=1e-9)


def test_the_cli_says_where_the_time_went(ray_session, tmp_path, capsys):
    config = tmp_path / "arena.yaml"
    config.write_text("seed: 3\ndata: {provider: synthetic, n_symbols: 2, bars: 200}\n"
                      "models:\n  - {name: hold, kind: buy_and_hold}\n")
    assert main(["arena", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Where the ") and all(
        f"{label} " in last for label in ("start-up", "data", "replay", "results", "shutdown"))
