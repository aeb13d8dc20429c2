"""The Prometheus metrics: fixed names, labels, and arena totals turned into counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from titan_ray.observability import METRIC_NAMES, Metrics


def _samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metric_names_are_the_contract():
    assert METRIC_NAMES == (
        "titan_ray_requests_total", "titan_ray_request_latency_seconds", "titan_ray_fills_total",
        "titan_ray_rejections_total", "titan_ray_equity", "titan_ray_actor_restarts_total", "titan_ray_bars_total",
    )
    text = Metrics().exposition().decode()
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text


def test_requests_and_latency():
    m = Metrics()
    m.observe_request("/v1/predict/{model}", None, 200, 0.002)
    m.observe_request("/v1/experiments/{name}/predict", "control", 200, 0.004)
    m.observe_request("/v1/predict/{model}", None, 422, 0.001)
    s = _samples(m)
    assert s[("titan_ray_requests_total", (("arm", "-"), ("code", "200"), ("route", "/v1/predict/{model}")))] == 1
    assert s[("titan_ray_requests_total", (("arm", "control"), ("code", "200"),
                                           ("route", "/v1/experiments/{name}/predict")))] == 1
    assert s[("titan_ray_request_latency_seconds_count", (("arm", "-"), ("route", "/v1/predict/{model}")))] == 2
    assert s[("titan_ray_request_latency_seconds_bucket", (("arm", "-"), ("le", "0.0025"),
                                                           ("route", "/v1/predict/{model}")))] == 2


def test_arena_totals_become_counters_and_reset_on_a_new_run():
    m = Metrics()
    m.sync_arena({"bars": 10, "fills": {"sma": 3}, "rejections": {"sma": {"MAX_POSITION_EXCEEDED": 2}},
                  "equity": {"sma": 1000.5}, "restarts": {"ledger": 1}})
    m.sync_arena({"bars": 25, "fills": {"sma": 7}, "rejections": {"sma": {"MAX_POSITION_EXCEEDED": 2}},
                  "equity": {"sma": 990.0}, "restarts": {"ledger": 1}})
    s = _samples(m)
    assert s[("titan_ray_bars_total", ())] == 25
    assert s[("titan_ray_fills_total", (("model", "sma"),))] == 7
    assert s[("titan_ray_rejections_total", (("model", "sma"), ("reason", "MAX_POSITION_EXCEEDED")))] == 2
    assert s[("titan_ray_equity", (("model", "sma"),))] == 990.0
    assert s[("titan_ray_actor_restarts_total", (("actor", "ledger"),))] == 1
    m.sync_arena({"bars": 4, "fills": {"sma": 1}})  # a new run: the totals start again
    s = _samples(m)
    assert s[("titan_ray_bars_total", ())] == 4 and s[("titan_ray_fills_total", (("model", "sma"),))] == 1
