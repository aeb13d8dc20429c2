"""The KubeRay manifests in k8s/ validate, and every deploy file agrees on versions, image and ports."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from k8s_schema import KUBERAY_KINDS, validate_any
from ray.serve.schema import ServeDeploySchema

from titan_ray.serve.settings import check_deploy_config

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))
CHART = ROOT / "helm" / "titan-ray"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def _objects() -> list[tuple[str, dict]]:
    return [(f"{path.name}:{doc['kind']}", doc) for path in MANIFESTS
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _clusters() -> list[tuple[str, dict]]:
    """(where, RayClusterSpec) of every KubeRay object in k8s/."""
    out = []
    for where, obj in _objects():
        spec = obj["spec"]
        cluster = {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
                   "RayService": spec.get("rayClusterConfig")}.get(obj["kind"])
        if cluster is not None:
            out.append((where, cluster))
    return out


def _containers(cluster: dict) -> list[tuple[str, dict, dict]]:
    """(group, rayStartParams, container) of the head and every worker group."""
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    return [(name, g.get("rayStartParams", {}), c) for name, g in groups for c in g["template"]["spec"]["containers"]]


def test_k8s_has_a_rayservice_a_raycluster_and_rayjobs():
    kinds = sorted(obj["kind"] for _, obj in _objects())
    assert {"RayService", "RayCluster", "RayJob", "PersistentVolumeClaim"} <= set(kinds)
    assert kinds.count("RayJob") >= 2  # an arena run and a training run


@pytest.mark.parametrize(("where", "obj"), _objects(), ids=[w for w, _ in _objects()])
def test_manifest_validates(where, obj):
    assert validate_any(obj) == []
    if obj["kind"] in KUBERAY_KINDS:
        assert obj["apiVersion"] == "ray.io/v1"


def test_rayservice_serves_serve_configs_production_yaml():
    """One source of truth: serveConfigV2 is serve_configs/production.yaml, listening where KubeRay sends
    traffic (0.0.0.0:8000). After editing the Serve config: python k8s/sync_serve_config.py"""
    source = ROOT / "serve_configs" / "production.yaml"
    assert source.exists(), f"{source} is missing"
    (service,) = [obj for _, obj in _objects() if obj["kind"] == "RayService"]
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"] or "{}")
    expected = yaml.safe_load(source.read_text())
    expected["http_options"] = {**(expected.get("http_options") or {}), "host": "0.0.0.0", "port": 8000}
    assert embedded == expected, "k8s/rayservice.yaml is stale: run python k8s/sync_serve_config.py"
    ServeDeploySchema.model_validate(embedded)
    # every app's own strict settings, and that the main app, model apps and experiment apps agree
    apps = check_deploy_config(embedded, source="k8s/rayservice.yaml serveConfigV2")
    assert apps["main"] is not None and apps["models"] and apps["experiments"]


def _sync_script():
    spec = importlib.util.spec_from_file_location("sync_serve_config", ROOT / "k8s" / "sync_serve_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_script_keeps_every_application_and_refuses_apps_that_disagree():
    sync = _sync_script()
    config = yaml.safe_load((ROOT / "serve_configs" / "production.yaml").read_text())
    assert len(config["applications"]) > 1
    assert sync.check(config) is None
    embedded = sync.for_kubernetes(config)
    assert embedded["applications"] == config["applications"]
    assert embedded["http_options"]["host"] == "0.0.0.0" and embedded["http_options"]["port"] == 8000
    broken = yaml.safe_load((ROOT / "serve_configs" / "production.yaml").read_text())
    models = [a for a in broken["applications"] if a["import_path"].endswith(":build_model_app")]
    broken["applications"].remove(models[0])  # the main app still lists it
    problem = sync.check(broken)
    assert problem is not None and models[0]["args"]["name"] in problem


@pytest.mark.parametrize("kind", ["RayService", "RayCluster"])
def test_clusters_that_run_serve_set_the_throughput_optimized_env_on_every_node(kind):
    """`ray start` on the head and on every worker reads the two variables: HAProxy on port 8000."""
    clusters = [(w, c) for w, c in _clusters() if w.endswith(f":{kind}")]
    assert clusters, kind
    for where, cluster in clusters:
        containers = _containers(cluster)
        assert {group for group, _, _ in containers} >= {"head"} and len(containers) >= 2
        for group, _, container in containers:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for name, value in THROUGHPUT_ENV.items():
                assert env.get(name) == value, (where, group, name)


def test_rayservice_exposes_serve_on_every_pod():
    (service,) = [obj for _, obj in _objects() if obj["kind"] == "RayService"]
    for group, _, container in _containers(service["spec"]["rayClusterConfig"]):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert ports.get("serve") == 8000, group  # HAProxy on every node, behind <name>-serve-svc


def test_ray_version_agrees_everywhere():
    (pin,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray[")]
    version = pin.split("==")[1]
    base = re.search(r"^FROM rayproject/ray:(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert base.startswith(f"{version}-py311"), base
    assert yaml.safe_load((CHART / "values.yaml").read_text())["rayVersion"] == version
    for where, cluster in _clusters():
        assert cluster["rayVersion"] == version, where


def test_every_manifest_runs_the_charts_image():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    image = f"{yaml.safe_load((CHART / 'values.yaml').read_text())['image']['repository']}:{chart['appVersion']}"
    assert yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())["docker"]["image"] == image
    assert f"docker build -t {image} ." in (ROOT / "Dockerfile").read_text()
    for where, cluster in _clusters():
        for group, _, container in _containers(cluster):
            assert container["image"] == image, (where, group)


def test_token_auth_dashboard_and_metrics_port_on_every_cluster():
    for where, cluster in _clusters():
        assert cluster["authOptions"] == {"mode": "token", "secretName": "titan-ray-ray-token"}, where
        for group, params, container in _containers(cluster):
            assert params["metrics-export-port"] == "8080", (where, group)
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert ports.get("metrics") == 8080, (where, group)
            if group == "head":
                assert params["dashboard-host"] == "0.0.0.0" and ports["dashboard"] == 8265, where


def test_rayjob_entrypoints_use_files_the_image_holds():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY \S+ (\S+) \./", dockerfile, re.MULTILINE)) | set(
        re.findall(r"^COPY --chown=\S+ (\S+) \./", dockerfile, re.MULTILINE))
    jobs = [obj for _, obj in _objects() if obj["kind"] == "RayJob"]
    for job in jobs:
        entry = job["spec"]["entrypoint"]
        assert entry.startswith("titan-ray ") and "--address auto" in entry
        for path in re.findall(r"/home/ray/titan-ray/(\S+)", entry):
            assert (ROOT / path).is_file(), path
            assert path.split("/")[0] in copied, f"the Dockerfile does not copy {path.split('/')[0]}"
        assert job["spec"]["shutdownAfterJobFinishes"] is True
        out = re.search(r"--out (\S+)", entry).group(1)
        assert out.startswith("/home/ray/shared/"), "results must outlive the job's cluster"
