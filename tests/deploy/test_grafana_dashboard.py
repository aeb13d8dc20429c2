"""The Grafana dashboard names only metrics that exist: TitanRay's own, exported by the code, and
Ray's, as Ray's own dashboards name them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ray
from prometheus_client.parser import text_string_to_metric_families

from titan_ray.observability import METRIC_NAMES, Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "titan-ray" / "dashboards" / "titan-ray.json"
RAY_DASHBOARDS = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
NAME = re.compile(r"\b((?:titan_)?ray_[a-z0-9_]+)\b")


def _panels() -> list[dict]:
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # rows may nest panels
    return panels


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def _titan_series() -> set[str]:
    """The series names the code really exports, every metric touched once."""
    metrics = Metrics()
    metrics.observe_request("/v1/predict/{model}", "a", 200, 0.003)
    metrics.sync_arena({"bars": 10, "fills": {"m": 2}, "rejections": {"m": {"MAX_POSITION": 1}},
                        "equity": {"m": 1e6}, "restarts": {"m": 1}})
    metrics.sync_lifecycle("m", {"drift": {"features": [{"name": "ret_1", "psi": 0.1, "p_value": 0.5}],
                                           "prediction": {"psi": 0.05}},
                                 "performance": {"live_sharpe": 1.0, "validation_sharpe": 1.2},
                                 "champion": {"version": 2}, "challenger": {"version": 3}, "alerts_total": 1})
    text = metrics.exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _ray_names() -> set[str]:
    """Ray's own metric names, as its shipped Grafana dashboards query them."""
    names: set[str] = set()
    for path in RAY_DASHBOARDS.glob("*.py"):
        names |= set(re.findall(r"\bray_[a-z0-9_]+\b", path.read_text()))
    assert len(names) > 50, f"found too few Ray metric names in {RAY_DASHBOARDS}"
    return names


def test_dashboard_parses_with_unique_ids_and_a_prometheus_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "titan-ray" and dashboard["title"] == "TitanRay"
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_dashboard_names_only_metrics_the_code_or_ray_exports():
    titan, ray_names = _titan_series(), _ray_names()
    used = {name for expr in _exprs() for name in NAME.findall(expr)}
    assert used, "the dashboard queries nothing"
    unknown_titan = sorted(n for n in used if n.startswith("titan_ray_") and n not in titan)
    unknown_ray = sorted(n for n in used if n.startswith("ray_") and n not in ray_names)
    assert unknown_titan == [] and unknown_ray == []
    for name in (n for n in used if n.startswith("titan_ray_")):  # and each is a contract name
        assert name in METRIC_NAMES or re.sub(r"_(bucket|sum|count)$", "", name) in METRIC_NAMES, name


def test_dashboard_shows_what_a_platform_engineer_watches():
    exprs = _exprs()

    def has(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert has(r"by \(model\) \(titan_ray_equity\)")  # equity per model
    assert has(r"by \(model\) \(titan_ray_drift_psi\)") and has(r"titan_ray_prediction_psi")  # drift
    assert has(r"by \(model, alias\) \(titan_ray_model_version\)")  # promotions and rollbacks
    assert has(r"by \(model\) \(rate\(titan_ray_fills_total")  # fills
    assert has(r"by \(model, reason\) \(rate\(titan_ray_rejections_total")  # rejections and why
    assert has(r"histogram_quantile\(0\.99, sum by \(arm, le\) \(rate\(titan_ray_request_latency_seconds_bucket")
    assert has(r"by \(actor\) \(increase\(titan_ray_actor_restarts_total")  # actor restarts
    assert has(r"ray_serve_deployment_processing_latency_ms_bucket")  # Ray Serve's own view
