"""Offline Kubernetes checks for the deploy tests: KubeRay's CRD schemas and core object schemas.

KubeRay's CRDs (RayCluster, RayJob, RayService; v1.7) lie in ../shared/kuberay-crds. Their
``openAPIV3Schema`` is checked with jsonschema, made strict first: the API server silently drops
("prunes") unknown fields of a structural schema, so a misspelt key would pass unnoticed; here
every object schema with ``properties`` refuses keys it does not list, unless it says
``x-kubernetes-preserve-unknown-fields``. Core objects (Service, Ingress, ConfigMap, PVC) are
checked by ``kubernetes-validate`` in strict mode; the Prometheus Operator's ServiceMonitor, whose
CRD is not here, by the fields the chart relies on.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT.parent / "shared" / "kuberay-crds"
KUBERAY_KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())  # the oldest we document, the newest known


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    path = CRD_DIR / f"ray.io_{KUBERAY_KINDS[kind]}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"KubeRay's CRD {path} is missing; the tests expect ../shared/kuberay-crds")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # MBs: the C loader
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` breaks its KubeRay CRD's schema, as 'path: message' lines."""
    assert obj.get("apiVersion") == "ray.io/v1", obj.get("apiVersion")
    validator = crd_validator(obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def core_errors(obj: dict[str, Any]) -> list[str]:
    """Errors of a core Kubernetes object against its schema, for each Kubernetes version we support."""
    errors = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"k8s {version}: {'/'.join(map(str, err.path))}: {err.message}")
    return errors


def service_monitor_errors(obj: dict[str, Any]) -> list[str]:
    """The ServiceMonitor fields the chart relies on (the Prometheus Operator's CRD is not here)."""
    spec, errors = obj.get("spec", {}), []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {obj.get('apiVersion')!r}")
    if not spec.get("selector", {}).get("matchLabels"):
        errors.append("spec.selector.matchLabels is empty")
    for i, endpoint in enumerate(spec.get("endpoints", [])):
        unknown = set(endpoint) - {"port", "path", "interval", "relabelings", "scheme", "scrapeTimeout"}
        if unknown or not endpoint.get("port"):
            errors.append(f"spec.endpoints[{i}]: unknown {sorted(unknown)} or no port")
    if not spec.get("endpoints"):
        errors.append("spec.endpoints is empty")
    return errors


def validate_any(obj: dict[str, Any]) -> list[str]:
    if obj["kind"] in KUBERAY_KINDS:
        return crd_errors(obj)
    if obj["kind"] == "ServiceMonitor":
        return service_monitor_errors(obj)
    return core_errors(obj)
