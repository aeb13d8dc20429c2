"""The Helm chart: strict lint, renders with default and non-default values, every object valid.

Helm runs in-process (PyPI helm-python-sdk bundles Helm's Go SDK); no helm binary, no cluster.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from k8s_schema import validate_any
from ray.serve.schema import ServeDeploySchema

from titan_ray.serve.settings import check_deploy_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "titan-ray"
SERVE_CONFIG = ROOT / "serve_configs" / "production.yaml"
RELEASE, NAMESPACE = "prod", "trading"
MAIN = "titan_ray.serve.app:build_app"
EXPERIMENT = "titan_ray.serve.app:build_experiment_app"
THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}

# Everything switched on or changed from its default.
FULL: dict[str, Any] = {
    "image": {"repository": "registry.example.org/quant/titan-ray", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccountName": "titan-ray",
    "podLabels": {"team": "quant"},
    "podAnnotations": {"example.org/owner": "quant"},
    "head": {"resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}},
             "rayStartParams": {"num-cpus": "0"}, "nodeSelector": {"pool": "head"}},
    "workerGroups": [
        {"name": "cpu", "replicas": 2, "minReplicas": 2, "maxReplicas": 10,
         "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}}},
        {"name": "gpu", "replicas": 0, "minReplicas": 0, "maxReplicas": 2,
         "resources": {"requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 1},
                       "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 1}},
         "rayStartParams": {"num-gpus": "1"},
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    ],
    "autoscaling": {"enabled": True, "upscalingMode": "Aggressive", "idleTimeoutSeconds": 300},
    "serve": {"args": {"arena": {"refresh_s": 2.0}}},
    "auth": {"ray": {"enabled": True, "existingSecret": "titan-ray-ray-token"},
             "api": {"existingSecret": "titan-ray-api", "key": "token", "env": "TITAN_RAY_API_TOKEN"},
             "jwt": {"existingSecret": "titan-ray-api", "key": "jwt-secret", "env": "TITAN_RAY_JWT_SECRET"}},
    "redis": {"existingSecret": "titan-ray-redis", "key": "url"},
    "sharedStorage": {"existingClaim": "titan-ray-shared"},
    "env": {"TITAN_RAY_LOG_LEVEL": "INFO"},
    "secretEnv": {"APCA_API_KEY_ID": {"secret": "alpaca", "key": "key-id"}},
    "ingress": {"enabled": True, "className": "nginx", "host": "titan-ray.example.org",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                "tls": [{"secretName": "titan-ray-tls", "hosts": ["titan-ray.example.org"]}]},
    "metrics": {"serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prometheus"}}},
    "grafanaDashboard": {"enabled": True},
}


def _serve_file() -> dict[str, Any]:
    if not SERVE_CONFIG.exists():
        pytest.fail(f"{SERVE_CONFIG} is missing: the chart's files/serve-config.yaml links to it")
    return yaml.safe_load(SERVE_CONFIG.read_text())


def _main_app(config: dict[str, Any]) -> dict[str, Any]:
    """The main application (build_app) of a Serve config: the one serve.args and Redis go to."""
    (app,) = [a for a in config["applications"] if a.get("import_path") == MAIN]
    return app


def _experiment_apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{experiment name: its application (build_experiment_app)} of a Serve config."""
    return {a["args"]["name"]: a for a in config["applications"] if a.get("import_path") == EXPERIMENT}


def _router(config: dict[str, Any], experiment: str) -> dict[str, Any]:
    """The router deployment experiment-NAME of the application experiment-NAME."""
    (app,) = [a for a in config["applications"] if a["name"] == f"experiment-{experiment}"]
    (deployment,) = [d for d in app["deployments"] if d["name"] == f"experiment-{experiment}"]
    return deployment


def _experiments() -> dict[str, list[str]]:
    """{experiment: [live arm names]} of the Serve config's experiment applications."""
    return {name: [a["name"] for a in app["args"]["arms"] if not a.get("shadow")]
            for name, app in _experiment_apps(_serve_file()).items()}


def _full_values() -> dict[str, Any]:
    values = copy.deepcopy(FULL)
    experiments = _experiments()
    assert experiments, "serve_configs/production.yaml runs no experiment; the chart's A/B weights need one"
    name, arms = next(iter(experiments.items()))
    values["serve"]["weights"] = {name: {arms[0]: 0.25, arms[1]: 0.75}}
    return values


def render(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """{'Kind/name': object} of every manifest the chart renders; NOTES.txt under 'NOTES'."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: dict[str, Any] = {}
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            objects["NOTES"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def _rayservice(objects: dict[str, Any]) -> dict[str, Any]:
    (service,) = [o for key, o in objects.items() if key.startswith("RayService/")]
    return service


def _containers(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def _serve_config(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return yaml.safe_load(_rayservice(render(values))["spec"]["serveConfigV2"])


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_chart_lints_strictly(values):
    report = helm.lint(CHART, _full_values() if values else None, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert report["total_charts_linted"] == 1 and not problems, problems


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_every_rendered_object_is_valid(values):
    objects = render(_full_values() if values else None)
    kinds = sorted(key.split("/")[0] for key in objects if key != "NOTES")
    expected = ["ConfigMap", "RayService"] + (["Ingress", "Service", "ServiceMonitor"] if values else [])
    assert kinds == sorted(expected)
    for key, obj in objects.items():
        if key != "NOTES":
            assert validate_any(obj) == [], key
    assert "Secret" not in kinds  # secrets are referenced, never rendered


def _charted_auth(written: dict[str, Any], token_env: str = "TITAN_RAY_API_TOKEN", redis: bool = False
                  ) -> dict[str, Any]:
    """The ``auth`` section the chart gives every app: the file's, with the secrets' variables of the
    values, and the Redis of the release (none: no shared limits)."""
    out = {**written, "token_env": token_env, "jwt_secret_env": "TITAN_RAY_JWT_SECRET"}
    if redis:
        out["redis_url"] = "env:TITAN_RAY_REDIS_URL"
    else:
        out.pop("redis_url", None)
    return out


def test_default_serve_config_is_serve_configs_production_yaml():
    """One source of truth: the chart embeds serve_configs/production.yaml, adjusted only by values,
    and only in the main app: the model and experiment apps are embedded as written."""
    embedded = yaml.safe_load(_rayservice(render())["spec"]["serveConfigV2"])
    expected = _serve_file()
    assert len(expected["applications"]) > 1, "production.yaml should hold one app per part"
    main = _main_app(expected)
    auth = _charted_auth(main["args"]["auth"])
    for app in expected["applications"]:  # every app checks the same credentials: the main app's auth
        app["args"]["auth"] = auth
    arena = (main["args"].get("arena") or {}).get("config")
    assert arena is not None, "the main app's args.arena.config is where the chart puts Redis"
    arena.get("ledger", {}).pop("journal", None)  # no Redis in the default values: the default journal
    arena.pop("redis", None)  # and no fan-out
    expected.setdefault("http_options", {}).update(host="0.0.0.0", port=8000)  # KubeRay's serve-svc port
    assert embedded == expected


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_embedded_serve_config_passes_rays_schema_and_the_apps_settings(values):
    embedded = yaml.safe_load(_rayservice(render(_full_values() if values else None))["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    for app in embedded["applications"]:
        assert "working_dir" not in (app.get("runtime_env") or {})  # the image holds the package
    # every app's own strict settings (arena config included), and that names, routes and arms agree
    apps = check_deploy_config(embedded, source="the chart's serveConfigV2")
    assert apps["main"] is not None
    assert sorted(apps["models"]) == sorted(apps["main"].models)
    assert sorted(apps["experiments"]) == sorted(_experiments())
    for name, spec in apps["experiments"].items():  # the router's live weights cover the live arms
        assert set(_router(embedded, name)["user_config"]["weights"]) == set(spec.weights())
    # with Redis in the release, every app shares its rate limits (and the audit trail) there
    shared = "env:TITAN_RAY_REDIS_URL" if values else None
    assert {app.get("args", {}).get("auth", {}).get("redis_url") for app in embedded["applications"]} == {shared}


def test_non_default_values_reach_the_rayservice():
    values = _full_values()
    service = _rayservice(render(values))
    cluster = service["spec"]["rayClusterConfig"]
    assert service["metadata"]["name"] == f"{RELEASE}-titan-ray"
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"] == {"upscalingMode": "Aggressive", "idleTimeoutSeconds": 300}
    assert cluster["authOptions"] == {"mode": "token", "secretName": "titan-ray-ray-token"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "metrics-export-port": "8080", "num-cpus": "0"}
    assert head["template"]["spec"]["nodeSelector"] == {"pool": "head"}
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert [(n, g["replicas"], g["minReplicas"], g["maxReplicas"]) for n, g in groups.items()] == [
        ("cpu", 2, 2, 10), ("gpu", 0, 0, 2)]
    assert groups["gpu"]["rayStartParams"] == {"metrics-export-port": "8080", "num-gpus": "1"}
    assert groups["gpu"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1

    for container in _containers(service):
        assert container["image"] == "registry.example.org/quant/titan-ray:0.1.0-rc1"
        assert container["imagePullPolicy"] == "Always"
        env = {e["name"]: e for e in container["env"]}
        assert env["TITAN_RAY_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "titan-ray-api", "key": "token"}
        assert env["TITAN_RAY_JWT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "titan-ray-api",
                                                                            "key": "jwt-secret"}
        assert env["TITAN_RAY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "titan-ray-redis", "key": "url"}
        assert env["APCA_API_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "alpaca", "key": "key-id"}
        assert env["TITAN_RAY_LOG_LEVEL"]["value"] == "INFO"
        assert env["TITAN_RAY_REGISTRY"]["value"] == "/home/ray/shared/registry"
        assert container["volumeMounts"] == [{"name": "shared", "mountPath": "/home/ray/shared"}]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == 8080 and ports["serve"] == 8000

    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ((experiment, weights),) = values["serve"]["weights"].items()
    router = _router(config, experiment)
    assert router["user_config"]["weights"] == weights  # live: Serve calls reconfigure, no restart
    app = _main_app(config)
    assert app["args"]["arena"]["refresh_s"] == 2.0
    arena_config = app["args"]["arena"]["config"]  # the live arena journals to the Redis every pod reaches
    assert arena_config["ledger"]["journal"] == {"backend": "redis", "url": "env:TITAN_RAY_REDIS_URL"}
    assert arena_config["redis"] == {"url": "env:TITAN_RAY_REDIS_URL"}


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_every_ray_container_runs_serve_throughput_optimized(values):
    """HAProxy mode is read by `ray start`: the head and every worker group need both variables."""
    containers = _containers(_rayservice(render(_full_values() if values else None)))
    assert len(containers) == (3 if values else 2)  # head + one container per worker group
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name, value in THROUGHPUT_ENV.items():
            assert env.get(name) == value, (container["name"], name)
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["serve"] == 8000  # HAProxy


def test_throughput_optimized_off_leaves_both_variables_out():
    values = _full_values()
    values["serve"]["throughputOptimized"] = False
    containers = _containers(_rayservice(render(values)))
    for container in containers:
        names = {e["name"] for e in container["env"]}
        assert not names & set(THROUGHPUT_ENV), container["name"]
        assert "TITAN_RAY_API_TOKEN" in names  # the rest of the environment stays
    assert "HAProxy" not in render(values)["NOTES"] and "HAProxy" in render(_full_values())["NOTES"]


def test_env_values_override_a_throughput_variable_without_duplicating_it():
    containers = _containers(_rayservice(render({"env": {"RAY_SERVE_ENABLE_HA_PROXY": "0"}})))
    for container in containers:
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), container["name"]  # one entry per variable
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
        assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_serve_args_reach_the_main_app_only():
    """serve.args is deep-merged into the main app's args; the model and experiment apps, whose
    strict settings know no such keys, are embedded exactly as production.yaml writes them."""
    written = _serve_file()
    merged = _serve_config({"serve": {"args": {"arena": {"leaderboard_refresh_s": 30.0},
                                               "auth": {"token_env": "IGNORED"}}},
                            "auth": {"api": {"env": "MY_API_TOKEN", "key": "token"}}})
    main, main_written = _main_app(merged), _main_app(written)
    assert main["args"]["arena"]["leaderboard_refresh_s"] == 30.0
    # deep merge: the arena's other keys and the rest of the args are kept
    assert main["args"]["arena"]["actor"] == main_written["args"]["arena"]["actor"]
    assert main["args"]["arena"]["refresh_s"] == main_written["args"]["arena"]["refresh_s"]
    assert main["args"]["arena"]["config"]["models"] == main_written["args"]["arena"]["config"]["models"]
    assert main["args"]["models"] == main_written["args"]["models"]
    assert main["args"]["experiments"] == main_written["args"]["experiments"]
    # auth.api.env wins over serve.args; no Redis in these values: no shared limits
    assert main["args"]["auth"] == _charted_auth(main_written["args"]["auth"], token_env="MY_API_TOKEN")
    others = [a for a in merged["applications"] if a.get("import_path") != MAIN]
    assert others, "production.yaml should hold model and experiment apps beside the main app"
    by_name = {a["name"]: a for a in written["applications"]}
    for app in others:  # as written, but for the main app's auth
        assert app["args"]["auth"] == main["args"]["auth"], app["name"]
        assert {**app, "args": {**app["args"], "auth": None}} == {
            **by_name[app["name"]], "args": {**by_name[app["name"]]["args"], "auth": None}}, app["name"]
    check_deploy_config(merged)


def test_weights_land_in_the_experiment_apps_router_only():
    experiment, arms = next(iter(_experiments().items()))
    written = _serve_file()
    router_written = _router(written, experiment)
    config = _serve_config({"serve": {"weights": {experiment: {arms[0]: 3.0}}}})
    router = _router(config, experiment)
    # the arm set is exactly the live arms; arms left out keep the config's live weight
    expected = {arm: router_written["user_config"]["weights"][arm] for arm in arms} | {arms[0]: 3.0}
    assert router["user_config"]["weights"] == expected
    shadows = [a["name"] for a in _experiment_apps(written)[experiment]["args"]["arms"] if a.get("shadow")]
    assert not set(shadows) & set(router["user_config"]["weights"])
    # the router's other settings, the experiment's args and every other app are untouched
    assert {k: v for k, v in router.items() if k != "user_config"} == {
        k: v for k, v in router_written.items() if k != "user_config"}
    assert ({**_experiment_apps(config)[experiment]["args"], "auth": None}
            == {**_experiment_apps(written)[experiment]["args"], "auth": None})
    assert "user_config" not in str(_main_app(config).get("deployments"))
    untouched = [a["name"] for a in written["applications"] if a["name"] != f"experiment-{experiment}"]
    embedded = {a["name"]: a for a in config["applications"]}
    for name in untouched:
        if name != _main_app(written)["name"]:  # the main app gets auth and Redis settings, every app its auth
            app = next(a for a in written["applications"] if a["name"] == name)
            assert {**embedded[name], "args": {**embedded[name]["args"], "auth": None}} == {
                **app, "args": {**app["args"], "auth": None}}
    check_deploy_config(config)


def _chart_with(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A copy of the chart whose files/serve-config.yaml is ``config`` instead of production.yaml."""
    chart = tmp_path / "titan-ray"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("serve-config.yaml"))
    (chart / "files" / "serve-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return chart


def _render_chart(chart: Path, values: dict[str, Any] | None) -> dict[str, Any]:
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (text,) = [t for path, t in files.items() if path.endswith("rayservice.yaml")]
    return yaml.safe_load(yaml.safe_load(text)["spec"]["serveConfigV2"])


def test_weights_add_the_router_deployment_when_the_config_lists_none(tmp_path):
    config = _serve_file()
    experiment, arms = next(iter(_experiments().items()))
    app = _experiment_apps(config)[experiment]
    app.pop("deployments")
    rendered = _render_chart(_chart_with(tmp_path, config), {"serve": {"weights": {experiment: {arms[1]: 2.0}}}})
    (deployment,) = _experiment_apps(rendered)[experiment]["deployments"]
    live = {a["name"]: a.get("weight", 0) for a in app["args"]["arms"] if not a.get("shadow")}
    assert deployment == {"name": f"experiment-{experiment}", "user_config": {"weights": live | {arms[1]: 2.0}}}
    ServeDeploySchema.model_validate(rendered)


def test_arms_left_out_keep_the_routers_live_weight_not_the_args_weight(tmp_path):
    config = _serve_file()
    experiment, arms = next(iter(_experiments().items()))
    args_weights = {a["name"]: a.get("weight", 0) for a in _experiment_apps(config)[experiment]["args"]["arms"]}
    live = {arm: round(args_weights[arm] + 0.125 * (i + 1), 3) for i, arm in enumerate(arms)}
    assert all(live[arm] != args_weights[arm] for arm in arms)
    _router(config, experiment)["user_config"] = {"weights": live}
    rendered = _render_chart(_chart_with(tmp_path, config), {"serve": {"weights": {experiment: {arms[0]: 7.0}}}})
    assert _router(rendered, experiment)["user_config"]["weights"] == live | {arms[0]: 7.0}


def test_a_config_without_one_main_app_fails_the_render(tmp_path):
    config = _serve_file()
    config["applications"] = [a for a in config["applications"] if a.get("import_path") != MAIN]
    with pytest.raises(helm.HelmRenderError, match=r"one main application .*build_app.* holds 0"):
        _render_chart(_chart_with(tmp_path / "none", config), None)
    config = _serve_file()
    second = copy.deepcopy(_main_app(config)) | {"name": "titan-ray-2", "route_prefix": "/two"}
    config["applications"].append(second)
    with pytest.raises(helm.HelmRenderError, match=r"holds 2: titan-ray, titan-ray-2"):
        _render_chart(_chart_with(tmp_path / "two", config), None)


def test_ingress_and_monitoring_point_at_what_kuberay_and_the_pods_expose():
    objects = render(_full_values())
    name = f"{RELEASE}-titan-ray"
    ingress = objects[f"Ingress/{name}"]
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{name}-serve-svc", "port": {"number": 8000}}  # KubeRay's Serve service
    assert rule["host"] == "titan-ray.example.org" and ingress["spec"]["ingressClassName"] == "nginx"

    service = objects[f"Service/{name}-metrics"]
    monitor = objects[f"ServiceMonitor/{name}"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    pods = _rayservice(objects)["spec"]["rayClusterConfig"]
    templates = [pods["headGroupSpec"]["template"]] + [g["template"] for g in pods["workerGroupSpecs"]]
    for template in templates:  # the metrics Service selects every Ray pod of the release
        assert set(service["spec"]["selector"].items()) <= set(template["metadata"]["labels"].items())
        names = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {p["name"] for p in service["spec"]["ports"]}


def test_grafana_dashboard_configmap_ships_the_dashboard_file():
    objects = render()
    config_map = objects[f"ConfigMap/{RELEASE}-titan-ray-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "titan-ray.json").read_text())
    assert json.loads(config_map["data"]["titan-ray.json"]) == shipped


def test_notes_explain_access_and_tokens():
    notes = render()["NOTES"]
    assert f"port-forward svc/{RELEASE}-titan-ray-head-svc 8265:8265" in notes  # the Ray dashboard
    assert f"port-forward svc/{RELEASE}-titan-ray-serve-svc 8000:8000" in notes
    assert "RAY_AUTH_MODE=token" in notes and "create secret generic" in notes
    full = render(_full_values())["NOTES"]
    assert "https://titan-ray.example.org/" in full and "titan-ray-ray-token" in full


@pytest.mark.parametrize(("values", "message"), [
    ({"workerGroups": [{"name": "cpu"}]}, "missing properties"),
    ({"redis": {"url": "http://cache:6379"}}, "/redis/url"),
    ({"ingress": {"enabled": True, "hostname": "x"}}, "hostname"),
    ({"rayVersion": "latest"}, "/rayVersion"),
    ({"auth": {"api": {"existingSecret": "Bad_Name"}}}, "/auth/api/existingSecret"),
])
def test_schema_rejects_bad_values_naming_the_key(values, message):
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def test_weights_for_an_unknown_experiment_or_arm_fail_with_the_key_to_fix():
    with pytest.raises(helm.HelmRenderError, match=r"serve\.weights\.no_such_experiment: .* no experiment"):
        render({"serve": {"weights": {"no_such_experiment": {"a": 1.0}}}})
    experiment = next(iter(_experiments()))
    with pytest.raises(helm.HelmRenderError, match=rf"serve\.weights\.{experiment}\.nope: .*no live arm"):
        render({"serve": {"weights": {experiment: {"nope": 1.0}}}})
    with pytest.raises(helm.HelmValuesError, match="minimum"):
        render({"serve": {"weights": {experiment: {"a": -1}}}})


def test_without_token_auth_or_autoscaling_the_options_are_left_out():
    cluster = _rayservice(render({"auth": {"ray": {"enabled": False}}, "autoscaling": {"enabled": False}}))
    spec = cluster["spec"]["rayClusterConfig"]
    assert "authOptions" not in spec and "autoscalerOptions" not in spec
    assert spec["enableInTreeAutoscaling"] is False
