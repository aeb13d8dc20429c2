"""serve_configs/*.yaml: valid for Ray's own Serve schema and for the app's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from titan_ray.config import ConfigError
from titan_ray.serve.settings import check_deploy_config, parse_model_app, parse_settings

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "serve_configs").glob("*.yaml"))


def test_both_configs_ship():
    assert {p.name for p in CONFIGS} >= {"arena.yaml", "production.yaml"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_for_ray_serve_and_the_app(path):
    raw = _load(path)
    schema = ServeDeploySchema.model_validate(raw)
    checked = check_deploy_config(raw, source=path.name)
    main, models, experiments = checked["main"], checked["models"], checked["experiments"]
    assert main is not None and main.models == list(models) and main.experiments == list(experiments)
    apps = {a.name: a for a in schema.applications}
    assert set(apps) == {"titan-ray"} | {f"model-{m}" for m in models} | {f"experiment-{e}" for e in experiments}
    for app in schema.applications:
        assert app.import_path.startswith("titan_ray.serve.app:build_")
        assert app.runtime_env in (None, {}) or "working_dir" not in app.runtime_env, "self-contained: no working_dir"
        (deployment,) = app.deployments
        assert deployment.name == ("Ingress" if app.name == "titan-ray" else app.name), "one deployment, configured"
        assert deployment.ray_actor_options.num_cpus <= 1
    for name, e in experiments.items():
        (router,) = apps[f"experiment-{name}"].deployments
        assert set(router.user_config["weights"]) == {a.name for a in e.arms if not a.shadow}
        assert router.num_replicas == 1, "a router keeps its experiment's counts: one replica"
        assert len([a for a in e.arms if not a.shadow]) == 2


def test_arena_config_runs_out_of_the_box():
    checked = check_deploy_config(_load(CONFIGS[0].parent / "arena.yaml"))
    settings = checked["main"]
    assert settings.arena.start and settings.arena.config["replay"]["pace"]["speed"] > 0
    registered = [m for m in checked["models"].values() if m.artifact]
    assert registered and all(m.train is not None for m in registered), "a fresh clone trains what it serves"
    arena_models = {m["name"] for m in settings.arena.config["models"]}
    for e in checked["experiments"].values():
        assert {a.model for a in e.arms} <= arena_models, "every arm also trades in the arena (its comparison)"


@pytest.mark.parametrize(("args", "text"), [
    ({"modles": []}, "did you mean 'models'"),
    ({"models": ["a b"]}, "is not a name"),
    ({"models": ["m", "m"]}, "names must be unique"),
    ({"arena": {"config": {"models": []}}}, "arena.config"),
    ({"auth": {"token_env": "has space"}}, "auth.token_env"),
])
def test_bad_main_args_name_the_field(args, text):
    with pytest.raises(ConfigError) as err:
        parse_settings(args)
    assert text in str(err.value)


@pytest.mark.parametrize(("args", "text"), [
    ({"name": "m", "kind": "sma_crosover"}, "unknown model kind 'sma_crosover'"),
    ({"name": "m", "kind": "sma_crossover", "artifact": "x"}, "exactly one of `kind`"),
    ({"name": "m", "artifact": "x@0"}, "write NAME, NAME@VERSION or NAME@ALIAS"),
    ({"name": "m", "kind": "sma_crossover", "registyr": "/x"}, "registyr"),
])
def test_bad_model_args_name_the_field(args, text):
    with pytest.raises(ConfigError) as err:
        parse_model_app(args)
    assert text in str(err.value) and "model app" in str(err.value)


def _edited(edit) -> dict:
    raw = _load(CONFIGS[0].parent / "arena.yaml")
    edit({a["name"]: a for a in raw["applications"]}, raw)
    return raw


@pytest.mark.parametrize(("edit", "text"), [
    (lambda apps, raw: apps["model-sma"].update(route_prefix="/v1/predict/other"),
     "route_prefix: the model 'sma' is served at '/v1/predict/sma'"),
    (lambda apps, raw: apps["model-sma"].update(name="sma"), "must be deployed as the application 'model-sma'"),
    (lambda apps, raw: raw["applications"].remove(apps["model-hold"]),
     "lists ['hold'], which have no application"),
    (lambda apps, raw: apps["titan-ray"]["args"].update(models=["lgbm", "sma", "rsi"]),
     "models ['hold'] have an application but are not in the main app's args.models"),
    (lambda apps, raw: apps["experiment-lgbm-vs-sma"]["args"]["arms"][1].update(model="ghost"),
     "arm 'treatment' serves model 'ghost', which has no model application"),
    (lambda apps, raw: apps["experiment-lgbm-vs-sma"].update(route_prefix="/v1/experiments/x/predict"),
     "route_prefix: /v1/experiments/lgbm-vs-sma/predict"),
    (lambda apps, raw: raw["applications"].append(dict(apps["titan-ray"], name="again")), "a second main app"),
    (lambda apps, raw: apps["model-sma"]["deployments"][0].update(name="sma"),
     "deployments[0].name: the model app's one deployment is 'model-sma', not 'sma'"),
    (lambda apps, raw: apps["experiment-lgbm-vs-sma"]["deployments"][0]["user_config"]["weights"].update(shadow=1),
     "user_config.weights: weights name unknown arms ['shadow']"),
])
def test_apps_that_do_not_fit_together_are_named(edit, text):
    with pytest.raises(ConfigError) as err:
        check_deploy_config(_edited(edit), source="arena.yaml")
    assert text in str(err.value), str(err.value)


def test_a_private_serve_takes_no_fixed_port_another_serve_could_hold(tmp_path):
    """Every port Ray Serve would take at a fixed default gets a free one in `titan-ray serve`'s private
    Ray: with the fallback proxy's 8500 shared, one Serve's HAProxy once answered with another's app.
    Direct-ingress replica ports are left alone: a replica that finds one taken asks for the next."""
    import inspect
    import re

    from ray.serve._private import constants

    from titan_ray.serve.settings import private_serve_env

    source = inspect.getsource(constants)
    fixed = set(re.findall(r'["\'](RAY_SERVE_\w*_PORT)["\'],\s*["\']?\d+', source))
    fixed = {name for name in fixed if "DIRECT_INGRESS" not in name}
    assert "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT" in fixed  # the scan still reads Ray's source
    env = private_serve_env(tmp_path)
    assert fixed <= env.keys(), sorted(fixed - env.keys())
    ports = [int(env[name]) for name in fixed]
    assert len(set(ports)) == len(ports) and not {8404, 9101, 8500, 9500} & set(ports)
    # and no file where another Serve keeps its own: every HAProxy path Ray reads is under tmp_path
    paths = set(re.findall(r'["\'](RAY_SERVE_HAPROXY_\w*(?:PATH|LOC|BASE|FILE))["\']', source))
    paths.discard("RAY_SERVE_HAPROXY_BINARY_PATH")  # the program, read only
    assert "RAY_SERVE_HAPROXY_SOCKET_PATH" in paths
    assert all(env.get(name, "").startswith(str(tmp_path)) for name in paths), sorted(paths - env.keys())


def test_a_private_serve_leaves_no_haproxy_files(tmp_path):
    import os

    from titan_ray.serve.settings import private_serve_environ

    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("RAY_SERVE_")]:  # e.g. the test session's Ray's
            del os.environ[key]
        os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = "1234"  # set by the user: kept
        with private_serve_environ() as env:
            files = Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
            (files / "node" / "haproxy.cfg").parent.mkdir()
            (files / "node" / "haproxy.cfg").write_text("global\n")
            assert os.environ["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(files / "admin.sock")
            assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "1234"
            assert len(str(files / ("n" * 56) / "metrics.sock")) < 108  # a Unix socket path's limit
        assert not files.exists()
    finally:
        os.environ.clear()
        os.environ.update(saved)
