"""serve_configs/*.yaml: valid for Ray's own Serve schema and for the app's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from titan_ray.config import ConfigError
from titan_ray.serve.settings import parse_settings

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "serve_configs").glob("*.yaml"))


def test_both_configs_ship():
    assert {p.name for p in CONFIGS} >= {"arena.yaml", "production.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_for_ray_serve_and_the_app(path):
    raw = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "titan_ray.serve.app:build_app"
    assert app.runtime_env in (None, {}) or "working_dir" not in app.runtime_env, "self-contained: no working_dir"
    settings = parse_settings(app.args)
    names = {d.name for d in app.deployments}
    expected = {"Ingress"} | {m.deployment for m in settings.models} | {e.deployment for e in settings.experiments}
    assert names == expected, "every deployment of the app is configured, and nothing else"
    for e in settings.experiments:
        (router,) = [d for d in app.deployments if d.name == e.deployment]
        assert set(router.user_config["weights"]) == {a.name for a in e.arms if not a.shadow}
        assert router.num_replicas == 1, "a router keeps its experiment's counts: one replica"
        assert len([a for a in e.arms if not a.shadow]) == 2
    for d in app.deployments:
        assert d.ray_actor_options.num_cpus <= 1


def test_arena_config_runs_out_of_the_box():
    raw = yaml.safe_load((CONFIGS[0].parent / "arena.yaml").read_text())
    settings = parse_settings(raw["applications"][0]["args"])
    assert settings.arena.start and settings.arena.config["replay"]["pace"]["speed"] > 0
    registered = [m for m in settings.models if m.artifact]
    assert registered and all(m.train is not None for m in registered), "a fresh clone trains what it serves"
    arena_models = {m["name"] for m in settings.arena.config["models"]}
    for e in settings.experiments:
        assert {a.model for a in e.arms} <= arena_models, "every arm also trades in the arena (its comparison)"


@pytest.mark.parametrize(("args", "text"), [
    ({"models": [{"name": "m", "kind": "sma_crosover"}]}, "unknown model kind 'sma_crosover'"),
    ({"models": [{"name": "m", "kind": "sma_crossover", "artifact": "x"}]}, "exactly one of `kind`"),
    ({"models": [{"name": "m", "kind": "sma_crossover"}], "experiments": [
        {"name": "e", "arms": [{"name": "a", "model": "m", "weight": 1}, {"name": "b", "model": "zz", "weight": 1}]}]},
     "serves model 'zz', which is not in `models`"),
    ({"modles": []}, "did you mean 'models'"),
    ({"arena": {"config": {"models": []}}}, "arena.config"),
    ({"auth": {"token_env": "has space"}}, "auth.token_env"),
])
def test_bad_args_name_the_field(args, text):
    with pytest.raises(ConfigError) as err:
        parse_settings(args)
    assert text in str(err.value)
